// The layout change between a UNet's convolutions and its transformer blocks:
// channel planes (B, C, N) <-> tokens (B, N, C), N = H * W pixels per image.
// A pure permutation: each function is the other's backward, and every version
// (reference, CPU, CUDA) is exact.
//
// Gradient rule: the output is assigned (=); in-place (out == inp) is not allowed.
#ifndef SELMA_KERNELS_TOKENS_H
#define SELMA_KERNELS_TOKENS_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference.
void channels_to_tokens_ref(double *out, const double *inp, int B, int C, int N);
void tokens_to_channels_ref(double *out, const double *inp, int B, int C, int N);

// Float32: out (B, N, C) from inp (B, C, N), and back.
void channels_to_tokens(float *out, const float *inp, int B, int C, int N);
void tokens_to_channels(float *out, const float *inp, int B, int C, int N);

// CUDA (kernels/cuda/tokens.cu): device pointers, on selma_cuda_stream(); 32 x 32
// tiles through shared memory so that reads and writes are both coalesced.
void channels_to_tokens_cuda(float *out, const float *inp, int B, int C, int N);
void tokens_to_channels_cuda(float *out, const float *inp, int B, int C, int N);

#ifdef __cplusplus
}
#endif
#endif
