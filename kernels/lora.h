// A linear layer with a LoRA adapter (Hu et al. 2021; PEFT's lora.Linear):
//   h   (N, R)  = inp (N, C) @ lora_a^T             lora_a (R, C)   "lora_A.weight"
//   out (N, OC) = inp @ w^T + b + scale * h @ lora_b^T   lora_b (OC, R) "lora_B.weight"
// with w (OC, C) and b (OC) the frozen base layer (b may be NULL) and scale =
// alpha / R (times a merge multiplier). The forward writes h for the backward.
//
// Gradient rule: dinp is assigned (=) and includes the path through the frozen w;
// dlora_a and dlora_b accumulate (+=). The base w and b are frozen: no gradient is
// ever computed for them (use linear_backward when training the base). Any gradient
// pointer may be NULL to skip it.
//
// dh (N, R) is the caller's scratch for the gradient of h, needed (non-NULL) when
// dinp or dlora_a is requested; it holds dL/dh on return.
#ifndef SELMA_KERNELS_LORA_H
#define SELMA_KERNELS_LORA_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference: plain loops.
void lora_linear_forward_ref(double *out, double *h, const double *inp, const double *w,
                             const double *b, const double *lora_a, const double *lora_b,
                             double scale, int N, int C, int OC, int R);
void lora_linear_backward_ref(double *dinp, double *dlora_a, double *dlora_b, double *dh,
                              const double *dout, const double *inp, const double *h,
                              const double *w, const double *lora_a, const double *lora_b,
                              double scale, int N, int C, int OC, int R);

// Float32, OpenBLAS sgemm (unfused: the base GEMM, then the rank-R path).
void lora_linear_forward(float *out, float *h, const float *inp, const float *w,
                         const float *b, const float *lora_a, const float *lora_b,
                         float scale, int N, int C, int OC, int R);
void lora_linear_backward(float *dinp, float *dlora_a, float *dlora_b, float *dh,
                          const float *dout, const float *inp, const float *h,
                          const float *w, const float *lora_a, const float *lora_b,
                          float scale, int N, int C, int OC, int R);

// CUDA (kernels/cuda/lora.cu; CUDA builds only). Device pointers, float32 storage,
// launched on selma_cuda_stream(); same shapes and gradient rule as above.
// Fused forward: h = inp @ lora_a^T by cuBLAS (TF32), then ONE hand-written bf16
// tensor-core GEMM over the concatenated K: out = [inp | scale h] [w | lora_b]^T + b
// (operands rounded to bf16, float accumulation, bias in the epilogue). R = 0 runs
// the base GEMM alone through the same kernel (h unused, may be NULL).
void lora_linear_forward_cuda(float *out, float *h, const float *inp, const float *w,
                              const float *b, const float *lora_a, const float *lora_b,
                              float scale, int N, int C, int OC, int R);
// Backward: dlora_b, dh and dlora_a by cuBLAS (TF32); dinp = [dout | dh] [w ; lora_a]
// in one bf16 tensor-core GEMM (same kernel as the forward).
void lora_linear_backward_cuda(float *dinp, float *dlora_a, float *dlora_b, float *dh,
                               const float *dout, const float *inp, const float *h,
                               const float *w, const float *lora_a, const float *lora_b,
                               float scale, int N, int C, int OC, int R);
// Unfused baseline (benchmarks): linear_forward_cuda, h = inp @ lora_a^T, then
// out += scale h @ lora_b^T, three cuBLAS TF32 GEMMs.
void lora_linear_forward_cuda_unfused(float *out, float *h, const float *inp, const float *w,
                                      const float *b, const float *lora_a, const float *lora_b,
                                      float scale, int N, int C, int OC, int R);

#ifdef __cplusplus
}
#endif
#endif
