// CUDA row softmax (kernels/softmax.h). A team of threads per row: one warp (8 rows
// per 256-thread block) for rows up to SM_WARP_MAX_M, a whole 256-thread block beyond.
// Three passes over the row (max; sum of exp in double, as the CPU version; write
// exp * 1/sum), the reductions between them acting as the barrier that makes in-place
// use (out == inp, dinp == dout) safe: each element is read and written by the same
// thread.
#include <cuda_runtime.h>
#include <math.h>

#include "kernels/softmax.h"
#include "runtime/cuda_context.h"
#include "runtime/error.h"

#define SM_THREADS 256
#define SM_WARP_MAX_M 1024

// Reduction over a team: a warp (TEAM == 32) or the whole block (TEAM == blockDim.x).
// sh holds SM_THREADS / 32 entries and is reusable on return.
template <int TEAM, class T, class Op>
static __device__ __forceinline__ T team_reduce(T v, T *sh, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (TEAM == 32) return v;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) sh[w] = v;
    __syncthreads();
    T t = sh[0];
    for (int j = 1; j < TEAM / 32; j++) t = op(t, sh[j]);
    __syncthreads();
    return t;
}

struct max_op {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct add_op {
    __device__ double operator()(double a, double b) const { return a + b; }
};

template <int TEAM>
__global__ void __launch_bounds__(SM_THREADS) softmax_forward_kernel(float *out, const float *inp, int N, int M) {
    __shared__ float shf[SM_THREADS / 32];
    __shared__ double shd[SM_THREADS / 32];
    const int rows_per_block = SM_THREADS / TEAM;
    const int row = blockIdx.x * rows_per_block + threadIdx.x / TEAM, t = threadIdx.x % TEAM;
    // With TEAM == 32 a warp past N leaves at once; with a block team all rows are valid.
    if (row >= N) return;
    const float *x = inp + (size_t)row * M;
    float *y = out + (size_t)row * M;
    float mx = -INFINITY;
    for (int j = t; j < M; j += TEAM) mx = fmaxf(mx, x[j]);
    mx = team_reduce<TEAM>(mx, shf, max_op());
    double s = 0;
    for (int j = t; j < M; j += TEAM) s += expf(x[j] - mx);
    s = team_reduce<TEAM>(s, shd, add_op());
    const float inv = (float)(1.0 / s);
    for (int j = t; j < M; j += TEAM) y[j] = expf(x[j] - mx) * inv;
}

template <int TEAM>
__global__ void __launch_bounds__(SM_THREADS) softmax_backward_kernel(float *dinp, const float *dout, const float *out, int N,
                                        int M) {
    __shared__ double shd[SM_THREADS / 32];
    const int rows_per_block = SM_THREADS / TEAM;
    const int row = blockIdx.x * rows_per_block + threadIdx.x / TEAM, t = threadIdx.x % TEAM;
    if (row >= N) return;
    const float *y = out + (size_t)row * M, *dy = dout + (size_t)row * M;
    float *dx = dinp + (size_t)row * M;
    double s = 0;
    for (int j = t; j < M; j += TEAM) s += (double)dy[j] * y[j];
    const float sf = (float)team_reduce<TEAM>(s, shd, add_op());
    for (int j = t; j < M; j += TEAM) dx[j] = y[j] * (dy[j] - sf);
}

extern "C" void softmax_forward_cuda(float *out, const float *inp, int N, int M) {
    if (N <= 0 || M <= 0) return;
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    if (M <= SM_WARP_MAX_M) {
        const int rows = SM_THREADS / 32;
        softmax_forward_kernel<32><<<(N + rows - 1) / rows, SM_THREADS, 0, st>>>(out, inp, N, M);
    } else {
        softmax_forward_kernel<SM_THREADS><<<N, SM_THREADS, 0, st>>>(out, inp, N, M);
    }
    CUDA_CHECK(cudaGetLastError());
}

extern "C" void softmax_backward_cuda(float *dinp, const float *dout, const float *out, int N, int M) {
    if (!dinp || N <= 0 || M <= 0) return;
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    if (M <= SM_WARP_MAX_M) {
        const int rows = SM_THREADS / 32;
        softmax_backward_kernel<32><<<(N + rows - 1) / rows, SM_THREADS, 0, st>>>(dinp, dout, out, N, M);
    } else {
        softmax_backward_kernel<SM_THREADS><<<N, SM_THREADS, 0, st>>>(dinp, dout, out, N, M);
    }
    CUDA_CHECK(cudaGetLastError());
}
