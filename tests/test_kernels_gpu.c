// gpu suite: every hand-written float32 CUDA kernel of the memory-bound ops (group and
// layer norm, activations, softmax, upsample, concat, tokens, plane bias, add, MSE,
// AdamW, the trainer's sum of squares and axpby, timestep embedding) against the op's
// CPU float32 version, on the shapes of the shapes-world UNet and of SD plus odd ones. Skipped (77) without a CUDA device.
//
// Method (.library/device/METHOD.md): every input is drawn fresh on the GPU with
// rng_fill_*_cuda (a new Philox stream per array) and copied back, so that both sides
// see the same bits; every GPU output is poisoned with NaN (bytes 0xFF) before each
// call and checked for NaN after; parameter gradients start from the same non-zero
// values on both sides (they must accumulate); the comparison is the relative L2 error
// ||gpu - cpu|| / ||cpu|| and max |gpu - cpu| / max(1, max |cpu|), both <= the tolerance:
//   TOL     1e-5  float32 ops whose two versions do the same float operations up to
//                 FMA contraction, libm-vs-CUDA ulps and double-sum order
//   TOL_ACC 5e-5  layernorm dw, db: the CPU adds the N rows' terms one by one in
//                 float (error growing like sqrt(N) ulps of the sum), the GPU in a tree
//   exact   0     pure copies and sums done in the same order (add, concat, upsample,
//                 tokens, the plane_bias forward)
// Each comparison prints one line; a second pass with every pointer offset by one
// float takes the kernels' unaligned (scalar) paths.
//
// SELMA_TEST_SEED=<n> changes the base seed (a fresh draw of every input).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/activation.h"
#include "kernels/adamw.h"
#include "kernels/add.h"
#include "kernels/axpby.h"
#include "kernels/concat.h"
#include "kernels/groupnorm.h"
#include "kernels/layernorm.h"
#include "kernels/mse.h"
#include "kernels/plane_bias.h"
#include "kernels/rng_fill.h"
#include "kernels/softmax.h"
#include "kernels/sumsq.h"
#include "kernels/timestep_embedding.h"
#include "kernels/tokens.h"
#include "kernels/upsample.h"
#include "tests/gpu_check.h"

#define TOL 1e-5
#define TOL_ACC 5e-5

static uint64_t g_seed = 20261126, g_stream;
static int g_off;  // floats every device pointer is offset by (0 or 1)

// A host array and its device twin. base is what device_alloc returned.
typedef struct pair {
    float *h, *d;
    void *base;
    size_t n;
} pair;

#define POOL_MAX 64
static pair *g_pool[POOL_MAX];
static int g_npool;

static pair *pair_new(size_t n) {
    CHECK(g_npool < POOL_MAX);
    pair *p = calloc(1, sizeof *p);
    p->n = n;
    p->h = malloc((n ? n : 1) * sizeof(float));
    p->base = device_alloc(DEVICE_CUDA, ((n ? n : 1) + 4) * sizeof(float));
    CHECK(p->h && p->base);
    p->d = (float *)p->base + g_off;
    g_pool[g_npool++] = p;
    return p;
}

static void pool_free(void) {
    for (int i = 0; i < g_npool; i++) {
        device_free(DEVICE_CUDA, g_pool[i]->base);
        free(g_pool[i]->h);
        free(g_pool[i]);
    }
    g_npool = 0;
}

static void download(pair *p) { gpu_to_host(p->h, p->d, p->n); }
static void upload(pair *p) { gpu_from_host(p->d, p->h, p->n); }

// Fresh random values drawn on the GPU, copied to the host twin.
static pair *p_normal(size_t n, float mean, float std) {
    pair *p = pair_new(n);
    rng_fill_normal_cuda(p->d, n, g_seed, g_stream++, 0, mean, std);
    download(p);
    return p;
}

