// NCCL collectives for GPUs (comm_nccl.h). Unverified on a GPU so far: it compiles
// wherever meson finds NCCL; tests/test_train_dp_gpu.c runs it where MPI launches 2
// ranks with a GPU each (comm_gpu.h), which no test machine has had yet.
#include "runtime/comm_nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/error.h"
#include "runtime/log.h"

struct comm_nccl {
    comm *c;
    ncclComm_t nc;
    cudaStream_t stream;   // the collectives' own stream
    cudaEvent_t ready;     // recorded on the compute stream: the gradients are written
    cudaEvent_t done;      // recorded on our stream: the reduction is over
};

int comm_nccl_init(comm *c, int device, comm_nccl **out) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
        return err_set("NCCL: rank %d has no CUDA device", comm_rank(c));
    if (device < 0 || device >= count)
        return err_set("NCCL: rank %d wants device %d but sees %d (one rank per GPU: start at most %d "
                       "ranks per node, or set CUDA_VISIBLE_DEVICES)", comm_rank(c), device, count, count);
    CUDA_CHECK(cudaSetDevice(device));
    ncclUniqueId id;
    if (comm_rank(c) == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    comm_bcast(c, &id, sizeof id, 0, "NCCL bootstrap");
    comm_nccl *n = (comm_nccl *)calloc(1, sizeof *n);
    CHECK(n);
    n->c = c;
    ncclResult_t r = ncclCommInitRank(&n->nc, comm_size(c), id, comm_rank(c));
    if (r != ncclSuccess) {
        free(n);
        return err_set("NCCL: ncclCommInitRank on rank %d: %s", comm_rank(c), ncclGetErrorString(r));
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&n->done, cudaEventDisableTiming));
    *out = n;
    return 0;
}

void comm_nccl_free(comm_nccl *n) {
    if (!n) return;
    cudaEventDestroy(n->ready);
    cudaEventDestroy(n->done);
    cudaStreamDestroy(n->stream);
    ncclCommDestroy(n->nc);
    free(n);
}

void comm_nccl_allreduce_avg(comm_nccl *n, float *dev, size_t count, void *compute_stream) {
    cudaStream_t cs = (cudaStream_t)compute_stream;
    CUDA_CHECK(cudaEventRecord(n->ready, cs));
    CUDA_CHECK(cudaStreamWaitEvent(n->stream, n->ready, 0));
    NCCL_CHECK(ncclAllReduce(dev, dev, count, ncclFloat32, ncclAvg, n->nc, n->stream));
    CUDA_CHECK(cudaEventRecord(n->done, n->stream));
    CUDA_CHECK(cudaStreamWaitEvent(cs, n->done, 0));
}

void comm_nccl_wait(comm_nccl *n, const char *what) {
    double deadline = time_now() + comm_timeout(n->c);
    for (;;) {
        cudaError_t q = cudaEventQuery(n->done);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) CUDA_CHECK(q);
        ncclResult_t async;
        NCCL_CHECK(ncclCommGetAsyncError(n->nc, &async));
        char why[256];
        if (async != ncclSuccess || time_now() > deadline) {
            if (async != ncclSuccess)
                snprintf(why, sizeof why, "%s: NCCL failed: %s; aborting the job", what, ncclGetErrorString(async));
            else
                snprintf(why, sizeof why, "%s: an NCCL collective did not finish within %g s (a rank died or "
                         "stopped answering; SELMA_COMM_TIMEOUT); aborting the job", what, comm_timeout(n->c));
            ncclCommAbort(n->nc);
            comm_abort(n->c, 1, why);
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}
