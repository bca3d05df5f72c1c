// LoRA mixture of experts on the UNet (models/lora_moe.h), tiny config, three expert
// files of unequal rank and alpha: zero routers give the experts' uniform merge
// (unet_fold_lora at 1/E); router, x and context gradients of the whole UNet against
// finite differences; AdamW steps on the flat router arrays lower a fixed batch's
// loss and leave experts and base bit-identical; routers saved and reopened give
// bit-identical outputs; an expert in kohya's form reads as itself; malformed and
// mismatched expert and router files are rejected naming the file and tensor, leaving
// the UNet untouched; models/train.c's trainer runs a MoE (UNET_TRAIN_MOE) in LoRA
// mode and lowers a fixed batch's loss.
//
// Finite differences in float32 as tests/test_unet.c explains (step 1e-2, tolerance
// 1e-2 of the largest gradient in the group).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/adamw.h"
#include "kernels/mse.h"
#include "models/bundle.h"
#include "models/lora_fold.h"
#include "models/lora_moe.h"
#include "models/lora_set.h"
#include "models/train.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rng.h"
#include "runtime/safetensors.h"
#include "tests/check.h"

#define FD_STEP 1e-2f
#define FD_TOL 1e-2
#define E3 3
#define B_ 2
#define T_ 3

static char tmpdir[64], files[E3][128];

static void randn(float *x, size_t n, uint64_t stream, float scale) {
    rng_fill_normal(x, n, 77, stream, 0, 0.0f, scale);
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

// Expert e: rank 2, 3, 2 with alpha 4, 3, 1; random A and B.
static void make_experts(void) {
    static const int rank[E3] = {2, 3, 2};
    static const float alpha[E3] = {4, 3, 1};
    unet_config cfg = unet_config_tiny();
    for (int e = 0; e < E3; e++) {
        lora_config lc = {.rank = rank[e], .alpha = alpha[e], .targets = "to_q,to_k,to_v,to_out.0"};
        unet m;
        CHECK(unet_build(&m, &cfg, UNET_TRAIN_LORA, &lc) == 0);
        for (int i = 0; i < m.params.n; i++)
            if (m.params.items[i].kind == PARAM_LORA)
                randn(m.params.items[i].t.data, (size_t)tensor_numel(&m.params.items[i].t),
                      1000 * (e + 1) + i, 0.3f);
        snprintf(files[e], sizeof files[e], "%s/expert%d.safetensors", tmpdir, e);
        CHECK(unet_save(&m, files[e], PARAM_LORA) == 0);
        unet_free(&m);
    }
}

typedef struct inputs {
    float *x, *t, *ctx, *g;
    size_t nx, nc, nout;
} inputs;

static inputs make_inputs(const unet_config *c) {
    int S = c->sample_size;
    inputs in = {.nx = (size_t)B_ * c->in_channels * S * S, .nc = (size_t)B_ * T_ * c->cross_attention_dim,
                 .nout = (size_t)B_ * c->out_channels * S * S};
    in.x = malloc(in.nx * sizeof(float)), in.ctx = malloc(in.nc * sizeof(float));
    in.g = malloc(in.nout * sizeof(float)), in.t = malloc(B_ * sizeof(float));
    randn(in.x, in.nx, 1, 1.0f), randn(in.ctx, in.nc, 2, 1.0f), randn(in.g, in.nout, 3, 1.0f);
    for (int b = 0; b < B_; b++) in.t[b] = (float)(17 + 311 * b);
    return in;
}

static void free_inputs(inputs *in) { free(in->x), free(in->t), free(in->ctx), free(in->g); }

// A UNet with base seed 42 and, unless mode says otherwise, the three experts.
static void build(unet *m, unet_train_mode mode) {
    unet_config cfg = unet_config_tiny();
    CHECK(unet_build(m, &cfg, mode, NULL) == 0);
    unet_init_random(m, 42);
}

static double max_rel(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        worst = d > worst || d != d ? d : worst;
        scale = fabs(b[i]) > scale ? fabs(b[i]) : scale;
    }
    return worst / scale;
}

