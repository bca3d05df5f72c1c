// UNet: each block's and the whole model's backward against finite differences,
// save -> load -> identical outputs, LoRA (B = 0 leaves the base output, no base
// gradients, adapter gradients right), load errors by name, the device API on the CPU.
//
// `test_unet --bench [B]` instead times one forward + backward of the shapes-world
// config at batch B (default 32), after one untimed warm-up pass, and prints the
// parameter count.
//
// Finite differences run in float32 (the kernels' precision): central differences
// with a step of FD_STEP on a scalar loss L = sum(out * g) accumulated in double.
// Truncation error is O(step^2) relative (~1e-4 for step 1e-2 with inputs and
// weights of order 0.1..1) and float32 rounding of L contributes about
// 1e-7 * |L| / step (~1e-4 of the gradient scale here); FD_TOL = 1e-2 of the largest
// |gradient| in the group leaves a wide margin for both, while a wrong term (a
// missing residual, a swapped operand) shows up as an error of order 1.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/unet.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rng.h"
#include "tests/check.h"

#define FD_STEP 1e-2f
#define FD_TOL 1e-2
#define FD_PER_TENSOR 2   // random elements checked per parameter tensor
#define FD_PER_INPUT 12   // random elements checked per input

static char tmpdir[64];

static void randn(float *x, size_t n, uint64_t stream, float scale) {
    rng_fill_normal(x, n, 99, stream, 0, 0.0f, scale);
}

