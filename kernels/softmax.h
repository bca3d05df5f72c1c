// Softmax over the last dimension of (N, M), numerically stable (the row maximum is
// subtracted before exp). Attention has its own fused softmax (kernels/attention.h);
// this one is for everything else (classifier heads, tests, the MoE router).
//
// Backward needs only the output y: dinp = y * (dout - sum(dout * y)) per row.
// Gradient rule: dinp is assigned (=); NULL skips it.
#ifndef SELMA_KERNELS_SOFTMAX_H
#define SELMA_KERNELS_SOFTMAX_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference. out, inp (N, M).
void softmax_forward_ref(double *out, const double *inp, int N, int M);
void softmax_backward_ref(double *dinp, const double *dout, const double *out, int N, int M);

// Float32. out may alias inp and dinp may alias dout.
void softmax_forward(float *out, const float *inp, int N, int M);
void softmax_backward(float *dinp, const float *dout, const float *out, int N, int M);

// CUDA (kernels/cuda/softmax.cu): device pointers, on selma_cuda_stream()
// out may alias inp and dinp may alias dout.
void softmax_forward_cuda(float *out, const float *inp, int N, int M);
void softmax_backward_cuda(float *dinp, const float *dout, const float *out, int N, int M);

#ifdef __cplusplus
}
#endif
#endif