static pair *p_uniform(size_t n, float lo, float hi) {
    pair *p = pair_new(n);
    rng_fill_uniform_cuda(p->d, n, g_seed, g_stream++, 0, lo, hi);
    download(p);
    return p;
}

static void poison(pair *p) {
    gpu_poison(p->d, p->n);
    for (size_t i = 0; i < p->n; i++) p->h[i] = 1e30f;  // junk the CPU must overwrite
}

// An output: the device side poisoned, the host side junk.
static pair *p_out(size_t n) {
    pair *p = pair_new(n);
    poison(p);
    return p;
}

// A copy of the host values of p on both sides (parameter gradients to accumulate into).
static pair *p_copy(const pair *src) {
    pair *p = pair_new(src->n);
    memcpy(p->h, src->h, src->n * sizeof(float));
    upload(p);
    return p;
}

// ||gpu - cpu|| / ||cpu|| and max |gpu - cpu| / max(1, max |cpu|) <= tol; no NaN.
static void compare(const char *what, pair *p, double tol) {
    float *g = gpu_download(p->d, p->n);
    double se = 0, sr = 0, worst = 0, scale = 1;
    size_t bad = 0;
    for (size_t i = 0; i < p->n; i++) {
        double c = p->h[i], e = fabs((double)g[i] - c);
        if (!isfinite(g[i]) && isfinite(c)) {
            bad++;
            continue;
        }
        se += e * e;
        sr += c * c;
        worst = e > worst ? e : worst;
        scale = fabs(c) > scale ? fabs(c) : scale;
    }
    double rel = sr > 0 ? sqrt(se / sr) : sqrt(se), mx = worst / scale;
    printf("  %-58s n %9zu  relL2 %.2e  max %.2e%s\n", what, p->n, rel, mx, bad ? "  NaN!" : "");
    EXPECT(bad == 0, "%s: %zu of %zu outputs not finite (unwritten?)", what, bad, p->n);
    EXPECT(rel <= tol, "%s: relative L2 error %.3g > %.1g", what, rel, tol);
    EXPECT(mx <= tol, "%s: max abs error %.3g (normalized) > %.1g", what, mx, tol);
    free(g);
}

static char g_name[256];
#define NAME(...) (snprintf(g_name, sizeof g_name, __VA_ARGS__), g_name)

// ---- group norm, layer norm -----------------------------------------------------------
#define HOST(p) ((p) ? (p)->h : NULL)
#define DEV(p) ((p) ? (p)->d : NULL)

// The backward of group norm (G > 0: B C HW, G groups) or of layer norm (G == 0: B
// rows of C) on both sides; NULL gradients skipped.
static void norm_backward_both(pair *dx, pair *dw, pair *db, const pair *dy, const pair *x,
                               const pair *w, const pair *m, const pair *r, int B, int C, int HW,
                               int G) {
    if (G) {
        groupnorm_backward(HOST(dx), HOST(dw), HOST(db), dy->h, x->h, HOST(w), m->h, r->h, B, C, HW, G);
        groupnorm_backward_cuda(DEV(dx), DEV(dw), DEV(db), dy->d, x->d, DEV(w), m->d, r->d, B, C, HW, G);
    } else {
        layernorm_backward(HOST(dx), HOST(dw), HOST(db), dy->h, x->h, HOST(w), m->h, r->h, B, C);
        layernorm_backward_cuda(DEV(dx), DEV(dw), DEV(db), dy->d, x->d, DEV(w), m->d, r->d, B, C);
    }
}

