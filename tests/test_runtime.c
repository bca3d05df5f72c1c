// Runtime basics: dtype conversions, arenas, the Philox stream, atomic writes.
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/arena.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "runtime/rng.h"
#include "runtime/tensor.h"
#include "tests/check.h"

static void test_philox_known_answers(void) {
    // Known-answer vectors of Random123 (kat_vectors, philox4x32 10 rounds).
    static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t k = 0; k < sizeof kat / sizeof kat[0]; k++) {
        uint32_t out[4];
        philox4x32_10(kat[k].ctr, kat[k].key, out);
        for (int i = 0; i < 4; i++)
            EXPECT(out[i] == kat[k].out[i], "vector %zu word %d: %08x != %08x", k, i, out[i], kat[k].out[i]);
    }
}

static void test_rng_streams(void) {
    // Sequential draws equal indexed draws; streams and seeds differ.
    rng r = rng_make(42, 7);
    for (uint64_t i = 0; i < 10; i++) EXPECT_TRUE(rng_u32(&r) == philox_u32(42, 7, i));
    EXPECT_TRUE(philox_u32(42, 7, 0) != philox_u32(42, 8, 0));
    EXPECT_TRUE(philox_u32(42, 7, 0) != philox_u32(43, 7, 0));

    enum { N = 200000 };
    static float x[N];
    rng_fill_normal(x, N, 1, 2, 0, 0, 1);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += x[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (x[i] - m) * (x[i] - m);
    v /= N;
    EXPECT_NEAR(m, 0, 0.01, 0);
    EXPECT_NEAR(v, 1, 0.01, 0);
    rng_fill_uniform(x, N, 1, 3, 0, -2, 2);
    float lo = 9, hi = -9;
    for (int i = 0; i < N; i++) { lo = x[i] < lo ? x[i] : lo; hi = x[i] > hi ? x[i] : hi; }
    EXPECT(lo >= -2 && hi < 2 && lo < -1.99 && hi > 1.99, "range [%g, %g]", lo, hi);

    // An offset fill continues the stream.
    float a[8], b[4];
    rng_fill_normal(a, 8, 5, 0, 0, 0, 1);
    rng_fill_normal(b, 4, 5, 0, 4, 0, 1);
    EXPECT_TRUE(memcmp(a + 4, b, sizeof b) == 0);

    int perm[50], seen[50] = {0};
    for (int i = 0; i < 50; i++) perm[i] = i;
    rng_shuffle(&r, perm, 50);
    for (int i = 0; i < 50; i++) seen[perm[i]]++;
    int ok = 1;
    for (int i = 0; i < 50; i++) ok &= seen[i] == 1;
    EXPECT(ok, "shuffle is a permutation");
}

static void test_dtype_conversions(void) {
    EXPECT_TRUE(f32_to_bf16(1.0f) == 0x3f80);
    EXPECT_TRUE(bf16_to_f32(0x3f80) == 1.0f);
    EXPECT_TRUE(f32_to_bf16(1.00390625f) == 0x3f80);  // tie rounds to even
    EXPECT_TRUE(f32_to_bf16(1.01171875f) == 0x3f82);  // tie rounds to even (up)
    EXPECT_TRUE(f32_to_f16(1.0f) == 0x3c00);
    EXPECT_TRUE(f32_to_f16(65504.0f) == 0x7bff);
    EXPECT_TRUE(f32_to_f16(1e6f) == 0x7c00);
    EXPECT_TRUE(f32_to_f16(-2.0f) == 0xc000);
    EXPECT_TRUE(f16_to_f32(0x0001) == 5.9604644775390625e-8f);  // smallest subnormal
    EXPECT_TRUE(f32_to_f16(5.9604644775390625e-8f) == 0x0001);
    EXPECT_TRUE(isnan(f16_to_f32(f32_to_f16(NAN))));
    EXPECT_TRUE(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    // Every f16 value survives f16 -> f32 -> f16.
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (!isnan(f) && f32_to_f16(f) != h) bad++;
    }
    EXPECT(bad == 0, "%d f16 values do not round-trip", bad);
    float src[5] = {0.5f, -3.25f, 100, 0, 7};
    uint16_t mid[5];
    float back[5];
    dtype_convert(mid, DTYPE_BF16, src, DTYPE_F32, 5);
    dtype_convert(back, DTYPE_F32, mid, DTYPE_BF16, 5);
    EXPECT_TRUE(memcmp(src, back, sizeof src) == 0);
}

static void test_arena(void) {
    arena a = arena_plan("test", DEVICE_CPU);
    int64_t s1[2] = {3, 5}, s2[1] = {7};
    for (int pass = 0; pass < 2; pass++) {
        tensor t1 = arena_tensor(&a, DTYPE_F32, 2, s1);
        tensor t2 = arena_tensor(&a, DTYPE_BF16, 1, s2);
        if (pass == 0) {
            EXPECT_TRUE(t1.data == NULL && t2.data == NULL);
            EXPECT(arena_commit(&a) == 0, "%s", err_msg());
        } else {
            EXPECT_TRUE(t1.data && t2.data);
            EXPECT_TRUE(((uintptr_t)t1.data % ARENA_ALIGN) == 0 && ((uintptr_t)t2.data % ARENA_ALIGN) == 0);
            EXPECT_TRUE((char *)t2.data >= (char *)t1.data + 60);
            EXPECT_TRUE(tensor_numel(&t1) == 15 && tensor_nbytes(&t2) == 14);
        }
    }
    arena_free(&a);
}

static void test_atomic_write(void) {
    char dir[] = "/tmp/selma_test_XXXXXX";
    EXPECT_TRUE(mkdtemp(dir) != NULL);
    char path[256], sub[256];
    snprintf(path, sizeof path, "%s/out.bin", dir);
    EXPECT_TRUE(atomic_write(path, "hello", 5) == 0);
    char *data;
    size_t n;
    EXPECT_TRUE(file_read_all(path, &data, &n) == 0 && n == 5 && !memcmp(data, "hello", 5));
    free(data);
    // An aborted write leaves the old file and no temporary.
    afile f;
    EXPECT_TRUE(afile_open(&f, path) == 0);
    fputs("partial", f.f);
    afile_abort(&f);
    EXPECT_TRUE(file_read_all(path, &data, &n) == 0 && n == 5);
    free(data);
    EXPECT_TRUE(access(f.tmp, F_OK) != 0);
    // Errors name the file.
    EXPECT_TRUE(file_read_all("/nonexistent/x", &data, &n) == -1 && strstr(err_msg(), "/nonexistent/x"));
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    EXPECT_TRUE(mkdir_p(sub) == 0);
    struct stat st;
    EXPECT_TRUE(stat(sub, &st) == 0 && S_ISDIR(st.st_mode));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    EXPECT_TRUE(system(cmd) == 0);
}

static void test_progress(void) {
    char buf[32];
    EXPECT_TRUE(!strcmp(format_duration(75, buf, sizeof buf), "1m15s"));
    EXPECT_TRUE(!strcmp(format_duration(3725, buf, sizeof buf), "1h02m"));
    progress p;
    progress_begin(&p, "test", 0, 3);
    for (long i = 1; i <= 3; i++) progress_update(&p, i, 0.5);
    progress_end(&p);
}

int main(void) {
    test_philox_known_answers();
    test_rng_streams();
    test_dtype_conversions();
    test_arena();
    test_atomic_write();
    test_progress();
    return check_report("test_runtime");
}
