#include "data/evaluate.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "data/detect.h"
#include "data/prompt_parse.h"

void eval_init(eval_totals *t) { memset(t, 0, sizeof *t); }

void eval_add(eval_totals *t, const char *prompt, int skill, const uint8_t *rgb, int w, int h,
              prompt_scores *out) {
    detections d;
    detect_objects(rgb, w, h, &d);
    eval_add_detections(t, prompt, skill, &d, out);
}

void eval_add_detections(eval_totals *t, const char *prompt, int skill, const detections *d,
                         prompt_scores *out) {
    static __thread parse_info info;
    scene_graph g;
    prompt_scores s;
    if (skill < 0 || skill >= SKILL_KINDS) skill = SKILL_UNKNOWN;
    int bad = prompt_parse(prompt, &g, &info);
    if (bad) {
        t->prompts_unparsed++;
        t->words_unparsed += bad;
        if (t->n_examples < 4)
            snprintf(t->examples[t->n_examples++], sizeof t->examples[0], "'%.60s' in '%.120s'",
                     info.unparsed, prompt);
    }
    prompt_score(&g, d, &s);
    if (s.n_dsg == 0) t->no_questions++;
    for (int k = 0; k < QUESTION_KINDS; k++) {
        t->asked[k] += s.asked[k];
        t->yes[k] += s.yes[k];
    }
    t->n[skill]++;
    t->dsg[skill] += s.dsg;
    t->tifa[skill] += s.tifa;
    t->chance_dsg[skill] += s.chance_dsg;
    t->chance_tifa[skill] += s.chance_tifa;
    if (out) *out = s;
}

void eval_mean(const eval_totals *t, int skill, double *dsg, double *tifa, double *chance_dsg,
               double *chance_tifa, long *n) {
    double sum[4] = {0};
    long k = 0;
    for (int s = 0; s < SKILL_KINDS; s++) {
        if (skill >= 0 && s != skill) continue;
        k += t->n[s];
        sum[0] += t->dsg[s];
        sum[1] += t->tifa[s];
        sum[2] += t->chance_dsg[s];
        sum[3] += t->chance_tifa[s];
    }
    double *dst[4] = {dsg, tifa, chance_dsg, chance_tifa};
    for (int i = 0; i < 4; i++)
        if (dst[i]) *dst[i] = k ? sum[i] / k : 0;
    if (n) *n = k;
}

cJSON *eval_scores_json(const eval_totals *t, int skill, int with_chance) {
    double dsg, tifa, cd, ct;
    long n;
    eval_mean(t, skill, &dsg, &tifa, &cd, &ct, &n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "dsg", dsg);
    cJSON_AddNumberToObject(o, "tifa", tifa);
    cJSON_AddNumberToObject(o, "n", (double)n);
    if (with_chance) {
        cJSON_AddNumberToObject(o, "chance_dsg", cd);
        cJSON_AddNumberToObject(o, "chance_tifa", ct);
    }
    return o;
}
