// Layer normalization over the last dimension, PyTorch nn.LayerNorm semantics
// (biased variance, eps inside the square root); used by the transformer blocks of
// the UNet and by the CLIP text encoder.
//
// Shapes: inp, out (N, C) with N every leading dimension flattened; w, b (C);
// mean, rstd (N) saved by forward for backward, rstd = 1/sqrt(var + eps).
//
// Gradient rule: dinp is assigned (=); dw and db accumulate (+=). Any gradient
// pointer may be NULL to skip it. w and b may be NULL for a non-affine norm.
#ifndef SELMA_KERNELS_LAYERNORM_H
#define SELMA_KERNELS_LAYERNORM_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference: plain loops, two-pass variance.
void layernorm_forward_ref(double *out, double *mean, double *rstd, const double *inp,
                           const double *w, const double *b, int N, int C, double eps);
void layernorm_backward_ref(double *dinp, double *dw, double *db, const double *dout,
                            const double *inp, const double *w, const double *mean,
                            const double *rstd, int N, int C);

// Float32: row statistics with double accumulators, one pass each.
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C, float eps);
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C);

// CUDA (kernels/cuda/layernorm.cu): device pointers, on selma_cuda_stream()
// dw and db are summed per chunk of 256 rows and the chunks added with atomicAdd, so
// for N > 256 their last bits may vary from run to run.
void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp,
                            const float *w, const float *b, int N, int C, float eps);
void layernorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, const float *mean,
                             const float *rstd, int N, int C);

#ifdef __cplusplus
}
#endif
#endif
