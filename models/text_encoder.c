#include "models/text_encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/add.h"
#include "kernels/attention.h"
#include "kernels/layernorm.h"
#include "kernels/linear.h"
#include "runtime/error.h"
#include "runtime/rng.h"
#include "runtime/safetensors.h"

void text_encoder_config_shapes(text_encoder_config *c, int vocab_size) {
    *c = (text_encoder_config){.vocab_size = vocab_size, .max_tokens = 16, .width = 128,
                               .layers = 2, .heads = 4, .mlp_width = 512, .act = GELU_QUICK,
                               .ln_eps = 1e-5f, .clip_skip = 0};
}

int text_encoder_config_check(const text_encoder_config *c) {
    if (c->vocab_size < 1) return err_set("text encoder: vocab_size %d < 1", c->vocab_size);
    if (c->max_tokens < 1) return err_set("text encoder: max_tokens %d < 1", c->max_tokens);
    if (c->width < 1 || c->heads < 1 || c->width % c->heads)
        return err_set("text encoder: width %d is not a positive multiple of heads %d", c->width, c->heads);
    if (c->layers < 1) return err_set("text encoder: layers %d < 1", c->layers);
    if (c->mlp_width < 1) return err_set("text encoder: mlp_width %d < 1", c->mlp_width);
    if (c->act != GELU_QUICK && c->act != GELU_ERF)
        return err_set("text encoder: activation %d is neither quick_gelu nor gelu", (int)c->act);
    if (!(c->ln_eps > 0)) return err_set("text encoder: ln_eps %g", (double)c->ln_eps);
    if (c->clip_skip < 0 || c->clip_skip >= c->layers)
        return err_set("text encoder: clip_skip %d outside 0..%d", c->clip_skip, c->layers - 1);
    return 0;
}

// Parameters in one place: the arena layout, the names and the init all walk this.
enum { P_TOK, P_POS, P_LN1_W, P_LN1_B, P_Q_W, P_Q_B, P_K_W, P_K_B, P_V_W, P_V_B, P_O_W, P_O_B,
       P_LN2_W, P_LN2_B, P_FC1_W, P_FC1_B, P_FC2_W, P_FC2_B, P_LNF_W, P_LNF_B, P_KINDS };

static const char *const param_names[P_KINDS] = {
    "text_model.embeddings.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight",
    "layer_norm1.weight", "layer_norm1.bias",
    "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.out_proj.weight", "self_attn.out_proj.bias",
    "layer_norm2.weight", "layer_norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
    "text_model.final_layer_norm.weight", "text_model.final_layer_norm.bias",
};

static int per_layer(int k) { return k >= P_LN1_W && k <= P_FC2_B; }

static float **param_slot(text_encoder_params *p, int k) {
    float **slots[P_KINDS] = {&p->token_embedding, &p->position_embedding, &p->ln1_w, &p->ln1_b,
                              &p->q_w, &p->q_b, &p->k_w, &p->k_b, &p->v_w, &p->v_b, &p->o_w,
                              &p->o_b, &p->ln2_w, &p->ln2_b, &p->fc1_w, &p->fc1_b, &p->fc2_w,
                              &p->fc2_b, &p->lnf_w, &p->lnf_b};
    return slots[k];
}

// Shape of one tensor (one layer's, for per-layer kinds); returns ndim.
static int param_shape(const text_encoder_config *c, int k, int64_t *shape) {
    const int64_t C = c->width, F = c->mlp_width;
    switch (k) {
    case P_TOK: shape[0] = c->vocab_size; shape[1] = C; return 2;
    case P_POS: shape[0] = c->max_tokens; shape[1] = C; return 2;
    case P_Q_W: case P_K_W: case P_V_W: case P_O_W: shape[0] = C; shape[1] = C; return 2;
    case P_FC1_W: shape[0] = F; shape[1] = C; return 2;
    case P_FC2_W: shape[0] = C; shape[1] = F; return 2;
    case P_FC1_B: shape[0] = F; return 1;
    default: shape[0] = C; return 1;
    }
}

