// Data-parallel training with the UNet on CUDA over 2 ranks (suites mpi and gpu: run
// under `mpirun --oversubscribe -np 2`; exit 77 without a CUDA device, without MPI or
// with another number of ranks). The ranks may share one GPU, as on the test machines.
// In full and LoRA mode, with caption dropout, the clip and EMA active:
//   - host staging (SELMA_GPU_REDUCE=host: each rank's device gradient copied to the
//     host, summed in rank order by MPI, copied back, scaled by 1/2) against one process
//     with 2 shards on CUDA, which sums the same two gradients in the same order on the
//     device: equal but for the CUDA kernels' nondeterministic (atomicAdd) sums, so
//     within test_train_gpu.c's 2-vs-1-shard bounds (TOL_DP_*, justified there);
//   - every rank ends with bit for bit the same weights, moments and EMA (the same
//     reduced gradient, deterministic updates), checked by gathered checksums;
//   - where comm_gpu_init chooses NCCL (the build has it and each rank has a GPU of
//     its own) the same comparisons with NCCL's average (for 2 ranks, x0/2 + x1/2, the
//     same floats as (x0 + x1)/2); otherwise that half says why it did not run.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/bundle.h"
#include "models/train.h"
#include "runtime/checksum.h"
#include "runtime/comm.h"
#include "runtime/comm_gpu.h"
#include "runtime/log.h"
#include "tests/gpu_check.h"
#include "tests/tiny_t2i.h"

#define B 4
#define S 16
#define STEPS 4
#define TOL_DP_LOSS 1e-3
#define TOL_DP_NORM 1e-3
#define TOL_DP_UPDATE 5e-2

static comm *world;

static const char *const captions[B] = {"a red circle", "two blue squares",
                                        "a green triangle left of a yellow circle", "a purple square"};

// A model built on the host from one seed, its UNet moved to the GPU this rank uses.
static void build(t2i_model *m, int lora) {
    memset(m, 0, sizeof *m);
    tiny_t2i_config(&m->cfg, S);
    m->cfg.unet.class_embed_dim = m->cfg.te.width;
    lora_config lc = {.rank = 4, .alpha = 4, .targets = "to_q,to_k,to_v,to_out.0"};
    CHECK(t2i_build(m, lora ? UNET_TRAIN_LORA : UNET_TRAIN_FULL, lora ? &lc : NULL) == 0);
    t2i_init_random(m, 7);
    if (t2i_unet_to_device(m, DEVICE_CUDA)) comm_abort(world, 1, err_msg());
}

static train_hparams hparams(int lora, comm *c, comm_nccl *nccl) {
    return (train_hparams){.adam = {.lr = lora ? 3e-3 : 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                    .weight_decay = 0.01},
                           .warmup_steps = 2, .grad_clip = lora ? 0.002 : 0.05, .ema_decay = 0.9, .ema_warmup = 1,
                           .caption_dropout = 0.25, .text_lr_scale = 0.1, .comm = c, .nccl = nccl, .shards = 2};
}

// A trainer's group g array (params, moments, EMA: k = 0..3) as a host copy.
static float *download(const trainer *tr, int g, int k) {
    const float *src[4] = {tr->param[g], tr->adam_m[g], tr->adam_v[g], tr->ema[g].shadow};
    float *h = malloc((tr->n[g] ? tr->n[g] : 1) * sizeof(float));
    CHECK(h && src[k]);
    device_copy(DEVICE_CPU, h, g == 0 ? tr->dev : DEVICE_CPU, src[k], tr->n[g] * sizeof(float));
    return h;
}

// One checksum over every group's params, moments and EMA.
static uint64_t state_checksum(const trainer *tr) {
    uint64_t h = FNV1A64_INIT;
    for (int g = 0; g < tr->n_groups; g++)
        for (int k = 0; k < 4; k++) {
            float *a = download(tr, g, k);
            h = fnv1a64(h, a, tr->n[g] * sizeof(float));
            free(a);
        }
    return h;
}

