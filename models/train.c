// Training a text-to-image model, full or LoRA (see train.h).
#include "models/train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/device_ops.h"
#include "models/lora_moe.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/log.h"

static const char *const group_names[2][TRAIN_GROUPS] = {{"unet", "text_encoder"}, {"lora", ""}};

// Where a group's arrays live: the UNet's (group 0) on its device, the text encoder's
// on the host.
static device_kind group_dev(const trainer *tr, int g) { return g == 0 ? tr->dev : DEVICE_CPU; }

// n zeroed floats on dev (NULL when memory is short).
static float *zeros_on(device_kind dev, size_t n) {
    float *p = device_alloc(dev, (n ? n : 1) * sizeof(float));
    if (p) device_memset(dev, p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

// LoRA mode: the adapters between the model and the flat copy, which has the gradient
// arena's layout (each adapter at its gradient's offset, padding zero); both on the
// UNet's device (on CUDA one device-to-device copy per adapter tensor and step). A mixture of
// experts (UNET_TRAIN_MOE) trains in this mode too: its routers are one flat arena laid
// out like their gradients' (models/lora_moe.h), copied whole.
static void lora_gather(trainer *tr) {
    const param_table *t = &tr->m->unet.params;
    if (tr->m->unet.moe) {
        memcpy(tr->param[0], tr->m->unet.moe->router.base, tr->n[0] * sizeof(float));
        return;
    }
    for (int i = 0; i < t->n; i++) {
        const unet_param *p = &t->items[i];
        if (!p->trainable) continue;
        size_t off = (size_t)(p->grad - (float *)t->grads.base);
        device_copy(tr->dev, tr->param[0] + off, tr->dev, p->t.data, (size_t)tensor_numel(&p->t) * sizeof(float));
    }
}

static void lora_scatter(trainer *tr) {
    const param_table *t = &tr->m->unet.params;
    if (tr->m->unet.moe) {
        memcpy(tr->m->unet.moe->router.base, tr->param[0], tr->n[0] * sizeof(float));
        return;
    }
    for (int i = 0; i < t->n; i++) {
        const unet_param *p = &t->items[i];
        if (!p->trainable) continue;
        size_t off = (size_t)(p->grad - (float *)t->grads.base);
        device_copy(tr->dev, p->t.data, tr->dev, tr->param[0] + off, (size_t)tensor_numel(&p->t) * sizeof(float));
    }
}

static uint64_t name_hash(const char *s) {  // unet_io.c's stream per tensor name
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// A CUDA model's adapters are drawn on the host and copied over, so both devices start
// from the same values.
void trainer_init_lora(trainer *tr, uint64_t seed) {
    CHECK(tr->lora);
    const param_table *t = &tr->m->unet.params;
    for (int i = 0; i < t->n; i++) {
        const unet_param *p = &t->items[i];
        if (p->kind != PARAM_LORA) continue;
        size_t n = (size_t)tensor_numel(&p->t);
        float *x = tr->dev == DEVICE_CPU ? p->t.data : malloc((n ? n : 1) * sizeof(float));
        CHECK(x);
        if (p->init == PARAM_INIT_ZEROS) memset(x, 0, n * sizeof(float));
        else {
            float bound = 1.0f / sqrtf((float)p->fan_in);
            rng_fill_uniform(x, n, seed, name_hash(p->name), 0, -bound, bound);
        }
        if (tr->dev != DEVICE_CPU) {
            device_copy(tr->dev, p->t.data, DEVICE_CPU, x, n * sizeof(float));
            free(x);
        }
    }
    lora_gather(tr);
    if (tr->ema[0].shadow) device_copy(tr->dev, tr->ema[0].shadow, tr->dev, tr->param[0], tr->n[0] * sizeof(float));
}

void trainer_epoch_order(const trainer *tr, long epoch, int n, int *perm) {
    for (int i = 0; i < n; i++) perm[i] = i;
    rng r = rng_make(tr->rng.seed, 0x646174610000ULL + (uint64_t)epoch);  // "data" + epoch
    rng_shuffle(&r, perm, n);
}

int trainer_init(trainer *tr, t2i_model *m, const train_hparams *hp, int B, uint64_t seed) {
    memset(tr, 0, sizeof *tr);
    int moe = m->unet.mode == UNET_TRAIN_MOE, lora = m->unet.mode == UNET_TRAIN_LORA || moe;
    if (!lora && (m->unet.mode != UNET_TRAIN_FULL || !m->te.grads_arena.base))
        return err_set("trainer: the model was built frozen (build it for full or LoRA training)");
    if (lora && !moe && !m->unet.params.grads.base)
        return err_set("trainer: LoRA mode but the model has no adapters");
    if (moe && (!m->unet.moe || !m->unet.moe->router_grads.base))
        return err_set("trainer: MoE mode but no mixture of experts is attached (lora_moe_init)");
    if (B < 1) return err_set("trainer: batch %d < 1", B);
    if (!(hp->text_lr_scale >= 0 && hp->text_lr_scale <= 1e3))
        return err_set("trainer: text_lr_scale %g outside [0, 1000]", hp->text_lr_scale);
    if (!(hp->caption_dropout >= 0 && hp->caption_dropout <= 1))
        return err_set("trainer: caption_dropout %g outside [0, 1]", hp->caption_dropout);
    int ranks = hp->comm ? comm_size(hp->comm) : 1, shards = hp->shards ? hp->shards : ranks;
    if (shards < 1 || B % shards)
        return err_set("trainer: batch %d cannot be cut into %d equal shards", B, shards);
    if (ranks > 1 && shards != ranks)
        return err_set("trainer: %d shards over %d ranks (data-parallel runs one shard per rank)", shards, ranks);
    tr->m = m, tr->hp = *hp, tr->B = B, tr->lora = lora, tr->n_groups = lora ? 1 : 2;
    tr->comm = ranks > 1 ? hp->comm : NULL;
    tr->shards = shards, tr->Bs = B / shards;
    tr->shard0 = tr->comm ? comm_rank(tr->comm) : 0, tr->n_local = tr->comm ? 1 : shards;
    const t2i_config *c = &m->cfg;
    int S = c->unet.sample_size, T = c->te.max_tokens;
    tr->n_pix = c->unet.in_channels * S * S;
    if (c->unet.out_channels != c->unet.in_channels)
        return err_set("trainer: out_channels %d != in_channels %d (the target has the input's shape)",
                       c->unet.out_channels, c->unet.in_channels);
    // A CUDA UNet keeps its gradients, optimizer state and EMA on the device, and so
    // the shards' gradient sum (train.h).
    tr->dev = m->unet.params.params.device;
    if (tr->dev != DEVICE_CPU && moe)
        return err_set("trainer: a LoRA mixture of experts trains on the CPU only");
    CHECK(!hp->nccl || tr->dev != DEVICE_CPU);  // NCCL reduces device gradients only
    tr->nccl = tr->comm ? hp->nccl : NULL;
    tr->grad[0] = (float *)m->unet.params.grads.base;
    if (lora) {
        tr->n[0] = m->unet.params.grads.size / sizeof(float);
        if (moe) {
            float *routers;
            lora_moe_trainable(m->unet.moe, &routers, &tr->grad[0], &tr->n[0]);
        }
        tr->param[0] = zeros_on(tr->dev, tr->n[0]);
        if (!tr->param[0]) return err_set("trainer: out of memory for the adapters' copy");
        lora_gather(tr);
    } else {
        tr->param[0] = (float *)m->unet.params.params.base;
        tr->n[0] = m->unet.params.params.size / sizeof(float);
        tr->param[1] = (float *)m->te.params_arena.base, tr->grad[1] = (float *)m->te.grads_arena.base;
        tr->n[1] = m->te.params_arena.size / sizeof(float);
        // Full training gives every parameter a gradient laid out in the same order and
        // alignment, so the two arenas match float for float.
        CHECK(m->unet.params.grads.size == m->unet.params.params.size);
        CHECK(m->te.grads_arena.size == m->te.params_arena.size);
    }
    for (int g = 0; g < tr->n_groups; g++) {
        tr->adam_m[g] = zeros_on(group_dev(tr, g), tr->n[g]);
        tr->adam_v[g] = zeros_on(group_dev(tr, g), tr->n[g]);
        if (!tr->adam_m[g] || !tr->adam_v[g]) {
            trainer_free(tr);
            return err_set("trainer: out of memory for the optimizer state");
        }
        if (tr->n_local > 1 && !(tr->gacc[g] = zeros_on(group_dev(tr, g), tr->n[g]))) {
            trainer_free(tr);
            return err_set("trainer: out of memory for the shards' gradient sum");
        }
        if (tr->comm && group_dev(tr, g) != DEVICE_CPU && !tr->nccl &&
            !(tr->staged[g] = malloc((tr->n[g] ? tr->n[g] : 1) * sizeof(float)))) {
            trainer_free(tr);
            return err_set("trainer: out of memory for the gradient's host copy");
        }
        if (hp->ema_decay > 0 && ema_init_device(&tr->ema[g], tr->param[g], tr->n[g], hp->ema_decay,
                                                 hp->ema_warmup, group_dev(tr, g))) {
            trainer_free(tr);
            return -1;
        }
    }
    int Bs = tr->Bs;
    size_t np = (size_t)Bs * tr->n_pix;
    tr->t = malloc(sizeof(int) * (size_t)B);
    tr->drop = malloc(sizeof(int) * (size_t)B);
    tr->noise = malloc(sizeof(float) * (size_t)B * tr->n_pix);
    tr->texts = malloc(sizeof(char *) * (size_t)B);
    tr->ids = malloc(sizeof(int) * (size_t)Bs * T);
    tr->tf = malloc(sizeof(float) * (size_t)Bs);
    tr->xt = malloc(sizeof(float) * np);
    tr->target = malloc(sizeof(float) * np);
    tr->dout = malloc(sizeof(float) * np);
    tr->dctx = malloc(sizeof(float) * (size_t)Bs * T * c->te.width);
    tr->pooled = malloc(sizeof(float) * (size_t)Bs * c->te.width);
    tr->dpooled = malloc(sizeof(float) * (size_t)Bs * c->te.width);
    if (!tr->pooled || !tr->dpooled || !tr->ids || !tr->t || !tr->drop || !tr->tf || !tr->noise || !tr->xt || !tr->target ||
        !tr->dout || !tr->dctx || !tr->texts) {
        trainer_free(tr);
        return err_set("trainer: out of memory for batch %d", B);
    }
    if (tr->dev == DEVICE_CPU) {  // the UNet reads and writes the host buffers themselves
        tr->u_xt = tr->xt, tr->u_target = tr->target, tr->u_dout = tr->dout;
        tr->u_ctx = NULL, tr->u_dctx = tr->dctx, tr->u_pooled = tr->pooled, tr->u_dpooled = tr->dpooled;
    } else {
        size_t nc = (size_t)Bs * T * c->te.width, npl = (size_t)Bs * c->te.width;
        tr->u_xt = zeros_on(tr->dev, np), tr->u_target = zeros_on(tr->dev, np);
        tr->u_dout = zeros_on(tr->dev, np), tr->u_ctx = zeros_on(tr->dev, nc);
        tr->u_dctx = zeros_on(tr->dev, nc), tr->u_pooled = zeros_on(tr->dev, npl);
        tr->u_dpooled = zeros_on(tr->dev, npl);
        if (!tr->u_xt || !tr->u_target || !tr->u_dout || !tr->u_ctx || !tr->u_dctx || !tr->u_pooled ||
            !tr->u_dpooled) {
            trainer_free(tr);
            return err_set("trainer: out of device memory for batch %d", B);
        }
    }
    if (text_encoder_alloc_acts(&m->te, Bs, !lora) || unet_alloc_activations(&m->unet, Bs, T)) {
        trainer_free(tr);
        return -1;
    }
    tr->rng = rng_make(seed, 0x747261696e00ULL);  // "train"
    if (moe)
        log_line("trainer: MoE, %zu router floats trainable, experts and base frozen, batch %d",
                 tr->n[0], B);
    else if (lora)
        log_line("trainer: LoRA rank %d, %zu adapter floats trainable, base frozen, batch %d",
                 m->unet.params.lora.rank, tr->n[0], B);
    else
        log_line("trainer: %zu UNet + %zu text encoder floats, batch %d", tr->n[0], tr->n[1], B);
    if (tr->dev != DEVICE_CPU)
        log_line("trainer: UNet, its gradients, AdamW moments and EMA on cuda; text encoder on the host");
    if (shards > 1)
        log_line("trainer: data-parallel, %d shards of %d items%s%s", shards, Bs,
                 tr->comm ? " (one per rank)" : " (in this process, in turn)",
                 tr->dev == DEVICE_CPU ? ""
                 : tr->nccl ? "; UNet gradients averaged by NCCL"
                 : tr->comm ? "; UNet gradients staged through host memory for MPI"
                            : "; UNet gradients summed on the device");
    return 0;
}

void trainer_free(trainer *tr) {
    if (tr->lora) device_free(tr->dev, tr->param[0]);
    for (int g = 0; g < TRAIN_GROUPS; g++) {
        device_free(group_dev(tr, g), tr->adam_m[g]);
        device_free(group_dev(tr, g), tr->adam_v[g]);
        device_free(group_dev(tr, g), tr->gacc[g]);
        free(tr->staged[g]);
        if (tr->ema[g].shadow) ema_free(&tr->ema[g]);
    }
    free(tr->ids), free(tr->t), free(tr->drop), free(tr->tf), free(tr->noise);
    free(tr->xt), free(tr->target), free(tr->dout), free(tr->dctx), free(tr->texts);
    free(tr->pooled), free(tr->dpooled);
    if (tr->dev != DEVICE_CPU) {
        float *u[] = {tr->u_xt, tr->u_target, tr->u_dout, tr->u_ctx, tr->u_dctx, tr->u_pooled, tr->u_dpooled};
        for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) device_free(tr->dev, u[i]);
    }
    memset(tr, 0, sizeof *tr);
}

double trainer_lr(const trainer *tr) {
    const double lr = tr->hp.adam.lr;
    const long w = tr->hp.warmup_steps, d = tr->hp.decay_steps;
    if (w > 0 && tr->step < w) return lr * (double)(tr->step + 1) / w;
    if (d <= w) return lr;
    double p = (double)(tr->step - w) / (double)(d - w);
    return lr * 0.5 * (1.0 + cos(M_PI * (p < 1 ? p : 1)));
}

// Host to the UNet's device (a no-op on the CPU, where the buffers are the same).
static void to_unet(const trainer *tr, float *dst, const float *src, size_t n) {
    if (tr->dev != DEVICE_CPU) device_copy(tr->dev, dst, DEVICE_CPU, src, n * sizeof(float));
}

// Forward of one shard (B items from the global batch's arrays) to the loss; the
// target of the prediction type is left in tr->u_target. Noise, x_t and the target are
// made on the host (the draws come from the trainer's one stream) and, like the text
// encoder's context, copied to a CUDA UNet: per step the batch crosses, nothing else.
static int forward_loss(trainer *tr, int B, const float *x0, const char *const *texts, const int *t,
                        const float *noise, double *loss) {
    t2i_model *m = tr->m;
    size_t np = (size_t)B * tr->n_pix;
    schedule_add_noise(&m->sched, tr->xt, x0, noise, t, B, tr->n_pix);
    schedule_target(&m->sched, tr->target, x0, noise, t, B, tr->n_pix);
    for (int b = 0; b < B; b++) tr->tf[b] = (float)t[b];
    if (t2i_tokenize(m, texts, B, tr->ids) || text_encoder_forward(&m->te, tr->ids, B)) return -1;
    const float *pooled = NULL, *ctx = m->te.acts.out;
    if (m->cfg.unet.class_embed_dim) {
        t2i_pool(m, tr->ids, m->te.acts.out, B, tr->pooled);
        pooled = tr->u_pooled;
        to_unet(tr, tr->u_pooled, tr->pooled, (size_t)B * m->cfg.te.width);
    }
    to_unet(tr, tr->u_xt, tr->xt, np);
    to_unet(tr, tr->u_target, tr->target, np);
    if (tr->dev != DEVICE_CPU) {
        to_unet(tr, tr->u_ctx, ctx, (size_t)B * m->cfg.te.max_tokens * m->cfg.te.width);
        ctx = tr->u_ctx;
    }
    if (unet_forward_cond(&m->unet, tr->u_xt, tr->tf, ctx, pooled, B)) return -1;
    *loss = dev_mse_loss_forward(tr->dev, m->unet.out, tr->u_target, np);
    return 0;
}

// Shard s's part of the batch's arrays.
#define SHARD_ITEMS(tr, s) ((size_t)(s) * (tr)->Bs)

// The mean of the shards' losses, summed in shard order: every rank's loss, gathered
// (in rank order), or this process's own.
static double combine_losses(trainer *tr, double *shard_loss) {
    if (tr->comm) {
        double own = shard_loss[0];
        comm_allgather(tr->comm, &own, sizeof own, shard_loss, "losses");
    }
    if (tr->shards == 1) return shard_loss[0];
    double sum = 0;
    for (int s = 0; s < tr->shards; s++) sum += shard_loss[s];
    return sum / tr->shards;
}

int trainer_eval_loss(trainer *tr, const float *x0, const char *const *captions, const int *t,
                      const float *noise, double *loss) {
    double *shard_loss = calloc((size_t)tr->shards, sizeof(double));
    CHECK(shard_loss);
    int rc = 0;
    for (int k = 0; k < tr->n_local && !rc; k++) {
        size_t i = SHARD_ITEMS(tr, tr->shard0 + k);
        rc = forward_loss(tr, tr->Bs, x0 + i * tr->n_pix, captions + i, t + i, noise + i * tr->n_pix,
                          &shard_loss[k]);
    }
    // A rank that failed still takes part, so that the others do not wait for it.
    if (tr->comm) shard_loss[0] = rc ? NAN : shard_loss[0];
    double l = combine_losses(tr, shard_loss);
    free(shard_loss);
    if (!rc) *loss = l;
    return rc;
}

// A device group's sum comes back as one double (kernels/sumsq.h); the host groups'
// loop continues the same running sum, so a CPU run adds in the order it always did.
static double grad_norm(const trainer *tr) {
    double s = 0;
    for (int g = 0; g < tr->n_groups; g++) {
        if (group_dev(tr, g) != DEVICE_CPU) {
            s += dev_sumsq(group_dev(tr, g), tr->grad[g], tr->n[g]);
            continue;
        }
        for (size_t i = 0; i < tr->n[g]; i++) s += (double)tr->grad[g][i] * tr->grad[g][i];
    }
    return sqrt(s);
}

// A step whose loss or gradient is not finite leaves every weight as it was. Returns 1
// (skipped), or -1 once hp.max_nonfinite such steps came in a row: a run that keeps
// producing NaN is broken, and its last checkpoint is the state to go back to.
static int skip_step(trainer *tr, const char *what, double value) {
    tr->step++, tr->skipped++, tr->nonfinite_run++;
    log_line("step %ld: %s %g is not finite: update skipped", tr->step, what, value);
    if (tr->hp.max_nonfinite > 0 && tr->nonfinite_run >= tr->hp.max_nonfinite)
        return err_set("%ld non-finite steps in a row (train.max_nonfinite = %d): stopping; "
                       "the last checkpoint is intact", tr->nonfinite_run, tr->hp.max_nonfinite);
    return 1;
}

// Backward of the shard whose forward just ran, from zeroed gradients.
static int backward_shard(trainer *tr) {
    t2i_model *m = tr->m;
    int B = tr->Bs;
    unet_zero_grad(&m->unet);
    dev_mse_loss_backward(tr->dev, tr->u_dout, m->unet.out, tr->u_target, 1.0f, (size_t)B * tr->n_pix);
    if (tr->lora || tr->hp.freeze_text) {
        if (!tr->lora) text_encoder_zero_grads(&m->te);  // its (zero) gradient joins the norm
        unet_backward(&m->unet, tr->u_dout, NULL, NULL, B);  // frozen text: no dcontext
        return 0;
    }
    text_encoder_zero_grads(&m->te);
    int pooled = m->cfg.unet.class_embed_dim > 0;
    unet_backward_cond(&m->unet, tr->u_dout, NULL, tr->u_dctx, pooled ? tr->u_dpooled : NULL, B);
    if (tr->dev != DEVICE_CPU) {  // the text encoder's backward runs on the host
        size_t C = (size_t)m->cfg.te.width;
        device_copy(DEVICE_CPU, tr->dctx, tr->dev, tr->u_dctx, (size_t)B * m->cfg.te.max_tokens * C * sizeof(float));
        if (pooled) device_copy(DEVICE_CPU, tr->dpooled, tr->dev, tr->u_dpooled, (size_t)B * C * sizeof(float));
    }
    if (pooled) t2i_pool_backward(m, tr->ids, tr->dpooled, B, tr->dctx);
    return text_encoder_backward(&m->te, tr->dctx);
}

// The groups whose gradients are exchanged: a frozen text encoder's stay zero.
static int group_reduced(const trainer *tr, int g) { return !(g == 1 && tr->hp.freeze_text); }

// One process, several shards: adds group g's gradient of the shard just run to the
// shards' sum (first: becomes it). On a device the sum stays there: a copy, then
// y = 1 y + 1 x, which rounds as the host's acc += x does.
static void sum_shard(trainer *tr, int g, int first) {
    device_kind dev = group_dev(tr, g);
    if (dev == DEVICE_CPU) comm_sum_into(tr->gacc[g], tr->grad[g], tr->n[g], first);
    else if (first) device_copy(dev, tr->gacc[g], dev, tr->grad[g], tr->n[g] * sizeof(float));
    else dev_axpby(dev, tr->gacc[g], 1.0f, tr->grad[g], 1.0f, tr->n[g]);
}

// Several shards: group g's gradient becomes the mean of the shards' gradients: the
// sum of this process's shards (gacc) or of the ranks' (in rank order by MPI), divided
// by the number of shards; NCCL averages by itself (train.h).
static void reduce_group(trainer *tr, int g) {
    device_kind dev = group_dev(tr, g);
    float *x = tr->grad[g];
    size_t n = tr->n[g], bytes = n * sizeof(float);
    if (dev == DEVICE_CPU) {
        if (tr->comm) comm_allreduce_sum(tr->comm, x, n, "gradients");
        else memcpy(x, tr->gacc[g], bytes);
        comm_average(x, n, tr->shards);
        return;
    }
    if (tr->nccl) {
        comm_gpu_allreduce_avg(tr->nccl, x, n, "gradients");
        return;
    }
    if (tr->comm) {
        device_copy(DEVICE_CPU, tr->staged[g], dev, x, bytes);
        comm_allreduce_sum(tr->comm, tr->staged[g], n, "gradients");
        device_copy(dev, x, DEVICE_CPU, tr->staged[g], bytes);
    } else {
        device_copy(dev, x, dev, tr->gacc[g], bytes);
    }
    // No division kernel: a multiply by the reciprocal, exact for a power-of-two count.
    dev_axpby(dev, x, 1.0f / (float)tr->shards, NULL, 0, n);
}

int trainer_step(trainer *tr, const float *x0, const char *const *captions, double *loss_out,
                 double *norm_out) {
    t2i_model *m = tr->m;
    int B = tr->B;
    if (schedule_drop_captions(&tr->rng, B, tr->hp.caption_dropout, tr->drop) < 0) return -1;
    for (int b = 0; b < B; b++) tr->texts[b] = tr->drop[b] ? "" : captions[b];
    schedule_sample_timesteps(&m->sched, &tr->rng, B, tr->t);
    for (size_t i = 0; i < (size_t)B * tr->n_pix; i++) tr->noise[i] = rng_normal(&tr->rng);
    double shard_loss[tr->shards];
    int rc = 0;
    for (int k = 0; k < tr->n_local && !rc; k++) {
        size_t i = SHARD_ITEMS(tr, tr->shard0 + k);
        rc = forward_loss(tr, tr->Bs, x0 + i * tr->n_pix, tr->texts + i, tr->t + i, tr->noise + i * tr->n_pix,
                          &shard_loss[k]);
        // A non-finite shard loss makes the batch's loss non-finite: no backward needed.
        if (!rc && isfinite(shard_loss[k])) rc = backward_shard(tr);
        if (!rc && tr->n_local > 1)
            for (int g = 0; g < tr->n_groups; g++)
                if (group_reduced(tr, g)) sum_shard(tr, g, k == 0);
    }
    // A rank that failed still sends its loss (NaN), so that every rank skips alike and
    // none waits in the gradient all-reduce for it; its caller then stops the run.
    if (tr->comm && rc) shard_loss[0] = NAN;
    double loss = combine_losses(tr, shard_loss);
    if (rc) return -1;
    if (loss_out) *loss_out = loss;
    if (!isfinite(loss)) return skip_step(tr, "loss", loss);
    for (int g = 0; g < tr->n_groups; g++)
        if (group_reduced(tr, g) && tr->shards > 1) reduce_group(tr, g);
    double norm = grad_norm(tr);
    if (norm_out) *norm_out = norm;
    if (!isfinite(norm)) return skip_step(tr, "gradient norm", norm);
    tr->nonfinite_run = 0;
    if (tr->hp.grad_clip > 0 && norm > tr->hp.grad_clip) {
        float s = (float)(tr->hp.grad_clip / (norm + 1e-6));
        for (int g = 0; g < tr->n_groups; g++) {
            if (group_dev(tr, g) != DEVICE_CPU) dev_axpby(group_dev(tr, g), tr->grad[g], s, NULL, 0, tr->n[g]);
            else
                for (size_t i = 0; i < tr->n[g]; i++) tr->grad[g][i] *= s;
        }
    }
    adamw_hparams hp = tr->hp.adam;
    hp.lr = trainer_lr(tr);
    tr->updates++;
    for (int g = 0; g < tr->n_groups; g++) {
        adamw_hparams hg = hp;
        if (g == 1 && tr->hp.freeze_text) continue;  // weights, moments and EMA stay as they are
        if (g == 1 && tr->hp.text_lr_scale > 0) hg.lr *= tr->hp.text_lr_scale;
        dev_adamw_update(group_dev(tr, g), tr->param[g], tr->grad[g], tr->adam_m[g], tr->adam_v[g], tr->n[g],
                         &hg, (int)tr->updates);
        if (tr->ema[g].shadow) ema_update(&tr->ema[g], tr->param[g]);
    }
    if (tr->lora) lora_scatter(tr);
    tr->step++;
    return 0;
}

void trainer_swap_ema(trainer *tr) {
    for (int g = 0; g < tr->n_groups; g++)
        if (tr->ema[g].shadow) ema_swap(&tr->ema[g], tr->param[g]);
    if (tr->lora) lora_scatter(tr);
}

// The arrays a checkpoint holds, in a fixed order. Checkpoint files are written from
// and read into host memory, so an array on a device gets a host buffer here
// (dev_data[k] the device array, else NULL): staged_out fills those buffers before a
// save, staged_in copies them back after a load, staged_free releases them.
static int state_arrays(trainer *tr, ckpt_array *a, char names[][48], float **dev_data) {
    int k = 0;
    for (int g = 0; g < tr->n_groups; g++) {
        const char *what[4] = {"params", "adam_m", "adam_v", "ema"};
        float *data[4] = {tr->param[g], tr->adam_m[g], tr->adam_v[g], tr->ema[g].shadow};
        for (int j = 0; j < 4; j++) {
            if (!data[j]) continue;
            snprintf(names[k], 48, "%s.%s", group_names[tr->lora][g], what[j]);
            dev_data[k] = group_dev(tr, g) != DEVICE_CPU ? data[j] : NULL;
            float *host = data[j];
            if (dev_data[k]) CHECK(host = malloc((tr->n[g] ? tr->n[g] : 1) * sizeof(float)));
            a[k] = (ckpt_array){names[k], host, tr->n[g]};
            k++;
        }
    }
    return k;
}

static void staged_out(const trainer *tr, ckpt_array *a, float **dev_data, int n) {
    for (int k = 0; k < n; k++)
        if (dev_data[k]) device_copy(DEVICE_CPU, a[k].data, tr->dev, dev_data[k], a[k].n * sizeof(float));
}

static void staged_in(const trainer *tr, const ckpt_array *a, float **dev_data, int n) {
    for (int k = 0; k < n; k++)
        if (dev_data[k]) device_copy(tr->dev, dev_data[k], DEVICE_CPU, a[k].data, a[k].n * sizeof(float));
}

static void staged_free(ckpt_array *a, float **dev_data, int n) {
    for (int k = 0; k < n; k++)
        if (dev_data[k]) free(a[k].data);
}

static void add_u64(cJSON *o, const char *key, uint64_t v) {
    char buf[32];  // as text: a double cannot hold every u64
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    cJSON_AddStringToObject(o, key, buf);
}

int trainer_save(trainer *tr, const char *root, long data_pos, int keep) {
    ckpt_array a[4 * TRAIN_GROUPS];
    char names[4 * TRAIN_GROUPS][48];
    float *dev_data[4 * TRAIN_GROUPS];
    int n = state_arrays(tr, a, names, dev_data);
    staged_out(tr, a, dev_data, n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)tr->step);
    cJSON_AddNumberToObject(o, "updates", (double)tr->updates);
    cJSON_AddNumberToObject(o, "skipped", (double)tr->skipped);
    cJSON_AddNumberToObject(o, "data_pos", (double)data_pos);
    cJSON_AddNumberToObject(o, "ema_updates", (double)tr->ema[0].updates);
    add_u64(o, "rng_seed", tr->rng.seed);
    add_u64(o, "rng_stream", tr->rng.stream);
    add_u64(o, "rng_pos", tr->rng.pos);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    CHECK(text);
    int rc = tr->comm && comm_rank(tr->comm) != 0 ? 0 : ckpt_save(root, tr->step, a, n, text, keep);
    free(text);
    staged_free(a, dev_data, n);
    if (tr->comm) {  // every rank learns whether the checkpoint exists
        int rc0 = rc;
        comm_bcast(tr->comm, &rc0, sizeof rc0, 0, "checkpoint");
        if (rc0 && comm_rank(tr->comm) != 0) rc = err_set("rank 0 could not write the checkpoint of step %ld", tr->step);
    }
    return rc;
}

static int get_long(const cJSON *o, const char *dir, const char *key, long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0)
        return err_set("%s/state.json: key \"%s\" is missing or not a count", dir, key);
    *out = (long)v->valuedouble;
    return 0;
}

