// CPU kernel benchmark: the OpenBLAS sgemm rate on 1024^3 first, then one table row
// per kernel: median time, GFLOP/s, and the ratio to that sgemm rate. Every fast
// kernel is checked against its float64 reference on a smaller shape before anything
// is timed (tolerances from tests/kernel_check.h); a mismatch exits 1.
//
// Threads: OPENBLAS_NUM_THREADS (OpenBLAS's own default when unset).
// Adding an op: write a `void fn(void *ctx)` that runs it once on inputs held in ctx,
// validate it in validate(), and add one bench_row("name shape", flops, fn, &ctx).
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/attention.h"
#include "kernels/conv2d.h"
#include "kernels/linear.h"
#include "tests/kernel_check.h"

typedef void (*bench_fn)(void *ctx);

static double sgemm_gflops;  // the reference rate every row is compared with

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Writing more than the last-level cache (32 MiB here) between repeats, so each
// repeat starts from main memory as a training step's layers do.
static void flush_cache(void) {
    enum { FLUSH_BYTES = 64 << 20 };
    static unsigned char *junk;
    static int fill;
    if (!junk) junk = malloc(FLUSH_BYTES);
    memset(junk, ++fill & 0xff, FLUSH_BYTES);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median seconds of fn(ctx) over repeats (at least 5, about 0.3 s in all, at most 50)
// after one untimed warm-up.
static double time_median(bench_fn fn, void *ctx) {
    enum { MIN_REPS = 5, MAX_REPS = 50 };
    double t0 = now_s();
    fn(ctx);
    double first = now_s() - t0;
    int reps = first > 0 ? (int)(0.3 / first) : MAX_REPS;
    reps = reps < MIN_REPS ? MIN_REPS : reps > MAX_REPS ? MAX_REPS : reps;
    double t[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        flush_cache();
        t0 = now_s();
        fn(ctx);
        t[r] = now_s() - t0;
    }
    qsort(t, reps, sizeof t[0], cmp_double);
    return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

// One table row: `flops` floating-point operations per call of fn(ctx).
static void bench_row(const char *name, double flops, bench_fn fn, void *ctx) {
    double s = time_median(fn, ctx), gflops = flops / s * 1e-9;
    printf("%-44s %9.3f %9.1f %9.2f\n", name, s * 1e3, gflops, gflops / sgemm_gflops);
}

static float *randn_f(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof *x);
    rng_fill_normal(x, n, seed, 0, 0, 0, 1);
    return x;
}

// ---- sgemm: C (n, n) = A @ B

typedef struct { float *a, *b, *c; int n; } sgemm_ctx;

static void run_sgemm(void *p) {
    sgemm_ctx *c = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->n, c->n, c->n,
                1.0f, c->a, c->n, c->b, c->n, 0.0f, c->c, c->n);
}

// ---- linear: out (N, OC) = inp (N, C) @ w^T + b

typedef struct { float *inp, *w, *b, *out, *dout, *dinp, *dw, *db; int N, C, OC; } linear_ctx;

static linear_ctx linear_make(int N, int C, int OC, uint64_t seed) {
    return (linear_ctx){randn_f((size_t)N * C, seed), randn_f((size_t)OC * C, seed + 1),
                        randn_f(OC, seed + 2), zeros_f((size_t)N * OC),
                        randn_f((size_t)N * OC, seed + 3), zeros_f((size_t)N * C),
                        zeros_f((size_t)OC * C), zeros_f(OC), N, C, OC};
}

static void linear_free(linear_ctx *c) {
    free(c->inp); free(c->w); free(c->b); free(c->out); free(c->dout); free(c->dinp);
    free(c->dw); free(c->db);
}

static void run_linear_fwd(void *p) {
    linear_ctx *c = p;
    linear_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
}

static void run_linear_bwd(void *p) {
    linear_ctx *c = p;
    linear_backward(c->dinp, c->dw, c->db, c->dout, c->inp, c->w, c->N, c->C, c->OC);
}

// ---- conv2d

typedef struct { float *inp, *w, *b, *out, *dout, *dinp, *dw, *db, *scratch; conv2d_shape s; } conv_ctx;

static size_t conv_out_size(const conv2d_shape *s) {
    return (size_t)s->B * s->OC * conv2d_out_h(s) * conv2d_out_w(s);
}