static void test_uniform_merge(void) {
    unet fold, m;
    build(&fold, UNET_FROZEN);
    for (int e = 0; e < E3; e++)
        EXPECT(unet_fold_lora(&fold, files[e], 1.0f / E3, NULL) == 0, "%s", err_msg());
    build(&m, UNET_TRAIN_MOE);
    CHECK(unet_alloc_activations(&fold, B_, T_) == 0 && unet_alloc_activations(&m, B_, T_) == 0);
    inputs in = make_inputs(&m.cfg);
    CHECK(unet_forward(&fold, in.x, in.t, in.ctx, B_) == 0);
    for (int k = 0; k < 2; k++) {  // zero routers: the temperature does not matter
        lora_moe moe;
        lora_moe_config mc = {E3, {files[0], files[1], files[2]}, k ? 0.25f : 1.0f};
        EXPECT(lora_moe_init(&moe, &m, &mc) == 0, "%s", err_msg());  // after the activations
        // tiny: 4 transformers x 2 attentions x (to_q, to_k, to_v, to_out.0)
        EXPECT(moe.n_mods == 32 && m.moe == &moe, "%d adapted linears", moe.n_mods);
        EXPECT_TRUE(moe.mods[0].R == 7 && moe.mods[0].roff[1] == 2 && moe.mods[0].scale[1] == 1.0f &&
                    moe.mods[0].scale[2] == 0.5f);
        EXPECT_TRUE(moe.router_grads.size == moe.router.size && m.params.grads.base == NULL);
        CHECK(unet_forward(&m, in.x, in.t, in.ctx, B_) == 0);
        double e = max_rel(m.out, fold.out, in.nout), d = 0;
        for (size_t i = 0; i < in.nout; i++) d += fabs(m.out[i] - fold.out[i]);
        printf("  zero routers vs uniform fold (T=%g): max rel err %.2e\n", (double)mc.temperature, e);
        EXPECT(e <= 1e-5, "zero routers differ from the uniform merge: %.3g", e);
        lora_moe_free(&moe);
        EXPECT_TRUE(m.moe == NULL && m.down[0].attentions[0].attn1.to_q.moe == NULL);
    }
    // An expert in kohya's form (models/lora_set.h) reads as the same expert.
    char kohya[160];
    snprintf(kohya, sizeof kohya, "%s/expert0_kohya.safetensors", tmpdir);
    lora_set ls;
    lora_set_init(&ls);
    CHECK(lora_set_load(&ls, files[0]) == 0 && lora_set_save(&ls, kohya, LORA_FORMAT_KOHYA) == 0);
    lora_set_free(&ls);
    float *peft = malloc(in.nout * sizeof *peft);
    for (int k = 0; k < 2; k++) {
        lora_moe moe;
        lora_moe_config mc = {E3, {k ? kohya : files[0], files[1], files[2]}, 1.0f};
        EXPECT(lora_moe_init(&moe, &m, &mc) == 0, "%s", err_msg());
        CHECK(unet_forward(&m, in.x, in.t, in.ctx, B_) == 0);
        if (!k) memcpy(peft, m.out, in.nout * sizeof *peft);
        else EXPECT(memcmp(peft, m.out, in.nout * sizeof *peft) == 0, "%s", "kohya expert differs");
        lora_moe_free(&moe);
    }
    free(peft);
    unlink(kohya);
    // The experts are live: the base alone gives another output.
    CHECK(unet_forward(&m, in.x, in.t, in.ctx, B_) == 0);
    EXPECT(max_rel(m.out, fold.out, in.nout) > 1e-3, "%s", "the experts change nothing");
    free_inputs(&in);
    unet_free(&fold), unet_free(&m);
}

typedef struct fd_ctx {
    unet *m;
    inputs *in;
} fd_ctx;

static double loss_of(fd_ctx *c) {
    CHECK(unet_forward(c->m, c->in->x, c->in->t, c->in->ctx, B_) == 0);
    return dot(c->m->out, c->in->g, c->in->nout);
}

typedef struct fd_group {
    double worst, scale;
    int n;
} fd_group;

static void fd_one(fd_group *g, fd_ctx *c, float *x, double analytic) {
    float x0 = *x, xp = x0 + FD_STEP, xm = x0 - FD_STEP;
    *x = xp;
    double lp = loss_of(c);
    *x = xm;
    double lm = loss_of(c);
    *x = x0;
    double fd = (lp - lm) / ((double)xp - (double)xm), e = fabs(fd - analytic);
    g->worst = e > g->worst || e != e ? e : g->worst;
    g->scale = fabs(fd) > g->scale ? fabs(fd) : g->scale;
    g->n++;
}

