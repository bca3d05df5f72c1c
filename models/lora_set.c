// LoRA adapter files as data (see lora_set.h).
#include "models/lora_set.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/lora_diffusers.h"
#include "runtime/error.h"

#define PEFT_PREFIX "unet."
#define KOHYA_PREFIX "lora_unet_"

void lora_set_init(lora_set *s) { memset(s, 0, sizeof *s); }

void lora_set_free(lora_set *s) {
    for (int i = 0; i < s->n; i++) free(s->mods[i].A);
    for (int i = 0; i < s->n_meta; i++) {
        free(s->meta[i].key);
        free(s->meta[i].value);
    }
    free(s->mods);
    free(s->meta);
    memset(s, 0, sizeof *s);
}

lora_module *lora_set_find(const lora_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->mods[i].name, name)) return &s->mods[i];
    return NULL;
}

lora_module *lora_set_add(lora_set *s, const char *name, int rank, int in, int out, float alpha) {
    if (!*name || strlen(name) >= LORA_NAME_MAX) {
        err_set("lora set: module name '%.64s' is empty or longer than %d bytes", name, LORA_NAME_MAX - 1);
        return NULL;
    }
    if (lora_set_find(s, name)) {
        err_set("lora set: module '%s' given twice", name);
        return NULL;
    }
    if (rank < 1 || in < 1 || out < 1 || !(alpha > 0) || !isfinite(alpha)) {
        err_set("lora set: module '%s': rank %d, in %d, out %d, alpha %g (all must be positive)",
                name, rank, in, out, (double)alpha);
        return NULL;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->mods = realloc(s->mods, (size_t)s->cap * sizeof *s->mods);
        CHECK(s->mods);
    }
    lora_module *m = &s->mods[s->n++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->rank = rank, m->in = in, m->out = out, m->alpha = alpha;
    m->A = calloc((size_t)rank * in + (size_t)out * rank, sizeof(float));
    CHECK(m->A);
    m->B = m->A + (size_t)rank * in;
    return m;
}

static int managed_key(const char *key) {
    return !strcmp(key, "lora_rank") || !strcmp(key, "lora_alpha") || !strcmp(key, "lora_alpha_pattern") ||
           !strcmp(key, LORA_DIFFUSERS_META);
}

const char *lora_set_meta_get(const lora_set *s, const char *key) {
    for (int i = 0; i < s->n_meta; i++)
        if (!strcmp(s->meta[i].key, key)) return s->meta[i].value;
    return NULL;
}

int lora_set_meta_set(lora_set *s, const char *key, const char *value) {
    if (managed_key(key))
        return err_set("lora set: metadata '%s' is derived from the modules and cannot be set", key);
    for (int i = 0; i < s->n_meta; i++)
        if (!strcmp(s->meta[i].key, key)) {
            free(s->meta[i].value);
            s->meta[i].value = strdup(value);
            CHECK(s->meta[i].value);
            return 0;
        }
    if (s->n_meta == s->cap_meta) {
        s->cap_meta = s->cap_meta ? 2 * s->cap_meta : 8;
        s->meta = realloc(s->meta, (size_t)s->cap_meta * sizeof *s->meta);
        CHECK(s->meta);
    }
    s->meta[s->n_meta].key = strdup(key);
    s->meta[s->n_meta].value = strdup(value);
    CHECK(s->meta[s->n_meta].key && s->meta[s->n_meta].value);
    s->n_meta++;
    return 0;
}

void lora_module_delta(const lora_module *m, double weight, double *out) {
    double c = weight * m->alpha / m->rank;
    for (int i = 0; i < m->out; i++)
        for (int k = 0; k < m->rank; k++) {
            double b = c * m->B[(size_t)i * m->rank + k];
            const float *a = m->A + (size_t)k * m->in;
            double *o = out + (size_t)i * m->in;
            for (int j = 0; j < m->in; j++) o[j] += b * a[j];
        }
}

// ---- names ----

// The UNet's identifiers that contain '_', longest first so that a longer one wins.
static const char *const kohya_words[] = {
    "transformer_blocks", "time_embedding", "conv_shortcut", "conv_norm_out", "time_emb_proj",
    "down_blocks", "up_blocks", "mid_block", "linear_1", "linear_2", "conv_out", "proj_out",
    "conv_in", "proj_in", "to_out", "to_q", "to_k", "to_v",
};

void lora_kohya_decode(const char *joined, char *module, size_t cap) {
    size_t o = 0;
    const char *p = joined;
    while (*p && o + 1 < cap) {
        size_t len = 0;
        for (size_t w = 0; w < sizeof kohya_words / sizeof *kohya_words && !len; w++) {
            size_t wl = strlen(kohya_words[w]);
            if (!strncmp(p, kohya_words[w], wl) && (p[wl] == '_' || !p[wl])) len = wl;
        }
        if (!len) len = strcspn(p, "_");
        if (o && o + 1 < cap) module[o++] = '.';
        for (size_t i = 0; i < len && o + 1 < cap; i++) module[o++] = p[i];
        p += len;
        if (*p == '_') p++;
    }
    module[o] = 0;
}

static int ends_with(const char *s, size_t n, const char *suffix) {
    size_t l = strlen(suffix);
    return n > l && !strcmp(s + n - l, suffix) ? (int)l : 0;
}

int lora_key_parse(const char *key, char *module, size_t cap, char *role) {
    size_t n = strlen(key), pl, sl;
    if (!strncmp(key, PEFT_PREFIX, pl = strlen(PEFT_PREFIX))) {
        if ((sl = ends_with(key, n, ".lora_A.weight"))) *role = 'A';
        else if ((sl = ends_with(key, n, ".lora_B.weight"))) *role = 'B';
        else return -1;
        if (n - sl <= pl || n - sl - pl >= cap) return -1;
        memcpy(module, key + pl, n - sl - pl);
        module[n - sl - pl] = 0;
        return 0;
    }
    if (!strncmp(key, KOHYA_PREFIX, pl = strlen(KOHYA_PREFIX))) {
        if ((sl = ends_with(key, n, ".lora_down.weight"))) *role = 'A';
        else if ((sl = ends_with(key, n, ".lora_up.weight"))) *role = 'B';
        else if ((sl = ends_with(key, n, ".alpha"))) *role = 'a';
        else return -1;
        char joined[LORA_NAME_MAX];
        size_t jl = n - sl - pl;
        if (n - sl <= pl || jl >= sizeof joined || memchr(key + pl, '.', jl)) return -1;
        memcpy(joined, key + pl, jl);
        joined[jl] = 0;
        lora_kohya_decode(joined, module, cap);
        return strlen(module) == jl ? 0 : -1;  // truncated by cap
    }
    return -1;
}

static void kohya_encode(const char *module, char *joined, size_t cap) {
    snprintf(joined, cap, "%s", module);
    for (char *c = joined; *c; c++)
        if (*c == '.') *c = '_';
}

// ---- alpha rules ----

static int parse_positive(const char *s, double *v) {
    char *end = NULL;
    *v = strtod(s, &end);
    return end != s && !*end && *v > 0 && isfinite(*v) ? 0 : -1;
}

int lora_file_alpha(const st_file *f, const char *module, int rank, double *alpha) {
    const char *pat = st_meta_get(f, "lora_alpha_pattern"), *g = st_meta_get(f, "lora_alpha");
    *alpha = rank;
    if (pat) {
        cJSON *j = cJSON_Parse(pat);
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            return err_set("%s: __metadata__ lora_alpha_pattern is not a JSON object", f->name);
        }
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, module);
        int found = e != NULL, ok = e && cJSON_IsNumber(e) && e->valuedouble > 0 && isfinite(e->valuedouble);
        if (ok) *alpha = e->valuedouble;
        cJSON_Delete(j);
        if (found && !ok)
            return err_set("%s: __metadata__ lora_alpha_pattern: '%s' is not a positive number", f->name, module);
        pat = found ? pat : NULL;
    }
    if (!pat && g && parse_positive(g, alpha))
        return err_set("%s: __metadata__ lora_alpha '%s' is not a positive number", f->name, g);
    // diffusers' own record: the only one in a file diffusers wrote; in one selma wrote,
    // it must agree, or diffusers would apply another scale than selma.
    double d = rank;
    int found;
    if (lora_diffusers_alpha(f, module, rank, &found, &d)) return -1;
    if (found && (pat || g) && fabs(d - *alpha) > 1e-6 * *alpha)
        return err_set("%s: module '%s': alpha %g from lora_alpha%s, but %g in __metadata__ %s", f->name, module,
                       *alpha, pat ? "_pattern" : "", d, LORA_DIFFUSERS_META);
    if (found) *alpha = d;
    return 0;
}

