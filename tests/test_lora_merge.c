// LoRA sets and merges (models/lora_set.h, models/lora_merge.h), on random experts
// (4 experts, 3 modules, ranks 2-4, different alphas), every method against its dense
// formula written out plainly here:
//   - sum / cat: B A == sum_i w_i s_i B_i A_i; cat is sum bit for bit; default weights 1/N;
//   - linear: (sum sqrt(w s) B_i)(sum sqrt(w s) A_i), which is not the sum of deltas;
//   - svd: ||delta - B A||^2 == the sum of the dropped squared singular values (from a
//     Jacobi eigensolver on delta delta^T here), exact at full rank;
//   - ties, dare_linear, dare_ties, magnitude_prune: exact at full rank against the
//     trim / drop / elect / combine formulas, best rank-k below it;
//   - save -> load -> save is bit-identical in the PEFT and kohya forms, and both forms
//     load to the same set; every UNet linear's name survives kohya's '_' joining;
//   - a merged adapter folded into a tiny UNet, or attached with unet_load, gives the
//     outputs of folding each expert with its weight in turn;
//   - malformed files and merges are refused, naming the file and tensor or module.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "models/bundle.h"
#include "models/lora_fold.h"
#include "models/lora_merge.h"
#include "models/lora_set.h"
#include "models/unet.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "runtime/rng.h"

static char tmpdir[64];

#define NE 4
#define NM 3
static const char *const mod_names[NM] = {
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_k",
    "up_blocks.1.attentions.2.proj_out",
};
static const int mod_out[NM] = {6, 4, 5}, mod_in[NM] = {5, 7, 5};
static const int ex_rank[NE] = {2, 3, 4, 2};
static const float ex_alpha[NE] = {1.0f, 3.0f, 8.0f, 2.5f};

// Expert e: every module (module 2 left out of expert 3 when `holes`), A and B ~ N(0, 1).
static void make_experts(lora_set *ex, int same_rank, int holes, uint64_t seed) {
    for (int e = 0; e < NE; e++) {
        lora_set_init(&ex[e]);
        rng r = rng_make(seed, (uint64_t)e);
        for (int m = 0; m < NM; m++) {
            if (holes && e == 3 && m == 2) continue;
            lora_module *mo = lora_set_add(&ex[e], mod_names[m], same_rank ? 3 : ex_rank[e], mod_in[m], mod_out[m],
                                           ex_alpha[e]);
            CHECK(mo);
            for (int i = 0; i < mo->rank * (mo->in + mo->out); i++) mo->A[i] = rng_normal(&r);
        }
        CHECK(lora_set_meta_set(&ex[e], "lora_targets", e % 2 ? "to_q,to_k" : "to_k,proj_out") == 0);
    }
}

static void free_sets(lora_set *s, int n) {
    for (int i = 0; i < n; i++) lora_set_free(&s[i]);
}

// d (out, in) += c * alpha / rank * B A, plainly.
static void add_delta(double *d, const lora_module *m, double c) {
    for (int i = 0; i < m->out; i++)
        for (int j = 0; j < m->in; j++) {
            double s = 0;
            for (int k = 0; k < m->rank; k++) s += (double)m->B[i * m->rank + k] * m->A[k * m->in + j];
            d[i * m->in + j] += c * m->alpha / m->rank * s;
        }
}

// max |merged delta - ref| / max |ref|
static double rel_diff(const lora_module *m, const double *ref) {
    int n = m->out * m->in;
    double *d = calloc((size_t)n, sizeof *d), md = 0, mr = 0;
    add_delta(d, m, 1.0);
    for (int i = 0; i < n; i++) {
        md = fmax(md, fabs(d[i] - ref[i]));
        mr = fmax(mr, fabs(ref[i]));
    }
    free(d);
    return md / (mr > 0 ? mr : 1);
}

// Eigenvalues of the symmetric n x n G (destroyed), descending: cyclic Jacobi.
static void sym_eig(double *G, int n, double *ev) {
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, tot = 0;
        for (int p = 0; p < n; p++)
            for (int q = 0; q < n; q++) *(p == q ? &tot : &off) += G[p * n + q] * G[p * n + q];
        if (off <= 1e-30 * (tot + off)) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                if (G[p * n + q] == 0) continue;
                double th = (G[q * n + q] - G[p * n + p]) / (2 * G[p * n + q]);
                double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1)), c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {
                    double a = G[k * n + p], b = G[k * n + q];
                    G[k * n + p] = c * a - s * b, G[k * n + q] = s * a + c * b;
                }
                for (int k = 0; k < n; k++) {
                    double a = G[p * n + k], b = G[q * n + k];
                    G[p * n + k] = c * a - s * b, G[q * n + k] = s * a + c * b;
                }
            }
    }
    for (int i = 0; i < n; i++) ev[i] = G[i * n + i];
    for (int i = 0; i < n; i++)  // insertion sort, descending
        for (int j = i; j > 0 && ev[j] > ev[j - 1]; j--) {
            double t = ev[j];
            ev[j] = ev[j - 1], ev[j - 1] = t;
        }
}

