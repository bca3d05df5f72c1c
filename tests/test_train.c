// Training, bundles, checkpoints and LoRA folding, in process on a tiny model:
//   - 200 steps on one fixed batch of shapes renders cut its loss (measured
//     at fixed timesteps and noise) by more than half;
//   - a bundle saved and loaded gives back the same configs and bit-identical outputs;
//     bad bundles fail naming the file and key;
//   - checkpoints: save / load restores every array and the counters; a directory
//     without DONE is skipped; pruning keeps the newest K;
//   - folding a LoRA file equals running with the adapter attached.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "data/prompt_gen.h"
#include "data/prompt_parse.h"
#include "data/render.h"
#include "models/bundle.h"
#include "tests/tiny_t2i.h"
#include "models/lora_fold.h"
#include "models/train.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "runtime/rng.h"

#define B 8
#define S 16

static char tmpdir[64];

static void tiny_config(t2i_config *c) {
    tiny_t2i_config(c, S);
}

// B pretraining items rendered at 32x32 and averaged down to 16x16, in [-1, 1].
static void fixed_batch(float *x, char caps[B][PROMPT_MAX_LEN]) {
    uint8_t rgb[32 * 32 * 3];
    for (int b = 0, i = 0; b < B; i++) {
        scene_graph full, stated;
        scene s;
        CHECK(prompt_pretrain_item(7, i, &full, caps[b], PROMPT_MAX_LEN, &stated) == 0);
        if (scene_place(&full, 32, 32, 0, 100 + (uint64_t)i, &s)) continue;
        scene_render(&s, rgb);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    int sum = 0;
                    for (int d = 0; d < 4; d++) sum += rgb[((2 * y + d / 2) * 32 + 2 * xx + d % 2) * 3 + c];
                    x[((b * 3 + c) * S + y) * S + xx] = sum / 4.0f / 127.5f - 1.0f;
                }
        b++;
    }
}

static void test_loss_drops(void) {
    t2i_model m = {0};
    tiny_config(&m.cfg);
    EXPECT_TRUE(t2i_build(&m, UNET_TRAIN_FULL, NULL) == 0);
    t2i_init_random(&m, 1);
    train_hparams hp = {.adam = {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0},
                        .warmup_steps = 20, .grad_clip = 1.0, .ema_decay = 0.9, .ema_warmup = 1,
                        .caption_dropout = 0.1};
    trainer tr;
    EXPECT_TRUE(trainer_init(&tr, &m, &hp, B, 3) == 0);
    static float x[B * 3 * S * S], noise[B * 3 * S * S];
    static char caps[B][PROMPT_MAX_LEN];
    const char *cp[B];
    fixed_batch(x, caps);
    for (int b = 0; b < B; b++) cp[b] = caps[b];
    int t[B];
    rng r = rng_make(5, 0);
    for (int b = 0; b < B; b++) t[b] = 100 + 100 * b;  // spread over the schedule
    for (size_t i = 0; i < sizeof noise / sizeof *noise; i++) noise[i] = rng_normal(&r);
    double before, after, loss;
    EXPECT_TRUE(trainer_eval_loss(&tr, x, cp, t, noise, &before) == 0);
    for (int s = 0; s < 200; s++) EXPECT_TRUE(trainer_step(&tr, x, cp, &loss, NULL) == 0);
    EXPECT_TRUE(trainer_eval_loss(&tr, x, cp, t, noise, &after) == 0);
    printf("fixed-batch loss: %.4f -> %.4f after 200 steps\n", before, after);
    EXPECT(after < 0.5 * before, "loss %.4f -> %.4f", before, after);
    EXPECT_TRUE(tr.step == 200 && tr.updates == 200 && tr.skipped == 0);
    // A non-finite input skips the update and leaves the weights alone.
    float *w0 = malloc(tr.n[0] * sizeof(float));
    CHECK(w0);
    memcpy(w0, tr.param[0], tr.n[0] * sizeof(float));
    x[5] = NAN;
    EXPECT_TRUE(trainer_step(&tr, x, cp, &loss, NULL) == 1);
    EXPECT_TRUE(tr.skipped == 1 && tr.updates == 200 && tr.step == 201);
    EXPECT_TRUE(memcmp(w0, tr.param[0], tr.n[0] * sizeof(float)) == 0);
    // max_nonfinite in a row stop the run with a message; a good step resets the count.
    tr.hp.max_nonfinite = 2;
    EXPECT_TRUE(tr.nonfinite_run == 1);
    EXPECT_TRUE(trainer_step(&tr, x, cp, &loss, NULL) == -1 && strstr(err_msg(), "max_nonfinite"));
    EXPECT_TRUE(tr.skipped == 2 && tr.updates == 200);
    EXPECT_TRUE(memcmp(w0, tr.param[0], tr.n[0] * sizeof(float)) == 0);
    x[5] = 0.5f;
    EXPECT_TRUE(trainer_step(&tr, x, cp, &loss, NULL) == 0 && tr.nonfinite_run == 0);
    x[5] = NAN;
    EXPECT_TRUE(trainer_step(&tr, x, cp, &loss, NULL) == 1);
    free(w0);
    trainer_free(&tr);
    t2i_free(&m);
}

