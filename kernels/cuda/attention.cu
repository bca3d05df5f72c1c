// Attention on the GPU (see kernels/attention.h for shapes, layout and gradient rule).
//
// Flash-style (FlashAttention-2 algorithm, written from its description): no (N, M)
// matrix is ever stored. Operands are converted from float32 to bf16 as they are
// staged in shared memory and multiplied on the tensor cores with
// mma.sync.m16n8k16 (bf16 x bf16 -> fp32); softmax statistics, lse and every
// accumulator stay in fp32 registers.
//
// Tiling. The padded head dim DP (D rounded up to a multiple of 16; the extra
// columns are zero in shared memory, so they add nothing to any dot product and
// are never stored) is a template parameter: every register array is indexed by
// compile-time constants. Each warp owns 16 rows of the output tile, the rows of
// one m16n8k16 A operand; W = 4 warps per block by default, 8 with
// SELMA_ATTN_WARPS=8 (both instantiated, for timing):
//   forward   block = W warps = 16 W queries, loops over key tiles of 64;
//             smem Q (16W x DP+8), K (64 x DP+8), V^T (DP x 64+8), bf16.
//   dQ pass   block = 16 W queries, loops over key tiles of 64; recomputes P from
//             lse and dP = dO V^T; dQ += dS K. smem Q, dO, K, V, K^T.
//   dK/dV     block = 16 W keys (16 per warp), loops over query tiles of 64
//             (DP <= 64) or 32 (larger DP, for registers); computes S^T, P^T, dP^T
//             per warp so dK and dV accumulate in registers. smem K, V, Q, Q^T, dO,
//             dO^T.
// Rows padded with +8 bf16 (16 bytes) so that the 32-bit fragment loads of a warp
// (8 rows x 4 words) fall in 32 distinct banks.
//
// Masking: a key j >= M or, causal, j > i gets score -inf (forward) or P = 0
// (backward); query rows i >= N and key rows j >= M are zero-filled in shared
// memory (never uninitialized: 0 * NaN garbage would poison the products) and are
// never stored. A row whose running maximum is still -inf subtracts 0 instead, so
// exp2(-inf) = 0 and no inf - inf appears.
//
// Backward strategy: two deterministic passes instead of FlashAttention-2's single
// pass with fp32 atomicAdd into dQ. The key-tile-parallel dK/dV kernel does 4 GEMMs
// per tile pair (S, dV, dP, dK), the query-tile-parallel dQ kernel 3 (S, dP, dQ): 7
// instead of 5, but no atomics (which at N = M = 4096 would be N*M*D/64 fp32 adds
// per head), no dQ scratch, the same result on every run. The row term
// D_i = rowsum(dO o O) comes first from a small kernel, in fp32 from the float
// inputs, into the caller's scratch (attention_cuda_scratch_floats).
//
// attention_forward_cuda_naive is the baseline for bench/gpu/bench_attention.c:
// scores through cuBLAS (strided batched, one batch per head), a softmax kernel,
// a second GEMM; the (H, N, M) score matrix of one batch lives in
// selma_cuda_workspace. cuDNN's fused attention (cudnn frontend SDPA) is a later
// step and not wired here.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <initializer_list>

#include "kernels/attention.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

typedef __nv_bfloat16 bf16;

#define ATT_LOG2E 1.4426950408889634f
#define ATT_LN2 0.6931471805599453f
#define ATT_MAX_D 160

