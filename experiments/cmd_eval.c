// `selma eval`: DSG and TIFA scores of a dataset's (prompt, image) pairs with the
// shapes world's exact evaluator (data/evaluate.h), overall and per skill.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/evaluate.h"
#include "data/render.h"
#include "experiments/commands.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/rng.h"

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: selma eval --dataset FILE.h5 [options]\n"
            "  --dataset FILE       any HDF5 file with /prompt and /image (N x H x W x 3 uint8);\n"
            "                       /skill optional (else every item counts as 'unknown')\n"
            "  --json OUT           also write the scores as JSON (atomically)\n"
            "  --blur SIGMA         blur every image first (pixels; evaluator robustness)\n"
            "  --noise SD           then add Gaussian noise (fraction of 255)\n"
            "  --shuffle-prompts    pair each image with another item's prompt of the same skill\n"
            "  --seed K             seed of the noise and the shuffle (default 0)\n");
}

static int parse_float(const char *opt, const char *v, float lo, float hi, float *out) {
    char *end;
    double x = strtod(v, &end);
    if (*end || !*v || !(x >= lo && x <= hi)) {
        fprintf(stderr, "selma eval: %s: '%s' is not a number in [%g, %g]\n", opt, v, lo, hi);
        return -1;
    }
    *out = (float)x;
    return 0;
}

// prompt_of[i]: the prompt image i is scored against. Shuffled, it is the next item of
// the same skill in a random cycle, so no image keeps its own prompt (skills with one
// item excepted).
static void pair_prompts(const dataset *d, int shuffle, uint64_t seed, int *prompt_of) {
    for (int i = 0; i < d->n; i++) prompt_of[i] = i;
    if (!shuffle) return;
    int *idx = malloc(sizeof(int) * (size_t)(d->n ? d->n : 1));
    CHECK(idx);
    rng r = rng_make(seed, 0x73687566666c65ULL);  // "shuffle"
    for (int s = 0; s < SKILL_KINDS; s++) {
        int m = 0;
        for (int i = 0; i < d->n; i++)
            if (d->skill[i] == s) idx[m++] = i;
        rng_shuffle(&r, idx, m);
        for (int k = 0; k < m; k++) prompt_of[idx[k]] = idx[(k + 1) % m];
    }
    free(idx);
}

