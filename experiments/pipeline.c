// `selma run`: the stages of every sweep variant in order, each skipped when its
// output is complete, then the report (see pipeline.h).
#include <cblas.h>
#include <math.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/image_quality.h"
#include "data/image_io.h"
#include "experiments/pipeline.h"
#include "experiments/pipeline_ranks.h"
#include "experiments/report.h"
#include "models/bundle.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

_Static_assert(PIPE_MAX_SEEDS == RESULTS_MAX_SEEDS, "seeds per method: one limit");

// ---- stage directories: <run>/work/<kind>-<hash of the inputs> ----

typedef struct sbuf {
    char s[16384];
    size_t n;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    CHECK(k >= 0 && b->n + (size_t)k < sizeof b->s);
    b->n += (size_t)k;
}

// Every key of a section as "section.key = value" lines (cfg_write's text of it).
static void sb_section(sbuf *b, const pipeline_cfg *c, const char *section) {
    for (int i = 0; i < pipeline_n_fields; i++) {
        const cfg_field *f = &pipeline_fields[i];
        if (strcmp(f->section, section)) continue;
        // [train] device and shards enter a stage's inputs only when they are not their
        // defaults (cpu, 1), so stages made before the keys existed keep their directories.
        if (!strcmp(section, "train") && ((!strcmp(f->key, "device") && c->device == 0) ||
                                          (!strcmp(f->key, "shards") && c->shards == 1)))
            continue;
        char v[2048];
        CHECK(cfg_format_value(f, c, v, sizeof v) == 0);
        sb_add(b, "%s.%s = %s\n", f->section, f->key, v);
    }
}