// The forward's out, mean and rstd (already run on both sides) against the CPU's; then
// the backward from the CPU's statistics on both sides, so that it is checked alone, in
// mode 0: all gradients, 1: dinp only, 2: parameter gradients only (tol_params: dw, db).
static void check_norm(const char *op, const char *t, pair *x, pair *w, pair *y, pair *m, pair *r,
                       int B, int C, int HW, int G, double tol_params) {
    const size_t n = (size_t)B * C * HW;
    compare(NAME("%s fwd out  %s", op, t), y, TOL);
    compare(NAME("%s fwd mean %s", op, t), m, TOL);
    compare(NAME("%s fwd rstd %s", op, t), r, TOL);
    upload(m);
    upload(r);
    pair *dy = p_normal(n, 0, 1);
    for (int mode = 0; mode < 3; mode++) {
        pair *dx = mode == 2 ? NULL : p_out(n);
        pair *dw0 = mode == 1 ? NULL : p_normal(C, 0, 1), *db0 = mode == 1 ? NULL : p_normal(C, 0, 1);
        norm_backward_both(dx, dw0, db0, dy, x, w, m, r, B, C, HW, G);
        const char *mn = mode == 0 ? "" : mode == 1 ? " (dinp only)" : " (params only)";
        if (dx) compare(NAME("%s bwd dinp%s %s", op, mn, t), dx, TOL);
        if (dw0) compare(NAME("%s bwd dw += %s %s", op, mn, t), dw0, tol_params);
        if (db0) compare(NAME("%s bwd db += %s %s", op, mn, t), db0, tol_params);
    }
    pool_free();
}

static void check_groupnorm(int B, int C, int HW, int G, int affine, float mean, float std) {
    const size_t n = (size_t)B * C * HW;
    pair *x = p_normal(n, mean, std);
    pair *w = affine ? p_normal(C, 1, 0.5f) : NULL, *b = affine ? p_normal(C, 0, 0.5f) : NULL;
    pair *y = p_out(n), *m = p_out((size_t)B * G), *r = p_out((size_t)B * G);
    const float eps = 1e-5f;
    groupnorm_forward(y->h, m->h, r->h, x->h, w ? w->h : NULL, b ? b->h : NULL, B, C, HW, G, eps);
    groupnorm_forward_cuda(y->d, m->d, r->d, x->d, w ? w->d : NULL, b ? b->d : NULL, B, C, HW, G, eps);
    char t[160];
    snprintf(t, sizeof t, "B%d C%d HW%d G%d%s x~N(%g,%g)%s", B, C, HW, G, affine ? "" : " noaffine",
             mean, std, g_off ? " unaligned" : "");
    check_norm("groupnorm", t, x, w, y, m, r, B, C, HW, G, TOL);
}

static void check_layernorm(int N, int C, int affine) {
    const size_t n = (size_t)N * C;
    pair *x = p_normal(n, 0.3f, 1.5f);
    pair *w = affine ? p_normal(C, 1, 0.5f) : NULL, *b = affine ? p_normal(C, 0, 0.5f) : NULL;
    pair *y = p_out(n), *m = p_out(N), *r = p_out(N);
    layernorm_forward(y->h, m->h, r->h, x->h, w ? w->h : NULL, b ? b->h : NULL, N, C, 1e-5f);
    layernorm_forward_cuda(y->d, m->d, r->d, x->d, w ? w->d : NULL, b ? b->d : NULL, N, C, 1e-5f);
    char t[160];
    snprintf(t, sizeof t, "N%d C%d%s%s", N, C, affine ? "" : " noaffine", g_off ? " unaligned" : "");
    check_norm("layernorm", t, x, w, y, m, r, N, C, 1, 0, TOL_ACC);
}

// ---- activations ----------------------------------------------------------------------
static const char *gelu_name(gelu_kind k) {
    return k == GELU_ERF ? "erf" : k == GELU_TANH ? "tanh" : "quick";
}

// kind -1: SiLU, else GELU of that kind, on both sides: y = f(in), dx = f'(x) dy.
static void act_both(int kind, pair *y, const pair *in, pair *dx, const pair *dy, const pair *x,
                     size_t n) {
    if (kind < 0) {
        silu_forward(y->h, in->h, n);
        silu_forward_cuda(y->d, in->d, n);
        silu_backward(dx->h, dy->h, x->h, n);
        silu_backward_cuda(dx->d, dy->d, x->d, n);
    } else {
        gelu_forward(y->h, in->h, n, (gelu_kind)kind);
        gelu_forward_cuda(y->d, in->d, n, (gelu_kind)kind);
        gelu_backward(dx->h, dy->h, x->h, n, (gelu_kind)kind);
        gelu_backward_cuda(dx->d, dy->d, x->d, n, (gelu_kind)kind);
    }
}