// ---- load ----

typedef struct pending {
    char name[LORA_NAME_MAX];
    const st_tensor *a, *b, *alpha;
} pending;

static int cmp_module(const void *x, const void *y) {
    return strcmp(((const lora_module *)x)->name, ((const lora_module *)y)->name);
}

// A or B as (rows, cols): 2-D, or 4-D with trailing 1x1 (a 1x1 convolution's adapter).
static int matrix_shape(const st_tensor *t, int64_t *rows, int64_t *cols) {
    if (t->ndim != 2 && !(t->ndim == 4 && t->shape[2] == 1 && t->shape[3] == 1)) return -1;
    *rows = t->shape[0], *cols = t->shape[1];
    return *rows >= 1 && *cols >= 1 && *rows <= INT32_MAX && *cols <= INT32_MAX ? 0 : -1;
}

static int check_pending(const st_file *f, const pending *p, int meta_rank) {
    const char *path = f->name;
    if (!p->a || !p->b)
        return err_set("%s: tensor '%s' has no %s partner", path, (p->a ? p->a : p->b ? p->b : p->alpha)->name,
                       p->a ? "B (lora_B / lora_up)" : "A (lora_A / lora_down)");
    int64_t r, in, out, rb;
    if (matrix_shape(p->a, &r, &in))
        return err_set("%s: tensor '%s': A must be (rank, in), not %d-D", path, p->a->name, p->a->ndim);
    if (matrix_shape(p->b, &out, &rb) || rb != r)
        return err_set("%s: tensor '%s': B of shape (%lld, %lld) does not fit A '%s' of rank %lld", path,
                       p->b->name, (long long)p->b->shape[0], (long long)p->b->shape[1], p->a->name, (long long)r);
    if (meta_rank > 0 && r != meta_rank)
        return err_set("%s: tensor '%s' has rank %lld but __metadata__ lora_rank is %d", path, p->a->name,
                       (long long)r, meta_rank);
    if (p->alpha && st_tensor_numel(p->alpha) != 1)
        return err_set("%s: tensor '%s': alpha must be a scalar", path, p->alpha->name);
    return 0;
}