namespace {

// ---- fragments ----------------------------------------------------------------------
//
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, with g = lane / 4, t = lane % 4:
//   A (16 x 16, row major): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..],
//                           a3 = A[g+8][2t+8..]
//   B (16 x 8, k x n):      b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C (16 x 8, fp32):       c0, c1 = C[g][2t], C[g][2t+1]; c2, c3 = C[g+8][2t..]
// Each 32-bit register holds two bf16, the lower column/k index in the low half.

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ uint32_t ld32(const bf16 *p) { return *(const uint32_t *)p; }

// A fragment at (r0, k0) of a row-major bf16 matrix with row stride S (elements).
template <int S>
__device__ __forceinline__ void load_a(uint32_t a[4], const bf16 *X, int r0, int k0, int g, int t) {
    const bf16 *p = X + (r0 + g) * S + k0 + 2 * t;
    a[0] = ld32(p);
    a[1] = ld32(p + 8 * S);
    a[2] = ld32(p + 8);
    a[3] = ld32(p + 8 * S + 8);
}

// B fragment (k0.., n0..) of B where Y stores B transposed, row n holding B[.][n]
// contiguous in k (Y[n][k] = B[k][n]), row stride S.
template <int S>
__device__ __forceinline__ void load_b(uint32_t b[2], const bf16 *Y, int n0, int k0, int g, int t) {
    const bf16 *p = Y + (n0 + g) * S + k0 + 2 * t;
    b[0] = ld32(p);
    b[1] = ld32(p + 8);
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

// The A fragment for k-tile kt (16 columns) from accumulators c[nt][4] of 8-column
// n-tiles (the C layout of tiles 2kt and 2kt+1 is exactly the A layout).
template <int NT>
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float (&c)[NT][4], int kt) {
    a[0] = pack_bf16(c[2 * kt][0], c[2 * kt][1]);
    a[1] = pack_bf16(c[2 * kt][2], c[2 * kt][3]);
    a[2] = pack_bf16(c[2 * kt + 1][0], c[2 * kt + 1][1]);
    a[3] = pack_bf16(c[2 * kt + 1][2], c[2 * kt + 1][3]);
}

// ---- a warp's 16-row GEMMs ---------------------------------------------------------------

template <int NT>
__device__ __forceinline__ void zero_acc(float (&c)[NT][4]) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) c[nt][0] = c[nt][1] = c[nt][2] = c[nt][3] = 0.f;
}

// c (16 x 8 NT) += A B over KT k-tiles of 16: A = rows r0.. of the row-major X (row
// stride SX), B stored transposed in Y (row stride SY; load_b).
template <int KT, int SX, int SY, int NT>
__device__ __forceinline__ void mma_smem_a(float (&c)[NT][4], const bf16 *X, int r0, const bf16 *Y,
                                           int g, int t) {
#pragma unroll
    for (int kt = 0; kt < KT; kt++) {
        uint32_t a[4];
        load_a<SX>(a, X, r0, kt * 16, g, t);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            uint32_t bb[2];
            load_b<SY>(bb, Y, nt * 8, kt * 16, g, t);
            mma16816(c[nt], a, bb);
        }
    }
}

// c (16 x 8 NT) += P B with A = P from the accumulators p (16 x 8 NTP, so NTP / 2
// k-tiles; acc_to_a), B stored transposed in Y (row stride SY; load_b).
template <int SY, int NTP, int NT>
__device__ __forceinline__ void mma_acc_a(float (&c)[NT][4], const float (&p)[NTP][4], const bf16 *Y,
                                          int g, int t) {
#pragma unroll
    for (int kt = 0; kt < NTP / 2; kt++) {
        uint32_t a[4];
        acc_to_a<NTP>(a, p, kt);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            uint32_t bb[2];
            load_b<SY>(bb, Y, nt * 8, kt * 16, g, t);
            mma16816(c[nt], a, bb);
        }
    }
}

// ---- staging float32 tiles into bf16 shared memory ------------------------------------

// Reads row r < valid, columns d..d+3 of a (rows, D) slice with row stride ld; zeros
// outside. vec: D % 4 == 0 and 16-byte aligned base, so one float4 load.
__device__ __forceinline__ float4 load4(const float *__restrict__ src, int r, int d, int valid,
                                        size_t ld, int D, int vec) {
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < valid && d < D) {
        const float *p = src + (size_t)r * ld + d;
        if (vec) {
            x = *(const float4 *)p;
        } else {
            x.x = p[0];
            if (d + 1 < D) x.y = p[1];
            if (d + 2 < D) x.z = p[2];
            if (d + 3 < D) x.w = p[3];
        }
    }
    return x;
}

// dst[r][d] (row stride DP + 8) for r < ROWS, d < DP.
template <int ROWS, int DP>
__device__ __forceinline__ void stage_rows(bf16 *dst, const float *__restrict__ src, int valid,
                                           size_t ld, int D, int vec) {
    constexpr int C4 = DP / 4, S = DP + 8;
    for (int idx = threadIdx.x; idx < ROWS * C4; idx += blockDim.x) {
        int r = idx / C4, d = (idx % C4) * 4;
        float4 x = load4(src, r, d, valid, ld, D, vec);
        uint2 u;
        u.x = pack_bf16(x.x, x.y);
        u.y = pack_bf16(x.z, x.w);
        *(uint2 *)(dst + r * S + d) = u;
    }
}

