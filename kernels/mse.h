// Mean squared error, the diffusion training loss (PyTorch F.mse_loss, reduction
// "mean"): loss = sum_i (pred_i - target_i)^2 / n over all n elements.
//
// The loss is returned as a double and accumulated in double in both versions, so
// that the number logged does not depend on n's rounding. Gradient rule: dpred is
// assigned (=) 2 (pred - target) / n * dloss; the target gets no gradient.
#ifndef SELMA_KERNELS_MSE_H
#define SELMA_KERNELS_MSE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference: plain loops.
double mse_loss_forward_ref(const double *pred, const double *target, size_t n);
void mse_loss_backward_ref(double *dpred, const double *pred, const double *target,
                           double dloss, size_t n);

// Float32 inputs.
double mse_loss_forward(const float *pred, const float *target, size_t n);
void mse_loss_backward(float *dpred, const float *pred, const float *target,
                       float dloss, size_t n);

// CUDA (kernels/cuda/mse.cu): device pointers, on selma_cuda_stream()
// The forward returns the loss to the host: it synchronizes the stream (a blocking
// copy of one double). The sum is deterministic (fixed partials, fixed order).
double mse_loss_forward_cuda(const float *pred, const float *target, size_t n);
void mse_loss_backward_cuda(float *dpred, const float *pred, const float *target,
                            float dloss, size_t n);

#ifdef __cplusplus
}
#endif
#endif