// Every lora_alpha_pattern key must name a module of the file: a misspelt key would
// otherwise fall back to lora_alpha silently.
static int check_pattern_keys(const st_file *f, const pending *p, int n) {
    const char *pat = st_meta_get(f, "lora_alpha_pattern");
    if (!pat) return 0;
    cJSON *j = cJSON_Parse(pat);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return err_set("%s: __metadata__ lora_alpha_pattern is not a JSON object", f->name);
    }
    int rc = 0;
    for (const cJSON *e = j->child; e && !rc; e = e->next) {
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = !strcmp(p[i].name, e->string);
        if (!known) rc = err_set("%s: __metadata__ lora_alpha_pattern names '%s', which has no tensors", f->name, e->string);
    }
    cJSON_Delete(j);
    return rc;
}

static int load_module(lora_set *s, const st_file *f, const pending *p) {
    double alpha;
    if (p->alpha) {
        float v;
        if (st_tensor_to_f32(f, p->alpha, &v, 1)) return -1;
        if (!(v > 0) || !isfinite(v))
            return err_set("%s: tensor '%s': alpha %g is not a positive number", f->name, p->alpha->name, (double)v);
        alpha = v;
    } else if (lora_file_alpha(f, p->name, (int)p->a->shape[0], &alpha)) {
        return -1;
    }
    lora_module *m = lora_set_add(s, p->name, (int)p->a->shape[0], (int)p->a->shape[1], (int)p->b->shape[0],
                                  (float)alpha);
    if (!m) return err_wrap("%s: tensor '%s'", f->name, p->a->name);
    m->conv1x1 = p->a->ndim == 4;
    size_t na = (size_t)m->rank * m->in, nb = (size_t)m->out * m->rank;
    if (st_tensor_to_f32(f, p->a, m->A, na) || st_tensor_to_f32(f, p->b, m->B, nb)) return -1;
    for (size_t i = 0; i < na + nb; i++)
        if (!isfinite(m->A[i]))
            return err_set("%s: tensor '%s' holds a non-finite value", f->name, (i < na ? p->a : p->b)->name);
    return 0;
}

