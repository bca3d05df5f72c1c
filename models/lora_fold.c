// Folding LoRA files into a UNet's base weights (see lora_fold.h).
#include "models/lora_fold.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/lora_set.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

#define PREFIX "unet."
#define SUFFIX_A ".lora_A.weight"

// Checks every pair first (so that a bad file leaves the model untouched), then folds.
static int fold_pass(unet *m, const st_file *f, float weight, int apply, int *n) {
    char name[UNET_NAME_MAX + 32];
    size_t lp = strlen(PREFIX), la = strlen(SUFFIX_A);
    *n = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *a = &f->tensors[i];
        size_t len = strlen(a->name);
        int is_a = len > lp + la && !strcmp(a->name + len - la, SUFFIX_A);
        int is_b = len > lp + la && !strcmp(a->name + len - la, ".lora_B.weight");
        if (strncmp(a->name, PREFIX, lp) || (!is_a && !is_b))
            return err_set("%s: tensor '%s' is not a UNet LoRA tensor (unet.<module>.lora_{A,B}.weight)",
                           f->name, a->name);
        if (!is_a) continue;  // each pair is handled at its A
        int ml = (int)(len - lp - la);
        snprintf(name, sizeof name, "%.*s.lora_B.weight", (int)(len - la), a->name);
        const st_tensor *b = st_find(f, name);
        if (!b) return err_set("%s: '%s' has no lora_B partner '%s'", f->name, a->name, name);
        snprintf(name, sizeof name, "%.*s.weight", ml, a->name + lp);
        unet_param *p = ptab_find(&m->params, name);
        if (!p || p->kind != PARAM_BASE)
            return err_set("%s: tensor '%s': the model has no weight '%s'", f->name, a->name, name);
        int64_t out = p->t.shape[0], in = tensor_numel(&p->t) / out;
        int linear = p->t.ndim == 2 || (p->t.ndim == 4 && p->t.shape[2] == 1 && p->t.shape[3] == 1);
        if (!linear || a->ndim != 2 || b->ndim != 2 || a->shape[1] != in || b->shape[0] != out ||
            b->shape[1] != a->shape[0] || a->shape[0] < 1)
            return err_set("%s: tensor '%s': shapes of A (%lld, %lld) and B (%lld, %lld) do not fit weight '%s'",
                           f->name, a->name, (long long)a->shape[0], (long long)a->shape[1],
                           (long long)b->shape[0], (long long)b->shape[1], name);
        double alpha;  // per module: lora_alpha_pattern, lora_alpha or the rank (lora_set.h)
        snprintf(name, sizeof name, "%.*s", ml, a->name + lp);
        if (lora_file_alpha(f, name, (int)a->shape[0], &alpha)) return -1;
        (*n)++;
        if (!apply) continue;
        int r = (int)a->shape[0];
        float *A = malloc(sizeof(float) * (size_t)(r * in)), *B = malloc(sizeof(float) * (size_t)(out * r));
        CHECK(A && B);
        int rc = st_tensor_to_f32(f, a, A, (size_t)(r * in));
        if (!rc) rc = st_tensor_to_f32(f, b, B, (size_t)(out * r));
        if (!rc) {
            float scale = (float)(weight * alpha / r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out, (int)in, r, scale, B, r,
                        A, (int)in, 1.0f, p->t.data, (int)in);
        }
        free(A);
        free(B);
        if (rc) return -1;
    }
    return 0;
}

int unet_fold_lora(unet *m, const char *path, float weight, int *n_folded) {
    st_file f;
    if (st_open(path, &f)) return -1;
    int n = 0;
    int rc = fold_pass(m, &f, weight, 0, &n);
    if (!rc && n == 0) rc = err_set("%s: holds no UNet LoRA pairs", path);
    if (!rc) rc = fold_pass(m, &f, weight, 1, &n);
    st_close(&f);
    if (!rc && n_folded) *n_folded = n;
    return rc;
}
