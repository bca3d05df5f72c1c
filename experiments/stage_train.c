// LoRA experts: `selma train` and the pipeline's train stage. One adapter on one or
// more datasets (one skill: an expert; every skill: the "mixed" LoRA), the base model
// frozen (models/train.h, LoRA mode). Items are visited in a per-epoch permutation of
// the trainer's seed, so the data position (one integer, saved in checkpoints) is all
// a resumed run needs to continue bit-identically.
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "experiments/commands.h"
#include "experiments/pipeline.h"
#include "models/lora_moe.h"
#include "models/train.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

// Every item of the datasets as model input: x (N, 3, S, S) in [-1, 1] (resampled when
// the dataset's size differs: box filter for an integer factor down, nearest otherwise);
// for a latent-diffusion model (world sd) then encoded once by its VAE into latents
// (N, 4, S/f, S/f), np values per item.
typedef struct train_data {
    int n, S;
    size_t np;
    float *x;
    char **prompt;
} train_data;

static void to_input(const uint8_t *rgb, int H, int W, int S, float *x) {
    int fy = H % S == 0 ? H / S : 0, fx = W % S == 0 ? W / S : 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int xx = 0; xx < S; xx++) {
                float v;
                if (fy && fx) {
                    int sum = 0;
                    for (int dy = 0; dy < fy; dy++)
                        for (int dx = 0; dx < fx; dx++) sum += rgb[((y * fy + dy) * W + xx * fx + dx) * 3 + c];
                    v = (float)sum / (fy * fx);
                } else {
                    v = rgb[(((long)y * H / S) * W + (long)xx * W / S) * 3 + c];
                }
                x[(c * S + y) * S + xx] = v / 127.5f - 1.0f;
            }
}

static int data_load(const lora_train_opts *o, int S, train_data *td) {
    memset(td, 0, sizeof *td);
    td->S = S;
    for (int f = 0; f < o->n_data; f++) {
        dataset d;
        if (dataset_read(o->data[f], &d)) return -1;
        td->x = realloc(td->x, sizeof(float) * (size_t)(td->n + d.n) * 3 * S * S);
        td->prompt = realloc(td->prompt, sizeof(char *) * (size_t)(td->n + d.n));
        CHECK(td->x && td->prompt);
        for (int i = 0; i < d.n; i++) {
            to_input(d.image + (size_t)i * d.height * d.width * 3, d.height, d.width, S,
                     td->x + (size_t)(td->n + i) * 3 * S * S);
            td->prompt[td->n + i] = d.prompt[i], d.prompt[i] = NULL;
        }
        td->n += d.n;
        dataset_free(&d);
    }
    td->np = (size_t)3 * S * S;
    if (td->n == 0) return err_set("%s: the training data holds no items", o->data[0]);
    return 0;
}

// World sd: the images -> latents through the frozen VAE, once, before training. Each
// item's latent is a sample of its posterior (mean + std * eps, eps from the item's
// index), as diffusers' training scripts draw latent_dist.sample(), fixed for the run
// as with cached latents, so a resumed run sees the same data.
#define ENCODE_BATCH 4
static int data_encode(vae *v, train_data *td) {
    int S = td->S, f = 1 << (v->cfg.n_levels - 1), s = S / f;
    if (S % f) return err_set("train: image size %d is not a multiple of the VAE's factor %d", S, f);
    size_t nl = (size_t)v->cfg.latent_channels * s * s;
    float *lat = malloc(sizeof(float) * (size_t)td->n * nl);
    CHECK(lat);
    int rc = vae_alloc_activations(v, ENCODE_BATCH, S, S);
    uint64_t seeds[ENCODE_BATCH];
    for (int i0 = 0; i0 < td->n && !rc; i0 += ENCODE_BATCH) {
        int nb = td->n - i0 < ENCODE_BATCH ? td->n - i0 : ENCODE_BATCH;
        for (int b = 0; b < nb; b++) seeds[b] = 0x6c6174656e74ULL + (uint64_t)(i0 + b);  // "latent"
        rc = vae_encode(v, td->x + (size_t)i0 * td->np, nb, lat + (size_t)i0 * nl, seeds);
    }
    if (rc) {
        free(lat);
        return -1;
    }
    log_line("train: %d images of %dx%d encoded to %dx%dx%d latents", td->n, S, S, v->cfg.latent_channels, s, s);
    free(td->x);
    td->x = lat, td->np = nl;
    return 0;
}

static void data_free(train_data *td) {
    for (int i = 0; i < td->n; i++) free(td->prompt[i]);
    free(td->prompt), free(td->x);
}

