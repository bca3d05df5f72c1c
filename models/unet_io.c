// UNet parameters by name: random init, safetensors save and load (see unet.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/lora_diffusers.h"
#include "models/lora_set.h"
#include "models/param_file.h"
#include "models/unet.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rng.h"
#include "runtime/safetensors.h"

#define LORA_PREFIX "unet."

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// A CUDA model's tensors are drawn on the host and copied over, so both devices get
// the same values.
void unet_init_random(unet *m, uint64_t seed) {
    device_kind dev = m->params.params.device;
    for (int i = 0; i < m->params.n; i++) {
        unet_param *p = &m->params.items[i];
        size_t n = (size_t)tensor_numel(&p->t);
        float *x = dev == DEVICE_CPU ? p->t.data : malloc((n ? n : 1) * sizeof *x);
        CHECK(x != NULL);
        if (p->init == PARAM_INIT_ONES)
            for (size_t k = 0; k < n; k++) x[k] = 1.0f;
        else if (p->init == PARAM_INIT_ZEROS)
            memset(x, 0, n * sizeof *x);
        else {
            float bound = 1.0f / sqrtf((float)p->fan_in);
            rng_fill_uniform(x, n, seed, fnv1a(p->name), 0, -bound, bound);
        }
        if (dev != DEVICE_CPU) {
            device_copy(dev, p->t.data, DEVICE_CPU, x, n * sizeof *x);
            free(x);
        }
    }
}

// Safetensors I/O reads and writes the tensors from the host: a CUDA model goes through
// a CPU twin of the same build (frozen, the same adapters), which holds a host copy of
// every weight for the moment (SD 1.5's UNet: 3.4 GB).
static int host_twin(const unet *m, unet *h) {
    lora_config l = m->params.lora;
    if (unet_build(h, &m->cfg, UNET_FROZEN, l.rank > 0 ? &l : NULL)) return -1;
    if (unet_copy_params(h, m)) {
        unet_free(h);
        return -1;
    }
    return 0;
}

static void file_name(char *buf, const unet_param *p) {
    snprintf(buf, UNET_NAME_MAX + 8, "%s%s", p->kind == PARAM_LORA ? LORA_PREFIX : "", p->name);
}

// The same rank and alpha in diffusers' lora_adapter_metadata, which diffusers reads
// (without it, it would apply scale 1 whatever the alpha).
static int save_diffusers_meta(const unet *m, st_writer *w) {
    const char *sa = ".lora_A.weight", **names = malloc((size_t)m->params.n * sizeof *names);
    char (*buf)[UNET_NAME_MAX] = malloc((size_t)m->params.n * sizeof *buf);
    int *ranks = malloc((size_t)m->params.n * sizeof *ranks), n = 0;
    double *alphas = malloc((size_t)m->params.n * sizeof *alphas);
    CHECK(names && buf && ranks && alphas);
    for (int i = 0; i < m->params.n; i++) {
        const unet_param *p = &m->params.items[i];
        size_t nl = strlen(p->name), sl = strlen(sa);
        if (p->kind != PARAM_LORA || nl <= sl || strcmp(p->name + nl - sl, sa)) continue;
        snprintf(buf[n], UNET_NAME_MAX, "%.*s", (int)(nl - sl), p->name);
        names[n] = buf[n], ranks[n] = m->params.lora.rank, alphas[n] = m->params.lora.alpha, n++;
    }
    char *txt = lora_diffusers_meta_json(names, ranks, alphas, n);
    int rc = st_writer_set_meta(w, LORA_DIFFUSERS_META, txt);
    free(txt), free(names), free(buf), free(ranks), free(alphas);
    return rc;
}

int unet_save(const unet *m, const char *path, param_kind kind) {
    if (m->params.params.device != DEVICE_CPU) {
        unet h;
        if (host_twin(m, &h)) return err_wrap("unet_save %s", path);
        int rc = unet_save(&h, path, kind);
        unet_free(&h);
        return rc;
    }
    st_writer w;
    st_writer_init(&w);
    char name[UNET_NAME_MAX + 8], buf[64];
    int rc = 0, n = 0;
    for (int i = 0; i < m->params.n && !rc; i++) {
        const unet_param *p = &m->params.items[i];
        if (p->kind != kind) continue;
        file_name(name, p);
        rc = st_writer_add_tensor(&w, name, &p->t);
        n++;
    }
    if (!rc && n == 0) rc = err_set("%s: the model has no %s tensors to save", path,
                                    kind == PARAM_LORA ? "LoRA" : "base");
    if (!rc && kind == PARAM_LORA) {
        const lora_config *l = &m->params.lora;
        snprintf(buf, sizeof buf, "%d", l->rank);
        rc = st_writer_set_meta(&w, "lora_rank", buf);
        snprintf(buf, sizeof buf, "%.9g", (double)l->alpha);
        if (!rc) rc = st_writer_set_meta(&w, "lora_alpha", buf);
        if (!rc) rc = st_writer_set_meta(&w, "lora_targets", l->targets);
        if (!rc) rc = save_diffusers_meta(m, &w);
    }
    if (!rc) rc = st_writer_save(&w, path);
    st_writer_free(&w);
    return rc ? err_wrap("unet_save %s", path) : 0;
}

int unet_load(unet *m, const char *path, param_kind kind) {
    if (m->params.params.device != DEVICE_CPU) {  // the twin starts as m, so a failed load changes nothing
        unet h;
        if (host_twin(m, &h)) return err_wrap("unet_load %s", path);
        int rc = unet_load(&h, path, kind);
        if (!rc) rc = unet_copy_params(m, &h);
        unet_free(&h);
        return rc;
    }
    st_file f;
    if (st_open(path, &f)) return -1;
    char name[UNET_NAME_MAX + 8];
    param_naming nm = {.prefix = kind == PARAM_LORA ? LORA_PREFIX : ""};
    if (ptab_match_file(&m->params, &f, kind, &nm)) {
        st_close(&f);
        return err_wrap("unet_load %s", path);
    }
    // An adapter's scale comes from the model's lora_config, so the file's own scale
    // (alpha rules of models/lora_set.h) must agree, or the adapter acts at the wrong
    // strength: a merged file has alpha = rank, an expert its training alpha.
    for (int i = 0; kind == PARAM_LORA && i < m->params.n; i++) {
        const unet_param *p = &m->params.items[i];
        const char *sa = ".lora_A.weight";
        size_t nl = strlen(p->name), sl = strlen(sa);
        if (p->kind != PARAM_LORA || nl <= sl || strcmp(p->name + nl - sl, sa)) continue;
        snprintf(name, sizeof name, "%.*s", (int)(nl - sl), p->name);
        double alpha, r = (double)p->t.shape[0], want = (double)m->params.lora.alpha / m->params.lora.rank;
        int rc = lora_file_alpha(&f, name, (int)r, &alpha);
        if (!rc && fabs(alpha / r - want) > 1e-6 * want)
            rc = err_set("unet_load %s: module '%s' has scale alpha / rank = %g / %g, the model %g / %d", path,
                         name, alpha, r, (double)m->params.lora.alpha, m->params.lora.rank);
        if (rc) {
            st_close(&f);
            return -1;
        }
    }
    // Everything matches: only now are the model's weights overwritten.
    if (ptab_read_file(&m->params, &f, kind, &nm)) {
        st_close(&f);
        return err_wrap("unet_load");
    }
    st_close(&f);
    return 0;
}