// kind -1: SiLU, else GELU of that kind. Then the same in place (out == inp,
// dinp == dout).
static void check_pointwise(size_t n, int kind) {
    char t[120];
    snprintf(t, sizeof t, "%s n%zu%s", kind < 0 ? "silu" : gelu_name((gelu_kind)kind), n,
             g_off ? " unaligned" : "");
    pair *x = p_normal(n, 0, 4), *y = p_out(n), *dy = p_normal(n, 0, 1), *dx = p_out(n);
    act_both(kind, y, x, dx, dy, x, n);
    compare(NAME("act fwd %s", t), y, TOL);
    compare(NAME("act bwd %s", t), dx, TOL);
    // In place: y := f(y) starting from x; dx := f'(dx) starting from dy.
    pair *yi = p_copy(x), *dxi = p_copy(dy);
    act_both(kind, yi, yi, dxi, dxi, x, n);
    compare(NAME("act fwd in place %s", t), yi, TOL);
    compare(NAME("act bwd in place %s", t), dxi, TOL);
    // A NULL dinp is a no-op.
    if (kind < 0)
        silu_backward_cuda(NULL, dy->d, x->d, n);
    else
        gelu_backward_cuda(NULL, dy->d, x->d, n, (gelu_kind)kind);
    device_sync();
    pool_free();
}

static void check_geglu(int N, int C) {
    const size_t n = (size_t)N * C;
    char t[120];
    snprintf(t, sizeof t, "N%d C%d%s", N, C, g_off ? " unaligned" : "");
    pair *x = p_normal(2 * n, 0, 2), *y = p_out(n), *dy = p_normal(n, 0, 1), *dx = p_out(2 * n);
    geglu_forward(y->h, x->h, N, C);
    geglu_forward_cuda(y->d, x->d, N, C);
    geglu_backward(dx->h, dy->h, x->h, N, C);
    geglu_backward_cuda(dx->d, dy->d, x->d, N, C);
    compare(NAME("geglu fwd %s", t), y, TOL);
    compare(NAME("geglu bwd %s", t), dx, TOL);
    pool_free();
}

// ---- softmax --------------------------------------------------------------------------
static void check_softmax(int N, int M) {
    const size_t n = (size_t)N * M;
    char t[120];
    snprintf(t, sizeof t, "N%d M%d%s", N, M, g_off ? " unaligned" : "");
    pair *x = p_normal(n, 0, 3), *y = p_out(n), *dy = p_normal(n, 0, 1), *dx = p_out(n);
    softmax_forward(y->h, x->h, N, M);
    softmax_forward_cuda(y->d, x->d, N, M);
    compare(NAME("softmax fwd %s", t), y, TOL);
    upload(y);  // backward from the CPU's y on both sides
    softmax_backward(dx->h, dy->h, y->h, N, M);
    softmax_backward_cuda(dx->d, dy->d, y->d, N, M);
    compare(NAME("softmax bwd %s", t), dx, TOL);
    pair *yi = p_copy(x), *dxi = p_copy(dy);
    softmax_forward(yi->h, yi->h, N, M);
    softmax_forward_cuda(yi->d, yi->d, N, M);
    compare(NAME("softmax fwd in place %s", t), yi, TOL);
    softmax_backward(dxi->h, dxi->h, y->h, N, M);
    softmax_backward_cuda(dxi->d, dxi->d, y->d, N, M);
    compare(NAME("softmax bwd in place %s", t), dxi, TOL);
    pool_free();
}

