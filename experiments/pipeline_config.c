// The pipeline's config: schema, defaults, [sweep] expansion and the checks made
// before any work (see pipeline.h).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "experiments/pipeline.h"
#include "models/bundle.h"
#include "models/lora_merge.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

static const char *const sources[] = {"model", "gt"};
static const char *const samplers[] = {"ddim", "euler"};
static const char *const selects[] = {"last", "val"};
static const char *const devices[] = {"cpu", "cuda"};  // runtime/tensor.h's device_kind order

#define P pipeline_cfg
const cfg_field pipeline_fields[] = {
    CFG_STRING(P, "run", "name", name, "the experiment's name (report title)"),
    CFG_STRING(P, "run", "dir", dir, "run directory: config.ini, log.txt, results.*, work/"),
    CFG_STRING(P, "run", "methods", methods, "rows: base, experts, mixed, selma, moe (comma-separated)"),
    CFG_STRING(P, "run", "note", note, "one line for the report (what this config scales down)"),
    CFG_INT(P, "run", "seeds", seeds, 1, PIPE_MAX_SEEDS, "seeds per method (mean and 95% interval)"),
    CFG_INT64(P, "run", "seed", seed, 0, 1e15, "seed k is seed + k (LoRA init, data order, eval noise)"),
    CFG_INT(P, "run", "threads", threads, 0, 256, "OpenBLAS threads (0 = its default)"),
    CFG_STRING(P, "model", "base", base, "the model being improved (a bundle directory)"),
    CFG_STRING(P, "model", "image_source", image_source, "the model that draws the training images (empty: base)"),
    CFG_STRING(P, "prompts", "skills", skills, "skills: count, spatial, binding, dense, style"),
    CFG_STRING(P, "prompts", "file", prompt_file, "prompts from this file (skill<TAB>prompt lines) instead of the generators"),
    CFG_INT(P, "prompts", "n_train", n_train, 1, 100000, "training prompts per skill"),
    CFG_INT(P, "prompts", "n_val", n_val, 0, 100000, "validation prompts per skill (model selection)"),
    CFG_INT(P, "prompts", "n_test", n_test, 1, 100000, "held-out test prompts per skill (the scores)"),
    CFG_INT64(P, "prompts", "seed", prompt_seed, 0, 1e15, "prompt generation seed"),
    CFG_DOUBLE(P, "prompts", "threshold", threshold, 0, 1, "ROUGE-L above this against a kept prompt: rejected"),
    CFG_ENUM(P, "generate", "source", gen_source, sources, "training images: model (self-generated) or gt (renders)"),
    CFG_INT(P, "generate", "steps", gen_steps, 1, 1000, "sampler steps"),
    CFG_DOUBLE(P, "generate", "cfg", gen_cfg, 0, 100, "guidance scale"),
    CFG_ENUM(P, "generate", "sampler", gen_sampler, samplers, "sampler"),
    CFG_INT(P, "generate", "batch", gen_batch, 1, 4096, "images drawn at once"),
    CFG_BOOL(P, "generate", "filter", gen_filter, "keep only images the evaluator passes (SELMA: off)"),
    CFG_DOUBLE(P, "generate", "filter_min", gen_filter_min, 0, 1, "filter: the DSG score an image needs"),
    CFG_INT(P, "lora", "rank", rank, 1, 4096, "LoRA rank"),
    CFG_FLOAT(P, "lora", "alpha", alpha, 1e-6, 1e6, "LoRA alpha (scale alpha / rank)"),
    CFG_STRING(P, "lora", "targets", targets, "linears that get adapters (name suffixes)"),
    CFG_INT(P, "train", "steps", steps, 1, 10000000, "optimizer steps per expert"),
    CFG_INT(P, "train", "batch", batch, 1, 4096, "images per step"),
    CFG_DOUBLE(P, "train", "lr", lr, 0, 1, "AdamW learning rate (constant after warm-up)"),
    CFG_INT(P, "train", "warmup", warmup, 0, 10000000, "linear warm-up steps (SELMA: 0)"),
    CFG_DOUBLE(P, "train", "weight_decay", weight_decay, 0, 1, "AdamW decoupled weight decay"),
    CFG_DOUBLE(P, "train", "grad_clip", grad_clip, 0, 1e6, "global gradient-norm clip (0 = off)"),
    CFG_DOUBLE(P, "train", "ema_decay", ema_decay, 0, 0.999999, "EMA of the adapters (0 = off, SELMA)"),
    CFG_DOUBLE(P, "train", "caption_dropout", caption_dropout, 0, 1, "captions dropped to \"\""),
    CFG_INT(P, "train", "max_nonfinite", max_nonfinite, 0, 1000000, "stop after this many non-finite steps in a row (0 = never)"),
    CFG_INT(P, "train", "checkpoint_every", checkpoint_every, 0, 10000000, "steps between checkpoints (0 = end)"),
    CFG_ENUM(P, "train", "select", select, selects, "expert checkpoint: last, or best on validation prompts"),
    CFG_INT(P, "train", "log_every", log_every, 0, 10000000, "a loss line every N steps"),
    CFG_ENUM(P, "train", "device", device, devices, "where the UNet trains: cpu, or cuda (one GPU; text encoder on the CPU; MoE routers stay on the CPU)"),
    CFG_INT(P, "train", "shards", shards, 1, 4096, "gradient accumulation: each step runs the batch in this many equal pieces in turn and averages their gradients (activations for batch/shards images; 1 = off)"),
    CFG_STRING(P, "merge", "method", merge_method, "sum (SELMA), cat, linear, svd, ties, dare_linear, ..."),
    CFG_INT(P, "merge", "rank", merge_rank, 0, 100000, "svd-based methods: output rank (0: largest expert's)"),
    CFG_DOUBLE(P, "merge", "density", merge_density, 0, 1, "ties/dare: fraction kept (0: 0.2)"),
    CFG_INT(P, "moe", "steps", moe_steps, 1, 10000000, "router training steps (mixed data)"),
    CFG_INT(P, "moe", "batch", moe_batch, 1, 4096, "images per router step"),
    CFG_DOUBLE(P, "moe", "lr", moe_lr, 0, 1, "router learning rate"),
    CFG_DOUBLE(P, "moe", "temperature", moe_temperature, 1e-3, 1e3, "router softmax temperature"),
    CFG_INT(P, "eval", "steps", eval_steps, 1, 1000, "sampler steps"),
    CFG_FLOAT_LIST(P, "eval", "cfg", eval_cfg, n_eval_cfg, 0, 100, "guidance scales; several: chosen on validation"),
    CFG_ENUM(P, "eval", "sampler", eval_sampler, samplers, "sampler"),
    CFG_INT(P, "eval", "batch", eval_batch, 1, 4096, "images drawn at once"),
    CFG_BOOL(P, "eval", "quality", eval_quality, "image-quality distance (KID) to ground-truth renders"),
    CFG_BOOL(P, "eval", "export", eval_export, "also write the export bundle for external TIFA/DSG (world sd: always)"),
};
#undef P
const int pipeline_n_fields = (int)(sizeof pipeline_fields / sizeof pipeline_fields[0]);

