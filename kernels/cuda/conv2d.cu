// conv2d on the GPU: implicit GEMM on bf16 tensor cores (igemm_bf16.cuh) and a cuDNN
// baseline behind the same API (kernels/conv2d.h).
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/conv2d.h"
#include "kernels/cuda/igemm_bf16.cuh"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#ifdef SELMA_CUDNN
#include <cudnn.h>
#endif

using namespace selma_igemm;

extern "C" {
conv2d_cuda_impl_kind conv2d_cuda_impl = CONV2D_CUDA_IGEMM;
int conv2d_cuda_splitk = 0;
int conv2d_cuda_vec = 1;
}

namespace {

cudaStream_t stream() { return (cudaStream_t)selma_cuda_stream(); }

struct ConvParams {
    int M, N, K;  // the GEMM
    int B, C, H, W, OC, Ho, Wo, Ks, S, P;
    const float *x;  // forward: inp   dgrad: dout  wgrad: dout
    const float *y;  // forward: w     dgrad: w     wgrad: inp
    const float *bias;
    float *out;
    int atomic;  // split-K: the output was initialized, add atomically
};

// Each problem comes in two variants: V = false, scalar gathers (RC1 / KC1, any
// shape); V = true, the by-4 modes (RC4 / KC4): 4 neighbouring outputs share one row
// of the image (the launcher picks it only when the row length is a multiple of 4),
// and operands contiguous in memory are read 16 bytes at a time (16-byte aligned
// rows: the launcher checks the pointer and the row length).

// Forward. A[m][k] = inp[b, c, oh*S-P+ki, ow*S-P+kj], m = (b, oh, ow), k = (c, ki, kj):
// contiguous along m (ow). B[k][n] = w[n][k]: contiguous along k.
// V: Wo % 4 == 0 (4 consecutive m = 4 consecutive ow of one row), K % 4 == 0.
template <int KS, int ST, bool V>
struct FwdProb {
    using Params = ConvParams;
    static constexpr int A_MODE = V ? RC4 : RC1, B_MODE = V ? KC4 : KC1;
    static constexpr bool EPI_N_CONTIG = false;
    const float *abase;
    int ih0, iw0, krow, kcol, nrow;
    bool mvalid;
    SELMA_HD FwdProb(const Params &p, int m0, int n0, int tid) {
        const int S = ST ? ST : p.S;
        int m = m0 + (V ? 4 * (tid % 32) : tid % BM);
        mvalid = m < p.M;
        if (!mvalid) m = 0;
        const int hwo = p.Ho * p.Wo, b = m / hwo, r = m - b * hwo, oh = r / p.Wo, ow = r - oh * p.Wo;
        ih0 = oh * S - p.P;
        iw0 = ow * S - p.P;
        abase = p.x + (size_t)b * p.C * p.H * p.W;
        krow = V ? tid / 32 : tid / BM;
        kcol = V ? 4 * (tid % 8) : tid % BK;
        nrow = n0 + (V ? tid / 8 : tid / BK);
    }
    SELMA_HD void load(const Params &p, int kbase, float (&a)[ELEMS], float (&bv)[ELEMS]) {
        const int Ks = KS ? KS : p.Ks, KK = Ks * Ks;
        if constexpr (V) {
            const int S = ST ? ST : p.S;
SELMA_UNROLL
            for (int q = 0; q < 4; q++) {
                const int k = kbase + krow + 8 * q;
                const int c = k / KK, kk = k - c * KK, ki = kk / Ks, kj = kk - ki * Ks;
                const int ih = ih0 + ki;
                const bool rok = mvalid && k < p.K && (unsigned)ih < (unsigned)p.H;
                const float *row = abase + ((size_t)c * p.H + ih) * p.W;
SELMA_UNROLL
                for (int e = 0; e < 4; e++) {
                    const int iw = iw0 + e * S + kj;
                    a[4 * q + e] = (rok && (unsigned)iw < (unsigned)p.W) ? ldg(row + iw) : 0.0f;
                }
            }
            const int k = kbase + kcol;  // K % 4 == 0: k < K covers k + 3
SELMA_UNROLL
            for (int q = 0; q < 4; q++) {
                const int n = nrow + 32 * q;
                const bool ok = n < p.N && k < p.K;
                put4(bv, q, ok ? ldg4(p.y + (size_t)n * p.K + k) : float4{}, ok);
            }
        } else {
SELMA_UNROLL
            for (int j = 0; j < ELEMS; j++) {
                const int k = kbase + krow + RC_K_STEP * j;
                const int c = k / KK, kk = k - c * KK, ki = kk / Ks, kj = kk - ki * Ks;
                const int ih = ih0 + ki, iw = iw0 + kj;
                const bool ok = mvalid && k < p.K && (unsigned)ih < (unsigned)p.H && (unsigned)iw < (unsigned)p.W;
                a[j] = ok ? ldg(abase + ((size_t)c * p.H + ih) * p.W + iw) : 0.0f;
            }
            const int k = kbase + kcol;
SELMA_UNROLL
            for (int j = 0; j < ELEMS; j++) {
                const int n = nrow + KC_ROWS_STEP * j;
                bv[j] = (n < p.N && k < p.K) ? ldg(p.y + (size_t)n * p.K + k) : 0.0f;
            }
        }
    }
    SELMA_HD void epi(const Params &p, int m, int n, float v) {
        const int hwo = p.Ho * p.Wo, b = m / hwo, r = m - b * hwo;
        float *o = p.out + ((size_t)b * p.OC + n) * hwo + r;
        if (p.atomic) atomic_add(o, v);
        else *o = v + (p.bias ? ldg(p.bias + n) : 0.0f);
    }
};

// Backward data, the transposed problem: m = (b, ih, iw), n = c, k = (oc, ki, kj):
// A[m][k] = dout[b, oc, oh, ow] where ih = oh*S - P + ki (only exact multiples of S),
// contiguous along m; B[k][n] = w[oc, n, ki, kj]: contiguous along k (within ki, kj).
// V: W % 4 == 0 (4 consecutive m = 4 consecutive iw of one row); B stays scalar.
template <int KS, int ST, bool V>
struct DgradProb {
    using Params = ConvParams;
    static constexpr int A_MODE = V ? RC4 : RC1, B_MODE = KC1;
    static constexpr bool EPI_N_CONTIG = false;
    const float *abase;
    int ihp, iwp, krow, kcol, nrow;
    bool mvalid;
    SELMA_HD DgradProb(const Params &p, int m0, int n0, int tid) {
        int m = m0 + (V ? 4 * (tid % 32) : tid % BM);
        mvalid = m < p.M;
        if (!mvalid) m = 0;
        const int hw = p.H * p.W, b = m / hw, r = m - b * hw, ih = r / p.W, iw = r - ih * p.W;
        ihp = ih + p.P;
        iwp = iw + p.P;
        abase = p.x + (size_t)b * p.OC * p.Ho * p.Wo;
        krow = V ? tid / 32 : tid / BM;
        kcol = tid % BK;
        nrow = n0 + tid / BK;
    }
    SELMA_HD void load(const Params &p, int kbase, float (&a)[ELEMS], float (&bv)[ELEMS]) {
        const int Ks = KS ? KS : p.Ks, KK = Ks * Ks, S = ST ? ST : p.S;
        if constexpr (V) {
SELMA_UNROLL
            for (int q = 0; q < 4; q++) {
                const int k = kbase + krow + 8 * q;
                const int oc = k / KK, kk = k - oc * KK, ki = kk / Ks, kj = kk - ki * Ks;
                const int ohn = ihp - ki, oh = ohn / S;
                const bool rok = mvalid && k < p.K && ohn >= 0 && oh * S == ohn && oh < p.Ho;
                const float *row = abase + ((size_t)oc * p.Ho + oh) * p.Wo;
SELMA_UNROLL
                for (int e = 0; e < 4; e++) {
                    const int own = iwp + e - kj, ow = own / S;
                    const bool ok = rok && own >= 0 && ow * S == own && ow < p.Wo;
                    a[4 * q + e] = ok ? ldg(row + ow) : 0.0f;
                }
            }
        } else {
SELMA_UNROLL
            for (int j = 0; j < ELEMS; j++) {
                const int k = kbase + krow + RC_K_STEP * j;
                const int oc = k / KK, kk = k - oc * KK, ki = kk / Ks, kj = kk - ki * Ks;
                const int ohn = ihp - ki, own = iwp - kj;
                const int oh = ohn / S, ow = own / S;
                const bool ok = mvalid && k < p.K && ohn >= 0 && own >= 0 && oh * S == ohn && ow * S == own &&
                                oh < p.Ho && ow < p.Wo;
                a[j] = ok ? ldg(abase + ((size_t)oc * p.Ho + oh) * p.Wo + ow) : 0.0f;
            }
        }
        const int k = kbase + kcol;
        const int oc = k / KK, kk = k - oc * KK;
        const float *wb = p.y + (size_t)oc * p.N * KK + kk;
SELMA_UNROLL
        for (int j = 0; j < ELEMS; j++) {
            const int n = nrow + KC_ROWS_STEP * j;
            bv[j] = (n < p.N && k < p.K) ? ldg(wb + (size_t)n * KK) : 0.0f;
        }
    }
    SELMA_HD void epi(const Params &p, int m, int n, float v) {
        const int hw = p.H * p.W, b = m / hw, r = m - b * hw;
        float *o = p.out + ((size_t)b * p.C + n) * hw + r;
        if (p.atomic) atomic_add(o, v);
        else *o = v;
    }
};

// Backward weight: m = oc, n = (c, ki, kj), k = (b, oh, ow):
// A[m][k] = dout[b, m, oh, ow] and B[k][n] = inp[b, c, oh*S-P+ki, ow*S-P+kj], both
// contiguous along k (ow). dw (OC, C*K*K) += C, contiguous along n.
// V: Wo % 4 == 0 (4 consecutive k = 4 consecutive ow of one row; A read 16 bytes at
// a time).
template <int KS, int ST, bool V>
struct WgradProb {
    using Params = ConvParams;
    static constexpr int A_MODE = V ? KC4 : KC1, B_MODE = V ? KC4 : KC1;
    static constexpr bool EPI_N_CONTIG = true;
    int kcol, mrow, nrow;
    SELMA_HD WgradProb(const Params &p, int m0, int n0, int tid) {
        kcol = V ? 4 * (tid % 8) : tid % BK;
        mrow = m0 + (V ? tid / 8 : tid / BK);
        nrow = n0 + (V ? tid / 8 : tid / BK);
    }
    SELMA_HD void load(const Params &p, int kbase, float (&a)[ELEMS], float (&bv)[ELEMS]) {
        const int Ks = KS ? KS : p.Ks, KK = Ks * Ks, S = ST ? ST : p.S;
        const int k = kbase + kcol;
        const bool kv = k < p.K;
        const int hwo = p.Ho * p.Wo, kk0 = kv ? k : 0;
        const int b = kk0 / hwo, hw = kk0 - b * hwo, oh = hw / p.Wo, ow = hw - oh * p.Wo;
        const float *gb = p.x + (size_t)b * p.OC * hwo + hw;
        if constexpr (V) {
SELMA_UNROLL
            for (int q = 0; q < 4; q++) {
                const int m = mrow + 32 * q;
                const bool ok = kv && m < p.M;
                put4(a, q, ok ? ldg4(gb + (size_t)m * hwo) : float4{}, ok);
            }
            const int ih0 = oh * S - p.P, iw0 = ow * S - p.P;
            const float *xb = p.y + (size_t)b * p.C * p.H * p.W;
SELMA_UNROLL
            for (int q = 0; q < 4; q++) {
                const int n = nrow + 32 * q;
                const int c = n / KK, kk = n - c * KK, ki = kk / Ks, kj = kk - ki * Ks;
                const int ih = ih0 + ki;
                const bool rok = kv && n < p.N && (unsigned)ih < (unsigned)p.H;
                const float *row = xb + ((size_t)c * p.H + ih) * p.W;
SELMA_UNROLL
                for (int e = 0; e < 4; e++) {
                    const int iw = iw0 + e * S + kj;
                    bv[4 * q + e] = (rok && (unsigned)iw < (unsigned)p.W) ? ldg(row + iw) : 0.0f;
                }
            }
        } else {
SELMA_UNROLL
            for (int j = 0; j < ELEMS; j++) {
                const int m = mrow + KC_ROWS_STEP * j;
                a[j] = (kv && m < p.M) ? ldg(gb + (size_t)m * hwo) : 0.0f;
            }
            const int ih0 = oh * S - p.P, iw0 = ow * S - p.P;
            const float *xb = p.y + (size_t)b * p.C * p.H * p.W;
SELMA_UNROLL
            for (int j = 0; j < ELEMS; j++) {
                const int n = nrow + KC_ROWS_STEP * j;
                const int c = n / KK, kk = n - c * KK, ki = kk / Ks, kj = kk - ki * Ks;
                const int ih = ih0 + ki, iw = iw0 + kj;
                const bool ok = kv && n < p.N && (unsigned)ih < (unsigned)p.H && (unsigned)iw < (unsigned)p.W;
                bv[j] = ok ? ldg(xb + ((size_t)c * p.H + ih) * p.W + iw) : 0.0f;
            }
        }
    }
    SELMA_HD void epi(const Params &p, int m, int n, float v) {
        float *o = p.out + (size_t)m * p.N + n;
        if (p.atomic) atomic_add(o, v);
        else *o += v;
    }
};

// out (B, OC, HW) = bias[oc] or 0: the split-K forward's starting value.
__global__ void fill_bias_kernel(float *out, const float *bias, size_t n, int OC, int HW) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = bias ? bias[(i / HW) % OC] : 0.0f;
}

