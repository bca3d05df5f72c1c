// One training step of the shapes base model on the CPU (./run bench cpu-step):
//   unet  UNet forward + MSE + backward + AdamW over the UNet's parameters, with text
//         embeddings held fixed -- the step bench/torch_step.py times in PyTorch;
//   full  trainer_step: caption dropout, text encoder forward/backward too, gradient
//         clip, AdamW over both models, EMA (what `selma pretrain` runs per step, data
//         rendering aside).
// Shapes UNet config (models/bundle.h t2i_config_shapes), batch and threads from the
// command line (default 32 and 2), median of several runs after one warm-up, and the
// process's peak resident memory (getrusage ru_maxrss).
//   bench_step [batch] [threads] [runs]
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kernels/adamw.h"
#include "kernels/mse.h"
#include "bench/bench_shapes.h"
#include "models/train.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rng.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 32, threads = argc > 2 ? atoi(argv[2]) : 2;
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    if (B < 1 || threads < 1 || runs < 1 || runs > 100) {
        fprintf(stderr, "usage: bench_step [batch] [threads] [runs]\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    t2i_model m;
    trainer tr;
    if (bench_shapes_trainer("bench_step", &m, &tr, B, NULL)) return 1;
    const unet_config *u = &m.cfg.unet;
    int S = u->sample_size, T = m.cfg.te.max_tokens, D = u->cross_attention_dim;
    size_t np = (size_t)B * 3 * S * S;
    float *x = malloc(np * sizeof(float)), *target = malloc(np * sizeof(float));
    float *dout = malloc(np * sizeof(float)), *ctx = malloc((size_t)B * T * D * sizeof(float));
    float *tf = malloc((size_t)B * sizeof(float));
    CHECK(x && target && dout && ctx && tf);
    rng r = rng_make(1, 0);
    for (size_t i = 0; i < np; i++) x[i] = rng_uniform(&r) * 2 - 1, target[i] = rng_normal(&r);
    for (size_t i = 0; i < (size_t)B * T * D; i++) ctx[i] = rng_normal(&r);
    for (int b = 0; b < B; b++) tf[b] = (float)(37 * b % 1000);
    const char **caps = malloc(sizeof(char *) * (size_t)B);
    CHECK(caps);
    for (int b = 0; b < B; b++) caps[b] = b % 2 ? "two red circles left of a blue square" : "a small green triangle";

    size_t nu = tr.n[0];
    double tu[101], tf_[101];
    for (int k = 0; k <= runs; k++) {  // k = 0: warm-up
        double t0 = time_now();
        unet_zero_grad(&m.unet);
        CHECK(unet_forward(&m.unet, x, tf, ctx, B) == 0);
        mse_loss_forward(m.unet.out, target, np);
        mse_loss_backward(dout, m.unet.out, target, 1.0f, np);
        unet_backward(&m.unet, dout, NULL, NULL, B);
        adamw_update(tr.param[0], tr.grad[0], tr.adam_m[0], tr.adam_v[0], nu, &tr.hp.adam, k + 1);
        tu[k] = time_now() - t0;
        t0 = time_now();
        CHECK(trainer_step(&tr, x, caps, NULL, NULL) >= 0);
        tf_[k] = time_now() - t0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t n_params;
    int n_tensors;
    unet_param_count(u, &n_params, &n_tensors);
    printf("shapes UNet %zu parameters (text encoder %zu), batch %d, %dx%d, %d tokens, %d threads, median of %d\n",
           n_params, m.te.n_params, B, S, S, T, threads, runs);
    printf("selma unet step: %.4f s\n", median(tu + 1, runs));
    printf("selma full step: %.4f s (text encoder, clip, EMA included)\n", median(tf_ + 1, runs));
    printf("selma peak rss: %.1f MiB\n", ru.ru_maxrss / 1024.0);
    free(x), free(target), free(dout), free(ctx), free(tf), free(caps);
    trainer_free(&tr);
    t2i_free(&m);
    return 0;
}
