// lora_linear on the GPU (kernels/lora.h). The rank-R path rides in the base GEMM's
// K loop: out = [inp | scale h] [w | lora_b]^T + b is one bf16 tensor-core GEMM with
// K = C + R (igemm_bf16.cuh), after h = inp lora_a^T (cuBLAS, TF32). The backward's
// dinp = [dout | dh] [w ; lora_a] is the same kernel with K = OC + R.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cublas_gemm.cuh"
#include "kernels/cuda/igemm_bf16.cuh"
#include "kernels/linear.h"
#include "kernels/lora.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

using namespace selma_igemm;
using selma_cublas::gemm_rm;  // TF32 compute

namespace {

cudaStream_t stream() { return (cudaStream_t)selma_cuda_stream(); }

struct LoraParams {
    int M, N, K;  // tokens, output columns, C1 + R
    int C1, R;    // K split: the first C1 columns from (x1, y1), the next R from (x2, y2)
    const float *x1, *x2;  // A: x1 (M, C1) row-major, x2 (M, R) row-major times scale2
    const float *y1, *y2;  // B: see the problem types
    float scale2;
    const float *bias;
    float *out;  // (M, N) row-major
    int atomic;
};

// A[m][k] = k < C1 ? x1[m][k] : scale2 x2[m][k - C1]: K-contiguous rows. V: KC4 with
// 16-byte loads (C1 % 4 == 0, R % 4 == 0, 16-byte aligned x1, x2), else KC1.
template <bool V>
SELMA_HD void load_a_concat(const LoraParams &p, int kbase, int kcol, int mrow, float (&a)[ELEMS]) {
    const int k = kbase + kcol;
    const bool first = k < p.C1, second = !first && k < p.K;
    const float *src = first ? p.x1 + k : p.x2 + (k - p.C1);
    const int ld = first ? p.C1 : p.R;
    const float sc = first ? 1.0f : p.scale2;
    if constexpr (V) {
SELMA_UNROLL
        for (int q = 0; q < 4; q++) {
            const int m = mrow + 32 * q;
            const bool ok = (first || second) && m < p.M;
            float4 v = ok ? ldg4(src + (size_t)m * ld) : float4{};
            v.x *= sc, v.y *= sc, v.z *= sc, v.w *= sc;
            put4(a, q, v, ok);
        }
    } else {
SELMA_UNROLL
        for (int j = 0; j < ELEMS; j++) {
            const int m = mrow + KC_ROWS_STEP * j;
            a[j] = ((first || second) && m < p.M) ? sc * ldg(src + (size_t)m * ld) : 0.0f;
        }
    }
}

// Forward: B[k][n] = k < C ? w[n][k] : lora_b[n][k - C], K-contiguous; out += bias.
template <bool V>
struct LoraFwdProb {
    using Params = LoraParams;
    static constexpr int A_MODE = V ? KC4 : KC1, B_MODE = V ? KC4 : KC1;
    static constexpr bool EPI_N_CONTIG = true;
    int kcol, mrow, nrow;
    SELMA_HD LoraFwdProb(const Params &, int m0, int n0, int tid) {
        kcol = V ? 4 * (tid % 8) : tid % BK;
        mrow = m0 + (V ? tid / 8 : tid / BK);
        nrow = n0 + (V ? tid / 8 : tid / BK);
    }
    SELMA_HD void load(const Params &p, int kbase, float (&a)[ELEMS], float (&bv)[ELEMS]) {
        load_a_concat<V>(p, kbase, kcol, mrow, a);
        const int k = kbase + kcol;
        const bool first = k < p.C1, second = !first && k < p.K;
        const float *src = first ? p.y1 + k : p.y2 + (k - p.C1);
        const int ld = first ? p.C1 : p.R;
        if constexpr (V) {
SELMA_UNROLL
            for (int q = 0; q < 4; q++) {
                const int n = nrow + 32 * q;
                const bool ok = (first || second) && n < p.N;
                put4(bv, q, ok ? ldg4(src + (size_t)n * ld) : float4{}, ok);
            }
        } else {
SELMA_UNROLL
            for (int j = 0; j < ELEMS; j++) {
                const int n = nrow + KC_ROWS_STEP * j;
                bv[j] = ((first || second) && n < p.N) ? ldg(src + (size_t)n * ld) : 0.0f;
            }
        }
    }
    SELMA_HD void epi(const Params &p, int m, int n, float v) {
        float *o = p.out + (size_t)m * p.N + n;
        if (p.atomic) atomic_add(o, v);
        else *o = v + (p.bias ? ldg(p.bias + n) : 0.0f);
    }
};

// Backward data: A = [dout | dh] (scale2 = 1), B[k][n] = k < OC ? w[k][n] :
// lora_a[k - OC][n], contiguous along n (row-contiguous: RC4 with 16-byte loads when
// V, which also needs N % 4 == 0 and aligned y1, y2; else RC1).
template <bool V>
struct LoraDgradProb {
    using Params = LoraParams;
    static constexpr int A_MODE = V ? KC4 : KC1, B_MODE = V ? RC4 : RC1;
    static constexpr bool EPI_N_CONTIG = true;
    int kcol, mrow, ncol, krow;
    SELMA_HD LoraDgradProb(const Params &, int m0, int n0, int tid) {
        kcol = V ? 4 * (tid % 8) : tid % BK;
        mrow = m0 + (V ? tid / 8 : tid / BK);
        ncol = n0 + (V ? 4 * (tid % 32) : tid % BN);
        krow = V ? tid / 32 : tid / BN;
    }
    SELMA_HD void load(const Params &p, int kbase, float (&a)[ELEMS], float (&bv)[ELEMS]) {
        load_a_concat<V>(p, kbase, kcol, mrow, a);
        const bool nv = ncol < p.N;
        if constexpr (V) {
SELMA_UNROLL
            for (int q = 0; q < 4; q++) {
                const int k = kbase + krow + 8 * q;
                const float *src = k < p.C1 ? p.y1 + (size_t)k * p.N : p.y2 + (size_t)(k - p.C1) * p.N;
                const bool ok = nv && k < p.K;
                put4(bv, q, ok ? ldg4(src + ncol) : float4{}, ok);
            }
        } else {
SELMA_UNROLL
            for (int j = 0; j < ELEMS; j++) {
                const int k = kbase + krow + RC_K_STEP * j;
                const float *src = k < p.C1 ? p.y1 + (size_t)k * p.N : p.y2 + (size_t)(k - p.C1) * p.N;
                bv[j] = (nv && k < p.K) ? ldg(src + ncol) : 0.0f;
            }
        }
    }
    SELMA_HD void epi(const Params &p, int m, int n, float v) {
        float *o = p.out + (size_t)m * p.N + n;
        if (p.atomic) atomic_add(o, v);
        else *o = v;
    }
};

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

__global__ void broadcast_rows_kernel(float *out, const float *b, size_t n, int OC) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = b ? b[i % OC] : 0.0f;
}

