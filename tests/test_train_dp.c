// Data-parallel training across ranks (suite mpi: run under
// `mpirun --oversubscribe -np 2`; exit 77 when MPI is not built or the run has one rank).
// On a tiny model, in LoRA and in full mode, with caption dropout, gradient clipping
// and EMA all active:
//   - R ranks for a few steps give bit for bit the weights, AdamW moments, EMA, losses
//     and gradient norms of one process with train.shards = R and the same global
//     batches, on every rank;
//   - the first loss equals the unsharded whole-batch loss within float tolerance (the
//     same mean, summed in another order);
//   - a checkpoint is written by rank 0 alone; all ranks resume from it and go on
//     bit-identically to the uninterrupted run.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "models/bundle.h"
#include "tests/tiny_t2i.h"
#include "models/train.h"
#include "runtime/checksum.h"
#include "runtime/comm.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "runtime/rng.h"

#define S 16
#define STEPS 4
#define MAX_B 8

static comm *world;

static void tiny_config(t2i_config *c) {
    tiny_t2i_config(c, S);
}

static const char *const captions[] = {
    "a red circle", "two blue squares", "a green triangle left of a white circle", "three yellow triangles",
    "a purple square above a red circle", "an outlined blue circle", "a large white square", "four small circles",
};

// Step k's global batch: pixels from its own Philox stream, captions rotated.
static void batch(int k, int B, float *x, const char **cp) {
    rng_fill_uniform(x, (size_t)B * 3 * S * S, 11, 100 + (uint64_t)k, 0, -1, 1);
    for (int b = 0; b < B; b++) cp[b] = captions[(b + k) % 8];
}

typedef struct run_result {
    double loss[STEPS], norm[STEPS];
} run_result;

static void model_make(t2i_model *m, int lora) {
    memset(m, 0, sizeof *m);
    tiny_config(&m->cfg);
    lora_config lc = {.rank = 4, .alpha = 4, .targets = "to_q,to_k,to_v,to_out.0"};
    CHECK(t2i_build(m, lora ? UNET_TRAIN_LORA : UNET_TRAIN_FULL, lora ? &lc : NULL) == 0);
    t2i_init_random(m, 1);
}

// A clip below the tiny model's gradient norms, so that it acts on every step.
static double clip_of(int lora) { return lora ? 0.002 : 0.05; }

static train_hparams hparams(int lora, comm *c, int shards) {
    return (train_hparams){.adam = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01},
                           .warmup_steps = 2, .grad_clip = clip_of(lora), .ema_decay = 0.9, .ema_warmup = 1,
                           .caption_dropout = 0.3, .comm = c, .shards = shards};
}

static int trainer_make(trainer *tr, t2i_model *m, int lora, comm *c, int shards, int B) {
    model_make(m, lora);
    train_hparams hp = hparams(lora, c, shards);
    if (trainer_init(tr, m, &hp, B, 5)) return -1;
    if (lora) trainer_init_lora(tr, 9);
    return 0;
}

static void train_steps(trainer *tr, int k0, int k1, int B, run_result *r) {
    static float x[MAX_B * 3 * S * S];
    const char *cp[MAX_B];
    for (int k = k0; k < k1; k++) {
        batch(k, B, x, cp);
        EXPECT(trainer_step(tr, x, cp, &r->loss[k], &r->norm[k]) == 0, "%s", err_msg());
    }
}

static int same_state(const trainer *a, const trainer *b) {
    for (int g = 0; g < a->n_groups; g++) {
        size_t n = a->n[g] * sizeof(float);
        if (memcmp(a->param[g], b->param[g], n) || memcmp(a->adam_m[g], b->adam_m[g], n) ||
            memcmp(a->adam_v[g], b->adam_v[g], n) || memcmp(a->ema[g].shadow, b->ema[g].shadow, n))
            return 0;
    }
    return a->step == b->step && a->rng.pos == b->rng.pos;
}