// ---- upsample, concat, add ------------------------------------------------------------
static void check_upsample(int B, int C, int H, int W) {
    const size_t n = (size_t)B * C * H * W;
    char t[120];
    snprintf(t, sizeof t, "B%d C%d H%d W%d%s", B, C, H, W, g_off ? " unaligned" : "");
    pair *x = p_normal(n, 0, 1), *y = p_out(4 * n), *dy = p_normal(4 * n, 0, 1), *dx = p_out(n);
    upsample_nearest2x_forward(y->h, x->h, B, C, H, W);
    upsample_nearest2x_forward_cuda(y->d, x->d, B, C, H, W);
    upsample_nearest2x_backward(dx->h, dy->h, B, C, H, W);
    upsample_nearest2x_backward_cuda(dx->d, dy->d, B, C, H, W);
    compare(NAME("upsample fwd %s", t), y, 0);
    compare(NAME("upsample bwd %s", t), dx, 0);
    pool_free();
}

static void check_concat(int B, int C1, int C2, int HW) {
    const size_t na = (size_t)B * C1 * HW, nb = (size_t)B * C2 * HW;
    char t[120];
    snprintf(t, sizeof t, "B%d C1 %d C2 %d HW%d%s", B, C1, C2, HW, g_off ? " unaligned" : "");
    pair *a = p_normal(na, 0, 1), *b = p_normal(nb, 0, 1), *y = p_out(na + nb);
    concat_channels_forward(y->h, a->h, b->h, B, C1, C2, HW);
    concat_channels_forward_cuda(y->d, a->d, b->d, B, C1, C2, HW);
    compare(NAME("concat fwd %s", t), y, 0);
    pair *dy = p_normal(na + nb, 0, 1);
    for (int mode = 0; mode < 3; mode++) {  // both, da only, db only
        pair *da = mode == 2 ? NULL : p_out(na), *db = mode == 1 ? NULL : p_out(nb);
        concat_channels_backward(da ? da->h : NULL, db ? db->h : NULL, dy->h, B, C1, C2, HW);
        concat_channels_backward_cuda(da ? da->d : NULL, db ? db->d : NULL, dy->d, B, C1, C2, HW);
        if (da) compare(NAME("concat bwd da%s %s", mode ? " (alone)" : "", t), da, 0);
        if (db) compare(NAME("concat bwd db%s %s", mode ? " (alone)" : "", t), db, 0);
    }
    pool_free();
}

// Channel planes <-> tokens: a permutation, exact.
static void check_tokens(int B, int C, int N) {
    const size_t n = (size_t)B * C * N;
    char t[120];
    snprintf(t, sizeof t, "B%d C%d N%d%s", B, C, N, g_off ? " unaligned" : "");
    pair *x = p_normal(n, 0, 1), *tok = p_out(n), *back = p_out(n);
    channels_to_tokens(tok->h, x->h, B, C, N);
    channels_to_tokens_cuda(tok->d, x->d, B, C, N);
    tokens_to_channels(back->h, tok->h, B, C, N);
    tokens_to_channels_cuda(back->d, tok->d, B, C, N);
    compare(NAME("channels_to_tokens %s", t), tok, 0);
    compare(NAME("tokens_to_channels %s", t), back, 0);
    pool_free();
}

// Per-plane bias: the forward adds in the same order (exact); the backward's plane
// sums differ only in summation order (float tree vs double).
static void check_plane_bias(int B, int C, int HW) {
    const size_t n = (size_t)B * C * HW, nt = (size_t)B * C;
    char t[120];
    snprintf(t, sizeof t, "B%d C%d HW%d%s", B, C, HW, g_off ? " unaligned" : "");
    pair *x = p_normal(n, 0, 1), *tb = p_normal(nt, 0, 1), *dy = p_normal(n, 0, 1), *dt = p_out(nt);
    plane_bias_forward(x->h, tb->h, B, C, HW);
    plane_bias_forward_cuda(x->d, tb->d, B, C, HW);
    compare(NAME("plane_bias fwd %s", t), x, 0);
    plane_bias_backward(dt->h, dy->h, B, C, HW);
    plane_bias_backward_cuda(dt->d, dy->d, B, C, HW);
    compare(NAME("plane_bias bwd %s", t), dt, TOL);
    pool_free();
}

