// The CLIP text encoder:
//   - gradients of every parameter (embeddings included) against central finite
//     differences of a float64 re-implementation of the forward built from the
//     kernels' float64 references (exact to ~1e-9), on tiny configs: quick_gelu with
//     2 layers, erf gelu with 3 layers and clip_skip 1; the float64 forward also
//     checks the float32 one; gradient buffers start non-zero (the += rule);
//   - the causal mask: changing token 3 leaves positions 0..2 bit-identical;
//   - save / config_from_file / load give bit-identical outputs, names without
//     "text_model." (transformers 5) load too, and missing / unexpected / wrong-shape
//     tensors are refused with the tensor's name;
//   - parity with transformers' CLIPTextModel (tests/fixtures/clip_tiny_*, made by
//     tools/make_clip_fixture.py): last hidden state and clip_skip 1.
#include <string.h>
#include <unistd.h>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "models/text_encoder.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"
#include "tests/kernel_check.h"

// ---- float64 reference forward ----

typedef struct ref_model {
    text_encoder_config cfg;
    int n;                 // named tensors
    double **p;            // (n) each tensor's values, in text_encoder_tensors order
    size_t *numel;         // (n)
    const int *ids;
    int B;
    const double *g;       // (B, T, C) the loss weights
    double *out;           // (B, T, C)
} ref_model;

static size_t tnumel(const text_encoder_tensor *t) {
    return t->ndim == 2 ? (size_t)(t->shape[0] * t->shape[1]) : (size_t)t->shape[0];
}

// Tensor indices in text_encoder_tensors order: 0 token, 1 position, then 16 per
// layer (ln1 w b, q w b, k w b, v w b, out w b, ln2 w b, fc1 w b, fc2 w b), then the
// final norm's w b. The test checks this order against the names below.
enum { R_LN1_W, R_LN1_B, R_Q_W, R_Q_B, R_K_W, R_K_B, R_V_W, R_V_B, R_O_W, R_O_B, R_LN2_W,
       R_LN2_B, R_FC1_W, R_FC1_B, R_FC2_W, R_FC2_B, R_PER_LAYER };

static double ref_loss(void *ctx) {
    ref_model *m = ctx;
    const text_encoder_config *c = &m->cfg;
    const int T = c->max_tokens, C = c->width, F = c->mlp_width, H = c->heads, N = m->B * T;
    const size_t NC = (size_t)N * C;
    double *x = zeros_d(NC), *ln = zeros_d(NC), *q = zeros_d(NC), *k = zeros_d(NC), *v = zeros_d(NC);
    double *att = zeros_d(NC), *o = zeros_d(NC), *h = zeros_d((size_t)N * F), *h2 = zeros_d((size_t)N * F);
    double *mean = zeros_d(N), *rstd = zeros_d(N), *lse = zeros_d((size_t)m->B * H * T);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            x[(size_t)i * C + j] = m->p[0][(size_t)m->ids[i] * C + j] + m->p[1][(size_t)(i % T) * C + j];
    for (int l = 0; l < c->layers - c->clip_skip; l++) {
        double **P = m->p + 2 + l * R_PER_LAYER;
        layernorm_forward_ref(ln, mean, rstd, x, P[R_LN1_W], P[R_LN1_B], N, C, c->ln_eps);
        linear_forward_ref(q, ln, P[R_Q_W], P[R_Q_B], N, C, C);
        linear_forward_ref(k, ln, P[R_K_W], P[R_K_B], N, C, C);
        linear_forward_ref(v, ln, P[R_V_W], P[R_V_B], N, C, C);
        attention_forward_ref(att, lse, q, k, v, m->B, T, T, H, C / H, 0, 1);
        linear_forward_ref(o, att, P[R_O_W], P[R_O_B], N, C, C);
        for (size_t i = 0; i < NC; i++) x[i] += o[i];
        layernorm_forward_ref(ln, mean, rstd, x, P[R_LN2_W], P[R_LN2_B], N, C, c->ln_eps);
        linear_forward_ref(h, ln, P[R_FC1_W], P[R_FC1_B], N, C, F);
        gelu_forward_ref(h2, h, (size_t)N * F, c->act);
        linear_forward_ref(o, h2, P[R_FC2_W], P[R_FC2_B], N, F, C);
        for (size_t i = 0; i < NC; i++) x[i] += o[i];
    }
    layernorm_forward_ref(m->out, mean, rstd, x, m->p[m->n - 2], m->p[m->n - 1], N, C, c->ln_eps);
    double loss = dot_d(m->out, m->g, NC);
    free(x); free(ln); free(q); free(k); free(v); free(att); free(o); free(h); free(h2);
    free(mean); free(rstd); free(lse);
    return loss;
}

