// diffusers' lora_adapter_metadata, read and written (see lora_diffusers.h).
#include "models/lora_diffusers.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

#define PREFIX "unet."
#define PEFT_DEFAULT_R 8      // LoraConfig's defaults, used by PEFT when a field is absent
#define PEFT_DEFAULT_ALPHA 8

static int key_matches(const char *key, const char *module) {
    if (key[0] == '^') return !strcmp(key + 1, module);
    size_t k = strlen(key), m = strlen(module);
    return k <= m && !strcmp(module + m - k, key) && (k == m || module[m - k - 1] == '.');
}

// The first pattern entry matching the module, or NULL.
static const cJSON *pattern_entry(const cJSON *pattern, const char *module) {
    if (!cJSON_IsObject(pattern)) return NULL;
    for (const cJSON *e = pattern->child; e; e = e->next)
        if (key_matches(e->string, module)) return e;
    return NULL;
}

static const cJSON *field(const cJSON *j, const char *name) {
    char key[64];
    snprintf(key, sizeof key, PREFIX "%s", name);
    return cJSON_GetObjectItemCaseSensitive(j, key);
}

static int lookup(const st_file *f, const cJSON *j, const char *module, int rank, double *alpha) {
    const char *M = LORA_DIFFUSERS_META;
    if (cJSON_IsTrue(field(j, "use_rslora")) || cJSON_IsTrue(field(j, "use_dora")))
        return err_set("%s: __metadata__ %s: use_rslora / use_dora adapters are not supported", f->name, M);
    const cJSON *rp = field(j, "rank_pattern"), *ap = field(j, "alpha_pattern");
    if ((rp && !cJSON_IsObject(rp) && !cJSON_IsNull(rp)) || (ap && !cJSON_IsObject(ap) && !cJSON_IsNull(ap)))
        return err_set("%s: __metadata__ %s: rank_pattern / alpha_pattern is not a JSON object", f->name, M);
    const cJSON *r = pattern_entry(rp, module), *a = pattern_entry(ap, module);
    const char *rname = r ? "rank_pattern" : PREFIX "r", *aname = a ? "alpha_pattern" : PREFIX "lora_alpha";
    if (!r) r = field(j, "r");
    if (!a) a = field(j, "lora_alpha");
    double rv = PEFT_DEFAULT_R, av = PEFT_DEFAULT_ALPHA;
    if (r && (!cJSON_IsNumber(r) || (rv = r->valuedouble) < 1 || rv != floor(rv)))
        return err_set("%s: __metadata__ %s: %s for '%s' is not a positive integer", f->name, M, rname, module);
    if (a && (!cJSON_IsNumber(a) || !((av = a->valuedouble) > 0) || !isfinite(av)))
        return err_set("%s: __metadata__ %s: %s for '%s' is not a positive number", f->name, M, aname, module);
    if (rv != rank)
        return err_set("%s: __metadata__ %s: rank %g for '%s' (%s), but its lora_A has rank %d", f->name, M, rv,
                       module, rname, rank);
    *alpha = av;
    return 0;
}

int lora_diffusers_alpha(const st_file *f, const char *module, int rank, int *found, double *alpha) {
    const char *txt = st_meta_get(f, LORA_DIFFUSERS_META);
    *found = txt != NULL;
    if (!txt) return 0;
    cJSON *j = cJSON_Parse(txt);
    int rc = j && cJSON_IsObject(j) ? lookup(f, j, module, rank, alpha)
                                    : err_set("%s: __metadata__ %s is not a JSON object", f->name, LORA_DIFFUSERS_META);
    cJSON_Delete(j);
    return rc;
}

// Index of the most common value (the first on a tie).
static int most_common(const double *v, int n) {
    int best = 0, best_count = 0;
    for (int i = 0; i < n; i++) {
        int c = 0;
        for (int k = 0; k < n; k++) c += v[k] == v[i];
        if (c > best_count) best = i, best_count = c;
    }
    return best;
}

char *lora_diffusers_meta_json(const char *const *names, const int *ranks, const double *alphas, int n) {
    double *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    CHECK(r);
    for (int i = 0; i < n; i++) r[i] = ranks[i];
    int ri = n ? most_common(r, n) : 0, ai = n ? most_common(alphas, n) : 0;
    cJSON *j = cJSON_CreateObject(), *rp = cJSON_CreateObject(), *ap = cJSON_CreateObject();
    cJSON *targets = cJSON_CreateArray();
    CHECK(j && rp && ap && targets);
    CHECK(cJSON_AddNumberToObject(j, PREFIX "r", n ? r[ri] : PEFT_DEFAULT_R));
    CHECK(cJSON_AddNumberToObject(j, PREFIX "lora_alpha", n ? alphas[ai] : PEFT_DEFAULT_ALPHA));
    for (int i = 0; i < n; i++) {
        if (r[i] != r[ri]) CHECK(cJSON_AddNumberToObject(rp, names[i], r[i]));
        if (alphas[i] != alphas[ai]) CHECK(cJSON_AddNumberToObject(ap, names[i], alphas[i]));
        cJSON *s = cJSON_CreateString(names[i]);
        CHECK(s);
        cJSON_AddItemToArray(targets, s);
    }
    cJSON_AddItemToObject(j, PREFIX "rank_pattern", rp);
    cJSON_AddItemToObject(j, PREFIX "alpha_pattern", ap);
    cJSON_AddItemToObject(j, PREFIX "target_modules", targets);
    char *txt = cJSON_PrintUnformatted(j);
    CHECK(txt);
    cJSON_Delete(j);
    free(r);
    return txt;
}