void pipeline_defaults(pipeline_cfg *c) {
    // SELMA's recipe where it applies (TARGETS.md); sizes fit the shapes world.
    *c = (pipeline_cfg){.seeds = 1, .seed = 0, .threads = 0, .n_train = 64, .n_val = 8, .n_test = 32,
                        .prompt_seed = 1, .threshold = 0.8, .gen_source = GEN_SOURCE_MODEL,
                        .gen_steps = 20, .gen_cfg = 3, .gen_batch = 16, .gen_filter = 0,
                        .gen_filter_min = 1.0, .rank = 8, .alpha = 8, .steps = 500, .batch = 16,
                        .lr = 3e-4, .warmup = 0, .weight_decay = 1e-2, .grad_clip = 1.0,
                        .ema_decay = 0, .caption_dropout = 0, .checkpoint_every = 100,
                        .select = SELECT_LAST, .log_every = 50, .max_nonfinite = 20, .shards = 1, .merge_rank = 0, .merge_density = 0,
                        .moe_steps = 200, .moe_batch = 16, .moe_lr = 1e-3, .moe_temperature = 1,
                        .eval_steps = 20, .eval_sampler = 0, .eval_batch = 16, .eval_quality = 1,
                        .n_eval_cfg = 1, .eval_cfg = {3}};
    snprintf(c->name, sizeof c->name, "selma");
    snprintf(c->dir, sizeof c->dir, "runs/selma");
    snprintf(c->methods, sizeof c->methods, "base,selma");
    snprintf(c->base, sizeof c->base, "models/weights/shapes-small");
    snprintf(c->skills, sizeof c->skills, "count,spatial,binding,dense,style");
    snprintf(c->targets, sizeof c->targets, "to_q,to_k,to_v,to_out.0");
    snprintf(c->merge_method, sizeof c->merge_method, "sum");
}