// Checks that m is the best rank-m->rank approximation of ref (out, in): the squared
// error is the sum of the dropped eigenvalues of ref ref^T (Eckart-Young).
static void check_best_rank(const char *what, const lora_module *m, const double *ref) {
    int out = m->out, in = m->in;
    double *G = calloc((size_t)out * out, sizeof *G), *ev = malloc(sizeof *ev * out);
    double *d = calloc((size_t)out * in, sizeof *d), err2 = 0, tot = 0, dropped = 0;
    for (int i = 0; i < out; i++)
        for (int j = 0; j < out; j++)
            for (int k = 0; k < in; k++) G[i * out + j] += ref[i * in + k] * ref[j * in + k];
    sym_eig(G, out, ev);
    add_delta(d, m, 1.0);
    for (int i = 0; i < out * in; i++) err2 += (d[i] - ref[i]) * (d[i] - ref[i]), tot += ref[i] * ref[i];
    for (int i = m->rank; i < out; i++) dropped += fmax(ev[i], 0);
    EXPECT(fabs(err2 - dropped) <= 2e-6 * tot, "%s %s rank %d: error^2 %.9g, dropped sigma^2 %.9g (total %.6g)", what,
           m->name, m->rank, err2, dropped, tot);
    free(G), free(ev), free(d);
}

static void reference_sum(const lora_set *ex, const double *w, int mi, double *ref) {
    memset(ref, 0, sizeof(double) * mod_out[mi] * mod_in[mi]);
    for (int e = 0; e < NE; e++) {
        const lora_module *m = lora_set_find(&ex[e], mod_names[mi]);
        if (m) add_delta(ref, m, w[e]);
    }
}

static void test_sum_cat(void) {
    lora_set ex[NE], sum, cat, def;
    make_experts(ex, 0, 1, 11);
    const double w[NE] = {0.5, -0.3, 1.2, 0.7}, wn[NE] = {0.25, 0.25, 0.25, 0.25};
    lora_merge_opts o = {.method = LORA_MERGE_SUM};
    EXPECT(lora_merge(ex, NE, w, &o, &sum) == 0, "%s", err_msg());
    o.method = LORA_MERGE_CAT;
    EXPECT(lora_merge(ex, NE, w, &o, &cat) == 0, "%s", err_msg());
    EXPECT(lora_merge(ex, NE, NULL, NULL, &def) == 0, "%s", err_msg());  // SELMA's default
    EXPECT_TRUE(sum.n == NM && cat.n == NM && def.n == NM);
    for (int mi = 0; mi < NM; mi++) {
        double ref[64], refn[64];
        reference_sum(ex, w, mi, ref);
        reference_sum(ex, wn, mi, refn);
        lora_module *s = lora_set_find(&sum, mod_names[mi]), *c = lora_set_find(&cat, mod_names[mi]),
                    *d = lora_set_find(&def, mod_names[mi]);
        int R = mi == 2 ? 2 + 3 + 4 : 2 + 3 + 4 + 2;  // expert 3 lacks module 2
        EXPECT(s->rank == R && s->alpha == (float)R, "%s rank %d alpha %g", s->name, s->rank, (double)s->alpha);
        EXPECT(rel_diff(s, ref) < 1e-6, "sum %s: %g", s->name, rel_diff(s, ref));
        EXPECT(rel_diff(d, refn) < 1e-6, "default weights %s: %g", d->name, rel_diff(d, refn));
        EXPECT_TRUE(c->rank == R && !memcmp(c->A, s->A, sizeof(float) * R * (s->in + s->out)));
    }
    const char *ws = lora_set_meta_get(&def, "lora_merge_weights");
    EXPECT(ws && !strcmp(ws, "0.25,0.25,0.25,0.25"), "default weights '%s', not 1/N", ws ? ws : "(none)");
    const char *tg = lora_set_meta_get(&def, "lora_targets"), *me = lora_set_meta_get(&def, "lora_merge_method");
    EXPECT(tg && !strcmp(tg, "to_k,proj_out,to_q"), "targets '%s'", tg ? tg : "(none)");
    EXPECT_TRUE(me && !strcmp(me, "sum"));
    free_sets(ex, NE), lora_set_free(&sum), lora_set_free(&cat), lora_set_free(&def);
}

