// Communication between the processes of one run: one process per GPU (or per CPU
// socket), started by an existing launcher -- `mpirun -np N`, `srun` -- never by selma.
//
// comm_init() reads the launcher's environment (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
// PMIX_RANK, SLURM_STEP_NUM_TASKS): launched, it starts MPI; not launched, or built
// without MPI, the run is one process of rank 0 and size 1 and every collective is a
// no-op or a copy. A build without MPI that finds itself launched as one of several
// ranks refuses to start (N copies would each train alone and overwrite each other).
//
// Collectives are MPI point-to-point messages, nonblocking, polled with MPI_Test until
// a deadline: a rank that died or stopped answering is named in the message
//   "selma: rank 0: rank 1 did not answer within 300 s (all-reduce); aborting the job"
// and the whole job is aborted (MPI_Abort): MPI can neither cancel a collective nor
// drop a peer, so returning an error would leave the caller hanging in MPI_Finalize.
// The deadline is SELMA_COMM_TIMEOUT seconds (default 300), counted per collective.
//
// The all-reduce sums in a fixed order, ((x_0 + x_1) + x_2) + ..., whatever the number
// of ranks or the network (each rank sums one chunk from every rank in rank order,
// then the chunks are gathered): the same floats as one process adding per-shard
// buffers in shard order with comm_sum_into(). That makes data-parallel training
// bit-identical to one process on CPU (models/train.h).
#ifndef SELMA_RUNTIME_COMM_H
#define SELMA_RUNTIME_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comm comm;

// The world of this process, set up on the first call (later calls return the same).
// -1 with a message when the environment is inconsistent (launched as several ranks
// in a build without MPI) or MPI does not start.
int comm_init(comm **world);
// Ends MPI if comm_init started it; the world is gone afterwards. Safe without init.
void comm_finalize(void);

int comm_rank(const comm *c);
int comm_size(const comm *c);
// This rank's index among the ranks on its node (OMPI_COMM_WORLD_LOCAL_RANK,
// MPI_LOCALRANKID, SLURM_LOCALID; the rank when none is set): the GPU it should use.
int comm_local_rank(const comm *c);
double comm_timeout(const comm *c);            // seconds a collective may wait
void comm_set_timeout(comm *c, double seconds);  // overrides SELMA_COMM_TIMEOUT

// Every rank ends with the same buffer: the sum over ranks in rank order; avg then
// divides by the size (comm_average). x (n floats) on every rank.
void comm_allreduce_sum(comm *c, float *x, size_t n, const char *what);
void comm_allreduce_avg(comm *c, float *x, size_t n, const char *what);
// bytes from root to every rank, in place.
void comm_bcast(comm *c, void *buf, size_t bytes, int root, const char *what);
// Every rank's `bytes` into recv (size * bytes, rank order) on root (gather) or on
// every rank (allgather); recv is unused on the other ranks of a gather.
void comm_gather(comm *c, const void *send, size_t bytes, void *recv, int root, const char *what);
void comm_allgather(comm *c, const void *send, size_t bytes, void *recv, const char *what);
void comm_barrier(comm *c, const char *what);
// Prints "selma: rank R: <why>" and ends every rank of the job with `code` (exit in a
// single process). For a failure that leaves the other ranks waiting.
void comm_abort(comm *c, int code, const char *why) __attribute__((noreturn));

// The reduction's arithmetic, shared with one process that emulates several ranks:
// acc = x when first, acc += x otherwise; x /= size.
void comm_sum_into(float *acc, const float *x, size_t n, int first);
void comm_average(float *x, size_t n, int size);

#ifdef __cplusplus
}
#endif
#endif