// Transposed: dst[d][r] (row stride ROWS + 8) for r < ROWS, d < DP.
template <int ROWS, int DP>
__device__ __forceinline__ void stage_cols(bf16 *dst, const float *__restrict__ src, int valid,
                                           size_t ld, int D, int vec) {
    constexpr int C4 = DP / 4, S = ROWS + 8;
    for (int idx = threadIdx.x; idx < ROWS * C4; idx += blockDim.x) {
        int r = idx / C4, d = (idx % C4) * 4;
        float4 x = load4(src, r, d, valid, ld, D, vec);
        dst[(d + 0) * S + r] = __float2bfloat16_rn(x.x);
        dst[(d + 1) * S + r] = __float2bfloat16_rn(x.y);
        dst[(d + 2) * S + r] = __float2bfloat16_rn(x.z);
        dst[(d + 3) * S + r] = __float2bfloat16_rn(x.w);
    }
}

// Stores a warp's 16 x DP accumulator tile (rows row0.., scaled by mul[2] per half)
// into a float (rows, D) slice with row stride ld, rows < nrows only.
template <int DP>
__device__ __forceinline__ void store_acc(float *__restrict__ dst, const float (&acc)[DP / 8][4],
                                          int row0, int nrows, size_t ld, int D,
                                          const float mul[2], int g, int t) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int r = row0 + g + 8 * half;
        if (r >= nrows) continue;
        float *p = dst + (size_t)r * ld;
#pragma unroll
        for (int nt = 0; nt < DP / 8; nt++) {
            int d = nt * 8 + 2 * t;
            if (d < D) p[d] = acc[nt][2 * half] * mul[half];
            if (d + 1 < D) p[d + 1] = acc[nt][2 * half + 1] * mul[half];
        }
    }
}

// W warps per block (4 or 8, a template parameter so both can be timed); each warp
// owns 16 rows, so a block holds 16 W queries (forward, dQ) or 16 W keys (dK/dV).
constexpr int kBC = 64;  // forward / dQ: keys per tile
template <int DP> constexpr int bwd_q_tile() { return DP <= 64 ? 64 : 32; }

template <int DP, int W> constexpr size_t fwd_smem() {
    return sizeof(bf16) *
           ((size_t)16 * W * (DP + 8) + (size_t)kBC * (DP + 8) + (size_t)DP * (kBC + 8));
}
template <int DP, int W> constexpr size_t dq_smem() {
    return sizeof(bf16) * (2 * (size_t)16 * W * (DP + 8) + 2 * (size_t)kBC * (DP + 8) +
                           (size_t)DP * (kBC + 8));
}
template <int DP, int W> constexpr size_t dkdv_smem() {
    constexpr int BQ = bwd_q_tile<DP>();
    return sizeof(bf16) * (2 * (size_t)16 * W * (DP + 8) + 2 * (size_t)BQ * (DP + 8) +
                           2 * (size_t)DP * (BQ + 8)) +
           2 * sizeof(float) * BQ;
}

// ---- forward ------------------------------------------------------------------------------

template <int DP, int W>
__global__ void __launch_bounds__(32 * W)
attn_fwd_kernel(float *__restrict__ out, float *__restrict__ lse, const float *__restrict__ q,
                const float *__restrict__ k, const float *__restrict__ v, int N, int M, int H,
                int D, float scale_log2, int causal, int vec) {
    constexpr int DS = DP + 8, CS = kBC + 8, NTS = kBC / 8, NTO = DP / 8, kBR = 16 * W;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = (bf16 *)smem_raw, *Ks = Qs + kBR * DS, *Vt = Ks + kBC * DS;

    const int bh = blockIdx.y, b = bh / H, h = bh % H, q0 = blockIdx.x * kBR;
    const size_t HD = (size_t)H * D;
    const float *qb = q + ((size_t)b * N + q0) * HD + (size_t)h * D;
    const float *kb = k + (size_t)b * M * HD + (size_t)h * D;
    const float *vb = v + (size_t)b * M * HD + (size_t)h * D;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = warp * 16;              // warp's first row in the tile
    const int rows[2] = {q0 + r0 + g, q0 + r0 + g + 8};

    stage_rows<kBR, DP>(Qs, qb, min(kBR, N - q0), HD, D, vec);

    float o[NTO][4];
    zero_acc(o);
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};

    const int kv_end = causal ? min(M, q0 + kBR) : M;
    for (int kv0 = 0; kv0 < kv_end; kv0 += kBC) {
        __syncthreads();  // the previous tile's K and V^T are no longer read
        const int kvalid = min(kBC, M - kv0);
        stage_rows<kBC, DP>(Ks, kb + (size_t)kv0 * HD, kvalid, HD, D, vec);
        stage_cols<kBC, DP>(Vt, vb + (size_t)kv0 * HD, kvalid, HD, D, vec);
        __syncthreads();

        // S (16 x kBC) = Q_w K^T
        float s[NTS][4];
        zero_acc(s);
        mma_smem_a<DP / 16, DS, DS>(s, Qs, r0, Ks, g, t);

        // Scale to the log2 domain, mask, online softmax.
        const bool mask = kv0 + kBC > M || (causal && kv0 + kBC - 1 > q0 + r0);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < NTS; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                float x = s[nt][c] * scale_log2;
                if (mask) {
                    int j = kv0 + nt * 8 + 2 * t + (c & 1);
                    if (j >= M || (causal && j > rows[c >> 1])) x = -INFINITY;
                }
                s[nt][c] = x;
                mx[c >> 1] = fmaxf(mx[c >> 1], x);
            }
        float alpha[2], msub[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            float mnew = fmaxf(mrow[r], mx[r]);
            msub[r] = mnew == -INFINITY ? 0.f : mnew;
            alpha[r] = exp2f(mrow[r] - msub[r]);
            mrow[r] = mnew;
        }
        float sum[2] = {0.f, 0.f};