unsigned grid_for(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b > 4096 ? 4096 : b);
}

// Runs the concatenated-K GEMM, split over K when M*N alone would not fill the chip
// (the output then starts from the bias, or 0, and the blocks add atomically).
template <template <bool> class P>
void run_concat(LoraParams p, bool vec) {
    const int splits = pick_splits(p.M, p.N, p.K, 0);
    if (splits > 1) {
        const size_t n = (size_t)p.M * p.N;
        broadcast_rows_kernel<<<grid_for(n), 256, 0, stream()>>>(p.out, p.bias, n, p.N);
        CUDA_CHECK(cudaGetLastError());
        p.atomic = 1;
    }
    if (vec) launch<P<true>>(p, splits, stream());
    else launch<P<false>>(p, splits, stream());
}

}  // namespace

extern "C" void lora_linear_forward_cuda(float *out, float *h, const float *inp, const float *w,
                                         const float *b, const float *lora_a, const float *lora_b,
                                         float scale, int N, int C, int OC, int R) {
    CHECK(N > 0 && C > 0 && OC > 0 && R >= 0);
    if (R > 0)  // h (N, R) = inp (N, C) @ lora_a^T
        gemm_rm(false, true, N, R, C, 1.0f, inp, C, lora_a, C, 0.0f, h, R);
    LoraParams p{};
    p.M = N, p.N = OC, p.K = C + R, p.C1 = C, p.R = R;
    p.x1 = inp, p.x2 = h, p.y1 = w, p.y2 = lora_b, p.scale2 = scale;
    p.bias = b, p.out = out;
    run_concat<LoraFwdProb>(p, C % 4 == 0 && R % 4 == 0 && aligned16(inp) && aligned16(h) && aligned16(w) &&
                                   aligned16(lora_b));
}

extern "C" void lora_linear_backward_cuda(float *dinp, float *dlora_a, float *dlora_b, float *dh,
                                          const float *dout, const float *inp, const float *h,
                                          const float *w, const float *lora_a, const float *lora_b,
                                          float scale, int N, int C, int OC, int R) {
    CHECK(N > 0 && C > 0 && OC > 0 && R >= 0);
    if (dlora_b && R > 0)  // (OC, R) += scale dout^T (OC, N) @ h (N, R)
        gemm_rm(true, false, OC, R, N, scale, dout, OC, h, R, 1.0f, dlora_b, R);
    if (!dinp && !dlora_a) return;
    if (R > 0) {
        CHECK(dh != NULL);
        // dh (N, R) = scale dout (N, OC) @ lora_b (OC, R)
        gemm_rm(false, false, N, R, OC, scale, dout, OC, lora_b, R, 0.0f, dh, R);
        if (dlora_a)  // (R, C) += dh^T (R, N) @ inp (N, C)
            gemm_rm(true, false, R, C, N, 1.0f, dh, R, inp, C, 1.0f, dlora_a, C);
    }
    if (dinp) {
        LoraParams p{};
        p.M = N, p.N = C, p.K = OC + R, p.C1 = OC, p.R = R;
        p.x1 = dout, p.x2 = dh, p.y1 = w, p.y2 = lora_a, p.scale2 = 1.0f;
        p.out = dinp;
        run_concat<LoraDgradProb>(p, C % 4 == 0 && OC % 4 == 0 && R % 4 == 0 && aligned16(dout) && aligned16(dh) &&
                                         aligned16(w) && aligned16(lora_a));
    }
}

extern "C" void lora_linear_forward_cuda_unfused(float *out, float *h, const float *inp, const float *w,
                                                 const float *b, const float *lora_a, const float *lora_b,
                                                 float scale, int N, int C, int OC, int R) {
    linear_forward_cuda(out, inp, w, b, N, C, OC);
    if (R <= 0) return;
    gemm_rm(false, true, N, R, C, 1.0f, inp, C, lora_a, C, 0.0f, h, R);
    // out (N, OC) += scale h (N, R) @ lora_b^T (R, OC)
    gemm_rm(false, true, N, OC, R, scale, h, R, lora_b, R, 1.0f, out, OC);
}
