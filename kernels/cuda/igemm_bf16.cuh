// A generic bf16 tensor-core GEMM core for float32 operands in global memory, shared
// by conv2d.cu (implicit GEMM: the im2col gather happens in the tile loaders) and
// lora.cu (out = [inp | scale h] [W | B]^T). Private to kernels/cuda/.
//
//   C (M x N) = A (M x K) B (K x N), float accumulate.
//
// Block tile BM x BN x BK = 128 x 128 x 32, 256 threads = 8 warps as 2 (M) x 4 (N),
// each warp 64 x 32 = 4 x 2 WMMA 16x16x16 bf16 fragments (64 float accumulators
// per thread). Each K step, every thread gathers 16 A and 16 B floats from global
// memory into registers (the problem's loader: any gather, masked to 0 outside the
// matrix), converts them to bf16 and stores them into one of two shared-memory
// stages; the next step's loads are issued before the current stage's MMAs, so the
// global latency hides behind the tensor-core work (register-staged double buffer,
// one __syncthreads per K step).
//
// Shared-memory layout of a stage follows the operand's contiguous direction in
// global memory, so that a warp's 32 loads are consecutive addresses. Four modes say
// which tile elements thread t gathers, r[0..15] in this order:
//   KC1  K-contiguous,   scalar:  k = t % 32,           rows t/32 + 8 j      (j < 16)
//   RC1  row-contiguous, scalar:  row = t % 128,        k = t/128 + 2 j      (j < 16)
//   KC4  K-contiguous,   by 4:    k = 4 (t % 8) + e,    rows t/8 + 32 q      (r[4q + e])
//   RC4  row-contiguous, by 4:    row = 4 (t % 32) + e, k = t/32 + 8 q       (r[4q + e])
// The by-4 modes let a loader share its index arithmetic over 4 neighbours and use
// one 16-byte load where the 4 are contiguous and aligned; they store 4 bf16 at once
// (8 bytes). K-contiguous tiles are [rows][BK + 8], row-contiguous ones [BK][rows + 8]:
// the 8-element (16-byte) pad makes ldmatrix rows fall in distinct banks and keeps
// every fragment pointer 32-byte aligned. A K-contiguous A is a row_major matrix_a, a
// row-contiguous A a col_major one; a K-contiguous B is a col_major matrix_b, an
// N-contiguous B a row_major one.
//
// Epilogue: each warp stages one 16x16 accumulator at a time through 1 KB of shared
// memory (reusing the operand stages) and calls the problem's epi(m, n, v) for the
// in-range elements, lanes along the output's contiguous direction.
//
// Split-K: gridDim.z splits the K tiles into contiguous ranges; the problem's epi
// must then accumulate atomically (Params::atomic), its caller having initialized
// the output.
//
// A problem type P provides:
//   static constexpr int A_MODE, B_MODE    KC1, RC1, KC4 or RC4 (above)
//   static constexpr bool EPI_N_CONTIG     output contiguous along n (else along m)
//   struct Params { int M, N, K; ... }     (passed by value to the kernel)
//   __device__ P(const Params &, int m0, int n0, int tid)
//   __device__ void load(const Params &, int kbase, float (&a)[16], float (&b)[16])
//   __device__ void epi(const Params &, int m, int n, float v)    m < M, n < N
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <type_traits>

#include "runtime/error.h"