static void check_add(size_t n) {
    char t[120];
    snprintf(t, sizeof t, "n%zu%s", n, g_off ? " unaligned" : "");
    pair *a = p_normal(n, 0, 1), *b = p_normal(n, 0, 1), *y = p_out(n);
    add_forward(y->h, a->h, b->h, n);
    add_forward_cuda(y->d, a->d, b->d, n);
    compare(NAME("add fwd %s", t), y, 0);
    pair *dy = p_normal(n, 0, 1), *da = p_out(n), *db = p_out(n);
    add_backward(da->h, db->h, dy->h, n);
    add_backward_cuda(da->d, db->d, dy->d, n);
    compare(NAME("add bwd da %s", t), da, 0);
    compare(NAME("add bwd db %s", t), db, 0);
    // da is dout itself (left as it is), db NULL.
    add_backward_cuda(dy->d, NULL, dy->d, n);
    compare(NAME("add bwd da == dout %s", t), dy, 0);
    pool_free();
}

// ---- MSE, AdamW, timestep embedding ---------------------------------------------------
static void check_mse(size_t n) {
    char t[120];
    snprintf(t, sizeof t, "n%zu%s", n, g_off ? " unaligned" : "");
    pair *p = p_normal(n, 0, 1), *q = p_normal(n, 0.1f, 1), *dp = p_out(n);
    double lc = mse_loss_forward(p->h, q->h, n), lg = mse_loss_forward_cuda(p->d, q->d, n);
    double rel = fabs(lg - lc) / fabs(lc);
    printf("  %-58s n %9zu  cpu %.17g gpu %.17g rel %.2e\n", NAME("mse fwd %s", t), n, lc, lg, rel);
    EXPECT(rel <= 1e-12, "mse fwd %s: %.17g vs %.17g", t, lg, lc);  // both summed in double
    double again = mse_loss_forward_cuda(p->d, q->d, n);
    EXPECT(again == lg, "mse fwd %s not deterministic: %.17g then %.17g", t, lg, again);
    mse_loss_backward(dp->h, p->h, q->h, 0.7f, n);
    mse_loss_backward_cuda(dp->d, p->d, q->d, 0.7f, n);
    compare(NAME("mse bwd %s", t), dp, TOL);
    pool_free();
}

static void check_adamw(size_t n, double wd) {
    char t[120];
    snprintf(t, sizeof t, "n%zu wd %g%s", n, wd, g_off ? " unaligned" : "");
    adamw_hparams hp = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = wd};
    pair *p = p_normal(n, 0, 1), *m = p_normal(n, 0, 1e-3f), *v = p_uniform(n, 0, 1e-5f);
    for (int step = 1; step <= 3; step++) {
        pair *g = p_normal(n, 0, step == 2 ? 1e-3f : 1.0f);  // small gradients: eps matters
        adamw_update(p->h, g->h, m->h, v->h, n, &hp, step);
        adamw_update_cuda(p->d, g->d, m->d, v->d, n, &hp, step);
    }
    compare(NAME("adamw p after 3 steps %s", t), p, TOL);
    compare(NAME("adamw m after 3 steps %s", t), m, TOL);
    compare(NAME("adamw v after 3 steps %s", t), v, TOL);
    pool_free();
}