static void test_equals_one_process(int lora, const char *dir) {
    int R = comm_size(world), B = 2 * R;
    t2i_model md, m1, mw;
    trainer dp, one, whole;
    run_result rd = {0}, r1 = {0};
    CHECK(trainer_make(&dp, &md, lora, world, 0, B) == 0);
    CHECK(trainer_make(&one, &m1, lora, NULL, R, B) == 0);
    CHECK(trainer_make(&whole, &mw, lora, NULL, 1, B) == 0);
    EXPECT_TRUE(dp.shards == R && dp.Bs == 2 && dp.n_local == 1 && one.n_local == R);

    // The first loss against the whole batch in one piece: equal up to summation order.
    static float x[MAX_B * 3 * S * S];
    const char *cp[MAX_B];
    batch(0, B, x, cp);
    double lw;
    EXPECT_TRUE(trainer_step(&whole, x, cp, &lw, NULL) == 0);
    train_steps(&dp, 0, 2, B, &rd);
    train_steps(&one, 0, STEPS, B, &r1);
    EXPECT_NEAR(rd.loss[0], lw, 0, 1e-5);

    // Checkpoint at step 2: rank 0 writes, everyone reads it back into a fresh trainer.
    EXPECT(trainer_save(&dp, dir, 2, 0) == 0, "%s", err_msg());
    char ck[512];
    snprintf(ck, sizeof ck, "%s/step_%06d", dir, 2);
    comm_barrier(world, "test");
    EXPECT(access(ck, F_OK) == 0, "rank %d: %s missing", comm_rank(world), ck);
    t2i_model mr;
    trainer res;
    CHECK(trainer_make(&res, &mr, lora, world, 0, B) == 0);
    long pos = -1;
    EXPECT(trainer_load(&res, ck, &pos) == 0, "%s", err_msg());
    EXPECT_TRUE(pos == 2);
    run_result rr = rd;
    train_steps(&dp, 2, STEPS, B, &rd);
    train_steps(&res, 2, STEPS, B, &rr);

    EXPECT(same_state(&dp, &one), "%s rank %d: data-parallel state differs from one process with %d shards",
           lora ? "LoRA" : "full", comm_rank(world), R);
    EXPECT(same_state(&dp, &res), "%s rank %d: the resumed run differs", lora ? "LoRA" : "full", comm_rank(world));
    EXPECT_TRUE(memcmp(rd.loss, r1.loss, sizeof rd.loss) == 0 && memcmp(rd.norm, r1.norm, sizeof rd.norm) == 0);
    EXPECT_TRUE(memcmp(rd.loss, rr.loss, sizeof rd.loss) == 0);
    for (int k = 0; k < STEPS; k++)
        EXPECT(rd.norm[k] > clip_of(lora), "the clip (%g) should act: norm %g", clip_of(lora), rd.norm[k]);

    // Every rank holds the same weights: their checksums, gathered, agree.
    uint64_t h = fnv1a64(FNV1A64_INIT, dp.param[0], dp.n[0] * sizeof(float)), hs[64];
    CHECK(R <= 64);
    comm_allgather(world, &h, sizeof h, hs, "checksums");
    for (int r = 1; r < R; r++) EXPECT(hs[r] == hs[0], "rank %d's weights differ from rank 0's", r);
    if (comm_rank(world) == 0)
        printf("%s: %d ranks = 1 process with %d shards after %d steps (loss %.6f, norm %.4f)\n",
               lora ? "LoRA" : "full", R, R, STEPS, rd.loss[STEPS - 1], rd.norm[STEPS - 1]);
    trainer_free(&dp), trainer_free(&one), trainer_free(&whole), trainer_free(&res);
    t2i_free(&md), t2i_free(&m1), t2i_free(&mw), t2i_free(&mr);
}

int main(void) {
    if (comm_init(&world)) {
        fprintf(stderr, "test_train_dp: %s\n", err_msg());
        return 1;
    }
    if (comm_size(world) < 2 || comm_size(world) > MAX_B / 2) {
        printf("test_train_dp: skipped (needs 2..4 ranks: a build with MPI, under mpirun; this is %d)\n",
               comm_size(world));
        comm_finalize();
        return TEST_SKIP;
    }
    if (comm_rank(world) > 0) log_set_quiet(1);  // one copy of the trainer's lines
    openblas_set_num_threads(1);  // the same GEMM blocking in every process
    char dir[64] = "/tmp/test_train_dp.XXXXXX";
    if (comm_rank(world) == 0) CHECK(mkdtemp(dir));
    comm_bcast(world, dir, sizeof dir, 0, "test");
    char lora_dir[128], full_dir[128];
    snprintf(lora_dir, sizeof lora_dir, "%s/lora", dir);
    snprintf(full_dir, sizeof full_dir, "%s/full", dir);
    test_equals_one_process(1, lora_dir);
    test_equals_one_process(0, full_dir);
    comm_barrier(world, "test");
    if (comm_rank(world) == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd)) fprintf(stderr, "test_train_dp: could not remove %s\n", dir);
    }
    int rc = check_report("test_train_dp");
    // Every rank's verdict counts: the launcher reports the first non-zero exit.
    comm_finalize();
    return rc;
}
