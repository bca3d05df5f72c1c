// The direct AVX-512 3x3 convolution behind conv2d_forward/backward
// (kernels/cpu/conv2d_direct.c says how it works). Internal to kernels/cpu: callers use
// kernels/conv2d.h. Without AVX-512 conv2d_direct_ok is 0 and the rest are never called.
#ifndef SELMA_KERNELS_CPU_CONV2D_DIRECT_H
#define SELMA_KERNELS_CPU_CONV2D_DIRECT_H

#include "kernels/conv2d.h"

// 1 for a K = 3, stride-1, pad-1 shape in a build with AVX-512.
int conv2d_direct_ok(const conv2d_shape *s);
size_t conv2d_direct_scratch_floats(const conv2d_shape *s);
// out assigned (bias added when b != NULL).
void conv2d_direct_forward(float *out, const float *inp, const float *w, const float *b,
                           const conv2d_shape *s, float *scratch);
// dw (OC, C, 3, 3) += the weight gradient.
void conv2d_direct_backward_weight(float *dw, const float *dout, const float *inp,
                                   const conv2d_shape *s, float *scratch);

#endif
