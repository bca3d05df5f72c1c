// See runtime/comm_gpu.h.
#include "runtime/comm_gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/log.h"
#ifdef SELMA_NCCL
#include "runtime/cuda_context.h"
#endif

typedef enum { REDUCE_AUTO, REDUCE_NCCL, REDUCE_HOST } reduce_mode;
static const char *const mode_names[] = {"auto", "nccl", "host"};

// SELMA_GPU_REDUCE -> mode, or -1 when it names none.
static int mode_from_env(void) {
    const char *s = getenv("SELMA_GPU_REDUCE");
    if (!s || !*s) return REDUCE_AUTO;
    for (int m = 0; m < 3; m++)
        if (!strcmp(s, mode_names[m])) return m;
    return -1;
}

// Two ranks whose GPUs have the same UUID (*a < *b), or 0 when every rank has its own.
static int shared_gpu(const unsigned char *uuids, int size, int *a, int *b) {
    for (int i = 0; i < size; i++)
        for (int j = i + 1; j < size; j++)
            if (!memcmp(uuids + 16 * (size_t)i, uuids + 16 * (size_t)j, 16)) {
                *a = i, *b = j;
                return 1;
            }
    return 0;
}

int comm_gpu_init(comm *c, comm_nccl **nccl) {
    *nccl = NULL;
    int size = comm_size(c);
    if (size == 1) return 0;
    // Rank 0's choice for all: ranks that chose differently would wait in different
    // collectives until the timeout.
    int mode = mode_from_env();
    comm_bcast(c, &mode, sizeof mode, 0, "SELMA_GPU_REDUCE");
    if (mode < 0 && comm_rank(c) == 0)
        return err_set("SELMA_GPU_REDUCE=%s: expected auto, nccl or host", getenv("SELMA_GPU_REDUCE"));
    if (mode < 0) return err_set("SELMA_GPU_REDUCE on rank 0 is not auto, nccl or host");
    int count = cuda_device_count();
    if (count == 0) return err_set("rank %d: no CUDA device (%s)", comm_rank(c), cuda_device_describe());
    int device = comm_local_rank(c) % count;
    cuda_device_set(device);
    unsigned char own[16], *uuids = malloc(16 * (size_t)size);
    CHECK(uuids);
    cuda_device_uuid(own);
    comm_allgather(c, own, sizeof own, uuids, "GPU ids");
    int a = 0, b = 0, shared = shared_gpu(uuids, size, &a, &b);
    free(uuids);
    // Every rank has the same gathered ids and mode, so every rank decides alike.
    char why[160] = "";
#ifndef SELMA_NCCL
    snprintf(why, sizeof why, "this build has no NCCL");
#endif
    if (!*why && shared) snprintf(why, sizeof why, "ranks %d and %d share one GPU, which NCCL refuses", a, b);
    if (mode == REDUCE_NCCL && *why)
        return err_set("SELMA_GPU_REDUCE=nccl, but %s (NCCL needs a GPU of its own per rank); "
                       "SELMA_GPU_REDUCE=host reduces through host memory", why);
    if (mode == REDUCE_HOST) snprintf(why, sizeof why, "SELMA_GPU_REDUCE=host");
    if (*why) {
        log_line("comm: %d ranks on GPUs; device gradients staged through host memory for MPI (%s)", size, why);
        return 0;
    }
#ifdef SELMA_NCCL
    if (comm_nccl_init(c, device, nccl)) return -1;
    log_line("comm: %d ranks, a GPU each; device gradients averaged by NCCL", size);
#endif
    return 0;
}

void comm_gpu_free(comm_nccl *nccl) {
#ifdef SELMA_NCCL
    comm_nccl_free(nccl);
#else
    CHECK(!nccl);
#endif
}

void comm_gpu_allreduce_avg(comm_nccl *nccl, float *dev, size_t count, const char *what) {
#ifdef SELMA_NCCL
    comm_nccl_allreduce_avg(nccl, dev, count, selma_cuda_stream());
    comm_nccl_wait(nccl, what);
#else
    CHECK(!"an NCCL communicator in a build without NCCL");
#endif
}
