// `selma pretrain CONFIG [section.key=value ...]`: trains the shapes world's base model
// (text encoder + UNet, every weight) on ground-truth renders with the incomplete
// pretraining captions, rendered on the fly from (data_seed, item index), so the data
// position is one integer. Checkpoints under <dir>/checkpoints/, resumed from the
// newest complete one; at the end the EMA weights go to the bundle <dir>/model/.
// Under mpirun or srun the ranks train data-parallel (models/train.h): every rank
// renders the whole global batch (cheap: the items come from (data_seed, index)) and
// runs its shard; rank 0 alone logs and writes the log, config, checkpoints and model.
#include <cblas.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/prompt_gen.h"
#include "data/prompt_parse.h"
#include "data/render.h"
#include "experiments/commands.h"
#include "runtime/comm.h"
#include "runtime/comm_gpu.h"
#include "runtime/config.h"
#include "runtime/device.h"
#include "models/train.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

// ---- the config: [model], [diffusion], [train], [output] ----

typedef struct pretrain_cfg {
    char world[16];
    int image_size, channels[UNET_MAX_LEVELS], n_channels, layers_per_block;
    int cross_attn[UNET_MAX_LEVELS], n_cross_attn, heads[UNET_MAX_LEVELS], n_heads;
    int norm_groups, use_linear_projection, pooled_text;
    int text_width, text_layers, text_heads, text_mlp, max_tokens;
    int beta_schedule, prediction_type, train_timesteps;
    int64_t steps, seed, data_seed;
    int batch, shards, warmup, lr_schedule, ema_warmup, threads, log_every, max_nonfinite;
    double lr, weight_decay, grad_clip, ema_decay, caption_dropout, text_lr_scale;
    int freeze_text, device;
    char dir[1024];
    int checkpoint_every, keep;
} pretrain_cfg;

