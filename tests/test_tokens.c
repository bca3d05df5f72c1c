// Channel planes <-> tokens: the float versions equal the reference exactly, the two
// directions are inverse, and one element lands where the definition says.
#include "kernels/tokens.h"
#include "tests/kernel_check.h"

static void check_shape(int B, int C, int N, uint64_t seed) {
    size_t n = (size_t)B * C * N;
    double *x = randn_d(n, seed, 0), *rt = zeros_d(n), *rc = zeros_d(n);
    channels_to_tokens_ref(rt, x, B, C, N);
    tokens_to_channels_ref(rc, rt, B, C, N);
    size_t differ = 0;
    for (size_t k = 0; k < n; k++) differ += rc[k] != x[k];
    EXPECT(differ == 0, "tokens_to_channels_ref does not invert channels_to_tokens_ref (%zu)", differ);
    // element (b, c, i) of the planes is element (b, i, c) of the tokens
    int b = B - 1, c = C / 2, i = N - 1;
    EXPECT(rt[((size_t)b * N + i) * C + c] == x[((size_t)b * C + c) * N + i],
           "channels_to_tokens_ref puts (b, c, i) at (b, i, c)");
    float *xf = to_f32(x, n), *tf = zeros_f(n), *cf = zeros_f(n);
    channels_to_tokens(tf, xf, B, C, N);
    EXPECT_CLOSE_ARRAY(tf, rt, n, 0.0, "channels_to_tokens");
    tokens_to_channels(cf, tf, B, C, N);
    EXPECT_CLOSE_ARRAY(cf, x, n, 0.0, "tokens_to_channels");
    free(x); free(rt); free(rc); free(xf); free(tf); free(cf);
}

int main(void) {
    check_shape(1, 1, 1, 1);
    check_shape(2, 3, 5, 2);
    check_shape(3, 64, 16, 3);
    check_shape(1, 33, 70, 4);
    return check_report("test_tokens");
}