#pragma unroll
        for (int nt = 0; nt < NTS; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                float p = exp2f(s[nt][c] - msub[c >> 1]);
                s[nt][c] = p;
                sum[c >> 1] += p;
            }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 1);
            sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], 2);
            lrow[r] = lrow[r] * alpha[r] + sum[r];
        }
#pragma unroll
        for (int nt = 0; nt < NTO; nt++) {
            o[nt][0] *= alpha[0];
            o[nt][1] *= alpha[0];
            o[nt][2] *= alpha[1];
            o[nt][3] *= alpha[1];
        }

        // O += P V: A = P from the accumulators, B = V (k = key, n = d) from V^T.
        mma_acc_a<CS>(o, s, Vt, g, t);
    }

    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) inv[r] = lrow[r] > 0.f ? 1.f / lrow[r] : 0.f;
    float *ob = out + ((size_t)b * N + q0) * HD + (size_t)h * D;
    store_acc<DP>(ob, o, r0, N - q0, HD, D, inv, g, t);
    if (lse && t == 0) {
#pragma unroll
        for (int r = 0; r < 2; r++)
            if (rows[r] < N)
                lse[(size_t)bh * N + rows[r]] =
                    lrow[r] > 0.f ? mrow[r] * ATT_LN2 + logf(lrow[r]) : -INFINITY;
    }
}

// ---- backward: D_i = rowsum(dO o O) ----------------------------------------------------------

// One warp per (b, i, h) row; Dv is (B, H, N).
__global__ void attn_bwd_rowdot_kernel(float *__restrict__ Dv, const float *__restrict__ dout,
                                       const float *__restrict__ out, int B, int N, int H, int D) {
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= (size_t)B * N * H) return;
    // row enumerates (b, i, h) with h fastest, matching memory order.
    const int h = (int)(row % H);
    const size_t bi = row / H;
    const int i = (int)(bi % N), b = (int)(bi / N);
    const float *g = dout + row * D, *o = out + row * D;
    float acc = 0.f;
    for (int d = lane; d < D; d += 32) acc += g[d] * o[d];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) Dv[((size_t)b * H + h) * N + i] = acc;
}

// ---- backward: dQ (query-tile parallel) -------------------------------------------------------