static void test_linear(void) {
    lora_set ex[NE], lin;
    make_experts(ex, 1, 0, 12);
    const double w[NE] = {0.5, 0.3, 1.2, 0.7};
    lora_merge_opts o = {.method = LORA_MERGE_LINEAR};
    EXPECT(lora_merge(ex, NE, w, &o, &lin) == 0, "%s", err_msg());
    for (int mi = 0; mi < NM; mi++) {
        int out = mod_out[mi], in = mod_in[mi], r = 3;
        lora_module ref = {.rank = r, .in = in, .out = out, .alpha = (float)r};
        float A[3 * 7] = {0}, B[6 * 3] = {0};
        for (int e = 0; e < NE; e++) {
            const lora_module *m = lora_set_find(&ex[e], mod_names[mi]);
            double c = sqrt(w[e] * m->alpha / m->rank);
            for (int i = 0; i < r * in; i++) A[i] += (float)(c * m->A[i]);
            for (int i = 0; i < out * r; i++) B[i] += (float)(c * m->B[i]);
        }
        ref.A = A, ref.B = B;
        double dref[64] = {0}, dsum[64];
        add_delta(dref, &ref, 1.0);
        const lora_module *m = lora_set_find(&lin, mod_names[mi]);
        EXPECT(m->rank == r && rel_diff(m, dref) < 1e-5, "linear %s: %g", m->name, rel_diff(m, dref));
        reference_sum(ex, w, mi, dsum);
        EXPECT(rel_diff(m, dsum) > 0.1, "linear %s equals the sum of deltas (%g)", m->name, rel_diff(m, dsum));
    }
    lora_set_free(&lin);
    const double neg[NE] = {0.5, -0.3, 1.2, 0.7};
    EXPECT_TRUE(lora_merge(ex, NE, neg, &o, &lin) != 0 && strstr(err_msg(), "expert 1"));
    free_sets(ex, NE);
    make_experts(ex, 0, 0, 12);
    EXPECT_TRUE(lora_merge(ex, NE, w, &o, &lin) != 0 && strstr(err_msg(), mod_names[0]) && lin.n == 0);
    free_sets(ex, NE);
}