static size_t param_numel(const text_encoder_config *c, int k) {
    int64_t s[2];
    return param_shape(c, k, s) == 2 ? (size_t)(s[0] * s[1]) : (size_t)s[0];
}

static void layout_params(text_encoder_params *p, arena *a, const text_encoder_config *c) {
    for (int k = 0; k < P_KINDS; k++)
        *param_slot(p, k) = arena_take(a, param_numel(c, k) * (per_layer(k) ? c->layers : 1) * sizeof(float));
}

int text_encoder_create(text_encoder *m, const text_encoder_config *cfg) {
    memset(m, 0, sizeof *m);
    if (text_encoder_config_check(cfg)) return -1;
    m->cfg = *cfg;
    m->params_arena = arena_plan("te.params", DEVICE_CPU);
    layout_params(&m->params, &m->params_arena, cfg);
    if (arena_commit(&m->params_arena)) return -1;
    layout_params(&m->params, &m->params_arena, cfg);
    for (int k = 0; k < P_KINDS; k++) m->n_params += param_numel(cfg, k) * (per_layer(k) ? cfg->layers : 1);
    return 0;
}

int text_encoder_alloc_grads(text_encoder *m) {
    if (m->grads_arena.base) return 0;
    m->grads_arena = arena_plan("te.grads", DEVICE_CPU);
    layout_params(&m->grads, &m->grads_arena, &m->cfg);
    if (arena_commit(&m->grads_arena)) return -1;
    layout_params(&m->grads, &m->grads_arena, &m->cfg);
    return 0;
}

void text_encoder_zero_grads(text_encoder *m) {
    if (m->grads_arena.base) memset(m->grads_arena.base, 0, m->grads_arena.size);
}

int text_encoder_tensors(const text_encoder *m, text_encoder_tensor *out) {
    const text_encoder_config *c = &m->cfg;
    int n = 0;
    // State-dict order: embeddings, layers, final norm.
    for (int pass = 0; pass < 3; pass++) {
        int layers = pass == 1 ? c->layers : 1;
        for (int l = 0; l < layers; l++)
            for (int k = 0; k < P_KINDS; k++) {
                int want = pass == 0 ? (k == P_TOK || k == P_POS) : pass == 1 ? per_layer(k) : k >= P_LNF_W;
                if (!want) continue;
                if (out) {
                    text_encoder_tensor *t = &out[n];
                    if (pass == 1)
                        snprintf(t->name, sizeof t->name, "text_model.encoder.layers.%d.%s", l, param_names[k]);
                    else
                        snprintf(t->name, sizeof t->name, "%s", param_names[k]);
                    t->ndim = param_shape(c, k, t->shape);
                    size_t off = (size_t)l * param_numel(c, k);
                    t->param = *param_slot((text_encoder_params *)&m->params, k) + off;
                    t->grad = m->grads_arena.base ? *param_slot((text_encoder_params *)&m->grads, k) + off : NULL;
                }
                n++;
            }
    }
    return n;
}

void text_encoder_init_random(text_encoder *m, uint64_t seed) {
    const text_encoder_config *c = &m->cfg;
    const double C = c->width, L = c->layers;
    const double in_std = pow(C, -0.5) * pow(2 * L, -0.5), out_std = pow(C, -0.5), fc_std = pow(2 * C, -0.5);
    for (int k = 0; k < P_KINDS; k++) {
        float *p = *param_slot(&m->params, k);
        size_t n = param_numel(c, k) * (per_layer(k) ? c->layers : 1);
        double std = 0;
        switch (k) {
        case P_TOK: case P_POS: std = 0.02; break;
        case P_Q_W: case P_K_W: case P_V_W: case P_FC2_W: std = in_std; break;
        case P_O_W: std = out_std; break;
        case P_FC1_W: std = fc_std; break;
        default: break;
        }
        if (std > 0) rng_fill_normal(p, n, seed, (uint64_t)k, 0, 0, (float)std);
        else for (size_t i = 0; i < n; i++) p[i] = (k == P_LN1_W || k == P_LN2_W || k == P_LNF_W);
    }
}