// db[oc] += sum over b, hw of dout[b, oc, hw]: one block per output channel.
__global__ void bias_grad_kernel(float *db, const float *dout, int B, int OC, int HW) {
    const int oc = blockIdx.x;
    float s = 0.0f;
    for (int b = 0; b < B; b++) {
        const float *g = dout + ((size_t)b * OC + oc) * HW;
        for (int i = threadIdx.x; i < HW; i += blockDim.x) s += g[i];
    }
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (threadIdx.x == 0) db[oc] += s;
    }
}

unsigned fill_blocks(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b > 4096 ? 4096 : b);
}

ConvParams make_params(const conv2d_shape *s) {
    CHECK(conv2d_shape_check(s) == 0);
    ConvParams p{};
    p.B = s->B, p.C = s->C, p.H = s->H, p.W = s->W, p.OC = s->OC;
    p.Ho = conv2d_out_h(s), p.Wo = conv2d_out_w(s);
    p.Ks = s->K, p.S = s->stride, p.P = s->pad;
    return p;
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// The compile-time specializations: 3x3 stride 1 and 2, 1x1 stride 1; any other
// kernel size or stride takes the run-time one. `vec` picks the by-4 variant.
template <template <int, int, bool> class Prob, bool V>
void dispatch_ks(const ConvParams &p, int splits) {
    cudaStream_t st = stream();
    if (p.Ks == 3 && p.S == 1) launch<Prob<3, 1, V>>(p, splits, st);
    else if (p.Ks == 3 && p.S == 2) launch<Prob<3, 2, V>>(p, splits, st);
    else if (p.Ks == 1 && p.S == 1) launch<Prob<1, 1, V>>(p, splits, st);
    else launch<Prob<0, 0, V>>(p, splits, st);
}
template <template <int, int, bool> class Prob>
void dispatch(const ConvParams &p, int splits, bool vec) {
    if (vec && conv2d_cuda_vec) dispatch_ks<Prob, true>(p, splits);
    else dispatch_ks<Prob, false>(p, splits);
}

}  // namespace

