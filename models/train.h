// Full training of a text-to-image model (the shapes base: text encoder + UNet jointly,
// every weight trainable). One step on a batch of (image, caption):
//   captions dropped to "" with probability caption_dropout (classifier-free guidance)
//   t ~ U{0..T-1}, eps ~ N(0, 1), x_t = sqrt(ac) x0 + sqrt(1-ac) eps
//   loss = mse(unet(x_t, t, text_encoder(caption)), target)  (eps or v, as the schedule)
//   backward through the UNet and the text encoder
//   global gradient-norm clip, AdamW with linear warm-up, EMA of the weights.
// A non-finite loss skips the update (counted in `skipped`; the step still counts).
// Optimizer and EMA work on the flat parameter arenas (padding is zero and stays zero),
// which is also how checkpoints store them, so a resumed run is bit-identical.
// All randomness (dropout, timesteps, noise) comes from one Philox stream `rng`.
#ifndef SELMA_MODELS_TRAIN_H
#define SELMA_MODELS_TRAIN_H

#include <stddef.h>

#include "kernels/adamw.h"
#include "models/bundle.h"
#include "models/checkpoint.h"
#include "models/ema.h"
#include "runtime/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct train_hparams {
    adamw_hparams adam;   // adam.lr: the peak learning rate
    int warmup_steps;     // lr ramps linearly from lr/warmup to lr over these steps
    double grad_clip;     // global L2 norm; 0 = off
    double ema_decay;     // 0 = no EMA
    int ema_warmup;       // EMA decay ramp (models/ema.h)
    double caption_dropout;
} train_hparams;

#define TRAIN_GROUPS 2  // 0: UNet, 1: text encoder

typedef struct trainer {
    t2i_model *m;
    train_hparams hp;
    int B, n_pix;                 // batch; values per image (C * H * W)
    float *param[TRAIN_GROUPS], *grad[TRAIN_GROUPS];  // the model's arenas (flat)
    size_t n[TRAIN_GROUPS];       // floats per group
    float *adam_m[TRAIN_GROUPS], *adam_v[TRAIN_GROUPS];
    ema ema[TRAIN_GROUPS];
    long step;                    // steps taken (the lr schedule's clock)
    long updates;                 // AdamW updates done (its bias-correction t)
    long skipped;                 // steps skipped for a non-finite loss
    rng rng;
    // per-step buffers
    int *ids, *t, *drop;          // (B, T), (B), (B)
    float *tf, *noise, *xt, *target, *dout, *dctx;
    const char **texts;
} trainer;

// The model must be built with UNET_TRAIN_FULL. Sets up activations for batch B.
int trainer_init(trainer *tr, t2i_model *m, const train_hparams *hp, int B, uint64_t seed);
void trainer_free(trainer *tr);
double trainer_lr(const trainer *tr);  // the learning rate of the next step

// One step on x0 (B, C, H, W) in [-1, 1] and B captions. *loss gets the batch loss,
// *grad_norm the norm before clipping (either may be NULL). Returns 1 when the step
// was skipped (non-finite loss), 0 otherwise, -1 on error.
int trainer_step(trainer *tr, const float *x0, const char *const *captions, double *loss,
                 double *grad_norm);
// The loss of the current weights at given timesteps t (B) and noise (B, n_pix), with
// no dropout and no update: a fixed-batch measurement for tests and logs.
int trainer_eval_loss(trainer *tr, const float *x0, const char *const *captions, const int *t,
                      const float *noise, double *loss);

// Swaps EMA weights into the model (and back on the second call); no-op without EMA.
void trainer_swap_ema(trainer *tr);

// Checkpoints: weights, EMA, AdamW moments, counters, RNG and the caller's data
// position. keep: complete checkpoints to leave (0 = all).
int trainer_save(trainer *tr, const char *root, long data_pos, int keep);
// Restores from a checkpoint directory; *data_pos gets the saved position.
int trainer_load(trainer *tr, const char *dir, long *data_pos);

#ifdef __cplusplus
}
#endif
#endif