// DSG of an adapter on the validation prompts (model selection; never the test split).
static int val_score(const lora_train_opts *o, const char *adapter, double *dsg) {
    eval_sampling s = {.steps = o->val_steps, .sampler = o->val_sampler, .batch = 16, .cfg = o->val_cfg,
                       .seed = 0x76616cULL};  // "val"
    float w = 1;
    uint8_t *rgb;
    int S;
    if (draw_images(o->model, &adapter, &w, 1, NULL, o->val_prompts, o->n_val, &s, &rgb, &S)) return -1;
    eval_totals t;
    eval_init(&t);
    score_images(o->val_prompts, o->val_skills, rgb, o->n_val, S, &t);
    free(rgb);
    double tifa, cd, ct;
    long n;
    eval_mean(&t, -1, dsg, &tifa, &cd, &ct, &n);
    return 0;
}

// At a checkpoint of a run that selects on validation: the adapter as a candidate file
// and its score next to it (written once; a resumed run finds them).
static int candidate(const lora_train_opts *o, const trainer *tr, long step) {
    char path[4300], spath[4400];
    snprintf(path, sizeof path, "%s/cand_%06ld.safetensors", o->ckpt_dir, step);
    snprintf(spath, sizeof spath, "%s.score", path);
    struct stat st;
    if (stat(spath, &st) == 0) return 0;
    if (unet_save(&tr->m->unet, path, PARAM_LORA)) return -1;
    double dsg;
    if (val_score(o, path, &dsg)) return -1;
    char buf[64];
    int len = snprintf(buf, sizeof buf, "%.17g\n", dsg);
    log_line("train: step %ld: validation DSG %.4f (%d prompts)", step, dsg, o->n_val);
    return atomic_write(spath, buf, (size_t)len);
}

// The best candidate (highest validation DSG; the earlier step on a tie) -> o->out.
static int pick_candidate(const lora_train_opts *o, long last_step) {
    long best = -1;
    double best_dsg = -1;
    for (long s = 0; s <= last_step; s++) {
        char spath[4400], *text;
        size_t n;
        snprintf(spath, sizeof spath, "%s/cand_%06ld.safetensors.score", o->ckpt_dir, s);
        struct stat st;
        if (stat(spath, &st) || file_read_all(spath, &text, &n)) continue;
        double v = strtod(text, NULL);
        free(text);
        if (v > best_dsg) best_dsg = v, best = s;
    }
    if (best < 0) return err_set("%s: no scored checkpoint to choose from", o->ckpt_dir);
    char src[4300], *bytes;
    size_t n;
    snprintf(src, sizeof src, "%s/cand_%06ld.safetensors", o->ckpt_dir, best);
    if (file_read_all(src, &bytes, &n)) return -1;
    int rc = atomic_write(o->out, bytes, n);
    free(bytes);
    if (!rc) log_line("train: chose step %ld (validation DSG %.4f) -> %s", best, best_dsg, o->out);
    return rc;
}

// A resumed run's loss log: lines past the checkpoint's step were written by the
// interrupted run after its last checkpoint and will be written again; drop them.
static int loss_log_truncate(const char *path, long step) {
    char *text;
    size_t n;
    struct stat st;
    if (stat(path, &st)) return 0;
    if (file_read_all(path, &text, &n)) return -1;
    size_t keep = 0;
    for (char *line = text; *line;) {
        char *e = strchr(line, '\n');
        if (!e || strtol(line, NULL, 10) > step) break;
        keep = (size_t)(e + 1 - text), line = e + 1;
    }
    int rc = atomic_write(path, text, keep);
    free(text);
    return rc;
}