// Every parameter random (biases and norms included, so that their gradients matter).
static void randomize(text_encoder *m, uint64_t seed) {
    int n = text_encoder_tensors(m, NULL);
    text_encoder_tensor *ts = malloc((size_t)n * sizeof *ts);
    text_encoder_tensors(m, ts);
    for (int i = 0; i < n; i++) {
        int is_norm_w = strstr(ts[i].name, "layer_norm") && strstr(ts[i].name, ".weight");
        rng_fill_normal(ts[i].param, tnumel(&ts[i]), seed, (uint64_t)i, 0, is_norm_w ? 1.0f : 0.0f,
                        is_norm_w ? 0.2f : 0.4f);
    }
    free(ts);
}

static void check_gradients(const text_encoder_config *cfg, int B, uint64_t seed) {
    char what[160];
    text_encoder m;
    EXPECT(text_encoder_create(&m, cfg) == 0, "%s", err_msg());
    EXPECT(text_encoder_alloc_grads(&m) == 0 && text_encoder_alloc_acts(&m, B + 1, 1) == 0, "%s", err_msg());
    randomize(&m, seed);
    const int T = cfg->max_tokens, C = cfg->width, N = B * T;
    int *ids = malloc((size_t)N * sizeof *ids);
    rng r = rng_make(seed, 100);
    for (int i = 0; i < N; i++) ids[i] = (int)rng_below(&r, (uint32_t)cfg->vocab_size - 1);  // the last token unused
    double *g = randn_d((size_t)N * C, seed, 101);
    float *gf = to_f32(g, (size_t)N * C);

    int n = text_encoder_tensors(&m, NULL);
    text_encoder_tensor *ts = malloc((size_t)n * sizeof *ts);
    text_encoder_tensors(&m, ts);
    EXPECT(n == 2 + cfg->layers * R_PER_LAYER + 2, "tensor count %d", n);
    EXPECT(strstr(ts[2 + R_FC2_B].name, "layers.0.mlp.fc2.bias") && strstr(ts[n - 1].name, "final_layer_norm.bias") &&
               strstr(ts[2 + R_LN1_W].name, "layers.0.layer_norm1.weight") &&
               strstr(ts[2 + R_PER_LAYER + R_O_W].name, "layers.1.self_attn.out_proj.weight"),
           "tensor order: %s %s", ts[2 + R_FC2_B].name, ts[n - 1].name);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += tnumel(&ts[i]);
    EXPECT(total == m.n_params, "n_params %zu vs %zu", m.n_params, total);

    // Earlier sums in every gradient: backward must add to them.
    float **acc = malloc((size_t)n * sizeof *acc);
    for (int i = 0; i < n; i++) {
        acc[i] = malloc(tnumel(&ts[i]) * sizeof(float));
        rng_fill_normal(acc[i], tnumel(&ts[i]), seed, 200 + (uint64_t)i, 0, 0, 1);
        memcpy(ts[i].grad, acc[i], tnumel(&ts[i]) * sizeof(float));
    }
    EXPECT(text_encoder_forward(&m, ids, B) == 0, "%s", err_msg());
    EXPECT(text_encoder_backward(&m, gf) == 0, "%s", err_msg());

    ref_model rm = {*cfg, n, malloc((size_t)n * sizeof(double *)), NULL, ids, B, g, zeros_d((size_t)N * C)};
    for (int i = 0; i < n; i++) {
        rm.p[i] = malloc(tnumel(&ts[i]) * sizeof(double));
        for (size_t j = 0; j < tnumel(&ts[i]); j++) rm.p[i][j] = ts[i].param[j];
    }
    ref_loss(&rm);
    snprintf(what, sizeof what, "%s L=%d skip=%d forward", cfg->act == GELU_QUICK ? "quick_gelu" : "gelu",
             cfg->layers, cfg->clip_skip);
    EXPECT_CLOSE_ARRAY(m.acts.out, rm.out, (size_t)N * C, TOL_F32_REDUCTION, what);

    double worst = 0;
    for (int i = 0; i < n; i++) {
        size_t k = tnumel(&ts[i]);
        double *an = malloc(k * sizeof *an);
        for (size_t j = 0; j < k; j++) an[j] = (double)ts[i].grad[j] - acc[i][j];
        // Float64 finite differences of the float64 forward: the reference gradient.
        double *fd = malloc(k * sizeof *fd);
        for (size_t j = 0; j < k; j++) {
            double x0 = rm.p[i][j];
            rm.p[i][j] = x0 + FD_EPS;
            double lp = ref_loss(&rm);
            rm.p[i][j] = x0 - FD_EPS;
            double lm = ref_loss(&rm);
            rm.p[i][j] = x0;
            fd[j] = (lp - lm) / (2 * FD_EPS);
        }
        // The float32 analytic gradient against it, normalized as the kernel tests do:
        // float32 rounding through 2-3 layers stays far below 1e-4.
        float *anf = to_f32(an, k);
        double e = max_rel_err(anf, fd, k);
        worst = e > worst ? e : worst;
        snprintf(what, sizeof what, "%s L=%d skip=%d grad %s", cfg->act == GELU_QUICK ? "quick_gelu" : "gelu",
                 cfg->layers, cfg->clip_skip, ts[i].name);
        EXPECT(e <= TOL_F32_REDUCTION, "%s: max rel err %.3g", what, e);
        // Skipped layers get no gradient; the unused last token neither.
        int skipped = 0;
        for (int l = cfg->layers - cfg->clip_skip; l < cfg->layers; l++) {
            char pre[48];
            snprintf(pre, sizeof pre, "layers.%d.", l);
            skipped |= strstr(ts[i].name, pre) != NULL;
        }
        if (skipped)
            for (size_t j = 0; j < k; j++) EXPECT(an[j] == 0, "%s: skipped layer has a gradient", ts[i].name);
        if (i == 0)
            for (int j = 0; j < C; j++) EXPECT(an[(size_t)(cfg->vocab_size - 1) * C + j] == 0, "unused token grad");
        free(anf); free(an); free(fd);
    }
    printf("%-10s L=%d clip_skip=%d: %d tensors, %zu parameters, gradients vs float64 FD: max rel err %.2g\n",
           cfg->act == GELU_QUICK ? "quick_gelu" : "gelu", cfg->layers, cfg->clip_skip, n, m.n_params, worst);

    // zero_grads clears; a second backward of the same forward doubles nothing else.
    text_encoder_zero_grads(&m);
    int all_zero = 1;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < tnumel(&ts[i]); j++) all_zero &= ts[i].grad[j] == 0;
    EXPECT(all_zero, "zero_grads");

    for (int i = 0; i < n; i++) { free(rm.p[i]); free(acc[i]); }
    free(rm.p); free(rm.out); free(acc); free(ts); free(ids); free(g); free(gf);
    text_encoder_free(&m);
}

