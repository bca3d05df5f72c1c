// y = a y + b x: the float version vs the float64 reference on odd sizes and the EMA's
// and the clip's coefficients, x = NULL (a pure rescale), and exact small cases.
#include "kernels/axpby.h"
#include <math.h>
#include <stdio.h>

#include "tests/kernel_check.h"

static void check_case(size_t n, double a, double b, int with_x, uint64_t seed) {
    double *y = randn_d(n, seed, 0), *x = randn_d(n, seed, 1);
    float *yf = to_f32(y, n), *xf = to_f32(x, n);
    for (size_t i = 0; i < n; i++) y[i] = yf[i], x[i] = xf[i];  // the same inputs on both sides
    axpby_ref(y, (float)a, with_x ? x : NULL, (float)b, n);
    axpby(yf, (float)a, with_x ? xf : NULL, (float)b, n);
    char what[96];
    snprintf(what, sizeof what, "axpby n=%zu a=%g b=%g%s", n, a, b, with_x ? "" : " x=NULL");
    EXPECT_CLOSE_ARRAY(yf, y, n, TOL_F32_ELEMENTWISE, what);
    free(y), free(x), free(yf), free(xf);
}

int main(void) {
    static const size_t sizes[] = {1, 7, 1000, 4099};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_case(sizes[i], 0.995, 0.005, 1, 50 + i);  // EMA
        check_case(sizes[i], 0.1, 0.9, 1, 60 + i);      // EMA's warm-up ramp
        check_case(sizes[i], 0.37, 0, 0, 70 + i);       // gradient clip
        check_case(sizes[i], -2, 3, 1, 80 + i);
    }
    float y[3] = {1, 2, -4}, x[3] = {4, 0, 2};
    axpby(y, 0.5f, x, 0.25f, 3);
    EXPECT(y[0] == 1.5f && y[1] == 1.0f && y[2] == -1.5f, "axpby 0.5 y + 0.25 x: %g %g %g", y[0], y[1], y[2]);
    axpby(y, 2.0f, NULL, 99.0f, 3);
    EXPECT(y[0] == 3.0f && y[1] == 2.0f && y[2] == -3.0f, "axpby 2 y (x NULL): %g %g %g", y[0], y[1], y[2]);
    return check_report("test_axpby");
}