extern "C" void conv2d_forward_igemm(float *out, const float *inp, const float *w, const float *b,
                                     const conv2d_shape *s) {
    ConvParams p = make_params(s);
    p.M = s->B * p.Ho * p.Wo, p.N = s->OC, p.K = s->C * s->K * s->K;
    p.x = inp, p.y = w, p.bias = b, p.out = out;
    const int splits = pick_splits(p.M, p.N, p.K, conv2d_cuda_splitk);
    if (splits > 1) {
        const size_t n = (size_t)p.M * p.N;
        fill_bias_kernel<<<fill_blocks(n), 256, 0, stream()>>>(out, b, n, p.OC, p.Ho * p.Wo);
        CUDA_CHECK(cudaGetLastError());
        p.atomic = 1;
    }
    dispatch<FwdProb>(p, splits, p.Wo % 4 == 0 && p.K % 4 == 0 && aligned16(w));
}

extern "C" void conv2d_backward_data_igemm(float *dinp, const float *dout, const float *w,
                                           const conv2d_shape *s) {
    if (!dinp) return;
    ConvParams p = make_params(s);
    p.M = s->B * s->H * s->W, p.N = s->C, p.K = s->OC * s->K * s->K;
    p.x = dout, p.y = w, p.out = dinp;
    const int splits = pick_splits(p.M, p.N, p.K, conv2d_cuda_splitk);
    if (splits > 1) {
        CUDA_CHECK(cudaMemsetAsync(dinp, 0, (size_t)p.M * p.N * sizeof(float), stream()));
        p.atomic = 1;
    }
    dispatch<DgradProb>(p, splits, p.W % 4 == 0);
}

