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

// Float32: im2col + OpenBLAS sgemm per image (col2im for dinp). A 1x1, stride-1,
// pad-0 convolution is a plain GEMM over the image and needs no scratch. `scratch`
// holds conv2d_scratch_floats(s) floats, is overwritten, and may be NULL when that
// is 0; forward and backward need the same amount.
size_t conv2d_scratch_floats(const conv2d_shape *s);
void conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                    const conv2d_shape *s, float *scratch);
void conv2d_backward(float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, const float *w, const conv2d_shape *s, float *scratch);

#ifdef __cplusplus
}
#endif
#endif
