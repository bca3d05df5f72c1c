// Training a text-to-image model, in one of two modes chosen by how the model was built:
//   full (UNET_TRAIN_FULL): the shapes base, text encoder + UNet jointly, every weight
//     trainable;
//   LoRA (UNET_TRAIN_LORA): SELMA's experts, only the UNet's adapters trainable; the
//     text encoder is frozen and runs forward only (no activations kept, no gradients)
//     and the base weights have no gradient at all, so they stay bit-identical.
// One step on a batch of (image, caption):
//   captions dropped to "" with probability caption_dropout (classifier-free guidance)
//   t ~ U{0..T-1}, eps ~ N(0, 1), x_t = sqrt(ac) x0 + sqrt(1-ac) eps
//   loss = mse(unet(x_t, t, text_encoder(caption)), target)  (eps or v, as the schedule)
//   backward through the UNet and the text encoder
//   global gradient-norm clip, AdamW with linear warm-up, EMA of the weights.
// A non-finite loss or gradient norm skips the update (counted in `skipped`; the step
// still counts; weights, moments and EMA untouched); max_nonfinite in a row stop the run.
// Optimizer and EMA work on the flat parameter arenas (padding is zero and stays zero),
// which is also how checkpoints store them, so a resumed run is bit-identical. In LoRA
// mode the adapters lie scattered among the frozen weights of the UNet's parameter
// arena, so the trainer keeps a flat copy laid out like the gradient arena (which holds
// exactly the adapters' gradients): AdamW, EMA and checkpoints work on the copy, and
// every update is scattered back into the model.
// All randomness (dropout, timesteps, noise) comes from one Philox stream `rng`.
//
// Devices: a UNet built on CUDA (t2i_unet_to_device) trains there. Its gradients, the
// flat adapter copy (LoRA), AdamW moments and EMA are device arrays: the norm is a
// device sum of squares, the clip, AdamW and EMA device kernels (kernels/sumsq.h,
// axpby.h, adamw.h). The text encoder stays on the host: its output context (and pooled
// vector) goes over each step, and in full mode dcontext comes back for its backward.
// The draws, x_t and the target are made on the host from the one stream and copied,
// so a CUDA run sees the same batches as a CPU run; per step the batch, the context,
// the loss and the norm cross, nothing else. Checkpoints are staged through host
// buffers and have the same files as a CPU run's. A CUDA run agrees with a CPU run to
// the CUDA kernels' precision (bf16 tensor-core convolution and attention), not bit for
// bit; its resume restores every array exactly, but the steps after it repeat the
// uninterrupted run only as far as the CUDA kernels are deterministic (atomicAdd
// weight gradients are not: kernels/README.md). A mixture of experts trains on the CPU
// only.
//
// Data-parallel (hp.comm with several ranks, or hp.shards in one process): the global
// batch of B items is cut into `shards` shards of B / shards items, each run forward
// and backward on its own from zeroed gradients; the shards' gradients are summed in
// shard order and divided by the number of shards (comm_sum_into, comm_average), and
// the loss is the mean of the shards' losses, summed in shard order. Rank r of R runs
// shard r and the sum is comm_allreduce_sum, which adds in rank order: so R ranks
// give bit for bit the weights of one process with hp.shards = R and the same global
// batch (on CPU, same build, same BLAS thread count). With one shard (one process's
// default) the step is the whole-batch step it always was. Every rank draws the whole
// batch's dropout, timesteps and noise from the same stream and uses its shard's part,
// so each item gets the draws one process would give it and the RNG state stays
// equal on every rank; so do the weights, moments and EMA, which every rank updates
// alike.
//
// Data-parallel with a CUDA UNet: group 0's gradient never leaves the device in one
// process: the shards' sum is a device array (the first shard copied, the next added
// by axpby with a = b = 1, the same rounding as the host's acc += x), then scaled by
// 1 / shards (equal to the host's division when shards is a power of two, within an
// ulp otherwise). Over several ranks it is reduced either by NCCL (hp.nccl, from
// runtime/comm_gpu.h's comm_gpu_init: NCCL averages, in its own order, so the result
// equals one process's within float rounding), or, with hp.nccl NULL, staged through a
// host buffer: copied over, summed by comm_allreduce_sum in rank order, copied back and
// scaled by 1 / shards as in one process (so R ranks repeat one process with R shards
// as far as the CUDA kernels are deterministic; this works with several ranks on one
// GPU, which NCCL refuses). The text encoder's gradient stays on the host path above.
#ifndef SELMA_MODELS_TRAIN_H
#define SELMA_MODELS_TRAIN_H

#include <stddef.h>

#include "kernels/adamw.h"
#include "models/bundle.h"
#include "models/checkpoint.h"
#include "models/ema.h"
#include "runtime/comm.h"
#include "runtime/comm_gpu.h"
#include "runtime/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct train_hparams {
    adamw_hparams adam;   // adam.lr: the peak learning rate
    int warmup_steps;     // lr ramps linearly from lr/warmup to lr over these steps
    // > warmup_steps: after the warm-up, lr follows a half cosine from lr to 0 at this
    // step (diffusers' get_cosine_schedule_with_warmup); otherwise lr stays constant.
    int decay_steps;
    double grad_clip;     // global L2 norm; 0 = off
    double ema_decay;     // 0 = no EMA
    int ema_warmup;       // EMA decay ramp (models/ema.h)
    double caption_dropout;
    // Full mode: the text encoder's lr is adam.lr * text_lr_scale (0 counts as 1), or
    // freeze_text keeps it at its init and skips the backward through it. Trained at the
    // UNet's rate from a random init, the encoder collapses to a caption-independent
    // output before the UNet learns to read it (models/README.md).
    double text_lr_scale;
    int freeze_text;
    int max_nonfinite;    // stop (trainer_step returns -1) after this many non-finite
                          // steps in a row; 0 = never stop
    comm *comm;           // data-parallel over these ranks (NULL: this process alone)
    comm_nccl *nccl;      // several ranks, a CUDA UNet: NCCL over the same ranks reduces
                          // its gradients (comm_gpu_init); NULL: staged through the host
    int shards;           // shards of the batch (0 = the ranks; with several ranks it
                          // must equal their number; must divide the batch)
} train_hparams;

