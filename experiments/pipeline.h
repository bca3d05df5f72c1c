// The SELMA pipeline (`selma run CONFIG`): prompts -> generate -> train experts ->
// merge -> eval -> report, driven by one INI config (experiments/configs/*.ini).
//
// Stages and what each one's output depends on (its "inputs": the config keys it
// reads plus the hashes of the stages before it, hashed into its directory name
// <run>/work/<stage>-<hash>/, with the inputs in manifest.txt and a DONE marker
// written last). A rerun skips every stage whose DONE is there; a changed key changes
// the hash of exactly the stages that read it, so only those rerun, and a sweep's
// variants share every stage they agree on.
//   prompts   [prompts]                           <skill>.{train,val,test}.txt
//   data      prompts + [generate] + image model  <skill>.h5 (self-generated or gt)
//   train     data + [lora] [train] + base + seed lora.safetensors (one per skill,
//             and "mixed": every skill's data), checkpoints/ (resumed when interrupted)
//   merge     the experts + [merge]               lora.safetensors (lora_merge)
//   moe       the experts + data + [moe]          routers.safetensors (lora_moe)
//   eval      the method's adapters + [eval]      scores.json: DSG/TIFA per skill on the
//             + prompts + base + seed             test prompts, image quality (KID);
//                                                 samples.u8 for the report's grid
// (train also reads [eval] steps/sampler/cfg when it selects on validation.)
// Model selection (which expert checkpoint: train.select = val; which guidance scale:
// several values in eval.cfg) looks at the validation prompts only, never at test.
// Seeds: run.seeds K, seed k = run.seed + k changes the LoRA init, the data order and
// the evaluation's sampling noise; the training images are drawn once per data stage.
#ifndef SELMA_EXPERIMENTS_PIPELINE_H
#define SELMA_EXPERIMENTS_PIPELINE_H

#include <stdint.h>

#include "data/evaluate.h"
#include "data/shapes.h"
#include "experiments/results.h"
#include "runtime/comm.h"
#include "runtime/config.h"

#define PIPE_MAX_CFG 8
#define PIPE_MAX_VARIANTS 32
#define PIPE_MAX_SEEDS RESULTS_MAX_SEEDS

enum { GEN_SOURCE_MODEL, GEN_SOURCE_GT };
enum { SELECT_LAST, SELECT_VAL };

typedef struct pipeline_cfg {
    // [run]
    char name[64], dir[1024], methods[256], note[1024];
    int seeds, threads;
    int64_t seed;
    // [model]
    char base[1024], image_source[1024];
    // [prompts]
    char skills[128];
    char prompt_file[1024];  // "": the generators; else "skill<TAB>prompt" lines
    int n_train, n_val, n_test;
    int64_t prompt_seed;
    double threshold;
    // [generate]
    int gen_source, gen_steps, gen_sampler, gen_batch, gen_filter;
    double gen_cfg, gen_filter_min;
    // [lora]
    int rank;
    float alpha;
    char targets[256];
    // [train]
    int steps, batch, warmup, checkpoint_every, select, log_every, max_nonfinite;
    double lr, weight_decay, grad_clip, ema_decay, caption_dropout;
    int device;  // 0 cpu, 1 cuda: where the experts' UNet trains (MoE routers: CPU)
    int shards;  // gradient accumulation: the batch run in `shards` pieces, one at a time
    // [merge]
    char merge_method[32];
    int merge_rank;
    double merge_density;
    // [moe]
    int moe_steps, moe_batch;
    double moe_lr, moe_temperature;
    // [eval]
    int eval_steps, eval_sampler, eval_batch, eval_quality, eval_export, n_eval_cfg;
    float eval_cfg[PIPE_MAX_CFG];
    // Not a key: the base model's world ("shapes" or "sd"), set by pipeline_load. World
    // sd has no exact evaluator: its eval stage exports instead of scoring.
    char world[16];
} pipeline_cfg;

extern const cfg_field pipeline_fields[];
extern const int pipeline_n_fields;

void pipeline_defaults(pipeline_cfg *c);

// Skills the config names ("count,spatial"), in order; -1 with a message naming
// file:line when a name is not a skill.
int pipeline_skills(const pipeline_cfg *c, int *skills, int *n);

// A variant of the sweep: the config with one combination of the [sweep] values.
typedef struct pipeline_variant {
    pipeline_cfg cfg;
    char label[256];  // "lora.rank=4 merge.method=svd"; "" without a sweep
} pipeline_variant;

// Loads CONFIG, applies "section.key=value" overrides, expands [sweep] and validates
// every variant (unknown key, bad value, missing model, unknown method or skill,
// impossible combination) before any work; errors name FILE:LINE (or "command line").
int pipeline_load(const char *path, char **overrides, int n_over, pipeline_variant **vars,
                  int *n_vars);

