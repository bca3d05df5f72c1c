// gpu suite: the CUDA Philox fills equal the CPU fills (so every parity test can draw
// the same inputs on both sides). Skipped (77) without a CUDA device.
#include <stdint.h>

#include "tests/gpu_check.h"

int main(void) {
    if (gpu_check_skip()) return TEST_SKIP;
    enum { N = 1 << 20 };
    float *cpu = malloc(N * sizeof(float)), *gpu = malloc(N * sizeof(float));
    float *d = device_alloc(DEVICE_CUDA, N * sizeof(float));
    rng_fill_uniform(cpu, N, 11, 3, 17, -1, 1);
    rng_fill_uniform_cuda(d, N, 11, 3, 17, -1, 1);
    device_copy(DEVICE_CPU, gpu, DEVICE_CUDA, d, N * sizeof(float));
    EXPECT(memcmp(cpu, gpu, N * sizeof(float)) == 0, "uniform streams differ");
    rng_fill_normal(cpu, N, 11, 4, 5, 0.5f, 2);
    rng_fill_normal_cuda(d, N, 11, 4, 5, 0.5f, 2);
    device_copy(DEVICE_CPU, gpu, DEVICE_CUDA, d, N * sizeof(float));
    int differ = 0;
    double worst = 0;
    for (int i = 0; i < N; i++) {
        differ += cpu[i] != gpu[i];
        double e = fabs((double)cpu[i] - gpu[i]);
        worst = e > worst ? e : worst;
    }
    // Box-Muller goes through log/sin/cos in double: the two libms may differ in the
    // last bit of a double, which rarely changes the float.
    EXPECT(worst <= 1e-6, "normal streams differ by %g", worst);
    printf("normal: %d of %d differ in the last bit\n", differ, N);
    device_free(DEVICE_CUDA, d);
    free(cpu);
    free(gpu);
    return check_report("test_rng_gpu");
}