static int write_json(const char *path, const char *dataset_path, const eval_totals *t, float blur,
                      float noise, int shuffle) {
    cJSON *doc = eval_scores_json(t, -1, 1), *skills = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "dataset", dataset_path);
    for (int s = 0; s < SKILL_KINDS; s++)
        if (t->n[s]) cJSON_AddItemToObject(skills, skill_names[s], eval_scores_json(t, s, 1));
    cJSON_AddItemToObject(doc, "skills", skills);
    cJSON *kinds = cJSON_CreateObject();
    for (int k = 0; k < QUESTION_KINDS; k++)
        if (t->asked[k]) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "asked", (double)t->asked[k]);
            cJSON_AddNumberToObject(o, "yes", (double)t->yes[k] / t->asked[k]);
            cJSON_AddItemToObject(kinds, question_kind_names[k], o);
        }
    cJSON_AddItemToObject(doc, "questions", kinds);
    cJSON_AddNumberToObject(doc, "unparsed_prompts", (double)t->prompts_unparsed);
    cJSON_AddNumberToObject(doc, "unparsed_words", (double)t->words_unparsed);
    cJSON_AddNumberToObject(doc, "no_question_prompts", (double)t->no_questions);
    cJSON_AddNumberToObject(doc, "blur", blur);
    cJSON_AddNumberToObject(doc, "noise", noise);
    cJSON_AddBoolToObject(doc, "shuffle_prompts", shuffle);
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    CHECK(text);
    size_t len = strlen(text);
    text[len] = '\n';  // cJSON_Print's buffer ends in a NUL we may overwrite
    int rc = atomic_write(path, text, len + 1);
    free(text);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *path = NULL, *json = NULL;
    float blur = 0, noise = 0;
    int shuffle = 0;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { eval_usage(stdout); return 0; }
        if (!strcmp(k, "--shuffle-prompts")) { shuffle = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "selma eval: unknown or incomplete option '%s'\n", k);
            eval_usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--dataset")) path = v;
        else if (!strcmp(k, "--json")) json = v;
        else if (!strcmp(k, "--blur")) { if (parse_float(k, v, 0, 10, &blur)) return 2; }
        else if (!strcmp(k, "--noise")) { if (parse_float(k, v, 0, 1, &noise)) return 2; }
        else if (!strcmp(k, "--seed")) {
            char *end;
            seed = strtoull(v, &end, 10);
            if (*end || !*v || *v == '-') {
                fprintf(stderr, "selma eval: --seed: '%s' is not a non-negative integer\n", v);
                return 2;
            }
        }
        else {
            fprintf(stderr, "selma eval: unknown option '%s'\n", k);
            eval_usage(stderr);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "selma eval: --dataset is required\n");
        eval_usage(stderr);
        return 2;
    }
    dataset d;
    if (dataset_read(path, &d)) {
        fprintf(stderr, "selma eval: %s\n", err_msg());
        return 1;
    }
    if (d.n == 0) {
        fprintf(stderr, "selma eval: %s: holds no images\n", path);
        dataset_free(&d);
        return 1;
    }
    int *prompt_of = malloc(sizeof(int) * (size_t)d.n);
    CHECK(prompt_of);
    pair_prompts(&d, shuffle, seed, prompt_of);
    size_t stride = (size_t)d.height * d.width * 3;
    eval_totals t;
    eval_init(&t);
    for (int i = 0; i < d.n; i++) {
        uint8_t *img = d.image + (size_t)i * stride;
        if (blur > 0 || noise > 0) image_degrade(img, d.width, d.height, blur, noise, seed * 1000003 + (uint64_t)i);
        eval_add(&t, d.prompt[prompt_of[i]] ? d.prompt[prompt_of[i]] : "", d.skill[i], img, d.width, d.height, NULL);
    }

    printf("eval: %s: %d images of %dx%d%s", path, d.n, d.width, d.height, shuffle ? ", prompts shuffled within skills" : "");
    if (blur > 0 || noise > 0) printf(", blur %.2f px, noise %.3f", blur, noise);
    printf("\n%-9s %6s %7s %7s %11s %12s\n", "skill", "n", "DSG", "TIFA", "chance DSG", "chance TIFA");
    for (int s = -1; s < SKILL_KINDS; s++) {
        double dsg, tifa, cd, ct;
        long n;
        if (s >= 0 && !t.n[s]) continue;
        eval_mean(&t, s, &dsg, &tifa, &cd, &ct, &n);
        printf("%-9s %6ld %7.4f %7.4f %11.4f %12.4f\n", s < 0 ? "all" : skill_names[s], n, dsg, tifa, cd, ct);
    }
    printf("DSG questions answered yes, by kind (parents aside):");
    for (int k = 0; k < QUESTION_KINDS; k++)
        if (t.asked[k]) printf(" %s %.4f (%ld)", question_kind_names[k], (double)t.yes[k] / t.asked[k], t.asked[k]);
    printf("\n");
    if (t.prompts_unparsed) {
        printf("unparsed: %ld words in %ld prompts (scored on what parsed), e.g.\n", t.words_unparsed,
               t.prompts_unparsed);
        for (int i = 0; i < t.n_examples; i++) printf("  %s\n", t.examples[i]);
    }
    if (t.no_questions) printf("no questions: %ld prompts stated nothing to ask about (scored 0)\n", t.no_questions);
    int rc = 0;
    if (json && write_json(json, path, &t, blur, noise, shuffle)) {
        fprintf(stderr, "selma eval: %s\n", err_msg());
        rc = 1;
    }
    free(prompt_of);
    dataset_free(&d);
    return rc;
}
