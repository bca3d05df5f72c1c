// CUDA layer norm (kernels/layernorm.h). A warp per row (8 rows per 256-thread
// block): lanes stride the row, the statistics are summed in double like the CPU
// version and combined with shuffles; 16-byte accesses where C % 4 == 0 and the
// pointers allow. The parameter gradients are a separate column pass: a 32 x 16
// block owns 32 columns and a chunk of rows, reduces its partial sums in shared memory
// and adds them with one atomicAdd per (column, chunk).
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/layernorm.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define LN_ROWS 8            // rows (warps) per block in the row kernels
#define LN_COLS 32           // columns per block in the parameter-gradient kernel
#define LN_GY 16             // row lanes per block in the parameter-gradient kernel
#define LN_CHUNK 256         // rows per block in the parameter-gradient kernel

static __device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;  // every lane holds the sum
}

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

__global__ void __launch_bounds__(LN_ROWS * 32)
layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int N, int C, float eps, int vec) {
    const int row = blockIdx.x * LN_ROWS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;  // whole warps leave; no block barrier below
    const float *x = inp + (size_t)row * C;
    float *y = out + (size_t)row * C;
    const int C4 = vec ? C / 4 : 0;
    const float4 *x4 = reinterpret_cast<const float4 *>(x);

    double s = 0;
    for (int i = lane; i < C4; i += 32) {
        float4 v = x4[i];
        s += ((double)v.x + (double)v.y) + ((double)v.z + (double)v.w);
    }
    for (int i = 4 * C4 + lane; i < C; i += 32) s += x[i];
    const double m = warp_sum(s) / C;
    double q = 0;
    for (int i = lane; i < C4; i += 32) {
        float4 v = x4[i];
        double d0 = v.x - m, d1 = v.y - m, d2 = v.z - m, d3 = v.w - m;
        q += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
    }
    for (int i = 4 * C4 + lane; i < C; i += 32) {
        double d = x[i] - m;
        q += d * d;
    }
    const double r = 1.0 / sqrt(warp_sum(q) / C + eps);
    const float mf = (float)m, rf = (float)r;
    for (int i = lane; i < C4; i += 32) {
        float4 v = x4[i];
        float4 wv = w ? reinterpret_cast<const float4 *>(w)[i] : make_float4(1, 1, 1, 1);
        float4 bv = b ? reinterpret_cast<const float4 *>(b)[i] : make_float4(0, 0, 0, 0);
        v.x = (v.x - mf) * rf * wv.x + bv.x;
        v.y = (v.y - mf) * rf * wv.y + bv.y;
        v.z = (v.z - mf) * rf * wv.z + bv.z;
        v.w = (v.w - mf) * rf * wv.w + bv.w;
        reinterpret_cast<float4 *>(y)[i] = v;
    }
    for (int i = 4 * C4 + lane; i < C; i += 32)
        y[i] = (x[i] - mf) * rf * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
    if (lane == 0) {
        mean[row] = mf;
        rstd[row] = rf;
    }
}

// dx = rstd * (dout w - mean(dout w) - xhat * mean(dout w xhat)) per row. dout w is
// rounded on its own (__fmul_rn, never fused into the subtraction) as on the CPU, where
// it cancels exactly against its mean when C == 1.
__global__ void __launch_bounds__(LN_ROWS * 32)
layernorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, int N,
                               int C, int vec) {
    const int row = blockIdx.x * LN_ROWS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float *dx = dinp + (size_t)row * C;
    const float mf = mean[row], rf = rstd[row];
    const int C4 = vec ? C / 4 : 0;
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    const float4 *dy4 = reinterpret_cast<const float4 *>(dy);
    const float4 *w4 = reinterpret_cast<const float4 *>(w);

    double gm = 0, gx = 0;
    for (int i = lane; i < C4; i += 32) {
        float4 v = x4[i], d = dy4[i], wv = w ? w4[i] : make_float4(1, 1, 1, 1);
        float g0 = __fmul_rn(d.x, wv.x), g1 = __fmul_rn(d.y, wv.y);
        float g2 = __fmul_rn(d.z, wv.z), g3 = __fmul_rn(d.w, wv.w);
        gm += ((double)g0 + g1) + ((double)g2 + g3);
        gx += ((double)g0 * ((v.x - mf) * rf) + (double)g1 * ((v.y - mf) * rf)) +
              ((double)g2 * ((v.z - mf) * rf) + (double)g3 * ((v.w - mf) * rf));
    }
    for (int i = 4 * C4 + lane; i < C; i += 32) {
        float g = __fmul_rn(dy[i], w ? w[i] : 1.0f);
        gm += g;
        gx += (double)g * ((x[i] - mf) * rf);
    }
    const float a = (float)(warp_sum(gm) / C), k = (float)(warp_sum(gx) / C);
    for (int i = lane; i < C4; i += 32) {
        float4 v = x4[i], d = dy4[i], wv = w ? w4[i] : make_float4(1, 1, 1, 1), o;
        o.x = rf * (__fmul_rn(d.x, wv.x) - a - ((v.x - mf) * rf) * k);
        o.y = rf * (__fmul_rn(d.y, wv.y) - a - ((v.y - mf) * rf) * k);
        o.z = rf * (__fmul_rn(d.z, wv.z) - a - ((v.z - mf) * rf) * k);
        o.w = rf * (__fmul_rn(d.w, wv.w) - a - ((v.w - mf) * rf) * k);
        reinterpret_cast<float4 *>(dx)[i] = o;
    }
    for (int i = 4 * C4 + lane; i < C; i += 32)
        dx[i] = rf * (__fmul_rn(dy[i], w ? w[i] : 1.0f) - a - ((x[i] - mf) * rf) * k);
}

