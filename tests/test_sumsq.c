// Sum of squares: the float version (double accumulation) vs the float64 reference
// on sizes 0, 1, odd and large, and two exact cases (integers, where every partial sum
// is representable).
#include "kernels/sumsq.h"
#include <math.h>
#include <stdio.h>

#include "tests/kernel_check.h"

static void check_size(size_t n, uint64_t seed) {
    double *x = randn_d(n, seed, 0);
    float *xf = to_f32(x, n);
    double *xr = zeros_d(n);  // the reference on the float inputs' exact values
    for (size_t i = 0; i < n; i++) xr[i] = xf[i];
    double ref = sumsq_ref(xr, n), got = sumsq(xf, n);
    double err = fabs(got - ref) / fmax(1.0, fabs(ref));
    EXPECT(err <= 1e-12, "sumsq n=%zu: %.17g vs reference %.17g (rel %.2e)", n, got, ref, err);
    free(x), free(xf), free(xr);
}

int main(void) {
    static const size_t sizes[] = {0, 1, 7, 1000, 4099, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_size(sizes[i], 40 + i);
    float ints[5] = {1, -2, 3, -4, 0};
    EXPECT(sumsq(ints, 5) == 30.0, "sumsq of 1, -2, 3, -4, 0: %.17g, want 30", sumsq(ints, 5));
    double d[3] = {0.5, -1.5, 2};
    EXPECT(sumsq_ref(d, 3) == 6.5, "sumsq_ref of 0.5, -1.5, 2: %.17g, want 6.5", sumsq_ref(d, 3));
    return check_report("test_sumsq");
}
