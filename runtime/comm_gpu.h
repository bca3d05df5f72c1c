// The ranks of one run on GPUs: which GPU each rank uses, and how gradients that live
// on the GPUs are reduced over the ranks (models/train.c). Compiled in every build;
// the NCCL half only where meson found NCCL (SELMA_NCCL, runtime/comm_nccl.h).
//
// Two ways to reduce device gradients:
//   NCCL: between the GPUs directly (comm_nccl_allreduce_avg). NCCL needs one GPU per
//     rank: it refuses two ranks on the same GPU;
//   host staging: each rank copies its gradient to a host buffer, comm_allreduce_sum
//     adds the ranks' buffers in rank order over MPI, and the sum is copied back. Any
//     build with MPI, any number of ranks per GPU (e.g. two ranks on a one-GPU machine).
// SELMA_GPU_REDUCE picks one; rank 0's value holds for every rank, so that no two
// ranks take different paths (`mpirun -x SELMA_GPU_REDUCE=host ...`):
//   auto (unset or empty, the default): NCCL when the build has it and no two ranks
//     share a GPU, host staging otherwise (logged with the reason);
//   nccl: NCCL, or an error where it cannot run;
//   host: host staging always.
#ifndef SELMA_RUNTIME_COMM_GPU_H
#define SELMA_RUNTIME_COMM_GPU_H

#include <stddef.h>

#include "runtime/comm.h"
#include "runtime/comm_nccl.h"

#ifdef __cplusplus
extern "C" {
#endif

// Every rank calls it at the same point, before anything is allocated on a GPU: makes
// GPU comm_local_rank() modulo the GPUs this rank sees its device (so one rank per GPU
// on a node, or each rank's own GPU where the launcher gives every rank one, as
// Slurm's --gpus-per-task=1 does) and sets *nccl to an NCCL communicator over the
// ranks, or to NULL for host staging (SELMA_GPU_REDUCE above). One rank: the device
// stays as it is and *nccl is NULL. -1 with a message without a GPU, for a bad
// SELMA_GPU_REDUCE, or when NCCL was asked for and cannot run; the same on every rank.
int comm_gpu_init(comm *c, comm_nccl **nccl);
// Frees what comm_gpu_init made (NULL: nothing to do).
void comm_gpu_free(comm_nccl *nccl);
// In-place average over the ranks of `count` floats on this rank's GPU, finished when
// it returns (the job is aborted if a rank does not take part within the comm
// timeout). Ordered after the kernels already on selma_cuda_stream().
void comm_gpu_allreduce_avg(comm_nccl *nccl, float *dev, size_t count, const char *what);

#ifdef __cplusplus
}
#endif
#endif
