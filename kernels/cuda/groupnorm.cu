// CUDA group norm (kernels/groupnorm.h). One block of GN_THREADS per (batch, group):
// the group is contiguous (Cg x HW floats), so forward is two reduction passes (mean,
// then the sum of squared deviations, both in double like the CPU version) and one
// output pass, 16-byte accesses where the layout allows. Backward needs per-channel
// sums of dout and dout * x: warps are shared out over the group's channels (several
// warps per channel when the group has fewer channels than the block has warps),
// each channel's dw/db contribution goes out as one atomicAdd per (batch, channel),
// and a final pass writes dinp.
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/groupnorm.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define GN_THREADS 1024
#define GN_WARPS (GN_THREADS / 32)

static __device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block; every thread gets the result. sh holds GN_WARPS doubles and is
// free again on return.
static __device__ double block_sum(double v, double *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    double t = 0;
    if (w == 0) {
        t = lane < GN_WARPS ? sh[lane] : 0.0;
        t = warp_sum(t);
        if (lane == 0) sh[0] = t;
    }
    __syncthreads();
    t = sh[0];
    __syncthreads();
    return t;
}

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

__global__ void __launch_bounds__(GN_THREADS)
groupnorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int C, int HW, int G, float eps,
                         int vec) {
    __shared__ double sh[GN_WARPS];
    const int g = blockIdx.x, bi = blockIdx.y, Cg = C / G;
    const int n = Cg * HW;  // < 2^31, checked by the caller
    const size_t base = ((size_t)bi * C + (size_t)g * Cg) * HW;
    const float *x = inp + base;
    float *y = out + base;
    const int n4 = vec ? n / 4 : 0;  // vec: HW % 4 == 0 and 16-byte aligned pointers

    double s = 0;
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        float4 v = reinterpret_cast<const float4 *>(x)[i];
        s += ((double)v.x + (double)v.y) + ((double)v.z + (double)v.w);
    }
    for (int i = 4 * n4 + threadIdx.x; i < n; i += blockDim.x) s += x[i];
    const double m = block_sum(s, sh) / (double)n;

    double q = 0;
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        float4 v = reinterpret_cast<const float4 *>(x)[i];
        double d0 = v.x - m, d1 = v.y - m, d2 = v.z - m, d3 = v.w - m;
        q += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
    }
    for (int i = 4 * n4 + threadIdx.x; i < n; i += blockDim.x) {
        double d = x[i] - m;
        q += d * d;
    }
    const double r = 1.0 / sqrt(block_sum(q, sh) / (double)n + eps);
    const float mf = (float)m;

    // out = (x - mean) * (rstd w_c) + b_c, the scale formed in double as on the CPU.
    if (vec) {
        const int HW4 = HW / 4;
        for (int i = threadIdx.x; i < n4; i += blockDim.x) {
            const int c = g * Cg + i / HW4;
            const float a = (float)(r * (w ? (double)w[c] : 1.0)), sb = b ? b[c] : 0.0f;
            float4 v = reinterpret_cast<const float4 *>(x)[i];
            v.x = (v.x - mf) * a + sb;
            v.y = (v.y - mf) * a + sb;
            v.z = (v.z - mf) * a + sb;
            v.w = (v.w - mf) * a + sb;
            reinterpret_cast<float4 *>(y)[i] = v;
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const int c = g * Cg + i / HW;
            const float a = (float)(r * (w ? (double)w[c] : 1.0)), sb = b ? b[c] : 0.0f;
            y[i] = (x[i] - mf) * a + sb;
        }
    }
    if (threadIdx.x == 0) {
        mean[bi * G + g] = mf;
        rstd[bi * G + g] = (float)r;
    }
}

// Sums of dout and dout * x over [lo, hi) of one channel plane, strided by `step` from
// `start`, 16-byte loads where vec says the plane allows them.
static __device__ __forceinline__ void channel_sums(const float *dy, const float *x, int HW,
                                                    int start, int step, int vec, double *s1,
                                                    double *s2) {
    double a1 = 0, a2 = 0;
    if (vec) {
        const int HW4 = HW / 4;
        const float4 *dy4 = reinterpret_cast<const float4 *>(dy);
        const float4 *x4 = reinterpret_cast<const float4 *>(x);
        for (int i = start; i < HW4; i += step) {
            float4 d = dy4[i], v = x4[i];
            a1 += ((double)d.x + (double)d.y) + ((double)d.z + (double)d.w);
            a2 += ((double)d.x * v.x + (double)d.y * v.y) + ((double)d.z * v.z + (double)d.w * v.w);
        }
    } else {
        for (int i = start; i < HW; i += step) {
            a1 += dy[i];
            a2 += (double)dy[i] * x[i];
        }
    }
    *s1 = a1;
    *s2 = a2;
}