template <int DP, int W>
__global__ void __launch_bounds__(32 * W)
attn_bwd_dq_kernel(float *__restrict__ dq, const float *__restrict__ dout,
                   const float *__restrict__ q, const float *__restrict__ k,
                   const float *__restrict__ v, const float *__restrict__ lse,
                   const float *__restrict__ Dv, int N, int M, int H, int D, float scale,
                   float scale_log2, int causal, int vec) {
    constexpr int DS = DP + 8, CS = kBC + 8, NTS = kBC / 8, NTO = DP / 8, kBR = 16 * W;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Qs = (bf16 *)smem_raw, *dOs = Qs + kBR * DS, *Ks = dOs + kBR * DS, *Vs = Ks + kBC * DS,
         *Kt = Vs + kBC * DS;

    const int bh = blockIdx.y, b = bh / H, h = bh % H, q0 = blockIdx.x * kBR;
    const size_t HD = (size_t)H * D;
    const size_t qoff = ((size_t)b * N + q0) * HD + (size_t)h * D;
    const float *kb = k + (size_t)b * M * HD + (size_t)h * D;
    const float *vb = v + (size_t)b * M * HD + (size_t)h * D;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = warp * 16;
    const int rows[2] = {q0 + r0 + g, q0 + r0 + g + 8};
    float lrow[2], drow[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        lrow[r] = rows[r] < N ? lse[(size_t)bh * N + rows[r]] * ATT_LOG2E : 0.f;
        drow[r] = rows[r] < N ? Dv[(size_t)bh * N + rows[r]] : 0.f;
    }

    const int qvalid = min(kBR, N - q0);
    stage_rows<kBR, DP>(Qs, q + qoff, qvalid, HD, D, vec);
    stage_rows<kBR, DP>(dOs, dout + qoff, qvalid, HD, D, vec);

    float acc[NTO][4];
    zero_acc(acc);

    const int kv_end = causal ? min(M, q0 + kBR) : M;
    for (int kv0 = 0; kv0 < kv_end; kv0 += kBC) {
        __syncthreads();
        const int kvalid = min(kBC, M - kv0);
        stage_rows<kBC, DP>(Ks, kb + (size_t)kv0 * HD, kvalid, HD, D, vec);
        stage_rows<kBC, DP>(Vs, vb + (size_t)kv0 * HD, kvalid, HD, D, vec);
        stage_cols<kBC, DP>(Kt, kb + (size_t)kv0 * HD, kvalid, HD, D, vec);
        __syncthreads();

        // S = Q_w K^T and dP = dO_w V^T (16 x kBC each)
        float s[NTS][4], dp[NTS][4];
        zero_acc(s);
        zero_acc(dp);
#pragma unroll
        for (int kt = 0; kt < DP / 16; kt++) {
            uint32_t a[4], a2[4];
            load_a<DS>(a, Qs, r0, kt * 16, g, t);
            load_a<DS>(a2, dOs, r0, kt * 16, g, t);
#pragma unroll
            for (int nt = 0; nt < NTS; nt++) {
                uint32_t bb[2];
                load_b<DS>(bb, Ks, nt * 8, kt * 16, g, t);
                mma16816(s[nt], a, bb);
                load_b<DS>(bb, Vs, nt * 8, kt * 16, g, t);
                mma16816(dp[nt], a2, bb);
            }
        }
        // dS = P o (dP - D_i), P = exp(scale s - lse); masked entries 0.
#pragma unroll
        for (int nt = 0; nt < NTS; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int j = kv0 + nt * 8 + 2 * t + (c & 1), i = rows[c >> 1];
                bool ok = j < M && i < N && (!causal || j <= i);
                float p = ok ? exp2f(s[nt][c] * scale_log2 - lrow[c >> 1]) : 0.f;
                s[nt][c] = p * (dp[nt][c] - drow[c >> 1]);
            }
        // dQ += dS K: B (k = key, n = d) from K^T.
        mma_acc_a<CS>(acc, s, Kt, g, t);
    }
    const float mul[2] = {scale, scale};
    store_acc<DP>(dq + qoff, acc, r0, N - q0, HD, D, mul, g, t);
}

// ---- backward: dK, dV (key-tile parallel) -------------------------------------------------------