// dw[c] += sum_n dout * xhat, db[c] += sum_n dout over the block's chunk of rows.
__global__ void __launch_bounds__(LN_COLS * LN_GY)
layernorm_backward_params_kernel(float *dw, float *db, const float *dout, const float *inp,
                                 const float *mean, const float *rstd, int N, int C) {
    __shared__ float shw[LN_GY][LN_COLS + 1], shb[LN_GY][LN_COLS + 1];
    const int tx = threadIdx.x, ty = threadIdx.y, c = blockIdx.x * LN_COLS + tx;
    const int r0 = blockIdx.y * LN_CHUNK, r1 = min(N, r0 + LN_CHUNK);
    float aw = 0, ab = 0;
    if (c < C)
        for (int n = r0 + ty; n < r1; n += LN_GY) {
            const size_t i = (size_t)n * C + c;
            const float d = dout[i];
            aw += d * ((inp[i] - mean[n]) * rstd[n]);
            ab += d;
        }
    shw[ty][tx] = aw;
    shb[ty][tx] = ab;
    __syncthreads();
    if (ty == 0 && c < C) {
        float sw = 0, sb = 0;
        for (int j = 0; j < LN_GY; j++) {
            sw += shw[j][tx];
            sb += shb[j][tx];
        }
        if (gridDim.y == 1) {  // one chunk: a plain, deterministic update
            if (dw) dw[c] += sw;
            if (db) db[c] += sb;
        } else {
            if (dw) atomicAdd(dw + c, sw);
            if (db) atomicAdd(db + c, sb);
        }
    }
}

extern "C" void layernorm_forward_cuda(float *out, float *mean, float *rstd, const float *inp,
                                       const float *w, const float *b, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    const int vec = C % 4 == 0 && aligned16(out) && aligned16(inp) && (!w || aligned16(w)) &&
                    (!b || aligned16(b));
    layernorm_forward_kernel<<<(N + LN_ROWS - 1) / LN_ROWS, LN_ROWS * 32, 0,
                               (cudaStream_t)selma_cuda_stream()>>>(out, mean, rstd, inp, w, b,
                                                                    N, C, eps, vec);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void layernorm_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                                        const float *inp, const float *w, const float *mean,
                                        const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    if (dinp) {
        const int vec = C % 4 == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) &&
                        (!w || aligned16(w));
        layernorm_backward_dinp_kernel<<<(N + LN_ROWS - 1) / LN_ROWS, LN_ROWS * 32, 0, st>>>(
            dinp, dout, inp, w, mean, rstd, N, C, vec);
        CUDA_CHECK(cudaGetLastError());
    }
    if (dw || db) {
        const int chunks = (N + LN_CHUNK - 1) / LN_CHUNK;
        CHECK(chunks <= 65535);
        dim3 grid((C + LN_COLS - 1) / LN_COLS, chunks), block(LN_COLS, LN_GY);
        layernorm_backward_params_kernel<<<grid, block, 0, st>>>(dw, db, dout, inp, mean, rstd, N, C);
        CUDA_CHECK(cudaGetLastError());
    }
}