// Where a key is set, for messages: "FILE:LINE" of its [sweep] line (the sweep's value
// wins), "command line" when an override set it, "FILE:LINE" of its last assignment in
// the file, or "FILE" (a default).
typedef struct origin_ctx {
    const char *path;
    char **over;
    int n_over;
    const cfg_pairs *sweep;
} origin_ctx;

static void key_origin(const origin_ctx *o, const char *section, const char *key, char *buf, size_t n) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", section, key);
    for (int i = 0; o->sweep && i < o->sweep->n; i++)
        if (!strcmp(o->sweep->items[i].key, full)) {
            snprintf(buf, n, "%s:%d: [sweep] %s", o->path, o->sweep->items[i].line, full);
            return;
        }
    snprintf(full, sizeof full, "%s.%s=", section, key);
    for (int i = 0; i < o->n_over; i++)
        if (!strncmp(o->over[i], full, strlen(full))) { snprintf(buf, n, "command line"); return; }
    snprintf(buf, n, "%s", o->path);
    FILE *f = fopen(o->path, "r");
    if (!f) return;
    char line[4096], sec[128] = "";
    int ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (e) snprintf(sec, sizeof sec, "%.*s", (int)(e - s - 1), s + 1);
            continue;
        }
        size_t kl = strlen(key);
        if (!strcmp(sec, section) && !strncmp(s, key, kl) && (s[kl] == ' ' || s[kl] == '=' || s[kl] == '\t'))
            snprintf(buf, n, "%s:%d", o->path, ln);
    }
    fclose(f);
}

int pipeline_skills(const pipeline_cfg *c, int *skills, int *n) {
    char buf[sizeof c->skills];
    snprintf(buf, sizeof buf, "%s", c->skills);
    *n = 0;
    for (char *t = strtok(buf, ", "); t; t = strtok(NULL, ", ")) {
        int s = -1;
        for (int k = 0; k <= SKILL_STYLE; k++)
            if (!strcmp(t, skill_names[k])) s = k;
        if (s < 0) return err_set("[prompts] skills: '%s' is not a skill (count, spatial, binding, dense, style)", t);
        for (int i = 0; i < *n; i++)
            if (skills[i] == s) return err_set("[prompts] skills: '%s' named twice", t);
        skills[(*n)++] = s;
    }
    if (*n == 0) return err_set("[prompts] skills: names no skill");
    return 0;
}

static const char *const method_names[] = {"base", "experts", "mixed", "selma", "moe"};

static int check_methods(const pipeline_cfg *c) {
    char buf[sizeof c->methods];
    snprintf(buf, sizeof buf, "%s", c->methods);
    int n = 0;
    for (char *t = strtok(buf, ", "); t; t = strtok(NULL, ", "), n++) {
        int ok = 0;
        for (size_t k = 0; k < sizeof method_names / sizeof *method_names; k++) ok |= !strcmp(t, method_names[k]);
        if (!ok) return err_set("[run] methods: '%s' is not a method (base, experts, mixed, selma, moe)", t);
    }
    if (!n) return err_set("[run] methods: names no method");
    return 0;
}