template <int DP, int W>
__global__ void __launch_bounds__(32 * W)
attn_bwd_dkdv_kernel(float *__restrict__ dk, float *__restrict__ dv, const float *__restrict__ dout,
                     const float *__restrict__ q, const float *__restrict__ k,
                     const float *__restrict__ v, const float *__restrict__ lse,
                     const float *__restrict__ Dv, int N, int M, int H, int D, float scale,
                     float scale_log2, int causal, int vec) {
    constexpr int BQ = bwd_q_tile<DP>();
    constexpr int DS = DP + 8, QS = BQ + 8, NTQ = BQ / 8, NTO = DP / 8, kBK = 16 * W;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *Ks = (bf16 *)smem_raw, *Vs = Ks + kBK * DS, *Qs = Vs + kBK * DS, *dOs = Qs + BQ * DS,
         *Qt = dOs + BQ * DS, *dOt = Qt + DP * QS;
    float *lse_s = (float *)(dOt + DP * QS), *D_s = lse_s + BQ;

    const int bh = blockIdx.y, b = bh / H, h = bh % H, kv0 = blockIdx.x * kBK;
    const size_t HD = (size_t)H * D;
    const size_t koff = ((size_t)b * M + kv0) * HD + (size_t)h * D;
    const float *qb = q + (size_t)b * N * HD + (size_t)h * D;
    const float *gb = dout + (size_t)b * N * HD + (size_t)h * D;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = warp * 16;  // warp's first key in the tile
    const int keys[2] = {kv0 + r0 + g, kv0 + r0 + g + 8};
    const bool want_dk = dk != nullptr, want_dv = dv != nullptr;

    const int kvalid = min(kBK, M - kv0);
    stage_rows<kBK, DP>(Ks, k + koff, kvalid, HD, D, vec);
    stage_rows<kBK, DP>(Vs, v + koff, kvalid, HD, D, vec);

    float adk[NTO][4], adv[NTO][4];
    zero_acc(adk);
    zero_acc(adv);

    // Causal: queries i < kv0 see none of these keys.
    const int qstart = causal ? (kv0 / BQ) * BQ : 0;
    for (int q0 = qstart; q0 < N; q0 += BQ) {
        __syncthreads();
        const int qvalid = min(BQ, N - q0);
        stage_rows<BQ, DP>(Qs, qb + (size_t)q0 * HD, qvalid, HD, D, vec);
        stage_cols<BQ, DP>(Qt, qb + (size_t)q0 * HD, qvalid, HD, D, vec);
        stage_rows<BQ, DP>(dOs, gb + (size_t)q0 * HD, qvalid, HD, D, vec);
        stage_cols<BQ, DP>(dOt, gb + (size_t)q0 * HD, qvalid, HD, D, vec);
        for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
            int i = q0 + r;
            lse_s[r] = i < N ? lse[(size_t)bh * N + i] * ATT_LOG2E : 0.f;
            D_s[r] = i < N ? Dv[(size_t)bh * N + i] : 0.f;
        }
        __syncthreads();

        // S^T (16 keys x BQ queries) = K_w Q^T, then P^T.
        float st[NTQ][4];
        zero_acc(st);
        mma_smem_a<DP / 16, DS, DS>(st, Ks, r0, Qs, g, t);
#pragma unroll
        for (int nt = 0; nt < NTQ; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int il = nt * 8 + 2 * t + (c & 1), i = q0 + il, j = keys[c >> 1];
                bool ok = i < N && j < M && (!causal || j <= i);
                st[nt][c] = ok ? exp2f(st[nt][c] * scale_log2 - lse_s[il]) : 0.f;
            }

        // dV += P^T dO: B (k = query, n = d) from dO^T.
        if (want_dv) mma_acc_a<QS>(adv, st, dOt, g, t);
        if (want_dk) {
            // dP^T (16 x BQ) = V_w dO^T
            float dpt[NTQ][4];
            zero_acc(dpt);
            mma_smem_a<DP / 16, DS, DS>(dpt, Vs, r0, dOs, g, t);
            // dS^T = P^T o (dP^T - D_i)
#pragma unroll
            for (int nt = 0; nt < NTQ; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int il = nt * 8 + 2 * t + (c & 1);
                    dpt[nt][c] = st[nt][c] * (dpt[nt][c] - D_s[il]);
                }
            // dK += dS^T Q: B (k = query, n = d) from Q^T.
            mma_acc_a<QS>(adk, dpt, Qt, g, t);
        }
    }
    if (want_dk) {
        const float mul[2] = {scale, scale};
        store_acc<DP>(dk + koff, adk, r0, M - kv0, HD, D, mul, g, t);
    }
    if (want_dv) {
        const float one[2] = {1.f, 1.f};
        store_acc<DP>(dv + koff, adv, r0, M - kv0, HD, D, one, g, t);
    }
}

// ---- launchers --------------------------------------------------------------------------------

// Raises a kernel's dynamic shared-memory limit once (needed above 48 KB).
template <typename K>
void allow_smem(K kernel, size_t bytes, bool &done) {
    if (!done) {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)bytes));
        done = true;
    }
}

struct Args {
    int B, N, M, H, D, causal, vec;
    float scale, scale_log2;
};

// Launches kernel (W warps per block, sm bytes of dynamic shared memory, the limit
// raised once: done) on selma_cuda_stream() over a grid of one block per 16 W of the
// `rows` rows and per (batch, head).
template <int W, typename K, typename... P>
void launch(K kernel, size_t sm, bool &done, int rows, const Args &a, P... args) {
    allow_smem(kernel, sm, done);
    dim3 grid((unsigned)((rows + 16 * W - 1) / (16 * W)), (unsigned)(a.B * a.H));
    kernel<<<grid, 32 * W, sm, (cudaStream_t)selma_cuda_stream()>>>(args...);
    CUDA_CHECK(cudaGetLastError());
}