static const char *const betas[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
static const char *const preds[] = {"epsilon", "v_prediction"};
static const char *const lr_schedules[] = {"constant", "cosine"};
static const char *const devices[] = {"cpu", "cuda"};  // runtime/tensor.h's device_kind order

#define P pretrain_cfg
static const cfg_field fields[] = {
    CFG_STRING(P, "model", "world", world, "the world the model draws (shapes)"),
    CFG_INT(P, "model", "image_size", image_size, 8, 1024, "pixels; the UNet's sample_size"),
    CFG_INT_LIST(P, "model", "channels", channels, n_channels, 1, 4096, "UNet block_out_channels per level"),
    CFG_INT(P, "model", "layers_per_block", layers_per_block, 1, UNET_MAX_LAYERS, "ResNet blocks per level"),
    CFG_INT_LIST(P, "model", "cross_attn", cross_attn, n_cross_attn, 0, 1, "1: transformer blocks at this level"),
    CFG_INT_LIST(P, "model", "heads", heads, n_heads, 1, 64, "attention heads per level"),
    CFG_INT(P, "model", "norm_groups", norm_groups, 1, 64, "GroupNorm groups"),
    CFG_BOOL(P, "model", "use_linear_projection", use_linear_projection, "proj_in/out as Linear (SD2) or 1x1 conv"),
    CFG_BOOL(P, "model", "pooled_text", pooled_text, "pooled text embedding added to the time embedding"),
    CFG_INT(P, "model", "text_width", text_width, 8, 4096, "text encoder width = cross_attention_dim"),
    CFG_INT(P, "model", "text_layers", text_layers, 1, 48, "text encoder layers"),
    CFG_INT(P, "model", "text_heads", text_heads, 1, 64, "text encoder heads"),
    CFG_INT(P, "model", "text_mlp", text_mlp, 8, 16384, "text encoder MLP width"),
    CFG_INT(P, "model", "max_tokens", max_tokens, 4, 512, "tokens per prompt (dense prompts need 43)"),
    CFG_ENUM(P, "diffusion", "beta_schedule", beta_schedule, betas, "noise schedule (diffusers' names)"),
    CFG_ENUM(P, "diffusion", "prediction_type", prediction_type, preds, "what the UNet predicts"),
    CFG_INT(P, "diffusion", "train_timesteps", train_timesteps, 1, SCHEDULE_MAX_T, "num_train_timesteps"),
    CFG_INT64(P, "train", "steps", steps, 1, 1e9, "optimizer steps in all (a resumed run continues to this)"),
    CFG_INT(P, "train", "batch", batch, 1, 4096, "images per step (the global batch over all ranks)"),
    CFG_INT(P, "train", "shards", shards, 0, 4096, "batch shards run in turn, gradients summed in order (0 = the ranks); one process with N = N ranks, bit for bit on cpu; on cuda the sum stays on the GPU"),
    CFG_DOUBLE(P, "train", "lr", lr, 0, 1, "AdamW peak learning rate"),
    CFG_INT(P, "train", "warmup", warmup, 0, 1000000, "linear warm-up steps"),
    CFG_ENUM(P, "train", "lr_schedule", lr_schedule, lr_schedules,
             "after warm-up: constant, or cosine down to 0 at `steps` (then a longer `steps` is a different run, not a continuation)"),
    CFG_DOUBLE(P, "train", "weight_decay", weight_decay, 0, 1, "AdamW decoupled weight decay"),
    CFG_DOUBLE(P, "train", "grad_clip", grad_clip, 0, 1e6, "global gradient-norm clip (0 = off)"),
    CFG_DOUBLE(P, "train", "ema_decay", ema_decay, 0, 0.999999, "EMA of the weights for sampling (0 = off)"),
    CFG_BOOL(P, "train", "ema_warmup", ema_warmup, "EMA decay ramp (1+k)/(10+k)"),
    CFG_DOUBLE(P, "train", "caption_dropout", caption_dropout, 0, 1, "captions replaced by \"\" (guidance)"),
    CFG_DOUBLE(P, "train", "text_lr_scale", text_lr_scale, 0, 1000, "text encoder lr = lr * this (0 = 1)"),
    CFG_BOOL(P, "train", "freeze_text", freeze_text, "keep the text encoder at its random init"),
    CFG_INT(P, "train", "max_nonfinite", max_nonfinite, 0, 1000000, "stop after this many non-finite steps in a row (0 = never)"),
    CFG_INT64(P, "train", "seed", seed, 0, 9e18, "init, dropout, timesteps and noise"),
    CFG_INT64(P, "train", "data_seed", data_seed, 0, 9e18, "the pretraining items (scene, caption)"),
    CFG_INT(P, "train", "threads", threads, 0, 256, "OpenBLAS threads (0 = its default)"),
    CFG_ENUM(P, "train", "device", device, devices,
             "where the UNet trains: cpu, or cuda (a GPU per rank, or ranks sharing one; the text encoder stays on the CPU)"),
    CFG_INT(P, "train", "log_every", log_every, 0, 1000000, "a log line every N steps"),
    CFG_STRING(P, "output", "dir", dir, "run directory: log.txt, config.ini, checkpoints/, model/"),
    CFG_INT(P, "output", "checkpoint_every", checkpoint_every, 0, 1000000, "steps between checkpoints (0 = end only)"),
    CFG_INT(P, "output", "keep", keep, 0, 1000, "complete checkpoints kept (0 = all)"),
};
#undef P
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

static void pretrain_cfg_defaults(pretrain_cfg *c) {
    t2i_config m;
    t2i_config_shapes(&m);
    *c = (pretrain_cfg){.image_size = m.image_size, .n_channels = m.unet.n_levels,
                        .layers_per_block = m.unet.layers_per_block, .n_cross_attn = m.unet.n_levels,
                        .n_heads = m.unet.n_levels, .norm_groups = m.unet.norm_num_groups,
                        .text_width = m.te.width, .text_layers = m.te.layers, .text_heads = m.te.heads,
                        .text_mlp = m.te.mlp_width, .max_tokens = m.te.max_tokens,
                        .beta_schedule = m.beta, .prediction_type = m.prediction,
                        .train_timesteps = m.train_timesteps, .steps = 3000, .seed = 0, .data_seed = 1,
                        .batch = 32, .warmup = 200, .ema_warmup = 1, .threads = 0, .log_every = 50,
                        .lr = 1e-3, .weight_decay = 0.01, .grad_clip = 1.0, .ema_decay = 0.995,
                        .caption_dropout = 0.1, .text_lr_scale = 1, .max_nonfinite = 20, .checkpoint_every = 250, .keep = 3};
    snprintf(c->world, sizeof c->world, "shapes");
    snprintf(c->dir, sizeof c->dir, "runs/pretrain");
    for (int i = 0; i < m.unet.n_levels; i++) {
        c->channels[i] = m.unet.block_out_channels[i];
        c->cross_attn[i] = m.unet.cross_attn[i];
        c->heads[i] = m.unet.num_heads[i];
    }
}

static void pretrain_model_config(const pretrain_cfg *c, t2i_config *m) {
    t2i_config_shapes(m);
    m->image_size = c->image_size;
    unet_config *u = &m->unet;
    u->sample_size = c->image_size;
    u->n_levels = c->n_channels;
    for (int i = 0; i < c->n_channels; i++) {
        u->block_out_channels[i] = c->channels[i];
        u->cross_attn[i] = c->cross_attn[i];
        u->num_heads[i] = c->heads[i];
    }
    u->layers_per_block = c->layers_per_block;
    u->norm_num_groups = c->norm_groups;
    u->use_linear_projection = c->use_linear_projection;
    u->cross_attention_dim = c->text_width;
    u->class_embed_dim = c->pooled_text ? c->text_width : 0;
    m->te.width = c->text_width, m->te.layers = c->text_layers, m->te.heads = c->text_heads;
    m->te.mlp_width = c->text_mlp, m->te.max_tokens = c->max_tokens;
    m->beta = (beta_schedule)c->beta_schedule;
    m->prediction = (prediction_type)c->prediction_type;
    m->train_timesteps = c->train_timesteps;
}

// Loads the file, applies the overrides, then checks what one key cannot: the lists
// agree in length and the model config is whole.
static int pretrain_cfg_load(pretrain_cfg *c, const char *path, char **overrides, int n) {
    if (cfg_load(path, fields, N_FIELDS, c)) return -1;
    for (int i = 0; i < n; i++)
        if (cfg_set(fields, N_FIELDS, c, overrides[i], "command line")) return -1;
    if (strcmp(c->world, "shapes"))
        return err_set("%s: [model] world: '%s' cannot be pretrained here (shapes)", path, c->world);
    if (c->n_cross_attn != c->n_channels || c->n_heads != c->n_channels || c->n_channels > UNET_MAX_LEVELS)
        return err_set("%s: [model] channels, cross_attn and heads must list the same number (1..%d) of levels",
                       path, UNET_MAX_LEVELS);
    t2i_config m;
    pretrain_model_config(c, &m);
    if (t2i_config_check(&m)) return err_wrap("%s", path);
    if (c->device == DEVICE_CUDA && cuda_device_count() == 0)
        return err_set("%s: [train] device: cuda: no usable CUDA device here (%s); use cpu", path,
                       cuda_device_describe());
    return 0;
}

static int pretrain_cfg_write(const pretrain_cfg *c, const char *path) {
    return cfg_write(path, fields, N_FIELDS, c);
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) { stop_requested = sig; }

// Item i's placement seed, from (data_seed, i) alone.
static uint64_t place_seed(uint64_t seed, long i) {
    rng r = rng_make(seed, 0x706c61636550ULL);  // "placeP"
    r.pos = 2 * (uint64_t)i;
    return rng_u64(&r);
}

// Renders the next pretraining items from *pos into x (B, 3, S, S) in [-1, 1], captions
// into caps. Scenes are drawn at 32x32 or more (the placement's minimum canvas) and
// box-filtered down when S is smaller.
static void make_batch(uint64_t data_seed, long *pos, int B, int S, float *x,
                       char (*caps)[PROMPT_MAX_LEN], uint8_t *rgb) {
    int R = S < 32 ? 32 : S, f = R / S;
    for (int b = 0; b < B;) {
        long i = (*pos)++;
        scene_graph full, stated;
        scene s;
        CHECK(prompt_pretrain_item(data_seed, i, &full, caps[b], PROMPT_MAX_LEN, &stated) == 0);
        uint64_t ps = place_seed(data_seed, i);
        int tries = 0;
        while (tries < 8 && scene_place(&full, R, R, 0, ps + (uint64_t)tries, &s) != 0) tries++;
        if (tries == 8) continue;  // a crowded scene that does not fit: the next item
        scene_render(&s, rgb);
        float *xb = x + (size_t)b * 3 * S * S;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < S; y++)
                for (int xx = 0; xx < S; xx++) {
                    int sum = 0;
                    for (int dy = 0; dy < f; dy++)
                        for (int dx = 0; dx < f; dx++) sum += rgb[((y * f + dy) * R + xx * f + dx) * 3 + c];
                    xb[(c * S + y) * S + xx] = (float)sum / (f * f) / 127.5f - 1.0f;
                }
        b++;
    }
}

