// CUDA y = a y + b x (kernels/axpby.h): one grid-stride elementwise pass, 16-byte
// accesses when y and x are aligned; x == NULL scales y alone.
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/axpby.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define AXPBY_THREADS 256
#define AXPBY_MAX_BLOCKS 8192

__global__ void __launch_bounds__(AXPBY_THREADS)
axpby_kernel(float *y, float a, const float *x, float b, size_t n, int vec) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t n4 = vec ? n / 4 : 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 v = reinterpret_cast<float4 *>(y)[i];
        if (x) {
            const float4 u = reinterpret_cast<const float4 *>(x)[i];
            v = make_float4(a * v.x + b * u.x, a * v.y + b * u.y, a * v.z + b * u.z, a * v.w + b * u.w);
        } else {
            v = make_float4(a * v.x, a * v.y, a * v.z, a * v.w);
        }
        reinterpret_cast<float4 *>(y)[i] = v;
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) y[i] = x ? a * y[i] + b * x[i] : a * y[i];
}

extern "C" void axpby_cuda(float *y, float a, const float *x, float b, size_t n) {
    if (!n) return;
    const int vec = ((uintptr_t)y & 15) == 0 && ((uintptr_t)x & 15) == 0;
    size_t blocks = ((vec ? (n + 3) / 4 : n) + AXPBY_THREADS - 1) / AXPBY_THREADS;
    if (blocks > AXPBY_MAX_BLOCKS) blocks = AXPBY_MAX_BLOCKS;
    axpby_kernel<<<(unsigned)blocks, AXPBY_THREADS, 0, (cudaStream_t)selma_cuda_stream()>>>(y, a, x, b, n, vec);
    CUDA_CHECK(cudaGetLastError());
}