#define TRAIN_GROUPS 2  // full: 0 UNet, 1 text encoder; LoRA: 0 the UNet's adapters only

typedef struct trainer {
    t2i_model *m;
    train_hparams hp;
    int B, n_pix;                 // global batch; values per image (C * H * W)
    comm *comm;                   // NULL: one process
    int shards, Bs;               // shards of the batch and items per shard
    int shard0, n_local;          // the shards this process runs: shard0 .. + n_local - 1
    int lora;                     // 1: LoRA mode (see the top)
    int n_groups;                 // 2 (full) or 1 (LoRA)
    float *param[TRAIN_GROUPS], *grad[TRAIN_GROUPS];  // the model's arenas (flat; LoRA: the copy)
    size_t n[TRAIN_GROUPS];       // floats per group
    float *adam_m[TRAIN_GROUPS], *adam_v[TRAIN_GROUPS];
    float *gacc[TRAIN_GROUPS];    // one process, several shards: the shards' gradient sum
                                  // (on the group's device)
    float *staged[TRAIN_GROUPS];  // several ranks, a device group without NCCL: the host
                                  // copy of its gradient that MPI reduces
    comm_nccl *nccl;              // several ranks, CUDA UNet: hp.nccl (NULL: host staging)
    ema ema[TRAIN_GROUPS];
    long step;                    // steps taken (the lr schedule's clock)
    long updates;                 // AdamW updates done (its bias-correction t)
    long skipped;                 // steps skipped for a non-finite loss or gradient
    long nonfinite_run;           // of them in a row, up to the last step (not checkpointed)
    rng rng;
    // per-step buffers: the draws for the whole batch, activations for one shard
    int *t, *drop;                // (B), (B)
    float *noise;                 // (B, n_pix)
    const char **texts;           // (B)
    int *ids;                     // (Bs, T)
    float *tf, *xt, *target, *dout, *dctx;  // (Bs), (Bs, n_pix) x3, (Bs, T, C)
    float *pooled, *dpooled;      // (Bs, C) when the UNet takes the pooled text (class_embed_dim)
    // The UNet's side of those: on the CPU the host buffers above (u_ctx NULL: the text
    // encoder's output is read in place), on CUDA device copies made each step.
    device_kind dev;              // the UNet's device; group 0's arrays live there
    float *u_xt, *u_target, *u_dout;  // (Bs, n_pix)
    float *u_ctx, *u_dctx;        // (Bs, T, C)
    float *u_pooled, *u_dpooled;  // (Bs, C)
} trainer;

// The model must be built with UNET_TRAIN_FULL or UNET_TRAIN_LORA (the mode picks the
// trainer's; UNET_TRAIN_MOE trains a mixture of experts' routers in LoRA mode, the
// mixture attached first with lora_moe_init). Sets up activations for batch B. The
// adapters keep the values they have (load them, or trainer_init_lora for a fresh start).
int trainer_init(trainer *tr, t2i_model *m, const train_hparams *hp, int B, uint64_t seed);
// PEFT's adapter init from seed (A ~ U(+-1/sqrt(in)), B = 0, one Philox stream per
// tensor name, as unet_init_random draws them), base weights untouched. LoRA mode only.
void trainer_init_lora(trainer *tr, uint64_t seed);
// The order of the n data items in epoch `epoch`: a permutation drawn from the trainer's
// seed on a Philox stream of that epoch's own, so a resumed run gets the same order from
// the saved data position alone (epoch = pos / n, index = pos % n).
void trainer_epoch_order(const trainer *tr, long epoch, int n, int *perm);
void trainer_free(trainer *tr);
double trainer_lr(const trainer *tr);  // the learning rate of the next step

// One step on x0 (B, C, H, W) in [-1, 1] and B captions: the global batch, the same on
// every rank (each uses its shard). *loss gets the batch loss, *grad_norm the norm
// before clipping (either may be NULL); both are equal on every rank. Returns 1 when
// the step was skipped (non-finite loss), 0 otherwise, -1 on error.
int trainer_step(trainer *tr, const float *x0, const char *const *captions, double *loss,
                 double *grad_norm);
// The loss of the current weights at given timesteps t (B) and noise (B, n_pix), with
// no dropout and no update: a fixed-batch measurement for tests and logs (sharded as
// trainer_step; every rank gets the same value).
int trainer_eval_loss(trainer *tr, const float *x0, const char *const *captions, const int *t,
                      const float *noise, double *loss);

// Swaps EMA weights into the model (and back on the second call); no-op without EMA.
// In LoRA mode the model then holds them too (unet_save(..., PARAM_LORA) saves them).
void trainer_swap_ema(trainer *tr);

// Checkpoints: weights, EMA, AdamW moments, counters, RNG and the caller's data
// position. keep: complete checkpoints to leave (0 = all). Data-parallel: rank 0
// writes (every rank holds the same state) and every rank returns its result.
int trainer_save(trainer *tr, const char *root, long data_pos, int keep);
// Restores from a checkpoint directory; *data_pos gets the saved position. Every rank
// reads it (a file system all ranks see, as the launchers' working directory is).
int trainer_load(trainer *tr, const char *dir, long *data_pos);

#ifdef __cplusplus
}
#endif
#endif