static char *training_json(const pretrain_cfg *c, const trainer *tr) {
    char *s = malloc(1024);
    CHECK(s);
    snprintf(s, 1024,
             "{\"data\": \"shapes pretraining captions (prompt_pretrain_item), data_seed %lld\", "
             "\"steps\": %ld, \"batch\": %d, \"lr\": %g, \"warmup_steps\": %d, \"lr_schedule\": \"%s\", "
             "\"weight_decay\": %g, "
             "\"grad_clip\": %g, \"ema_decay\": %g, \"caption_dropout\": %g, \"text_lr_scale\": %g, "
             "\"freeze_text\": %s, \"seed\": %lld, "
             "\"skipped_steps\": %ld, \"weights\": \"%s\"}",
             (long long)c->data_seed, tr->step, c->batch, c->lr, c->warmup, lr_schedules[c->lr_schedule],
             c->weight_decay,
             c->grad_clip, c->ema_decay, c->caption_dropout, c->text_lr_scale,
             c->freeze_text ? "true" : "false", (long long)c->seed, tr->skipped,
             c->ema_decay > 0 ? "ema" : "last");
    return s;
}

// Whether any rank was asked to stop: the ranks must leave the loop at the same step.
static int stop_agreed(comm *w, int stop) {
    if (comm_size(w) == 1) return stop;
    float f = stop ? 1.0f : 0.0f;
    comm_allreduce_sum(w, &f, 1, "stop flag");
    return f > 0;
}

