// y = a * y + b * x, elementwise over n floats: the exponential moving average of the
// weights (shadow = d * shadow + (1 - d) * params), with x = NULL the gradient clip's
// rescale (y = a * y), and on a device the trainer's sum of its shards' gradients
// (a = b = 1: y + x, one rounding) and their average (a = 1 / shards). No backward
// (optimizer-side only).
#ifndef SELMA_KERNELS_AXPBY_H
#define SELMA_KERNELS_AXPBY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference. x may be NULL (then b is ignored).
void axpby_ref(double *y, double a, const double *x, double b, size_t n);
// Float32: y[i] = a * y[i] + b * x[i] (or a * y[i]), the expression models/ema.c and
// the trainer's clip write.
void axpby(float *y, float a, const float *x, float b, size_t n);

// CUDA (kernels/cuda/axpby.cu): y and x are device pointers, on selma_cuda_stream()
void axpby_cuda(float *y, float a, const float *x, float b, size_t n);

#ifdef __cplusplus
}
#endif
#endif
