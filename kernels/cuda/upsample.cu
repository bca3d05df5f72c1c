// CUDA nearest-neighbour 2x upsampling (kernels/upsample.h). Both directions walk the
// input: forward, a thread reads two neighbouring input pixels (one float2) and writes
// the two output rows they become (a float4 each); backward, a thread reads the 2x2
// blocks of two input pixels (a float4 from each output row) and writes their sums,
// added in the CPU version's order so that the results are bitwise equal. Odd widths
// and unaligned pointers take the one-pixel path (float2 accesses).
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/upsample.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define UP_THREADS 256
#define UP_MAX_BLOCKS 8192

static inline bool aligned(const void *p, unsigned bytes) { return ((uintptr_t)p & (bytes - 1)) == 0; }

static unsigned grid_for(size_t work) {
    size_t blocks = (work + UP_THREADS - 1) / UP_THREADS;
    if (blocks < 1) blocks = 1;
    return (unsigned)(blocks < UP_MAX_BLOCKS ? blocks : UP_MAX_BLOCKS);
}

// Two input pixels per thread: W even, inp 8-byte and out 16-byte aligned.
__global__ void __launch_bounds__(UP_THREADS)
upsample_forward_pair_kernel(float *out, const float *inp, size_t rows, int W) {
    const int W2 = W / 2;  // pairs per input row
    const size_t total = rows * W2, stride = (size_t)gridDim.x * blockDim.x;
    const bool small = total + stride <= 0xffffffffu;  // 32-bit division is much cheaper
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t r = small ? (unsigned)i / (unsigned)W2 : i / W2;
        const int p = (int)(i - r * W2);
        float2 v = reinterpret_cast<const float2 *>(inp + r * W)[p];
        float4 o = make_float4(v.x, v.x, v.y, v.y);
        float *y = out + r * 4 * (size_t)W;  // output rows 2r and 2r + 1, 2W each
        reinterpret_cast<float4 *>(y)[p] = o;
        reinterpret_cast<float4 *>(y + 2 * W)[p] = o;
    }
}

__global__ void __launch_bounds__(UP_THREADS)
upsample_forward_kernel(float *out, const float *inp, size_t rows, int W) {
    const size_t total = rows * W, stride = (size_t)gridDim.x * blockDim.x;
    const bool small = total + stride <= 0xffffffffu;  // 32-bit division is much cheaper
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t r = small ? (unsigned)i / (unsigned)W : i / W;
        const int x = (int)(i - r * W);
        const float v = inp[i];
        float *y = out + r * 4 * (size_t)W;
        y[2 * x] = v;
        y[2 * x + 1] = v;
        y[2 * W + 2 * x] = v;
        y[2 * W + 2 * x + 1] = v;
    }
}

__global__ void __launch_bounds__(UP_THREADS)
upsample_backward_pair_kernel(float *dinp, const float *dout, size_t rows, int W) {
    const int W2 = W / 2;
    const size_t total = rows * W2, stride = (size_t)gridDim.x * blockDim.x;
    const bool small = total + stride <= 0xffffffffu;  // 32-bit division is much cheaper
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t r = small ? (unsigned)i / (unsigned)W2 : i / W2;
        const int p = (int)(i - r * W2);
        const float *g0 = dout + r * 4 * (size_t)W, *g1 = g0 + 2 * W;
        float4 a = reinterpret_cast<const float4 *>(g0)[p];
        float4 b = reinterpret_cast<const float4 *>(g1)[p];
        float2 d = make_float2((a.x + a.y) + (b.x + b.y), (a.z + a.w) + (b.z + b.w));
        reinterpret_cast<float2 *>(dinp + r * W)[p] = d;
    }
}

__global__ void __launch_bounds__(UP_THREADS)
upsample_backward_kernel(float *dinp, const float *dout, size_t rows, int W) {
    const size_t total = rows * W, stride = (size_t)gridDim.x * blockDim.x;
    const bool small = total + stride <= 0xffffffffu;  // 32-bit division is much cheaper
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t r = small ? (unsigned)i / (unsigned)W : i / W;
        const int x = (int)(i - r * W);
        const float *g0 = dout + r * 4 * (size_t)W, *g1 = g0 + 2 * W;
        dinp[i] = (g0[2 * x] + g0[2 * x + 1]) + (g1[2 * x] + g1[2 * x + 1]);
    }
}

extern "C" void upsample_nearest2x_forward_cuda(float *out, const float *inp, int B, int C, int H,
                                                int W) {
    if (B <= 0 || C <= 0 || H <= 0 || W <= 0) return;
    const size_t rows = (size_t)B * C * H;
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    if (W % 2 == 0 && aligned(inp, 8) && aligned(out, 16))
        upsample_forward_pair_kernel<<<grid_for(rows * (W / 2)), UP_THREADS, 0, st>>>(out, inp, rows, W);
    else
        upsample_forward_kernel<<<grid_for(rows * W), UP_THREADS, 0, st>>>(out, inp, rows, W);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void upsample_nearest2x_backward_cuda(float *dinp, const float *dout, int B, int C,
                                                 int H, int W) {
    if (!dinp || B <= 0 || C <= 0 || H <= 0 || W <= 0) return;
    const size_t rows = (size_t)B * C * H;
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    if (W % 2 == 0 && aligned(dinp, 8) && aligned(dout, 16))
        upsample_backward_pair_kernel<<<grid_for(rows * (W / 2)), UP_THREADS, 0, st>>>(dinp, dout, rows, W);
    else
        upsample_backward_kernel<<<grid_for(rows * W), UP_THREADS, 0, st>>>(dinp, dout, rows, W);
    CUDA_CHECK(cudaGetLastError());
}
