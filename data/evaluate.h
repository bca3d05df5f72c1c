// Scoring a set of (prompt, image) pairs with the exact evaluator: parse the prompt
// (prompt_parse.h), detect the image's objects (detect.h), answer the DSG and TIFA
// question sets (questions.h). Totals per skill; a dataset's score is the mean over
// its prompts, overall and per skill.
#ifndef SELMA_DATA_EVALUATE_H
#define SELMA_DATA_EVALUATE_H

#include <stdint.h>

#include "data/questions.h"
#include "data/shapes.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eval_totals {
    long n[SKILL_KINDS];
    double dsg[SKILL_KINDS], tifa[SKILL_KINDS];                // sums over prompts
    double chance_dsg[SKILL_KINDS], chance_tifa[SKILL_KINDS];  // random-answer floors
    long asked[QUESTION_KINDS], yes[QUESTION_KINDS];  // DSG questions by kind (prompt_scores)
    long no_questions;       // prompts with nothing to ask (scored 0)
    long prompts_unparsed;   // prompts with unparsed words (scored on the rest)
    long words_unparsed;
    int n_examples;
    char examples[4][200];   // "'words' in 'prompt'"
} eval_totals;

void eval_init(eval_totals *t);
// Scores one pair and adds it under `skill` (values outside the skills count as
// SKILL_UNKNOWN). rgb: h*w*3 uint8 HWC. out (may be NULL) gets the pair's scores.
void eval_add(eval_totals *t, const char *prompt, int skill, const uint8_t *rgb, int w, int h,
              prompt_scores *out);
// The same with the image's detections already made (detect_objects), so one image
// can be scored against several prompts at the cost of one detection.
void eval_add_detections(eval_totals *t, const char *prompt, int skill, const detections *d,
                         prompt_scores *out);
// Mean scores of one skill, or of everything when skill < 0. 0 when n is 0.
void eval_mean(const eval_totals *t, int skill, double *dsg, double *tifa, double *chance_dsg,
               double *chance_tifa, long *n);
// {"dsg", "tifa", "n"} of one skill (-1: all) as a cJSON object, plus "chance_dsg" and
// "chance_tifa" (the random-answer level) when with_chance; the caller owns it.
struct cJSON *eval_scores_json(const eval_totals *t, int skill, int with_chance);

#ifdef __cplusplus
}
#endif
#endif