static int model_world(const char *dir, char *world, size_t n) {
    t2i_config mc;
    if (bundle_read_config(dir, &mc)) return -1;
    snprintf(world, n, "%s", mc.world);
    return 0;
}

int pipeline_scored(const pipeline_cfg *c) { return strcmp(c->world, "sd") != 0; }

// Checks one key cannot: files exist, names are known, combinations are possible.
// Sets c->world from the base model.
static int validate(pipeline_cfg *c, const origin_ctx *o) {
    char where[1200];
#define FAIL(sec, key, ...)                                     \
    do {                                                        \
        key_origin(o, sec, key, where, sizeof where);           \
        char m_[1024];                                          \
        snprintf(m_, sizeof m_, __VA_ARGS__);                   \
        return err_set("%s: [%s] %s: %s", where, sec, key, m_); \
    } while (0)
    int skills[SKILL_KINDS], ns;
    if (pipeline_skills(c, skills, &ns)) FAIL("prompts", "skills", "%s", err_msg());
    if (check_methods(c)) FAIL("run", "methods", "%s", err_msg());
    char src_world[16];
    if (model_world(c->base, c->world, sizeof c->world)) FAIL("model", "base", "%s", err_msg());
    if (c->image_source[0] && model_world(c->image_source, src_world, sizeof src_world))
        FAIL("model", "image_source", "%s", err_msg());
    if (c->image_source[0] && strcmp(src_world, c->world))
        FAIL("model", "image_source", "draws world %s, the base model world %s", src_world, c->world);
    if (c->prompt_file[0] && access(c->prompt_file, R_OK))
        FAIL("prompts", "file", "%s: %s", c->prompt_file, strerror(errno));
    if (c->prompt_file[0] && prompt_file_check(c)) FAIL("prompts", "file", "%s", err_msg());
    if (!pipeline_scored(c)) {  // what needs the shapes world's exact evaluator or renderer
#define NEEDS_EVALUATOR "world %s has no exact evaluator (its images are scored from the export bundle)"
        if (c->gen_source == GEN_SOURCE_GT) FAIL("generate", "source", "world %s has no ground-truth renderer", c->world);
        if (c->gen_filter) FAIL("generate", "filter", NEEDS_EVALUATOR, c->world);
        if (c->select == SELECT_VAL) FAIL("train", "select", NEEDS_EVALUATOR "; use 'last'", c->world);
        if (c->n_eval_cfg > 1) FAIL("eval", "cfg", NEEDS_EVALUATOR "; list one guidance scale", c->world);
        if (c->eval_quality) FAIL("eval", "quality", "world %s has no ground-truth renders to compare with; set it to false", c->world);
#undef NEEDS_EVALUATOR
    }
    lora_merge_method mm;
    if (lora_merge_method_parse(c->merge_method, &mm)) FAIL("merge", "method", "%s", err_msg());
    if (!c->targets[0]) FAIL("lora", "targets", "names no linear");
    if (!c->name[0] || strchr(c->name, '/')) FAIL("run", "name", "must be a non-empty name without '/'");
    if (!c->dir[0]) FAIL("run", "dir", "is empty");
    if (c->n_eval_cfg < 1) FAIL("eval", "cfg", "lists no guidance scale");
    if (c->n_val == 0 && c->select == SELECT_VAL)
        FAIL("train", "select", "'val' needs validation prompts ([prompts] n_val = 0)");
    if (c->n_val == 0 && c->n_eval_cfg > 1)
        FAIL("eval", "cfg", "several scales are chosen on validation prompts, but [prompts] n_val = 0");
    if (c->select == SELECT_VAL && c->checkpoint_every == 0)
        FAIL("train", "select", "'val' picks among checkpoints, but [train] checkpoint_every = 0");
    if (c->gen_filter && c->gen_source == GEN_SOURCE_GT)
        FAIL("generate", "filter", "ground-truth renders pass the evaluator by construction; filter is for source = model");
    if (c->eval_quality && c->n_test * ns < 2) FAIL("eval", "quality", "needs at least 2 test images");
    if (c->device == DEVICE_CUDA && cuda_device_count() == 0)
        FAIL("train", "device", "cuda: no usable CUDA device here (%s); use cpu", cuda_device_describe());
    if (c->batch > c->n_train) FAIL("train", "batch", "%d is larger than n_train %d (an epoch has fewer items)", c->batch, c->n_train);
    if (c->batch % c->shards) FAIL("train", "shards", "%d does not divide the batch %d into equal pieces", c->shards, c->batch);
#undef FAIL
    return 0;
}

