// A LoRA mixture of experts on the UNet (see lora_moe.h): expert files checked and
// packed, routers, the UNet hooks, router files.
#include "models/lora_moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/moe_lora.h"
#include "models/bundle.h"
#include "models/lora_set.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"

#define PREFIX "unet."
#define SUFFIX_A ".lora_A.weight"
#define FNV_BASIS 1469598103934665603ull

// ---- expert files ----

// The model's linear named `module`, or NULL.
static unet_linear *module_linear(const unet *m, const char *module) {
    char wname[LORA_NAME_MAX + 8];
    snprintf(wname, sizeof wname, "%s.weight", module);
    unet_param *p = ptab_find(&m->params, wname);
    return p && p->kind == PARAM_BASE ? p->linear : NULL;
}

// Every module of one expert (lora_set_load has checked names, pairs, ranks, alphas)
// must be a linear of the model with fitting shapes. Messages name the module by its
// PEFT tensor name.
static int check_expert(const unet *m, const lora_set *s, const char *path) {
    for (int i = 0; i < s->n; i++) {
        const lora_module *x = &s->mods[i];
        unet_linear *l = module_linear(m, x->name);
        if (!l)
            return err_set("%s: tensor '" PREFIX "%s" SUFFIX_A "': the model has no linear layer '%s'",
                           path, x->name, x->name);
        if (x->in != l->in || x->out != l->out)
            return err_set("%s: tensor '" PREFIX "%s" SUFFIX_A "': an adapter %d -> %d does not fit "
                           "the linear '%s' (%d -> %d)", path, x->name, x->in, x->out, x->name,
                           l->in, l->out);
    }
    return 0;
}

// Expert e >= 1 must adapt exactly the first expert's modules.
static int check_same_modules(const lora_set *s0, const char *p0, const lora_set *se, const char *pe) {
    for (int i = 0; i < s0->n; i++)
        if (!lora_set_find(se, s0->mods[i].name))
            return err_set("%s: tensor '" PREFIX "%s" SUFFIX_A "' is missing (the first expert, %s, "
                           "adapts that module)", pe, s0->mods[i].name, p0);
    for (int i = 0; i < se->n; i++)
        if (!lora_set_find(s0, se->mods[i].name))
            return err_set("%s: tensor '" PREFIX "%s" SUFFIX_A "' adapts a module the first expert "
                           "(%s) does not", pe, se->mods[i].name, p0);
    return 0;
}

// ---- layout ----

static void arenas_layout(lora_moe *moe, int train) {
    arena_rewind(&moe->experts);
    arena_rewind(&moe->router);
    arena_rewind(&moe->router_grads);
    for (int i = 0; i < moe->n_mods; i++) {
        moe_linear *x = &moe->mods[i];
        size_t in = (size_t)x->lin->in, out = (size_t)x->lin->out, f = sizeof(float);
        x->a = arena_take(&moe->experts, (size_t)x->R * in * f);
        x->b = arena_take(&moe->experts, out * x->R * f);
        x->wr = arena_take(&moe->router, (size_t)x->E * in * f);
        x->br = arena_take(&moe->router, (size_t)x->E * f);
        x->dwr = train ? arena_take(&moe->router_grads, (size_t)x->E * in * f) : NULL;
        x->dbr = train ? arena_take(&moe->router_grads, (size_t)x->E * f) : NULL;
    }
}

// Copies expert e's pair into the packed a (rows) and b (columns) of module x.
static void load_pair(moe_linear *x, const lora_module *lm, int e) {
    int in = x->lin->in, out = x->lin->out, r = lm->rank;
    memcpy(x->a + (size_t)x->roff[e] * in, lm->A, sizeof(float) * (size_t)r * in);
    for (int o = 0; o < out; o++)
        memcpy(x->b + (size_t)o * x->R + x->roff[e], lm->B + (size_t)o * r, sizeof(float) * r);
}

// ---- init / free ----

static void moe_release(lora_moe *moe) {
    for (int i = 0; i < LORA_MOE_MAX_EXPERTS; i++) free(moe->files[i]);
    free(moe->mods);
    arena_free(&moe->experts);
    arena_free(&moe->router);
    arena_free(&moe->router_grads);
    memset(moe, 0, sizeof *moe);
}