// The trainer's gradient norm (sum of squares, both summed in double) and its EMA and
// clip (y = a y + b x; the two sides differ by FMA contraction at most).
static void check_sumsq(size_t n) {
    char t[120];
    snprintf(t, sizeof t, "n%zu%s", n, g_off ? " unaligned" : "");
    pair *x = p_normal(n, 0.1f, 1);
    double sc = sumsq(x->h, n), sg = sumsq_cuda(x->d, n);
    double rel = fabs(sg - sc) / fmax(fabs(sc), 1e-300);
    printf("  %-58s n %9zu  cpu %.17g gpu %.17g rel %.2e\n", NAME("sumsq %s", t), n, sc, sg, rel);
    EXPECT(rel <= 1e-12, "sumsq %s: %.17g vs %.17g", t, sg, sc);
    double again = sumsq_cuda(x->d, n);
    EXPECT(again == sg, "sumsq %s not deterministic: %.17g then %.17g", t, sg, again);
    pool_free();
}

static void check_axpby(size_t n) {
    char t[120];
    snprintf(t, sizeof t, "n%zu%s", n, g_off ? " unaligned" : "");
    pair *y = p_normal(n, 0, 1), *x = p_normal(n, 0.5f, 1);
    axpby(y->h, 0.995f, x->h, 0.005f, n);
    axpby_cuda(y->d, 0.995f, x->d, 0.005f, n);
    compare(NAME("axpby ema %s", t), y, TOL);
    axpby(y->h, 0.37f, NULL, 0, n);
    axpby_cuda(y->d, 0.37f, NULL, 0, n);
    compare(NAME("axpby scale (x NULL) %s", t), y, TOL);
    pool_free();
}

static void check_timestep(int B, int dim, int flip, float shift) {
    char t[120];
    snprintf(t, sizeof t, "B%d dim%d flip%d shift%g%s", B, dim, flip, shift, g_off ? " unaligned" : "");
    pair *ts = p_uniform(B, 0, 1000), *y = p_out((size_t)B * dim);
    timestep_embedding_forward(y->h, ts->h, B, dim, flip, shift, 10000);
    timestep_embedding_forward_cuda(y->d, ts->d, B, dim, flip, shift, 10000);
    compare(NAME("timestep_embedding %s", t), y, TOL);
    pool_free();
}

