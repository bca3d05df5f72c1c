// The eval stage: one method (base weights + folded adapters, or a mixture of
// experts), held-out test prompts of every skill, the exact DSG/TIFA evaluator and the
// image-quality distance to ground-truth renders of the same prompts. A guidance scale
// from a list is chosen on the validation prompts, never on test (TARGETS.md). World sd
// has no exact evaluator: its test images go into the export bundle (stage_export.c)
// for external TIFA/DSG, and scores.json says "scored": false.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_quality.h"
#include "experiments/pipeline.h"
#include "models/bundle.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

// Every skill's prompts of one split, concatenated, with their skills.
static int read_split(const pipeline_cfg *c, const char *dir, const char *split, char ***prompts,
                      int **skills, int *n) {
    int sk[SKILL_KINDS], ns;
    if (pipeline_skills(c, sk, &ns)) return -1;
    *prompts = NULL, *skills = NULL, *n = 0;
    for (int k = 0; k < ns; k++) {
        char path[4200], **p;
        int m;
        snprintf(path, sizeof path, "%s/%s.%s.txt", dir, skill_names[sk[k]], split);
        if (prompts_read(path, &p, &m)) return -1;
        *prompts = realloc(*prompts, sizeof(char *) * (size_t)(*n + m + 1));
        *skills = realloc(*skills, sizeof(int) * (size_t)(*n + m + 1));
        CHECK(*prompts && *skills);
        for (int i = 0; i < m; i++) (*prompts)[*n + i] = p[i], (*skills)[*n + i] = sk[k];
        *n += m;
        free(p);
    }
    return 0;
}

// What drew a method's exported images (manifest.json of the export bundle).
static cJSON *export_manifest(const pipeline_cfg *c, const char *const *adapters, const float *w,
                              int n_adapters, const char *moe_routers, const eval_sampling *s) {
    cJSON *m = cJSON_CreateObject(), *a = cJSON_CreateArray();
    char hash[24] = "";
    cJSON_AddStringToObject(m, "selma_version", SELMA_VERSION);
    cJSON_AddStringToObject(m, "world", c->world);
    cJSON_AddStringToObject(m, "model", c->base);
    if (!bundle_hash(c->base, hash, sizeof hash)) cJSON_AddStringToObject(m, "model_hash", hash);
    for (int i = 0; i < n_adapters; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", adapters[i]);
        cJSON_AddNumberToObject(o, "weight", w[i]);
        cJSON_AddItemToArray(a, o);
    }
    cJSON_AddItemToObject(m, "adapters_folded", a);
    if (moe_routers) cJSON_AddStringToObject(m, "moe_routers", moe_routers);
    cJSON_AddStringToObject(m, "sampler", s->sampler ? "euler" : "ddim");
    cJSON_AddNumberToObject(m, "steps", s->steps);
    cJSON_AddNumberToObject(m, "guidance_scale", s->cfg);
    cJSON_AddNumberToObject(m, "seed", (double)s->seed);
    cJSON_AddStringToObject(m, "seeds", "image i of the split (skills in config order) uses seed + i");
    return m;
}