static int run(const pretrain_cfg *c, long stop_after, comm *w) {
    char path[4200], ckdir[4200], latest[4300];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", c->dir);
    t2i_model m = {0};
    pretrain_model_config(c, &m.cfg);
    if (t2i_build(&m, UNET_TRAIN_FULL, NULL)) return -1;
    t2i_init_random(&m, (uint64_t)c->seed);  // on the host, so both devices start alike
    // Several ranks on GPUs: each picks its GPU before the UNet goes there, and NCCL or
    // host staging is chosen for the gradients (runtime/comm_gpu.h, SELMA_GPU_REDUCE).
    comm_nccl *nccl = NULL;
    if (c->device != DEVICE_CPU && comm_size(w) > 1 && comm_gpu_init(w, &nccl)) {
        t2i_free(&m);
        return -1;
    }
    if (c->device != DEVICE_CPU && t2i_unet_to_device(&m, (device_kind)c->device)) {
        comm_gpu_free(nccl);
        t2i_free(&m);
        return -1;
    }
    train_hparams hp = {.adam = {.lr = c->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                 .weight_decay = c->weight_decay},
                        .warmup_steps = c->warmup, .grad_clip = c->grad_clip,
                        .decay_steps = c->lr_schedule == 1 ? (int)c->steps : 0,
                        .ema_decay = c->ema_decay, .ema_warmup = c->ema_warmup,
                        .caption_dropout = c->caption_dropout, .max_nonfinite = c->max_nonfinite,
                        .text_lr_scale = c->text_lr_scale, .freeze_text = c->freeze_text,
                        .comm = w, .nccl = nccl, .shards = c->shards};
    trainer tr;
    if (trainer_init(&tr, &m, &hp, c->batch, (uint64_t)c->seed)) {
        comm_gpu_free(nccl);
        t2i_free(&m);
        return -1;
    }
    long pos = 0, step0;
    int skipped_dirs = 0, rc = 0;
    int found = ckpt_find_latest(ckdir, latest, sizeof latest, &step0, &skipped_dirs);
    // Rank 0's choice for all: every rank resumes from the same checkpoint.
    comm_bcast(w, &found, sizeof found, 0, "resume");
    comm_bcast(w, latest, sizeof latest, 0, "resume");
    if (found == 0) {
        rc = trainer_load(&tr, latest, &pos);
        if (!rc) log_line("resumed from %s (step %ld, data position %ld)%s", latest, tr.step, pos,
                          skipped_dirs ? "; incomplete checkpoints skipped" : "");
    } else if (skipped_dirs) {
        log_line("no complete checkpoint in %s (%d incomplete skipped): starting afresh", ckdir, skipped_dirs);
    }
    int S = m.cfg.image_size, B = c->batch;
    float *x = malloc(sizeof(float) * (size_t)B * 3 * S * S);
    char (*caps)[PROMPT_MAX_LEN] = malloc(sizeof *caps * (size_t)B);
    const char **cp = malloc(sizeof(char *) * (size_t)B);
    uint8_t *rgb = malloc((size_t)(S < 32 ? 32 : S) * (S < 32 ? 32 : S) * 3);
    CHECK(x && caps && cp && rgb);
    for (int b = 0; b < B; b++) cp[b] = caps[b];
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    progress p;
    progress_begin(&p, "pretrain", tr.step, c->steps);
    double loss_sum = 0;
    int loss_n = 0;
    long last_saved = found == 0 ? tr.step : -1;
    while (!rc && tr.step < c->steps) {
        make_batch((uint64_t)c->data_seed, &pos, B, S, x, caps, rgb);
        double loss = NAN, gnorm = NAN;
        int r = trainer_step(&tr, x, cp, &loss, &gnorm);
        if (r < 0) { rc = -1; break; }
        if (r == 0) loss_sum += loss, loss_n++;
        if (comm_rank(w) == 0) progress_update(&p, tr.step, loss);
        if (c->log_every > 0 && tr.step % c->log_every == 0) {
            log_line("step %ld loss %.6f (mean of %d) lr %.3g grad_norm %.4f", tr.step,
                     loss_n ? loss_sum / loss_n : NAN, loss_n, trainer_lr(&tr), gnorm);
            loss_sum = 0, loss_n = 0;
        }
        int signalled = stop_agreed(w, stop_requested != 0);
        int stop = signalled || (stop_after > 0 && tr.step >= stop_after);
        if ((c->checkpoint_every > 0 && tr.step % c->checkpoint_every == 0) ||
            (signalled && tr.step != last_saved)) {
            rc = trainer_save(&tr, ckdir, pos, c->keep);
            if (!rc) log_line("checkpoint %s/step_%06ld", ckdir, tr.step), last_saved = tr.step;
        }
        if (stop && !rc) {
            if (comm_rank(w) == 0) progress_end(&p);
            log_line("stopped at step %ld (%s); rerun the same command to resume", tr.step,
                     signalled ? "signal" : "--stop-after");
            rc = signalled ? 130 : 0;
            goto out;
        }
    }
    if (comm_rank(w) == 0) progress_end(&p);
    if (!rc && tr.step != last_saved) {
        rc = trainer_save(&tr, ckdir, pos, c->keep);
        if (!rc) log_line("checkpoint %s/step_%06ld", ckdir, tr.step);
    }
    if (!rc && comm_rank(w) == 0) {
        char *tj = training_json(c, &tr);
        snprintf(path, sizeof path, "%s/model", c->dir);
        trainer_swap_ema(&tr);
        rc = bundle_save(&m, path, tj);
        trainer_swap_ema(&tr);
        free(tj);
        if (!rc) log_line("model: %s (%s weights, %ld steps, %ld skipped)", path,
                          c->ema_decay > 0 ? "EMA" : "last", tr.step, tr.skipped);
    }
out:
    free(x);
    free(caps);
    free(cp);
    free(rgb);
    trainer_free(&tr);
    comm_gpu_free(nccl);
    t2i_free(&m);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: selma pretrain CONFIG.ini [section.key=value ...] [--stop-after N]\n"
            "  trains the shapes base model (text encoder + UNet) on rendered pretraining\n"
            "  captions; resumes from the newest complete checkpoint in [output] dir.\n"
            "  --stop-after N   stop after step N as an interruption would (checkpoints as\n"
            "                   scheduled, no final model); rerun to resume\n"
            "  SIGINT/SIGTERM   finish the step, write a checkpoint, exit 130\n");
}

