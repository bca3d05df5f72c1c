#include "models/schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

static const char *const beta_names[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
static const char *const pred_names[] = {"epsilon", "v_prediction"};

int beta_schedule_from_name(const char *name, beta_schedule *out) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, beta_names[i])) { *out = (beta_schedule)i; return 0; }
    if (!strcmp(name, "cosine")) { *out = BETA_COSINE; return 0; }
    return err_set("unknown beta schedule '%s' (linear, scaled_linear, squaredcos_cap_v2)", name);
}

int prediction_type_from_name(const char *name, prediction_type *out) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, pred_names[i])) { *out = (prediction_type)i; return 0; }
    if (!strcmp(name, "v")) { *out = PRED_V; return 0; }
    return err_set("unknown prediction type '%s' (epsilon, v_prediction)", name);
}

const char *beta_schedule_name(beta_schedule k) { return beta_names[k]; }
const char *prediction_type_name(prediction_type p) { return pred_names[p]; }

static double cosine_abar(double u) {
    double c = cos((u + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

int schedule_init(noise_schedule *s, beta_schedule kind, prediction_type pred, int T,
                  double beta_start, double beta_end) {
    memset(s, 0, sizeof *s);
    if (T < 1 || T > SCHEDULE_MAX_T)
        return err_set("noise schedule: %d train timesteps (1..%d)", T, SCHEDULE_MAX_T);
    if ((unsigned)kind > BETA_COSINE || (unsigned)pred > PRED_V)
        return err_set("noise schedule: bad kind %d or prediction %d", (int)kind, (int)pred);
    if (kind != BETA_COSINE &&
        !(beta_start > 0 && beta_end < 1 && beta_start <= beta_end))
        return err_set("noise schedule: betas %g..%g must satisfy 0 < start <= end < 1",
                       beta_start, beta_end);
    s->kind = kind;
    s->prediction = pred;
    s->T = T;
    s->beta_start = beta_start;
    s->beta_end = beta_end;
    s->betas = malloc(3 * (size_t)T * sizeof(double));
    CHECK(s->betas != NULL);
    s->alphas_cumprod = s->betas + T;
    s->sigmas = s->betas + 2 * T;
    for (int t = 0; t < T; t++) {
        double u = T > 1 ? (double)t / (T - 1) : 0;  // linspace's position
        switch (kind) {
        case BETA_LINEAR: s->betas[t] = beta_start + u * (beta_end - beta_start); break;
        case BETA_SCALED_LINEAR: {
            double r = sqrt(beta_start) + u * (sqrt(beta_end) - sqrt(beta_start));
            s->betas[t] = r * r;
            break;
        }
        case BETA_COSINE: {
            double b = 1 - cosine_abar((double)(t + 1) / T) / cosine_abar((double)t / T);
            s->betas[t] = b < 0.999 ? b : 0.999;
            break;
        }
        }
    }
    double ac = 1;
    for (int t = 0; t < T; t++) {
        ac *= 1 - s->betas[t];
        s->alphas_cumprod[t] = ac;
        s->sigmas[t] = sqrt((1 - ac) / ac);
    }
    return 0;
}

int schedule_init_default(noise_schedule *s, beta_schedule kind, prediction_type pred, int T) {
    if (kind == BETA_SCALED_LINEAR) return schedule_init(s, kind, pred, T, 0.00085, 0.012);
    return schedule_init(s, kind, pred, T, 1e-4, 0.02);
}

void schedule_free(noise_schedule *s) {
    free(s->betas);
    memset(s, 0, sizeof *s);
}

double schedule_alpha_cumprod_at(const noise_schedule *s, double t) {
    if (t <= 0) return s->alphas_cumprod[0];
    if (t >= s->T - 1) return s->alphas_cumprod[s->T - 1];
    int i = (int)floor(t);
    double f = t - i;
    double sigma = (1 - f) * s->sigmas[i] + f * s->sigmas[i + 1];
    return f == 0 ? s->alphas_cumprod[i] : 1 / (1 + sigma * sigma);
}

void schedule_add_noise(const noise_schedule *s, float *xt, const float *x0,
                        const float *eps, const int *t, int B, int n) {
    for (int b = 0; b < B; b++) {
        CHECK(t[b] >= 0 && t[b] < s->T);
        double ac = s->alphas_cumprod[t[b]];
        float a = (float)sqrt(ac), sg = (float)sqrt(1 - ac);
        size_t o = (size_t)b * n;
        for (int i = 0; i < n; i++) xt[o + i] = a * x0[o + i] + sg * eps[o + i];
    }
}

void schedule_target(const noise_schedule *s, float *target, const float *x0,
                     const float *eps, const int *t, int B, int n) {
    if (s->prediction == PRED_EPSILON) {
        memcpy(target, eps, (size_t)B * n * sizeof *target);
        return;
    }
    for (int b = 0; b < B; b++) {
        CHECK(t[b] >= 0 && t[b] < s->T);
        double ac = s->alphas_cumprod[t[b]];
        float a = (float)sqrt(ac), sg = (float)sqrt(1 - ac);
        size_t o = (size_t)b * n;
        for (int i = 0; i < n; i++) target[o + i] = a * eps[o + i] - sg * x0[o + i];
    }
}

void schedule_sample_timesteps(const noise_schedule *s, rng *r, int B, int *t) {
    for (int b = 0; b < B; b++) t[b] = (int)rng_below(r, (uint32_t)s->T);
}

int schedule_drop_captions(rng *r, int B, double p, int *drop) {
    if (!(p >= 0 && p <= 1)) return err_set("caption drop probability %g outside [0, 1]", p);
    int n = 0;
    for (int b = 0; b < B; b++) {
        drop[b] = rng_uniform(r) < p;  // one draw per image whatever p is: streams stay aligned
        n += drop[b];
    }
    return n;
}

void schedule_split(prediction_type pred, double ac, const float *xt, const float *out,
                    float *x0, float *eps, int n) {
    double a = sqrt(ac), sg = sqrt(1 - ac);
    for (int i = 0; i < n; i++) {
        double x = xt[i], o = out[i], px0, peps;
        if (pred == PRED_EPSILON) {
            peps = o;
            px0 = (x - sg * o) / a;
        } else {
            px0 = a * x - sg * o;
            peps = a * o + sg * x;
        }
        if (x0) x0[i] = (float)px0;
        if (eps) eps[i] = (float)peps;
    }
}