static int init_from_sets(lora_moe *moe, unet *m, const lora_moe_config *cfg, lora_set *s) {
    int E = cfg->n_experts;
    for (int e = 0; e < E; e++) {
        if (check_expert(m, &s[e], cfg->files[e])) return -1;
        if (e > 0 && check_same_modules(&s[0], cfg->files[0], &s[e], cfg->files[e])) return -1;
        moe->files[e] = strdup(cfg->files[e]);
        CHECK(moe->files[e] != NULL);
        moe->hash[e] = FNV_BASIS;
        if (file_fnv1a(cfg->files[e], &moe->hash[e])) return -1;
    }
    moe->mods = calloc((size_t)s[0].n, sizeof *moe->mods);
    CHECK(moe->mods != NULL);
    // The modules in the model's order (the layout does not depend on the files').
    for (int i = 0; i < m->params.n; i++) {
        unet_param *p = &m->params.items[i];
        size_t len = strlen(p->name);
        if (!p->linear || len < 7 || len - 7 >= LORA_NAME_MAX || strcmp(p->name + len - 7, ".weight"))
            continue;
        char module[LORA_NAME_MAX];
        snprintf(module, sizeof module, "%.*s", (int)(len - 7), p->name);
        if (!lora_set_find(&s[0], module)) continue;
        CHECK(moe->n_mods < s[0].n);
        moe_linear *x = &moe->mods[moe->n_mods++];
        snprintf(x->module, sizeof x->module, "%.*s", (int)(len - 7), p->name);
        x->lin = p->linear;
        x->E = E;
        x->temperature = cfg->temperature;
        for (int e = 0; e < E; e++) {
            const lora_module *lm = lora_set_find(&s[e], module);
            x->roff[e + 1] = x->roff[e] + lm->rank;
            x->scale[e] = lm->alpha / (float)lm->rank;
        }
        x->R = x->roff[E];
    }
    CHECK(moe->n_mods == s[0].n);
    int train = m->mode == UNET_TRAIN_MOE;
    moe->experts = arena_plan("moe experts", DEVICE_CPU);
    moe->router = arena_plan("moe router", DEVICE_CPU);
    moe->router_grads = arena_plan("moe router grads", DEVICE_CPU);
    arenas_layout(moe, train);
    if (arena_commit(&moe->experts) || arena_commit(&moe->router) ||
        (train && arena_commit(&moe->router_grads)))
        return -1;
    arenas_layout(moe, train);
    for (int i = 0; i < moe->n_mods; i++)
        for (int e = 0; e < E; e++)
            load_pair(&moe->mods[i], lora_set_find(&s[e], moe->mods[i].module), e);
    return 0;
}

int lora_moe_init(lora_moe *moe, unet *m, const lora_moe_config *cfg) {
    memset(moe, 0, sizeof *moe);
    int E = cfg->n_experts;
    if (E < 1 || E > LORA_MOE_MAX_EXPERTS)
        return err_set("lora_moe: %d experts not in [1, %d]", E, LORA_MOE_MAX_EXPERTS);
    if (!(cfg->temperature > 0))
        return err_set("lora_moe: temperature %g must be positive", (double)cfg->temperature);
    if (m->mode != UNET_TRAIN_MOE && m->mode != UNET_FROZEN)
        return err_set("lora_moe: the UNet must be built UNET_TRAIN_MOE (or UNET_FROZEN to sample)");
    if (m->params.lora.rank > 0)
        return err_set("lora_moe: the UNet already has LoRA adapters");
    if (m->moe) return err_set("lora_moe: the UNet already has a mixture of experts attached");
    if (m->params.params.device != DEVICE_CPU)  // kernels/moe_lora.h has no CUDA version
        return err_set("lora_moe: a LoRA mixture of experts on CUDA: not yet (build the UNet on the CPU)");
    lora_set s[LORA_MOE_MAX_EXPERTS];
    for (int e = 0; e < E; e++) lora_set_init(&s[e]);
    int rc = 0;
    for (int e = 0; e < E && !rc; e++) rc = lora_set_load(&s[e], cfg->files[e]);
    moe->m = m;
    moe->n_experts = E;
    moe->temperature = cfg->temperature;
    if (!rc) rc = init_from_sets(moe, m, cfg, s);
    for (int e = 0; e < E; e++) lora_set_free(&s[e]);
    if (rc) {
        moe_release(moe);
        return err_wrap("lora_moe");
    }
    // Only now is the UNet changed; its activations (if laid out) gain the MoE's.
    for (int i = 0; i < moe->n_mods; i++) moe->mods[i].lin->moe = &moe->mods[i];
    m->moe = moe;
    if (m->acts.base && unet_alloc_activations(m, m->B, m->T)) {
        lora_moe_free(moe);
        return -1;
    }
    size_t ne = 0, nr = 0;
    for (int i = 0; i < moe->n_mods; i++) {
        ne += (size_t)moe->mods[i].R * (moe->mods[i].lin->in + moe->mods[i].lin->out);
        nr += (size_t)E * (moe->mods[i].lin->in + 1);
    }
    log_line("lora_moe: %d experts on %d linears, %zu expert parameters, %zu router parameters%s",
             E, moe->n_mods, ne, nr, moe->router_grads.base ? " (trainable)" : "");
    return 0;
}