static void fd_report(const char *what, const fd_group *g) {
    double rel = g->worst / (g->scale > 0 ? g->scale : 1);
    EXPECT(rel <= FD_TOL && g->scale > 0, "%s: %d checks, max err %.3g of scale %.3g", what, g->n,
           g->worst, g->scale);
    printf("  fd %-16s %4d elements  rel err %.2e  (scale %.3g)\n", what, g->n, rel, g->scale);
}

static void test_router_fd(void) {
    unet m;
    build(&m, UNET_TRAIN_MOE);
    lora_moe moe;
    lora_moe_config mc = {E3, {files[0], files[1], files[2]}, 0.8f};
    CHECK(lora_moe_init(&moe, &m, &mc) == 0);  // before the activations
    CHECK(unet_alloc_activations(&m, B_, T_) == 0);
    float *p, *gr;
    size_t n;
    lora_moe_trainable(&moe, &p, &gr, &n);
    for (int i = 0; i < moe.n_mods; i++) {  // non-uniform gates
        moe_linear *x = &moe.mods[i];
        randn(x->wr, (size_t)x->E * x->lin->in, 5000 + i, 0.5f);
        randn(x->br, (size_t)x->E, 6000 + i, 0.5f);
    }
    inputs in = make_inputs(&m.cfg);
    fd_ctx c = {&m, &in};
    float *dx = malloc(in.nx * sizeof *dx), *dctx = malloc(in.nc * sizeof *dctx);
    loss_of(&c);
    for (size_t i = 0; i < n; i++) gr[i] = 1.0f;  // accumulate: the test subtracts it
    unet_backward(&m, in.g, dx, dctx, B_);
    for (size_t i = 0; i < n; i++) gr[i] -= 1.0f;
    rng r = rng_make(11, 0);
    fd_group gw = {0}, gb = {0}, gx = {0}, gc = {0};
    for (int i = 0; i < moe.n_mods; i++) {
        moe_linear *x = &moe.mods[i];
        for (int k = 0; k < 2; k++) {
            size_t j = rng_below(&r, (uint32_t)(x->E * x->lin->in)), jb = rng_below(&r, (uint32_t)x->E);
            fd_one(&gw, &c, x->wr + j, x->dwr[j]);
            fd_one(&gb, &c, x->br + jb, x->dbr[jb]);
        }
    }
    for (int k = 0; k < 12; k++) {
        size_t j = rng_below(&r, (uint32_t)in.nx), jc = rng_below(&r, (uint32_t)in.nc);
        fd_one(&gx, &c, in.x + j, dx[j]);
        fd_one(&gc, &c, in.ctx + jc, dctx[jc]);
    }
    fd_report("router.weight", &gw);
    fd_report("router.bias", &gb);
    fd_report("x", &gx);
    fd_report("context", &gc);
    free(dx), free(dctx);
    free_inputs(&in);
    lora_moe_free(&moe);
    unet_free(&m);
}