// Splits a sweep value list "4, 8" into items (in place).
static int split_values(char *v, char **items, int max) {
    int n = 0;
    for (char *t = strtok(v, ","); t && n < max; t = strtok(NULL, ",")) {
        while (*t == ' ' || *t == '\t') t++;
        size_t l = strlen(t);
        while (l && (t[l - 1] == ' ' || t[l - 1] == '\t')) t[--l] = 0;
        if (*t) items[n++] = t;
    }
    return n;
}

int pipeline_load(const char *path, char **overrides, int n_over, pipeline_variant **vars, int *n_vars) {
    *vars = NULL, *n_vars = 0;
    pipeline_cfg base;
    pipeline_defaults(&base);
    cfg_pairs sweep = {0};
    static const char *const free_sections[] = {"sweep", NULL};
    if (cfg_load_ex(path, pipeline_fields, pipeline_n_fields, &base, free_sections, &sweep)) return -1;
    origin_ctx o = {path, overrides, n_over, &sweep};
    for (int i = 0; i < n_over; i++)
        if (cfg_set(pipeline_fields, pipeline_n_fields, &base, overrides[i], "command line")) {
            cfg_pairs_free(&sweep);
            return -1;
        }
    // The cross product, built one sweep key at a time.
    pipeline_variant *v = calloc(PIPE_MAX_VARIANTS, sizeof *v);
    CHECK(v);
    int n = 1, rc = 0;
    v[0].cfg = base;
    for (int k = 0; k < sweep.n && !rc; k++) {
        cfg_pair *p = &sweep.items[k];
        char sec[64], val[2048], *items[16];
        const char *dot = strchr(p->key, '.');
        if (!dot || dot - p->key >= (long)sizeof sec) {
            rc = err_set("%s:%d: [sweep] %s: expected section.key", path, p->line, p->key);
            break;
        }
        snprintf(sec, sizeof sec, "%.*s", (int)(dot - p->key), p->key);
        if (!cfg_find(pipeline_fields, pipeline_n_fields, sec, dot + 1)) {
            rc = err_set("%s:%d: [sweep] %s: no such key", path, p->line, p->key);
            break;
        }
        snprintf(val, sizeof val, "%s", p->value);
        int nv = split_values(val, items, 16);
        if (nv < 1 || n * nv > PIPE_MAX_VARIANTS) {
            rc = err_set("%s:%d: [sweep] %s: %s", path, p->line, p->key,
                         nv < 1 ? "lists no value" : "too many combinations (at most 32)");
            break;
        }
        for (int j = nv - 1; j >= 0 && !rc; j--)
            for (int i = 0; i < n && !rc; i++) {
                pipeline_variant *dst = &v[j * n + i];
                if (j) *dst = v[i];
                char assign[2200], origin[1100];
                snprintf(assign, sizeof assign, "%s=%s", p->key, items[j]);
                snprintf(origin, sizeof origin, "%s:%d", path, p->line);
                rc = cfg_set(pipeline_fields, pipeline_n_fields, &dst->cfg, assign, origin);
                // A path shows as its last component: reports cut labels at 40-60
                // characters, where two long paths would look the same.
                const char *slash = strrchr(items[j], '/'), *shown = slash && slash[1] ? slash + 1 : items[j];
                size_t l = strlen(dst->label);
                snprintf(dst->label + l, sizeof dst->label - l, "%s%s=%s", l ? " " : "", p->key, shown);
            }
        n *= nv;
    }
    for (int i = 0; i < n && !rc; i++) rc = validate(&v[i].cfg, &o);
    cfg_pairs_free(&sweep);
    if (rc) {
        free(v);
        return -1;
    }
    *vars = v, *n_vars = n;
    return 0;
}