static void layout_acts(text_encoder_acts *a, arena *ar, const text_encoder_config *c, int max_B,
                        int training) {
    const size_t L = c->layers, N = (size_t)max_B * c->max_tokens, C = c->width, F = c->mlp_width;
#define TAKE(field, count) a->field = arena_take(ar, (count) * sizeof(float))
    a->ids = arena_take(ar, N * sizeof(int));
    TAKE(resid, (L + 1) * N * C);
    TAKE(ln1, L * N * C); TAKE(ln1_mean, L * N); TAKE(ln1_rstd, L * N);
    TAKE(q, L * N * C); TAKE(k, L * N * C); TAKE(v, L * N * C); TAKE(att, L * N * C);
    TAKE(lse, L * (size_t)max_B * c->heads * c->max_tokens);
    TAKE(resid_mid, L * N * C);
    TAKE(ln2, L * N * C); TAKE(ln2_mean, L * N); TAKE(ln2_rstd, L * N);
    TAKE(fc1, L * N * F); TAKE(act, L * N * F);
    TAKE(out, N * C); TAKE(lnf_mean, N); TAKE(lnf_rstd, N);
    TAKE(scratch, attention_scratch_floats(c->max_tokens, c->max_tokens));
    if (training) {
        TAKE(dresid, N * C); TAKE(dbuf, N * C); TAKE(dtmp, N * C);
        TAKE(dq, N * C); TAKE(dk, N * C); TAKE(dv, N * C); TAKE(dfc, N * F);
    }
#undef TAKE
}

int text_encoder_alloc_acts(text_encoder *m, int max_B, int training) {
    if (max_B < 1) return err_set("text encoder: batch %d < 1", max_B);
    arena_free(&m->acts_arena);
    m->acts_arena = arena_plan("te.acts", DEVICE_CPU);
    layout_acts(&m->acts, &m->acts_arena, &m->cfg, max_B, training);
    if (arena_commit(&m->acts_arena)) return -1;
    layout_acts(&m->acts, &m->acts_arena, &m->cfg, max_B, training);
    m->max_B = max_B;
    m->training = training;
    m->B = 0;
    return 0;
}

void text_encoder_free(text_encoder *m) {
    arena_free(&m->params_arena);
    arena_free(&m->grads_arena);
    arena_free(&m->acts_arena);
    memset(m, 0, sizeof *m);
}

