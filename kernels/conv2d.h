// 2-D convolution, PyTorch's nn.Conv2d with square kernels, one stride and one zero
// padding for both axes, no groups or dilation:
//   inp (B, C, H, W)  w (OC, C, K, K)  b (OC)  out (B, OC, Ho, Wo)
//   Ho = (H + 2*pad - K) / stride + 1, Wo likewise.
// The UNet and VAE use K = 3 (pad 1, stride 1 or 2) and K = 1 (pad 0, stride 1).
//
// Gradient rule: dinp is assigned (=); dw and db accumulate (+=). Any gradient
// pointer may be NULL to skip it; b may be NULL for a convolution without bias.
#ifndef SELMA_KERNELS_CONV2D_H
#define SELMA_KERNELS_CONV2D_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conv2d_shape {
    int B, C, H, W;  // input
    int OC;          // output channels
    int K;           // kernel size (K x K)
    int stride, pad;
} conv2d_shape;

static inline int conv2d_out_h(const conv2d_shape *s) { return (s->H + 2 * s->pad - s->K) / s->stride + 1; }
static inline int conv2d_out_w(const conv2d_shape *s) { return (s->W + 2 * s->pad - s->K) / s->stride + 1; }

// 0 if the shape describes a convolution with a non-empty output; otherwise -1 with
// a message (runtime/error.h) naming the offending field.
int conv2d_shape_check(const conv2d_shape *s);

// Float64 reference: plain loops.
void conv2d_forward_ref(double *out, const double *inp, const double *w, const double *b,
                        const conv2d_shape *s);
void conv2d_backward_ref(double *dinp, double *dw, double *db, const double *dout,
                         const double *inp, const double *w, const conv2d_shape *s);

// Float32: im2col + OpenBLAS sgemm, images grouped so that each GEMM has about 1024
// columns. dinp: for a stride-1 "same" convolution (pad (K-1)/2) the forward
// convolution of dout with the flipped weights, otherwise a GEMM and col2im. A 1x1,
// stride-1, pad-0 convolution of images of 1024 pixels or more is a plain GEMM per
// image and needs no scratch. `scratch`
// holds conv2d_scratch_floats(s) floats, is overwritten, and may be NULL when that
// is 0; forward and backward need the same amount.
// 3x3, stride-1, pad-1 convolutions (forward, backward data as the forward of dout
// with flipped weights, backward weight) go to a direct AVX-512 kernel instead
// (kernels/cpu/conv2d_direct.c) in builds with AVX-512 while conv2d_cpu_direct is 1
// (the default); 0 forces im2col + sgemm (tests compare the two).
extern int conv2d_cpu_direct;
size_t conv2d_scratch_floats(const conv2d_shape *s);
void conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                    const conv2d_shape *s, float *scratch);
void conv2d_backward(float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, const float *w, const conv2d_shape *s, float *scratch);

// CUDA (kernels/cuda/conv2d.cu; CUDA builds only). All pointers are device memory,
// float32, the layouts above; launched on selma_cuda_stream(), no synchronization.
// Two implementations behind one API, chosen by the global `conv2d_cuda_impl`:
//   CONV2D_CUDA_IGEMM (default): hand-written implicit GEMM on bf16 tensor cores
//     (operands rounded to bf16 in shared memory, float accumulation; expect a
//     relative error near 1e-3..1e-2 against float32). Forward: M = B*Ho*Wo,
//     N = OC, K = C*K*K with the im2col gather in the A loader; backward data: the
//     transposed problem M = B*H*W, N = C, K = OC*K*K; backward weight: M = OC,
//     N = C*K*K, K = B*Ho*Wo. Small M*N problems split K over blocks and accumulate
//     with atomics (order not deterministic).
//   CONV2D_CUDA_CUDNN: cuDNN's legacy convolution API on float32 tensors (its
//     default math: TF32 tensor cores), heuristic algorithm choice, workspace from
//     selma_cuda_workspace. Only in builds with cuDNN (SELMA_CUDNN); elsewhere the
//     dispatch falls back to IGEMM and conv2d_cuda_have_cudnn() returns 0.
// Gradient rule as above: dinp assigned, dw and db accumulate.
typedef enum { CONV2D_CUDA_IGEMM = 0, CONV2D_CUDA_CUDNN = 1 } conv2d_cuda_impl_kind;
extern conv2d_cuda_impl_kind conv2d_cuda_impl;
// Split-K for the implicit GEMM: 0 = heuristic (fill the SMs), n > 0 forces n (tests).
extern int conv2d_cuda_splitk;
// 1 (default): where the shape allows (row lengths multiple of 4, aligned pointers),
// the loaders gather 4 neighbours at a time; 0 forces the scalar loaders (tests).
extern int conv2d_cuda_vec;
int conv2d_cuda_have_cudnn(void);

void conv2d_forward_cuda(float *out, const float *inp, const float *w, const float *b,
                         const conv2d_shape *s);
void conv2d_backward_data_cuda(float *dinp, const float *dout, const float *w,
                               const conv2d_shape *s);
// dw and/or db (either may be NULL).
void conv2d_backward_weight_cuda(float *dw, float *db, const float *dout, const float *inp,
                                 const conv2d_shape *s);
// All three gradients, any NULL skipped (the CPU conv2d_backward's contract).
void conv2d_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const conv2d_shape *s);
// The two implementations by name (the *_cudnn ones abort in a build without cuDNN).
void conv2d_forward_igemm(float *out, const float *inp, const float *w, const float *b,
                          const conv2d_shape *s);
void conv2d_backward_data_igemm(float *dinp, const float *dout, const float *w,
                                const conv2d_shape *s);
void conv2d_backward_weight_igemm(float *dw, float *db, const float *dout, const float *inp,
                                  const conv2d_shape *s);
void conv2d_forward_cudnn(float *out, const float *inp, const float *w, const float *b,
                          const conv2d_shape *s);
void conv2d_backward_data_cudnn(float *dinp, const float *dout, const float *w,
                                const conv2d_shape *s);
void conv2d_backward_weight_cudnn(float *dw, float *db, const float *dout, const float *inp,
                                  const conv2d_shape *s);

#ifdef __cplusplus
}
#endif
#endif