static void test_bundle(int pooled) {
    t2i_model m = {0}, l = {0};
    tiny_config(&m.cfg);
    if (pooled) m.cfg.unet.class_embed_dim = m.cfg.te.width;
    EXPECT_TRUE(t2i_build(&m, UNET_FROZEN, NULL) == 0);
    t2i_init_random(&m, 2);
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "%s/bundle", tmpdir);
    EXPECT(bundle_save(&m, dir, "{\"steps\": 1}") == 0, "%s", err_msg());
    EXPECT(bundle_save(&m, dir, NULL) == 0, "overwrite: %s", err_msg());
    EXPECT(bundle_load(&l, dir, UNET_FROZEN, NULL) == 0, "%s", err_msg());
    EXPECT_TRUE(memcmp(&l.cfg.unet, &m.cfg.unet, sizeof m.cfg.unet) == 0);
    EXPECT_TRUE(memcmp(&l.cfg.te, &m.cfg.te, sizeof m.cfg.te) == 0);
    EXPECT_TRUE(l.cfg.beta == BETA_COSINE && l.cfg.prediction == PRED_V && l.cfg.te.max_tokens == 48);
    EXPECT_TRUE(l.cfg.spacing == m.cfg.spacing && l.cfg.set_alpha_to_one == m.cfg.set_alpha_to_one);
    sampler_opts o;
    t2i_sampler_opts(&m, SAMPLER_DDIM, 3, 2.0, &o);
    const char *p[2] = {"a red circle", "two blue squares"};
    uint64_t seeds[2] = {1, 2};
    uint8_t a[2 * S * S * 3], b[2 * S * S * 3];
    EXPECT(t2i_sample(&m, &o, p, 2, seeds, a) == 0, "%s", err_msg());
    EXPECT(t2i_sample(&l, &o, p, 2, seeds, b) == 0, "%s", err_msg());
    EXPECT_TRUE(memcmp(a, b, sizeof a) == 0);
    char h1[24], h2[24];
    EXPECT_TRUE(bundle_hash(dir, h1, sizeof h1) == 0 && strlen(h1) == 16);
    t2i_free(&l);
    // A bad key names the file and the key; nothing half-loaded is left.
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    char *text;
    size_t n;
    CHECK(file_read_all(path, &text, &n) == 0);
    EXPECT_TRUE(strstr(text, "\"class_embed_type\"") && !strstr(text, "\"projection\"") == !pooled);
    char *k = strstr(text, "\"layers_per_block\"");
    CHECK(k);
    memcpy(k, "\"layers_per_blocc\"", 18);
    CHECK(atomic_write(path, text, n) == 0);
    free(text);
    EXPECT_TRUE(bundle_load(&l, dir, UNET_FROZEN, NULL) != 0);
    EXPECT(strstr(err_msg(), "unet/config.json") && strstr(err_msg(), "layers_per_block"), "%s", err_msg());
    snprintf(path, sizeof path, "%s/missing", tmpdir);
    EXPECT_TRUE(bundle_load(&l, path, UNET_FROZEN, NULL) != 0);
    EXPECT(strstr(err_msg(), path) != NULL, "%s", err_msg());
    // A changed weight changes the hash.
    ((float *)m.unet.params.items[0].t.data)[0] += 1;
    EXPECT_TRUE(bundle_save(&m, dir, NULL) == 0 && bundle_hash(dir, h2, sizeof h2) == 0);
    EXPECT(strcmp(h1, h2) != 0, "%s %s", h1, h2);
    t2i_free(&m);
}