int lora_train_run(const lora_train_opts *o) {
    lora_config lc = {.rank = o->rank, .alpha = o->alpha};
    size_t k = 0;  // "to_q, to_k" as the config writes it -> "to_q,to_k" (unet's rule)
    for (const char *t = o->targets; *t && k + 1 < sizeof lc.targets; t++)
        if (*t != ' ' && *t != '\t') lc.targets[k++] = *t;
    lc.targets[k] = 0;
    t2i_model m = {0};
    lora_moe moe = {0};
    if (o->n_moe) {
        lora_moe_config mc = {.n_experts = o->n_moe, .temperature = o->moe_temperature};
        if (o->n_moe > LORA_MOE_MAX_EXPERTS) return err_set("train: at most %d experts", LORA_MOE_MAX_EXPERTS);
        for (int i = 0; i < o->n_moe; i++) mc.files[i] = o->moe_experts[i];
        if (bundle_load(&m, o->model, UNET_TRAIN_MOE, NULL)) return -1;
        if (lora_moe_init(&moe, &m.unet, &mc)) {
            t2i_free(&m);
            return -1;
        }
    } else if (bundle_load(&m, o->model, UNET_TRAIN_LORA, &lc)) {
        return -1;
    }
    if (o->device != DEVICE_CPU && t2i_unet_to_device(&m, (device_kind)o->device)) {
        if (o->n_moe) lora_moe_free(&moe);
        t2i_free(&m);
        return -1;
    }
    train_data td;
    int rc = data_load(o, m.cfg.image_size, &td);
    if (!rc && m.vae) rc = data_encode(m.vae, &td);
    if (!rc && o->batch > td.n) rc = err_set("train: batch %d is larger than the %d training items", o->batch, td.n);
    if (rc) {
        data_free(&td);
        if (o->n_moe) lora_moe_free(&moe);
        t2i_free(&m);
        return -1;
    }
    train_hparams hp = {.adam = {.lr = o->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                 .weight_decay = o->weight_decay},
                        .warmup_steps = o->warmup, .grad_clip = o->grad_clip,
                        .ema_decay = o->ema_decay, .ema_warmup = 0, .caption_dropout = o->caption_dropout,
                        .max_nonfinite = o->max_nonfinite, .shards = o->shards > 1 ? o->shards : 1};
    trainer tr;
    rc = trainer_init(&tr, &m, &hp, o->batch, o->seed);
    if (rc) {
        data_free(&td);
        if (o->n_moe) lora_moe_free(&moe);
        t2i_free(&m);
        return -1;
    }
    long pos = 0, step0;
    char latest[4300];
    int found = ckpt_find_latest(o->ckpt_dir, latest, sizeof latest, &step0, NULL);
    if (found == 0) {
        rc = trainer_load(&tr, latest, &pos);
        if (!rc) log_line("train: resumed from %s (step %ld, data position %ld)", latest, tr.step, pos);
        if (!rc && o->loss_log) rc = loss_log_truncate(o->loss_log, tr.step);
    } else if (!o->n_moe) {
        trainer_init_lora(&tr, o->seed);  // routers start at zero: the uniform merge
    }
    int B = o->batch, N = td.n;
    size_t np = td.np;
    float *x = malloc(sizeof(float) * (size_t)B * np);
    const char **caps = malloc(sizeof(char *) * (size_t)B);
    int *perm = malloc(sizeof(int) * (size_t)N);
    CHECK(x && caps && perm);
    long epoch = -1;
    FILE *lossf = o->loss_log ? fopen(o->loss_log, found == 0 ? "a" : "w") : NULL;
    progress p;
    progress_begin(&p, "train", tr.step, o->steps);
    double loss_sum = 0;
    int loss_n = 0, every = o->log_every > 0 ? o->log_every : 1;
    while (!rc && tr.step < o->steps) {
        for (int b = 0; b < B; b++, pos++) {
            if (pos / N != epoch) epoch = pos / N, trainer_epoch_order(&tr, epoch, N, perm);
            int i = perm[pos % N];
            memcpy(x + (size_t)b * np, td.x + (size_t)i * np, sizeof(float) * np);
            caps[b] = td.prompt[i];
        }
        double loss = NAN;
        int r = trainer_step(&tr, x, caps, &loss, NULL);
        if (r < 0) { rc = -1; break; }
        if (r == 0) loss_sum += loss, loss_n++;
        progress_update(&p, tr.step, loss);
        if (o->on_step) o->on_step(o->on_step_ctx);
        if (tr.step % every == 0 && loss_n) {
            if (lossf) fprintf(lossf, "%ld %.6f\n", tr.step, loss_sum / loss_n), fflush(lossf);
            loss_sum = 0, loss_n = 0;
        }
        int stop = o->stop_after > 0 && tr.step >= o->stop_after && tr.step < o->steps;
        if ((o->checkpoint_every > 0 && tr.step % o->checkpoint_every == 0) || tr.step == o->steps || stop) {
            rc = trainer_save(&tr, o->ckpt_dir, pos, 2);
            if (!rc && o->n_val && o->checkpoint_every > 0 &&
                (tr.step % o->checkpoint_every == 0 || tr.step == o->steps))
                rc = candidate(o, &tr, tr.step);
        }
        if (stop && !rc) {
            log_line("train: stopped at step %ld (--stop-after); rerun to resume", tr.step);
            rc = 3;
        }
        if (rc == 3) break;
    }
    if (rc == 0) progress_end(&p);
    if (lossf) fclose(lossf);
    if (!rc) {
        if (o->n_val) rc = pick_candidate(o, tr.step);
        else {
            trainer_swap_ema(&tr);
            rc = o->n_moe ? lora_moe_save(&moe, o->out) : unet_save(&m.unet, o->out, PARAM_LORA);
            trainer_swap_ema(&tr);
        }
    }
    free(x), free(caps), free(perm);
    data_free(&td);
    trainer_free(&tr);
    if (o->n_moe) lora_moe_free(&moe);
    t2i_free(&m);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: selma train --model DIR --data FILE.h5 [--data ...] --out ADAPTER.safetensors [options]\n"
            "  one LoRA adapter on the datasets (prompt + image), base weights frozen\n"
            "  --rank R --alpha A       LoRA rank and alpha (default 8, 8)\n"
            "  --targets LIST           linears adapted (default to_q,to_k,to_v,to_out.0)\n"
            "  --steps N --batch B      optimizer steps, images per step (default 500, 16)\n"
            "  --shards S               run each batch in S equal pieces, gradients averaged\n"
            "                           (gradient accumulation: activations for B/S images)\n"
            "  --lr LR                  AdamW learning rate, constant (default 3e-4)\n"
            "  --seed K                 LoRA init, data order, noise (default 0)\n"
            "  --checkpoints DIR        checkpoint directory (default OUT.ckpt); resumed\n"
            "  --checkpoint-every N     (default 100)\n"
            "  --device cpu|cuda        where the UNet trains (default cpu; cuda: one GPU)\n"
            "  --stop-after N           stop after step N as an interruption would (exit 3)\n");
}

