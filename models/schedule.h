// DDPM noise schedules and the training side of diffusion (diffusers' DDPMScheduler
// conventions, which SD and the samplers in models/sampler.h share).
//
//   x_t = sqrt(ac_t) x0 + sqrt(1 - ac_t) eps,   ac_t = prod_{s<=t} (1 - beta_s),
//   t = 0 .. T-1 (T = 1000 train steps by default).
//
// Beta schedules (diffusers' names):
//   BETA_LINEAR         "linear": linspace(beta_start, beta_end, T); DDPM: 1e-4..0.02
//   BETA_SCALED_LINEAR  "scaled_linear": linspace(sqrt(start), sqrt(end), T)^2;
//                       SD 1.x/2.x: 0.00085..0.012
//   BETA_COSINE         "squaredcos_cap_v2" (Nichol & Dhariwal): beta_t =
//                       min(1 - abar((t+1)/T) / abar(t/T), 0.999),
//                       abar(u) = cos((u + 0.008) / 1.008 * pi/2)^2; start/end unused.
// Everything is computed in double. diffusers forms betas and the cumulative product
// in float32, so its alphas_cumprod differ from these by up to ~1e-5 relative at
// large t (the float32 rounding of a 1000-term product).
//
// Prediction types: what the model outputs and what training regresses it onto.
//   PRED_EPSILON  target eps
//   PRED_V        target v = sqrt(ac) eps - sqrt(1 - ac) x0 (Salimans & Ho; SD 2.x 768)
// Both recover (x0, eps) from (x_t, output) exactly; see schedule_split.
#ifndef SELMA_MODELS_SCHEDULE_H
#define SELMA_MODELS_SCHEDULE_H

#include <stdint.h>

#include "runtime/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum beta_schedule { BETA_LINEAR, BETA_SCALED_LINEAR, BETA_COSINE } beta_schedule;
typedef enum prediction_type { PRED_EPSILON, PRED_V } prediction_type;

#define SCHEDULE_MAX_T 100000

typedef struct noise_schedule {
    beta_schedule kind;
    prediction_type prediction;
    int T;                   // train timesteps
    double beta_start, beta_end;
    double *betas;           // (T)
    double *alphas_cumprod;  // (T)
    double *sigmas;          // (T) sqrt((1 - ac) / ac): the Euler (VE) noise level of t
} noise_schedule;

// "linear", "scaled_linear", "squaredcos_cap_v2" (also "cosine"); "epsilon", "v_prediction".
int beta_schedule_from_name(const char *name, beta_schedule *out);
int prediction_type_from_name(const char *name, prediction_type *out);
const char *beta_schedule_name(beta_schedule k);
const char *prediction_type_name(prediction_type p);

// -1 with a message on T outside 1..SCHEDULE_MAX_T, betas outside (0, 1) or
// start > end (linear kinds).
int schedule_init(noise_schedule *s, beta_schedule kind, prediction_type pred, int T,
                  double beta_start, double beta_end);
// The defaults: DDPM linear 1e-4..0.02, SD scaled_linear 0.00085..0.012, cosine.
int schedule_init_default(noise_schedule *s, beta_schedule kind, prediction_type pred, int T);
void schedule_free(noise_schedule *s);

// ac at a real-valued timestep t in [0, T-1] the way EulerDiscreteScheduler sees it:
// sigma is interpolated linearly between integer steps (np.interp), ac = 1/(1+sigma^2).
// Equals alphas_cumprod[t] at integer t.
double schedule_alpha_cumprod_at(const noise_schedule *s, double t);

// Training. Each of B images has n values; t (B) its timestep (0..T-1).
// x_t = sqrt(ac) x0 + sqrt(1-ac) eps.
void schedule_add_noise(const noise_schedule *s, float *xt, const float *x0,
                        const float *eps, const int *t, int B, int n);
// The regression target of s->prediction: eps, or v = sqrt(ac) eps - sqrt(1-ac) x0.
void schedule_target(const noise_schedule *s, float *target, const float *x0,
                     const float *eps, const int *t, int B, int n);
// Uniform integer timesteps in [0, T) for B images.
void schedule_sample_timesteps(const noise_schedule *s, rng *r, int B, int *t);
// Classifier-free guidance training: drop[b] = 1 with probability p (the caption of
// image b is replaced by the empty prompt). Returns the number dropped; -1 with a
// message if p is outside [0, 1].
int schedule_drop_captions(rng *r, int B, double p, int *drop);

// The model's output at noise level ac split into the predicted x0 and eps, n values
// (either output pointer may be NULL):
//   epsilon: eps = out, x0 = (x_t - sqrt(1-ac) out) / sqrt(ac)
//   v:       x0 = sqrt(ac) x_t - sqrt(1-ac) out, eps = sqrt(ac) out + sqrt(1-ac) x_t
void schedule_split(prediction_type pred, double ac, const float *xt, const float *out,
                    float *x0, float *eps, int n);

#ifdef __cplusplus
}
#endif
#endif