static conv_ctx conv_make(conv2d_shape s, uint64_t seed) {
    size_t ni = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.K * s.K, no = conv_out_size(&s);
    conv2d_cpu_direct = 0;  // scratch for either implementation
    size_t ns = conv2d_scratch_floats(&s);
    conv2d_cpu_direct = 1;
    if (conv2d_scratch_floats(&s) > ns) ns = conv2d_scratch_floats(&s);
    return (conv_ctx){randn_f(ni, seed), randn_f(nw, seed + 1), randn_f(s.OC, seed + 2), zeros_f(no),
                      randn_f(no, seed + 3), zeros_f(ni), zeros_f(nw), zeros_f(s.OC), zeros_f(ns), s};
}

static void conv_free(conv_ctx *c) {
    free(c->inp); free(c->w); free(c->b); free(c->out); free(c->dout); free(c->dinp);
    free(c->dw); free(c->db); free(c->scratch);
}

static void run_conv_fwd(void *p) {
    conv_ctx *c = p;
    conv2d_forward(c->out, c->inp, c->w, c->b, &c->s, c->scratch);
}

static void run_conv_bwd(void *p) {
    conv_ctx *c = p;
    conv2d_backward(c->dinp, c->dw, c->db, c->dout, c->inp, c->w, &c->s, c->scratch);
}

// 2 flops per multiply-add of the forward; the backward does it twice (dinp, dw).
static double conv_fwd_flops(const conv2d_shape *s) {
    return 2.0 * conv_out_size(s) * s->C * s->K * s->K;
}

// ---- attention: q (B, N, H*D), k and v (B, M, H*D), scale 1/sqrt(D)

typedef struct { float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv, *scratch; int B, N, M, H, D, causal; } attn_ctx;

static attn_ctx attn_make(int B, int N, int M, int H, int D, int causal, uint64_t seed) {
    size_t nq = (size_t)B * N * H * D, nk = (size_t)B * M * H * D;
    return (attn_ctx){randn_f(nq, seed), randn_f(nk, seed + 1), randn_f(nk, seed + 2), zeros_f(nq),
                      zeros_f((size_t)B * H * N), randn_f(nq, seed + 3), zeros_f(nq), zeros_f(nk),
                      zeros_f(nk), zeros_f(attention_scratch_floats(N, M)), B, N, M, H, D, causal};
}

static void attn_free(attn_ctx *c) {
    free(c->q); free(c->k); free(c->v); free(c->out); free(c->lse); free(c->dout);
    free(c->dq); free(c->dk); free(c->dv); free(c->scratch);
}

static void run_attn_fwd(void *p) {
    attn_ctx *c = p;
    attention_forward(c->out, c->lse, c->scratch, c->q, c->k, c->v, c->B, c->N, c->M, c->H, c->D,
                      0, c->causal);
}

static void run_attn_bwd(void *p) {
    attn_ctx *c = p;
    attention_backward(c->dq, c->dk, c->dv, c->scratch, c->dout, c->q, c->k, c->v, c->out, c->lse,
                       c->B, c->N, c->M, c->H, c->D, 0, c->causal);
}

// Forward: two GEMMs (q k^T, P v) of 2 N M D flops per head; the backward does five
// (the recomputed scores, dv, dP, dq, dk). Causal masking is not discounted.
static double attn_fwd_flops(const attn_ctx *c) { return 4.0 * c->B * c->H * c->N * c->M * c->D; }

// ---- validation: fast vs float64 reference on smaller shapes