int cmd_train(int argc, char **argv) {
    lora_train_opts o = {.rank = 8, .alpha = 8, .targets = "to_q,to_k,to_v,to_out.0", .steps = 500,
                         .batch = 16, .lr = 3e-4, .weight_decay = 1e-2, .grad_clip = 1.0,
                         .checkpoint_every = 100, .log_every = 50, .max_nonfinite = 20};
    char ckpt[4200] = "";
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); return 0; }
        if (i + 1 >= argc) {
            fprintf(stderr, "selma train: unknown or incomplete option '%s'\n", k);
            return 2;
        }
        const char *v = argv[++i];
        char *end;
        double d = strtod(v, &end);
        int num = *v && !*end, bad = 0;
        if (!strcmp(k, "--model")) o.model = v;
        else if (!strcmp(k, "--data")) {
            if (o.n_data == SKILL_KINDS) bad = 1;
            else o.data[o.n_data++] = v;
        } else if (!strcmp(k, "--out")) o.out = v;
        else if (!strcmp(k, "--targets")) o.targets = v;
        else if (!strcmp(k, "--checkpoints")) snprintf(ckpt, sizeof ckpt, "%s", v);
        else if (!strcmp(k, "--device")) {
            device_kind dev;
            if (t2i_device_parse(v, "selma train --device", &dev)) {
                fprintf(stderr, "%s\n", err_msg());
                return 2;
            }
            o.device = dev;
        }
        else if (!strcmp(k, "--rank")) o.rank = (int)d, bad = !num || d < 1 || d > 4096;
        else if (!strcmp(k, "--alpha")) o.alpha = (float)d, bad = !num || !(d > 0);
        else if (!strcmp(k, "--steps")) o.steps = (int)d, bad = !num || d < 1 || d > 1e7;
        else if (!strcmp(k, "--batch")) o.batch = (int)d, bad = !num || d < 1 || d > 4096;
        else if (!strcmp(k, "--shards")) o.shards = (int)d, bad = !num || d < 1 || d > 4096;
        else if (!strcmp(k, "--lr")) o.lr = d, bad = !num || !(d >= 0 && d <= 1);
        else if (!strcmp(k, "--seed")) o.seed = strtoull(v, &end, 10), bad = !*v || *end;
        else if (!strcmp(k, "--checkpoint-every")) o.checkpoint_every = (int)d, bad = !num || d < 0;
        else if (!strcmp(k, "--stop-after")) o.stop_after = (long)d, bad = !num || d < 0;
        else {
            fprintf(stderr, "selma train: unknown option '%s'\n", k);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "selma train: %s: bad value '%s'\n", k, v);
            return 2;
        }
    }
    if (!o.model || !o.n_data || !o.out) {
        fprintf(stderr, "selma train: --model, --data and --out are required\n");
        usage(stderr);
        return 2;
    }
    if (!ckpt[0]) snprintf(ckpt, sizeof ckpt, "%s.ckpt", o.out);
    o.ckpt_dir = ckpt;
    int rc = lora_train_run(&o);
    if (rc < 0) fprintf(stderr, "selma train: %s\n", err_msg());
    else if (rc == 0) printf("train: %s (%d steps, rank %d)\n", o.out, o.steps, o.rank);
    return rc < 0 ? 1 : rc;
}
