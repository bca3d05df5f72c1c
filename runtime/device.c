#include "runtime/device.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

#ifdef SELMA_CUDA
// runtime/cuda_device.cu
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);
void cuda_memset(void *p, int v, size_t bytes);
void cuda_copy(void *dst, const void *src, size_t bytes);
void cuda_sync(void);
#endif

void *device_alloc(device_kind d, size_t bytes) {
    if (d == DEVICE_CPU) {
        void *p = NULL;
        size_t rounded = (bytes + 63) & ~(size_t)63;
        return posix_memalign(&p, 64, rounded ? rounded : 64) == 0 ? p : NULL;
    }
#ifdef SELMA_CUDA
    return cuda_alloc(bytes);
#else
    return NULL;
#endif
}

void device_free(device_kind d, void *p) {
    if (d == DEVICE_CPU) { free(p); return; }
#ifdef SELMA_CUDA
    cuda_free(p);
#endif
}

void device_memset(device_kind d, void *p, int v, size_t bytes) {
    if (d == DEVICE_CPU) { memset(p, v, bytes); return; }
#ifdef SELMA_CUDA
    cuda_memset(p, v, bytes);
#else
    CHECK(!"CUDA memory without a CUDA build");
#endif
}

void device_copy(device_kind dst_dev, void *dst, device_kind src_dev, const void *src, size_t bytes) {
    if (dst_dev == DEVICE_CPU && src_dev == DEVICE_CPU) { memcpy(dst, src, bytes); return; }
#ifdef SELMA_CUDA
    cuda_copy(dst, src, bytes);  // cudaMemcpyDefault: unified addressing tells the direction
#else
    CHECK(!"CUDA memory without a CUDA build");
#endif
}

void device_sync(void) {
#ifdef SELMA_CUDA
    if (cuda_device_count() > 0) cuda_sync();
#endif
}

#ifndef SELMA_CUDA
int cuda_device_count(void) { return 0; }
const char *cuda_device_describe(void) { return "this build has no CUDA"; }
void cuda_device_set(int index) { CHECK(!"a CUDA device without a CUDA build"); }
void cuda_device_uuid(unsigned char uuid[16]) { CHECK(!"a CUDA device without a CUDA build"); }
#endif
