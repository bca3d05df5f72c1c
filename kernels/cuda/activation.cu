// CUDA activations (kernels/activation.h): grid-stride elementwise loops, 16-byte
// accesses when every pointer is 16-byte aligned (a scalar loop takes the tail), the
// same float formulas as the CPU version with CUDA's accurate expf / erff / tanhf (no
// fast-math intrinsics). No __restrict__: out may alias inp and dinp may alias dout,
// and each element is read and written by the same thread.
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/activation.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define ACT_THREADS 256
#define ACT_MAX_BLOCKS 8192

#define SQRT_1_2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794
#define SQRT_2_PI 0.79788456080286535588
#define GELU_TANH_C 0.044715
#define GELU_QUICK_C 1.702

static __device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }
static __device__ __forceinline__ float gelu_erf_f(float x) {
    return 0.5f * x * (1.0f + erff(x * (float)SQRT_1_2));
}
static __device__ __forceinline__ float gelu_erf_grad_f(float x) {
    return 0.5f * (1.0f + erff(x * (float)SQRT_1_2)) + x * (float)INV_SQRT_2PI * expf(-0.5f * x * x);
}

// Forward functors: y = f(x). Backward functors: dx = f(dy, x).
struct silu_fwd {
    __device__ float operator()(float x) const { return x * sigmoid_f(x); }
};
struct silu_bwd {
    __device__ float operator()(float dy, float x) const {
        float s = sigmoid_f(x);
        return dy * s * (1.0f + x * (1.0f - s));
    }
};
struct gelu_erf_fwd {
    __device__ float operator()(float x) const { return gelu_erf_f(x); }
};
struct gelu_erf_bwd {
    __device__ float operator()(float dy, float x) const { return dy * gelu_erf_grad_f(x); }
};
struct gelu_tanh_fwd {
    __device__ float operator()(float x) const {
        const float c = (float)SQRT_2_PI, a = (float)GELU_TANH_C;
        return 0.5f * x * (1.0f + tanhf(c * (x + a * x * x * x)));
    }
};
struct gelu_tanh_bwd {
    __device__ float operator()(float dy, float x) const {
        const float c = (float)SQRT_2_PI, a = (float)GELU_TANH_C;
        float t = tanhf(c * (x + a * x * x * x));
        return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * a * x * x));
    }
};
struct gelu_quick_fwd {
    __device__ float operator()(float x) const { return x * sigmoid_f((float)GELU_QUICK_C * x); }
};
struct gelu_quick_bwd {
    __device__ float operator()(float dy, float x) const {
        const float q = (float)GELU_QUICK_C;
        float s = sigmoid_f(q * x);
        return dy * (s + q * x * s * (1.0f - s));
    }
};

template <class F>
__global__ void __launch_bounds__(ACT_THREADS) map1_kernel(float *out, const float *inp, size_t n, int vec, F f) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t n4 = vec ? n / 4 : 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 v = reinterpret_cast<const float4 *>(inp)[i];
        v.x = f(v.x);
        v.y = f(v.y);
        v.z = f(v.z);
        v.w = f(v.w);
        reinterpret_cast<float4 *>(out)[i] = v;
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) out[i] = f(inp[i]);
}

template <class F>
__global__ void __launch_bounds__(ACT_THREADS) map2_kernel(float *dinp, const float *dout, const float *inp, size_t n, int vec,
                            F f) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t n4 = vec ? n / 4 : 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 d = reinterpret_cast<const float4 *>(dout)[i];
        float4 v = reinterpret_cast<const float4 *>(inp)[i];
        d.x = f(d.x, v.x);
        d.y = f(d.y, v.y);
        d.z = f(d.z, v.z);
        d.w = f(d.w, v.w);
        reinterpret_cast<float4 *>(dinp)[i] = d;
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) dinp[i] = f(dout[i], inp[i]);
}

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static unsigned grid_for(size_t work) {
    size_t blocks = (work + ACT_THREADS - 1) / ACT_THREADS;
    if (blocks < 1) blocks = 1;
    return (unsigned)(blocks < ACT_MAX_BLOCKS ? blocks : ACT_MAX_BLOCKS);
}

template <class F>
static void launch_map1(float *out, const float *inp, size_t n, F f) {
    if (!n) return;
    const int vec = aligned16(out) && aligned16(inp);
    map1_kernel<<<grid_for(vec ? (n + 3) / 4 : n), ACT_THREADS, 0,
                  (cudaStream_t)selma_cuda_stream()>>>(out, inp, n, vec, f);
    CUDA_CHECK(cudaGetLastError());
}

template <class F>
static void launch_map2(float *dinp, const float *dout, const float *inp, size_t n, F f) {
    if (!n || !dinp) return;
    const int vec = aligned16(dinp) && aligned16(dout) && aligned16(inp);
    map2_kernel<<<grid_for(vec ? (n + 3) / 4 : n), ACT_THREADS, 0,
                  (cudaStream_t)selma_cuda_stream()>>>(dinp, dout, inp, n, vec, f);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void silu_forward_cuda(float *out, const float *inp, size_t n) {
    launch_map1(out, inp, n, silu_fwd());
}

extern "C" void silu_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n) {
    launch_map2(dinp, dout, inp, n, silu_bwd());
}

