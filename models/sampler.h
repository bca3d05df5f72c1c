// Samplers with classifier-free guidance, model-agnostic: the model is a callback.
// Both follow diffusers' schedulers step for step (the names of options are theirs):
//
// DDIM (DDIMScheduler, clip_sample off, no thresholding): with t' = t - T/steps
// (integer division) and ac' = ac[t'], or final_alpha_cumprod when t' < 0
// (1 if set_alpha_to_one else ac[0]; SD: set_alpha_to_one = 0),
//   x0^, eps^ from the model output (schedule_split)
//   sigma = eta sqrt((1-ac')/(1-ac) (1 - ac/ac'))
//   x' = sqrt(ac') x0^ + sqrt(1 - ac' - sigma^2) eps^ + sigma z
//
// Euler (EulerDiscreteScheduler, s_churn 0, linear sigma interpolation): sigmas
// sigma(t) = sqrt((1-ac)/ac) interpolated at the (real-valued) timesteps, then 0;
// x starts as noise * init_noise_sigma; the model sees x / sqrt(sigma^2 + 1) (the
// VP sample of the same noise level) and
//   x0^ = x - sigma out                                     (epsilon)
//   x0^ = -sigma/sqrt(sigma^2+1) out + x/(sigma^2+1)         (v)
//   x'  = x + (x - x0^)/sigma (sigma_next - sigma)
//
// Timestep spacing (diffusers' timestep_spacing), T train steps, n sampling steps:
//   leading   (0, r, 2r, .. (n-1)r) reversed + steps_offset, r = T / n (integer); SD 1.x/2.x
//             use steps_offset 1
//   trailing  round(T, T - T/n, ..) - 1 (real step T/n): starts at T-1
//   linspace  linspace(0, T-1, n) reversed; DDIM rounds (half to even, as numpy),
//             Euler keeps the real values
// init_noise_sigma (Euler) = max sigma for linspace and trailing, sqrt(max^2 + 1)
// for leading, as diffusers has it.
//
// Guidance: with opts.cfg the model is called on 2B inputs, rows 0..B-1 for the
// unconditional prompt and B..2B-1 for the conditional one (diffusers'
// torch.cat([uncond, cond]) order; ctx must hold text in that order), and
// out = uncond + guidance * (cond - uncond). Without cfg it is called on the B
// conditional inputs and guidance is not used.
//
// Randomness: image b's initial noise is rng_fill_normal(seeds[b], stream 0) and its
// DDIM eta noise at step i is stream i + 1, so an image depends only on its own seed,
// not on the batch it was drawn in.
#ifndef SELMA_MODELS_SAMPLER_H
#define SELMA_MODELS_SAMPLER_H

#include <stdint.h>

#include "models/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

// x (n_img, n) the model's input at timesteps t (n_img), one per image; out (n_img, n)
// its prediction (epsilon or v, as the schedule says). Returns 0, or -1 with a
// message, which the sampler passes on.
typedef int (*denoise_fn)(void *ctx, const float *x, const float *t, int n_img, float *out);

typedef enum sampler_kind { SAMPLER_DDIM, SAMPLER_EULER } sampler_kind;
typedef enum timestep_spacing { SPACING_LEADING, SPACING_TRAILING, SPACING_LINSPACE } timestep_spacing;

typedef struct sampler_opts {
    sampler_kind kind;
    int steps;                  // sampling steps, 1..T
    timestep_spacing spacing;
    int steps_offset;           // added to "leading" timesteps (SD: 1)
    int set_alpha_to_one;       // DDIM's last step goes to ac = 1 instead of ac[0]
    double eta;                 // DDIM: 0 deterministic, 1 DDPM-like
    int cfg;                    // 1: classifier-free guidance (model sees 2B inputs)
    double guidance;            // guidance scale s
} sampler_opts;

// SD's settings: DDIM, 50 steps, leading, steps_offset 1, set_alpha_to_one 0, eta 0,
// cfg on, guidance 7.5.
void sampler_defaults(sampler_opts *o);
int sampler_kind_from_name(const char *name, sampler_kind *out);          // "ddim", "euler"
int timestep_spacing_from_name(const char *name, timestep_spacing *out);  // "leading", ...
// -1 with a message naming the field if opts do not fit the schedule.
int sampler_check(const sampler_opts *o, const noise_schedule *s);

// The timesteps the model is called at, (steps), from high noise to low.
int sampler_timesteps(const sampler_opts *o, const noise_schedule *s, double *timesteps);
// Euler: the sigmas (steps + 1, the last 0) and init_noise_sigma.
int sampler_euler_sigmas(const sampler_opts *o, const noise_schedule *s, double *sigmas,
                         double *init_noise_sigma);

// One DDIM step on n values from integer timestep t: x is replaced by x_{t'}.
// noise (n) is used only when eta > 0 (may be NULL otherwise).
void ddim_step(const sampler_opts *o, const noise_schedule *s, int t, const float *model_out,
               float *x, const float *noise, int n);
// One Euler step from sigma to sigma_next on n values: x is replaced.
void euler_step(prediction_type pred, double sigma, double sigma_next, const float *model_out,
                float *x, int n);

// Draws B images of n values each into x (B, n). -1 with a message on bad options or
// when the model fails.
int sampler_run(const sampler_opts *o, const noise_schedule *s, denoise_fn model, void *ctx,
                int B, int n, const uint64_t *seeds, float *x);
// The same from given initial noise: x (B, n) holds it at unit scale on entry (it is
// multiplied by init_noise_sigma, as diffusers' prepare_latents does with `latents`).
// seeds are used only for DDIM's eta noise and may be NULL when eta is 0.
int sampler_run_from(const sampler_opts *o, const noise_schedule *s, denoise_fn model, void *ctx,
                     int B, int n, const uint64_t *seeds, float *x);

#ifdef __cplusplus
}
#endif
#endif