extern "C" void conv2d_backward_weight_igemm(float *dw, float *db, const float *dout, const float *inp,
                                             const conv2d_shape *s) {
    ConvParams p = make_params(s);
    if (db) {
        bias_grad_kernel<<<s->OC, 256, 0, stream()>>>(db, dout, s->B, s->OC, p.Ho * p.Wo);
        CUDA_CHECK(cudaGetLastError());
    }
    if (!dw) return;
    p.M = s->OC, p.N = s->C * s->K * s->K, p.K = s->B * p.Ho * p.Wo;
    p.x = dout, p.y = inp, p.out = dw;
    const int splits = pick_splits(p.M, p.N, p.K, conv2d_cuda_splitk);
    p.atomic = splits > 1;  // dw accumulates: atomics add onto the caller's values
    dispatch<WgradProb>(p, splits, p.Wo % 4 == 0 && aligned16(dout));
}

// ---------------------------------------------------------------------------------
// cuDNN baseline: float32 NCHW tensors, the legacy convolution API.
#ifdef SELMA_CUDNN
namespace {

cudnnHandle_t cudnn_handle() {
    static cudnnHandle_t h = nullptr;
    if (!h) CUDNN_CHECK(cudnnCreate(&h));
    CUDNN_CHECK(cudnnSetStream(h, stream()));
    return h;
}

struct CudnnConv {
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    explicit CudnnConv(const conv2d_shape *s) {
        CHECK(conv2d_shape_check(s) == 0);
        CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
        CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
        CUDNN_CHECK(cudnnCreateTensorDescriptor(&bias));
        CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
        CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->B, s->C, s->H, s->W));
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->B, s->OC,
                                               conv2d_out_h(s), conv2d_out_w(s)));
        CUDNN_CHECK(cudnnSetTensor4dDescriptor(bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s->OC, 1, 1));
        CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s->OC, s->C, s->K, s->K));
        CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, s->pad, s->pad, s->stride, s->stride, 1, 1,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
        CUDNN_CHECK(cudnnSetConvolutionMathType(conv, CUDNN_DEFAULT_MATH));
    }
    ~CudnnConv() {
        cudnnDestroyConvolutionDescriptor(conv);
        cudnnDestroyFilterDescriptor(w);
        cudnnDestroyTensorDescriptor(bias);
        cudnnDestroyTensorDescriptor(y);
        cudnnDestroyTensorDescriptor(x);
    }
};

