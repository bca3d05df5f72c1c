// CUDA mean squared error (kernels/mse.h). Forward: a fixed grid of MSE_BLOCKS blocks
// sums (pred - target)^2 in double over a grid-stride range, each block writes one
// partial, and a one-block kernel adds the partials in a fixed order, so the loss is
// deterministic; the double comes back through a blocking copy (this synchronizes the
// stream). The partials live in a small device buffer allocated on first use and kept.
// Backward is an elementwise grid-stride loop.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels/mse.h"
#include "kernels/cuda/block_reduce.cuh"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define MSE_THREADS 256
#define MSE_BLOCKS 1024
#define MSE_MAX_BLOCKS 8192

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

__global__ void __launch_bounds__(MSE_THREADS)
mse_partial_kernel(double *partial, const float *pred, const float *target, size_t n, int vec) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t n4 = vec ? n / 4 : 0;
    double s = 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 p = reinterpret_cast<const float4 *>(pred)[i];
        float4 t = reinterpret_cast<const float4 *>(target)[i];
        double d0 = (double)p.x - t.x, d1 = (double)p.y - t.y;
        double d2 = (double)p.z - t.z, d3 = (double)p.w - t.w;
        s += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) {
        double d = (double)pred[i] - target[i];
        s += d * d;
    }
    s = block_sum_double<MSE_THREADS>(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void __launch_bounds__(MSE_THREADS) mse_final_kernel(double *result, const double *partial, int np, double inv_n) {
    double s = 0;
    for (int i = threadIdx.x; i < np; i += blockDim.x) s += partial[i];
    s = block_sum_double<MSE_THREADS>(s);
    if (threadIdx.x == 0) *result = s * inv_n;
}

// MSE_BLOCKS partials and the result after them.
static double *mse_scratch(void) {
    static double *buf;
    if (!buf) CUDA_CHECK(cudaMalloc((void **)&buf, (MSE_BLOCKS + 1) * sizeof(double)));
    return buf;
}

extern "C" double mse_loss_forward_cuda(const float *pred, const float *target, size_t n) {
    if (!n) return NAN;  // as the CPU version: 0 / 0
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    double *buf = mse_scratch();
    const int vec = aligned16(pred) && aligned16(target);
    size_t work = ((vec ? (n + 3) / 4 : n) + MSE_THREADS - 1) / MSE_THREADS;
    const int blocks = work < MSE_BLOCKS ? (int)(work ? work : 1) : MSE_BLOCKS;
    mse_partial_kernel<<<blocks, MSE_THREADS, 0, st>>>(buf, pred, target, n, vec);
    CUDA_CHECK(cudaGetLastError());
    mse_final_kernel<<<1, MSE_THREADS, 0, st>>>(buf + MSE_BLOCKS, buf, blocks, 1.0 / (double)n);
    CUDA_CHECK(cudaGetLastError());
    double loss;
    CUDA_CHECK(cudaMemcpyAsync(&loss, buf + MSE_BLOCKS, sizeof loss, cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));
    return loss;
}

__global__ void __launch_bounds__(MSE_THREADS)
mse_backward_kernel(float *dpred, const float *pred, const float *target, float k, size_t n, int vec) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t n4 = vec ? n / 4 : 0;
    for (size_t i = i0; i < n4; i += stride) {
        float4 p = reinterpret_cast<const float4 *>(pred)[i];
        float4 t = reinterpret_cast<const float4 *>(target)[i];
        reinterpret_cast<float4 *>(dpred)[i] =
            make_float4(k * (p.x - t.x), k * (p.y - t.y), k * (p.z - t.z), k * (p.w - t.w));
    }
    for (size_t i = 4 * n4 + i0; i < n; i += stride) dpred[i] = k * (pred[i] - target[i]);
}

extern "C" void mse_loss_backward_cuda(float *dpred, const float *pred, const float *target,
                                       float dloss, size_t n) {
    if (!n || !dpred) return;
    const float k = (float)(2.0 * dloss / (double)n);
    const int vec = aligned16(dpred) && aligned16(pred) && aligned16(target);
    size_t blocks = ((vec ? (n + 3) / 4 : n) + MSE_THREADS - 1) / MSE_THREADS;
    if (blocks > MSE_MAX_BLOCKS) blocks = MSE_MAX_BLOCKS;
    mse_backward_kernel<<<(unsigned)blocks, MSE_THREADS, 0, (cudaStream_t)selma_cuda_stream()>>>(
        dpred, pred, target, k, n, vec);
    CUDA_CHECK(cudaGetLastError());
}