extern "C" void gelu_forward_cuda(float *out, const float *inp, size_t n, gelu_kind kind) {
    switch (kind) {
    case GELU_ERF: launch_map1(out, inp, n, gelu_erf_fwd()); break;
    case GELU_TANH: launch_map1(out, inp, n, gelu_tanh_fwd()); break;
    case GELU_QUICK: launch_map1(out, inp, n, gelu_quick_fwd()); break;
    }
}

extern "C" void gelu_backward_cuda(float *dinp, const float *dout, const float *inp, size_t n,
                                   gelu_kind kind) {
    switch (kind) {
    case GELU_ERF: launch_map2(dinp, dout, inp, n, gelu_erf_bwd()); break;
    case GELU_TANH: launch_map2(dinp, dout, inp, n, gelu_tanh_bwd()); break;
    case GELU_QUICK: launch_map2(dinp, dout, inp, n, gelu_quick_bwd()); break;
    }
}

// GEGLU: blockIdx.y walks the rows (grid-stride past 65535), x the columns of a row,
// so that no element needs a division to find its row. Four columns per thread when
// C % 4 == 0 and the pointers are aligned.
__global__ void __launch_bounds__(ACT_THREADS) geglu_forward_kernel(float *out, const float *inp, int N, int C, int vec) {
    const int per = vec ? C / 4 : C;
    for (int r = blockIdx.y; r < N; r += gridDim.y) {
        const float *h = inp + (size_t)r * 2 * C, *g = h + C;
        float *y = out + (size_t)r * C;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < per; i += gridDim.x * blockDim.x) {
            if (vec) {
                float4 hv = reinterpret_cast<const float4 *>(h)[i];
                float4 gv = reinterpret_cast<const float4 *>(g)[i];
                hv.x *= gelu_erf_f(gv.x);
                hv.y *= gelu_erf_f(gv.y);
                hv.z *= gelu_erf_f(gv.z);
                hv.w *= gelu_erf_f(gv.w);
                reinterpret_cast<float4 *>(y)[i] = hv;
            } else {
                y[i] = h[i] * gelu_erf_f(g[i]);
            }
        }
    }
}

__global__ void __launch_bounds__(ACT_THREADS) geglu_backward_kernel(float *dinp, const float *dout, const float *inp, int N,
                                      int C, int vec) {
    const int per = vec ? C / 4 : C;
    for (int r = blockIdx.y; r < N; r += gridDim.y) {
        const float *h = inp + (size_t)r * 2 * C, *g = h + C, *dy = dout + (size_t)r * C;
        float *dh = dinp + (size_t)r * 2 * C, *dg = dh + C;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < per; i += gridDim.x * blockDim.x) {
            if (vec) {
                float4 hv = reinterpret_cast<const float4 *>(h)[i];
                float4 gv = reinterpret_cast<const float4 *>(g)[i];
                float4 d = reinterpret_cast<const float4 *>(dy)[i], oh, og;
                oh.x = d.x * gelu_erf_f(gv.x);
                oh.y = d.y * gelu_erf_f(gv.y);
                oh.z = d.z * gelu_erf_f(gv.z);
                oh.w = d.w * gelu_erf_f(gv.w);
                og.x = d.x * hv.x * gelu_erf_grad_f(gv.x);
                og.y = d.y * hv.y * gelu_erf_grad_f(gv.y);
                og.z = d.z * hv.z * gelu_erf_grad_f(gv.z);
                og.w = d.w * hv.w * gelu_erf_grad_f(gv.w);
                reinterpret_cast<float4 *>(dh)[i] = oh;
                reinterpret_cast<float4 *>(dg)[i] = og;
            } else {
                dh[i] = dy[i] * gelu_erf_f(g[i]);
                dg[i] = dy[i] * h[i] * gelu_erf_grad_f(g[i]);
            }
        }
    }
}

static dim3 geglu_grid(int N, int per) {
    unsigned x = (unsigned)((per + ACT_THREADS - 1) / ACT_THREADS);
    if (x > 64) x = 64;
    unsigned y = (unsigned)(N < 65535 ? N : 65535);
    return dim3(x, y);
}

extern "C" void geglu_forward_cuda(float *out, const float *inp, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const int vec = C % 4 == 0 && aligned16(out) && aligned16(inp);
    geglu_forward_kernel<<<geglu_grid(N, vec ? C / 4 : C), ACT_THREADS, 0,
                           (cudaStream_t)selma_cuda_stream()>>>(out, inp, N, C, vec);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void geglu_backward_cuda(float *dinp, const float *dout, const float *inp, int N, int C) {
    if (!dinp || N <= 0 || C <= 0) return;
    const int vec = C % 4 == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp);
    geglu_backward_kernel<<<geglu_grid(N, vec ? C / 4 : C), ACT_THREADS, 0,
                            (cudaStream_t)selma_cuda_stream()>>>(dinp, dout, inp, N, C, vec);
    CUDA_CHECK(cudaGetLastError());
}
