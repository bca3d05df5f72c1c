// Communication between ranks (comm.h): MPI point-to-point with deadlines, or one
// process.
#include "runtime/comm.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/error.h"
#include "runtime/log.h"

#ifdef SELMA_MPI
#include <mpi.h>
#endif

struct comm {
    int rank, size;
    double timeout_s;
#ifdef SELMA_MPI
    int started;         // comm_init called MPI_Init (and comm_finalize ends it)
    MPI_Comm mpi;        // a duplicate of MPI_COMM_WORLD: selma's messages only
    float *scratch;      // the all-reduce's incoming chunks
    size_t scratch_n;
    MPI_Request *req;    // posted requests and the peer of each
    int *peer, *sending;
    int n_req, cap_req;
    int have_mpi;        // the world is MPI's (launched), not a lone process
#endif
};

static comm world;
static int world_ready;

#define DEFAULT_TIMEOUT_S 300.0

static long env_long(const char *name) {
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 10) : -1;
}

// The number of ranks the launcher started, or 0 when no launcher is in sight.
// SLURM_STEP_NUM_TASKS (not SLURM_NTASKS) is set inside an srun step only, not in the
// batch script that holds the allocation.
static long launched_size(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        long n = env_long(vars[i]);
        if (n > 0) return n;
    }
    return getenv("PMIX_RANK") ? 1 : 0;
}

int comm_init(comm **out) {
    if (world_ready) {
        *out = &world;
        return 0;
    }
    memset(&world, 0, sizeof world);
    world.size = 1;
    world.timeout_s = DEFAULT_TIMEOUT_S;
    const char *t = getenv("SELMA_COMM_TIMEOUT");
    if (t && *t) {
        char *end;
        double v = strtod(t, &end);
        if (*end || !(v > 0)) return err_set("SELMA_COMM_TIMEOUT='%s': not a positive number of seconds", t);
        world.timeout_s = v;
    }
    long n = launched_size();
#ifdef SELMA_MPI
    if (n > 0) {
        int inited = 0;
        MPI_CHECK(MPI_Initialized(&inited));
        if (!inited) {
            if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return err_set("MPI_Init failed (launched as %ld ranks)", n);
            world.started = 1;
        }
        MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world.mpi));
        world.have_mpi = 1;
        // Errors come back as codes, so that a lost peer is reported by name (comm_fail)
        // instead of by MPI's generic fatal handler.
        MPI_CHECK(MPI_Comm_set_errhandler(world.mpi, MPI_ERRORS_RETURN));
        MPI_CHECK(MPI_Comm_rank(world.mpi, &world.rank));
        MPI_CHECK(MPI_Comm_size(world.mpi, &world.size));
    }
#else
    if (n > 1)
        return err_set("launched as one of %ld ranks, but this selma was built without MPI "
                       "(install OpenMPI and reconfigure with -Dmpi=enabled)", n);
#endif
    world_ready = 1;
    *out = &world;
    return 0;
}

void comm_finalize(void) {
    if (!world_ready) return;
#ifdef SELMA_MPI
    if (world.have_mpi) MPI_Comm_free(&world.mpi);
    if (world.started) MPI_Finalize();
    free(world.scratch), free(world.req), free(world.peer), free(world.sending);
#endif
    memset(&world, 0, sizeof world);
    world_ready = 0;
}

int comm_rank(const comm *c) { return c->rank; }
int comm_size(const comm *c) { return c->size; }

int comm_local_rank(const comm *c) {
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        long v = env_long(vars[i]);
        if (v >= 0) return (int)v;
    }
    return c->rank;
}
double comm_timeout(const comm *c) { return c->timeout_s; }
void comm_set_timeout(comm *c, double seconds) { c->timeout_s = seconds; }

