// Exponential moving average of parameters, for sampling (NOTES.md: decay 0.995 makes
// the shapes base's samples clean much sooner). After each optimizer step:
//   shadow = d * shadow + (1 - d) * params,
// with d = decay, or with warm-up (diffusers' EMAModel use_ema_warmup=False form)
// d = min(decay, (1 + k) / (10 + k)) at the k-th update (k from 0), so that the
// shadow does not hold on to the random initialisation for ~1/(1-decay) steps.
// It works on a flat float array: a model's whole parameter arena (padding between
// tensors is zero in both and stays zero). The shadow lives on the device of the
// parameters it follows (ema_init_device): on CUDA the update is one axpby kernel
// (kernels/axpby.h) and nothing crosses to the host.
#ifndef SELMA_MODELS_EMA_H
#define SELMA_MODELS_EMA_H

#include <stddef.h>

#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ema {
    float *shadow;   // (n)
    size_t n;
    double decay;
    int warmup;      // 1: the (1 + k) / (10 + k) ramp
    long updates;    // k: updates so far (saved with checkpoints)
    device_kind dev; // where shadow (and the params it is given) live
} ema;

// Copies params into the shadow. -1 with a message if decay is outside [0, 1) or
// memory is short.
int ema_init(ema *e, const float *params, size_t n, double decay, int warmup);
// The same with shadow and params in `dev`'s memory.
int ema_init_device(ema *e, const float *params, size_t n, double decay, int warmup,
                    device_kind dev);
double ema_current_decay(const ema *e);  // d of the next update
void ema_update(ema *e, const float *params);
// Exchanges the shadow and params in place: swap in before sampling, swap again after.
void ema_swap(ema *e, float *params);
void ema_free(ema *e);

#ifdef __cplusplus
}
#endif
#endif
