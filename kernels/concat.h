// Channel concatenation (the UNet decoder joining its input with a skip connection):
//   out (B, C1 + C2, H, W) = cat(a (B, C1, H, W), b (B, C2, H, W)) along C.
// HW is H * W; only the plane size matters.
//
// Gradient rule: da and db are assigned (=) their slices of dout; either may be NULL.
#ifndef SELMA_KERNELS_CONCAT_H
#define SELMA_KERNELS_CONCAT_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference: plain loops.
void concat_channels_forward_ref(double *out, const double *a, const double *b,
                                 int B, int C1, int C2, int HW);
void concat_channels_backward_ref(double *da, double *db, const double *dout,
                                  int B, int C1, int C2, int HW);

// Float32: one memcpy per image and input.
void concat_channels_forward(float *out, const float *a, const float *b,
                             int B, int C1, int C2, int HW);
void concat_channels_backward(float *da, float *db, const float *dout,
                              int B, int C1, int C2, int HW);

// CUDA (kernels/cuda/concat.cu): device pointers, on selma_cuda_stream()
void concat_channels_forward_cuda(float *out, const float *a, const float *b,
                                  int B, int C1, int C2, int HW);
void concat_channels_backward_cuda(float *da, float *db, const float *dout,
                                   int B, int C1, int C2, int HW);

#ifdef __cplusplus
}
#endif
#endif
