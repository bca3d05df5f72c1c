// CUDA residual add (kernels/add.h): grid-stride elementwise loops with 16-byte
// accesses when every pointer is aligned. Backward reads dout once and writes both
// gradients in the same pass; a gradient that is dout itself is left as it is.
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/add.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define ADD_THREADS 256
#define ADD_MAX_BLOCKS 8192

static inline bool aligned16(const void *p) { return !p || ((uintptr_t)p & 15) == 0; }

static unsigned grid_for(size_t work) {
    size_t blocks = (work + ADD_THREADS - 1) / ADD_THREADS;
    if (blocks < 1) blocks = 1;
    return (unsigned)(blocks < ADD_MAX_BLOCKS ? blocks : ADD_MAX_BLOCKS);
}

__global__ void __launch_bounds__(ADD_THREADS)
add_forward_kernel(float *out, const float *a, const float *b, size_t n, int vec) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t n4 = vec ? n / 4 : 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 x = reinterpret_cast<const float4 *>(a)[i], y = reinterpret_cast<const float4 *>(b)[i];
        reinterpret_cast<float4 *>(out)[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) out[i] = a[i] + b[i];
}

__global__ void __launch_bounds__(ADD_THREADS)
add_backward_kernel(float *da, float *db, const float *dout, size_t n, int vec) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t n4 = vec ? n / 4 : 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 g = reinterpret_cast<const float4 *>(dout)[i];
        if (da) reinterpret_cast<float4 *>(da)[i] = g;
        if (db) reinterpret_cast<float4 *>(db)[i] = g;
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) {
        float g = dout[i];
        if (da) da[i] = g;
        if (db) db[i] = g;
    }
}

extern "C" void add_forward_cuda(float *out, const float *a, const float *b, size_t n) {
    if (!n) return;
    const int vec = aligned16(out) && aligned16(a) && aligned16(b);
    add_forward_kernel<<<grid_for(vec ? (n + 3) / 4 : n), ADD_THREADS, 0,
                         (cudaStream_t)selma_cuda_stream()>>>(out, a, b, n, vec);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void add_backward_cuda(float *da, float *db, const float *dout, size_t n) {
    if (da == dout) da = NULL;  // already holds dout
    if (db == dout) db = NULL;
    if (!n || (!da && !db)) return;
    const int vec = aligned16(da) && aligned16(db) && aligned16(dout);
    add_backward_kernel<<<grid_for(vec ? (n + 3) / 4 : n), ADD_THREADS, 0,
                          (cudaStream_t)selma_cuda_stream()>>>(da, db, dout, n, vec);
    CUDA_CHECK(cudaGetLastError());
}