static void test_svd(void) {
    lora_set ex[NE], m2, mdef, mfull;
    make_experts(ex, 0, 0, 13);
    const double w[NE] = {0.5, -0.3, 1.2, 0.7};
    lora_merge_opts o = {.method = LORA_MERGE_SVD, .rank = 2};
    EXPECT(lora_merge(ex, NE, w, &o, &m2) == 0, "%s", err_msg());
    o.rank = 0;  // the largest expert rank, 4
    EXPECT(lora_merge(ex, NE, w, &o, &mdef) == 0, "%s", err_msg());
    o.rank = 100;  // cut to min(out, in, sum r): exact
    EXPECT(lora_merge(ex, NE, w, &o, &mfull) == 0, "%s", err_msg());
    for (int mi = 0; mi < NM; mi++) {
        double ref[64];
        reference_sum(ex, w, mi, ref);
        const lora_module *a = lora_set_find(&m2, mod_names[mi]), *b = lora_set_find(&mdef, mod_names[mi]),
                          *c = lora_set_find(&mfull, mod_names[mi]);
        int full = mod_out[mi] < mod_in[mi] ? mod_out[mi] : mod_in[mi];
        EXPECT(a->rank == 2 && b->rank == 4 && c->rank == full && c->alpha == (float)full, "ranks %d %d %d", a->rank,
               b->rank, c->rank);
        check_best_rank("svd", a, ref);
        check_best_rank("svd", b, ref);
        EXPECT(rel_diff(c, ref) < 1e-5, "svd full rank %s: %g", c->name, rel_diff(c, ref));
    }
    free_sets(ex, NE), lora_set_free(&m2), lora_set_free(&mdef), lora_set_free(&mfull);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// The dense formula of a pruning method, for module mi.
static void reference_pruned(const lora_set *ex, const double *w, int mi, const lora_merge_opts *o, double *ref) {
    int n = mod_out[mi] * mod_in[mi];
    double t[NE][64];
    for (int e = 0; e < NE; e++) {
        memset(t[e], 0, sizeof t[e]);
        add_delta(t[e], lora_set_find(&ex[e], mod_names[mi]), 1.0);
        double keep[64];
        memcpy(keep, t[e], sizeof keep);
        for (int j = 0; j < n; j++) {
            if (o->method == LORA_MERGE_TIES || o->method == LORA_MERGE_MAGNITUDE_PRUNE) {
                int larger = 0;  // entries ahead of j in the magnitude order
                for (int l = 0; l < n; l++)
                    larger += fabs(keep[l]) > fabs(keep[j]) || (fabs(keep[l]) == fabs(keep[j]) && l < j);
                if (larger >= (int)(o->density * n)) t[e][j] = 0;
            } else {
                float u = philox_uniform(o->seed, fnv1a(mod_names[mi]) + (uint64_t)e, (uint64_t)j);
                t[e][j] = u < o->density ? keep[j] / o->density : 0;
            }
        }
    }
    int elect = o->method == LORA_MERGE_TIES || o->method == LORA_MERGE_DARE_TIES;
    for (int j = 0; j < n; j++) {
        double total = 0, acc = 0;
        int count = 0;
        for (int e = 0; e < NE; e++)
            total += o->sign == LORA_SIGN_TOTAL ? t[e][j] : (t[e][j] > 0) - (t[e][j] < 0);
        for (int e = 0; e < NE; e++) {
            int agrees = total >= 0 ? t[e][j] > 0 : t[e][j] < 0;
            if (!elect || agrees) acc += w[e] * t[e][j], count++;
        }
        ref[j] = elect ? acc / (count ? count : 1) : acc;
    }
}

static void test_pruning(void) {
    lora_set ex[NE];
    make_experts(ex, 0, 0, 14);
    const double w[NE] = {0.9, 0.4, 1.1, 0.6};
    const lora_merge_opts cases[] = {
        {.method = LORA_MERGE_TIES, .density = 0.5},
        {.method = LORA_MERGE_TIES, .density = 0.3, .sign = LORA_SIGN_FREQUENCY},
        {.method = LORA_MERGE_DARE_LINEAR, .density = 0.6, .seed = 7},
        {.method = LORA_MERGE_DARE_TIES, .density = 0.4, .seed = 9},
        {.method = LORA_MERGE_MAGNITUDE_PRUNE, .density = 0.35},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        lora_merge_opts o = cases[c];
        lora_set full, def;
        o.rank = 1000;
        EXPECT(lora_merge(ex, NE, w, &o, &full) == 0, "%s", err_msg());
        o.rank = 0;
        EXPECT(lora_merge(ex, NE, w, &o, &def) == 0, "%s", err_msg());
        for (int mi = 0; mi < NM; mi++) {
            double ref[64];
            reference_pruned(ex, w, mi, &o, ref);
            const lora_module *f = lora_set_find(&full, mod_names[mi]), *d = lora_set_find(&def, mod_names[mi]);
            EXPECT(rel_diff(f, ref) < 1e-5, "%s case %zu %s: %g", lora_merge_method_name(o.method), c, f->name,
                   rel_diff(f, ref));
            EXPECT_TRUE(d->rank == 4);
            check_best_rank(lora_merge_method_name(o.method), d, ref);
        }
        lora_set_free(&full), lora_set_free(&def);
    }
    // ties averages the agreeing experts, so its default weight is 1; another seed
    // drops other entries.
    lora_set a, b;
    lora_merge_opts o = {.method = LORA_MERGE_TIES};
    EXPECT_TRUE(lora_merge(ex, NE, NULL, &o, &a) == 0);
    const char *ws = lora_set_meta_get(&a, "lora_merge_weights"), *ds = lora_set_meta_get(&a, "lora_merge_density");
    EXPECT(ws && !strcmp(ws, "1,1,1,1") && ds && !strcmp(ds, "0.20000000000000001"), "%s %s", ws, ds);
    lora_set_free(&a);
    o = (lora_merge_opts){.method = LORA_MERGE_DARE_LINEAR, .density = 0.5, .seed = 1};
    EXPECT_TRUE(lora_merge(ex, NE, w, &o, &a) == 0);
    o.seed = 2;
    EXPECT_TRUE(lora_merge(ex, NE, w, &o, &b) == 0);
    EXPECT_TRUE(memcmp(a.mods[0].B, b.mods[0].B, sizeof(float) * a.mods[0].out * a.mods[0].rank) != 0);
    lora_set_free(&a), lora_set_free(&b);
    o.density = 1.5;
    EXPECT_TRUE(lora_merge(ex, NE, w, &o, &a) != 0 && strstr(err_msg(), "density"));
    free_sets(ex, NE);
}

static int files_equal(const char *p, const char *q) {
    char *a, *b;
    size_t na, nb;
    if (file_read_all(p, &a, &na) || file_read_all(q, &b, &nb)) return 0;
    int eq = na == nb && !memcmp(a, b, na);
    free(a), free(b);
    return eq;
}

static int sets_equal(const lora_set *a, const lora_set *b) {
    if (a->n != b->n || a->n_meta != b->n_meta) return 0;
    for (int i = 0; i < a->n; i++) {
        const lora_module *x = &a->mods[i], *y = lora_set_find(b, x->name);
        if (!y || x->rank != y->rank || x->in != y->in || x->out != y->out || x->alpha != y->alpha ||
            memcmp(x->A, y->A, sizeof(float) * x->rank * (x->in + x->out)))
            return 0;
    }
    for (int i = 0; i < a->n_meta; i++) {
        const char *v = lora_set_meta_get(b, a->meta[i].key);
        if (!v || strcmp(v, a->meta[i].value)) return 0;
    }
    return 1;
}

// Same modules, A and alpha / rank * B (to float rounding) and metadata.
static int same_deltas(const lora_set *a, const lora_set *b) {
    if (a->n != b->n || a->n_meta != b->n_meta) return 0;
    for (int i = 0; i < a->n; i++) {
        const lora_module *x = &a->mods[i], *y = lora_set_find(b, x->name);
        if (!y || x->rank != y->rank || x->in != y->in || x->out != y->out ||
            memcmp(x->A, y->A, sizeof(float) * x->rank * x->in))
            return 0;
        for (int k = 0; k < x->out * x->rank; k++) {
            double u = (double)x->B[k] * x->alpha, v = (double)y->B[k] * y->alpha;
            if (fabs(u - v) > 1e-6 * fabs(u)) return 0;
        }
    }
    return 1;
}

static void test_roundtrip(void) {
    lora_set ex[NE], s, back, kback;
    make_experts(ex, 0, 0, 15);
    lora_merge_opts o = {.method = LORA_MERGE_SVD, .rank = 100};  // ranks 5, 4, 5: alphas differ
    EXPECT_TRUE(lora_merge(ex, NE, NULL, &o, &s) == 0);
    char p1[128], p2[128], k1[128], k2[128];
    snprintf(p1, sizeof p1, "%s/peft1.safetensors", tmpdir);
    snprintf(p2, sizeof p2, "%s/peft2.safetensors", tmpdir);
    snprintf(k1, sizeof k1, "%s/kohya1.safetensors", tmpdir);
    snprintf(k2, sizeof k2, "%s/kohya2.safetensors", tmpdir);
    EXPECT(lora_set_save(&s, p1, LORA_FORMAT_PEFT) == 0, "%s", err_msg());
    EXPECT(lora_set_load(&back, p1) == 0, "%s", err_msg());
    EXPECT_TRUE(sets_equal(&s, &back));
    EXPECT_TRUE(lora_set_save(&back, p2, LORA_FORMAT_PEFT) == 0 && files_equal(p1, p2));
    EXPECT(lora_set_save(&s, k1, LORA_FORMAT_KOHYA) == 0, "%s", err_msg());
    EXPECT(lora_set_load(&kback, k1) == 0, "%s", err_msg());
    // The alphas differ, so the kohya form holds one alpha with the scales moved into B
    // (lora_set_save): the same A and deltas, and a second save gives the same file.
    EXPECT_TRUE(same_deltas(&s, &kback));
    EXPECT_TRUE(lora_set_save(&kback, k2, LORA_FORMAT_KOHYA) == 0 && files_equal(k1, k2));
    st_file f;
    EXPECT_TRUE(st_open(k1, &f) == 0);
    EXPECT_TRUE(st_find(&f, "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight") &&
                st_find(&f, "lora_unet_up_blocks_1_attentions_2_proj_out.alpha"));
    st_close(&f);
    EXPECT_TRUE(st_open(p1, &f) == 0);
    EXPECT_TRUE(st_meta_get(&f, "lora_alpha_pattern") && !st_meta_get(&f, "lora_alpha") && !st_meta_get(&f, "lora_rank"));
    st_close(&f);
    lora_set_free(&s), lora_set_free(&back), lora_set_free(&kback);
    // One rank, alphas per module (not the rank): lora_rank plus lora_alpha_pattern.
    for (int m = 0; m < NM; m++) ex[0].mods[m].alpha = 1.5f + 2 * m;
    EXPECT_TRUE(lora_set_save(&ex[0], p1, LORA_FORMAT_PEFT) == 0 && lora_set_load(&back, p1) == 0);
    EXPECT_TRUE(sets_equal(&ex[0], &back) && lora_set_find(&back, mod_names[2])->alpha == 5.5f);
    EXPECT_TRUE(st_open(p1, &f) == 0);
    const char *rk = st_meta_get(&f, "lora_rank");
    EXPECT_TRUE(rk && !strcmp(rk, "2") && st_meta_get(&f, "lora_alpha_pattern"));
    st_close(&f);
    lora_set_free(&back), free_sets(ex, NE);

    // Every linear of the UNet keeps its name through kohya's '_' joining.
    unet_config c = unet_config_tiny();
    lora_config all = {.rank = 1, .alpha = 1};
    snprintf(all.targets, sizeof all.targets,
             "to_q,to_k,to_v,to_out.0,proj_in,proj_out,ff.net.0.proj,ff.net.2,time_emb_proj,linear_1,linear_2");
    unet m;
    EXPECT_TRUE(unet_build(&m, &c, UNET_FROZEN, &all) == 0);
    int checked = 0;
    for (int i = 0; i < m.params.n; i++) {
        const char *pn = m.params.items[i].name, *suf = strstr(pn, ".lora_A.weight");
        if (!suf) continue;
        char mod[LORA_NAME_MAX], joined[LORA_NAME_MAX], back_name[LORA_NAME_MAX];
        snprintf(mod, sizeof mod, "%.*s", (int)(suf - pn), pn);
        snprintf(joined, sizeof joined, "%s", mod);
        for (char *q = joined; *q; q++) *q = *q == '.' ? '_' : *q;
        lora_kohya_decode(joined, back_name, sizeof back_name);
        EXPECT(!strcmp(mod, back_name), "kohya '%s' reads back as '%s'", joined, back_name);
        checked++;
    }
    EXPECT(checked >= 40, "%d linears checked", checked);
    unet_free(&m);
}

static void unet_inputs(float *x, float *t, float *ctx, int n_x, int n_ctx) {
    rng r = rng_make(99, 0);
    for (int i = 0; i < n_x; i++) x[i] = rng_normal(&r);
    for (int i = 0; i < n_ctx; i++) ctx[i] = rng_normal(&r);
    t[0] = 10, t[1] = 700;
}

static double out_diff(const unet *a, const unet *b, int n) {
    double md = 0, mv = 0;
    for (int i = 0; i < n; i++) md = fmax(md, fabs(a->out[i] - b->out[i])), mv = fmax(mv, fabs(b->out[i]));
    return md / (1 + mv);
}

static void test_unet(void) {
    unet_config c = unet_config_tiny();
    const int Bn = 2, T = 3, rk[3] = {2, 3, 4};
    const float al[3] = {2, 6, 3};
    const double w[3] = {0.5, 0.8, -0.4};
    const char *targets = "to_q,to_k,to_v,to_out.0";
    char paths[3][128], merged[128], svdp[128];
    lora_set ex[3];
    for (int e = 0; e < 3; e++) {  // experts as training writes them: unet_save(PARAM_LORA)
        lora_config lc = {.rank = rk[e], .alpha = al[e]};
        snprintf(lc.targets, sizeof lc.targets, "%s", targets);
        unet u;
        EXPECT_TRUE(unet_build(&u, &c, UNET_FROZEN, &lc) == 0);
        unet_init_random(&u, 5);
        rng r = rng_make(60, (uint64_t)e);
        for (int i = 0; i < u.params.n; i++)
            if (u.params.items[i].kind == PARAM_LORA)
                for (int64_t k = 0; k < tensor_numel(&u.params.items[i].t); k++)
                    ((float *)u.params.items[i].t.data)[k] = 0.3f * rng_normal(&r);
        snprintf(paths[e], sizeof paths[e], "%s/expert%d.safetensors", tmpdir, e);
        EXPECT_TRUE(unet_save(&u, paths[e], PARAM_LORA) == 0);
        EXPECT(lora_set_load(&ex[e], paths[e]) == 0, "%s", err_msg());
        unet_free(&u);
    }
    lora_set sum, svd;
    EXPECT_TRUE(lora_merge(ex, 3, w, NULL, &sum) == 0);
    lora_merge_opts so = {.method = LORA_MERGE_SVD, .rank = 64};
    EXPECT_TRUE(lora_merge(ex, 3, w, &so, &svd) == 0);
    snprintf(merged, sizeof merged, "%s/merged.safetensors", tmpdir);
    snprintf(svdp, sizeof svdp, "%s/merged_svd.safetensors", tmpdir);
    EXPECT_TRUE(lora_set_save(&sum, merged, LORA_FORMAT_PEFT) == 0 && lora_set_save(&svd, svdp, LORA_FORMAT_PEFT) == 0);

    unet seq, fold, fsvd, att;
    lora_config R = {.rank = 9, .alpha = 9};
    snprintf(R.targets, sizeof R.targets, "%s", targets);
    EXPECT_TRUE(unet_build(&seq, &c, UNET_FROZEN, NULL) == 0 && unet_build(&fold, &c, UNET_FROZEN, NULL) == 0 &&
                unet_build(&fsvd, &c, UNET_FROZEN, NULL) == 0 && unet_build(&att, &c, UNET_FROZEN, &R) == 0);
    unet *all[4] = {&seq, &fold, &fsvd, &att};
    for (int i = 0; i < 4; i++) unet_init_random(all[i], 5);  // the same base weights by name
    for (int e = 0; e < 3; e++) EXPECT(unet_fold_lora(&seq, paths[e], (float)w[e], NULL) == 0, "%s", err_msg());
    EXPECT(unet_fold_lora(&fold, merged, 1.0f, NULL) == 0, "%s", err_msg());
    EXPECT(unet_fold_lora(&fsvd, svdp, 1.0f, NULL) == 0, "%s", err_msg());  // per-module alphas
    EXPECT(unet_load(&att, merged, PARAM_LORA) == 0, "%s", err_msg());
    int nx = Bn * c.in_channels * c.sample_size * c.sample_size, nctx = Bn * T * c.cross_attention_dim;
    int no = Bn * c.out_channels * c.sample_size * c.sample_size;
    float x[2 * 3 * 64], t[2], ctx[2 * 3 * 8];
    unet_inputs(x, t, ctx, nx, nctx);
    for (int i = 0; i < 4; i++)
        EXPECT_TRUE(unet_alloc_activations(all[i], Bn, T) == 0 && unet_forward(all[i], x, t, ctx, Bn) == 0);
    unet base;
    EXPECT_TRUE(unet_build(&base, &c, UNET_FROZEN, NULL) == 0 && unet_alloc_activations(&base, Bn, T) == 0);
    unet_init_random(&base, 5);
    EXPECT_TRUE(unet_forward(&base, x, t, ctx, Bn) == 0);
    EXPECT(out_diff(&seq, &base, no) > 1e-3, "the experts change nothing (%g)", out_diff(&seq, &base, no));
    EXPECT(out_diff(&fold, &seq, no) < 1e-5, "merged fold vs experts folded in turn: %g", out_diff(&fold, &seq, no));
    EXPECT(out_diff(&fsvd, &seq, no) < 1e-5, "full-rank svd fold: %g", out_diff(&fsvd, &seq, no));
    EXPECT(out_diff(&att, &seq, no) < 1e-5, "merged attached vs folded experts: %g", out_diff(&att, &seq, no));
    printf("unet outputs vs experts folded in turn (max |diff| / (1 + max |out|)): fold %.2e, svd %.2e, attach %.2e\n",
           out_diff(&fold, &seq, no), out_diff(&fsvd, &seq, no), out_diff(&att, &seq, no));
    // Folding honours per-module alphas (lora_alpha_pattern): W' - W == alpha_m / r B A.
    for (int m = 0; m < ex[0].n; m++) ex[0].mods[m].alpha = 1.0f + (float)(m % 3);
    char pat[128];
    snprintf(pat, sizeof pat, "%s/pattern.safetensors", tmpdir);
    EXPECT_TRUE(lora_set_save(&ex[0], pat, LORA_FORMAT_PEFT) == 0);
    unet pf;
    EXPECT_TRUE(unet_build(&pf, &c, UNET_FROZEN, NULL) == 0);
    unet_init_random(&pf, 5);
    EXPECT(unet_fold_lora(&pf, pat, 1.0f, NULL) == 0, "%s", err_msg());
    double worst = 0, big = 0;
    for (int m = 0; m < ex[0].n; m++) {
        const lora_module *mo = &ex[0].mods[m];
        char wn[LORA_NAME_MAX + 8];
        snprintf(wn, sizeof wn, "%s.weight", mo->name);
        const float *w1 = ptab_find(&pf.params, wn)->t.data, *w0 = ptab_find(&base.params, wn)->t.data;
        double d[64] = {0};
        add_delta(d, mo, 1.0);
        for (int i = 0; i < mo->out * mo->in; i++)
            worst = fmax(worst, fabs((double)w1[i] - w0[i] - d[i])), big = fmax(big, fabs(d[i]));
    }
    EXPECT(ex[0].n == 32 && worst < 1e-6 * (1 + big), "per-module alpha fold: max error %g of %g", worst, big);
    unet_free(&pf);
    // An attached adapter takes its scale from the model: a file of another scale is refused.
    unet wrong;
    lora_config R2 = R;
    R2.alpha = 18;
    EXPECT_TRUE(unet_build(&wrong, &c, UNET_FROZEN, &R2) == 0);
    EXPECT_TRUE(unet_load(&wrong, merged, PARAM_LORA) != 0 && strstr(err_msg(), "scale") && strstr(err_msg(), merged));
    unet_free(&wrong), unet_free(&base);
    for (int i = 0; i < 4; i++) unet_free(all[i]);
    lora_set_free(&sum), lora_set_free(&svd), free_sets(ex, 3);
}

// A file of the given tensors (data: zeros, or `fill` everywhere) and metadata.
typedef struct ftensor {
    const char *name;
    int ndim;
    int64_t shape[2];
} ftensor;

static int load_fails(const char *what, const ftensor *ts, int n, const char *meta_key, const char *meta_val,
                      float fill, const char *must_name) {
    static float data[8][64];
    char path[128];
    snprintf(path, sizeof path, "%s/bad_%s.safetensors", tmpdir, what);
    st_writer w;
    st_writer_init(&w);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 64; k++) data[i][k] = fill;
        CHECK(st_writer_add(&w, ts[i].name, ST_F32, ts[i].ndim, ts[i].shape, data[i]) == 0);
    }
    if (meta_key) CHECK(st_writer_set_meta(&w, meta_key, meta_val) == 0);
    CHECK(st_writer_save(&w, path) == 0);
    st_writer_free(&w);
    lora_set s;
    int rc = lora_set_load(&s, path);
    int ok = rc != 0 && strstr(err_msg(), path) && strstr(err_msg(), must_name) && s.n == 0;
    EXPECT(ok, "%s: rc %d, message '%s' should name %s", what, rc, rc ? err_msg() : "", must_name);
    unlink(path);
    return ok;
}

