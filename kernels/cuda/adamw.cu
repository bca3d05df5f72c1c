// CUDA AdamW (kernels/adamw.h): one grid-stride elementwise pass reading p, g, m, v
// and writing p, m, v, 16-byte accesses when all four are aligned; the bias
// corrections are formed once on the host in double, exactly as the CPU version.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/adamw.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define ADAMW_THREADS 256
#define ADAMW_MAX_BLOCKS 8192

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

struct adamw_consts {
    float b1, b2, eps, decay, step, inv_sqrt_bc2;
};

static __device__ __forceinline__ void adamw_one(float &p, float g, float &m, float &v,
                                                 const adamw_consts &k) {
    const float mi = k.b1 * m + (1.0f - k.b1) * g;
    const float vi = k.b2 * v + (1.0f - k.b2) * g * g;
    m = mi;
    v = vi;
    p = k.decay * p - k.step * mi / (sqrtf(vi) * k.inv_sqrt_bc2 + k.eps);
}

__global__ void __launch_bounds__(ADAMW_THREADS)
adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, int vec, adamw_consts k) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t n4 = vec ? n / 4 : 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 pv = reinterpret_cast<float4 *>(p)[i], mv = reinterpret_cast<float4 *>(m)[i];
        float4 vv = reinterpret_cast<float4 *>(v)[i];
        const float4 gv = reinterpret_cast<const float4 *>(g)[i];
        adamw_one(pv.x, gv.x, mv.x, vv.x, k);
        adamw_one(pv.y, gv.y, mv.y, vv.y, k);
        adamw_one(pv.z, gv.z, mv.z, vv.z, k);
        adamw_one(pv.w, gv.w, mv.w, vv.w, k);
        reinterpret_cast<float4 *>(p)[i] = pv;
        reinterpret_cast<float4 *>(m)[i] = mv;
        reinterpret_cast<float4 *>(v)[i] = vv;
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) {
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_one(pi, g[i], mi, vi, k);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" void adamw_update_cuda(float *p, const float *g, float *m, float *v, size_t n,
                                  const adamw_hparams *hp, int t) {
    if (!n) return;
    adamw_consts k;
    k.b1 = (float)hp->beta1;
    k.b2 = (float)hp->beta2;
    k.eps = (float)hp->eps;
    k.decay = (float)(1.0 - hp->lr * hp->weight_decay);
    k.step = (float)(hp->lr / (1.0 - pow(hp->beta1, t)));
    k.inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(hp->beta2, t)));
    const int vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v);
    size_t blocks = ((vec ? (n + 3) / 4 : n) + ADAMW_THREADS - 1) / ADAMW_THREADS;
    if (blocks > ADAMW_MAX_BLOCKS) blocks = ADAMW_MAX_BLOCKS;
    adamw_kernel<<<(unsigned)blocks, ADAMW_THREADS, 0, (cudaStream_t)selma_cuda_stream()>>>(
        p, g, m, v, n, vec, k);
    CUDA_CHECK(cudaGetLastError());
}