// AdamW on the flat router arrays (how models/train.c drives a MoE), then save and
// reopen the routers.
static void test_train_save_load(void) {
    unet m;
    build(&m, UNET_TRAIN_MOE);
    lora_moe moe;
    lora_moe_config mc = {E3, {files[0], files[1], files[2]}, 1.0f};
    CHECK(lora_moe_init(&moe, &m, &mc) == 0);
    CHECK(unet_alloc_activations(&m, B_, T_) == 0);
    inputs in = make_inputs(&m.cfg);
    float *target = malloc(in.nout * sizeof *target), *dout = malloc(in.nout * sizeof *dout);
    randn(target, in.nout, 4, 1.0f);
    size_t nb = m.params.params.size, ne = moe.experts.size;
    char *base0 = malloc(nb), *exp0 = malloc(ne);
    memcpy(base0, m.params.params.base, nb), memcpy(exp0, moe.experts.base, ne);
    float *p, *g;
    size_t n;
    lora_moe_trainable(&moe, &p, &g, &n);
    EXPECT_TRUE(p == (float *)moe.router.base && g && n * sizeof(float) == moe.router.size);
    float *am = calloc(n, sizeof(float)), *av = calloc(n, sizeof(float));
    adamw_hparams hp = {.lr = 3e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0};
    double loss[9];
    for (int s = 0; s < 9; s++) {
        CHECK(unet_forward(&m, in.x, in.t, in.ctx, B_) == 0);
        loss[s] = mse_loss_forward(m.out, target, in.nout);
        if (s == 8) break;
        lora_moe_zero_grad(&moe);
        mse_loss_backward(dout, m.out, target, 1.0f, in.nout);
        unet_backward(&m, dout, NULL, NULL, B_);
        adamw_update(p, g, am, av, n, &hp, s + 1);
    }
    printf("  8 AdamW steps on the routers: loss %.6f -> %.6f\n", loss[0], loss[8]);
    EXPECT(loss[8] < loss[0] - 1e-4, "router training does not lower the loss: %.6f -> %.6f",
           loss[0], loss[8]);
    EXPECT(memcmp(base0, m.params.params.base, nb) == 0, "%s", "training changed the base");
    EXPECT(memcmp(exp0, moe.experts.base, ne) == 0, "%s", "training changed the experts");
    double wsum = 0;
    for (size_t i = 0; i < n; i++) wsum += fabs(p[i]);
    EXPECT(wsum > 0, "%s", "the routers did not move");

    // save -> reopen on a fresh (frozen) UNet -> identical output
    char path[160];
    snprintf(path, sizeof path, "%s/routers.safetensors", tmpdir);
    EXPECT(lora_moe_save(&moe, path) == 0, "%s", err_msg());
    float *out1 = malloc(in.nout * sizeof *out1);
    memcpy(out1, m.out, in.nout * sizeof *out1);
    unet m2;
    build(&m2, UNET_FROZEN);
    CHECK(unet_alloc_activations(&m2, B_, T_) == 0);
    lora_moe moe2;
    EXPECT(lora_moe_open(&moe2, &m2, path) == 0, "%s", err_msg());
    EXPECT_TRUE(moe2.router_grads.base == NULL);  // frozen: sampling only
    CHECK(unet_forward(&m2, in.x, in.t, in.ctx, B_) == 0);
    EXPECT(memcmp(out1, m2.out, in.nout * sizeof(float)) == 0, "%s", "reopened routers change the output");
    // lora_moe_load into a MoE with other routers restores them too
    memset(moe2.router.base, 0, moe2.router.size);
    EXPECT(lora_moe_load(&moe2, path) == 0, "%s", err_msg());
    CHECK(unet_forward(&m2, in.x, in.t, in.ctx, B_) == 0);
    EXPECT(memcmp(out1, m2.out, in.nout * sizeof(float)) == 0, "%s", "reloaded routers change the output");
    lora_moe_free(&moe2);

    // Router files must match the experts: another expert, order or temperature fails.
    const char *swapped[E3] = {files[0], files[2], files[1]};
    lora_moe_config sc = {E3, {swapped[0], swapped[1], swapped[2]}, 1.0f};
    CHECK(lora_moe_init(&moe2, &m2, &sc) == 0);
    EXPECT(lora_moe_load(&moe2, path) == -1 && strstr(err_msg(), path) &&
           strstr(err_msg(), "expert 1 was") && strstr(err_msg(), files[2]), "%s", err_msg());
    lora_moe_free(&moe2);
    sc = (lora_moe_config){2, {files[0], files[1]}, 1.0f};
    CHECK(lora_moe_init(&moe2, &m2, &sc) == 0);
    EXPECT(lora_moe_load(&moe2, path) == -1 && strstr(err_msg(), "routers for 3 experts, the MoE has 2"),
           "%s", err_msg());
    lora_moe_free(&moe2);
    mc.temperature = 0.5f;
    CHECK(lora_moe_init(&moe2, &m2, &mc) == 0);
    EXPECT(lora_moe_load(&moe2, path) == -1 && strstr(err_msg(), "temperature"), "%s", err_msg());
    lora_moe_free(&moe2);
    // An expert LoRA file is not a router file.
    EXPECT(lora_moe_open(&moe2, &m2, files[0]) == -1 && strstr(err_msg(), "moe_n_experts"), "%s", err_msg());
    unlink(path);
    free(out1), free(target), free(dout), free(base0), free(exp0), free(am), free(av);
    free_inputs(&in);
    lora_moe_free(&moe);
    unet_free(&m2), unet_free(&m);
}

