// Multi-head scaled-dot-product attention, the core of every transformer block of
// the UNet (self-attention over the latent pixels, cross-attention to the text) and
// of the CLIP text encoder (causal self-attention).
//
// Layout as diffusers after the to_q/to_k/to_v projections, heads interleaved in
// the channel dimension: q (B, N, H*D), k and v (B, M, H*D), out (B, N, H*D); head h
// uses channels [h*D, (h+1)*D). N query tokens, M key tokens: M == N for
// self-attention, M != N for cross-attention (77 text tokens in SD, 16 in shapes).
//
//   out[b,i,h] = sum_j P[b,h,i,j] v[b,j,h],  P = softmax_j(scale * q[b,i,h] . k[b,j,h])
//
// scale <= 0 selects the standard 1/sqrt(D). causal = 1 masks keys j > i (query i
// attends keys 0..i); it requires M == N.
//
// As in FlashAttention, no (N, M) matrix lives between forward and backward: the
// forward saves the row log-sum-exp lse (B, H, N) (natural log, of the scaled and
// masked scores), and the backward recomputes P = exp(scale q.k - lse).
//
// Gradient rule: dq, dk, dv are all activation gradients and are assigned (=); any
// of them may be NULL to skip it.
#ifndef SELMA_KERNELS_ATTENTION_H
#define SELMA_KERNELS_ATTENTION_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference: plain loops straight from the definition. The backward uses
// lse but not out: its row term sum_j P dP is computed from the definition too.
void attention_forward_ref(double *out, double *lse, const double *q, const double *k,
                           const double *v, int B, int N, int M, int H, int D,
                           double scale, int causal);
void attention_backward_ref(double *dq, double *dk, double *dv, const double *dout,
                            const double *q, const double *k, const double *v,
                            const double *lse, int B, int N, int M, int H, int D,
                            double scale, int causal);

// Floats of scratch the fast forward and backward need for N queries and M keys;
// bounded in N because query rows are processed in blocks (scratch holds two
// blocks of scores, at most 2 x 128 x M).
size_t attention_scratch_floats(int N, int M);

// Float32 fast version: OpenBLAS sgemm per (batch, head, query block) on the strided
// head slices (leading dimension H*D), no allocation. scratch holds
// attention_scratch_floats(N, M) floats. lse may be NULL in the forward when no
// backward follows (inference). The backward takes out and the lse of the forward.
void attention_forward(float *out, float *lse, float *scratch, const float *q,
                       const float *k, const float *v, int B, int N, int M, int H, int D,
                       float scale, int causal);
void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                        const float *q, const float *k, const float *v, const float *out,
                        const float *lse, int B, int N, int M, int H, int D, float scale,
                        int causal);

// CUDA versions (kernels/cuda/attention.cu; CUDA builds only), same layout and rules,
// every pointer device memory, launched on selma_cuda_stream(). Flash-style: tiled,
// online softmax, no (N, M) matrix in memory; bf16 tensor-core products with fp32
// softmax statistics and accumulation (so about 1e-2 relative L2 error against the
// float32 version). D <= 160, B * H <= 65535. scratch holds
// attention_cuda_scratch_floats(B, N, H) floats of device memory (the backward's row
// terms dout_i . out_i). SELMA_ATTN_WARPS=8 selects 128-row tiles instead of 64 (same
// bits; for timing). The backward is deterministic (no atomics).
size_t attention_cuda_scratch_floats(int B, int N, int H);
void attention_forward_cuda(float *out, float *lse, const float *q, const float *k,
                            const float *v, int B, int N, int M, int H, int D, float scale,
                            int causal);
void attention_backward_cuda(float *dq, float *dk, float *dv, float *scratch,
                             const float *dout, const float *q, const float *k,
                             const float *v, const float *out, const float *lse, int B,
                             int N, int M, int H, int D, float scale, int causal);
// Baseline for the benchmark: scores materialized through cuBLAS (bf16 tensor cores,
// fp32 accumulation), a softmax kernel, a second GEMM; uses selma_cuda_workspace for
// H * N * M floats. lse may be NULL.
void attention_forward_cuda_naive(float *out, float *lse, const float *q, const float *k,
                                  const float *v, int B, int N, int M, int H, int D,
                                  float scale, int causal);

#ifdef __cplusplus
}
#endif
#endif