// The pooled vector is the context row at each caption's first <end>; its backward
// adds into exactly that row. A class embedding the code does not build is refused
// by name.
static void test_pool(void) {
    t2i_model m = {0};
    tiny_config(&m.cfg);
    int T = m.cfg.te.max_tokens, C = m.cfg.te.width;
    const char *p[2] = {"a red circle", ""};
    int *ids = malloc(sizeof(int) * 2 * (size_t)T);
    float *ctx = malloc(sizeof(float) * 2 * (size_t)T * C), pooled[2 * 32], dctx_row[32];
    CHECK(ids && ctx && C == 32);
    EXPECT_TRUE(t2i_tokenize(&m, p, 2, ids) == 0);
    for (int i = 0; i < 2 * T * C; i++) ctx[i] = (float)i;
    t2i_pool(&m, ids, ctx, 2, pooled);
    // "<start> a red circle <end>": <end> at 4; the empty caption's at 1
    EXPECT_TRUE(pooled[0] == (float)(4 * C) && pooled[C] == (float)((T + 1) * C));
    memset(ctx, 0, sizeof(float) * 2 * (size_t)T * C);
    for (int c = 0; c < C; c++) pooled[c] = 1, pooled[C + c] = 2;
    t2i_pool_backward(&m, ids, pooled, 2, ctx);
    double sum = 0;
    for (int i = 0; i < 2 * T * C; i++) sum += ctx[i];
    memcpy(dctx_row, ctx + (size_t)(T + 1) * C, sizeof dctx_row);
    EXPECT_TRUE(sum == 3.0 * C && ctx[4 * C] == 1 && dctx_row[C - 1] == 2);
    free(ids), free(ctx);
    char path[256];
    snprintf(path, sizeof path, "%s/u.json", tmpdir);
    const char *bad = "{\"block_out_channels\": [4], \"down_block_types\": [\"DownBlock2D\"], "
                      "\"up_block_types\": [\"UpBlock2D\"], \"in_channels\": 3, \"out_channels\": 3, "
                      "\"sample_size\": 8, \"layers_per_block\": 1, \"cross_attention_dim\": 8, "
                      "\"norm_num_groups\": 2, \"attention_head_dim\": 2, \"class_embed_type\": \"timestep\"}";
    unet_config u;
    EXPECT_TRUE(unet_config_parse(bad, path, &u) == -1 && strstr(err_msg(), "class_embed_type") &&
                strstr(err_msg(), "timestep") && strstr(err_msg(), path));
    t2i_free(&m);
}

// freeze_text keeps the text encoder bit-identical while the UNet trains (the pooled
// path included); text_lr_scale slows it relative to the UNet.
static void test_text_options(void) {
    t2i_model m = {0};
    tiny_config(&m.cfg);
    m.cfg.unet.class_embed_dim = m.cfg.te.width;
    EXPECT_TRUE(t2i_build(&m, UNET_TRAIN_FULL, NULL) == 0);
    t2i_init_random(&m, 4);
    static float x[B * 3 * S * S];
    static char caps[B][PROMPT_MAX_LEN];
    const char *cp[B];
    fixed_batch(x, caps);
    for (int b = 0; b < B; b++) cp[b] = caps[b];
    size_t nte = m.te.params_arena.size / sizeof(float), nu = m.unet.params.params.size / sizeof(float);
    float *te0 = malloc(nte * sizeof(float)), *u0 = malloc(nu * sizeof(float));
    CHECK(te0 && u0);
    memcpy(te0, m.te.params_arena.base, nte * sizeof(float));
    memcpy(u0, m.unet.params.params.base, nu * sizeof(float));
    double change[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        train_hparams hp = {.adam = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
                            .caption_dropout = 0.1, .freeze_text = run == 0,
                            .text_lr_scale = run == 1 ? 0.1 : 0};
        trainer tr;
        EXPECT_TRUE(trainer_init(&tr, &m, &hp, B, 3) == 0);
        for (int s = 0; s < 5; s++) EXPECT_TRUE(trainer_step(&tr, x, cp, NULL, NULL) == 0);
        double du = 0, dt = 0;
        for (size_t i = 0; i < nu; i++) du = fmax(du, fabs(((float *)m.unet.params.params.base)[i] - u0[i]));
        for (size_t i = 0; i < nte; i++) dt = fmax(dt, fabs(((float *)m.te.params_arena.base)[i] - te0[i]));
        change[run] = dt / du;
        trainer_free(&tr);
        memcpy(m.te.params_arena.base, te0, nte * sizeof(float));
        memcpy(m.unet.params.params.base, u0, nu * sizeof(float));
    }
    // Adam moves each weight by about lr per step: the text encoder's largest change is
    // 0 when frozen and about a tenth of the UNet's at scale 0.1.
    EXPECT(change[0] == 0, "frozen text encoder moved (%g of the UNet's change)", change[0]);
    EXPECT(change[1] > 0.05 && change[1] < 0.2, "text_lr_scale 0.1: change ratio %g", change[1]);
    free(te0), free(u0);
    t2i_free(&m);
}

