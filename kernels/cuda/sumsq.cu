// CUDA sum of squares (kernels/sumsq.h), the pattern of cuda/mse.cu: a fixed grid of at
// most SUMSQ_BLOCKS blocks sums x^2 in double over a grid-stride range, each block
// writes one partial, one block adds the partials in block order; the double comes back
// through a blocking copy. The partials live in a small device buffer allocated on
// first use and kept.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/sumsq.h"
#include "kernels/cuda/block_reduce.cuh"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define SUMSQ_THREADS 256
#define SUMSQ_BLOCKS 1024

__global__ void __launch_bounds__(SUMSQ_THREADS)
sumsq_partial_kernel(double *partial, const float *x, size_t n, int vec) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t n4 = vec ? n / 4 : 0;
    double s = 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 v = reinterpret_cast<const float4 *>(x)[i];
        s += ((double)v.x * v.x + (double)v.y * v.y) + ((double)v.z * v.z + (double)v.w * v.w);
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) s += (double)x[i] * x[i];
    s = block_sum_double<SUMSQ_THREADS>(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void __launch_bounds__(SUMSQ_THREADS) sumsq_final_kernel(double *result, const double *partial, int np) {
    double s = 0;
    for (int i = threadIdx.x; i < np; i += blockDim.x) s += partial[i];
    s = block_sum_double<SUMSQ_THREADS>(s);
    if (threadIdx.x == 0) *result = s;
}

static double *sumsq_scratch(void) {
    static double *buf;
    if (!buf) CUDA_CHECK(cudaMalloc((void **)&buf, (SUMSQ_BLOCKS + 1) * sizeof(double)));
    return buf;
}

extern "C" double sumsq_cuda(const float *x, size_t n) {
    if (!n) return 0;
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    double *buf = sumsq_scratch();
    const int vec = ((uintptr_t)x & 15) == 0;
    size_t work = ((vec ? (n + 3) / 4 : n) + SUMSQ_THREADS - 1) / SUMSQ_THREADS;
    const int blocks = work < SUMSQ_BLOCKS ? (int)(work ? work : 1) : SUMSQ_BLOCKS;
    sumsq_partial_kernel<<<blocks, SUMSQ_THREADS, 0, st>>>(buf, x, n, vec);
    CUDA_CHECK(cudaGetLastError());
    sumsq_final_kernel<<<1, SUMSQ_THREADS, 0, st>>>(buf + SUMSQ_BLOCKS, buf, blocks);
    CUDA_CHECK(cudaGetLastError());
    double s;
    CUDA_CHECK(cudaMemcpyAsync(&s, buf + SUMSQ_BLOCKS, sizeof s, cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    return s;
}