__global__ void __launch_bounds__(GN_THREADS)
groupnorm_backward_kernel(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean,
                          const float *rstd, int C, int HW, int G, int vec) {
    __shared__ double sh[GN_WARPS], sh1[GN_WARPS], sh2[GN_WARPS];
    const int g = blockIdx.x, bi = blockIdx.y, Cg = C / G;
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const size_t base = ((size_t)bi * C + (size_t)g * Cg) * HW;
    const double m = mean[bi * G + g], r = rstd[bi * G + g];

    // Per channel: s1 = sum(dout), s2 = sum(dout * x), sx = sum(dout * xhat)
    // = r (s2 - m s1); the group needs gm = sum(w_c s1), gx = sum(w_c sx).
    double gm = 0, gx = 0;  // this thread's share, summed over the block below
    const int k = nw / Cg;  // warps per channel
    if (k <= 1) {
        // A warp per channel, lane 0 finishing each of its channels.
        for (int c = wid; c < Cg; c += nw) {
            const size_t off = base + (size_t)c * HW;
            double s1, s2;
            channel_sums(dout + off, inp + off, HW, lane, 32, vec, &s1, &s2);
            s1 = warp_sum(s1);
            s2 = warp_sum(s2);
            if (lane == 0) {
                const int cc = g * Cg + c;
                const double sx = r * (s2 - m * s1), wc = w ? (double)w[cc] : 1.0;
                gm += wc * s1;
                gx += wc * sx;
                if (dw) atomicAdd(dw + cc, (float)sx);
                if (db) atomicAdd(db + cc, (float)s1);
            }
        }
    } else {
        // k warps per channel, each over a strided slice; thread c combines the slices
        // of channel c in a fixed order.
        const int c = wid / k, j = wid % k;
        double s1 = 0, s2 = 0;
        if (c < Cg) {
            const size_t off = base + (size_t)c * HW;
            channel_sums(dout + off, inp + off, HW, j * 32 + lane, 32 * k, vec, &s1, &s2);
        }
        s1 = warp_sum(s1);
        s2 = warp_sum(s2);
        if (lane == 0) {
            sh1[wid] = s1;
            sh2[wid] = s2;
        }
        __syncthreads();
        if ((int)threadIdx.x < Cg) {
            const int ci = threadIdx.x, cc = g * Cg + ci;
            double t1 = 0, t2 = 0;
            for (int jj = 0; jj < k; jj++) {
                t1 += sh1[ci * k + jj];
                t2 += sh2[ci * k + jj];
            }
            const double sx = r * (t2 - m * t1), wc = w ? (double)w[cc] : 1.0;
            gm = wc * t1;
            gx = wc * sx;
            if (dw) atomicAdd(dw + cc, (float)sx);
            if (db) atomicAdd(db + cc, (float)t1);
        }
    }
    if (!dinp) return;  // uniform over the block: no barrier is skipped by some threads only
    const double n = (double)Cg * HW;
    gm = block_sum(gm, sh) / n;
    gx = block_sum(gx, sh) / n;

    // dx = dout * (r w_c) + (x - mean) * kf + s
    const float kf = (float)(-r * r * gx), s = (float)(-r * gm), mf = (float)m;
    const float *x = inp + base, *dy = dout + base;
    float *dx = dinp + base;
    const int total = Cg * HW;
    if (vec) {
        const int HW4 = HW / 4;
        for (int i = threadIdx.x; i < total / 4; i += blockDim.x) {
            const int c = g * Cg + i / HW4;
            const float a = (float)(r * (w ? (double)w[c] : 1.0));
            float4 d = reinterpret_cast<const float4 *>(dy)[i];
            float4 v = reinterpret_cast<const float4 *>(x)[i];
            float4 o;
            o.x = d.x * a + (v.x - mf) * kf + s;
            o.y = d.y * a + (v.y - mf) * kf + s;
            o.z = d.z * a + (v.z - mf) * kf + s;
            o.w = d.w * a + (v.w - mf) * kf + s;
            reinterpret_cast<float4 *>(dx)[i] = o;
        }
    } else {
        for (int i = threadIdx.x; i < total; i += blockDim.x) {
            const int c = g * Cg + i / HW;
            const float a = (float)(r * (w ? (double)w[c] : 1.0));
            dx[i] = dy[i] * a + (x[i] - mf) * kf + s;
        }
    }
}

extern "C" void groupnorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp,
                                       const float *w, const float *b, int B, int C, int HW,
                                       int G, float eps) {
    if (B <= 0 || C <= 0 || HW <= 0) return;
    CHECK(G > 0 && C % G == 0 && B <= 65535 && (long long)(C / G) * HW < (1LL << 31));
    const int vec = HW % 4 == 0 && aligned16(out) && aligned16(inp);
    groupnorm_forward_kernel<<<dim3(G, B), GN_THREADS, 0, (cudaStream_t)selma_cuda_stream()>>>(
        out, mean, rstd, inp, w, b, C, HW, G, eps, vec);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void groupnorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                                        const float *inp, const float *w, const float *mean,
                                        const float *rstd, int B, int C, int HW, int G) {
    if (B <= 0 || C <= 0 || HW <= 0 || (!dinp && !dw && !db)) return;
    CHECK(G > 0 && C % G == 0 && B <= 65535 && (long long)(C / G) * HW < (1LL << 31));
    const int vec = HW % 4 == 0 && aligned16(dout) && aligned16(inp) && (!dinp || aligned16(dinp));
    groupnorm_backward_kernel<<<dim3(G, B), GN_THREADS, 0, (cudaStream_t)selma_cuda_stream()>>>(
        dinp, dw, db, dout, inp, w, mean, rstd, C, HW, G, vec);
    CUDA_CHECK(cudaGetLastError());
}
