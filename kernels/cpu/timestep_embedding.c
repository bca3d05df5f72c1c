#include "kernels/timestep_embedding.h"

#include <math.h>
#include <stddef.h>

static double freq_d(int i, int half, double shift, double max_period) {
    if (i == 0) return 1.0;  // exponent 0, even where half - shift == 0
    return exp(-log(max_period) * i / (half - shift));
}

void timestep_embedding_forward_ref(double *out, const double *t, int B, int dim,
                                    int flip_sin_to_cos, double downscale_freq_shift,
                                    double max_period) {
    int half = dim / 2;
    for (int b = 0; b < B; b++) {
        double *o = out + (size_t)b * dim;
        for (int i = 0; i < half; i++) {
            double a = t[b] * freq_d(i, half, downscale_freq_shift, max_period);
            o[i] = flip_sin_to_cos ? cos(a) : sin(a);
            o[half + i] = flip_sin_to_cos ? sin(a) : cos(a);
        }
        if (dim % 2) o[dim - 1] = 0;
    }
}

// The table of frequencies is recomputed per row rather than cached: B x dim/2 exps
// are nothing next to the MLP that follows, and the function needs no scratch.
void timestep_embedding_forward(float *out, const float *t, int B, int dim,
                                int flip_sin_to_cos, float downscale_freq_shift,
                                float max_period) {
    int half = dim / 2;
    double lp = log((double)max_period), den = half - (double)downscale_freq_shift;
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * dim;
        float *first = o, *second = o + half;  // [sin, cos], or [cos, sin] when flipped
        if (flip_sin_to_cos) first = o + half, second = o;
        for (int i = 0; i < half; i++) {
            double a = t[b] * (i ? exp(-lp * i / den) : 1.0);
            first[i] = (float)sin(a);
            second[i] = (float)cos(a);
        }
        if (dim % 2) o[dim - 1] = 0;
    }
}
