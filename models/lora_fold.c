// Folding LoRA files into a UNet's base weights (see lora_fold.h).
#include "models/lora_fold.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

// The base weight a module adapts, or NULL with a message (source names the file).
static unet_param *target_weight(unet *m, const lora_module *mod, const char *source) {
    char name[LORA_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s.weight", mod->name);
    unet_param *p = ptab_find(&m->params, name);
    if (!p || p->kind != PARAM_BASE) {
        err_set("%s: module '%s' (its lora_A / lora_down): the model has no weight '%s'", source, mod->name, name);
        return NULL;
    }
    int64_t out = p->t.shape[0], in = tensor_numel(&p->t) / out;
    int linear = p->t.ndim == 2 || (p->t.ndim == 4 && p->t.shape[2] == 1 && p->t.shape[3] == 1);
    if (!linear || mod->in != in || mod->out != out) {
        err_set("%s: module '%s': A (%d, %d) and B (%d, %d) do not fit weight '%s'", source, mod->name, mod->rank,
                mod->in, mod->out, mod->rank, name);
        return NULL;
    }
    return p;
}

int unet_fold_lora_set(unet *m, const lora_set *s, float weight, const char *source) {
    for (int i = 0; i < s->n; i++)  // every module first, so that a bad set changes nothing
        if (!target_weight(m, &s->mods[i], source)) return -1;
    for (int i = 0; i < s->n; i++) {
        const lora_module *mod = &s->mods[i];
        unet_param *p = target_weight(m, mod, source);
        float scale = (float)((double)weight * mod->alpha / mod->rank);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mod->out, mod->in, mod->rank, scale, mod->B,
                    mod->rank, mod->A, mod->in, 1.0f, p->t.data, mod->in);
    }
    return 0;
}

int unet_fold_lora(unet *m, const char *path, float weight, int *n_folded) {
    lora_set s;
    if (lora_set_load(&s, path)) return -1;
    int rc = unet_fold_lora_set(m, &s, weight, path);
    if (!rc && n_folded) *n_folded = s.n;
    lora_set_free(&s);
    return rc;
}

void lora_arg_split(char *arg, float *weight) {
    *weight = 1;
    char *colon = strrchr(arg, ':'), *end;
    if (!colon || !colon[1]) return;
    double x = strtod(colon + 1, &end);
    if (!*end) *weight = (float)x, *colon = 0;
}
