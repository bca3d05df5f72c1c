// LoRA-mode training (models/train.h), in process on a tiny random model:
//   - steps on one fixed batch cut the loss (measured at fixed timesteps and noise);
//   - the base weights (UNet and text encoder) stay bit-identical, only adapters move;
//   - a run saved at step 10, reloaded into a fresh trainer and continued, ends
//     bit-identical to one that never stopped (adapters, moments, RNG);
//   - the epoch order is a permutation that depends on the seed and the epoch only.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "models/train.h"
#include "tests/tiny_t2i.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/rng.h"

#define B 4
#define S 16

static void tiny(t2i_model *m, uint64_t base_seed) {
    tiny_t2i_config(&m->cfg, S);
    lora_config l = {.rank = 4, .alpha = 4, .targets = "to_q,to_k,to_v,to_out.0"};
    CHECK(t2i_build(m, UNET_TRAIN_LORA, &l) == 0);
    t2i_init_random(m, base_seed);  // the "pretrained" base: random, fixed
}

// A smooth batch the adapters can fit: colour blobs, captions naming them.
static void batch(float *x, const char **caps) {
    static const char *const names[B] = {"a red circle", "two blue squares", "a green triangle",
                                         "a yellow circle"};
    for (int b = 0; b < B; b++) {
        caps[b] = names[b];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    float d = (float)((y - 8) * (y - 8) + (xx - 4 - 2 * b) * (xx - 4 - 2 * b));
                    x[((b * 3 + c) * S + y) * S + xx] = d < 12 ? (c == b % 3 ? 0.9f : -0.8f) : -1.0f;
                }
    }
}

static train_hparams hparams(void) {
    return (train_hparams){.adam = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0},
                           .warmup_steps = 0, .grad_clip = 1.0, .ema_decay = 0, .caption_dropout = 0};
}

static void test_loss_and_frozen_base(void) {
    t2i_model m = {0};
    tiny(&m, 11);
    size_t nb = m.unet.params.params.size, nt = m.te.params_arena.size;
    char *unet0 = malloc(nb), *te0 = malloc(nt);
    CHECK(unet0 && te0);
    train_hparams hp = hparams();
    trainer tr;
    EXPECT(trainer_init(&tr, &m, &hp, B, 5) == 0, "%s", err_msg());
    trainer_init_lora(&tr, 5);
    EXPECT_TRUE(tr.lora == 1 && tr.n_groups == 1 && tr.n[0] < nb / sizeof(float) / 4);
    // Base weights as they are after the adapters' init (lora_B = 0: the model is the base).
    memcpy(unet0, m.unet.params.params.base, nb);
    memcpy(te0, m.te.params_arena.base, nt);
    static float x[B * 3 * S * S], noise[B * 3 * S * S];
    const char *caps[B];
    batch(x, caps);
    int t[B] = {150, 400, 650, 900};
    rng r = rng_make(9, 0);
    for (size_t i = 0; i < sizeof noise / sizeof *noise; i++) noise[i] = rng_normal(&r);
    double before, after, loss;
    EXPECT_TRUE(trainer_eval_loss(&tr, x, caps, t, noise, &before) == 0);
    for (int s = 0; s < 120; s++) EXPECT_TRUE(trainer_step(&tr, x, caps, &loss, NULL) == 0);
    EXPECT_TRUE(trainer_eval_loss(&tr, x, caps, t, noise, &after) == 0);
    printf("LoRA fixed-batch loss: %.4f -> %.4f after 120 steps\n", before, after);
    EXPECT(after < 0.8 * before, "loss %.4f -> %.4f", before, after);
    // Only adapters changed: every base tensor bit-identical, some adapter tensor not zero.
    int base_same = 1, lora_moved = 0;
    for (int i = 0; i < m.unet.params.n; i++) {
        const unet_param *p = &m.unet.params.items[i];
        size_t off = (size_t)((char *)p->t.data - m.unet.params.params.base), n = (size_t)tensor_nbytes(&p->t);
        if (p->kind == PARAM_BASE) base_same &= memcmp(unet0 + off, p->t.data, n) == 0;
        else if (memcmp(unet0 + off, p->t.data, n)) lora_moved = 1;
    }
    EXPECT(base_same, "a UNet base weight changed in LoRA training");
    EXPECT(lora_moved, "no adapter changed");
    EXPECT(memcmp(te0, m.te.params_arena.base, nt) == 0, "the text encoder changed in LoRA training");
    free(unet0), free(te0);
    trainer_free(&tr);
    t2i_free(&m);
}

