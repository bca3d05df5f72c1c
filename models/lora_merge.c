// Merging LoRA experts (see lora_merge.h).
#include "models/lora_merge.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/philox.h"

static const char *const method_names[LORA_MERGE_COUNT] = {
    "sum", "cat", "linear", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune",
};

const char *lora_merge_method_name(lora_merge_method m) {
    return (int)m >= 0 && m < LORA_MERGE_COUNT ? method_names[m] : "?";
}

int lora_merge_method_parse(const char *s, lora_merge_method *m) {
    for (int i = 0; i < LORA_MERGE_COUNT; i++)
        if (!strcmp(s, method_names[i])) {
            *m = (lora_merge_method)i;
            return 0;
        }
    return err_set("unknown merge method '%s' (sum, cat, linear, svd, ties, dare_linear, dare_ties, "
                   "magnitude_prune)", s);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// ---- SVD ----

// One-sided Jacobi (Hestenes) on the p rows of X (p, m), the same rotations applied to
// Vt (p, p), which starts as the identity: X becomes J X and Vt becomes J, J
// orthogonal, and the rows of J X end mutually orthogonal, row j = s_j u_j^T. So the
// input X^T = U S Vt: the rows of Vt are the right singular vectors. Stops after a
// sweep that rotates nothing.
static void jacobi_rows(double *C, int p, int m, double *Vt) {
    double tol = DBL_EPSILON * (m > 8 ? m : 8);  // the rounding level of a length-m dot product
    for (int sweep = 0; sweep < 80; sweep++) {
        int rotated = 0;
        for (int j = 0; j < p - 1; j++)
            for (int k = j + 1; k < p; k++) {
                double *x = C + (size_t)j * m, *y = C + (size_t)k * m;
                double a = 0, b = 0, g = 0;
                for (int i = 0; i < m; i++) a += x[i] * x[i], b += y[i] * y[i], g += x[i] * y[i];
                if (g == 0 || fabs(g) <= tol * sqrt(a * b)) continue;
                rotated = 1;
                double zeta = (b - a) / (2 * g);
                double t = copysign(1.0, zeta) / (fabs(zeta) + hypot(1.0, zeta));
                double c = 1 / sqrt(1 + t * t), s = c * t;
                for (int i = 0; i < m; i++) {
                    double u = x[i], v = y[i];
                    x[i] = c * u - s * v, y[i] = s * u + c * v;
                }
                double *vx = Vt + (size_t)j * p, *vy = Vt + (size_t)k * p;
                for (int i = 0; i < p; i++) {
                    double u = vx[i], v = vy[i];
                    vx[i] = c * u - s * v, vy[i] = s * u + c * v;
                }
            }
        if (!rotated) return;
    }
}

typedef struct sv_order {
    double s;
    int i;
} sv_order;

static int cmp_sv(const void *x, const void *y) {
    const sv_order *a = x, *b = y;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return a->i - b->i;
}

// The largest rank the product B A (B (out, R), A (R, in)) can have.
static int max_rank(int out, int R, int in) {
    int p = R < in ? R : in;
    return p < out ? p : out;
}

// Best rank-k factors of delta = B A, B (out, R) and A (R, in) row-major double:
// Bk (out, k) = U_k S_k, Ak (k, in) = V_k^T, k <= min(R, in). With A^T = Q Ra (QR,
// Q (in, p) orthonormal, p = min(in, R)), delta = (B Ra^T) Q^T, and the SVD of the
// small C = B Ra^T = U S V^T gives delta = U S (Q V)^T.
static void svd_truncate(const double *B, const double *A, int out, int R, int in, int k, float *Bk,
                         float *Ak) {
    int p = R < in ? R : in;
    double *M = malloc(sizeof(double) * (size_t)R * in);  // row l = column l of A^T
    double *Hv = calloc((size_t)p * in, sizeof(double));  // Householder vectors
    double *Qt = calloc((size_t)p * in, sizeof(double));  // row j = column j of Q
    double *Ra = calloc((size_t)p * R, sizeof(double));   // (p, R) upper trapezoidal
    double *Ct = malloc(sizeof(double) * (size_t)p * out);  // C^T (p, out)
    double *Vt = calloc((size_t)p * p, sizeof(double));
    double *Wt = malloc(sizeof(double) * (size_t)p * in);  // (Q V)^T (p, in)
    sv_order *ord = malloc(sizeof *ord * (size_t)p);
    CHECK(M && Hv && Qt && Ra && Ct && Vt && Wt && ord);
    memcpy(M, A, sizeof(double) * (size_t)R * in);
    for (int j = 0; j < p; j++) {
        double *x = M + (size_t)j * in, *v = Hv + (size_t)j * in, nrm = 0;
        for (int i = j; i < in; i++) nrm += x[i] * x[i];
        nrm = sqrt(nrm);
        if (nrm == 0) continue;  // v = 0: H_j is the identity
        double alpha = x[j] > 0 ? -nrm : nrm, vv = 0;
        for (int i = j; i < in; i++) v[i] = x[i];
        v[j] -= alpha;
        for (int i = j; i < in; i++) vv += v[i] * v[i];
        for (int l = j; l < R; l++) {  // H_j applied to the remaining columns of A^T
            double *c = M + (size_t)l * in, d = 0;
            for (int i = j; i < in; i++) d += v[i] * c[i];
            d *= 2 / vv;
            for (int i = j; i < in; i++) c[i] -= d * v[i];
        }
    }
    for (int i = 0; i < p; i++)
        for (int l = i; l < R; l++) Ra[(size_t)i * R + l] = M[(size_t)l * in + i];
    // Q = H_0 ... H_{p-1} [I_p; 0], applied right to left.
    for (int j = 0; j < p; j++) Qt[(size_t)j * in + j] = 1;
    for (int j = p - 1; j >= 0; j--) {
        const double *v = Hv + (size_t)j * in;
        double vv = 0;
        for (int i = j; i < in; i++) vv += v[i] * v[i];
        if (vv == 0) continue;
        for (int c = 0; c < p; c++) {
            double *q = Qt + (size_t)c * in, d = 0;
            for (int i = j; i < in; i++) d += v[i] * q[i];
            d *= 2 / vv;
            for (int i = j; i < in; i++) q[i] -= d * v[i];
        }
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p, out, R, 1.0, Ra, R, B, R, 0.0, Ct, out);
    for (int j = 0; j < p; j++) Vt[(size_t)j * p + j] = 1;
    jacobi_rows(Ct, p, out, Vt);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p, in, p, 1.0, Vt, p, Qt, in, 0.0, Wt, in);
    for (int j = 0; j < p; j++) {
        double s = 0;
        for (int i = 0; i < out; i++) s += Ct[(size_t)j * out + i] * Ct[(size_t)j * out + i];
        ord[j] = (sv_order){sqrt(s), j};
    }
    qsort(ord, (size_t)p, sizeof *ord, cmp_sv);
    for (int kk = 0; kk < k; kk++) {
        const double *c = Ct + (size_t)ord[kk].i * out, *w = Wt + (size_t)ord[kk].i * in;
        for (int i = 0; i < out; i++) Bk[(size_t)i * k + kk] = (float)c[i];
        for (int i = 0; i < in; i++) Ak[(size_t)kk * in + i] = (float)w[i];
    }
    free(M), free(Hv), free(Qt), free(Ra), free(Ct), free(Vt), free(Wt), free(ord);
}