static void sb_key(sbuf *b, const pipeline_cfg *c, const char *section, const char *key) {
    char v[2048];
    CHECK(cfg_format_value(cfg_find(pipeline_fields, pipeline_n_fields, section, key), c, v, sizeof v) == 0);
    sb_add(b, "%s.%s = %s\n", section, key, v);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

typedef struct stage {
    char dir[4200];
    char hash[17];
    int done;
} stage;

// Names the stage's directory from its inputs; done when its DONE marker is there
// and its manifest holds the same inputs. Touches no file.
static void stage_find(const char *run, const char *kind, const sbuf *in, stage *st) {
    snprintf(st->hash, sizeof st->hash, "%016llx", (unsigned long long)fnv1a(in->s));
    snprintf(st->dir, sizeof st->dir, "%s/work/%s-%s", run, kind, st->hash);
    char path[4400], *text = NULL;
    size_t n;
    struct stat sb;
    snprintf(path, sizeof path, "%s/DONE", st->dir);
    st->done = 0;
    if (stat(path, &sb) == 0) {
        snprintf(path, sizeof path, "%s/manifest.txt", st->dir);
        if (file_read_all(path, &text, &n) == 0 && !strcmp(text, in->s)) st->done = 1;
        free(text);
    }
}

// stage_find; when not done, the directory is (re)made empty with the manifest, ready
// for the stage's work.
static int stage_open(const char *run, const char *kind, const sbuf *in, stage *st) {
    stage_find(run, kind, in, st);
    if (st->done) return 0;
    char path[4400];
    if (mkdir_p(st->dir)) return -1;
    snprintf(path, sizeof path, "%s/manifest.txt", st->dir);
    return atomic_write(path, in->s, in->n);
}

static int stage_close(const stage *st) {
    char path[4400];
    snprintf(path, sizeof path, "%s/DONE", st->dir);
    return atomic_write(path, "done\n", 5);
}

static int has_method(const pipeline_cfg *c, const char *name) {
    char buf[sizeof c->methods];
    snprintf(buf, sizeof buf, "%s", c->methods);
    for (char *t = strtok(buf, ", "); t; t = strtok(NULL, ", "))
        if (!strcmp(t, name)) return 1;
    return 0;
}

// ---- one variant ----

// A row of the results: a method of a variant, with its eval directory per seed.
typedef struct row {
    char name[64], label[128];
    int n_seeds;
    char eval_dir[RESULTS_MAX_SEEDS][4200];
} row;

// Launched as several ranks, the variants are walked three times (pipeline_ranks.h):
// PHASE_DATA (rank 0: prompts and images), PHASE_TRAIN (every rank: its share of the
// trainings), PHASE_ALL (rank 0: the rest, all that one process does).
enum { PHASE_ALL, PHASE_DATA, PHASE_TRAIN };
#define BEAT_DATA "expert-parallel: rank 0 writes prompts and images"
#define BEAT_TRAIN "expert-parallel: experts in training"

typedef struct run_state {
    const char *run;
    long stop_after;
    row rows[RESULTS_MAX_METHODS];
    int n_rows;
    run_results *r;
    comm *w;
    int phase;
    rank_jobs jobs;   // PHASE_TRAIN: every training, in order, and its rank
    int train_rc;     // PHASE_TRAIN: 3 once this rank stopped at --stop-after
} run_state;

// Busy: a heartbeat for the ranks waiting on this one (pipeline_ranks.h).
static void beat(void *ctx) {
    run_state *rs = ctx;
    if (rs->phase != PHASE_ALL) ranks_beat(rs->w, 1, rs->phase == PHASE_DATA ? BEAT_DATA : BEAT_TRAIN);
}

// PHASE_TRAIN: a stage rank 0 wrote in PHASE_DATA, found complete by this rank.
static int stage_written(const run_state *rs, const char *kind, const sbuf *in, stage *st) {
    stage_find(rs->run, kind, in, st);
    if (st->done) return 0;
    return err_set("rank %d: stage %s is not complete in %s after rank 0 wrote it (the run directory must "
                   "be on a filesystem every rank shares)", comm_rank(rs->w), kind, st->dir);
}

static row *row_for(run_state *rs, const pipeline_variant *v, const char *name, const char *label) {
    // A sweep's rows: "selma-lora.rank=4,merge.method=svd" (report.h counts "selma-*"
    // rows in the merging ablation).
    char full[64];
    if (v->label[0]) {
        snprintf(full, sizeof full, "%.20s-%.42s", name, v->label);
        for (char *q = full; *q; q++)
            if (*q == ' ') *q = ',';
    } else {
        snprintf(full, sizeof full, "%s", name);
    }
    for (int i = 0; i < rs->n_rows; i++)
        if (!strcmp(rs->rows[i].name, full)) return &rs->rows[i];
    if (rs->n_rows == RESULTS_MAX_METHODS) return NULL;
    row *w = &rs->rows[rs->n_rows++];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", full);
    if (v->label[0]) snprintf(w->label, sizeof w->label, "%.80s [%.40s]", label, v->label);
    else snprintf(w->label, sizeof w->label, "%s", label);
    return w;
}

static void add_curve(run_state *rs, const char *name, const char *path) {
    run_results *r = rs->r;
    FILE *f = fopen(path, "r");
    if (!f || r->n_curves == RESULTS_MAX_CURVES) {
        if (f) fclose(f);
        return;
    }
    loss_curve *lc = &r->curves[r->n_curves];
    memset(lc, 0, sizeof *lc);
    snprintf(lc->name, sizeof lc->name, "%s", name);
    int cap = 0;
    long step;
    double loss;
    while (fscanf(f, "%ld %lf", &step, &loss) == 2) {
        if (lc->n == cap) {
            cap = cap ? 2 * cap : 64;
            lc->step = realloc(lc->step, sizeof(float) * (size_t)cap);
            lc->loss = realloc(lc->loss, sizeof(float) * (size_t)cap);
            CHECK(lc->step && lc->loss);
        }
        lc->step[lc->n] = (float)step, lc->loss[lc->n] = (float)loss, lc->n++;
    }
    fclose(f);
    if (lc->n) r->n_curves++;
    else free(lc->step), free(lc->loss);
}

// Runs or skips one stage: logs which, and closes it after `work` succeeded.
#define STAGE(rs, kind, what, in, st, work)                                                  \
    do {                                                                                     \
        if (stage_open((rs)->run, kind, in, st)) return -1;                                 \
        if ((st)->done) {                                                                    \
            log_line("stage %s: done (%s), skipped", what, (st)->dir + strlen((rs)->run) + 1); \
        } else {                                                                             \
            log_line("stage %s: running (%s)", what, (st)->dir + strlen((rs)->run) + 1);    \
            int rc_ = (work);                                                                \
            if (rc_) return rc_;                                                             \
            if (stage_close(st)) return -1;                                                  \
        }                                                                                    \
    } while (0)

// Trains the adapter of stage T (inputs `in`) unless it is complete.
static int train_stage(run_state *rs, const pipeline_cfg *c, const stage *P, const stage *D, const sbuf *in,
                       int skill, uint64_t seed, const char *what, const char *at, stage *T) {
    int sk[SKILL_KINDS], ns;
    pipeline_skills(c, sk, &ns);
    if (stage_open(rs->run, "train", in, T)) return -1;
    if (T->done) {
        log_line("stage %s: done%s (%s), skipped", what, at, T->dir + strlen(rs->run) + 1);
        return 0;
    }
    log_line("stage %s: running%s (%s)", what, at, T->dir + strlen(rs->run) + 1);
    char data[SKILL_KINDS][4300], out[4300], ckpt[4300], loss[4300];
    lora_train_opts o = {.model = c->base, .rank = c->rank, .alpha = c->alpha, .targets = c->targets,
                         .steps = c->steps, .batch = c->batch, .warmup = c->warmup,
                         .checkpoint_every = c->checkpoint_every, .log_every = c->log_every,
                         .lr = c->lr, .weight_decay = c->weight_decay, .grad_clip = c->grad_clip,
                         .ema_decay = c->ema_decay, .caption_dropout = c->caption_dropout, .seed = seed,
                         .device = c->device, .shards = c->shards, .max_nonfinite = c->max_nonfinite, .stop_after = rs->stop_after, .val_steps = c->eval_steps,
                         .val_sampler = c->eval_sampler, .val_cfg = c->eval_cfg[0],
                         .on_step = rs->phase == PHASE_TRAIN ? beat : NULL, .on_step_ctx = rs};
    for (int k = 0; k < ns; k++)
        if (skill < 0 || sk[k] == skill) {
            snprintf(data[o.n_data], sizeof data[0], "%s/%s.h5", D->dir, skill_names[sk[k]]);
            o.data[o.n_data] = data[o.n_data], o.n_data++;
        }
    snprintf(out, sizeof out, "%s/lora.safetensors", T->dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints", T->dir);
    snprintf(loss, sizeof loss, "%s/loss.txt", T->dir);
    o.out = out, o.ckpt_dir = ckpt, o.loss_log = loss;
    char **vp = NULL;
    int *vs = NULL, nv = 0, rc = 0;
    if (c->select == SELECT_VAL) {
        for (int k = 0; k < ns && !rc; k++) {
            if (skill >= 0 && sk[k] != skill) continue;
            char path[4300], **p;
            int m;
            snprintf(path, sizeof path, "%s/%s.val.txt", P->dir, skill_names[sk[k]]);
            if ((rc = prompts_read(path, &p, &m))) break;
            vp = realloc(vp, sizeof(char *) * (size_t)(nv + m));
            vs = realloc(vs, sizeof(int) * (size_t)(nv + m));
            CHECK(vp && vs);
            for (int i = 0; i < m; i++) vp[nv + i] = p[i], vs[nv + i] = sk[k];
            nv += m;
            free(p);
        }
        o.val_prompts = vp, o.val_skills = vs, o.n_val = nv;
    }
    if (!rc) rc = lora_train_run(&o);
    prompts_free(vp, nv);
    free(vs);
    if (rc) return rc;
    return stage_close(T);
}

// Trains one adapter (an expert, or the mixed LoRA when skill < 0) for seed k; in
// PHASE_TRAIN only when it is this rank's job, and records the job either way.
static int train_adapter(run_state *rs, const pipeline_cfg *c, const stage *P, const stage *D,
                         const char *base_hash, int skill, uint64_t seed, stage *T) {
    const char *name = skill >= 0 ? skill_names[skill] : "mixed";
    sbuf in = {0};
    sb_add(&in, "train %s\ndata %s\nbase %s\nseed %llu\n", name, D->hash, base_hash, (unsigned long long)seed);
    sb_section(&in, c, "lora");
    sb_section(&in, c, "train");
    if (c->select == SELECT_VAL) {  // what checkpoint selection reads of [eval]
        sb_add(&in, "prompts %s\n", P->hash);
        sb_key(&in, c, "eval", "steps");
        sb_key(&in, c, "eval", "sampler");
        sb_key(&in, c, "eval", "cfg");
    }
    char what[128], at[32] = "";
    snprintf(what, sizeof what, "train %s seed %llu", name, (unsigned long long)seed);
    rank_job *job = NULL;
    if (rs->phase == PHASE_TRAIN) {  // one job of the spread; only its owner trains it
        stage_find(rs->run, "train", &in, T);
        job = rank_jobs_add(&rs->jobs, rs->w, T->dir, what);
        if (job->owner != comm_rank(rs->w) || rs->train_rc) return 0;
        snprintf(at, sizeof at, " on rank %d", job->owner);
    }
    int rc = train_stage(rs, c, P, D, &in, skill, seed, what, at, T);
    if (rc == 3 && job) rs->train_rc = 3, rc = 0;  // the other jobs are still counted
    else if (rc == 0 && job) {
        char path[4300];
        snprintf(path, sizeof path, "%s/lora.safetensors", T->dir);
        rc = file_checksum(path, &job->sum);
    }
    return rc;
}

static int eval_method(run_state *rs, const pipeline_variant *v, const stage *P, const char *base_hash,
                       const char *name, const char *label, const stage *const *adapters, int na,
                       const stage *moe, uint64_t seed, int k) {
    const pipeline_cfg *c = &v->cfg;
    sbuf in = {0};
    sb_add(&in, "eval\nprompts %s\nbase %s\nseed %llu\n", P->hash, base_hash, (unsigned long long)seed);
    for (int i = 0; i < na; i++) sb_add(&in, "adapter %s\n", adapters[i]->hash);
    if (moe) sb_add(&in, "moe %s\n", moe->hash);
    sb_section(&in, c, "eval");
    stage E;
    char what[128], files[4][4300];
    const char *af[4];
    float w[4];
    for (int i = 0; i < na; i++) {
        snprintf(files[i], sizeof files[i], "%s/lora.safetensors", adapters[i]->dir);
        af[i] = files[i], w[i] = 1;
    }
    char routers[4300];
    if (moe) snprintf(routers, sizeof routers, "%s/routers.safetensors", moe->dir);
    snprintf(what, sizeof what, "eval %s seed %llu", name, (unsigned long long)seed);
    STAGE(rs, "eval", what, &in, &E,
          stage_eval(c, P->dir, af, w, na, moe ? routers : NULL, seed, E.dir));
    // A method the sweep does not affect (the base model under lora.rank = 4, 8) has the
    // same eval stage in every variant: one row, named without the variant.
    for (int i = 0; i < rs->n_rows; i++) {
        row *o = &rs->rows[i];
        if (strncmp(o->name, name, strlen(name)) || strcmp(o->eval_dir[k], E.dir)) continue;
        snprintf(o->name, sizeof o->name, "%s", name);
        snprintf(o->label, sizeof o->label, "%s", label);
        return 0;
    }
    row *w_ = row_for(rs, v, name, label);
    if (!w_) return err_set("more than %d result rows", RESULTS_MAX_METHODS);
    snprintf(w_->eval_dir[k], sizeof w_->eval_dir[k], "%s", E.dir);
    if (w_->n_seeds < k + 1) w_->n_seeds = k + 1;
    return 0;
}

static int generate_all(run_state *rs, const pipeline_cfg *c, const char *src, const stage *P, const stage *D,
                        const int *sk, int ns) {
    for (int k = 0; k < ns; k++) {
        char out[4300];
        snprintf(out, sizeof out, "%s/%s.h5", D->dir, skill_names[sk[k]]);
        if (stage_generate(c, src, P->dir, sk[k], out)) return -1;
        beat(rs);
    }
    return 0;
}

static int merge_experts(const pipeline_cfg *c, const stage *T, int ns, const stage *M) {
    char files[SKILL_KINDS][4300], out[4300];
    const char *fp[SKILL_KINDS];
    for (int i = 0; i < ns; i++) {
        snprintf(files[i], sizeof files[i], "%.4200s/lora.safetensors", T[i].dir);
        fp[i] = files[i];
    }
    snprintf(out, sizeof out, "%s/lora.safetensors", M->dir);
    return merge_files(fp, ns, c->merge_method, c->merge_rank, c->merge_density, out);
}

// The mixture of experts' routers, trained on every skill's data with the experts frozen.
static int train_moe(run_state *rs, const pipeline_cfg *c, const stage *D, const stage *T, int ns,
                     const int *sk, uint64_t seed, const stage *X) {
    char data[SKILL_KINDS][4300], files[SKILL_KINDS][4300], out[4300], ckpt[4300], loss[4300];
    lora_train_opts o = {.model = c->base, .steps = c->moe_steps, .batch = c->moe_batch, .lr = c->moe_lr,
                         .checkpoint_every = c->checkpoint_every, .log_every = c->log_every,
                         .weight_decay = c->weight_decay, .grad_clip = c->grad_clip, .seed = seed,
                         .max_nonfinite = c->max_nonfinite, .stop_after = rs->stop_after, .n_moe = ns, .moe_temperature = (float)c->moe_temperature,
                         .targets = ""};
    for (int k = 0; k < ns; k++) {
        snprintf(data[k], sizeof data[k], "%.4200s/%s.h5", D->dir, skill_names[sk[k]]);
        snprintf(files[k], sizeof files[k], "%.4200s/lora.safetensors", T[k].dir);
        o.data[k] = data[k], o.moe_experts[k] = files[k];
    }
    o.n_data = ns;
    snprintf(out, sizeof out, "%s/routers.safetensors", X->dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints", X->dir);
    snprintf(loss, sizeof loss, "%s/loss.txt", X->dir);
    o.out = out, o.ckpt_dir = ckpt, o.loss_log = loss;
    return lora_train_run(&o);
}

static int run_variant(run_state *rs, const pipeline_variant *v) {
    const pipeline_cfg *c = &v->cfg;
    int sk[SKILL_KINDS], ns;
    if (pipeline_skills(c, sk, &ns)) return -1;
    if (c->threads > 0) openblas_set_num_threads(c->threads);
    if (v->label[0]) log_line("variant: %s", v->label);
    char base_hash[24], src_hash[24];
    const char *src = c->image_source[0] ? c->image_source : c->base;
    if (bundle_hash(c->base, base_hash, sizeof base_hash) || bundle_hash(src, src_hash, sizeof src_hash)) return -1;
    sbuf in = {0};
    sb_section(&in, c, "prompts");
    if (c->prompt_file[0]) {  // the file's bytes, not only its name
        uint64_t h = 1469598103934665603ull;
        if (file_fnv1a(c->prompt_file, &h)) return -1;
        sb_add(&in, "prompts.file_fnv1a = %016llx\n", (unsigned long long)h);
    }
    stage P, D;
    if (rs->phase == PHASE_TRAIN) {
        if (stage_written(rs, "prompts", &in, &P)) return -1;
    } else {
        STAGE(rs, "prompts", "prompts", &in, &P, stage_prompts(c, P.dir));
        beat(rs);
    }
    int experts = has_method(c, "experts"), selma = has_method(c, "selma"), mixed = has_method(c, "mixed");
    int moe = has_method(c, "moe");
    if (experts || selma || mixed || moe) {
        in = (sbuf){0};
        sb_add(&in, "prompts %s\nimage_source %s\n", P.hash, c->gen_source == GEN_SOURCE_GT ? "ground truth" : src_hash);
        sb_section(&in, c, "generate");
        if (rs->phase == PHASE_TRAIN) {
            if (stage_written(rs, "data", &in, &D)) return -1;
        } else {
            STAGE(rs, "data", "generate", &in, &D, generate_all(rs, c, src, &P, &D, sk, ns));
        }
    }
    if (rs->phase == PHASE_DATA) return 0;
    const char *src_label = c->gen_source == GEN_SOURCE_GT ? "ground-truth images" :
                            c->image_source[0] ? "images of the image_source model" : "self-generated images";
    for (int k = 0; k < c->seeds; k++) {
        uint64_t seed = (uint64_t)c->seed + (uint64_t)k;
        stage T[SKILL_KINDS], M, X, R;
        const stage *tp[SKILL_KINDS];
        if (experts || selma || moe)
            for (int i = 0; i < ns; i++) {
                int rc = train_adapter(rs, c, &P, &D, base_hash, sk[i], seed, &T[i]);
                if (rc) return rc;
                tp[i] = &T[i];
                if (k == 0 && rs->phase == PHASE_ALL) {
                    char name[96], path[4300];
                    snprintf(name, sizeof name, "expert-%s%s%.60s", skill_names[sk[i]], v->label[0] ? " " : "", v->label);
                    snprintf(path, sizeof path, "%.4200s/loss.txt", T[i].dir);
                    add_curve(rs, name, path);
                }
            }
        if (mixed) {
            int rc = train_adapter(rs, c, &P, &D, base_hash, -1, seed, &X);
            if (rc) return rc;
            char path[4300];
            snprintf(path, sizeof path, "%s/loss.txt", X.dir);
            char name[96];
            snprintf(name, sizeof name, "mixed%s%.60s", v->label[0] ? " " : "", v->label);
            if (k == 0 && rs->phase == PHASE_ALL) add_curve(rs, name, path);
        }
        if (rs->phase == PHASE_TRAIN) continue;  // the rest is rank 0's, in PHASE_ALL
        if (selma) {
            in = (sbuf){0};
            sb_add(&in, "merge\n");
            for (int i = 0; i < ns; i++) sb_add(&in, "expert %s\n", T[i].hash);
            sb_section(&in, c, "merge");
            char what[64];
            snprintf(what, sizeof what, "merge seed %llu", (unsigned long long)seed);
            STAGE(rs, "merge", what, &in, &M, merge_experts(c, T, ns, &M));
        }
        if (moe) {
            in = (sbuf){0};
            sb_add(&in, "moe\ndata %s\nbase %s\nseed %llu\n", D.hash, base_hash, (unsigned long long)seed);
            for (int i = 0; i < ns; i++) sb_add(&in, "expert %s\n", T[i].hash);
            sb_section(&in, c, "moe");
            sb_key(&in, c, "train", "weight_decay");
            sb_key(&in, c, "train", "grad_clip");
            char what[64];
            snprintf(what, sizeof what, "moe seed %llu", (unsigned long long)seed);
            STAGE(rs, "moe", what, &in, &R, train_moe(rs, c, &D, T, ns, sk, seed, &R));
        }
        int rc = 0;
        if (has_method(c, "base"))
            rc = eval_method(rs, v, &P, base_hash, "base", "base model", NULL, 0, NULL, seed, k);
        for (int i = 0; i < ns && experts && !rc; i++) {
            char name[64], label[128];
            snprintf(name, sizeof name, "expert-%s", skill_names[sk[i]]);
            snprintf(label, sizeof label, "%s expert only (LoRA, %s)", skill_names[sk[i]], src_label);
            rc = eval_method(rs, v, &P, base_hash, name, label, &tp[i], 1, NULL, seed, k);
        }
        if (mixed && !rc) {
            const stage *xp = &X;
            char label[128];
            snprintf(label, sizeof label, "one LoRA on all skills mixed (%s)", src_label);
            rc = eval_method(rs, v, &P, base_hash, "mixed", label, &xp, 1, NULL, seed, k);
        }
        if (selma && !rc) {
            const stage *mp = &M;
            char label[128];
            snprintf(label, sizeof label, "SELMA: %d experts merged (%s, %s)", ns, c->merge_method, src_label);
            rc = eval_method(rs, v, &P, base_hash, "selma", label, &mp, 1, NULL, seed, k);
        }
        if (moe && !rc) {
            char label[128];
            snprintf(label, sizeof label, "LoRA mixture of %d experts, routers trained on mixed data", ns);
            rc = eval_method(rs, v, &P, base_hash, "moe", label, NULL, 0, &R, seed, k);
        }
        if (rc) return rc;
    }
    return 0;
}

// ---- results ----

// A method's exported test images, linked from <run>/export/<name>/seed<k> (a relative
// symlink into its eval stage, replaced atomically): one place to hand to the scorers.
static int link_export(const char *run, const char *name, int k, const char *eval_dir) {
    char link[4400], tmp[4500], target[4400];
    struct stat st;
    snprintf(target, sizeof target, "%s/export", eval_dir);
    if (stat(target, &st)) return 0;
    snprintf(link, sizeof link, "%s/export/%s", run, name);
    if (mkdir_p(link)) return -1;
    size_t lr = strlen(run);
    if (strncmp(eval_dir, run, lr) || eval_dir[lr] != '/')
        return err_set("%s: not inside the run directory %s", eval_dir, run);
    snprintf(target, sizeof target, "../../%s/export", eval_dir + lr + 1);
    snprintf(link, sizeof link, "%s/export/%s/seed%d", run, name, k);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", link, (int)getpid());
    unlink(tmp);
    if (symlink(target, tmp) || rename(tmp, link)) return err_set("%s: %s", link, strerror(errno));
    return 1;
}

static int read_scores(const char *dir, double *dsg, double *tifa, double *kid, double sdsg[SKILL_KINDS],
                       double stifa[SKILL_KINDS], int has[SKILL_KINDS], int *scored) {
    char path[4300], *text;
    size_t n;
    snprintf(path, sizeof path, "%s/scores.json", dir);
    if (file_read_all(path, &text, &n)) return -1;
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o) return err_set("%s: not JSON", path);
    *scored = !cJSON_IsFalse(cJSON_GetObjectItem(o, "scored"));
    *dsg = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "dsg"));
    *tifa = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "tifa"));
    cJSON *k = cJSON_GetObjectItem(o, "kid");
    *kid = k ? cJSON_GetNumberValue(k) : NAN;
    cJSON *per = cJSON_GetObjectItem(o, "skills");
    for (int s = 0; s < SKILL_KINDS; s++) {
        cJSON *x = cJSON_GetObjectItem(per, skill_names[s]);
        has[s] = x != NULL;
        if (x) sdsg[s] = cJSON_GetNumberValue(cJSON_GetObjectItem(x, "dsg")),
               stifa[s] = cJSON_GetNumberValue(cJSON_GetObjectItem(x, "tifa"));
    }
    cJSON_Delete(o);
    return 0;
}

