// Where memory lives. CPU memory is plain aligned malloc; CUDA memory is cudaMalloc
// (never managed memory). The CUDA half is in runtime/cuda_device.cu and is only
// linked when the build has CUDA; without it the CUDA calls report "no CUDA".
#ifndef SELMA_RUNTIME_DEVICE_H
#define SELMA_RUNTIME_DEVICE_H

#include <stddef.h>

#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

void *device_alloc(device_kind d, size_t bytes);  // NULL on failure
void device_free(device_kind d, void *p);
void device_memset(device_kind d, void *p, int v, size_t bytes);
// Copies between any two devices (host<->device, device<->device).
void device_copy(device_kind dst_dev, void *dst, device_kind src_dev, const void *src, size_t bytes);
void device_sync(void);

// Number of usable CUDA devices: 0 without a CUDA build, driver or GPU.
int cuda_device_count(void);
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" or a reason there is none.
const char *cuda_device_describe(void);
// Makes CUDA device `index` (0 .. cuda_device_count() - 1) this process's device: call
// it before anything is allocated there (memory belongs to the device current when it
// was allocated).
void cuda_device_set(int index);
// The current CUDA device's UUID: the same 16 bytes in every process that uses that
// GPU, whatever CUDA_VISIBLE_DEVICES numbers it.
void cuda_device_uuid(unsigned char uuid[16]);

#ifdef __cplusplus
}
#endif
#endif