// ---- per-module merges ----

typedef struct part {  // one expert's adapter of the module being merged
    const lora_module *m;
    int expert;
    double w;
} part;

static double scale_of(const lora_module *m) { return (double)m->alpha / m->rank; }

static int merge_cat(lora_set *out, const char *name, const part *ps, int np) {
    int R = 0, in = ps[0].m->in, o = ps[0].m->out;
    for (int i = 0; i < np; i++) R += ps[i].m->rank;
    lora_module *d = lora_set_add(out, name, R, in, o, (float)R);
    if (!d) return -1;
    for (int i = 0, off = 0; i < np; i++) {
        const lora_module *m = ps[i].m;
        double c = ps[i].w * scale_of(m);
        for (size_t j = 0; j < (size_t)m->rank * in; j++) d->A[(size_t)off * in + j] = (float)(c * m->A[j]);
        for (int r = 0; r < o; r++)
            memcpy(d->B + (size_t)r * R + off, m->B + (size_t)r * m->rank, sizeof(float) * (size_t)m->rank);
        off += m->rank;
    }
    return 0;
}

static int merge_linear(lora_set *out, const char *name, const part *ps, int np) {
    int r = ps[0].m->rank, in = ps[0].m->in, o = ps[0].m->out;
    for (int i = 0; i < np; i++) {
        if (ps[i].m->rank != r)
            return err_set("lora_merge linear: module '%s': expert %d has rank %d, expert %d rank %d "
                           "(linear needs one rank; use sum or svd)", name, ps[0].expert, r, ps[i].expert, ps[i].m->rank);
        if (ps[i].w * scale_of(ps[i].m) < 0)
            return err_set("lora_merge linear: module '%s': expert %d has weight x scale %g < 0 (sqrt of it)",
                           name, ps[i].expert, ps[i].w * scale_of(ps[i].m));
    }
    size_t na = (size_t)r * in, nb = (size_t)o * r;
    double *acc = calloc(na + nb, sizeof(double));
    CHECK(acc);
    for (int i = 0; i < np; i++) {
        double c = sqrt(ps[i].w * scale_of(ps[i].m));
        for (size_t j = 0; j < na; j++) acc[j] += c * ps[i].m->A[j];
        for (size_t j = 0; j < nb; j++) acc[na + j] += c * ps[i].m->B[j];
    }
    lora_module *d = lora_set_add(out, name, r, in, o, (float)r);
    if (d)
        for (size_t j = 0; j < na + nb; j++) d->A[j] = (float)acc[j];  // B follows A
    free(acc);
    return d ? 0 : -1;
}

