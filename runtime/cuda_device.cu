// The CUDA half of runtime/device.h.
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

#include "runtime/device.h"
#include "runtime/error.h"

extern "C" void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    return cudaMalloc(&p, bytes) == cudaSuccess ? p : NULL;
}
extern "C" void cuda_free(void *p) { CUDA_CHECK(cudaFree(p)); }
extern "C" void cuda_memset(void *p, int v, size_t bytes) { CUDA_CHECK(cudaMemset(p, v, bytes)); }
extern "C" void cuda_copy(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}
extern "C" void cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

extern "C" const char *cuda_device_describe(void) {
    static char buf[512];
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(buf, sizeof buf, "no CUDA device: %s", cudaGetErrorString(e));
        cudaGetLastError();
        return buf;
    }
    if (n == 0) return "no CUDA device";
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    snprintf(buf, sizeof buf, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1 << 30));
    return buf;
}

extern "C" void cuda_device_set(int index) { CUDA_CHECK(cudaSetDevice(index)); }

extern "C" void cuda_device_uuid(unsigned char uuid[16]) {
    int d;
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDevice(&d));
    CUDA_CHECK(cudaGetDeviceProperties(&p, d));
    memcpy(uuid, p.uuid.bytes, 16);
}
