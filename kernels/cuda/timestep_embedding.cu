// CUDA sinusoidal timestep embedding (kernels/timestep_embedding.h): a thread per
// (row, frequency), the frequency and the argument t * freq in double and sin / cos
// in double, as the CPU version, so the floats written agree with it to the last bit
// nearly everywhere. B x dim/2 threads: tiny, launch-bound.
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/timestep_embedding.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define TE_THREADS 128

__global__ void __launch_bounds__(TE_THREADS)
timestep_embedding_kernel(float *out, const float *t, int dim, int half, int flip, double lp, double den) {
    const int b = blockIdx.y;
    float *o = out + (size_t)b * dim;
    float *first = flip ? o + half : o, *second = flip ? o : o + half;  // sin, cos
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < half; i += gridDim.x * blockDim.x) {
        const double a = (double)t[b] * (i ? exp(-lp * i / den) : 1.0);
        double s, c;
        sincos(a, &s, &c);
        first[i] = (float)s;
        second[i] = (float)c;
    }
    if (dim % 2 && blockIdx.x == 0 && threadIdx.x == 0) o[dim - 1] = 0.0f;
}

extern "C" void timestep_embedding_forward_cuda(float *out, const float *t, int B, int dim,
                                                int flip_sin_to_cos, float downscale_freq_shift,
                                                float max_period) {
    if (B <= 0 || dim <= 0) return;
    CHECK(B <= 65535);
    const int half = dim / 2;
    const double lp = log((double)max_period), den = half - (double)downscale_freq_shift;
    unsigned gx = (unsigned)((half + TE_THREADS - 1) / TE_THREADS);
    if (gx < 1) gx = 1;
    timestep_embedding_kernel<<<dim3(gx, B), TE_THREADS, 0, (cudaStream_t)selma_cuda_stream()>>>(
        out, t, dim, half, flip_sin_to_cos, lp, den);
    CUDA_CHECK(cudaGetLastError());
}