static void test_checkpoints(void) {
    char root[128], path[256], dir[256];
    snprintf(root, sizeof root, "%s/ck", tmpdir);
    float a[5] = {1, 2, 3, 4, 5}, b[3] = {-1, 0.5f, 1e-30f}, a2[5], b2[3];
    ckpt_array arr[2] = {{"a", a, 5}, {"b", b, 3}}, back[2] = {{"a", a2, 5}, {"b", b2, 3}};
    long step;
    EXPECT_TRUE(ckpt_find_latest(root, dir, sizeof dir, &step, NULL) == 1);
    for (long s = 10; s <= 40; s += 10) EXPECT_TRUE(ckpt_save(root, s, arr, 2, "{\"x\": 1}", 2) == 0);
    snprintf(path, sizeof path, "%s/step_000010", root);
    EXPECT_TRUE(access(path, F_OK) != 0);  // pruned
    snprintf(path, sizeof path, "%s/step_000030/DONE", root);
    EXPECT_TRUE(access(path, F_OK) == 0);
    // A newer directory without DONE is skipped.
    snprintf(path, sizeof path, "%s/step_000050", root);
    CHECK(mkdir_p(path) == 0);
    int skipped = 0;
    EXPECT_TRUE(ckpt_find_latest(root, dir, sizeof dir, &step, &skipped) == 0);
    EXPECT(step == 40 && skipped == 1, "step %ld skipped %d", step, skipped);
    char *state = NULL;
    EXPECT(ckpt_load(dir, back, 2, &state) == 0, "%s", err_msg());
    EXPECT_TRUE(memcmp(a, a2, sizeof a) == 0 && memcmp(b, b2, sizeof b) == 0);
    EXPECT_TRUE(state && strstr(state, "\"x\""));
    free(state);
    ckpt_array wrong = {"a", a2, 4};
    EXPECT_TRUE(ckpt_load(dir, &wrong, 1, &state) != 0 && strstr(err_msg(), "'a'"));
}

