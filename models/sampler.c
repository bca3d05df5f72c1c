#include "models/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

void sampler_defaults(sampler_opts *o) {
    *o = (sampler_opts){.kind = SAMPLER_DDIM, .steps = 50, .spacing = SPACING_LEADING,
                        .steps_offset = 1, .set_alpha_to_one = 0, .eta = 0, .cfg = 1,
                        .guidance = 7.5};
}

int sampler_kind_from_name(const char *name, sampler_kind *out) {
    if (!strcmp(name, "ddim")) { *out = SAMPLER_DDIM; return 0; }
    if (!strcmp(name, "euler")) { *out = SAMPLER_EULER; return 0; }
    return err_set("unknown sampler '%s' (ddim, euler)", name);
}

int timestep_spacing_from_name(const char *name, timestep_spacing *out) {
    static const char *const names[] = {"leading", "trailing", "linspace"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) { *out = (timestep_spacing)i; return 0; }
    return err_set("unknown timestep spacing '%s' (leading, trailing, linspace)", name);
}

int sampler_check(const sampler_opts *o, const noise_schedule *s) {
    if ((unsigned)o->kind > SAMPLER_EULER) return err_set("sampler: bad kind %d", (int)o->kind);
    if ((unsigned)o->spacing > SPACING_LINSPACE)
        return err_set("sampler: bad timestep spacing %d", (int)o->spacing);
    if (o->steps < 1 || o->steps > s->T)
        return err_set("sampler: steps %d outside 1..%d (train timesteps)", o->steps, s->T);
    if (o->spacing == SPACING_LEADING &&
        (o->steps_offset < 0 || (o->steps - 1) * (s->T / o->steps) + o->steps_offset > s->T - 1))
        return err_set("sampler: steps_offset %d puts a timestep past %d", o->steps_offset, s->T - 1);
    if (!(o->eta >= 0) || (o->eta > 0 && o->kind != SAMPLER_DDIM))
        return err_set("sampler: eta %g (must be >= 0, and 0 for euler)", o->eta);
    if (o->cfg && !isfinite(o->guidance)) return err_set("sampler: guidance %g", o->guidance);
    return 0;
}

int sampler_timesteps(const sampler_opts *o, const noise_schedule *s, double *ts) {
    if (sampler_check(o, s)) return -1;
    const int n = o->steps, T = s->T;
    for (int i = 0; i < n; i++) {
        double v;
        switch (o->spacing) {
        case SPACING_LEADING: v = (double)(n - 1 - i) * (T / n) + o->steps_offset; break;
        case SPACING_TRAILING: v = rint(T - i * ((double)T / n)) - 1; break;
        default: {  // numpy's linspace: k * step, the last point exactly T-1
            int k = n - 1 - i;
            v = k == 0 ? 0 : k == n - 1 ? T - 1 : k * ((double)(T - 1) / (n - 1));
            if (o->kind == SAMPLER_DDIM) v = rint(v);
        }
            break;
        }
        ts[i] = v;
    }
    return 0;
}

int sampler_euler_sigmas(const sampler_opts *o, const noise_schedule *s, double *sigmas,
                         double *init_noise_sigma) {
    if (sampler_timesteps(o, s, sigmas)) return -1;
    double max = 0;
    for (int i = 0; i < o->steps; i++) {
        double ac = schedule_alpha_cumprod_at(s, sigmas[i]);
        sigmas[i] = sqrt((1 - ac) / ac);
        max = sigmas[i] > max ? sigmas[i] : max;
    }
    sigmas[o->steps] = 0;
    *init_noise_sigma = o->spacing == SPACING_LEADING ? sqrt(max * max + 1) : max;
    return 0;
}

void ddim_step(const sampler_opts *o, const noise_schedule *s, int t, const float *model_out,
               float *x, const float *noise, int n) {
    CHECK(t >= 0 && t < s->T);
    int tp = t - s->T / o->steps;
    double ac = s->alphas_cumprod[t];
    double acp = tp >= 0 ? s->alphas_cumprod[tp] : (o->set_alpha_to_one ? 1.0 : s->alphas_cumprod[0]);
    double var = (1 - acp) / (1 - ac) * (1 - ac / acp);
    double sd = o->eta * sqrt(var > 0 ? var : 0);
    double a = sqrt(ac), sg = sqrt(1 - ac), ap = sqrt(acp);
    double dir2 = 1 - acp - sd * sd, dir = sqrt(dir2 > 0 ? dir2 : 0);
    CHECK(sd == 0 || noise != NULL);
    for (int i = 0; i < n; i++) {
        double xv = x[i], m = model_out[i], x0, eps;
        if (s->prediction == PRED_EPSILON) {
            eps = m;
            x0 = (xv - sg * m) / a;
        } else {
            x0 = a * xv - sg * m;
            eps = a * m + sg * xv;
        }
        double prev = ap * x0 + dir * eps;
        if (sd > 0) prev += sd * noise[i];
        x[i] = (float)prev;
    }
}

