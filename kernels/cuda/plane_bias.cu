// Per-plane bias on the GPU (kernels/plane_bias.h).
#include <cuda_runtime.h>

#include "kernels/plane_bias.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define PB_THREADS 256

__global__ void plane_bias_forward_kernel(float *x, const float *t, size_t n, int HW) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] += t[i / HW];
}

// One block per plane: strided partial sums, then a warp-shuffle tree.
__global__ void __launch_bounds__(PB_THREADS)
plane_bias_backward_kernel(float *dt, const float *dout, int HW) {
    const float *g = dout + (size_t)blockIdx.x * HW;
    float s = 0.0f;
    for (int i = threadIdx.x; i < HW; i += PB_THREADS) s += g[i];
    __shared__ float part[PB_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < PB_THREADS / 32 ? part[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (threadIdx.x == 0) dt[blockIdx.x] = s;
    }
}

extern "C" void plane_bias_forward_cuda(float *x, const float *t, int B, int C, int HW) {
    const size_t n = (size_t)B * C * HW;
    if (!n) return;
    size_t blocks = (n + PB_THREADS - 1) / PB_THREADS;
    if (blocks > 4096) blocks = 4096;
    plane_bias_forward_kernel<<<(unsigned)blocks, PB_THREADS, 0, (cudaStream_t)selma_cuda_stream()>>>(
        x, t, n, HW);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void plane_bias_backward_cuda(float *dt, const float *dout, int B, int C, int HW) {
    const size_t planes = (size_t)B * C;
    if (!planes) return;
    CHECK(planes <= 0x7fffffffu);  // gridDim.x
    plane_bias_backward_kernel<<<(unsigned)planes, PB_THREADS, 0, (cudaStream_t)selma_cuda_stream()>>>(
        dt, dout, HW);
    CUDA_CHECK(cudaGetLastError());
}
