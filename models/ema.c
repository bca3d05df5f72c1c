#include "models/ema.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

int ema_init(ema *e, const float *params, size_t n, double decay, int warmup) {
    memset(e, 0, sizeof *e);
    if (!(decay >= 0 && decay < 1)) return err_set("ema: decay %g outside [0, 1)", decay);
    e->shadow = malloc((n ? n : 1) * sizeof *e->shadow);
    if (!e->shadow) return err_set("ema: cannot allocate %zu floats", n);
    memcpy(e->shadow, params, n * sizeof *params);
    e->n = n;
    e->decay = decay;
    e->warmup = warmup;
    return 0;
}

double ema_current_decay(const ema *e) {
    if (!e->warmup) return e->decay;
    double ramp = (1.0 + e->updates) / (10.0 + e->updates);
    return ramp < e->decay ? ramp : e->decay;
}

void ema_update(ema *e, const float *params) {
    const float d = (float)ema_current_decay(e), w = 1 - d;
    for (size_t i = 0; i < e->n; i++) e->shadow[i] = d * e->shadow[i] + w * params[i];
    e->updates++;
}

void ema_swap(ema *e, float *params) {
    for (size_t i = 0; i < e->n; i++) {
        float t = params[i];
        params[i] = e->shadow[i];
        e->shadow[i] = t;
    }
}

void ema_free(ema *e) {
    free(e->shadow);
    memset(e, 0, sizeof *e);
}
