// Nearest-neighbour 2x upsampling (the UNet/VAE decoder's Upsample2D before its conv):
//   inp (B, C, H, W) -> out (B, C, 2H, 2W), out[.., y, x] = inp[.., y/2, x/2].
//
// Gradient rule: dinp is assigned (=): each input pixel gets the sum of the 2x2
// block of dout it was copied to.
#ifndef SELMA_KERNELS_UPSAMPLE_H
#define SELMA_KERNELS_UPSAMPLE_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference: plain loops.
void upsample_nearest2x_forward_ref(double *out, const double *inp, int B, int C, int H, int W);
void upsample_nearest2x_backward_ref(double *dinp, const double *dout, int B, int C, int H, int W);

// Float32: row-at-a-time.
void upsample_nearest2x_forward(float *out, const float *inp, int B, int C, int H, int W);
void upsample_nearest2x_backward(float *dinp, const float *dout, int B, int C, int H, int W);

// CUDA (kernels/cuda/upsample.cu): device pointers, on selma_cuda_stream()
void upsample_nearest2x_forward_cuda(float *out, const float *inp, int B, int C, int H, int W);
void upsample_nearest2x_backward_cuda(float *dinp, const float *dout, int B, int C, int H, int W);

#ifdef __cplusplus
}
#endif
#endif