static void tiny_config(text_encoder_config *c, gelu_kind act, int layers, int clip_skip) {
    *c = (text_encoder_config){.vocab_size = 11, .max_tokens = 5, .width = 8, .layers = layers,
                               .heads = 2, .mlp_width = 12, .act = act, .ln_eps = 1e-5f,
                               .clip_skip = clip_skip};
}

// ---- causal mask, save/load ----

static void test_causal_and_save(void) {
    text_encoder_config c;
    text_encoder_config_shapes(&c, 40);
    c.max_tokens = 8;
    c.width = 32;
    c.mlp_width = 64;
    text_encoder m;
    EXPECT(text_encoder_create(&m, &c) == 0 && text_encoder_alloc_acts(&m, 2, 0) == 0, "%s", err_msg());
    text_encoder_init_random(&m, 3);
    randomize(&m, 3);
    int ids[16];
    for (int i = 0; i < 16; i++) ids[i] = (i * 7 + 3) % 40;
    const size_t NC = 16 * 32;
    float *a = malloc(NC * sizeof *a), *b = malloc(NC * sizeof *b);
    text_encoder_forward(&m, ids, 2);
    memcpy(a, m.acts.out, NC * sizeof *a);
    ids[8 + 3] = (ids[8 + 3] + 1) % 40;  // sequence 1, position 3
    text_encoder_forward(&m, ids, 2);
    memcpy(b, m.acts.out, NC * sizeof *b);
    EXPECT(!memcmp(a, b, 8 * 32 * sizeof *a), "sequence 0 changed");
    EXPECT(!memcmp(a + 8 * 32, b + 8 * 32, 3 * 32 * sizeof *a), "positions before the change changed");
    for (int t = 3; t < 8; t++) {
        double d = 0;
        for (int j = 0; j < 32; j++) d = fmax(d, fabs(a[(8 + t) * 32 + j] - b[(8 + t) * 32 + j]));
        EXPECT(d > 1e-4, "position %d does not see token 3 (%.3g)", t, d);
    }
    EXPECT(text_encoder_backward(&m, a) == -1, "backward without training set-up");
    ids[0] = 40;
    EXPECT(text_encoder_forward(&m, ids, 2) == -1 && strstr(err_msg(), "token id 40"), "%s", err_msg());
    ids[0] = 0;
    EXPECT(text_encoder_forward(&m, ids, 3) == -1, "batch past max_B");

    // Save, read the config back, load: bit-identical outputs.
    char path[64], path2[64];
    snprintf(path, sizeof path, "/tmp/selma_te_%d.safetensors", (int)getpid());
    snprintf(path2, sizeof path2, "/tmp/selma_te_%d_b.safetensors", (int)getpid());
    text_encoder_forward(&m, ids, 2);
    memcpy(a, m.acts.out, NC * sizeof *a);
    EXPECT(text_encoder_save(&m, path) == 0, "%s", err_msg());
    text_encoder_config c2;
    EXPECT(text_encoder_config_from_file(path, &c2) == 0, "%s", err_msg());
    EXPECT(!memcmp(&c, &c2, sizeof c), "config from file: V %d T %d C %d L %d H %d F %d", c2.vocab_size,
           c2.max_tokens, c2.width, c2.layers, c2.heads, c2.mlp_width);
    text_encoder m2;
    EXPECT(text_encoder_create(&m2, &c2) == 0 && text_encoder_alloc_acts(&m2, 2, 0) == 0, "%s", err_msg());
    EXPECT(text_encoder_load(&m2, path) == 0, "%s", err_msg());
    text_encoder_forward(&m2, ids, 2);
    EXPECT(!memcmp(a, m2.acts.out, NC * sizeof *a), "reloaded model differs");

    // Files with one thing wrong each, made from the model's own tensors.
    int n = text_encoder_tensors(&m, NULL);
    text_encoder_tensor *ts = malloc((size_t)n * sizeof *ts);
    text_encoder_tensors(&m, ts);
    const char *want[] = {NULL, "missing tensor text_model.encoder.layers.1.mlp.fc1.bias",
                          "unexpected tensor text_model.encoder.layers.2.mlp.fc1.bias",
                          "text_model.encoder.layers.1.mlp.fc1.bias has shape (32), the model wants (64)"};
    for (int mode = 0; mode < 4; mode++) {
        st_writer w;
        st_writer_init(&w);
        if (mode == 0) st_writer_set_meta(&w, "heads", "4");
        for (int i = 0; i < n; i++) {
            int target = !strcmp(ts[i].name, "text_model.encoder.layers.1.mlp.fc1.bias");
            const char *name = mode == 0 ? ts[i].name + strlen("text_model.") : ts[i].name;
            if (target && mode == 1) continue;
            int64_t shape[2] = {ts[i].shape[0], ts[i].shape[1]};
            if (target && mode == 3) shape[0] = 32;
            st_writer_add(&w, name, ST_F32, ts[i].ndim, shape, ts[i].param);
            if (target && mode == 2)
                st_writer_add(&w, "text_model.encoder.layers.2.mlp.fc1.bias", ST_F32, 1, shape, ts[i].param);
        }
        EXPECT(st_writer_save(&w, path2) == 0, "%s", err_msg());
        st_writer_free(&w);
        text_encoder_zero_grads(&m2);
        int rc = text_encoder_load(&m2, path2);
        if (mode == 0) {  // transformers 5 names: loads, same outputs
            EXPECT(rc == 0, "bare names: %s", err_msg());
            EXPECT(text_encoder_config_from_file(path2, &c2) == 0 && c2.layers == 2 && c2.width == 32,
                   "bare config: %s", err_msg());
            text_encoder_forward(&m2, ids, 2);
            EXPECT(!memcmp(a, m2.acts.out, NC * sizeof *a), "bare-name file differs");
        } else {
            EXPECT(rc == -1 && strstr(err_msg(), want[mode]), "mode %d: %s", mode, err_msg());
        }
        if (mode == 1)  // no metadata, and width 32 gives no CLIP head count
            EXPECT(text_encoder_config_from_file(path2, &c2) == -1 && strstr(err_msg(), "\"heads\""), "%s",
                   err_msg());
    }
    EXPECT(text_encoder_load(&m2, "/nonexistent/te.safetensors") == -1 && strstr(err_msg(), "/nonexistent"),
           "%s", err_msg());
    unlink(path);
    unlink(path2);
    free(ts); free(a); free(b);
    text_encoder_free(&m);
    text_encoder_free(&m2);

    c.heads = 5;
    EXPECT(text_encoder_create(&m, &c) == -1 && strstr(err_msg(), "heads"), "%s", err_msg());
    c.heads = 4;
    c.clip_skip = 2;
    EXPECT(text_encoder_create(&m, &c) == -1 && strstr(err_msg(), "clip_skip"), "%s", err_msg());
}

