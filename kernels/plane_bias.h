// One value per (image, channel) added to every pixel of that channel's plane: the
// ResNet block's h + time_emb_proj(temb)[:, :, None, None].
//   x (B, C, HW) += t (B, C)            (in place)
//   dt (B, C) = sum over the plane of dout (B, C, HW)
// Gradient rule: dt is an activation gradient (the time projection's output) and is
// assigned (=); the gradient of x is dout itself, so there is nothing to compute.
#ifndef SELMA_KERNELS_PLANE_BIAS_H
#define SELMA_KERNELS_PLANE_BIAS_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference.
void plane_bias_forward_ref(double *x, const double *t, int B, int C, int HW);
void plane_bias_backward_ref(double *dt, const double *dout, int B, int C, int HW);

// Float32; the backward sums each plane in double.
void plane_bias_forward(float *x, const float *t, int B, int C, int HW);
void plane_bias_backward(float *dt, const float *dout, int B, int C, int HW);

// CUDA (kernels/cuda/plane_bias.cu): device pointers, on selma_cuda_stream(). The
// backward is one block per plane, a float tree sum (deterministic: no atomics).
void plane_bias_forward_cuda(float *x, const float *t, int B, int C, int HW);
void plane_bias_backward_cuda(float *dt, const float *dout, int B, int C, int HW);

#ifdef __cplusplus
}
#endif
#endif
