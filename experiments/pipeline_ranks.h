// `selma run` over several ranks (mpirun, srun): expert-parallel training.
//
// The pipeline runs in three phases when launched as N > 1 ranks (pipeline.c):
//   1. data   rank 0 writes the prompts and the training images of every variant;
//   2. train  every LoRA training of every variant and seed (the experts, and the
//             "mixed" LoRA) is a job; job j trains on rank j mod N, in the order one
//             process would train them. Ranks beyond the number of jobs idle;
//   3. rest   rank 0 verifies every job's adapter, then runs the remaining stages
//             (merge, moe, eval) and the report, the trained stages found complete.
// The jobs write into the same stage directories one process uses, so the run
// directory must be on a filesystem every rank shares (as the datasets must be: rank
// 0 writes them and the other ranks read them). Rank 0 checks this rather than
// trusting it: each job's owner sends the adapter's checksum, and rank 0 finds the
// stage's DONE marker and the same bytes, or stops naming the rank and the directory.
//
// Waiting. A rank with nothing to do (phase 1 on ranks 1.., phase 2 once its jobs are
// done) must still notice a dead or silent peer within SELMA_COMM_TIMEOUT, but must
// not time out while a healthy peer is busy for longer than that. So busy ranks beat:
// every training step, and every stage or skill rank 0 finishes, is a heartbeat (an
// all-gather of one "busy" flag per rank), and an idle rank takes part in heartbeats
// until every rank reports idle. Every rank thus waits inside timed collectives only;
// the timeout must exceed the longest pause between two beats: one skill's image
// generation, loading an expert, scoring a checkpoint on validation prompts.
// After phase 2 the other ranks end; their MPI_Finalize waits for rank 0, which the
// launcher ends the job for if it dies.
#ifndef SELMA_EXPERIMENTS_PIPELINE_RANKS_H
#define SELMA_EXPERIMENTS_PIPELINE_RANKS_H

#include <stdint.h>

#include "runtime/comm.h"

// One training of phase 2: its stage directory, what the log calls it, its rank.
typedef struct rank_job {
    char dir[4200], what[128];
    int owner;
    uint64_t sum;  // owner: lora.safetensors' checksum once trained (0: not trained)
} rank_job;

typedef struct rank_jobs {
    rank_job *items;
    int n, cap;
} rank_jobs;

// Appends a job for rank n mod size; returns it.
rank_job *rank_jobs_add(rank_jobs *j, const comm *w, const char *dir, const char *what);
void rank_jobs_free(rank_jobs *j);

// A heartbeat: every rank calls it the same number of times until all are idle (see
// the top). Returns how many ranks said busy.
int ranks_beat(comm *w, int busy, const char *what);
// Idle: beats until every rank is idle.
void ranks_wait(comm *w, const char *what);

// FNV-1a 64 of a file's bytes; -1 with a message when it cannot be read.
int file_checksum(const char *path, uint64_t *sum);

// After phase 2 on every rank: agrees on the phase's result (3 when any rank stopped
// at --stop-after, else 0) and, on rank 0, checks every job: its stage complete
// (DONE), its adapter the bytes its owner wrote. -1 with a message naming the rank.
int ranks_collect(comm *w, rank_jobs *j, int my_rc);

#endif