void comm_sum_into(float *acc, const float *x, size_t n, int first) {
    if (first) {
        if (acc != x) memcpy(acc, x, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) acc[i] += x[i];
}

void comm_average(float *x, size_t n, int size) {
    if (size == 1) return;
    float s = (float)size;
    for (size_t i = 0; i < n; i++) x[i] /= s;
}

void comm_abort(comm *c, int code, const char *why) {
    fprintf(stderr, "selma: rank %d: %s\n", c ? c->rank : 0, why);
    fflush(stderr);
#ifdef SELMA_MPI
    if (c && c->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

#ifdef SELMA_MPI

// Messages are cut into pieces MPI's int counts can hold.
#define PIECE_BYTES ((size_t)1 << 30)

enum { TAG_REDUCE = 11, TAG_GATHER_CHUNKS, TAG_BCAST, TAG_GATHER };

static void __attribute__((noreturn)) comm_fail(comm *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void comm_fail(comm *c, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    comm_abort(c, 1, buf);
}

static void req_reserve(comm *c, int more) {
    if (c->n_req + more <= c->cap_req) return;
    int cap = 2 * (c->n_req + more);
    c->req = realloc(c->req, sizeof *c->req * (size_t)cap);
    c->peer = realloc(c->peer, sizeof *c->peer * (size_t)cap);
    c->sending = realloc(c->sending, sizeof *c->sending * (size_t)cap);
    CHECK(c->req && c->peer && c->sending);
    c->cap_req = cap;
}

// Posts a send (send = 1) or receive of `bytes` with `peer` as pieces of PIECE_BYTES.
static void post(comm *c, int send, void *buf, size_t bytes, int peer, int tag, const char *what) {
    size_t pieces = bytes ? (bytes + PIECE_BYTES - 1) / PIECE_BYTES : 1;
    req_reserve(c, (int)pieces);
    for (size_t k = 0; k < pieces; k++) {
        size_t off = k * PIECE_BYTES, len = bytes - off < PIECE_BYTES ? bytes - off : PIECE_BYTES;
        char *p = (char *)buf + off;
        int rc = send ? MPI_Isend(p, (int)len, MPI_BYTE, peer, tag, c->mpi, &c->req[c->n_req])
                      : MPI_Irecv(p, (int)len, MPI_BYTE, peer, tag, c->mpi, &c->req[c->n_req]);
        if (rc != MPI_SUCCESS)
            comm_fail(c, "%s: cannot %s rank %d: %s", what, send ? "send to" : "receive from", peer,
                      err_mpi_string(rc));
        c->sending[c->n_req] = send;
        c->peer[c->n_req++] = peer;
    }
}

static void sleep_us(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

// Polls every posted request until all are done or the deadline passes; then names
// the ranks whose messages are still missing.
static void wait_all(comm *c, const char *what) {
    double deadline = time_now() + c->timeout_s;
    for (long spin = 0;; spin++) {
        int pending = 0;
        for (int i = 0; i < c->n_req; i++) {
            if (c->req[i] == MPI_REQUEST_NULL) continue;
            int done = 0;
            MPI_Status st;
            int rc = MPI_Test(&c->req[i], &done, &st);
            if (rc != MPI_SUCCESS)
                comm_fail(c, "%s: lost rank %d: %s; aborting the job", what, c->peer[i], err_mpi_string(rc));
            if (!done) pending++;
        }
        if (!pending) break;
        if (time_now() > deadline) {
            char names[256] = "";
            size_t k = 0;
            // Receives first: a send can complete into MPI's buffers while its peer is dead.
            for (int pass = 0; pass < 2 && !k; pass++)
                for (int i = 0; i < c->n_req && k < sizeof names - 16; i++) {
                    if (c->req[i] == MPI_REQUEST_NULL || c->sending[i] != pass) continue;
                    int dup = 0;
                    for (int j = 0; j < i; j++)
                        dup |= c->req[j] != MPI_REQUEST_NULL && c->sending[j] == pass && c->peer[j] == c->peer[i];
                    if (!dup) k += (size_t)snprintf(names + k, sizeof names - k, "%s%d", k ? ", " : "", c->peer[i]);
                }
            comm_fail(c, "rank %s did not answer within %g s (%s; SELMA_COMM_TIMEOUT); aborting the job",
                      names, c->timeout_s, what);
        }
        // Busy polling keeps latency low; past the first thousand tries, yield the core
        // (oversubscribed ranks share it with the peer they are waiting for).
        if (spin > 1000) sleep_us(spin > 100000 ? 1000 : 50);
    }
    c->n_req = 0;
}

static void chunk(size_t n, int size, int i, size_t *off, size_t *len) {
    size_t a = n / (size_t)size * (size_t)i + (n % (size_t)size < (size_t)i ? n % (size_t)size : (size_t)i);
    size_t b = n / (size_t)size + ((size_t)i < n % (size_t)size);
    *off = a, *len = b;
}

void comm_allreduce_sum(comm *c, float *x, size_t n, const char *what) {
    if (c->size == 1) return;
    int r = c->rank, P = c->size;
    size_t off, len;
    chunk(n, P, r, &off, &len);
    if (c->scratch_n < len * (size_t)P) {
        free(c->scratch);
        c->scratch = malloc(sizeof(float) * len * (size_t)P);
        CHECK(c->scratch);
        c->scratch_n = len * (size_t)P;
    }
    // Reduce-scatter: rank r gets chunk r of every rank and sums it in rank order.
    for (int j = 0; j < P; j++) {
        if (j == r) continue;
        size_t oj, lj;
        chunk(n, P, j, &oj, &lj);
        post(c, 0, c->scratch + (size_t)j * len, len * sizeof(float), j, TAG_REDUCE, what);
        post(c, 1, x + oj, lj * sizeof(float), j, TAG_REDUCE, what);
    }
    memcpy(c->scratch + (size_t)r * len, x + off, len * sizeof(float));
    wait_all(c, what);
    for (int j = 0; j < P; j++) comm_sum_into(x + off, c->scratch + (size_t)j * len, len, j == 0);
    // All-gather of the summed chunks.
    for (int j = 0; j < P; j++) {
        if (j == r) continue;
        size_t oj, lj;
        chunk(n, P, j, &oj, &lj);
        post(c, 0, x + oj, lj * sizeof(float), j, TAG_GATHER_CHUNKS, what);
        post(c, 1, x + off, len * sizeof(float), j, TAG_GATHER_CHUNKS, what);
    }
    wait_all(c, what);
}

void comm_bcast(comm *c, void *buf, size_t bytes, int root, const char *what) {
    if (c->size == 1) return;
    CHECK(root >= 0 && root < c->size);
    if (c->rank == root) {
        for (int j = 0; j < c->size; j++)
            if (j != root) post(c, 1, buf, bytes, j, TAG_BCAST, what);
    } else {
        post(c, 0, buf, bytes, root, TAG_BCAST, what);
    }
    wait_all(c, what);
}

void comm_gather(comm *c, const void *send, size_t bytes, void *recv, int root, const char *what) {
    CHECK(root >= 0 && root < c->size);
    if (c->rank == root) memcpy((char *)recv + (size_t)root * bytes, send, bytes);
    if (c->size == 1) return;
    if (c->rank == root) {
        for (int j = 0; j < c->size; j++)
            if (j != root) post(c, 0, (char *)recv + (size_t)j * bytes, bytes, j, TAG_GATHER, what);
    } else {
        post(c, 1, (void *)send, bytes, root, TAG_GATHER, what);
    }
    wait_all(c, what);
}

void comm_allgather(comm *c, const void *send, size_t bytes, void *recv, const char *what) {
    memcpy((char *)recv + (size_t)c->rank * bytes, send, bytes);
    if (c->size == 1) return;
    for (int j = 0; j < c->size; j++) {
        if (j == c->rank) continue;
        post(c, 0, (char *)recv + (size_t)j * bytes, bytes, j, TAG_GATHER, what);
        post(c, 1, (void *)send, bytes, j, TAG_GATHER, what);
    }
    wait_all(c, what);
}

#else  // one process: nothing to exchange

void comm_allreduce_sum(comm *c, float *x, size_t n, const char *what) {}

void comm_bcast(comm *c, void *buf, size_t bytes, int root, const char *what) { CHECK(root == 0); }

void comm_gather(comm *c, const void *send, size_t bytes, void *recv, int root, const char *what) {
    CHECK(root == 0);
    memcpy(recv, send, bytes);
}

void comm_allgather(comm *c, const void *send, size_t bytes, void *recv, const char *what) {
    memcpy(recv, send, bytes);
}

#endif

void comm_allreduce_avg(comm *c, float *x, size_t n, const char *what) {
    comm_allreduce_sum(c, x, n, what);
    comm_average(x, n, c->size);
}

// A barrier that can name who is missing: everyone exchanges one byte with everyone.
void comm_barrier(comm *c, const char *what) {
    if (c->size == 1) return;
    unsigned char one = 1, *all = malloc((size_t)c->size);
    CHECK(all);
    comm_allgather(c, &one, 1, all, what);
    free(all);
}
