// Residual add: out = a + b (the skip paths of ResNet and transformer blocks).
#ifndef SELMA_KERNELS_ADD_H
#define SELMA_KERNELS_ADD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void add_forward_ref(double *out, const double *a, const double *b, size_t n);
// Both input gradients are assigned (=) the output gradient; either may be NULL.
void add_backward_ref(double *da, double *db, const double *dout, size_t n);

void add_forward(float *out, const float *a, const float *b, size_t n);
void add_backward(float *da, float *db, const float *dout, size_t n);

// CUDA (kernels/cuda/add.cu): device pointers, on selma_cuda_stream()
void add_forward_cuda(float *out, const float *a, const float *b, size_t n);
void add_backward_cuda(float *da, float *db, const float *dout, size_t n);

#ifdef __cplusplus
}
#endif
#endif