void lora_moe_free(lora_moe *moe) {
    for (int i = 0; i < moe->n_mods; i++)
        if (moe->mods[i].lin->moe == &moe->mods[i]) moe->mods[i].lin->moe = NULL;
    if (moe->m && moe->m->moe == moe) moe->m->moe = NULL;
    moe_release(moe);
}

void lora_moe_zero_grad(lora_moe *moe) {
    if (moe->router_grads.base) memset(moe->router_grads.base, 0, moe->router_grads.size);
}

void lora_moe_trainable(lora_moe *moe, float **params, float **grads, size_t *n) {
    *params = (float *)moe->router.base;
    *grads = (float *)moe->router_grads.base;
    *n = moe->router.size / sizeof(float);
}

// ---- UNet hooks ----

void moe_linear_acts(moe_linear *x, arena *a, int N) {
    x->h = arena_take(a, sizeof(float) * (size_t)N * x->R);
    x->g = arena_take(a, sizeof(float) * (size_t)N * x->E);
    x->ws = arena_take(a, sizeof(float) * moe_lora_scratch_floats(N, x->R, x->E));
}

void moe_linear_forward(const unet_linear *l, float *out, const float *inp, int N) {
    const moe_linear *x = l->moe;
    moe_lora_forward(out, x->h, x->g, x->ws, inp, l->w, l->b, x->a, x->b, x->wr, x->br, x->scale,
                     x->roff, x->temperature, N, l->in, l->out, x->E);
}

void moe_linear_backward(const unet_linear *l, float *dinp, const float *dout, const float *inp,
                         int N) {
    const moe_linear *x = l->moe;
    if (!dinp && !x->dwr) return;
    moe_lora_backward(dinp, x->dwr, x->dbr, x->ws, dout, inp, x->h, x->g, l->w, x->a, x->b, x->wr,
                      x->scale, x->roff, x->temperature, N, l->in, l->out, x->E);
}

// ---- router files ----

int lora_moe_save(const lora_moe *moe, const char *path) {
    st_writer w;
    st_writer_init(&w);
    char name[UNET_NAME_MAX + 16], key[48], val[64];
    int rc = 0;
    for (int i = 0; i < moe->n_mods && !rc; i++) {
        const moe_linear *x = &moe->mods[i];
        int64_t ws[2] = {x->E, x->lin->in}, bs[1] = {x->E};
        snprintf(name, sizeof name, "%s.router.weight", x->module);
        rc = st_writer_add(&w, name, ST_F32, 2, ws, x->wr);
        snprintf(name, sizeof name, "%s.router.bias", x->module);
        if (!rc) rc = st_writer_add(&w, name, ST_F32, 1, bs, x->br);
    }
    snprintf(val, sizeof val, "%d", moe->n_experts);
    if (!rc) rc = st_writer_set_meta(&w, "moe_n_experts", val);
    snprintf(val, sizeof val, "%.9g", (double)moe->temperature);
    if (!rc) rc = st_writer_set_meta(&w, "moe_temperature", val);
    for (int e = 0; e < moe->n_experts && !rc; e++) {
        snprintf(key, sizeof key, "moe_expert_%d", e);
        rc = st_writer_set_meta(&w, key, moe->files[e]);
        snprintf(key, sizeof key, "moe_expert_%d_fnv1a", e);
        snprintf(val, sizeof val, "%016llx", (unsigned long long)moe->hash[e]);
        if (!rc) rc = st_writer_set_meta(&w, key, val);
    }
    if (!rc) rc = st_writer_save(&w, path);
    st_writer_free(&w);
    return rc ? err_wrap("lora_moe_save %s", path) : 0;
}

// The file's expert count and temperature from __metadata__.
static int read_meta(const st_file *f, int *n, float *temperature) {
    const char *s = st_meta_get(f, "moe_n_experts"), *t = st_meta_get(f, "moe_temperature");
    char *end = NULL;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end || v < 1 || v > LORA_MOE_MAX_EXPERTS)
        return err_set("%s: __metadata__ moe_n_experts '%s' is not a count in [1, %d]", f->name,
                       s ? s : "(absent)", LORA_MOE_MAX_EXPERTS);
    *n = (int)v;
    double d = t ? strtod(t, &end) : 0;
    if (!t || end == t || *end || !(d > 0))
        return err_set("%s: __metadata__ moe_temperature '%s' is not a positive number", f->name,
                       t ? t : "(absent)");
    *temperature = (float)d;
    return 0;
}

