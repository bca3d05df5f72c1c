// Channel planes <-> tokens on the GPU (kernels/tokens.h): per image a (rows, cols)
// matrix transposed in 32 x 32 tiles staged in shared memory (one padding column
// against bank conflicts), so global reads and writes are both row-contiguous.
#include <cuda_runtime.h>

#include "kernels/tokens.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define TILE 32
#define ROWS_PER_PASS 8  // blockDim (32, 8): each thread moves 4 elements of a tile

// out[b][c][r] = inp[b][r][c] for inp (B, rows, cols), out (B, cols, rows).
__global__ void transpose_kernel(float *__restrict__ out, const float *__restrict__ inp, int rows,
                                 int cols) {
    __shared__ float tile[TILE][TILE + 1];
    const size_t img = (size_t)blockIdx.z * rows * cols;
    const int r0 = blockIdx.y * TILE, c0 = blockIdx.x * TILE;
    for (int k = threadIdx.y; k < TILE; k += ROWS_PER_PASS) {
        const int r = r0 + k, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[k][threadIdx.x] = inp[img + (size_t)r * cols + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < TILE; k += ROWS_PER_PASS) {
        const int c = c0 + k, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[img + (size_t)c * rows + r] = tile[threadIdx.x][k];
    }
}

static void transpose(float *out, const float *inp, int B, int rows, int cols) {
    if (B <= 0 || rows <= 0 || cols <= 0) return;
    CHECK(B <= 65535 && (rows + TILE - 1) / TILE <= 65535);  // gridDim.z, gridDim.y
    dim3 grid((unsigned)((cols + TILE - 1) / TILE), (unsigned)((rows + TILE - 1) / TILE), (unsigned)B);
    transpose_kernel<<<grid, dim3(TILE, ROWS_PER_PASS), 0, (cudaStream_t)selma_cuda_stream()>>>(
        out, inp, rows, cols);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void channels_to_tokens_cuda(float *out, const float *inp, int B, int C, int N) {
    transpose(out, inp, B, C, N);
}

extern "C" void tokens_to_channels_cuda(float *out, const float *inp, int B, int C, int N) {
    transpose(out, inp, B, N, C);
}