static int get_u64(const cJSON *o, const char *dir, const char *key, uint64_t *out) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    char *end;
    if (!s || !*s || (*out = strtoull(s, &end, 10), *end))
        return err_set("%s/state.json: key \"%s\" is missing or not an integer string", dir, key);
    return 0;
}

int trainer_load(trainer *tr, const char *dir, long *data_pos) {
    ckpt_array a[4 * TRAIN_GROUPS];
    char names[4 * TRAIN_GROUPS][48], *text;
    float *dev_data[4 * TRAIN_GROUPS];
    int n = state_arrays(tr, a, names, dev_data);
    if (ckpt_load(dir, a, n, &text)) {
        staged_free(a, dev_data, n);
        return -1;
    }
    // ckpt_load restored nothing if it failed; after it succeeded the device gets the
    // arrays, as the host arrays got them.
    staged_in(tr, a, dev_data, n);
    staged_free(a, dev_data, n);
    cJSON *o = cJSON_Parse(text);
    free(text);
    long ema_updates = 0;
    rng r = {0};
    int rc = o ? 0 : err_set("%s/state.json: not JSON", dir);
    if (!rc) rc = get_long(o, dir, "step", &tr->step);
    if (!rc) rc = get_long(o, dir, "updates", &tr->updates);
    if (!rc) rc = get_long(o, dir, "skipped", &tr->skipped);
    if (!rc) rc = get_long(o, dir, "data_pos", data_pos);
    if (!rc) rc = get_long(o, dir, "ema_updates", &ema_updates);
    if (!rc) rc = get_u64(o, dir, "rng_seed", &r.seed);
    if (!rc) rc = get_u64(o, dir, "rng_stream", &r.stream);
    if (!rc) rc = get_u64(o, dir, "rng_pos", &r.pos);
    cJSON_Delete(o);
    if (rc) return -1;
    tr->rng = r;
    for (int g = 0; g < tr->n_groups; g++) tr->ema[g].updates = ema_updates;
    if (tr->lora) lora_scatter(tr);
    return 0;
}