static int merge_svd(lora_set *out, const char *name, const part *ps, int np, int k) {
    int R = 0, in = ps[0].m->in, o = ps[0].m->out;
    for (int i = 0; i < np; i++) R += ps[i].m->rank;
    double *A = malloc(sizeof(double) * (size_t)R * in), *B = malloc(sizeof(double) * (size_t)o * R);
    CHECK(A && B);
    for (int i = 0, off = 0; i < np; i++) {
        const lora_module *m = ps[i].m;
        double c = ps[i].w * scale_of(m);
        for (size_t j = 0; j < (size_t)m->rank * in; j++) A[(size_t)off * in + j] = c * m->A[j];
        for (int r = 0; r < o; r++)
            for (int j = 0; j < m->rank; j++) B[(size_t)r * R + off + j] = m->B[(size_t)r * m->rank + j];
        off += m->rank;
    }
    k = k < max_rank(o, R, in) ? k : max_rank(o, R, in);
    lora_module *d = lora_set_add(out, name, k, in, o, (float)k);
    if (d) svd_truncate(B, A, o, R, in, k, d->B, d->A);
    free(A), free(B);
    return d ? 0 : -1;
}

typedef struct mag_order {
    double a;
    size_t i;
} mag_order;

static int cmp_mag(const void *x, const void *y) {
    const mag_order *a = x, *b = y;
    if (a->a != b->a) return a->a > b->a ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

// Zeroes all but the floor(density * n) entries of largest magnitude.
static void trim_magnitude(double *t, size_t n, double density, mag_order *tmp) {
    size_t keep = (size_t)(density * (double)n);
    for (size_t j = 0; j < n; j++) tmp[j] = (mag_order){fabs(t[j]), j};
    qsort(tmp, n, sizeof *tmp, cmp_mag);
    for (size_t j = keep; j < n; j++) t[tmp[j].i] = 0;
}

static void drop_random(double *t, size_t n, double density, uint64_t seed, uint64_t stream) {
    for (size_t j = 0; j < n; j++)
        t[j] = philox_uniform(seed, stream, j) < density ? t[j] / density : 0;
}

static int merge_dense(lora_set *out, const char *name, const part *ps, int np, const lora_merge_opts *o,
                       int k) {
    int in = ps[0].m->in, no = ps[0].m->out;
    size_t n = (size_t)no * in;
    lora_merge_method meth = o->method;
    double *t = calloc((size_t)np * n, sizeof(double)), *D = calloc(n, sizeof(double));
    mag_order *tmp = meth == LORA_MERGE_TIES || meth == LORA_MERGE_MAGNITUDE_PRUNE ? malloc(n * sizeof *tmp) : NULL;
    CHECK(t && D);
    for (int i = 0; i < np; i++) {
        double *ti = t + (size_t)i * n;
        lora_module_delta(ps[i].m, 1.0, ti);
        if (o->density >= 1) continue;
        if (tmp) trim_magnitude(ti, n, o->density, tmp);
        else drop_random(ti, n, o->density, o->seed, fnv1a(name) + (uint64_t)ps[i].expert);
    }
    int elect = meth == LORA_MERGE_TIES || meth == LORA_MERGE_DARE_TIES;
    for (size_t j = 0; j < n; j++) {
        double sm = 0, acc = 0;
        int count = 0;
        for (int i = 0; i < np; i++) {
            double v = t[(size_t)i * n + j];
            sm += o->sign == LORA_SIGN_FREQUENCY ? (v > 0) - (v < 0) : v;
        }
        double major = sm >= 0 ? 1 : -1;
        for (int i = 0; i < np; i++) {
            double v = t[(size_t)i * n + j];
            if (elect && !(v * major > 0)) continue;
            acc += ps[i].w * v;
            count++;
        }
        D[j] = elect ? acc / (count > 1 ? count : 1) : acc;
    }
    // D = I_out D: the QR runs on D^T, so the Jacobi works on min(out, in) rows.
    double *eye = calloc((size_t)no * no, sizeof(double));
    CHECK(eye);
    for (int i = 0; i < no; i++) eye[(size_t)i * no + i] = 1;
    k = k < max_rank(no, no, in) ? k : max_rank(no, no, in);
    lora_module *d = lora_set_add(out, name, k, in, no, (float)k);
    if (d) svd_truncate(eye, D, no, no, in, k, d->B, d->A);
    free(eye), free(t), free(D), free(tmp);
    return d ? 0 : -1;
}

// ---- driver ----

static int merge_module(lora_set *out, const char *name, const lora_set *ex, int n, const double *w,
                        const lora_merge_opts *o, part *ps) {
    int np = 0, kmax = 0;
    for (int e = 0; e < n; e++) {
        const lora_module *m = lora_set_find(&ex[e], name);
        if (!m) continue;
        if (np && (m->in != ps[0].m->in || m->out != ps[0].m->out))
            return err_set("lora_merge: module '%s': expert %d has (out, in) = (%d, %d), expert %d (%d, %d)", name,
                           ps[0].expert, ps[0].m->out, ps[0].m->in, e, m->out, m->in);
        ps[np++] = (part){m, e, w[e]};
        kmax = m->rank > kmax ? m->rank : kmax;
    }
    int k = o->rank > 0 ? o->rank : kmax;
    switch (o->method) {
    case LORA_MERGE_SUM:
    case LORA_MERGE_CAT: return merge_cat(out, name, ps, np);
    case LORA_MERGE_LINEAR: return merge_linear(out, name, ps, np);
    case LORA_MERGE_SVD: return merge_svd(out, name, ps, np, k);
    default: return merge_dense(out, name, ps, np, o, k);
    }
}

static int list_has(const char *list, const char *item, size_t l) {
    for (const char *b = list; *b;) {
        size_t bl = strcspn(b, ",");
        if (bl == l && !strncmp(b, item, l)) return 1;
        b += bl + (b[bl] == ',');
    }
    return 0;
}

// lora_targets of the merge: the union of the experts' comma-separated lists.
static void union_targets(const lora_set *ex, int n, char *buf, size_t cap) {
    buf[0] = 0;
    for (int e = 0; e < n; e++)
        for (const char *s = lora_set_meta_get(&ex[e], "lora_targets"); s && *s;) {
            size_t l = strcspn(s, ","), bl = strlen(buf);
            if (l && !list_has(buf, s, l) && bl + l + 2 < cap)
                snprintf(buf + bl, cap - bl, "%s%.*s", bl ? "," : "", (int)l, s);
            s += l + (s[l] == ',');
        }
}

static int write_meta(lora_set *out, const lora_set *ex, int n, const double *w, const lora_merge_opts *o) {
    char buf[1024];
    int rc = lora_set_meta_set(out, "lora_merge_method", lora_merge_method_name(o->method));
    size_t len = 0;
    buf[0] = 0;
    for (int e = 0; e < n && len < sizeof buf; e++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%.17g", e ? "," : "", w[e]);
    if (!rc) rc = lora_set_meta_set(out, "lora_merge_weights", buf);
    int svd_based = o->method >= LORA_MERGE_SVD, pruned = o->method >= LORA_MERGE_TIES;
    if (!rc && svd_based && o->rank > 0) {
        snprintf(buf, sizeof buf, "%d", o->rank);
        rc = lora_set_meta_set(out, "lora_merge_rank", buf);
    }
    if (!rc && pruned) {
        snprintf(buf, sizeof buf, "%.17g", o->density);
        rc = lora_set_meta_set(out, "lora_merge_density", buf);
    }
    if (!rc && (o->method == LORA_MERGE_TIES || o->method == LORA_MERGE_DARE_TIES))
        rc = lora_set_meta_set(out, "lora_merge_sign", o->sign == LORA_SIGN_FREQUENCY ? "frequency" : "total");
    if (!rc && (o->method == LORA_MERGE_DARE_LINEAR || o->method == LORA_MERGE_DARE_TIES)) {
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
        rc = lora_set_meta_set(out, "lora_merge_seed", buf);
    }
    union_targets(ex, n, buf, sizeof buf);
    if (!rc && buf[0]) rc = lora_set_meta_set(out, "lora_targets", buf);
    return rc;
}

int lora_merge(const lora_set *experts, int n, const double *weights, const lora_merge_opts *opts,
               lora_set *out) {
    lora_set_init(out);
    lora_merge_opts o = opts ? *opts : (lora_merge_opts){0};
    if (o.density == 0) o.density = 0.2;
    if (n < 1) return err_set("lora_merge: no experts");
    if ((int)o.method < 0 || o.method >= LORA_MERGE_COUNT) return err_set("lora_merge: unknown method %d", (int)o.method);
    if (!(o.density > 0 && o.density <= 1) || o.rank < 0 ||
        (o.sign != LORA_SIGN_TOTAL && o.sign != LORA_SIGN_FREQUENCY))
        return err_set("lora_merge: density %g must be in (0, 1], rank %d >= 0, sign total or frequency",
                       o.density, o.rank);
    double *w = malloc(sizeof(double) * (size_t)n);
    CHECK(w);
    int averaged = o.method == LORA_MERGE_TIES || o.method == LORA_MERGE_DARE_TIES;
    for (int e = 0; e < n; e++) w[e] = weights ? weights[e] : averaged ? 1.0 : 1.0 / n;
    int rc = 0, total = 0;
    for (int e = 0; e < n && !rc; e++) {
        if (!isfinite(w[e])) rc = err_set("lora_merge: weight %d is %g", e, w[e]);
        total += experts[e].n;
    }
    part *ps = malloc(sizeof *ps * (size_t)n);
    CHECK(ps);
    // The union of module names in first-seen order: a module is merged when first met.
    for (int e = 0; e < n && !rc; e++)
        for (int i = 0; i < experts[e].n && !rc; i++)
            if (!lora_set_find(out, experts[e].mods[i].name))
                rc = merge_module(out, experts[e].mods[i].name, experts, n, w, &o, ps);
    if (!rc && total == 0) rc = err_set("lora_merge: the experts have no modules");
    // A 1x1 convolution's adapter stays one (saved 4-D, as PEFT's Conv2d layers expect).
    for (int i = 0; i < out->n && !rc; i++)
        for (int e = 0; e < n; e++) {
            const lora_module *m = lora_set_find(&experts[e], out->mods[i].name);
            out->mods[i].conv1x1 |= m && m->conv1x1;
        }
    if (!rc) rc = write_meta(out, experts, n, w, &o);
    free(ps);
    free(w);
    if (rc) lora_set_free(out);
    return rc;
}