int text_encoder_forward(text_encoder *m, const int *ids, int B) {
    const text_encoder_config *c = &m->cfg;
    if (B < 1 || B > m->max_B)
        return err_set("text encoder: batch %d outside 1..%d (alloc_acts)", B, m->max_B);
    const int T = c->max_tokens, C = c->width, F = c->mlp_width, H = c->heads;
    const int N = B * T, Lrun = c->layers - c->clip_skip;
    const size_t sN = (size_t)m->max_B * T;  // slab stride in rows
    text_encoder_params *p = &m->params;
    text_encoder_acts *a = &m->acts;
    for (int i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return err_set("text encoder: token id %d at %d outside 0..%d", ids[i], i, c->vocab_size - 1);
    memcpy(a->ids, ids, (size_t)N * sizeof *ids);
    m->B = B;

    for (int i = 0; i < N; i++) {
        const float *te = p->token_embedding + (size_t)ids[i] * C, *pe = p->position_embedding + (size_t)(i % T) * C;
        add_forward(a->resid + (size_t)i * C, te, pe, (size_t)C);
    }
    for (int l = 0; l < Lrun; l++) {
        const size_t oc = (size_t)l * C, occ = oc * C, of = (size_t)l * F, ofc = of * C;
        const size_t xNC = (size_t)l * sN * C, xN = (size_t)l * sN, xNF = (size_t)l * sN * F;
        float *x = a->resid + xNC, *xo = a->resid + xNC + sN * C;
        float *ln1 = a->ln1 + xNC, *q = a->q + xNC, *k = a->k + xNC, *v = a->v + xNC, *att = a->att + xNC;
        float *mid = a->resid_mid + xNC, *ln2 = a->ln2 + xNC, *fc1 = a->fc1 + xNF, *act = a->act + xNF;
        layernorm_forward(ln1, a->ln1_mean + xN, a->ln1_rstd + xN, x, p->ln1_w + oc, p->ln1_b + oc, N, C, c->ln_eps);
        linear_forward(q, ln1, p->q_w + occ, p->q_b + oc, N, C, C);
        linear_forward(k, ln1, p->k_w + occ, p->k_b + oc, N, C, C);
        linear_forward(v, ln1, p->v_w + occ, p->v_b + oc, N, C, C);
        attention_forward(att, a->lse + (size_t)l * m->max_B * H * T, a->scratch, q, k, v, B, T, T, H,
                          C / H, 0, 1);
        linear_forward(mid, att, p->o_w + occ, p->o_b + oc, N, C, C);
        add_forward(mid, mid, x, (size_t)N * C);
        layernorm_forward(ln2, a->ln2_mean + xN, a->ln2_rstd + xN, mid, p->ln2_w + oc, p->ln2_b + oc, N, C, c->ln_eps);
        linear_forward(fc1, ln2, p->fc1_w + ofc, p->fc1_b + of, N, C, F);
        gelu_forward(act, fc1, (size_t)N * F, c->act);
        linear_forward(xo, act, p->fc2_w + ofc, p->fc2_b + oc, N, F, C);
        add_forward(xo, xo, mid, (size_t)N * C);
    }
    layernorm_forward(a->out, a->lnf_mean, a->lnf_rstd, a->resid + (size_t)Lrun * sN * C, p->lnf_w,
                      p->lnf_b, N, C, c->ln_eps);
    return 0;
}

int text_encoder_backward(text_encoder *m, const float *dout) {
    const text_encoder_config *c = &m->cfg;
    if (!m->training || !m->grads_arena.base)
        return err_set("text encoder: backward needs alloc_acts(training=1) and alloc_grads");
    if (m->B < 1) return err_set("text encoder: backward before a forward");
    const int B = m->B, T = c->max_tokens, C = c->width, F = c->mlp_width, H = c->heads;
    const int N = B * T, Lrun = c->layers - c->clip_skip;
    const size_t sN = (size_t)m->max_B * T, NC = (size_t)N * C;
    text_encoder_params *p = &m->params, *g = &m->grads;
    text_encoder_acts *a = &m->acts;

    layernorm_backward(a->dresid, g->lnf_w, g->lnf_b, dout, a->resid + (size_t)Lrun * sN * C, p->lnf_w,
                       a->lnf_mean, a->lnf_rstd, N, C);
    for (int l = Lrun - 1; l >= 0; l--) {
        const size_t oc = (size_t)l * C, occ = oc * C, of = (size_t)l * F, ofc = of * C;
        const size_t xNC = (size_t)l * sN * C, xN = (size_t)l * sN, xNF = (size_t)l * sN * F;
        float *x = a->resid + xNC;
        float *ln1 = a->ln1 + xNC, *q = a->q + xNC, *k = a->k + xNC, *v = a->v + xNC, *att = a->att + xNC;
        float *mid = a->resid_mid + xNC, *ln2 = a->ln2 + xNC, *fc1 = a->fc1 + xNF, *act = a->act + xNF;
        // x_out = mid + fc2(act(fc1(ln2(mid)))): dresid holds d x_out, becomes d mid.
        linear_backward(a->dfc, g->fc2_w + ofc, g->fc2_b + oc, a->dresid, act, p->fc2_w + ofc, N, F, C);
        gelu_backward(a->dfc, a->dfc, fc1, (size_t)N * F, c->act);
        linear_backward(a->dbuf, g->fc1_w + ofc, g->fc1_b + of, a->dfc, ln2, p->fc1_w + ofc, N, C, F);
        layernorm_backward(a->dtmp, g->ln2_w + oc, g->ln2_b + oc, a->dbuf, mid, p->ln2_w + oc,
                           a->ln2_mean + xN, a->ln2_rstd + xN, N, C);
        add_forward(a->dresid, a->dresid, a->dtmp, NC);
        // mid = x + out_proj(attention(q, k, v of ln1(x))): dresid becomes d x.
        linear_backward(a->dbuf, g->o_w + occ, g->o_b + oc, a->dresid, att, p->o_w + occ, N, C, C);
        attention_backward(a->dq, a->dk, a->dv, a->scratch, a->dbuf, q, k, v, att,
                           a->lse + (size_t)l * m->max_B * H * T, B, T, T, H, C / H, 0, 1);
        linear_backward(a->dbuf, g->q_w + occ, g->q_b + oc, a->dq, ln1, p->q_w + occ, N, C, C);
        linear_backward(a->dtmp, g->k_w + occ, g->k_b + oc, a->dk, ln1, p->k_w + occ, N, C, C);
        add_forward(a->dbuf, a->dbuf, a->dtmp, NC);
        linear_backward(a->dtmp, g->v_w + occ, g->v_b + oc, a->dv, ln1, p->v_w + occ, N, C, C);
        add_forward(a->dbuf, a->dbuf, a->dtmp, NC);
        layernorm_backward(a->dtmp, g->ln1_w + oc, g->ln1_b + oc, a->dbuf, x, p->ln1_w + oc,
                           a->ln1_mean + xN, a->ln1_rstd + xN, N, C);
        add_forward(a->dresid, a->dresid, a->dtmp, NC);
    }
    for (int i = 0; i < N; i++) {
        const float *d = a->dresid + (size_t)i * C;
        float *gt = g->token_embedding + (size_t)a->ids[i] * C, *gp = g->position_embedding + (size_t)(i % T) * C;
        for (int j = 0; j < C; j++) {
            gt[j] += d[j];
            gp[j] += d[j];
        }
    }
    return 0;
}

static const char *act_name(gelu_kind k) { return k == GELU_QUICK ? "quick_gelu" : "gelu"; }

int text_encoder_save(const text_encoder *m, const char *path) {
    int n = text_encoder_tensors(m, NULL);
    text_encoder_tensor *ts = malloc((size_t)n * sizeof *ts);
    if (!ts) return err_set("%s: out of memory", path);
    text_encoder_tensors(m, ts);
    st_writer w;
    st_writer_init(&w);
    char heads[16], eps[32];
    snprintf(heads, sizeof heads, "%d", m->cfg.heads);
    snprintf(eps, sizeof eps, "%.9g", (double)m->cfg.ln_eps);
    int rc = st_writer_set_meta(&w, "format", "pt") || st_writer_set_meta(&w, "heads", heads) ||
             st_writer_set_meta(&w, "hidden_act", act_name(m->cfg.act)) ||
             st_writer_set_meta(&w, "layer_norm_eps", eps);
    for (int i = 0; i < n && !rc; i++)
        rc = st_writer_add(&w, ts[i].name, ST_F32, ts[i].ndim, ts[i].shape, ts[i].param);
    if (!rc) rc = st_writer_save(&w, path);
    st_writer_free(&w);
    free(ts);
    return rc ? -1 : 0;
}

// transformers 5 saves CLIPTextModel without the "text_model." wrapper; every SD
// checkpoint and transformers 4 have it. A file is read in the form its token
// embedding is named in.
#define TEXT_MODEL_PREFIX "text_model."

static const char *file_name(const char *name, int bare) {
    return bare && !strncmp(name, TEXT_MODEL_PREFIX, strlen(TEXT_MODEL_PREFIX))
               ? name + strlen(TEXT_MODEL_PREFIX) : name;
}

static int file_is_bare(const st_file *f) {
    return !st_find(f, param_names[P_TOK]) && st_find(f, file_name(param_names[P_TOK], 1));
}

static int is_ignored(const char *name, int bare) {
    return !strcmp(name, file_name("text_model.embeddings.position_ids", bare));
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    int len = snprintf(buf, n, "(");
    for (int i = 0; i < ndim && len < (int)n; i++)
        len += snprintf(buf + len, n - (size_t)len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < (int)n) snprintf(buf + len, n - (size_t)len, ")");
}

int text_encoder_load(text_encoder *m, const char *path) {
    st_file f;
    if (st_open(path, &f)) return -1;
    int n = text_encoder_tensors(m, NULL), rc = 0;
    text_encoder_tensor *ts = malloc((size_t)n * sizeof *ts);
    if (!ts) {
        st_close(&f);
        return err_set("%s: out of memory", path);
    }
    text_encoder_tensors(m, ts);
    const int bare = file_is_bare(&f);
    int missing = 0;
    const char *first_missing = NULL;
    for (int i = 0; i < n; i++)
        if (!st_find(&f, file_name(ts[i].name, bare)) && missing++ == 0) first_missing = ts[i].name;
    if (missing)
        rc = err_set("%s: missing tensor %s (%d of %d missing)", path, first_missing, missing, n);
    for (size_t i = 0; i < f.n_tensors && !rc; i++) {
        const char *name = f.tensors[i].name;
        int known = is_ignored(name, bare);
        for (int j = 0; j < n && !known; j++) known = !strcmp(name, file_name(ts[j].name, bare));
        if (!known) rc = err_set("%s: unexpected tensor %s (not a parameter of this %d-layer text encoder)",
                                 path, name, m->cfg.layers);
    }
    for (int i = 0; i < n && !rc; i++) {
        const st_tensor *t = st_find(&f, file_name(ts[i].name, bare));
        int same = t->ndim == ts[i].ndim;
        for (int d = 0; d < ts[i].ndim && same; d++) same = t->shape[d] == ts[i].shape[d];
        if (!same) {
            char want[64], got[64];
            shape_str(want, sizeof want, ts[i].ndim, ts[i].shape);
            shape_str(got, sizeof got, t->ndim, t->shape);
            rc = err_set("%s: tensor %s has shape %s, the model wants %s", path, ts[i].name, got, want);
            break;
        }
        size_t numel = ts[i].ndim == 2 ? (size_t)(ts[i].shape[0] * ts[i].shape[1]) : (size_t)ts[i].shape[0];
        rc = st_tensor_to_f32(&f, t, ts[i].param, numel);
    }
    free(ts);
    st_close(&f);
    return rc ? -1 : 0;
}

int text_encoder_config_from_file(const char *path, text_encoder_config *c) {
    st_file f;
    if (st_open(path, &f)) return -1;
    int rc = 0;
    const int bare = file_is_bare(&f);
    const st_tensor *tok = st_find(&f, file_name(param_names[P_TOK], bare));
    const st_tensor *pos = st_find(&f, file_name(param_names[P_POS], bare));
    char name[96];
    snprintf(name, sizeof name, "text_model.encoder.layers.0.%s", param_names[P_FC1_W]);
    const st_tensor *fc1 = st_find(&f, file_name(name, bare));
    if (!tok || !pos || !fc1 || tok->ndim != 2 || pos->ndim != 2 || fc1->ndim != 2) {
        st_close(&f);
        return err_set("%s: not a CLIP text model (no 2-D %s, %s or %s)", path, param_names[P_TOK],
                       param_names[P_POS], name);
    }
    text_encoder_config_shapes(c, (int)tok->shape[0]);
    c->width = (int)tok->shape[1];
    c->max_tokens = (int)pos->shape[0];
    c->mlp_width = (int)fc1->shape[0];
    c->layers = 0;
    for (;; c->layers++) {
        snprintf(name, sizeof name, "text_model.encoder.layers.%d.%s", c->layers, param_names[P_Q_W]);
        if (!st_find(&f, file_name(name, bare))) break;
    }
    const char *heads = st_meta_get(&f, "heads"), *act = st_meta_get(&f, "hidden_act");
    const char *eps = st_meta_get(&f, "layer_norm_eps");
    if (heads) c->heads = atoi(heads);
    else if (c->width % 64 == 0) c->heads = c->width / 64;  // CLIP's head size is 64 in every release
    else rc = err_set("%s: no \"heads\" in the metadata and width %d is not a multiple of CLIP's head size 64",
                      path, c->width);
    if (act && !strcmp(act, "gelu")) c->act = GELU_ERF;
    else if (!rc && act && strcmp(act, "quick_gelu")) rc = err_set("%s: hidden_act '%s' (quick_gelu, gelu)", path, act);
    if (eps) c->ln_eps = strtof(eps, NULL);
    st_close(&f);
    if (!rc && text_encoder_config_check(c)) rc = err_wrap("%s", path);
    return rc;
}