static void test_lora_fold(void) {
    unet_config c = unet_config_tiny();
    lora_config lc = {.rank = 2, .alpha = 3};
    snprintf(lc.targets, sizeof lc.targets, "to_q,to_k,to_v,to_out.0");
    unet with, base;
    EXPECT_TRUE(unet_build(&with, &c, UNET_FROZEN, &lc) == 0);
    EXPECT_TRUE(unet_build(&base, &c, UNET_FROZEN, NULL) == 0);
    unet_init_random(&with, 4);
    unet_init_random(&base, 4);  // same names, same streams: the same base weights
    rng r = rng_make(6, 1);
    for (int i = 0; i < with.params.n; i++) {  // lora_B starts at 0: make the adapter matter
        unet_param *p = &with.params.items[i];
        if (p->kind != PARAM_LORA) continue;
        for (int64_t k = 0; k < tensor_numel(&p->t); k++) ((float *)p->t.data)[k] = rng_normal(&r) * 0.3f;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/expert.safetensors", tmpdir);
    EXPECT_TRUE(unet_save(&with, path, PARAM_LORA) == 0);
    int folded = 0;
    EXPECT(unet_fold_lora(&base, path, 1.0f, &folded) == 0, "%s", err_msg());
    EXPECT(folded == 32, "folded %d", folded);  // 4 transformers x (attn1, attn2) x 4 targets
    int Bn = 2, T = 3, n = c.in_channels * c.sample_size * c.sample_size;
    float x[2 * 3 * 64], t[2] = {10, 500}, ctx[2 * 3 * 8];
    for (int i = 0; i < Bn * n; i++) x[i] = rng_normal(&r);
    for (int i = 0; i < Bn * T * c.cross_attention_dim; i++) ctx[i] = rng_normal(&r);
    EXPECT_TRUE(unet_alloc_activations(&with, Bn, T) == 0 && unet_alloc_activations(&base, Bn, T) == 0);
    EXPECT_TRUE(unet_forward(&with, x, t, ctx, Bn) == 0 && unet_forward(&base, x, t, ctx, Bn) == 0);
    double maxd = 0, maxv = 0;
    int no = Bn * c.out_channels * c.sample_size * c.sample_size;
    for (int i = 0; i < no; i++) {
        double d = fabs(with.out[i] - base.out[i]);
        maxd = d > maxd ? d : maxd;
        maxv = fabs(with.out[i]) > maxv ? fabs(with.out[i]) : maxv;
    }
    EXPECT(maxd <= 1e-4 * (1 + maxv), "folded vs attached: max diff %g", maxd);
    // Folding with weight -1 undoes it (to float rounding); a file for another model fails.
    EXPECT_TRUE(unet_fold_lora(&base, path, -1.0f, NULL) == 0);
    unet other;
    unet_config oc = unet_config_shapes();
    EXPECT_TRUE(unet_build(&other, &oc, UNET_FROZEN, NULL) == 0);
    EXPECT_TRUE(unet_fold_lora(&other, path, 1.0f, NULL) != 0);
    EXPECT(strstr(err_msg(), path) && strstr(err_msg(), "lora_A"), "%s", err_msg());
    unet_free(&other);
    unet_free(&with);
    unet_free(&base);
}

// trainer_lr: linear warm-up, then constant, or a half cosine to 0 at decay_steps
// (diffusers' get_cosine_schedule_with_warmup with num_cycles 0.5).
static void test_lr_schedule(void) {
    trainer tr = {0};
    tr.hp.adam.lr = 1e-3, tr.hp.warmup_steps = 10;
    tr.step = 0;
    EXPECT_NEAR(trainer_lr(&tr), 1e-4, 1e-15, 0);
    tr.step = 9;
    EXPECT_NEAR(trainer_lr(&tr), 1e-3, 1e-15, 0);
    tr.step = 500;
    EXPECT_NEAR(trainer_lr(&tr), 1e-3, 1e-15, 0);  // constant: decay_steps 0
    tr.hp.decay_steps = 110;
    tr.step = 5;
    EXPECT_NEAR(trainer_lr(&tr), 6e-4, 1e-15, 0);  // the warm-up is unchanged
    tr.step = 10;
    EXPECT_NEAR(trainer_lr(&tr), 1e-3, 1e-15, 0);
    tr.step = 60;
    EXPECT_NEAR(trainer_lr(&tr), 5e-4, 1e-15, 0);  // half way: cos(pi/2) = 0
    tr.step = 85;
    EXPECT_NEAR(trainer_lr(&tr), 1e-3 * 0.5 * (1 + cos(M_PI * 0.75)), 1e-15, 0);
    tr.step = 110;
    EXPECT_NEAR(trainer_lr(&tr), 0.0, 1e-15, 0);
    tr.step = 200;
    EXPECT_NEAR(trainer_lr(&tr), 0.0, 1e-15, 0);  // held at 0 past the end
}

int main(void) {
    test_lr_schedule();
    log_set_quiet(1);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_train.XXXXXX");
    CHECK(mkdtemp(tmpdir));
    test_checkpoints();
    test_lora_fold();
    test_bundle(0);
    test_bundle(1);
    test_pool();
    test_text_options();
    test_loss_drops();
    dir_remove_tree(tmpdir);
    return check_report("test_train");
}