namespace selma_igemm {

constexpr int BM = 128, BN = 128, BK = 32, NT = 256, PAD = 8;
constexpr int ELEMS = BM * BK / NT;  // 16 per thread per operand per K step
constexpr int KC_ROWS_STEP = NT / BK;  // 8
constexpr int RC_K_STEP = NT / BM;     // 2
constexpr int KC_HALVES = BM * (BK + PAD);  // 5120
constexpr int RC_HALVES = BK * (BM + PAD);  // 4352
constexpr int STAGE_HALVES = KC_HALVES > RC_HALVES ? KC_HALVES : RC_HALVES;
static_assert(BM == BN, "the loaders' thread layouts assume square block tiles");
static_assert(ELEMS * NT == BN * BK, "B tile elements");
static_assert(8 * 256 * sizeof(float) <= 2 * STAGE_HALVES * sizeof(__nv_bfloat16),
              "epilogue staging must fit in the A stages");

// Problem types mark their members SELMA_HD so that a host emulation of the kernel
// (the GPU-less check of the index arithmetic) can run them; ldg and atomic_add
// fall back to plain memory accesses on the host.
#define SELMA_HD __host__ __device__ __forceinline__
#ifdef __CUDA_ARCH__
#define SELMA_UNROLL _Pragma("unroll")
#else
#define SELMA_UNROLL
#endif
SELMA_HD float ldg(const float *p) {
#ifdef __CUDA_ARCH__
    return __ldg(p);
#else
    return *p;
#endif
}
SELMA_HD void atomic_add(float *p, float v) {
#ifdef __CUDA_ARCH__
    atomicAdd(p, v);
#else
    *p += v;
#endif
}

SELMA_HD float4 ldg4(const float *p) {  // p 16-byte aligned
#ifdef __CUDA_ARCH__
    return __ldg(reinterpret_cast<const float4 *>(p));
#else
    return *reinterpret_cast<const float4 *>(p);
#endif
}
SELMA_HD void put4(float (&r)[ELEMS], int q, float4 v, bool ok) {
    r[4 * q + 0] = ok ? v.x : 0.0f;
    r[4 * q + 1] = ok ? v.y : 0.0f;
    r[4 * q + 2] = ok ? v.z : 0.0f;
    r[4 * q + 3] = ok ? v.w : 0.0f;
}

enum { RC1 = 0, KC1 = 1, RC4 = 2, KC4 = 3 };
constexpr bool mode_kc(int mode) { return mode & 1; }

// Stores a thread's 16 gathered floats into a stage (T = __nv_bfloat16 on the GPU;
// float in the host emulation).
template <int MODE, class T>
SELMA_HD void store_tile(T *s, const float (&r)[ELEMS], int tid) {
    if constexpr (MODE == KC1) {
        const int k = tid % BK, r0 = tid / BK;
SELMA_UNROLL
        for (int j = 0; j < ELEMS; j++) s[(r0 + KC_ROWS_STEP * j) * (BK + PAD) + k] = T(r[j]);
    } else if constexpr (MODE == RC1) {
        const int row = tid % BM, k0 = tid / BM;
SELMA_UNROLL
        for (int j = 0; j < ELEMS; j++) s[(k0 + RC_K_STEP * j) * (BM + PAD) + row] = T(r[j]);
    } else {
        static_assert(MODE == KC4 || MODE == RC4, "mode");
SELMA_UNROLL
        for (int q = 0; q < 4; q++) {
            const int off = MODE == KC4 ? (tid / 8 + 32 * q) * (BK + PAD) + 4 * (tid % 8)
                                        : (tid / 32 + 8 * q) * (BM + PAD) + 4 * (tid % 32);
            if constexpr (std::is_same_v<T, __nv_bfloat16>) {  // one 8-byte store
                __nv_bfloat162 lo = __floats2bfloat162_rn(r[4 * q], r[4 * q + 1]);
                __nv_bfloat162 hi = __floats2bfloat162_rn(r[4 * q + 2], r[4 * q + 3]);
                uint2 v;
                v.x = *reinterpret_cast<unsigned *>(&lo);
                v.y = *reinterpret_cast<unsigned *>(&hi);
                *reinterpret_cast<uint2 *>(s + off) = v;
            } else {
                for (int e = 0; e < 4; e++) s[off + e] = T(r[4 * q + e]);
            }
        }
    }
}

template <class P>
#ifndef SELMA_IGEMM_MIN_BLOCKS
#define SELMA_IGEMM_MIN_BLOCKS 1
#endif
__global__ void __launch_bounds__(NT, SELMA_IGEMM_MIN_BLOCKS) igemm_bf16_kernel(const typename P::Params prm) {
    using namespace nvcuda;
    __shared__ __align__(128) __nv_bfloat16 smem[4 * STAGE_HALVES];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 2, wn = warp & 3;  // 2 x 4 warps
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int nkt = (prm.K + BK - 1) / BK;
    const int per = (nkt + (int)gridDim.z - 1) / (int)gridDim.z;
    const int kt0 = (int)blockIdx.z * per;
    const int kt1 = min(nkt, kt0 + per);
    if (kt0 >= kt1) return;  // whole block: no barrier is skipped by part of it

    constexpr bool A_KC = mode_kc(P::A_MODE), B_KC = mode_kc(P::B_MODE);
    using LayA = std::conditional_t<A_KC, wmma::row_major, wmma::col_major>;
    using LayB = std::conditional_t<B_KC, wmma::col_major, wmma::row_major>;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

    P p(prm, m0, n0, tid);
    float ra[ELEMS], rb[ELEMS];
    p.load(prm, kt0 * BK, ra, rb);
    store_tile<P::A_MODE>(smem, ra, tid);
    store_tile<P::B_MODE>(smem + 2 * STAGE_HALVES, rb, tid);
    __syncthreads();

    for (int kt = kt0; kt < kt1; kt++) {
        const int buf = (kt - kt0) & 1;
        const bool more = kt + 1 < kt1;
        if (more) p.load(prm, (kt + 1) * BK, ra, rb);  // in flight during the MMAs
        const __nv_bfloat16 *sA = smem + buf * STAGE_HALVES;
        const __nv_bfloat16 *sB = smem + (2 + buf) * STAGE_HALVES;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LayA> fa[4];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LayB> fb[2];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int mr = wm * 64 + i * 16;
                if constexpr (A_KC)
                    wmma::load_matrix_sync(fa[i], sA + mr * (BK + PAD) + kk, BK + PAD);
                else
                    wmma::load_matrix_sync(fa[i], sA + kk * (BM + PAD) + mr, BM + PAD);
            }
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int nc = wn * 32 + j * 16;
                if constexpr (B_KC)
                    wmma::load_matrix_sync(fb[j], sB + nc * (BK + PAD) + kk, BK + PAD);
                else
                    wmma::load_matrix_sync(fb[j], sB + kk * (BN + PAD) + nc, BN + PAD);
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        if (more) {
            store_tile<P::A_MODE>(smem + (buf ^ 1) * STAGE_HALVES, ra, tid);
            store_tile<P::B_MODE>(smem + (2 + (buf ^ 1)) * STAGE_HALVES, rb, tid);
        }
        __syncthreads();  // the stage just written is complete; the one read is free
    }