void euler_step(prediction_type pred, double sigma, double sigma_next, const float *model_out,
                float *x, int n) {
    double c_out = -sigma / sqrt(sigma * sigma + 1), c_skip = 1 / (sigma * sigma + 1);
    double dt = sigma_next - sigma;
    for (int i = 0; i < n; i++) {
        double xv = x[i], m = model_out[i];
        double x0 = pred == PRED_EPSILON ? xv - sigma * m : c_out * m + c_skip * xv;
        x[i] = (float)(xv + (xv - x0) / sigma * dt);
    }
}

// Calls the model on x (B, n) at timestep t, with or without guidance; out (B, n).
// xin, oin, tin hold 2B rows.
static int guided(const sampler_opts *o, denoise_fn model, void *ctx, const float *x,
                  double t, int B, int n, float *xin, float *oin, float *tin, float *out) {
    const size_t bn = (size_t)B * n;
    int rows = o->cfg ? 2 * B : B;
    for (int r = 0; r < rows; r++) tin[r] = (float)t;
    memcpy(xin, x, bn * sizeof *x);
    if (o->cfg) memcpy(xin + bn, x, bn * sizeof *x);
    if (model(ctx, xin, tin, rows, oin)) return err_wrap("sampler: model at t=%g", t);
    if (!o->cfg) {
        memcpy(out, oin, bn * sizeof *out);
        return 0;
    }
    const float g = (float)o->guidance;
    for (size_t i = 0; i < bn; i++) out[i] = oin[i] + g * (oin[bn + i] - oin[i]);
    return 0;
}

// draw: the initial noise from seeds, else x's own scaled by init_noise_sigma.
static int run(const sampler_opts *o, const noise_schedule *s, denoise_fn model, void *ctx,
               int B, int n, const uint64_t *seeds, float *x, int draw) {
    if (sampler_check(o, s)) return -1;
    if (!seeds && (draw || o->eta > 0)) return err_set("sampler: no seeds for the noise");
    if (B < 1 || n < 1) return err_set("sampler: %d images of %d values", B, n);
    const size_t bn = (size_t)B * n;
    const int steps = o->steps;
    float *buf = malloc((5 * bn + 2 * (size_t)B) * sizeof(float));
    double *ts = malloc((2 * (size_t)steps + 1) * sizeof(double));
    if (!buf || !ts) {
        free(buf);
        free(ts);
        return err_set("sampler: out of memory for %d images of %d values", B, n);
    }
    float *xin = buf, *oin = buf + 2 * bn, *out = buf + 4 * bn, *tin = buf + 5 * bn;
    double *sigmas = ts + steps, init_sigma = 1;
    int rc = sampler_timesteps(o, s, ts);
    if (!rc && o->kind == SAMPLER_EULER) rc = sampler_euler_sigmas(o, s, sigmas, &init_sigma);
    for (int b = 0; b < B && !rc && draw; b++)
        rng_fill_normal(x + (size_t)b * n, (size_t)n, seeds[b], 0, 0, 0, (float)init_sigma);
    for (size_t k = 0; k < bn && !rc && !draw; k++) x[k] *= (float)init_sigma;

    for (int i = 0; i < steps && !rc; i++) {
        if (o->kind == SAMPLER_DDIM) {
            rc = guided(o, model, ctx, x, ts[i], B, n, xin, oin, tin, out);
            if (rc) break;
            // oin's first half is free after guidance: it holds the eta noise.
            float *noise = o->eta > 0 ? oin : NULL;
            for (int b = 0; b < B && noise; b++)
                rng_fill_normal(noise + (size_t)b * n, (size_t)n, seeds[b], (uint64_t)i + 1, 0, 0, 1);
            for (int b = 0; b < B; b++)
                ddim_step(o, s, (int)ts[i], out + (size_t)b * n, x + (size_t)b * n,
                          noise ? noise + (size_t)b * n : NULL, n);
        } else {
            float scale = (float)(1 / sqrt(sigmas[i] * sigmas[i] + 1));
            float *xs = out;  // scaled input, before out is written
            for (size_t k = 0; k < bn; k++) xs[k] = x[k] * scale;
            rc = guided(o, model, ctx, xs, ts[i], B, n, xin, oin, tin, out);
            if (rc) break;
            euler_step(s->prediction, sigmas[i], sigmas[i + 1], out, x, (int)bn);
        }
    }
    free(buf);
    free(ts);
    return rc;
}

int sampler_run(const sampler_opts *o, const noise_schedule *s, denoise_fn model, void *ctx,
                int B, int n, const uint64_t *seeds, float *x) {
    return run(o, s, model, ctx, B, n, seeds, x, 1);
}

int sampler_run_from(const sampler_opts *o, const noise_schedule *s, denoise_fn model, void *ctx,
                     int B, int n, const uint64_t *seeds, float *x) {
    return run(o, s, model, ctx, B, n, seeds, x, 0);
}
