// Sinusoidal timestep embedding, diffusers' get_timestep_embedding (the input of
// the UNet's time MLP):
//
//   half = dim / 2,  freq_i = exp(-ln(max_period) * i / (half - downscale_freq_shift))
//   emb  = [sin(t * freq_0..half-1), cos(t * freq_0..half-1)]   (B, dim)
//
// flip_sin_to_cos swaps the halves to [cos, sin]; an odd dim gets a zero last
// column. SD 1.x/2.x use flip_sin_to_cos = 1, downscale_freq_shift = 0,
// max_period = 10000 (diffusers' own default shift is 1). freq_0 is always 1: the
// formula's 0/0 when half == downscale_freq_shift (dim 2 or 3 with shift 1) is taken
// as exponent 0 rather than PyTorch's NaN.
//
// Forward only: t is a sampled timestep, not a trained quantity.
#ifndef SELMA_KERNELS_TIMESTEP_EMBEDDING_H
#define SELMA_KERNELS_TIMESTEP_EMBEDDING_H

#ifdef __cplusplus
extern "C" {
#endif

// t (B); out (B, dim).
void timestep_embedding_forward_ref(double *out, const double *t, int B, int dim,
                                    int flip_sin_to_cos, double downscale_freq_shift,
                                    double max_period);
// Float32 output, arguments formed in double: t * freq reaches ~1000 rad, where a
// float argument alone is off by up to 6e-5. PyTorch forms it in float32 and so
// differs from this (and from the exact formula) by up to that much.
void timestep_embedding_forward(float *out, const float *t, int B, int dim,
                                int flip_sin_to_cos, float downscale_freq_shift,
                                float max_period);

// CUDA (kernels/cuda/timestep_embedding.cu): device pointers, on selma_cuda_stream()
// t (B) and out (B, dim) on the device.
void timestep_embedding_forward_cuda(float *out, const float *t, int B, int dim,
                                     int flip_sin_to_cos, float downscale_freq_shift,
                                     float max_period);

#ifdef __cplusplus
}
#endif
#endif