// Writes a file with the given tensors (shape (d0, d1), zero data) and lora_alpha.
static void write_file(const char *path, int n, const char *const *names, const int (*shapes)[2],
                       const char *alpha) {
    static float zeros[4096];
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < n; i++) {
        int64_t s[2] = {shapes[i][0], shapes[i][1]};
        CHECK(s[0] * s[1] <= 4096 && st_writer_add(&w, names[i], ST_F32, 2, s, zeros) == 0);
    }
    if (alpha) CHECK(st_writer_set_meta(&w, "lora_alpha", alpha) == 0);
    CHECK(st_writer_save(&w, path) == 0);
    st_writer_free(&w);
}

#define Q "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"

static void expect_rejected(unet *m, const char *bad, const char *want1, const char *want2) {
    lora_moe moe;
    lora_moe_config mc = {2, {files[0], bad}, 1.0f};
    int rc = lora_moe_init(&moe, m, &mc);
    EXPECT(rc == -1 && strstr(err_msg(), bad) && strstr(err_msg(), want1) &&
           (!want2 || strstr(err_msg(), want2)), "%s: %s", want1, rc ? err_msg() : "accepted");
    EXPECT(m->moe == NULL && m->down[0].attentions[0].attn1.to_q.moe == NULL, "%s", "the UNet was changed");
}

static void test_rejects(void) {
    unet m;
    build(&m, UNET_TRAIN_MOE);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", tmpdir);
    const int fit[2][2] = {{2, 4}, {4, 2}};
    const char *no_prefix[2] = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
                                Q ".lora_B.weight"};
    write_file(bad, 2, no_prefix, fit, NULL);
    expect_rejected(&m, bad, no_prefix[0], "not a UNet LoRA tensor");
    const char *alone[1] = {Q ".lora_A.weight"};
    write_file(bad, 1, alone, fit, NULL);
    expect_rejected(&m, bad, Q ".lora_A.weight", "has no B");
    const char *nowhere[2] = {"unet.down_blocks.7.attn.to_q.lora_A.weight", "unet.down_blocks.7.attn.to_q.lora_B.weight"};
    write_file(bad, 2, nowhere, fit, NULL);
    expect_rejected(&m, bad, nowhere[0], "no linear layer 'down_blocks.7.attn.to_q'");
    const char *conv[2] = {"unet.conv_in.lora_A.weight", "unet.conv_in.lora_B.weight"};
    write_file(bad, 2, conv, fit, NULL);
    expect_rejected(&m, bad, conv[0], "no linear layer 'conv_in'");
    const char *pair[2] = {Q ".lora_A.weight", Q ".lora_B.weight"};
    const int wrong[2][2] = {{2, 5}, {4, 2}};
    write_file(bad, 2, pair, wrong, NULL);
    expect_rejected(&m, bad, Q ".lora_A.weight", "does not fit the linear");
    write_file(bad, 2, pair, fit, "-1");
    expect_rejected(&m, bad, "lora_alpha '-1'", NULL);
    // A well-formed file adapting only to_q of one attention: not the first expert's set.
    write_file(bad, 2, pair, fit, NULL);
    expect_rejected(&m, bad, "is missing (the first expert", files[0]);
    lora_moe moe;
    lora_moe_config rev = {2, {bad, files[0]}, 1.0f};
    EXPECT(lora_moe_init(&moe, &m, &rev) == -1 && strstr(err_msg(), files[0]) &&
           strstr(err_msg(), "adapts a module the first expert"), "%s", err_msg());
    lora_moe_config none = {1, {tmpdir}, 1.0f};  // a directory, not a file
    EXPECT(lora_moe_init(&moe, &m, &none) == -1 && strstr(err_msg(), tmpdir), "%s", err_msg());
    lora_moe_config zero_t = {1, {files[0]}, 0.0f};
    EXPECT(lora_moe_init(&moe, &m, &zero_t) == -1 && strstr(err_msg(), "temperature"), "%s", err_msg());
    unlink(bad);
    unet_free(&m);
    // Modes: a LoRA-mode or fully trained UNet takes no MoE; MoE mode takes no lora_config.
    unet_config cfg = unet_config_tiny();
    lora_config lc = {.rank = 2, .alpha = 2, .targets = "to_q"};
    EXPECT_TRUE(unet_build(&m, &cfg, UNET_TRAIN_MOE, &lc) == -1 && strstr(err_msg(), "LoRA files"));
    CHECK(unet_build(&m, &cfg, UNET_TRAIN_FULL, NULL) == 0);
    lora_moe_config ok = {1, {files[0]}, 1.0f};
    EXPECT_TRUE(lora_moe_init(&moe, &m, &ok) == -1 && strstr(err_msg(), "UNET_TRAIN_MOE"));
    unet_free(&m);
    CHECK(unet_build(&m, &cfg, UNET_TRAIN_LORA, &lc) == 0);
    EXPECT_TRUE(lora_moe_init(&moe, &m, &ok) == -1);
    unet_free(&m);
}

