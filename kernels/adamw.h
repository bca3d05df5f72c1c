// AdamW with PyTorch's torch.optim.AdamW semantics (decoupled weight decay,
// bias-corrected moments, eps added after the square root), one step over n
// parameters:
//   p -= lr * wd * p
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g^2
//   p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
// t is the step count, 1 on the first update. m and v (the optimizer state) start at
// zero and are updated in place; g is read only (zeroing it is the caller's business).
#ifndef SELMA_KERNELS_ADAMW_H
#define SELMA_KERNELS_ADAMW_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct adamw_hparams {
    double lr, beta1, beta2, eps, weight_decay;  // PyTorch defaults: 1e-3, 0.9, 0.999, 1e-8, 1e-2
} adamw_hparams;

// Float64 reference.
void adamw_update_ref(double *p, const double *g, double *m, double *v, size_t n,
                      const adamw_hparams *hp, int t);
// Float32 parameters and state; the bias corrections are computed once in double.
void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                  const adamw_hparams *hp, int t);

// CUDA (kernels/cuda/adamw.cu): device pointers, on selma_cuda_stream()
// p, g, m, v are device pointers; hp is a host pointer.
void adamw_update_cuda(float *p, const float *g, float *m, float *v, size_t n,
                       const adamw_hparams *hp, int t);

#ifdef __cplusplus
}
#endif
#endif