int lora_set_load(lora_set *s, const char *path) {
    lora_set_init(s);
    st_file f;
    if (st_open(path, &f)) return -1;
    pending *p = calloc(f.n_tensors ? f.n_tensors : 1, sizeof *p);
    CHECK(p);
    int n = 0, rc = 0, meta_rank = 0;
    const char *mr = st_meta_get(&f, "lora_rank");
    double v;
    if (mr && (parse_positive(mr, &v) || v != (int)v))
        rc = err_set("%s: __metadata__ lora_rank '%s' is not a positive integer", path, mr);
    else if (mr)
        meta_rank = (int)v;
    for (size_t i = 0; i < f.n_tensors && !rc; i++) {
        const st_tensor *t = &f.tensors[i];
        char module[LORA_NAME_MAX], role;
        if (lora_key_parse(t->name, module, sizeof module, &role)) {
            rc = err_set("%s: tensor '%s' is not a UNet LoRA tensor (unet.<module>.lora_{A,B}.weight or "
                         "lora_unet_<module>.{lora_down.weight,lora_up.weight,alpha})", path, t->name);
            break;
        }
        int k = 0;
        while (k < n && strcmp(p[k].name, module)) k++;
        if (k == n) snprintf(p[n++].name, LORA_NAME_MAX, "%s", module);
        const st_tensor **slot = role == 'A' ? &p[k].a : role == 'B' ? &p[k].b : &p[k].alpha;
        if (*slot) rc = err_set("%s: tensors '%s' and '%s' both give module '%s'", path, (*slot)->name, t->name, module);
        *slot = t;
    }
    if (!rc && n == 0) rc = err_set("%s: holds no LoRA tensors", path);
    for (int k = 0; k < n && !rc; k++) rc = check_pending(&f, &p[k], meta_rank);
    if (!rc) rc = check_pattern_keys(&f, p, n);
    for (int k = 0; k < n && !rc; k++) rc = load_module(s, &f, &p[k]);
    for (size_t i = 0; i < f.n_meta && !rc; i++)
        if (!managed_key(f.meta[i].key)) rc = lora_set_meta_set(s, f.meta[i].key, f.meta[i].value);
    if (!rc) qsort(s->mods, (size_t)s->n, sizeof *s->mods, cmp_module);
    free(p);
    st_close(&f);
    if (rc) lora_set_free(s);
    return rc;
}

// ---- save ----

static int cmp_name_ptr(const void *x, const void *y) {
    return strcmp((*(const lora_module *const *)x)->name, (*(const lora_module *const *)y)->name);
}

// diffusers' own record of ranks and alphas (lora_diffusers.h): without it diffusers
// would apply scale 1 to every module.
static int write_diffusers_meta(st_writer *w, const lora_module **order, int n) {
    const char **names = malloc((size_t)n * sizeof *names);
    int *ranks = malloc((size_t)n * sizeof *ranks);
    double *alphas = malloc((size_t)n * sizeof *alphas);
    CHECK(names && ranks && alphas);
    for (int i = 0; i < n; i++) names[i] = order[i]->name, ranks[i] = order[i]->rank, alphas[i] = order[i]->alpha;
    char *txt = lora_diffusers_meta_json(names, ranks, alphas, n);
    int rc = st_writer_set_meta(w, LORA_DIFFUSERS_META, txt);
    free(txt), free(names), free(ranks), free(alphas);
    return rc;
}

// lora_rank when uniform; lora_alpha when uniform, else lora_alpha_pattern (PEFT form).
static int write_rank_alpha(st_writer *w, const lora_module **order, int n, int with_alpha) {
    int same_rank = 1, same_alpha = 1;
    for (int i = 1; i < n; i++) {
        same_rank &= order[i]->rank == order[0]->rank;
        same_alpha &= order[i]->alpha == order[0]->alpha;
    }
    char buf[64];
    int rc = 0;
    if (same_rank) {
        snprintf(buf, sizeof buf, "%d", order[0]->rank);
        rc = st_writer_set_meta(w, "lora_rank", buf);
    }
    if (rc || !with_alpha) return rc;
    if (same_alpha) {
        snprintf(buf, sizeof buf, "%.9g", (double)order[0]->alpha);
        rc = st_writer_set_meta(w, "lora_alpha", buf);
    } else {
        cJSON *j = cJSON_CreateObject();
        CHECK(j);
        for (int i = 0; i < n; i++) CHECK(cJSON_AddNumberToObject(j, order[i]->name, (double)order[i]->alpha));
        char *txt = cJSON_PrintUnformatted(j);
        CHECK(txt);
        rc = st_writer_set_meta(w, "lora_alpha_pattern", txt);
        free(txt);
        cJSON_Delete(j);
    }
    return rc ? rc : write_diffusers_meta(w, order, n);
}