// Runs every stage of every variant, writes config.ini (resolved), log.txt and the
// report into the run directory. stop_after > 0: expert training stops after that
// many steps (an interruption, for tests); the run then returns 3 without a report.
// Over several ranks (w's size > 1) every rank calls it: the trainings spread over the
// ranks, rank 0 does the rest and alone writes (experiments/pipeline_ranks.h).
int pipeline_run(const char *path, char **overrides, int n_over, long stop_after, comm *w);

// ---- stages (experiments/stage_*.c) ----

// The prompts of every skill in the config, split into <dir>/<skill>.{train,val,test}.txt.
int stage_prompts(const pipeline_cfg *c, const char *dir);
// [prompts] file parsed and counted (pipeline_load runs it before any work): errors
// name the file and line, or the skill with too few distinct prompts.
int prompt_file_check(const pipeline_cfg *c);
// Reads one split file: prompts (malloc'd, free each and the array).
int prompts_read(const char *path, char ***prompts, int *n);
void prompts_free(char **prompts, int n);
// The training images of one skill: drawn by model (or rendered, source = gt) for the
// prompts in prompts_dir, optionally filtered by the evaluator -> out (.h5).
int stage_generate(const pipeline_cfg *c, const char *model, const char *prompts_dir, int skill,
                   const char *out);

// LoRA training on one or more datasets (`selma train` and the train stage).
typedef struct lora_train_opts {
    const char *model;           // base bundle
    const char *data[SKILL_KINDS];
    int n_data;
    const char *out;             // adapter file
    const char *ckpt_dir;        // checkpoints (resumed from the newest complete one)
    const char *loss_log;        // "step loss" lines, or NULL
    int rank, steps, batch, warmup, checkpoint_every, log_every, max_nonfinite;
    float alpha;
    const char *targets;
    double lr, weight_decay, grad_clip, ema_decay, caption_dropout;
    uint64_t seed;
    int device;                  // device_kind of the UNet while training (DEVICE_CPU = 0)
    int shards;                  // the batch run in this many pieces, gradients averaged
                                 // (activations for batch / shards images; 0 or 1 = whole)
    long stop_after;             // > 0: stop there as an interruption would (returns 3)
    // A LoRA mixture of experts instead of a new adapter (models/lora_moe.h): the expert
    // files stay frozen and only the routers train; `out` gets the router file.
    const char *moe_experts[16];
    int n_moe;
    float moe_temperature;
    // Checkpoint selection on validation prompts: every checkpoint is scored (DSG of
    // images drawn from val prompts) and the best one becomes `out`. n_val 0: the last.
    char **val_prompts;
    int *val_skills, n_val;
    int val_steps, val_sampler;
    double val_cfg;
    // Called after every step (expert-parallel runs beat their heartbeat there), or NULL.
    void (*on_step)(void *ctx);
    void *on_step_ctx;
} lora_train_opts;
int lora_train_run(const lora_train_opts *o);

// Images of prompts drawn by the base model with adapters folded in (weights w):
// rgb (n, S, S, 3). Image i uses seed + i.
typedef struct eval_sampling {
    int steps, sampler, batch;
    double cfg;
    uint64_t seed;
} eval_sampling;
int draw_images(const char *model, const char *const *adapters, const float *w, int n_adapters,
                const char *moe_routers, char **prompts, int n, const eval_sampling *s,
                uint8_t **rgb, int *size);
// The ground-truth render of a prompt at S x S (rgb S*S*3), placed from seed.
int render_prompt(const char *prompt, int S, uint64_t seed, uint8_t *rgb);
// Loads the experts, merges them with lora_merge (default weights: 1/N for sums) and
// saves the result (PEFT form).
int merge_files(const char *const *experts, int n, const char *method, int rank, double density,
                const char *out);
// One method on the test prompts of every skill: the guidance scale chosen on the
// validation prompts when eval.cfg lists several, images drawn with the adapters
// folded in, DSG / TIFA per skill and the image-quality distance to ground-truth
// renders -> out_dir/scores.json (and samples.u8: the first test image of each skill).
int stage_eval(const pipeline_cfg *c, const char *prompts_dir, const char *const *adapters,
               const float *w, int n_adapters, const char *moe_routers, uint64_t seed,
               const char *out_dir);

// The export bundle of one method's test images (experiments/stage_export.c): PNGs,
// prompts, TIFA- and DSG-format question lists, and manifest.json = `manifest` (a cJSON
// object the caller made, with counts added; export_bundle deletes it).
struct cJSON;
int export_bundle(const char *dir, char **prompts, const int *skills, int n, const uint8_t *rgb, int S,
                  struct cJSON *manifest);
// A world without the exact evaluator (sd): scored externally from the export bundle.
int pipeline_scored(const pipeline_cfg *c);

// Adds every (prompt, image) pair's DSG / TIFA scores to t under its skill.
void score_images(char **prompts, const int *skills, const uint8_t *rgb, int n, int size,
                  eval_totals *t);

#endif
