// CUDA channel concatenation (kernels/concat.h). Per image the output is a's C1*HW
// floats followed by b's C2*HW: blockIdx.y walks the images (grid-stride past 65535),
// x the floats of one image, so no element needs a division. 16-byte copies when both
// slices are multiples of 4 floats and the pointers are aligned.
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/concat.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define CAT_THREADS 256

static inline bool aligned16(const void *p) { return !p || ((uintptr_t)p & 15) == 0; }

// T is float or float4; na, nb count T elements per image.
template <class T>
__global__ void __launch_bounds__(CAT_THREADS)
concat_forward_kernel(T *out, const T *a, const T *b, int B, size_t na, size_t nb) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int n = blockIdx.y; n < B; n += gridDim.y) {
        T *o = out + n * (na + nb);
        const T *an = a + n * na, *bn = b + n * nb;
        for (size_t i = i0; i < na + nb; i += stride) o[i] = i < na ? an[i] : bn[i - na];
    }
}

template <class T>
__global__ void __launch_bounds__(CAT_THREADS)
concat_backward_kernel(T *da, T *db, const T *dout, int B, size_t na, size_t nb) {
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    // Only the slices that have a destination are read.
    const size_t lo = da ? 0 : na, hi = db ? na + nb : na;
    for (int n = blockIdx.y; n < B; n += gridDim.y) {
        const T *g = dout + n * (na + nb);
        for (size_t i = lo + i0; i < hi; i += stride) {
            if (i < na)
                da[n * na + i] = g[i];
            else
                db[n * nb + i - na] = g[i];
        }
    }
}

static dim3 cat_grid(int B, size_t per) {
    size_t x = (per + CAT_THREADS - 1) / CAT_THREADS;
    if (x < 1) x = 1;
    if (x > 1024) x = 1024;
    return dim3((unsigned)x, (unsigned)(B < 65535 ? B : 65535));
}

extern "C" void concat_channels_forward_cuda(float *out, const float *a, const float *b, int B,
                                             int C1, int C2, int HW) {
    if (B <= 0 || HW <= 0 || C1 + C2 <= 0) return;
    const size_t na = (size_t)C1 * HW, nb = (size_t)C2 * HW;
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    if (na % 4 == 0 && nb % 4 == 0 && aligned16(out) && aligned16(a) && aligned16(b))
        concat_forward_kernel<float4><<<cat_grid(B, (na + nb) / 4), CAT_THREADS, 0, st>>>(
            (float4 *)out, (const float4 *)a, (const float4 *)b, B, na / 4, nb / 4);
    else
        concat_forward_kernel<float><<<cat_grid(B, na + nb), CAT_THREADS, 0, st>>>(out, a, b, B, na, nb);
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void concat_channels_backward_cuda(float *da, float *db, const float *dout, int B,
                                              int C1, int C2, int HW) {
    if ((!da && !db) || B <= 0 || HW <= 0 || C1 + C2 <= 0) return;
    const size_t na = (size_t)C1 * HW, nb = (size_t)C2 * HW;
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    if (na % 4 == 0 && nb % 4 == 0 && aligned16(dout) && aligned16(da) && aligned16(db))
        concat_backward_kernel<float4><<<cat_grid(B, (na + nb) / 4), CAT_THREADS, 0, st>>>(
            (float4 *)da, (float4 *)db, (const float4 *)dout, B, na / 4, nb / 4);
    else
        concat_backward_kernel<float><<<cat_grid(B, na + nb), CAT_THREADS, 0, st>>>(da, db, dout, B, na, nb);
    CUDA_CHECK(cudaGetLastError());
}