template <int DP, int W>
void launch_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                const Args &a) {
    static bool done = false;
    launch<W>(attn_fwd_kernel<DP, W>, fwd_smem<DP, W>(), done, a.N, a, out, lse, q, k, v, a.N, a.M,
              a.H, a.D, a.scale_log2, a.causal, a.vec);
}

template <int DP, int W>
void launch_bwd(float *dq, float *dk, float *dv, const float *Dv, const float *dout,
                const float *q, const float *k, const float *v, const float *lse, const Args &a) {
    if (dq) {
        static bool done = false;
        launch<W>(attn_bwd_dq_kernel<DP, W>, dq_smem<DP, W>(), done, a.N, a, dq, dout, q, k, v, lse,
                  Dv, a.N, a.M, a.H, a.D, a.scale, a.scale_log2, a.causal, a.vec);
    }
    if (dk || dv) {
        static bool done = false;
        launch<W>(attn_bwd_dkdv_kernel<DP, W>, dkdv_smem<DP, W>(), done, a.M, a, dk, dv, dout, q, k,
                  v, lse, Dv, a.N, a.M, a.H, a.D, a.scale, a.scale_log2, a.causal, a.vec);
    }
}

// Calls F<DP> with DP = D rounded up to a multiple of 16.
#define ATT_DISPATCH(D, CALL)                       \
    switch (((D) + 15) / 16 * 16) {                 \
    case 16: CALL(16); break;                       \
    case 32: CALL(32); break;                       \
    case 48: CALL(48); break;                       \
    case 64: CALL(64); break;                       \
    case 80: CALL(80); break;                       \
    case 96: CALL(96); break;                       \
    case 112: CALL(112); break;                     \
    case 128: CALL(128); break;                     \
    case 144: CALL(144); break;                     \
    case 160: CALL(160); break;                     \
    default: CHECK(!"attention_cuda: D > 160"); \
    }

// Warps per block: 4 (64 rows) unless SELMA_ATTN_WARPS=8 (128 rows: half the
// global-to-shared staging per FLOP, fewer blocks); bench/gpu/bench_attention.c times both.
int att_warps() {
    const char *e = getenv("SELMA_ATTN_WARPS");
    return e && atoi(e) == 8 ? 8 : 4;
}

Args make_args(int B, int N, int M, int H, int D, float scale, int causal,
               std::initializer_list<const void *> ptrs) {
    CHECK(!causal || M == N);
    CHECK(D >= 1 && D <= ATT_MAX_D);
    CHECK((long long)B * H <= 65535);  // gridDim.y
    Args a;
    a.B = B, a.N = N, a.M = M, a.H = H, a.D = D, a.causal = causal;
    a.scale = scale > 0 ? scale : 1.0f / sqrtf((float)D);
    a.scale_log2 = a.scale * ATT_LOG2E;
    uintptr_t bits = 0;
    for (const void *p : ptrs) bits |= (uintptr_t)p;
    a.vec = D % 4 == 0 && (bits & 15) == 0;
    return a;
}

// ---- naive baseline ------------------------------------------------------------------------------

// One block per score row (h, i) of one batch: scale already applied by the GEMM;
// causal masking, softmax in place, lse.
__global__ void attn_naive_softmax_kernel(float *__restrict__ S, float *__restrict__ lse, int N,
                                          int M, int causal) {
    __shared__ float red[32];
    const size_t row = blockIdx.x;  // h * N + i
    const int i = (int)(row % N);
    float *s = S + row * M;
    const int nk = causal ? i + 1 : M;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < nk; j += blockDim.x) mx = fmaxf(mx, s[j]);
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    mx = lane < nw ? red[lane] : -INFINITY;
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    __syncthreads();
    float sum = 0.f;
    for (int j = threadIdx.x; j < nk; j += blockDim.x) sum += expf(s[j] - mx);
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    sum = lane < nw ? red[lane] : 0.f;
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    const float inv = 1.f / sum;
    for (int j = threadIdx.x; j < M; j += blockDim.x) s[j] = j < nk ? expf(s[j] - mx) * inv : 0.f;
    if (lse && threadIdx.x == 0) lse[row] = mx + logf(sum);
}

}  // namespace

// ---- public API -----------------------------------------------------------------------------------