static void check_ranks(int lora, comm_nccl *nccl, const char *how) {
    char what[64];
    snprintf(what, sizeof what, "%s, %s", lora ? "lora" : "full", how);
    t2i_model md, m1;
    trainer dp, one;
    build(&md, lora), build(&m1, lora);
    train_hparams hd = hparams(lora, world, nccl), h1 = hparams(lora, NULL, NULL);
    if (trainer_init(&dp, &md, &hd, B, 11) || trainer_init(&one, &m1, &h1, B, 11)) comm_abort(world, 1, err_msg());
    EXPECT(dp.n_local == 1 && dp.shards == 2 && dp.nccl == nccl && (nccl || dp.staged[0]) && one.n_local == 2,
           "%s: not set up as expected", what);
    if (lora) trainer_init_lora(&dp, 5), trainer_init_lora(&one, 5);
    float *w0[2] = {download(&one, 0, 0), lora ? NULL : download(&one, 1, 0)};
    float x[B * 3 * S * S];
    rng_fill_uniform(x, sizeof x / sizeof x[0], 1234, 0, 0, -1, 1);
    for (int s = 0; s < STEPS; s++) {
        double ld, l1, gd, g1;
        int rd = trainer_step(&dp, x, captions, &ld, &gd), r1 = trainer_step(&one, x, captions, &l1, &g1);
        EXPECT(rd == 0 && r1 == 0, "%s step %d: 2 ranks %d, 1 process %d (%s)", what, s + 1, rd, r1, err_msg());
        double rl = fabs(ld - l1) / l1, rg = fabs(gd - g1) / g1;
        if (comm_rank(world) == 0)
            printf("  %s step %d: loss %.6f (1 process, 2 shards: %.6f, rel %.2e), grad norm %.5f (%.5f, rel %.2e)\n",
                   what, s + 1, ld, l1, rl, gd, g1, rg);
        EXPECT(rl <= TOL_DP_LOSS, "%s step %d: loss %.6f over 2 ranks, %.6f in 1 process", what, s + 1, ld, l1);
        EXPECT(rg <= TOL_DP_NORM, "%s step %d: grad norm %.6f over 2 ranks, %.6f in 1 process", what, s + 1, gd, g1);
    }
    for (int g = 0; g < dp.n_groups; g++) {
        float *wd = download(&dp, g, 0), *w1 = download(&one, g, 0);
        double u = rel_l2_base(wd, w1, w0[g], dp.n[g]);
        if (comm_rank(world) == 0) printf("  %s: %s updates rel L2 %.2e\n", what, g ? "text encoder" : "UNet", u);
        EXPECT(u <= TOL_DP_UPDATE, "%s: group %d updates rel L2 %.3e over 2 ranks vs 1 process", what, g, u);
        free(wd), free(w1);
    }
    uint64_t h = state_checksum(&dp), hs[2];
    comm_allgather(world, &h, sizeof h, hs, "checksums");
    EXPECT(hs[0] == hs[1], "%s: rank 1's weights, moments or EMA differ from rank 0's", what);
    free(w0[0]), free(w0[1]);
    trainer_free(&dp), trainer_free(&one);
    t2i_free(&md), t2i_free(&m1);
}

int main(void) {
    if (comm_init(&world)) {
        fprintf(stderr, "test_train_dp_gpu: %s\n", err_msg());
        return 1;
    }
    // Rank 0's device count decides for all, so that every rank skips or none.
    int devices = cuda_device_count();
    comm_bcast(world, &devices, sizeof devices, 0, "test");
    if (comm_size(world) != 2 || devices == 0) {
        if (comm_rank(world) == 0)
            printf("test_train_dp_gpu: skipped (needs 2 ranks under mpirun and a CUDA device: %d rank%s, %s)\n",
                   comm_size(world), comm_size(world) > 1 ? "s" : "", cuda_device_describe());
        comm_finalize();
        return TEST_SKIP;
    }
    if (comm_rank(world) > 0) log_set_quiet(1);
    setenv("SELMA_GPU_REDUCE", "host", 1);
    comm_nccl *nccl = NULL;
    EXPECT(comm_gpu_init(world, &nccl) == 0 && !nccl, "SELMA_GPU_REDUCE=host: %s", err_msg());
    check_ranks(1, NULL, "host staging");
    check_ranks(0, NULL, "host staging");
    unsetenv("SELMA_GPU_REDUCE");
    if (comm_gpu_init(world, &nccl)) comm_abort(world, 1, err_msg());
    if (nccl) {
        check_ranks(1, nccl, "NCCL");
        check_ranks(0, nccl, "NCCL");
        comm_gpu_free(nccl);
    } else if (comm_rank(world) == 0) {
        printf("  NCCL: not run (comm_gpu_init chose host staging: the log line above says why)\n");
    }
    int rc = check_report("test_train_dp_gpu");
    comm_finalize();
    return rc;
}
