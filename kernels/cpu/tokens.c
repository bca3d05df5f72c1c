// Channel planes <-> tokens (kernels/tokens.h).
#include "kernels/tokens.h"

#include <stddef.h>

void channels_to_tokens_ref(double *out, const double *inp, int B, int C, int N) {
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++)
            for (int c = 0; c < C; c++)
                out[((size_t)b * N + i) * C + c] = inp[((size_t)b * C + c) * N + i];
}

void tokens_to_channels_ref(double *out, const double *inp, int B, int C, int N) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < N; i++)
                out[((size_t)b * C + c) * N + i] = inp[((size_t)b * N + i) * C + c];
}

// Plane by plane: each source plane is read contiguously, the destination strided.
void channels_to_tokens(float *out, const float *inp, int B, int C, int N) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *s = inp + ((size_t)b * C + c) * N;
            float *d = out + (size_t)b * N * C + c;
            for (int i = 0; i < N; i++) d[(size_t)i * C] = s[i];
        }
}

void tokens_to_channels(float *out, const float *inp, int B, int C, int N) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *s = inp + (size_t)b * N * C + c;
            float *d = out + ((size_t)b * C + c) * N;
            for (int i = 0; i < N; i++) d[i] = s[(size_t)i * C];
        }
}