// Runs `steps` steps from a fresh start, saving at `save_at` into dir and continuing
// in a new trainer loaded from it when dir is set; returns the adapters' copy.
static float *run(int steps, int save_at, const char *dir, size_t *n) {
    t2i_model m = {0};
    tiny(&m, 11);
    train_hparams hp = hparams();
    trainer tr;
    CHECK(trainer_init(&tr, &m, &hp, B, 7) == 0);
    trainer_init_lora(&tr, 7);
    static float x[B * 3 * S * S];
    const char *caps[B];
    batch(x, caps);
    for (int s = 0; s < steps; s++) {
        CHECK(trainer_step(&tr, x, caps, NULL, NULL) == 0);
        if (dir && tr.step == save_at) {
            CHECK(trainer_save(&tr, dir, 42, 2) == 0);
            trainer_free(&tr);
            t2i_free(&m);
            tiny(&m, 11);  // a fresh process, as far as the model goes
            CHECK(trainer_init(&tr, &m, &hp, B, 999) == 0);
            char latest[512];
            long step, pos = 0;
            CHECK(ckpt_find_latest(dir, latest, sizeof latest, &step, NULL) == 0);
            EXPECT(trainer_load(&tr, latest, &pos) == 0, "%s", err_msg());
            EXPECT_TRUE(pos == 42 && tr.step == save_at);
        }
    }
    *n = tr.n[0];
    float *out = malloc(*n * sizeof(float) * 3);
    CHECK(out);
    memcpy(out, tr.param[0], *n * sizeof(float));
    memcpy(out + *n, tr.adam_m[0], *n * sizeof(float));
    memcpy(out + 2 * *n, tr.adam_v[0], *n * sizeof(float));
    // The model holds what the copy holds (the copy is scattered back after each step).
    int same = 1;
    for (int i = 0; i < m.unet.params.n; i++) {
        const unet_param *p = &m.unet.params.items[i];
        if (p->kind != PARAM_LORA) continue;
        same &= memcmp(p->t.data, tr.param[0] + (p->grad - (float *)m.unet.params.grads.base),
                       (size_t)tensor_nbytes(&p->t)) == 0;
    }
    EXPECT(same, "the model's adapters differ from the trainer's copy");
    trainer_free(&tr);
    t2i_free(&m);
    return out;
}

static void test_resume(void) {
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/selma_lora_resume_%d", (int)getpid());
    size_t n1, n2;
    float *a = run(20, 0, NULL, &n1), *b = run(20, 10, dir, &n2);
    EXPECT(n1 == n2 && memcmp(a, b, 3 * n1 * sizeof(float)) == 0,
           "save at 10, load, continue to 20 != 20 steps straight");
    free(a), free(b);
    dir_remove_tree(dir);
}

static void test_epoch_order(void) {
    t2i_model m = {0};
    tiny(&m, 1);
    train_hparams hp = hparams();
    trainer tr;
    CHECK(trainer_init(&tr, &m, &hp, 1, 3) == 0);
    int p0[50], p1[50], q0[50], seen[50] = {0};
    trainer_epoch_order(&tr, 0, 50, p0);
    trainer_epoch_order(&tr, 1, 50, p1);
    rng_u32(&tr.rng);  // the training stream moving does not change the order
    trainer_epoch_order(&tr, 0, 50, q0);
    for (int i = 0; i < 50; i++) seen[p0[i]]++;
    int perm = 1;
    for (int i = 0; i < 50; i++) perm &= seen[i] == 1;
    EXPECT(perm, "epoch order is not a permutation");
    EXPECT_TRUE(memcmp(p0, q0, sizeof p0) == 0 && memcmp(p0, p1, sizeof p0) != 0);
    trainer_free(&tr);
    t2i_free(&m);
}

int main(void) {
    test_loss_and_frozen_base();
    test_resume();
    test_epoch_order();
    return check_report("test_pipeline_train");
}
