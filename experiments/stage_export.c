// The export bundle: one method's test images with their prompts and question lists,
// in the formats the external scorers read, so that images of a real model (world
// "sd", which the exact evaluator cannot read) are scored by TIFA's and DSG's own VQA
// code. Layout (dir = an eval stage's export/):
//
//   images/<id>.png        one per test prompt; id = "<skill>_<index in the skill>"
//   prompts.json           [{"id", "caption", "skill", "image"}]  (TIFA's text inputs
//                          plus the image's path relative to dir)
//   tifa_questions.json    [{"id", "caption", "question", "choices", "answer",
//                          "answer_type", "element"}]  (TIFA v1.0's question_answers)
//   dsg_questions.csv      item_id,text,keywords,proposition_id,dependency,
//                          category_broad,category_detailed,tuple,
//                          question_natural_language  (DSG-1k's annotation columns;
//                          proposition ids from 1, dependency "0" for a root or the
//                          parents' ids joined by ",")
//   manifest.json          what drew the images (the caller's JSON object) plus
//                          counts and the ids that have no questions
//
// Questions are the exact evaluator's (data/questions.h), so they exist for prompts the
// shapes grammar parses completely (every prompt the generators write); a prompt from a
// file with words the grammar does not know gets no questions here and is listed in
// the manifest, for the scorers' own question generation.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_io.h"
#include "data/prompt_parse.h"
#include "data/questions.h"
#include "experiments/pipeline.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
static void csv_field(FILE *f, const char *s, int last) {
    if (strpbrk(s, ",\"\n\r")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

static const char *entity_noun(const scene_graph *g, int e) {
    if (e < 0) return "background";
    const entity *x = &g->entities[e];
    return x->count > 1 ? shape_plurals[x->shape] : shape_names[x->shape];
}

// DSG's category, keywords and tuple of one question ("attribute", "color",
// "circle, red", "attribute - color (circle, red)").
static void dsg_parts(const scene_graph *g, const question *q, const char **broad, const char **detail,
                      char *keys, size_t n) {
    const char *a = entity_noun(g, q->entity);
    switch (q->kind) {
    case QUESTION_EXIST:
        *broad = "entity", *detail = "whole";
        snprintf(keys, n, "%s", a);
        break;
    case QUESTION_COLOR:
    case QUESTION_BACKGROUND:
        *broad = "attribute", *detail = "color";
        snprintf(keys, n, "%s, %s", a, color_names[q->value]);
        break;
    case QUESTION_SIZE:
        *broad = "attribute", *detail = "size";
        snprintf(keys, n, "%s, %s", a, size_names[q->value]);
        break;
    case QUESTION_FILL:
        *broad = "attribute", *detail = "texture";
        snprintf(keys, n, "%s, %s", a, fill_names[q->value]);
        break;
    case QUESTION_COUNT:
        *broad = "other", *detail = "count";
        snprintf(keys, n, "%s, %s%d", a, q->at_least ? ">=" : "==", q->value);
        break;
    default:  // QUESTION_RELATION
        *broad = "relation", *detail = "spatial";
        snprintf(keys, n, "%s, %s, %s", a, entity_noun(g, q->other), relation_names[q->value]);
        break;
    }
}

// TIFA's element type of a question (its answer_type field).
static const char *tifa_type(int kind) {
    static const char *const t[QUESTION_KINDS] = {"object", "color", "attribute", "attribute",
                                                  "counting", "spatial", "color"};
    return t[kind];
}

static void dsg_rows(FILE *f, const char *id, const char *prompt, const scene_graph *g) {
    question_set qs;
    questions_dsg(g, &qs);
    for (int i = 0; i < qs.n; i++) {
        const question *q = &qs.q[i];
        const char *broad, *detail;
        char keys[160], tuple[256], pid[16], dep[32] = "0";
        dsg_parts(g, q, &broad, &detail, keys, sizeof keys);
        snprintf(tuple, sizeof tuple, "%s - %s (%s)", broad, detail, keys);
        snprintf(pid, sizeof pid, "%d", i + 1);
        if (q->n_parents == 1) snprintf(dep, sizeof dep, "%d", q->parents[0] + 1);
        if (q->n_parents == 2) snprintf(dep, sizeof dep, "%d,%d", q->parents[0] + 1, q->parents[1] + 1);
        csv_field(f, id, 0), csv_field(f, prompt, 0), csv_field(f, keys, 0), csv_field(f, pid, 0);
        csv_field(f, dep, 0), csv_field(f, broad, 0), csv_field(f, detail, 0), csv_field(f, tuple, 0);
        csv_field(f, q->text, 1);
    }
}

static void tifa_items(cJSON *arr, const char *id, const char *prompt, const scene_graph *g) {
    question_set qs;
    questions_tifa(g, &qs);
    for (int i = 0; i < qs.n; i++) {
        const question *q = &qs.q[i];
        const char *choices[16];
        int nc = question_choices(q, choices, 16);
        cJSON *o = cJSON_CreateObject(), *ch = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "caption", prompt);
        cJSON_AddStringToObject(o, "question", q->text);
        for (int k = 0; k < nc; k++) cJSON_AddItemToArray(ch, cJSON_CreateString(choices[k]));
        cJSON_AddItemToObject(o, "choices", ch);
        cJSON_AddStringToObject(o, "answer", q->answer >= 0 && q->answer < nc ? choices[q->answer] : "");
        cJSON_AddStringToObject(o, "answer_type", tifa_type(q->kind));
        cJSON_AddStringToObject(o, "element", entity_noun(g, q->entity));
        cJSON_AddItemToArray(arr, o);
    }
}

static int write_json(const char *path, cJSON *o) {
    char *text = cJSON_Print(o);
    CHECK(text);
    size_t n = strlen(text);
    text[n] = '\n';
    int rc = atomic_write(path, text, n + 1);
    cJSON_free(text);
    return rc;
}

int export_bundle(const char *dir, char **prompts, const int *skills, int n, const uint8_t *rgb, int S,
                  cJSON *manifest) {
    char path[4400];
    snprintf(path, sizeof path, "%s/images", dir);
    if (mkdir_p(path)) {
        cJSON_Delete(manifest);
        return -1;
    }
    cJSON *items = cJSON_CreateArray(), *tifa = cJSON_CreateArray(), *missing = cJSON_CreateArray();
    afile csv;
    snprintf(path, sizeof path, "%s/dsg_questions.csv", dir);
    if (afile_open(&csv, path)) {
        cJSON_Delete(items), cJSON_Delete(tifa), cJSON_Delete(missing), cJSON_Delete(manifest);
        return -1;
    }
    fputs("item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,"
          "question_natural_language\n", csv.f);
    int rc = 0, per[SKILL_KINDS + 1] = {0}, with_q = 0;
    for (int i = 0; i < n && !rc; i++) {
        int s = skills[i] >= 0 && skills[i] < SKILL_KINDS ? skills[i] : SKILL_KINDS - 1;
        char id[64], rel[96];
        snprintf(id, sizeof id, "%s_%03d", skill_names[s], per[s]++);
        snprintf(rel, sizeof rel, "images/%s.png", id);
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        rc = png_write(path, rgb + (size_t)i * S * S * 3, S, S);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "caption", prompts[i]);
        cJSON_AddStringToObject(o, "skill", skill_names[s]);
        cJSON_AddStringToObject(o, "image", rel);
        cJSON_AddItemToArray(items, o);
        scene_graph g;
        if (prompt_parse(prompts[i], &g, NULL) != 0) {
            cJSON_AddItemToArray(missing, cJSON_CreateString(id));
            continue;
        }
        dsg_rows(csv.f, id, prompts[i], &g);
        tifa_items(tifa, id, prompts[i], &g);
        with_q++;
    }
    if (rc) afile_abort(&csv);
    else rc = afile_commit(&csv);
    snprintf(path, sizeof path, "%s/prompts.json", dir);
    if (!rc) rc = write_json(path, items);
    snprintf(path, sizeof path, "%s/tifa_questions.json", dir);
    if (!rc) rc = write_json(path, tifa);
    cJSON_Delete(items), cJSON_Delete(tifa);
    cJSON_AddNumberToObject(manifest, "n_images", n);
    cJSON_AddNumberToObject(manifest, "image_size", S);
    cJSON_AddNumberToObject(manifest, "n_with_questions", with_q);
    cJSON_AddItemToObject(manifest, "ids_without_questions", missing);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (!rc) rc = write_json(path, manifest);
    cJSON_Delete(manifest);
    return rc;
}