int stage_eval(const pipeline_cfg *c, const char *prompts_dir, const char *const *adapters,
               const float *w, int n_adapters, const char *moe_routers, uint64_t seed,
               const char *out_dir) {
    eval_sampling s = {.steps = c->eval_steps, .sampler = c->eval_sampler, .batch = c->eval_batch,
                       .cfg = c->eval_cfg[0], .seed = seed * 1000003u};
    char **prompts = NULL;
    int *skills = NULL, n = 0, S = 0, rc = 0;
    uint8_t *rgb = NULL;
    double best = -1, val_dsg[PIPE_MAX_CFG] = {0};
    if (c->n_eval_cfg > 1) {
        if (read_split(c, prompts_dir, "val", &prompts, &skills, &n)) return -1;
        for (int k = 0; k < c->n_eval_cfg && !rc; k++) {
            eval_sampling v = s;
            v.cfg = c->eval_cfg[k], v.seed = seed * 1000003u + 0x76616cu;
            rc = draw_images(c->base, adapters, w, n_adapters, moe_routers, prompts, n, &v, &rgb, &S);
            if (rc) break;
            eval_totals t;
            eval_init(&t);
            score_images(prompts, skills, rgb, n, S, &t);
            free(rgb), rgb = NULL;
            double tifa, cd, ct;
            long cnt;
            eval_mean(&t, -1, &val_dsg[k], &tifa, &cd, &ct, &cnt);
            log_line("eval: guidance %g: validation DSG %.4f", c->eval_cfg[k], val_dsg[k]);
            if (val_dsg[k] > best) best = val_dsg[k], s.cfg = c->eval_cfg[k];
        }
        prompts_free(prompts, n);
        free(skills);
        prompts = NULL, skills = NULL, n = 0;
        if (rc) return -1;
    }
    if (read_split(c, prompts_dir, "test", &prompts, &skills, &n)) return -1;
    rc = draw_images(c->base, adapters, w, n_adapters, moe_routers, prompts, n, &s, &rgb, &S);
    int scored = pipeline_scored(c);
    eval_totals t;
    eval_init(&t);
    if (!rc && scored) score_images(prompts, skills, rgb, n, S, &t);
    char path[4200];
    if (!rc && (c->eval_export || !scored)) {
        snprintf(path, sizeof path, "%s/export", out_dir);
        rc = export_bundle(path, prompts, skills, n, rgb, S,
                           export_manifest(c, adapters, w, n_adapters, moe_routers, &s));
        if (!rc) log_line("eval: %d test images and their questions exported to %s", n, path);
    }
    image_quality_result q = {0};
    if (!rc && c->eval_quality) {
        // The references: ground-truth renders of the same test prompts, placed from a
        // fixed seed, so every method is compared with the same set.
        uint8_t *ref = malloc((size_t)n * S * S * 3);
        CHECK(ref);
        for (int i = 0; i < n && !rc; i++) rc = render_prompt(prompts[i], S, 0x67740000u + (uint64_t)i, ref + (size_t)i * S * S * 3);
        image_quality_opts qo;
        image_quality_defaults(&qo);
        if (!rc) rc = image_quality_images(rgb, n, S, S, ref, n, S, S, &qo, &q);
        free(ref);
    }
    if (!rc) {
        // The first test image of each skill, for the report's grid.
        int sk[SKILL_KINDS], ns, k = 0;
        pipeline_skills(c, sk, &ns);
        uint8_t *first = malloc((size_t)ns * S * S * 3);
        CHECK(first);
        for (int i = 0; i < n && k < ns; i++)
            if (skills[i] == sk[k]) memcpy(first + (size_t)k++ * S * S * 3, rgb + (size_t)i * S * S * 3, (size_t)S * S * 3);
        snprintf(path, sizeof path, "%s/samples.u8", out_dir);
        rc = atomic_write(path, first, (size_t)k * S * S * 3);
        free(first);
    }
    if (!rc && !scored) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddFalseToObject(o, "scored");
        cJSON_AddStringToObject(o, "world", c->world);
        cJSON_AddNumberToObject(o, "n", n);
        cJSON_AddNumberToObject(o, "cfg", s.cfg);
        cJSON_AddNumberToObject(o, "image_size", S);
        cJSON_AddStringToObject(o, "export", "export");
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        snprintf(path, sizeof path, "%s/scores.json", out_dir);
        rc = atomic_write(path, text, strlen(text));
        free(text);
    } else if (!rc) {
        cJSON *o = eval_scores_json(&t, -1, 0), *per = cJSON_CreateObject();
        for (int k = 0; k <= SKILL_STYLE; k++)
            if (t.n[k]) cJSON_AddItemToObject(per, skill_names[k], eval_scores_json(&t, k, 0));
        cJSON_AddItemToObject(o, "skills", per);
        cJSON_AddNumberToObject(o, "cfg", s.cfg);
        cJSON_AddNumberToObject(o, "image_size", S);
        if (c->eval_quality) cJSON_AddNumberToObject(o, "kid", q.kid);
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        snprintf(path, sizeof path, "%s/scores.json", out_dir);
        rc = atomic_write(path, text, strlen(text));
        free(text);
        double dsg, tifa, cd, ct;
        long cnt;
        eval_mean(&t, -1, &dsg, &tifa, &cd, &ct, &cnt);
        char kid[48] = "";
        if (c->eval_quality) snprintf(kid, sizeof kid, " KID %.4f", q.kid);
        log_line("eval: %ld test prompts, guidance %g: DSG %.4f TIFA %.4f%s", cnt, s.cfg, dsg, tifa, kid);
    }
    free(rgb);
    prompts_free(prompts, n);
    free(skills);
    return rc;
}