// ---- parity with transformers ----

static void check_parity(const char *name, int want_layers, gelu_kind want_act) {
    char wpath[128], iopath[128];
    snprintf(wpath, sizeof wpath, "tests/fixtures/clip_tiny_%s.safetensors", name);
    snprintf(iopath, sizeof iopath, "tests/fixtures/clip_tiny_%s_io.safetensors", name);
    text_encoder_config c;
    if (text_encoder_config_from_file(wpath, &c)) {
        EXPECT(0, "%s", err_msg());
        return;
    }
    EXPECT(c.layers == want_layers && c.heads == 2 && c.width == 16 && c.mlp_width == 40 && c.vocab_size == 13 &&
               c.max_tokens == 7 && c.act == want_act, "%s config", name);
    st_file io;
    if (st_open(iopath, &io)) {
        EXPECT(0, "%s", err_msg());
        return;
    }
    const st_tensor *tid = st_find(&io, "ids"), *tlast = st_find(&io, "last_hidden_state"),
                    *tpen = st_find(&io, "penultimate");
    EXPECT(tid && tlast && tpen && tid->ndim == 2 && tid->shape[1] == c.max_tokens, "%s io tensors", name);
    if (!tid || !tlast || !tpen) { st_close(&io); return; }
    const int B = (int)tid->shape[0], N = B * c.max_tokens;
    const size_t NC = (size_t)N * c.width;
    float *idf = malloc((size_t)N * sizeof *idf), *last = malloc(NC * sizeof *last), *pen = malloc(NC * sizeof *pen);
    int *ids = malloc((size_t)N * sizeof *ids);
    st_tensor_to_f32(&io, tid, idf, (size_t)N);
    st_tensor_to_f32(&io, tlast, last, NC);
    st_tensor_to_f32(&io, tpen, pen, NC);
    for (int i = 0; i < N; i++) ids[i] = (int)idf[i];
    double *lastd = zeros_d(NC), *pend = zeros_d(NC);
    for (size_t i = 0; i < NC; i++) { lastd[i] = last[i]; pend[i] = pen[i]; }
    for (int skip = 0; skip < 2; skip++) {
        c.clip_skip = skip;
        text_encoder m;
        EXPECT(text_encoder_create(&m, &c) == 0 && text_encoder_alloc_acts(&m, B, 0) == 0, "%s", err_msg());
        EXPECT(text_encoder_load(&m, wpath) == 0, "%s: %s", name, err_msg());
        EXPECT(text_encoder_forward(&m, ids, B) == 0, "%s", err_msg());
        char what[96];
        snprintf(what, sizeof what, "%s vs transformers, clip_skip %d", name, skip);
        double e = max_rel_err(m.acts.out, skip ? pend : lastd, NC);
        EXPECT(e <= TOL_F32_REDUCTION, "%s: max rel err %.3g", what, e);
        printf("%s: max |selma - transformers| / max(1, max |ref|) = %.2g\n", what, e);
        text_encoder_free(&m);
    }
    free(idf); free(last); free(pen); free(ids); free(lastd); free(pend);
    st_close(&io);
}

int main(void) {
    log_set_quiet(1);
    text_encoder_config c;
    tiny_config(&c, GELU_QUICK, 2, 0);
    check_gradients(&c, 2, 1);
    tiny_config(&c, GELU_ERF, 3, 1);
    check_gradients(&c, 3, 2);
    test_causal_and_save();
    check_parity("quick", 2, GELU_QUICK);
    check_parity("gelu", 3, GELU_ERF);
    return check_report("test_text_encoder");
}
