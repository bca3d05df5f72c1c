// Sums across a warp and a block in double precision, for the reductions whose
// result must not depend on float rounding (mse, sumsq): each block's partial is a
// fixed tree of shuffles, so a launch with the same grid always adds in the same order.
#ifndef SELMA_KERNELS_CUDA_BLOCK_REDUCE_CUH
#define SELMA_KERNELS_CUDA_BLOCK_REDUCE_CUH

static __device__ __forceinline__ double warp_sum_double(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// The block's sum, valid in thread 0. Every thread of the block must call it; THREADS
// is the block size (a multiple of 32, at most 1024).
template <int THREADS>
static __device__ double block_sum_double(double v) {
    __shared__ double sh[THREADS / 32];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp_sum_double(v);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = 0;
    if (w == 0) v = warp_sum_double(lane < THREADS / 32 ? sh[lane] : 0.0);
    return v;
}

#endif
