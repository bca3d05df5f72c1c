// Helpers for parity tests against reference frameworks (fixtures from tools/*.py):
// reading a fixture tensor as float32 and the normalized difference used by every
// such test, max |ours - ref| / max |ref| over the tensor.
#ifndef SELMA_TESTS_PARITY_H
#define SELMA_TESTS_PARITY_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/safetensors.h"

// The fixture's tensor `name` of n elements as float32 (malloc'd), or NULL with a
// message on stderr.
static inline float *parity_load(const st_file *f, const char *name, size_t n) {
    const st_tensor *t = st_find(f, name);
    if (!t || (size_t)st_tensor_numel(t) != n) {
        fprintf(stderr, "fixture %s: tensor %s missing or of the wrong size\n", f->name, name);
        return NULL;
    }
    float *x = malloc(n * sizeof *x);
    if (st_tensor_to_f32(f, t, x, n)) {
        free(x);
        return NULL;
    }
    return x;
}

// A NaN in ours counts as an infinite difference.
static inline double parity_diff(const float *ours, const float *ref, size_t n) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)ours[i] - ref[i]);
        worst = e > worst || e != e ? e : worst;
        scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
    }
    return worst / (scale > 0 ? scale : 1);
}

#endif