static int fill_results(run_state *rs) {
    run_results *r = rs->r;
    for (int i = 0; i < rs->n_rows; i++) {
        row *w = &rs->rows[i];
        method_result *m = &r->methods[r->n_methods++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", w->name);
        snprintf(m->label, sizeof m->label, "%s", w->label);
        double kid[RESULTS_MAX_SEEDS], sd[SKILL_KINDS][RESULTS_MAX_SEEDS], st[SKILL_KINDS][RESULTS_MAX_SEEDS];
        int has[SKILL_KINDS] = {0}, nk = 0, scored = 1;
        for (int k = 0; k < w->n_seeds; k++) {
            double a[SKILL_KINDS], b[SKILL_KINDS], q = NAN;
            int sc = 1;
            if (read_scores(w->eval_dir[k], &m->seed_dsg[k], &m->seed_tifa[k], &q, a, b, has, &sc)) return -1;
            scored &= sc;
            if (q == q) kid[nk++] = q;
            for (int s = 0; s < SKILL_KINDS; s++) sd[s][k] = a[s], st[s][k] = b[s];
            int e = link_export(rs->run, w->name, k, w->eval_dir[k]);
            if (e < 0) return -1;
            m->exported |= e;
        }
        m->n_seeds = w->n_seeds;
        if (!scored) continue;  // world sd: exported for external TIFA / DSG only
        m->dsg = metric_ci_from(m->seed_dsg, w->n_seeds);
        m->tifa = metric_ci_from(m->seed_tifa, w->n_seeds);
        if (nk) m->quality = metric_ci_from(kid, nk);
        for (int s = 0; s < SKILL_KINDS; s++)
            if (has[s]) m->skill_dsg[s] = metric_ci_from(sd[s], w->n_seeds),
                        m->skill_tifa[s] = metric_ci_from(st[s], w->n_seeds);
    }
    return 0;
}

// One PNG: a row per method (seed 0), the first test prompt of each skill per column.
static int write_grid(run_state *rs, int ns, const char *skills) {
    int S = 0, n = 0;
    uint8_t *all = NULL;
    const char **labels = NULL;
    for (int i = 0; i < rs->n_rows; i++) {
        char path[4300], *bytes;
        size_t len;
        snprintf(path, sizeof path, "%s/samples.u8", rs->rows[i].eval_dir[0]);
        if (file_read_all(path, &bytes, &len)) return -1;
        if (!S) S = (int)(sqrt((double)len / 3 / ns) + 0.5);
        if (len != (size_t)ns * S * S * 3) {
            free(bytes);
            return err_set("%s: %zu bytes, expected %d images of %dx%d", path, len, ns, S, S);
        }
        all = realloc(all, (size_t)(n + ns) * S * S * 3);
        labels = realloc(labels, sizeof(char *) * (size_t)(n + ns));
        CHECK(all && labels);
        memcpy(all + (size_t)n * S * S * 3, bytes, len);
        for (int k = 0; k < ns; k++) labels[n + k] = k == 0 ? rs->rows[i].name : NULL;
        n += ns;
        free(bytes);
    }
    run_results *r = rs->r;
    snprintf(r->grids[0].path, sizeof r->grids[0].path, "grid.png");
    snprintf(r->grids[0].caption, sizeof r->grids[0].caption,
             "one row per method (seed 0), the first test prompt of each skill (%s) per column", skills);
    char path[4300];
    snprintf(path, sizeof path, "%s/grid.png", rs->run);
    int rc = n ? png_write_grid(path, all, n, S, S, ns, 2, labels) : 0;
    if (!rc && n) r->n_grids = 1;
    free(all);
    free(labels);
    return rc;
}

static void print_table(const run_results *r) {
    printf("\n%-40s %-22s %-22s %s\n", "method", "DSG (%)", "TIFA (%)", "KID (lower is better)");
    for (int i = 0; i < r->n_methods; i++) {
        const method_result *m = &r->methods[i];
        char a[64], b[64], q[64];
        report_fmt_pct(a, sizeof a, m->dsg);
        report_fmt_pct(b, sizeof b, m->tifa);
        report_fmt_quality(q, sizeof q, m->quality);
        printf("%-40s %-22s %-22s %s\n", m->name, a, b, q);
    }
    for (int i = 0; i < r->n_methods; i++)
        if (r->methods[i].exported) {
            printf("\nexport bundles (images, prompts, TIFA and DSG questions): %s/export/\n", r->run_dir);
            break;
        }
    printf("\n");
}

// Several ranks: phases 1 and 2 (pipeline_ranks.h) on every rank; 0 when rank 0 may
// go on with the rest.
static int spread(run_state *rs, const pipeline_variant *vars, int nv) {
    comm *w = rs->w;
    int rc = 0;
    rs->phase = PHASE_DATA;
    for (int i = 0; i < nv && !rc && comm_rank(w) == 0; i++) rc = run_variant(rs, &vars[i]);
    if (rc) return rc;  // cmd_run ends the job: the others are waiting
    ranks_wait(w, BEAT_DATA);
    rs->phase = PHASE_TRAIN;
    for (int i = 0; i < nv && !rc; i++) rc = run_variant(rs, &vars[i]);
    if (rc) return rc;
    ranks_wait(w, BEAT_TRAIN);
    rc = ranks_collect(w, &rs->jobs, rs->train_rc);
    rs->phase = PHASE_ALL;
    return rc;
}

int pipeline_run(const char *path, char **overrides, int n_over, long stop_after, comm *w) {
    pipeline_variant *vars;
    int nv;
    if (pipeline_load(path, overrides, n_over, &vars, &nv)) return -1;
    const pipeline_cfg *c0 = &vars[0].cfg;
    char p[4300];
    int lead = comm_rank(w) == 0;  // the rank that writes run-level files
    int rc = lead ? mkdir_p(c0->dir) : 0;
    snprintf(p, sizeof p, "%s/log.txt", c0->dir);
    if (!rc && lead) rc = log_open(p);
    snprintf(p, sizeof p, "%s/config.ini", c0->dir);
    if (!rc && lead) rc = cfg_write(p, pipeline_fields, pipeline_n_fields, c0);
    for (int i = 1; i < nv && !rc && lead; i++) {
        snprintf(p, sizeof p, "%s/config-%02d.ini", c0->dir, i);
        rc = cfg_write(p, pipeline_fields, pipeline_n_fields, &vars[i].cfg);
    }
    if (rc) {
        free(vars);
        return -1;
    }
    double t0 = time_now();
    if (lead)
        log_line("selma run %s -> %s: %d variant%s, %d seed%s, %d rank%s", path, c0->dir, nv, nv > 1 ? "s" : "",
                 c0->seeds, c0->seeds > 1 ? "s" : "", comm_size(w), comm_size(w) > 1 ? "s" : "");
    run_results *r = calloc(1, sizeof *r);
    run_state *rs = calloc(1, sizeof *rs);
    CHECK(r && rs);
    rs->run = c0->dir, rs->stop_after = stop_after, rs->r = r, rs->w = w;
    // Expert-parallel on GPUs: one GPU per rank on a node (local rank modulo the GPUs
    // this rank sees), chosen before any training puts memory on one; no collectives
    // run on the GPUs, so ranks may also share one.
    int on_cuda = 0;
    for (int i = 0; i < nv; i++) on_cuda |= vars[i].cfg.device != DEVICE_CPU;
    if (comm_size(w) > 1 && on_cuda && cuda_device_count() > 0)
        cuda_device_set(comm_local_rank(w) % cuda_device_count());
    if (comm_size(w) > 1) rc = spread(rs, vars, nv);
    for (int i = 0; i < nv && !rc && lead; i++) rc = run_variant(rs, &vars[i]);
    if (!rc && lead) {
        snprintf(r->title, sizeof r->title, "%s", c0->name);
        snprintf(r->run_dir, sizeof r->run_dir, "%.511s", c0->dir);
        snprintf(r->note, sizeof r->note, "%s", c0->note);
        // results.h holds 255 characters of it
        snprintf(r->quality_metric, sizeof r->quality_metric, "%s", IMAGE_QUALITY_DESCRIPTION);
        int sk[SKILL_KINDS], ns;
        pipeline_skills(c0, sk, &ns);
        rc = fill_results(rs);
        if (!rc) rc = write_grid(rs, ns, c0->skills);
        if (!rc) rc = report_write(r);
        if (!rc) {
            char d[32];
            log_line("selma run: done in %s", format_duration(time_now() - t0, d, sizeof d));
            print_table(r);
            printf("results: %s\n", c0->dir);
        }
    }
    rank_jobs_free(&rs->jobs);
    run_results_free(r);
    free(r);
    free(rs);
    free(vars);
    return rc;
}