// Checks the file against moe: metadata, then every router tensor by name and shape.
static int check_router_file(const lora_moe *moe, const st_file *f) {
    int n;
    float temperature;
    char key[48], hex[24], name[UNET_NAME_MAX + 16];
    if (read_meta(f, &n, &temperature)) return -1;
    if (n != moe->n_experts)
        return err_set("%s: routers for %d experts, the MoE has %d", f->name, n, moe->n_experts);
    if (temperature != moe->temperature)
        return err_set("%s: temperature %g, the MoE's is %g", f->name, (double)temperature,
                       (double)moe->temperature);
    for (int e = 0; e < n; e++) {
        snprintf(key, sizeof key, "moe_expert_%d_fnv1a", e);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)moe->hash[e]);
        const char *h = st_meta_get(f, key), *file = NULL;
        if (!h || strcmp(h, hex)) {
            snprintf(key, sizeof key, "moe_expert_%d", e);
            file = st_meta_get(f, key);
            return err_set("%s: expert %d was '%s' (FNV-1a %s), the MoE's expert %d is '%s' (%s)",
                           f->name, e, file ? file : "?", h ? h : "absent", e, moe->files[e], hex);
        }
    }
    size_t used = 0;
    for (int i = 0; i < moe->n_mods; i++) {
        const moe_linear *x = &moe->mods[i];
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%s.router.%s", x->module, k ? "bias" : "weight");
            const st_tensor *t = st_find(f, name);
            if (!t) return err_set("%s: tensor '%s' is missing", f->name, name);
            int ok = k ? t->ndim == 1 && t->shape[0] == x->E
                       : t->ndim == 2 && t->shape[0] == x->E && t->shape[1] == x->lin->in;
            if (!ok && k)
                return err_set("%s: tensor '%s' has the wrong shape (the MoE's: (%d))", f->name,
                               name, x->E);
            if (!ok)
                return err_set("%s: tensor '%s' has the wrong shape (the MoE's: (%d, %d))",
                               f->name, name, x->E, x->lin->in);
            used++;
        }
    }
    if (used < f->n_tensors)
        for (size_t i = 0; i < f->n_tensors; i++) {
            const char *tn = f->tensors[i].name;
            int known = 0;
            for (int j = 0; j < moe->n_mods && !known; j++) {
                size_t ml = strlen(moe->mods[j].module);
                known = !strncmp(tn, moe->mods[j].module, ml) &&
                        (!strcmp(tn + ml, ".router.weight") || !strcmp(tn + ml, ".router.bias"));
            }
            if (!known) return err_set("%s: tensor '%s' is not a router of this MoE", f->name, tn);
        }
    return 0;
}

int lora_moe_load(lora_moe *moe, const char *path) {
    st_file f;
    if (st_open(path, &f)) return -1;
    char name[UNET_NAME_MAX + 16];
    int rc = check_router_file(moe, &f);
    // Everything matches: only now are the routers overwritten.
    for (int i = 0; i < moe->n_mods && !rc; i++) {
        moe_linear *x = &moe->mods[i];
        snprintf(name, sizeof name, "%s.router.weight", x->module);
        rc = st_tensor_to_f32(&f, st_find(&f, name), x->wr, (size_t)x->E * x->lin->in);
        snprintf(name, sizeof name, "%s.router.bias", x->module);
        if (!rc) rc = st_tensor_to_f32(&f, st_find(&f, name), x->br, (size_t)x->E);
    }
    st_close(&f);
    return rc ? err_wrap("lora_moe_load") : 0;
}

int lora_moe_open(lora_moe *moe, unet *m, const char *path) {
    memset(moe, 0, sizeof *moe);
    st_file f;
    if (st_open(path, &f)) return -1;
    lora_moe_config cfg = {0};
    char key[48];
    int rc = read_meta(&f, &cfg.n_experts, &cfg.temperature);
    char *files[LORA_MOE_MAX_EXPERTS] = {0};
    for (int e = 0; e < cfg.n_experts && !rc; e++) {
        snprintf(key, sizeof key, "moe_expert_%d", e);
        const char *s = st_meta_get(&f, key);
        if (!s) rc = err_set("%s: __metadata__ %s is missing", path, key);
        else CHECK((files[e] = strdup(s)) != NULL);
        cfg.files[e] = files[e];
    }
    st_close(&f);
    if (!rc) rc = lora_moe_init(moe, m, &cfg);
    if (!rc && (rc = lora_moe_load(moe, path))) lora_moe_free(moe);
    for (int e = 0; e < LORA_MOE_MAX_EXPERTS; e++) free(files[e]);
    return rc;
}
