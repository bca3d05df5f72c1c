// linear on the GPU through cuBLAS: cublasGemmEx on float32 storage with TF32
// tensor-core compute (CUBLAS_COMPUTE_32F_FAST_TF32), row-major operands handed to
// column-major cuBLAS as their transposes (cublas_gemm.cuh).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cublas_gemm.cuh"
#include "kernels/linear.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

using selma_cublas::gemm_rm;

namespace {

cudaStream_t stream() { return (cudaStream_t)selma_cuda_stream(); }

// out (N, OC) = b on every row.
__global__ void broadcast_rows_kernel(float *out, const float *b, size_t n, int OC) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = b[i % OC];
}

// db[o] += sum_n dout[n, o]: blocks of 32 columns x 8 row groups, each block one
// slice of the rows, partial sums combined with atomicAdd (order not deterministic).
__global__ void column_sum_kernel(float *db, const float *dout, int N, int OC, int rows_per_block) {
    const int o = blockIdx.x * 32 + threadIdx.x;
    const int r0 = blockIdx.y * rows_per_block, r1 = min(N, r0 + rows_per_block);
    float s = 0.0f;
    if (o < OC)
        for (int n = r0 + threadIdx.y; n < r1; n += 8) s += dout[(size_t)n * OC + o];
    __shared__ float part[8][33];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && o < OC) {
        for (int y = 1; y < 8; y++) s += part[y][threadIdx.x];
        atomicAdd(db + o, s);
    }
}

unsigned grid_for(size_t n) {
    size_t b = (n + 255) / 256;
    return (unsigned)(b > 4096 ? 4096 : b);
}

}  // namespace

extern "C" void linear_forward_cuda(float *out, const float *inp, const float *w, const float *b,
                                    int N, int C, int OC) {
    if (b) {
        const size_t n = (size_t)N * OC;
        broadcast_rows_kernel<<<grid_for(n), 256, 0, stream()>>>(out, b, n, OC);
        CUDA_CHECK(cudaGetLastError());
    }
    gemm_rm(false, true, N, OC, C, 1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
}

extern "C" void linear_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                                     const float *inp, const float *w, int N, int C, int OC) {
    if (dinp)  // (N, C) = dout (N, OC) @ w (OC, C)
        gemm_rm(false, false, N, C, OC, 1.0f, dout, OC, w, C, 0.0f, dinp, C);
    if (dw)  // (OC, C) += dout^T (OC, N) @ inp (N, C)
        gemm_rm(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
        const int rows = 256;
        dim3 grid((unsigned)((OC + 31) / 32), (unsigned)((N + rows - 1) / rows));
        column_sum_kernel<<<grid, dim3(32, 8), 0, stream()>>>(db, dout, N, OC, rows);
        CUDA_CHECK(cudaGetLastError());
    }
}
