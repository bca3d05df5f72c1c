// Expert-parallel `selma run`: jobs, heartbeats and rank 0's check of the adapters
// (pipeline_ranks.h).
#include "experiments/pipeline_ranks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

rank_job *rank_jobs_add(rank_jobs *j, const comm *w, const char *dir, const char *what) {
    if (j->n == j->cap) {
        j->cap = j->cap ? 2 * j->cap : 16;
        j->items = realloc(j->items, sizeof *j->items * (size_t)j->cap);
        CHECK(j->items);
    }
    rank_job *b = &j->items[j->n];
    memset(b, 0, sizeof *b);
    snprintf(b->dir, sizeof b->dir, "%s", dir);
    snprintf(b->what, sizeof b->what, "%s", what);
    b->owner = j->n % comm_size(w);
    j->n++;
    return b;
}

void rank_jobs_free(rank_jobs *j) {
    free(j->items);
    memset(j, 0, sizeof *j);
}

int ranks_beat(comm *w, int busy, const char *what) {
    int n = comm_size(w);
    if (n == 1) return busy != 0;
    unsigned char mine = busy != 0, *all = malloc((size_t)n);
    CHECK(all);
    comm_allgather(w, &mine, 1, all, what);
    int k = 0;
    for (int r = 0; r < n; r++) k += all[r];
    free(all);
    return k;
}

void ranks_wait(comm *w, const char *what) {
    while (ranks_beat(w, 0, what) > 0) {}
}

int file_checksum(const char *path, uint64_t *sum) {
    char *bytes;
    size_t n;
    if (file_read_all(path, &bytes, &n)) return -1;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)bytes[i]) * 1099511628211ull;
    free(bytes);
    *sum = h;
    return 0;
}

// Rank 0: the job's stage is complete and its adapter holds the owner's bytes.
static int check_job(const rank_job *b, uint64_t sum) {
    char path[4400];
    struct stat st;
    snprintf(path, sizeof path, "%s/DONE", b->dir);
    const char *shared = "the run directory must be on a filesystem every rank shares";
    if (stat(path, &st))
        return err_set("%s: rank %d trained it, but %s is missing here (%s)", b->what, b->owner, path, shared);
    snprintf(path, sizeof path, "%s/lora.safetensors", b->dir);
    uint64_t here;
    if (file_checksum(path, &here)) return err_wrap("%s (trained on rank %d)", b->what, b->owner);
    if (here != sum)
        return err_set("%s: %s differs from the bytes rank %d wrote (checksum %016llx, rank %d: %016llx; %s)",
                       b->what, path, b->owner, (unsigned long long)here, b->owner,
                       (unsigned long long)sum, shared);
    return 0;
}

int ranks_collect(comm *w, rank_jobs *j, int my_rc) {
    int n = comm_size(w), me = comm_rank(w);
    int *rcs = malloc(sizeof(int) * (size_t)n);
    CHECK(rcs);
    comm_allgather(w, &my_rc, sizeof my_rc, rcs, "expert-parallel: results");
    int stopped = 0;
    for (int r = 0; r < n; r++) stopped |= rcs[r] == 3;
    free(rcs);
    if (stopped) {
        if (me == 0) log_line("expert-parallel: training stopped (--stop-after); rerun to resume");
        return 3;
    }
    int rc = 0;
    for (int i = 0; i < j->n; i++) {
        rank_job *b = &j->items[i];
        uint64_t sum = b->sum;
        comm_bcast(w, &sum, sizeof sum, b->owner, "expert-parallel: adapter checksums");
        if (me != 0 || rc) continue;
        rc = check_job(b, sum);
        if (!rc) log_line("expert-parallel: %s trained on rank %d, adapter %016llx verified", b->what, b->owner,
                          (unsigned long long)sum);
    }
    return rc;
}