// The heuristics' first choice whose workspace fits 1 GiB, cached for the last shape
// of each direction (the benchmark and training loops repeat shapes).
struct AlgoCache {
    conv2d_shape s;
    int valid, algo;
};

bool same_shape(const conv2d_shape &a, const conv2d_shape *b) {
    return a.B == b->B && a.C == b->C && a.H == b->H && a.W == b->W && a.OC == b->OC && a.K == b->K &&
           a.stride == b->stride && a.pad == b->pad;
}

const size_t kMaxWorkspace = (size_t)1 << 30;

}  // namespace

extern "C" void conv2d_forward_cudnn(float *out, const float *inp, const float *w, const float *b,
                                     const conv2d_shape *s) {
    static AlgoCache cache;
    cudnnHandle_t h = cudnn_handle();
    CudnnConv d(s);
    if (!cache.valid || !same_shape(cache.s, s)) {
        cudnnConvolutionFwdAlgoPerf_t perf[8];
        int n = 0;
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, 8, &n, perf));
        int pick = -1;
        for (int i = 0; i < n && pick < 0; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace) pick = i;
        CHECK(pick >= 0);
        cache = AlgoCache{*s, 1, (int)perf[pick].algo};
    }
    const cudnnConvolutionFwdAlgo_t algo = (cudnnConvolutionFwdAlgo_t)cache.algo;
    size_t ws = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, algo, &ws));
    void *wsp = ws ? selma_cuda_workspace(ws) : nullptr;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CHECK(cudnnConvolutionForward(h, &one, d.x, inp, d.w, w, d.conv, algo, wsp, ws, &zero, d.y, out));
    if (b) CUDNN_CHECK(cudnnAddTensor(h, &one, d.bias, b, &one, d.y, out));
}

