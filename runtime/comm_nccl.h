// Gradient collectives on GPUs: NCCL, bootstrapped over MPI (runtime/comm.h). Built
// only when meson finds NCCL (SELMA_NCCL); compiled on every such machine, run only
// where there are GPUs.
//
// One rank per GPU: comm_local_rank() picks the device. Rank 0 makes the
// ncclUniqueId and comm_bcast sends it to the others. Collectives run on the
// communicator's own stream, ordered after the caller's compute stream by an event,
// and the compute stream waits for them by another event, so a backward pass can go
// on while earlier gradients are reduced. A collective that has not finished within
// the comm timeout aborts the NCCL communicator and the job (comm_abort): NCCL, unlike
// the MPI path, cannot say which rank is missing.
//
// NCCL picks its own reduction order (rings, trees): results equal one process within
// floating-point tolerance, not bit for bit as the CPU path is.
#ifndef SELMA_RUNTIME_COMM_NCCL_H
#define SELMA_RUNTIME_COMM_NCCL_H

#include <stddef.h>

#include "runtime/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comm_nccl comm_nccl;

// Every rank calls it at the same point; sets the CUDA device to `device`.
int comm_nccl_init(comm *c, int device, comm_nccl **out);
void comm_nccl_free(comm_nccl *n);
// In-place average over ranks of `count` floats in device memory, enqueued after the
// work already on compute_stream (a cudaStream_t; NULL = the legacy default stream);
// work enqueued on compute_stream afterwards waits for it.
void comm_nccl_allreduce_avg(comm_nccl *n, float *dev, size_t count, void *compute_stream);
// Blocks until every enqueued collective has finished, or the timeout passes.
void comm_nccl_wait(comm_nccl *n, const char *what);

#ifdef __cplusplus
}
#endif
#endif