extern "C" size_t attention_cuda_scratch_floats(int B, int N, int H) {
    return (size_t)B * H * N;
}

extern "C" void attention_forward_cuda(float *out, float *lse, const float *q, const float *k,
                                       const float *v, int B, int N, int M, int H, int D,
                                       float scale, int causal) {
    if (B <= 0 || N <= 0 || H <= 0) return;
    CHECK(M > 0);
    Args a = make_args(B, N, M, H, D, scale, causal, {q, k, v});
    const int w = att_warps();
#define ATT_FWD(DP)                                      \
    do {                                                 \
        if (w == 8) launch_fwd<DP, 8>(out, lse, q, k, v, a); \
        else launch_fwd<DP, 4>(out, lse, q, k, v, a);        \
    } while (0)
    ATT_DISPATCH(D, ATT_FWD)
#undef ATT_FWD
}

extern "C" void attention_backward_cuda(float *dq, float *dk, float *dv, float *scratch,
                                        const float *dout, const float *q, const float *k,
                                        const float *v, const float *out, const float *lse,
                                        int B, int N, int M, int H, int D, float scale,
                                        int causal) {
    if (B <= 0 || N <= 0 || H <= 0 || M <= 0 || (!dq && !dk && !dv)) return;
    Args a = make_args(B, N, M, H, D, scale, causal, {q, k, v, dout});
    size_t rows = (size_t)B * N * H;
    attn_bwd_rowdot_kernel<<<(unsigned)((rows + 7) / 8), 256,
                             0, (cudaStream_t)selma_cuda_stream()>>>(scratch, dout, out, B, N, H, D);
    CUDA_CHECK(cudaGetLastError());
    const int w = att_warps();
#define ATT_BWD(DP)                                                                  \
    do {                                                                             \
        if (w == 8) launch_bwd<DP, 8>(dq, dk, dv, scratch, dout, q, k, v, lse, a);    \
        else launch_bwd<DP, 4>(dq, dk, dv, scratch, dout, q, k, v, lse, a);           \
    } while (0)
    ATT_DISPATCH(D, ATT_BWD)
#undef ATT_BWD
}

extern "C" void attention_forward_cuda_naive(float *out, float *lse, const float *q,
                                             const float *k, const float *v, int B, int N,
                                             int M, int H, int D, float scale, int causal) {
    if (B <= 0 || N <= 0 || H <= 0) return;
    CHECK(M > 0);
    CHECK(!causal || M == N);
    scale = scale > 0 ? scale : 1.0f / sqrtf((float)D);
    cublasHandle_t handle = (cublasHandle_t)selma_cublas_handle();
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    const long long HD = (long long)H * D, NM = (long long)N * M;
    float *S = (float *)selma_cuda_workspace((size_t)H * N * M * sizeof(float));
    const float zero = 0.f, one = 1.f;
    for (int b = 0; b < B; b++) {
        const float *qb = q + (size_t)b * N * HD, *kb = k + (size_t)b * M * HD,
                    *vb = v + (size_t)b * M * HD;
        float *ob = out + (size_t)b * N * HD;
        // Row-major S_h (N x M) is column-major S_h^T (M x N) = K_h Q_h^T, where the
        // row-major head slices K_h, Q_h (ld H*D) are column-major K_h^T, Q_h^T.
        // bf16 tensor cores with fp32 accumulation, as the flash kernels.
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            handle, CUBLAS_OP_T, CUBLAS_OP_N, M, N, D, &scale, kb, CUDA_R_32F, (int)HD, D, qb,
            CUDA_R_32F, (int)HD, D, &zero, S, CUDA_R_32F, M, NM, H, CUBLAS_COMPUTE_32F_FAST_16BF,
            CUBLAS_GEMM_DEFAULT));
        attn_naive_softmax_kernel<<<(unsigned)(H * N), 256, 0, st>>>(
            S, lse ? lse + (size_t)b * H * N : nullptr, N, M, causal);
        CUDA_CHECK(cudaGetLastError());
        // Column-major O_h^T (D x N, ld H*D) = V_h^T (D x M) P_h^T (M x N).
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            handle, CUBLAS_OP_N, CUBLAS_OP_N, D, N, M, &one, vb, CUDA_R_32F, (int)HD, D, S,
            CUDA_R_32F, M, NM, &zero, ob, CUDA_R_32F, (int)HD, D, H, CUBLAS_COMPUTE_32F_FAST_16BF,
            CUBLAS_GEMM_DEFAULT));
    }
}