static void run_all(int full) {
    // Group norm: SD (32 groups: 10, 40, 80 channels per group at 64x64, 8x8), the
    // shapes-world UNet (8 groups), odd planes (scalar path), HW 1, one group, a group
    // with a large mean (cancellation), no affine.
    if (full) {
        check_groupnorm(2, 320, 64 * 64, 32, 1, 0, 1);
        check_groupnorm(2, 1280, 8 * 8, 32, 1, 0.5f, 2);
        check_groupnorm(2, 2560, 8 * 8, 32, 1, 0, 1);
        check_groupnorm(8, 64, 32 * 32, 8, 1, 0, 1);
        check_groupnorm(8, 96, 16 * 16, 8, 1, 0, 1);
        check_groupnorm(2, 64, 33 * 33, 32, 1, 0, 1);
        check_groupnorm(2, 4, 9, 1, 1, 0, 1);
        check_groupnorm(3, 6, 1, 2, 1, 0, 1);
        check_groupnorm(2, 128, 64, 32, 1, 20, 0.1f);
        check_groupnorm(2, 64, 32, 16, 0, 0, 1);
    }
    check_groupnorm(1, 3, 35, 3, 1, 0, 1);
    check_groupnorm(2, 32, 64, 8, 1, 0, 1);

    // Layer norm: SD transformer (320 at 64x64, 77 CLIP tokens x 768), shapes world,
    // odd widths, a single column, N above one parameter-gradient chunk, no affine.
    if (full) {
        check_layernorm(2 * 4096, 320, 1);
        check_layernorm(2 * 77, 768, 1);
        check_layernorm(8 * 256, 64, 1);
        check_layernorm(33, 2049, 1);
        check_layernorm(3, 1, 1);
        check_layernorm(1, 1280, 1);
        check_layernorm(600, 4, 1);
        check_layernorm(300, 64, 0);
    }
    check_layernorm(5, 7, 1);
    check_layernorm(40, 64, 1);

    const size_t sizes_full[] = {(size_t)2 * 320 * 64 * 64, 1001, 3, 1};
    const size_t sizes_quick[] = {4099, 5};
    const size_t *sizes = full ? sizes_full : sizes_quick;
    const int nsizes = full ? 4 : 2;
    for (int i = 0; i < nsizes; i++)
        for (int k = -1; k <= GELU_QUICK; k++) check_pointwise(sizes[i], k);
    if (full) {
        check_geglu(2 * 4096, 1280);
        check_geglu(8 * 256, 256);
        check_geglu(7, 5);
        check_geglu(1, 1);
    }
    check_geglu(3, 6);

    // Softmax: warp rows (M <= 1024) and block rows (M > 1024).
    if (full) {
        check_softmax(2048, 4);
        check_softmax(1000, 10);
        check_softmax(2 * 77, 77);
        check_softmax(64, 4096);
        check_softmax(5, 2000);
        check_softmax(3, 1);
    }
    check_softmax(7, 33);
    check_softmax(2, 1025);

    if (full) {
        check_upsample(2, 1280, 16, 16);
        check_upsample(8, 64, 16, 16);
        check_upsample(2, 4, 1, 1);
        check_upsample(1, 2, 3, 6);
    }
    check_upsample(1, 3, 5, 7);

    if (full) {
        check_concat(2, 1280, 640, 32 * 32);
        check_concat(8, 64, 32, 16 * 16);
        check_concat(3, 1, 2, 1);
    }
    check_concat(1, 3, 5, 7);

    if (full) {
        check_tokens(2, 320, 64 * 64);
        check_tokens(8, 64, 16 * 16);
        check_tokens(3, 1, 1);
    }
    check_tokens(2, 33, 70);

    if (full) {
        check_plane_bias(2, 320, 64 * 64);
        check_plane_bias(8, 64, 8 * 8);
        check_plane_bias(3, 2, 1);
    }
    check_plane_bias(2, 5, 7);

    if (full) {
        check_add((size_t)2 * 320 * 64 * 64);
        check_add(1001);
        check_add(1);
    }
    check_add(4099);

    if (full) {
        check_mse((size_t)2 * 4 * 64 * 64);
        check_mse((size_t)3 << 20);
        check_mse(1001);
        check_mse(1);
    }
    check_mse(4099);

    if (full) {
        check_adamw(((size_t)1 << 20) + 3, 1e-2);
        check_adamw(1001, 0.1);
        check_adamw(1, 0);
    }
    check_adamw(4099, 1e-2);

    if (full) {
        check_sumsq(((size_t)1 << 20) + 3);
        check_sumsq(1001);
        check_sumsq(1);
        check_axpby(((size_t)1 << 20) + 3);
        check_axpby(1);
    }
    check_sumsq(4099);
    check_axpby(4099);

    // Timestep embedding: SD (320, flipped, shift 0), shapes world (32), diffusers'
    // default shift 1, odd dims (a zero last column), dim 2 and 3 with shift 1 (0/0).
    if (full) {
        check_timestep(2, 320, 1, 0);
        check_timestep(8, 32, 1, 0);
        check_timestep(5, 1280, 0, 1);
        check_timestep(3, 2, 0, 1);
        check_timestep(1, 1, 1, 0);
    }
    check_timestep(3, 7, 0, 1);
    check_timestep(2, 3, 1, 1);
}

int main(void) {
    if (gpu_check_skip()) return TEST_SKIP;
    printf("%s\n", cuda_device_describe());
    const char *s = getenv("SELMA_TEST_SEED");
    if (s && *s) g_seed = strtoull(s, NULL, 10);
    printf("seed %llu\n", (unsigned long long)g_seed);
    g_off = 0;
    run_all(1);
    g_off = 1;  // every device pointer one float past 16-byte alignment
    run_all(0);
    return check_report("test_kernels_gpu");
}