int cmd_pretrain(int argc, char **argv) {
    const char *config = NULL;
    long stop_after = 0;
    pretrain_cfg c;
    pretrain_cfg_defaults(&c);
    char **overrides = malloc(sizeof(char *) * (size_t)(argc + 1));
    CHECK(overrides);
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); free(overrides); return 0; }
        if (!strcmp(argv[i], "--stop-after") && i + 1 < argc) stop_after = atol(argv[++i]);
        else if (strchr(argv[i], '=') && argv[i][0] != '-') overrides[n_over++] = argv[i];
        else if (!config && argv[i][0] != '-') config = argv[i];
        else {
            fprintf(stderr, "selma pretrain: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            free(overrides);
            return 2;
        }
    }
    if (!config) {
        usage(stderr);
        free(overrides);
        return 2;
    }
    comm *w = NULL;
    int rc = comm_init(&w);
    if (!rc) rc = pretrain_cfg_load(&c, config, overrides, n_over);
    free(overrides);
    char path[4200];
    int lead = rc || comm_rank(w) == 0;  // the rank that logs and writes
    if (!lead) log_set_quiet(1);
    if (!rc && lead) rc = mkdir_p(c.dir);
    snprintf(path, sizeof path, "%s/log.txt", c.dir);
    if (!rc && lead) rc = log_open(path);
    snprintf(path, sizeof path, "%s/config.ini", c.dir);
    if (!rc && lead) rc = pretrain_cfg_write(&c, path);
    if (!rc && c.threads > 0) openblas_set_num_threads(c.threads);
    if (!rc) {
        log_line("selma pretrain %s -> %s: %lld steps, batch %d, %d rank%s", config, c.dir,
                 (long long)c.steps, c.batch, comm_size(w), comm_size(w) > 1 ? "s" : "");
        rc = run(&c, stop_after, w);
    }
    if (rc < 0) fprintf(stderr, "selma pretrain: %s\n", err_msg());
    log_close();
    // A rank that fails alone would leave the others waiting until their timeout.
    if (rc < 0 && w && comm_size(w) > 1) comm_abort(w, 1, "selma pretrain failed on this rank (above)");
    comm_finalize();
    return rc < 0 ? 1 : rc;
}