    // Epilogue: the loop ended on a barrier, so the stages may be reused.
    float *scr = reinterpret_cast<float *>(smem) + warp * 256;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) {
            wmma::store_matrix_sync(scr, acc[i][j], 16,
                                    P::EPI_N_CONTIG ? wmma::mem_row_major : wmma::mem_col_major);
            __syncwarp();
#pragma unroll
            for (int t = 0; t < 8; t++) {
                const int e = lane + 32 * t;
                const int r = P::EPI_N_CONTIG ? e >> 4 : e & 15;
                const int c = P::EPI_N_CONTIG ? e & 15 : e >> 4;
                const int m = m0 + wm * 64 + i * 16 + r, n = n0 + wn * 32 + j * 16 + c;
                if (m < prm.M && n < prm.N) p.epi(prm, m, n, scr[e]);
            }
            __syncwarp();
        }
}

// Number of SMs of the current device (cached).
static inline int sm_count() {
    static int n = 0;
    if (!n) {
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    }
    return n;
}

// K splits so that a small-M*N problem still fills the chip: about 2 blocks per SM,
// each split keeping >= 8 K tiles, at most 32 splits. `force` > 0 overrides.
static inline int pick_splits(int M, int N, int K, int force) {
    const long blocks = (long)((M + BM - 1) / BM) * ((N + BN - 1) / BN);
    const int nkt = (K + BK - 1) / BK;
    int s = 1;
    if (force > 0) {
        s = force;
    } else {
        const long target = 2L * sm_count();
        if (blocks < target) s = (int)((target + blocks - 1) / blocks);
        if (s > nkt / 8) s = nkt / 8;
        if (s > 32) s = 32;
    }
    if (s > nkt) s = nkt;
    return s < 1 ? 1 : s;
}

template <class P>
static inline void launch(const typename P::Params &prm, int splits, cudaStream_t st) {
    dim3 grid((unsigned)((prm.M + BM - 1) / BM), (unsigned)((prm.N + BN - 1) / BN), (unsigned)splits);
    igemm_bf16_kernel<P><<<grid, NT, 0, st>>>(prm);
    CUDA_CHECK(cudaGetLastError());
}

}  // namespace selma_igemm
