#include "models/ema.h"

#include <stdlib.h>
#include <string.h>

#include "models/device_ops.h"
#include "runtime/device.h"
#include "runtime/error.h"

int ema_init(ema *e, const float *params, size_t n, double decay, int warmup) {
    return ema_init_device(e, params, n, decay, warmup, DEVICE_CPU);
}

int ema_init_device(ema *e, const float *params, size_t n, double decay, int warmup,
                    device_kind dev) {
    memset(e, 0, sizeof *e);
    if (!(decay >= 0 && decay < 1)) return err_set("ema: decay %g outside [0, 1)", decay);
    e->shadow = device_alloc(dev, (n ? n : 1) * sizeof *e->shadow);
    if (!e->shadow) return err_set("ema: cannot allocate %zu floats on %s", n, dev == DEVICE_CPU ? "cpu" : "cuda");
    device_copy(dev, e->shadow, dev, params, n * sizeof *params);
    e->dev = dev;
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
    if (e->dev != DEVICE_CPU) dev_axpby(e->dev, e->shadow, d, params, w, e->n);
    else
        for (size_t i = 0; i < e->n; i++) e->shadow[i] = d * e->shadow[i] + w * params[i];
    e->updates++;
}

void ema_swap(ema *e, float *params) {
    if (e->dev != DEVICE_CPU) {  // rare (sampling, saving): three copies through a temporary
        float *tmp = device_alloc(e->dev, (e->n ? e->n : 1) * sizeof(float));
        CHECK(tmp);
        device_copy(e->dev, tmp, e->dev, params, e->n * sizeof(float));
        device_copy(e->dev, params, e->dev, e->shadow, e->n * sizeof(float));
        device_copy(e->dev, e->shadow, e->dev, tmp, e->n * sizeof(float));
        device_free(e->dev, tmp);
        return;
    }
    for (size_t i = 0; i < e->n; i++) {
        float t = params[i];
        params[i] = e->shadow[i];
        e->shadow[i] = t;
    }
}

void ema_free(ema *e) {
    device_free(e->dev, e->shadow);
    memset(e, 0, sizeof *e);
}
