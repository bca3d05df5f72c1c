#include <cuda_runtime.h>

#include "kernels/rng_fill.h"
#include "runtime/error.h"
#include "runtime/philox.h"

__global__ void rng_uniform_kernel(float *x, size_t n, uint64_t seed, uint64_t stream,
                                   uint64_t offset, float lo, float hi) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = lo + (hi - lo) * philox_uniform(seed, stream, offset + i);
}

__global__ void rng_normal_kernel(float *x, size_t n, uint64_t seed, uint64_t stream,
                                  uint64_t offset, float mean, float std) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = mean + std * philox_normal(seed, stream, offset + i);
}

extern "C" void rng_fill_uniform_cuda(float *x, size_t n, uint64_t seed, uint64_t stream,
                                      uint64_t offset, float lo, float hi) {
    if (!n) return;
    rng_uniform_kernel<<<(unsigned)((n + 255) / 256), 256>>>(x, n, seed, stream, offset, lo, hi);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void rng_fill_normal_cuda(float *x, size_t n, uint64_t seed, uint64_t stream,
                                     uint64_t offset, float mean, float std) {
    if (!n) return;
    rng_normal_kernel<<<(unsigned)((n + 255) / 256), 256>>>(x, n, seed, stream, offset, mean, std);
    CUDA_CHECK(cudaGetLastError());
}
