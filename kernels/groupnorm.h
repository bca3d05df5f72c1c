// Group normalization over NCHW activations, PyTorch nn.GroupNorm semantics: the C
// channels split into G groups of C/G consecutive channels; each (batch, group) is
// normalized with its own mean and biased variance over C/G x HW values, then each
// channel gets its own affine weight and bias. The UNet and VAE use G = 32.
//
// Shapes: inp, out (B, C, HW) with HW = H*W (the op only sees the flattened spatial
// extent); w, b (C); mean, rstd (B, G) saved by forward for backward, rstd being
// 1/sqrt(var + eps). C must be a multiple of G.
//
// Gradient rule: dinp is assigned (=); dw and db accumulate (+=). Any gradient
// pointer may be NULL to skip it. w and b may be NULL for a non-affine norm (weight
// 1, bias 0).
#ifndef SELMA_KERNELS_GROUPNORM_H
#define SELMA_KERNELS_GROUPNORM_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference: plain loops, two-pass variance.
void groupnorm_forward_ref(double *out, double *mean, double *rstd, const double *inp,
                           const double *w, const double *b, int B, int C, int HW, int G,
                           double eps);
void groupnorm_backward_ref(double *dinp, double *dw, double *db, const double *dout,
                            const double *inp, const double *w, const double *mean,
                            const double *rstd, int B, int C, int HW, int G);

// Float32: one pass per statistic over contiguous group memory, double accumulators
// (a group holds up to ~10^5 values in the SD UNet).
void groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int B, int C, int HW, int G,
                       float eps);
void groupnorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int B, int C, int HW, int G);

// CUDA (kernels/cuda/groupnorm.cu): device pointers, on selma_cuda_stream()
// dw and db get one atomicAdd per (batch, channel), so their summation order over the
// batch (and so their last bits) may vary from run to run.
void groupnorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp,
                            const float *w, const float *b, int B, int C, int HW, int G,
                            float eps);
void groupnorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, const float *mean,
                             const float *rstd, int B, int C, int HW, int G);

#ifdef __cplusplus
}
#endif
#endif