// kohya_B, kohya_alpha: B and alpha to write in the kohya form, or NULL for m->B and
// m->alpha (see lora_set_save); they must live until the writer saves.
static int add_module(st_writer *w, const lora_module *m, lora_format fmt, const char *path, const float *kohya_B,
                      const float *kohya_alpha) {
    char key[LORA_NAME_MAX + 64], joined[LORA_NAME_MAX], back[LORA_NAME_MAX];
    int64_t as[4] = {m->rank, m->in, 1, 1}, bs[4] = {m->out, m->rank, 1, 1};
    int nd = m->conv1x1 ? 4 : 2;
    if (fmt == LORA_FORMAT_PEFT) {
        snprintf(key, sizeof key, PEFT_PREFIX "%s.lora_A.weight", m->name);
        int rc = st_writer_add(w, key, ST_F32, nd, as, m->A);
        snprintf(key, sizeof key, PEFT_PREFIX "%s.lora_B.weight", m->name);
        return rc ? rc : st_writer_add(w, key, ST_F32, nd, bs, m->B);
    }
    kohya_encode(m->name, joined, sizeof joined);
    lora_kohya_decode(joined, back, sizeof back);
    if (strcmp(back, m->name))
        return err_set("%s: module '%s' has no kohya name that reads back as itself (it would be '%s')",
                       path, m->name, back);
    snprintf(key, sizeof key, KOHYA_PREFIX "%s.lora_down.weight", joined);
    int rc = st_writer_add(w, key, ST_F32, nd, as, m->A);
    snprintf(key, sizeof key, KOHYA_PREFIX "%s.lora_up.weight", joined);
    if (!rc) rc = st_writer_add(w, key, ST_F32, nd, bs, kohya_B ? kohya_B : m->B);
    snprintf(key, sizeof key, KOHYA_PREFIX "%s.alpha", joined);
    return rc ? rc : st_writer_add(w, key, ST_F32, 0, NULL, kohya_B ? kohya_alpha : &m->alpha);
}

int lora_set_save(const lora_set *s, const char *path, lora_format fmt) {
    if (s->n == 0) return err_set("%s: the LoRA set has no modules to save", path);
    // Sorted by name, so that the file depends on the set's contents only.
    const lora_module **order = malloc((size_t)s->n * sizeof *order);
    CHECK(order);
    for (int i = 0; i < s->n; i++) order[i] = &s->mods[i];
    qsort(order, (size_t)s->n, sizeof *order, cmp_name_ptr);
    st_writer w;
    st_writer_init(&w);
    int rc = write_rank_alpha(&w, order, s->n, fmt == LORA_FORMAT_PEFT);
    for (int i = 0; i < s->n_meta && !rc; i++) rc = st_writer_set_meta(&w, s->meta[i].key, s->meta[i].value);
    // diffusers (0.42.1) reads kohya .alpha tensors right only when all are equal: it
    // keys the differing ones by names no module has, and they fall back to the most
    // common alpha. So the kohya form gets one alpha, the first module's, and a module
    // with another alpha has its scale moved into B: alpha0 / r * (B alpha / alpha0) A.
    int same_alpha = 1;
    for (int i = 1; i < s->n; i++) same_alpha &= order[i]->alpha == order[0]->alpha;
    float alpha0 = order[0]->alpha, **scaled = calloc((size_t)s->n, sizeof *scaled);
    CHECK(scaled);
    for (int i = 0; i < s->n && !rc; i++) {
        const lora_module *m = order[i];
        if (fmt == LORA_FORMAT_KOHYA && !same_alpha && m->alpha != alpha0) {
            size_t nb = (size_t)m->out * m->rank;
            CHECK(scaled[i] = malloc(nb * sizeof **scaled));
            for (size_t k = 0; k < nb; k++) scaled[i][k] = (float)((double)m->B[k] * m->alpha / alpha0);
        }
        rc = add_module(&w, m, fmt, path, scaled[i], &alpha0);  // the writer keeps pointers
    }
    if (!rc) rc = st_writer_save(&w, path);
    for (int i = 0; i < s->n; i++) free(scaled[i]);
    free(scaled);
    st_writer_free(&w);
    free(order);
    return rc ? err_wrap("lora_set_save %s", path) : 0;
}