// The trainer on a t2i model whose UNet is the tiny config (in = out channels) with
// the three experts attached: steps on one batch lower its loss at fixed t and noise.
static void test_trainer(void) {
    t2i_model m = {0};
    t2i_config_shapes(&m.cfg);
    m.cfg.unet = unet_config_tiny();
    m.cfg.unet.out_channels = m.cfg.unet.in_channels;
    m.cfg.image_size = m.cfg.unet.sample_size;
    m.cfg.te.width = m.cfg.unet.cross_attention_dim, m.cfg.te.layers = 1, m.cfg.te.heads = 2;
    m.cfg.te.mlp_width = 16;
    EXPECT(t2i_build(&m, UNET_TRAIN_MOE, NULL) == 0, "%s", err_msg());
    t2i_init_random(&m, 1);
    lora_moe moe;
    lora_moe_config mc = {E3, {files[0], files[1], files[2]}, 1.0f};
    EXPECT(lora_moe_init(&moe, &m.unet, &mc) == 0, "%s", err_msg());
    train_hparams hp = {.adam = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}};
    trainer tr;
    EXPECT(trainer_init(&tr, &m, &hp, B_, 3) == 0, "%s", err_msg());
    EXPECT_TRUE(tr.lora && tr.n_groups == 1 && tr.grad[0] == (float *)moe.router_grads.base &&
                tr.n[0] * sizeof(float) == moe.router.size);
    int np = 3 * m.cfg.image_size * m.cfg.image_size, t[B_] = {200, 700};
    float *x = malloc(sizeof(float) * B_ * np), *noise = malloc(sizeof(float) * B_ * np);
    randn(x, (size_t)B_ * np, 8, 0.5f), randn(noise, (size_t)B_ * np, 9, 1.0f);
    const char *caps[B_] = {"", ""};
    size_t ne = moe.experts.size;
    char *exp0 = malloc(ne);
    memcpy(exp0, moe.experts.base, ne);
    double before, after, loss;
    EXPECT_TRUE(trainer_eval_loss(&tr, x, caps, t, noise, &before) == 0);
    for (int s = 0; s < 12; s++) EXPECT_TRUE(trainer_step(&tr, x, caps, &loss, NULL) == 0);
    EXPECT_TRUE(trainer_eval_loss(&tr, x, caps, t, noise, &after) == 0);
    printf("  trainer, 12 MoE steps on one batch: loss %.6f -> %.6f\n", before, after);
    EXPECT(after < before, "trainer steps do not lower the loss: %.6f -> %.6f", before, after);
    EXPECT(memcmp(exp0, moe.experts.base, ne) == 0, "%s", "the trainer changed the experts");
    EXPECT(memcmp(tr.param[0], moe.router.base, moe.router.size) == 0, "%s", "routers not scattered");
    free(x), free(noise), free(exp0);
    trainer_free(&tr);
    lora_moe_free(&moe);
    t2i_free(&m);
    // Without a mixture attached the trainer refuses MoE mode.
    t2i_model f = {0};
    f.cfg = m.cfg;
    CHECK(t2i_build(&f, UNET_TRAIN_MOE, NULL) == 0);
    EXPECT_TRUE(trainer_init(&tr, &f, &hp, B_, 3) == -1 && strstr(err_msg(), "lora_moe_init"));
    t2i_free(&f);
}

int main(void) {
    log_set_quiet(1);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_lora_moe.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    make_experts();
    test_uniform_merge();
    test_router_fd();
    test_train_save_load();
    test_rejects();
    test_trainer();
    for (int e = 0; e < E3; e++) unlink(files[e]);
    rmdir(tmpdir);
    return check_report("test_lora_moe");
}
