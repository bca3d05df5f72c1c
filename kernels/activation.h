// Pointwise activations: SiLU (UNet ResNet blocks and time embedding), GELU in its
// three forms, and GEGLU (the feed-forward of diffusers' BasicTransformerBlock).
//
// GELU variants, each as PyTorch / the model code defines it:
//   GELU_ERF   x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))   F.gelu default, GEGLU
//   GELU_TANH  0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  approximate="tanh"
//   GELU_QUICK x * sigmoid(1.702 x)                      CLIP's quick_gelu
//
// GEGLU: inp (N, 2C) is split along the last dim into [hidden, gate] (the first C
// columns are hidden, as diffusers' proj(x).chunk(2, dim=-1)); out (N, C) =
// hidden * gelu_erf(gate).
//
// Gradient rule: the input gradient dinp is assigned (=) and may be NULL (a no-op).
// Shapes of the plain activations: inp, out, dinp, dout (n).
#ifndef SELMA_KERNELS_ACTIVATION_H
#define SELMA_KERNELS_ACTIVATION_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gelu_kind { GELU_ERF, GELU_TANH, GELU_QUICK } gelu_kind;

// Float64 reference.
void silu_forward_ref(double *out, const double *inp, size_t n);
void silu_backward_ref(double *dinp, const double *dout, const double *inp, size_t n);
void gelu_forward_ref(double *out, const double *inp, size_t n, gelu_kind kind);
void gelu_backward_ref(double *dinp, const double *dout, const double *inp, size_t n,
                       gelu_kind kind);
void geglu_forward_ref(double *out, const double *inp, int N, int C);
void geglu_backward_ref(double *dinp, const double *dout, const double *inp, int N, int C);

// Float32. For SiLU and GELU out may alias inp (in place) and dinp may alias dout.
void silu_forward(float *out, const float *inp, size_t n);
void silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void gelu_forward(float *out, const float *inp, size_t n, gelu_kind kind);
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n,
                   gelu_kind kind);
void geglu_forward(float *out, const float *inp, int N, int C);
void geglu_backward(float *dinp, const float *dout, const float *inp, int N, int C);

// CUDA (kernels/cuda/activation.cu): device pointers, on selma_cuda_stream()
// The same aliasing as the float32 versions is allowed.
void silu_forward_cuda(float *out, const float *inp, size_t n);
void silu_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n);
void gelu_forward_cuda(float *out, const float *inp, size_t n, gelu_kind kind);
void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n,
                        gelu_kind kind);
void geglu_forward_cuda(float *out, const float *inp, int N, int C);
void geglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N, int C);

#ifdef __cplusplus
}
#endif
#endif
