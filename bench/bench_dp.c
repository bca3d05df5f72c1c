// Data-parallel scaling on CPU: steps/s of trainer_step (full mode, the shapes base
// model) for one global batch, in one process or over the ranks of an mpirun.
//   bench_dp [batch] [threads] [steps]               one process, the whole batch at once
//   mpirun -np 2 bench_dp [batch] [threads] [steps]   2 ranks, half the batch each
// threads: OpenBLAS threads per process (default 1). Rank 0 prints the median step
// time after one warm-up step; every rank runs the same number of steps.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_shapes.h"
#include "models/train.h"
#include "runtime/comm.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rng.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 16, threads = argc > 2 ? atoi(argv[2]) : 1;
    int steps = argc > 3 ? atoi(argv[3]) : 5;
    comm *w;
    if (comm_init(&w)) {
        fprintf(stderr, "bench_dp: %s\n", err_msg());
        return 1;
    }
    if (B < 1 || threads < 1 || steps < 1 || steps > 1000 || B % comm_size(w)) {
        fprintf(stderr, "usage: [mpirun -np R] bench_dp [batch, a multiple of R] [threads] [steps]\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    t2i_model m;
    trainer tr;
    if (bench_shapes_trainer("bench_dp", &m, &tr, B, w)) return 1;
    int S = m.cfg.unet.sample_size;
    size_t np = (size_t)B * 3 * S * S;
    float *x = malloc(np * sizeof(float));
    const char **caps = malloc(sizeof(char *) * (size_t)B);
    double *t = malloc(sizeof(double) * (size_t)steps);
    CHECK(x && caps && t);
    rng_fill_uniform(x, np, 1, 0, 0, -1, 1);
    for (int b = 0; b < B; b++) caps[b] = b % 2 ? "two red circles left of a blue square" : "a small green triangle";
    for (int k = -1; k < steps; k++) {  // k = -1: warm-up
        double t0 = time_now();
        CHECK(trainer_step(&tr, x, caps, NULL, NULL) >= 0);
        if (k >= 0) t[k] = time_now() - t0;
    }
    qsort(t, (size_t)steps, sizeof *t, cmp_double);
    double med = steps % 2 ? t[steps / 2] : 0.5 * (t[steps / 2 - 1] + t[steps / 2]);
    if (comm_rank(w) == 0)
        printf("bench_dp: %d rank%s, global batch %d (%d per rank), %d BLAS thread%s per rank, "
               "%zu gradient floats: %.3f s/step, %.2f steps/s (median of %d)\n",
               comm_size(w), comm_size(w) > 1 ? "s" : "", B, tr.Bs, threads, threads > 1 ? "s" : "",
               tr.n[0] + tr.n[1], med, 1 / med, steps);
    free(x), free(caps), free(t);
    trainer_free(&tr);
    t2i_free(&m);
    comm_finalize();
    return 0;
}