extern "C" void conv2d_backward_data_cudnn(float *dinp, const float *dout, const float *w,
                                           const conv2d_shape *s) {
    if (!dinp) return;
    static AlgoCache cache;
    cudnnHandle_t h = cudnn_handle();
    CudnnConv d(s);
    if (!cache.valid || !same_shape(cache.s, s)) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[8];
        int n = 0;
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, 8, &n, perf));
        int pick = -1;
        for (int i = 0; i < n && pick < 0; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace) pick = i;
        CHECK(pick >= 0);
        cache = AlgoCache{*s, 1, (int)perf[pick].algo};
    }
    const cudnnConvolutionBwdDataAlgo_t algo = (cudnnConvolutionBwdDataAlgo_t)cache.algo;
    size_t ws = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.conv, d.x, algo, &ws));
    void *wsp = ws ? selma_cuda_workspace(ws) : nullptr;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, d.w, w, d.y, dout, d.conv, algo, wsp, ws, &zero, d.x, dinp));
}

extern "C" void conv2d_backward_weight_cudnn(float *dw, float *db, const float *dout, const float *inp,
                                             const conv2d_shape *s) {
    static AlgoCache cache;
    cudnnHandle_t h = cudnn_handle();
    CudnnConv d(s);
    const float one = 1.0f;
    if (db) CUDNN_CHECK(cudnnConvolutionBackwardBias(h, &one, d.y, dout, &one, d.bias, db));
    if (!dw) return;
    if (!cache.valid || !same_shape(cache.s, s)) {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[8];
        int n = 0;
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, 8, &n, perf));
        int pick = -1;
        for (int i = 0; i < n && pick < 0; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace) pick = i;
        CHECK(pick >= 0);
        cache = AlgoCache{*s, 1, (int)perf[pick].algo};
    }
    const cudnnConvolutionBwdFilterAlgo_t algo = (cudnnConvolutionBwdFilterAlgo_t)cache.algo;
    size_t ws = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.conv, d.w, algo, &ws));
    void *wsp = ws ? selma_cuda_workspace(ws) : nullptr;
    // beta = 1: dw accumulates.
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, d.x, inp, d.y, dout, d.conv, algo, wsp, ws, &one, d.w, dw));
}

extern "C" int conv2d_cuda_have_cudnn(void) { return 1; }
#else
extern "C" void conv2d_forward_cudnn(float *, const float *, const float *, const float *, const conv2d_shape *) {
    err_fatal("conv2d_forward_cudnn", __func__, __FILE__, __LINE__, "built without cuDNN");
}
extern "C" void conv2d_backward_data_cudnn(float *, const float *, const float *, const conv2d_shape *) {
    err_fatal("conv2d_backward_data_cudnn", __func__, __FILE__, __LINE__, "built without cuDNN");
}
extern "C" void conv2d_backward_weight_cudnn(float *, float *, const float *, const float *, const conv2d_shape *) {
    err_fatal("conv2d_backward_weight_cudnn", __func__, __FILE__, __LINE__, "built without cuDNN");
}
extern "C" int conv2d_cuda_have_cudnn(void) { return 0; }
#endif

// ---------------------------------------------------------------------------------
// The dispatching API.
static bool use_cudnn() { return conv2d_cuda_impl == CONV2D_CUDA_CUDNN && conv2d_cuda_have_cudnn(); }

extern "C" void conv2d_forward_cuda(float *out, const float *inp, const float *w, const float *b,
                                    const conv2d_shape *s) {
    if (use_cudnn()) conv2d_forward_cudnn(out, inp, w, b, s);
    else conv2d_forward_igemm(out, inp, w, b, s);
}

extern "C" void conv2d_backward_data_cuda(float *dinp, const float *dout, const float *w,
                                          const conv2d_shape *s) {
    if (use_cudnn()) conv2d_backward_data_cudnn(dinp, dout, w, s);
    else conv2d_backward_data_igemm(dinp, dout, w, s);
}

extern "C" void conv2d_backward_weight_cuda(float *dw, float *db, const float *dout, const float *inp,
                                            const conv2d_shape *s) {
    if (use_cudnn()) conv2d_backward_weight_cudnn(dw, db, dout, inp, s);
    else conv2d_backward_weight_igemm(dw, db, dout, inp, s);
}

extern "C" void conv2d_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                                     const float *inp, const float *w, const conv2d_shape *s) {
    if (dw || db) conv2d_backward_weight_cuda(dw, db, dout, inp, s);
    if (dinp) conv2d_backward_data_cuda(dinp, dout, w, s);
}