#define PA "unet.mid_block.attentions.0.proj_in.lora_A.weight"
#define PB "unet.mid_block.attentions.0.proj_in.lora_B.weight"
#define KA "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight"
#define KAL "lora_unet_mid_block_attentions_0_proj_in.alpha"

static void test_malformed(void) {
    load_fails("no_b", (ftensor[]){{PA, 2, {2, 4}}}, 1, NULL, NULL, 0, PA);
    load_fails("b_rank", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 3}}}, 2, NULL, NULL, 0, PB);
    load_fails("a_3d", (ftensor[]){{PA, 1, {8}}, {PB, 2, {4, 3}}}, 2, NULL, NULL, 0, PA);
    load_fails("meta_rank", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 2}}}, 2, "lora_rank", "3", 0, PA);
    load_fails("meta_alpha", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 2}}}, 2, "lora_alpha", "-1", 0, "lora_alpha");
    load_fails("pattern", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 2}}}, 2, "lora_alpha_pattern", "{\"mid_block.x\": 2}",
               0, "mid_block.x");
    load_fails("unknown", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 2}}, {"unet.conv_in.weight", 2, {2, 2}}}, 3, NULL,
               NULL, 0, "unet.conv_in.weight");
    load_fails("nan", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 2}}}, 2, NULL, NULL, NAN, PA);
    load_fails("alpha_vec", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 2}}, {KAL, 1, {2}}}, 3, NULL, NULL, 1, KAL);
    load_fails("alpha_neg", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 2}}, {KAL, 0, {0}}}, 3, NULL, NULL, -2, KAL);
    load_fails("both_forms", (ftensor[]){{PA, 2, {2, 4}}, {PB, 2, {4, 2}}, {KA, 2, {2, 4}}}, 3, NULL, NULL, 0, KA);
    load_fails("empty", (ftensor[]){{PA, 2, {2, 4}}}, 0, "lora_rank", "2", 0, "no LoRA tensors");

    // Merges: experts whose module shapes disagree; an empty set list.
    lora_set a, b, out;
    lora_set_init(&a), lora_set_init(&b);
    CHECK(lora_set_add(&a, "mid_block.attentions.0.proj_in", 2, 4, 4, 2) && lora_set_add(&b, "mid_block.attentions.0.proj_in", 2, 5, 4, 2));
    lora_set two[2] = {a, b};
    EXPECT_TRUE(lora_merge(two, 2, NULL, NULL, &out) != 0 && strstr(err_msg(), "mid_block.attentions.0.proj_in") &&
                strstr(err_msg(), "expert 1") && out.n == 0);
    EXPECT_TRUE(lora_merge(two, 0, NULL, NULL, &out) != 0);
    EXPECT_TRUE(lora_set_add(&a, "mid_block.attentions.0.proj_in", 1, 1, 1, 1) == NULL && strstr(err_msg(), "twice"));
    EXPECT_TRUE(lora_set_meta_set(&a, "lora_alpha", "3") != 0);
    lora_set_free(&a), lora_set_free(&b);
}

int main(void) {
    log_set_quiet(1);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_lora_merge.XXXXXX");
    CHECK(mkdtemp(tmpdir));
    test_sum_cat();
    test_linear();
    test_svd();
    test_pruning();
    test_roundtrip();
    test_unet();
    test_malformed();
    dir_remove_tree(tmpdir);
    return check_report("test_lora_merge");
}