static float *alloc_randn(size_t n, uint64_t stream, float scale) {
    float *x = malloc(n * sizeof *x);
    randn(x, n, stream, scale);
    return x;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

// ---- finite-difference harness ----

typedef double (*loss_fn)(void *ctx);

typedef struct fd_group {
    const char *what;
    double worst, scale;  // max |analytic - fd|, max |fd|
    int n;
} fd_group;

static void fd_one(fd_group *g, loss_fn f, void *ctx, float *x, double analytic) {
    float x0 = *x, xp = x0 + FD_STEP, xm = x0 - FD_STEP;
    *x = xp;
    double lp = f(ctx);
    *x = xm;
    double lm = f(ctx);
    *x = x0;
    double fd = (lp - lm) / ((double)xp - (double)xm);
    double e = fabs(fd - analytic);
    g->worst = e > g->worst || e != e ? e : g->worst;
    g->scale = fabs(fd) > g->scale ? fabs(fd) : g->scale;
    g->n++;
}

static void fd_report(const char *test, fd_group *g) {
    double rel = g->worst / (g->scale > 0 ? g->scale : 1);
    EXPECT(rel <= FD_TOL && g->scale > 0, "%s %s: %d checks, max err %.3g of scale %.3g", test,
           g->what, g->n, g->worst, g->scale);
    printf("  %-24s %-10s %4d elements  rel err %.2e  (scale %.3g)\n", test, g->what, g->n, rel,
           g->scale);
}

// Trainable parameters of t (FD_PER_TENSOR random elements of each) against p->grad.
static void fd_params(const char *test, param_table *t, loss_fn f, void *ctx, rng *r) {
    fd_group g = {.what = "params"};
    for (int i = 0; i < t->n; i++) {
        unet_param *p = &t->items[i];
        if (!p->trainable) continue;
        size_t n = (size_t)tensor_numel(&p->t);
        for (int k = 0; k < FD_PER_TENSOR; k++) {
            size_t j = rng_below(r, (uint32_t)n);
            fd_one(&g, f, ctx, (float *)p->t.data + j, p->grad[j]);
        }
    }
    fd_report(test, &g);
}

static void fd_input(const char *test, const char *what, float *x, const float *dx, size_t n,
                     loss_fn f, void *ctx, rng *r) {
    fd_group g = {.what = what};
    for (int k = 0; k < FD_PER_INPUT; k++) {
        size_t j = rng_below(r, (uint32_t)n);
        fd_one(&g, f, ctx, x + j, dx[j]);
    }
    fd_report(test, &g);
}

// Every parameter random (norms included, so that no weight is trivially 1 or 0).
static void randomize(param_table *t, uint64_t stream0, float scale) {
    for (int i = 0; i < t->n; i++)
        randn(t->items[i].t.data, (size_t)tensor_numel(&t->items[i].t), stream0 + i, scale);
}

// ---- blocks ----

typedef struct resnet_ctx {
    unet_resnet r;
    float *x, *temb, *g, *conv_ws;
    int B;
} resnet_ctx;

static double resnet_loss(void *p) {
    resnet_ctx *c = p;
    unet_resnet_forward(&c->r, c->x, c->temb, c->B, c->conv_ws);
    return dot(c->r.out, c->g, (size_t)c->B * c->r.cout * c->r.H * c->r.W);
}

static void test_resnet(int cin, int cout) {
    char test[32];
    snprintf(test, sizeof test, "resnet %d->%d", cin, cout);
    const int B = 2, H = 5, W = 5, temb = 6, G = 2;
    resnet_ctx c = {.B = B};
    param_table t;
    ptab_init(&t, "resnet", 1, 0, NULL);
    ptab_begin(&t);
    unet_resnet_setup(&c.r, &t, "blk", cin, cout, temb, G, 1e-5f, H, W);
    EXPECT_TRUE(ptab_commit_params(&t) == 0);
    ptab_begin(&t);
    unet_resnet_setup(&c.r, &t, "blk", cin, cout, temb, G, 1e-5f, H, W);
    EXPECT_TRUE(ptab_commit_grads(&t) == 0);
    EXPECT((ptab_find(&t, "blk.conv_shortcut.weight") != NULL) == (cin != cout), "%s shortcut", test);
    EXPECT_TRUE(ptab_find(&t, "blk.time_emb_proj.bias") != NULL);
    randomize(&t, 100, 0.3f);
    arena a = arena_plan("resnet acts", DEVICE_CPU);
    unet_resnet_acts(&c.r, &a, B);
    EXPECT_TRUE(arena_commit(&a) == 0);
    unet_resnet_acts(&c.r, &a, B);
    size_t nx = (size_t)B * cin * H * W, ny = (size_t)B * cout * H * W;
    c.x = alloc_randn(nx, 1, 1.0f);
    c.temb = alloc_randn((size_t)B * temb, 2, 1.0f);
    c.g = alloc_randn(ny, 3, 1.0f);
    c.conv_ws = malloc(unet_resnet_conv_scratch_floats(&c.r, B) * sizeof(float));
    float *ws = malloc(unet_resnet_scratch_floats(&c.r, B) * sizeof(float));
    float *dx = malloc(nx * sizeof *dx), *dtemb = calloc((size_t)B * temb, sizeof *dtemb);
    resnet_loss(&c);
    ptab_zero_grad(&t);
    unet_resnet_backward(&c.r, dx, dtemb, c.g, c.temb, B, ws, c.conv_ws, NULL);
    rng r = rng_make(5, cin * 100 + cout);
    fd_params(test, &t, resnet_loss, &c, &r);
    fd_input(test, "x", c.x, dx, nx, resnet_loss, &c, &r);
    fd_input(test, "temb", c.temb, dtemb, (size_t)B * temb, resnet_loss, &c, &r);
    free(c.x), free(c.temb), free(c.g), free(c.conv_ws), free(ws), free(dx), free(dtemb);
    arena_free(&a);
    ptab_free(&t);
}

typedef struct transformer_ctx {
    unet_transformer tr;
    float *x, *ctx, *g, *attn_ws;
    int B;
} transformer_ctx;

static double transformer_loss(void *p) {
    transformer_ctx *c = p;
    unet_transformer_forward(&c->tr, c->x, c->ctx, c->B, c->attn_ws);
    return dot(c->tr.out, c->g, (size_t)c->B * c->tr.C * c->tr.H * c->tr.W);
}

static void test_transformer(int linear_proj, const lora_config *lora) {
    char test[48];
    snprintf(test, sizeof test, "transformer %s%s", linear_proj ? "linear" : "conv1x1",
             lora ? " lora" : "");
    const int B = 2, C = 8, H = 3, W = 4, heads = 2, D = 5, T = 3, G = 2;
    transformer_ctx c = {.B = B};
    param_table t;
    ptab_init(&t, "transformer", !lora, lora != NULL, lora);
    for (int pass = 0; pass < 2; pass++) {
        ptab_begin(&t);
        unet_transformer_setup(&c.tr, &t, "attn", C, heads, D, G, linear_proj, H, W);
        EXPECT_TRUE((pass ? ptab_commit_grads(&t) : ptab_commit_params(&t)) == 0);
    }
    unet_param *pin = ptab_find(&t, "attn.proj_in.weight");
    EXPECT(pin && pin->t.ndim == (linear_proj ? 2 : 4), "%s proj_in shape", test);
    EXPECT_TRUE(ptab_find(&t, "attn.transformer_blocks.0.attn2.to_out.0.bias") != NULL);
    EXPECT_TRUE(ptab_find(&t, "attn.transformer_blocks.0.attn1.to_q.bias") == NULL);
    EXPECT_TRUE(ptab_find(&t, "attn.transformer_blocks.0.ff.net.2.weight") != NULL);
    randomize(&t, 200, 0.3f);
    arena a = arena_plan("transformer acts", DEVICE_CPU);
    unet_transformer_acts(&c.tr, &a, B, T);
    EXPECT_TRUE(arena_commit(&a) == 0);
    unet_transformer_acts(&c.tr, &a, B, T);
    size_t nx = (size_t)B * C * H * W, nc = (size_t)B * T * D;
    c.x = alloc_randn(nx, 11, 1.0f);
    c.ctx = alloc_randn(nc, 12, 1.0f);
    c.g = alloc_randn(nx, 13, 1.0f);
    c.attn_ws = malloc(unet_transformer_attn_scratch_floats(&c.tr, B) * sizeof(float));
    float *ws = malloc(unet_transformer_scratch_floats(&c.tr, B) * sizeof(float));
    float *lora_ws = malloc((size_t)B * H * W * 8 * sizeof(float));
    float *dx = malloc(nx * sizeof *dx), *dctx = calloc(nc, sizeof *dctx);
    transformer_loss(&c);
    ptab_zero_grad(&t);
    unet_transformer_backward(&c.tr, dx, dctx, c.g, B, ws, c.attn_ws, lora_ws);
    rng r = rng_make(6, linear_proj + 2 * (lora != NULL));
    fd_params(test, &t, transformer_loss, &c, &r);
    fd_input(test, "x", c.x, dx, nx, transformer_loss, &c, &r);
    fd_input(test, "context", c.ctx, dctx, nc, transformer_loss, &c, &r);
    free(c.x), free(c.ctx), free(c.g), free(c.attn_ws), free(ws), free(lora_ws), free(dx), free(dctx);
    arena_free(&a);
    ptab_free(&t);
}

// ---- the whole model ----

typedef struct model_ctx {
    unet *m;
    float *x, *t, *ctx, *g, *cls;  // cls: class labels (class_embed_dim > 0), else NULL
    int B;
} model_ctx;

static double model_loss(void *p) {
    model_ctx *c = p;
    CHECK(unet_forward_cond(c->m, c->x, c->t, c->ctx, c->cls, c->B) == 0);
    const unet_config *cfg = &c->m->cfg;
    return dot(c->m->out, c->g, (size_t)c->B * cfg->out_channels * cfg->sample_size * cfg->sample_size);
}

static void model_inputs(model_ctx *c, unet *m, int B, int T) {
    const unet_config *cfg = &m->cfg;
    int S = cfg->sample_size;
    c->m = m, c->B = B;
    c->x = alloc_randn((size_t)B * cfg->in_channels * S * S, 21, 1.0f);
    c->ctx = alloc_randn((size_t)B * T * cfg->cross_attention_dim, 22, 1.0f);
    c->g = alloc_randn((size_t)B * cfg->out_channels * S * S, 23, 1.0f);
    c->cls = cfg->class_embed_dim ? alloc_randn((size_t)B * cfg->class_embed_dim, 24, 1.0f) : NULL;
    c->t = malloc((size_t)B * sizeof(float));
    for (int b = 0; b < B; b++) c->t[b] = (float)(17 + 311 * b);
}

static void model_inputs_free(model_ctx *c) {
    free(c->x), free(c->ctx), free(c->g), free(c->t), free(c->cls);
}

// Backward of the model in `m` (built and with activations) against finite
// differences on its trainable parameters, x and the context.
static void fd_model(const char *test, unet *m, int B, int T, int check_x) {
    model_ctx c;
    model_inputs(&c, m, B, T);
    const unet_config *cfg = &m->cfg;
    size_t nx = (size_t)B * cfg->in_channels * cfg->sample_size * cfg->sample_size;
    size_t nc = (size_t)B * T * cfg->cross_attention_dim;
    size_t ncls = (size_t)B * cfg->class_embed_dim;
    float *dx = malloc(nx * sizeof *dx), *dctx = malloc(nc * sizeof *dctx);
    float *dcls = ncls ? malloc(ncls * sizeof *dcls) : NULL;
    model_loss(&c);
    unet_zero_grad(m);
    unet_backward_cond(m, c.g, dx, dctx, dcls, B);
    rng r = rng_make(7, (uint64_t)m->params.n);
    fd_params(test, &m->params, model_loss, &c, &r);
    if (check_x) fd_input(test, "x", c.x, dx, nx, model_loss, &c, &r);
    fd_input(test, "context", c.ctx, dctx, nc, model_loss, &c, &r);
    if (ncls) fd_input(test, "class labels", c.cls, dcls, ncls, model_loss, &c, &r);
    free(dx), free(dctx), free(dcls);
    model_inputs_free(&c);
}

static unet_config config_wide(void) {
    // SD2-like: Linear projections, 3 levels, 2 ResNets per level, attention deeper.
    unet_config c = unet_config_tiny();
    c.n_levels = 3;
    c.block_out_channels[2] = 8;
    c.layers_per_block = 2;
    c.cross_attn[0] = 0, c.cross_attn[1] = 1, c.cross_attn[2] = 1;
    c.num_heads[2] = 4;
    c.use_linear_projection = 1;
    return c;
}

static unet_config config_class(void) {
    unet_config c = unet_config_tiny();
    c.class_embed_dim = 5;  // diffusers' class_embed_type "projection"
    return c;
}

static void test_model_fd(const char *test, unet_config cfg) {
    unet m;
    EXPECT(unet_build(&m, &cfg, UNET_TRAIN_FULL, NULL) == 0, "%s: %s", test, err_msg());
    EXPECT_TRUE(unet_alloc_activations(&m, 2, 3) == 0);
    randomize(&m.params, 300, 0.3f);
    fd_model(test, &m, 2, 3, 1);
    unet_free(&m);
}

static const lora_config selma_lora = {.rank = 2, .alpha = 4.0f, .targets = "to_q,to_k,to_v,to_out.0"};

static void test_lora(void) {
    unet_config cfg = unet_config_tiny();
    const int B = 2, T = 3;
    unet base, m;
    EXPECT_TRUE(unet_build(&base, &cfg, UNET_FROZEN, NULL) == 0);
    EXPECT(unet_build(&m, &cfg, UNET_TRAIN_LORA, &selma_lora) == 0, "%s", err_msg());
    EXPECT_TRUE(unet_alloc_activations(&base, B, T) == 0 && unet_alloc_activations(&m, B, T) == 0);
    unet_init_random(&base, 42);
    unet_init_random(&m, 42);
    // tiny: attention in down level 0, the mid block and up level 1 (two layers):
    // 4 transformers x 2 attentions x 4 linears x (A, B).
    int n_lora = 0, base_grads = 0;
    for (int i = 0; i < m.params.n; i++) {
        unet_param *p = &m.params.items[i];
        n_lora += p->kind == PARAM_LORA;
        base_grads += p->kind == PARAM_BASE && (p->grad || p->trainable);
        if (p->kind == PARAM_LORA) EXPECT(p->grad && p->trainable, "%s has no gradient", p->name);
    }
    EXPECT(n_lora == 64, "%d LoRA tensors", n_lora);
    EXPECT(base_grads == 0, "%d base tensors have gradients", base_grads);
    EXPECT_TRUE(m.conv_in.dw == NULL && m.down[0].resnets[0].norm1.dw == NULL);
    EXPECT_TRUE(m.down[0].attentions[0].attn1.to_q.dw == NULL);
    EXPECT_TRUE(m.down[0].attentions[0].attn1.to_q.dlora_a != NULL);
    EXPECT_TRUE(m.down[0].attentions[0].ff_proj.lora_a == NULL);  // not a target
    unet_param *lb = ptab_find(&m.params, "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_out.0.lora_B.weight");
    EXPECT_TRUE(lb && lb->t.shape[0] == 4 && lb->t.shape[1] == 2);
    // The gradient arena holds the adapters only.
    size_t lora_bytes = ptab_count(&m.params, PARAM_LORA, 1) * sizeof(float);
    EXPECT(m.params.grads.size <= lora_bytes + (size_t)n_lora * ARENA_ALIGN,
           "grads arena %zu bytes for %zu bytes of adapters", m.params.grads.size, lora_bytes);
    EXPECT_TRUE(base.params.grads.base == NULL);  // frozen: no gradient arena at all

    // lora_B = 0 (PEFT's init): the adapter is the identity, bit for bit.
    model_ctx c;
    model_inputs(&c, &base, B, T);
    size_t nout = (size_t)B * cfg.out_channels * cfg.sample_size * cfg.sample_size;
    EXPECT_TRUE(unet_forward(&base, c.x, c.t, c.ctx, B) == 0);
    EXPECT_TRUE(unet_forward(&m, c.x, c.t, c.ctx, B) == 0);
    EXPECT(memcmp(base.out, m.out, nout * sizeof(float)) == 0, "%s", "B = 0 changes the output");
    // Base weights untouched by a LoRA backward (and no base gradient anywhere).
    size_t pbytes = m.params.params.size;
    char *before = malloc(pbytes);
    memcpy(before, m.params.params.base, pbytes);
    for (int i = 0; i < m.params.n; i++)  // random B, so every adapter term is live
        if (m.params.items[i].kind == PARAM_LORA && strstr(m.params.items[i].name, "lora_B"))
            randn(m.params.items[i].t.data, (size_t)tensor_numel(&m.params.items[i].t), 500 + i, 0.3f);
    fd_model("lora tiny", &m, B, T, 0);
    EXPECT_TRUE(unet_forward(&m, c.x, c.t, c.ctx, B) == 0);
    double diff = 0;
    for (size_t i = 0; i < nout; i++) diff += fabs(m.out[i] - base.out[i]);
    EXPECT(diff > 1e-3, "random lora_B leaves the output (sum |diff| %.3g)", diff);
    int base_same = 1;
    for (int i = 0; i < m.params.n; i++) {
        unet_param *p = &m.params.items[i];
        char *q = before + ((char *)p->t.data - m.params.params.base);
        if (p->kind == PARAM_BASE) base_same &= !memcmp(q, p->t.data, tensor_nbytes(&p->t));
    }
    EXPECT_TRUE(base_same);
    free(before);

    // LoRA save -> load into a fresh LoRA model on the same base -> identical output.
    char path[128];
    snprintf(path, sizeof path, "%s/lora.safetensors", tmpdir);
    EXPECT(unet_save(&m, path, PARAM_LORA) == 0, "%s", err_msg());
    float *out1 = malloc(nout * sizeof *out1);
    memcpy(out1, m.out, nout * sizeof *out1);
    unet m2;
    EXPECT_TRUE(unet_build(&m2, &cfg, UNET_FROZEN, &selma_lora) == 0);
    EXPECT_TRUE(unet_alloc_activations(&m2, B, T) == 0);
    unet_init_random(&m2, 42);
    EXPECT(unet_load(&m2, path, PARAM_LORA) == 0, "%s", err_msg());
    EXPECT_TRUE(unet_forward(&m2, c.x, c.t, c.ctx, B) == 0);
    EXPECT(memcmp(out1, m2.out, nout * sizeof(float)) == 0, "%s", "LoRA reload changes the output");
    // A LoRA file is not a base checkpoint: every base tensor missing, every key unexpected.
    EXPECT_TRUE(unet_load(&m2, path, PARAM_BASE) == -1 && strstr(err_msg(), "missing: conv_in.weight") &&
                strstr(err_msg(), "64 unexpected: unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_"));
    unlink(path);
    free(out1);
    model_inputs_free(&c);
    unet_free(&m2);
    unet_free(&m);
    unet_free(&base);
}

static void test_save_load(void) {
    unet_config cfg = unet_config_tiny();
    const int B = 2, T = 3;
    unet m, m2;
    EXPECT_TRUE(unet_build(&m, &cfg, UNET_TRAIN_FULL, NULL) == 0);
    EXPECT_TRUE(unet_build(&m2, &cfg, UNET_FROZEN, NULL) == 0);
    EXPECT_TRUE(unet_alloc_activations(&m, B, T) == 0 && unet_alloc_activations(&m2, B, T) == 0);
    randomize(&m.params, 700, 0.3f);
    char path[128];
    snprintf(path, sizeof path, "%s/unet.safetensors", tmpdir);
    EXPECT(unet_save(&m, path, PARAM_BASE) == 0, "%s", err_msg());
    EXPECT(unet_load(&m2, path, PARAM_BASE) == 0, "%s", err_msg());
    model_ctx c;
    model_inputs(&c, &m, B, T);
    size_t nout = (size_t)B * cfg.out_channels * cfg.sample_size * cfg.sample_size;
    EXPECT_TRUE(unet_forward(&m, c.x, c.t, c.ctx, B) == 0);
    EXPECT_TRUE(unet_forward(&m2, c.x, c.t, c.ctx, B) == 0);
    EXPECT(memcmp(m.out, m2.out, nout * sizeof(float)) == 0, "%s", "reload changes the output");
    // A smaller batch than allocated runs on the same buffers and agrees per image.
    float first[2 * 8 * 8];
    memcpy(first, m.out, sizeof first);
    EXPECT_TRUE(unet_forward(&m2, c.x, c.t, c.ctx, 1) == 0);
    EXPECT_TRUE(memcmp(first, m2.out, sizeof first) == 0);
    EXPECT_TRUE(unet_forward(&m2, c.x, c.t, c.ctx, 3) == -1);
    model_inputs_free(&c);
    unet_free(&m2);

    // Wrong shapes and missing tensors are named.
    unet_config other = cfg;
    other.cross_attention_dim = 6;
    EXPECT_TRUE(unet_build(&m2, &other, UNET_FROZEN, NULL) == 0);
    EXPECT_TRUE(unet_load(&m2, path, PARAM_BASE) == -1 &&
                strstr(err_msg(), "wrong shape: down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight (model (4, 6))"));
    unet_free(&m2);
    other = cfg;
    other.layers_per_block = 2;
    EXPECT_TRUE(unet_build(&m2, &other, UNET_FROZEN, NULL) == 0);
    EXPECT_TRUE(unet_load(&m2, path, PARAM_BASE) == -1 &&
                strstr(err_msg(), "missing: down_blocks.0.resnets.1.norm1.weight"));
    unet_free(&m2);
    other = cfg;
    other.cross_attn[0] = 0;
    EXPECT_TRUE(unet_build(&m2, &other, UNET_FROZEN, NULL) == 0);
    EXPECT_TRUE(unet_load(&m2, path, PARAM_BASE) == -1 &&
                strstr(err_msg(), "unexpected: down_blocks.0.attentions.0."));
    unet_free(&m2);
    unlink(path);
    unet_free(&m);
}

static void test_config(void) {
    unet m;
    unet_config c = unet_config_tiny();
    c.num_heads[1] = 3;
    EXPECT_TRUE(unet_build(&m, &c, UNET_FROZEN, NULL) == -1 && strstr(err_msg(), "num_heads[1]"));
    c = unet_config_tiny();
    c.sample_size = 6;  // two levels need a multiple of 2; 6 works, 7 does not
    EXPECT_TRUE(unet_config_check(&c) == 0);
    c.sample_size = 7;
    EXPECT_TRUE(unet_config_check(&c) == -1 && strstr(err_msg(), "sample_size"));
    c = unet_config_tiny();
    EXPECT_TRUE(unet_build(&m, &c, UNET_TRAIN_LORA, NULL) == -1);
    lora_config none = {.rank = 2, .alpha = 2, .targets = "to_nothing"};
    EXPECT_TRUE(unet_build(&m, &c, UNET_TRAIN_LORA, &none) == -1 && strstr(err_msg(), "match no"));
    unet_free(&m);
    // SD 1.5's layout, counted without allocating: diffusers' UNet2DConditionModel
    // for runwayml/stable-diffusion-v1-5 has 859,520,964 parameters in 686 tensors.
    c = unet_config_sd15();
    size_t n = 0;
    int tensors = 0;
    EXPECT(unet_param_count(&c, &n, &tensors) == 0, "%s", err_msg());
    EXPECT(n == 859520964 && tensors == 686, "sd15: %zu parameters in %d tensors", n, tensors);
    // A class embedding needs its labels, and a model without one refuses them.
    c = config_class();
    EXPECT_TRUE(unet_build(&m, &c, UNET_FROZEN, NULL) == 0 && unet_alloc_activations(&m, 1, 2) == 0);
    float x[3 * 8 * 8] = {0}, t = 5, ctx[2 * 8] = {0}, cls[5] = {0};
    EXPECT_TRUE(unet_forward(&m, x, &t, ctx, 1) == -1 && strstr(err_msg(), "class labels were not given"));
    EXPECT_TRUE(unet_forward_cond(&m, x, &t, ctx, cls, 1) == 0);
    unet_free(&m);
    c = unet_config_tiny();
    EXPECT_TRUE(unet_build(&m, &c, UNET_FROZEN, NULL) == 0 && unet_alloc_activations(&m, 1, 2) == 0);
    EXPECT_TRUE(unet_forward_cond(&m, x, &t, ctx, cls, 1) == -1 && strstr(err_msg(), "were given"));
    unet_free(&m);
    c.class_embed_dim = -1;
    EXPECT_TRUE(unet_config_check(&c) == -1 && strstr(err_msg(), "class_embed_dim"));
}

static int bench(int B) {
    unet_config cfg = unet_config_shapes();
    const int T = 16;
    unet m;
    if (unet_build(&m, &cfg, UNET_TRAIN_FULL, NULL) || unet_alloc_activations(&m, B, T)) {
        fprintf(stderr, "%s\n", err_msg());
        return 1;
    }
    unet_init_random(&m, 1);
    model_ctx c;
    model_inputs(&c, &m, B, T);
    double t0 = 0, t1 = 0, t2 = 0;
    for (int rep = 0; rep < 2; rep++) {  // the first pass touches the fresh arenas' pages
        t0 = time_now();
        unet_forward(&m, c.x, c.t, c.ctx, B);
        t1 = time_now();
        unet_zero_grad(&m);
        unet_backward(&m, c.g, NULL, NULL, B);
        t2 = time_now();
    }
    printf("shapes unet: %zu parameters, batch %d at %dx%d: forward %.3f s, backward %.3f s\n",
           ptab_count(&m.params, PARAM_BASE, 0), B, cfg.sample_size, cfg.sample_size, t1 - t0,
           t2 - t1);
    model_inputs_free(&c);
    unet_free(&m);
    return 0;
}

// The device API on the CPU: unet_copy_params between models (and its refusal of a
// different build), unet_adamw_update equal to one AdamW over the whole arena (what
// models/train.c does) in full mode and touching only the adapters in LoRA mode, and
// unet_build_device(DEVICE_CUDA) failing with a message where there is no GPU.
static void test_device_api(void) {
    unet_config cfg = unet_config_tiny();
    unet a, b, l;
    EXPECT_TRUE(unet_build(&a, &cfg, UNET_TRAIN_FULL, NULL) == 0);
    EXPECT_TRUE(unet_build(&b, &cfg, UNET_FROZEN, NULL) == 0);
    EXPECT_TRUE(unet_build(&l, &cfg, UNET_TRAIN_LORA, &selma_lora) == 0);
    unet_init_random(&a, 1);
    unet_init_random(&b, 2);
    EXPECT_TRUE(unet_copy_params(&b, &a) == 0);
    EXPECT_TRUE(memcmp(b.params.params.base, a.params.params.base, a.params.params.size) == 0);
    EXPECT(unet_copy_params(&b, &l) == -1 && strstr(err_msg(), "unet_copy_params"),
           "copy from a LoRA build: %s", err_msg());

    // full mode: the parameter and gradient arenas have the same layout
    size_t n = unet_adam_state_floats(&a);
    EXPECT_TRUE(n * sizeof(float) == a.params.params.size);
    float *g = (float *)a.params.grads.base, *p = malloc(n * sizeof *p);
    float *m1 = calloc(n, sizeof *m1), *v1 = calloc(n, sizeof *v1);
    float *m2 = calloc(n, sizeof *m2), *v2 = calloc(n, sizeof *v2);
    randn(g, n, 77, 1.0f);
    memcpy(p, a.params.params.base, n * sizeof *p);
    adamw_hparams hp = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2};
    for (int t = 1; t <= 2; t++) {
        unet_adamw_update(&a, m1, v1, &hp, t);
        adamw_update(p, g, m2, v2, n, &hp, t);
    }
    size_t differ = 0;
    for (int i = 0; i < a.params.n; i++) {
        const unet_param *q = &a.params.items[i];
        const float *ref = p + ((const float *)q->t.data - (const float *)a.params.params.base);
        differ += memcmp(q->t.data, ref, tensor_nbytes(&q->t)) != 0;
    }
    EXPECT(differ == 0, "unet_adamw_update: %zu tensors differ from one AdamW over the arena", differ);

    // LoRA mode: base weights untouched, every adapter moved
    unet_init_random(&l, 3);
    float *pl = malloc(l.params.params.size);
    memcpy(pl, l.params.params.base, l.params.params.size);
    size_t nl = unet_adam_state_floats(&l);
    float *ml = calloc(nl, sizeof *ml), *vl = calloc(nl, sizeof *vl);
    randn((float *)l.params.grads.base, nl, 78, 1.0f);
    unet_adamw_update(&l, ml, vl, &hp, 1);
    size_t base_moved = 0, lora_still = 0;
    for (int i = 0; i < l.params.n; i++) {
        const unet_param *q = &l.params.items[i];
        const float *before = pl + ((const float *)q->t.data - (const float *)l.params.params.base);
        int same = !memcmp(q->t.data, before, tensor_nbytes(&q->t));
        base_moved += q->kind == PARAM_BASE && !same;
        lora_still += q->kind == PARAM_LORA && same;
    }
    EXPECT(base_moved == 0 && lora_still == 0, "LoRA AdamW: %zu base tensors moved, %zu adapters not",
           base_moved, lora_still);

    unet c;
    if (cuda_device_count() == 0) {
        EXPECT(unet_build_device(&c, &cfg, UNET_FROZEN, NULL, DEVICE_CUDA) == -1 &&
                   strstr(err_msg(), "cuda"),
               "unet_build_device without a GPU: %s", err_msg());
    } else {
        EXPECT_TRUE(unet_build_device(&c, &cfg, UNET_FROZEN, NULL, DEVICE_CUDA) == 0);
        // Staged through a CPU twin: the write itself fails, naming the path.
        EXPECT(unet_save(&c, "/nonexistent/x.safetensors", PARAM_BASE) == -1 &&
                   strstr(err_msg(), "/nonexistent/x.safetensors"),
               "unet_save of a CUDA model to a bad path: %s", err_msg());
        unet_free(&c);
    }
    free(p), free(pl), free(m1), free(v1), free(m2), free(v2), free(ml), free(vl);
    unet_free(&a), unet_free(&b), unet_free(&l);
}

int main(int argc, char **argv) {
    log_set_quiet(1);
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        log_set_quiet(0);
        return bench(argc > 2 ? atoi(argv[2]) : 32);
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_unet.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_config();
    test_resnet(4, 4);
    test_resnet(4, 6);
    test_transformer(0, NULL);
    test_transformer(1, NULL);
    test_transformer(0, &selma_lora);
    test_model_fd("model tiny", unet_config_tiny());
    test_model_fd("model wide", config_wide());
    test_model_fd("model class embedding", config_class());
    test_lora();
    test_save_load();
    test_device_api();
    rmdir(tmpdir);
    return check_report("test_unet");
}