static double *to_f64(const float *x, size_t n) {
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static void validate_linear(int N, int C, int OC) {
    linear_ctx c = linear_make(N, C, OC, 11);
    size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    double *inp = to_f64(c.inp, ni), *w = to_f64(c.w, nw), *b = to_f64(c.b, OC), *dout = to_f64(c.dout, no);
    double *out = zeros_d(no), *dinp = zeros_d(ni), *dw = zeros_d(nw), *db = zeros_d(OC);
    linear_forward_ref(out, inp, w, b, N, C, OC);
    linear_backward_ref(dinp, dw, db, dout, inp, w, N, C, OC);
    run_linear_fwd(&c);
    run_linear_bwd(&c);
    EXPECT_CLOSE_ARRAY(c.out, out, no, TOL_F32_REDUCTION, "linear forward");
    EXPECT_CLOSE_ARRAY(c.dinp, dinp, ni, TOL_F32_REDUCTION, "linear dinp");
    EXPECT_CLOSE_ARRAY(c.dw, dw, nw, TOL_F32_REDUCTION, "linear dw");
    EXPECT_CLOSE_ARRAY(c.db, db, OC, TOL_F32_REDUCTION, "linear db");
    free(inp); free(w); free(b); free(dout); free(out); free(dinp); free(dw); free(db);
    linear_free(&c);
}

static void validate_conv(conv2d_shape s) {
    conv_ctx c = conv_make(s, 21);
    size_t ni = (size_t)s.B * s.C * s.H * s.W, nw = (size_t)s.OC * s.C * s.K * s.K, no = conv_out_size(&s);
    double *inp = to_f64(c.inp, ni), *w = to_f64(c.w, nw), *b = to_f64(c.b, s.OC), *dout = to_f64(c.dout, no);
    double *out = zeros_d(no), *dinp = zeros_d(ni), *dw = zeros_d(nw), *db = zeros_d(s.OC);
    conv2d_forward_ref(out, inp, w, b, &s);
    conv2d_backward_ref(dinp, dw, db, dout, inp, w, &s);
    run_conv_fwd(&c);
    run_conv_bwd(&c);
    EXPECT_CLOSE_ARRAY(c.out, out, no, TOL_F32_REDUCTION, "conv2d forward");
    EXPECT_CLOSE_ARRAY(c.dinp, dinp, ni, TOL_F32_REDUCTION, "conv2d dinp");
    EXPECT_CLOSE_ARRAY(c.dw, dw, nw, TOL_F32_REDUCTION, "conv2d dw");
    EXPECT_CLOSE_ARRAY(c.db, db, s.OC, TOL_F32_REDUCTION, "conv2d db");
    free(inp); free(w); free(b); free(dout); free(out); free(dinp); free(dw); free(db);
    conv_free(&c);
}

static void validate_attention(int B, int N, int M, int H, int D, int causal) {
    attn_ctx c = attn_make(B, N, M, H, D, causal, 31);
    size_t nq = (size_t)B * N * H * D, nk = (size_t)B * M * H * D, nl = (size_t)B * H * N;
    double *q = to_f64(c.q, nq), *k = to_f64(c.k, nk), *v = to_f64(c.v, nk), *dout = to_f64(c.dout, nq);
    double *out = zeros_d(nq), *lse = zeros_d(nl), *dq = zeros_d(nq), *dk = zeros_d(nk), *dv = zeros_d(nk);
    attention_forward_ref(out, lse, q, k, v, B, N, M, H, D, 0, causal);
    attention_backward_ref(dq, dk, dv, dout, q, k, v, lse, B, N, M, H, D, 0, causal);
    run_attn_fwd(&c);
    run_attn_bwd(&c);
    EXPECT_CLOSE_ARRAY(c.out, out, nq, TOL_F32_REDUCTION, "attention forward");
    EXPECT_CLOSE_ARRAY(c.dq, dq, nq, TOL_F32_REDUCTION, "attention dq");
    EXPECT_CLOSE_ARRAY(c.dk, dk, nk, TOL_F32_REDUCTION, "attention dk");
    EXPECT_CLOSE_ARRAY(c.dv, dv, nk, TOL_F32_REDUCTION, "attention dv");
    free(q); free(k); free(v); free(dout); free(out); free(lse); free(dq); free(dk); free(dv);
    attn_free(&c);
}

static int validate(void) {
    validate_attention(2, 150, 150, 2, 40, 0);
    validate_attention(1, 150, 150, 2, 8, 1);
    validate_attention(2, 37, 77, 2, 40, 0);
    validate_linear(97, 64, 256);
    validate_conv((conv2d_shape){2, 16, 11, 9, 24, 3, 1, 1});  // direct
    conv2d_cpu_direct = 0;
    validate_conv((conv2d_shape){2, 16, 11, 9, 24, 3, 1, 1});  // im2col
    conv2d_cpu_direct = 1;
    validate_conv((conv2d_shape){2, 16, 11, 9, 24, 3, 2, 1});
    validate_conv((conv2d_shape){2, 16, 11, 9, 24, 1, 1, 0});
    return check_report("bench_cpu validation");
}

int main(void) {
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    printf("%s\nthreads: %d (OPENBLAS_NUM_THREADS=%s)\n", openblas_get_config(),
           openblas_get_num_threads(), env ? env : "unset");
    if (validate()) return 1;

    sgemm_ctx g = {randn_f(1024 * 1024, 1), randn_f(1024 * 1024, 2), zeros_f(1024 * 1024), 1024};
    sgemm_gflops = 2.0 * 1024 * 1024 * 1024 / time_median(run_sgemm, &g) * 1e-9;
    free(g.a); free(g.b); free(g.c);
    printf("sgemm 1024^3: %.1f GFLOP/s (median)\n\n", sgemm_gflops);
    printf("%-44s %9s %9s %9s\n", "kernel", "ms", "GFLOP/s", "/sgemm");

    const int tokens = 32 * 16 * 16;  // batch 32 at the UNet's 16x16 level
    static const int linear_oc[] = {64, 256};
    for (int i = 0; i < 2; i++) {
        linear_ctx c = linear_make(tokens, 64, linear_oc[i], 100);
        double flops = 2.0 * tokens * 64 * linear_oc[i];
        char name[64];
        snprintf(name, sizeof name, "linear fwd  N=%d 64->%d", tokens, linear_oc[i]);
        bench_row(name, flops, run_linear_fwd, &c);
        snprintf(name, sizeof name, "linear bwd  N=%d 64->%d", tokens, linear_oc[i]);
        bench_row(name, 2 * flops, run_linear_bwd, &c);
        linear_free(&c);
    }

    // The shapes UNet's 3x3 convolutions (32x32 with 32 and 96 -> 32 channels, 8x8 with
    // 64) through the direct kernel and through im2col + sgemm (conv2d_cpu_direct).
    static const struct { const char *what; conv2d_shape s; } convs[] = {
        {"conv2d 3x3 B=32 32->32 32x32", {32, 32, 32, 32, 32, 3, 1, 1}},
        {"conv2d 3x3 B=32 96->32 32x32", {32, 96, 32, 32, 32, 3, 1, 1}},
        {"conv2d 3x3 B=32 64->64 32x32", {32, 64, 32, 32, 64, 3, 1, 1}},
        {"conv2d 3x3 B=32 64->64 8x8", {32, 64, 8, 8, 64, 3, 1, 1}},
        {"conv2d 3x3 s2 B=32 64->64 16x16", {32, 64, 16, 16, 64, 3, 2, 1}},
        {"conv2d 1x1 B=32 64->64 32x32", {32, 64, 32, 32, 64, 1, 1, 0}},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        conv_ctx c = conv_make(convs[i].s, 200);
        const int has_direct = c.s.K == 3 && c.s.stride == 1 && c.s.pad == 1;
        for (int direct = has_direct; direct >= 0; direct--) {
            conv2d_cpu_direct = direct;
            const char *impl = !has_direct ? "" : direct ? " direct" : " im2col";
            char name[64];
            snprintf(name, sizeof name, "%s%s fwd", convs[i].what, impl);
            bench_row(name, conv_fwd_flops(&c.s), run_conv_fwd, &c);
            snprintf(name, sizeof name, "%s%s bwd", convs[i].what, impl);
            bench_row(name, 2 * conv_fwd_flops(&c.s), run_conv_bwd, &c);
        }
        conv2d_cpu_direct = 1;
        conv_free(&c);
    }

    // SD 1.x attention at the 32x32 latent level: 8 heads of 40, self and cross to
    // 77 text tokens; CLIP's causal text self-attention (12 heads of 64).
    static const struct { const char *what; int B, N, M, H, D, causal; } attns[] = {
        {"attention self B=2 N=M=1024 H=8 D=40", 2, 1024, 1024, 8, 40, 0},
        {"attention cross B=2 N=1024 M=77 H=8 D=40", 2, 1024, 77, 8, 40, 0},
        {"attention causal B=8 N=M=77 H=12 D=64", 8, 77, 77, 12, 64, 1},
    };
    for (size_t i = 0; i < sizeof attns / sizeof attns[0]; i++) {
        attn_ctx c = attn_make(attns[i].B, attns[i].N, attns[i].M, attns[i].H, attns[i].D,
                               attns[i].causal, 300);
        char name[64];
        snprintf(name, sizeof name, "%s fwd", attns[i].what);
        bench_row(name, attn_fwd_flops(&c), run_attn_fwd, &c);
        snprintf(name, sizeof name, "%s bwd", attns[i].what);
        bench_row(name, 2.5 * attn_fwd_flops(&c), run_attn_bwd, &c);
        attn_free(&c);
    }
    return 0;
}
