// gpu suite: the CUDA attention (kernels/cuda/attention.cu: flash forward, two-pass
// backward, cuBLAS naive forward) against the CPU float32 version
// (kernels/cpu/attention.c) on the same random inputs (Philox fills, same seeds on
// both sides: rng_fill_uniform and rng_fill_uniform_cuda are bit-identical,
// tests/test_rng_gpu.c). Every GPU output starts as NaN, so an element left unwritten
// fails; a second run must give the same bits (a moving result is a race), and the
// 8-warp variant (SELMA_ATTN_WARPS=8) the same values as the 4-warp one.
//
// Tolerance: relative L2 error ||gpu - cpu|| / ||cpu|| <= 1e-2 for out, lse, dq, dk,
// dv. The GPU multiplies bf16 operands (8 significant bits, relative rounding
// 2^-9 ~ 2e-3 per operand) with fp32 accumulation; the expected error is a few 1e-3,
// so 1e-2 leaves a margin of about 2-3x while an indexing or masking bug gives O(1).
// SELMA_GPU_QUICK=1 (bench/gpu/check.sh's compute-sanitizer pass) keeps the small cases
// marked quick. Skipped (77) without a CUDA device.
#include "kernels/attention.h"
#include "tests/gpu_check.h"

#define TOL_BF16_L2 1e-2

typedef struct {
    int B, N, M, H, D, causal;
    float qr;     // q, k drawn in [-qr, qr] (larger: more peaked softmax)
    float scale;  // <= 0: 1/sqrt(D)
    int quick;    // kept when SELMA_GPU_QUICK is set (compute-sanitizer runs)
} acase;

static const acase cases[] = {
    // cross-attention: M = 77 (SD text) and 16 (shapes), M not a multiple of the tile
    {2, 1, 16, 2, 32, 0, 2, 0, 1},
    {2, 77, 77, 4, 40, 0, 2, 0, 1},
    {2, 200, 77, 8, 80, 0, 2, 0, 1},
    {2, 1024, 77, 8, 160, 0, 2, 0, 0},
    {2, 200, 16, 3, 64, 0, 2, 0, 0},
    {2, 1024, 16, 2, 128, 0, 2, 0, 0},
    {2, 77, 200, 2, 160, 0, 2, 0, 1},
    // self-attention, causal
    {2, 1, 1, 2, 40, 1, 2, 0, 0},
    {2, 77, 77, 2, 32, 1, 2, 0, 1},
    {2, 77, 77, 5, 80, 1, 2, 0, 0},
    {2, 200, 200, 4, 64, 1, 2, 0, 1},
    {2, 200, 200, 8, 128, 1, 2, 0, 0},
    {2, 1024, 1024, 2, 40, 1, 2, 0, 0},
    {2, 1024, 1024, 2, 160, 1, 2, 0, 0},
    // self-attention, non-causal
    {2, 200, 200, 2, 40, 0, 2, 0, 0},
    {2, 200, 200, 4, 160, 0, 2, 0, 0},
    {2, 77, 77, 6, 128, 0, 2, 0, 1},
    {2, 1024, 1024, 2, 32, 0, 2, 0, 0},
    {2, 1024, 1024, 2, 80, 0, 2, 0, 0},
    {2, 1024, 1024, 2, 64, 0, 2, 0, 0},
    // one query against many keys
    {2, 1, 1024, 4, 64, 0, 2, 0, 0},
    {2, 1, 200, 2, 160, 0, 2, 0, 0},
    // peaked softmax (running max changes across key tiles), explicit scale
    {2, 200, 200, 2, 64, 0, 2.5f, 0, 0},
    {2, 200, 200, 2, 40, 1, 2.5f, 0.15f, 0},
    // head dims off the 16 grid and not a multiple of 4 (scalar staging path)
    {2, 77, 77, 2, 37, 0, 2, 0, 1},
    {2, 200, 200, 3, 100, 1, 2, 0, 1},
};

static float *dalloc(size_t n) {
    float *p = device_alloc(DEVICE_CUDA, n * sizeof(float) + 16);
    CHECK(p);
    return p;
}

// Compares a device array with a host reference; reports and returns the error.
static double compare(const char *what, const char *name, const float *d, const float *ref,
                      size_t n, float *tmp) {
    gpu_to_host(tmp, d, n);
    size_t nonfinite = 0;
    double e = rel_l2_count(tmp, ref, n, &nonfinite);
    EXPECT(nonfinite == 0 && e <= TOL_BF16_L2, "%s %s: rel L2 %.3g, %zu non-finite", what, name, e,
           nonfinite);
    return e;
}

// Runs fn's outputs twice and checks the bits agree.
static void same_bits(const char *what, const char *name, const float *d, const float *first,
                      size_t n, float *tmp) {
    gpu_to_host(tmp, d, n);
    EXPECT(memcmp(tmp, first, n * sizeof(float)) == 0, "%s %s: second run differs", what, name);
}

// The 8-warp run against the 4-warp one: equal to rounding.
static void agrees(const char *what, const char *name, const float *d, const float *first,
                   size_t n, float *tmp) {
    gpu_to_host(tmp, d, n);
    size_t nonfinite = 0, differ = 0;
    for (size_t i = 0; i < n; i++) differ += tmp[i] != first[i];
    double e = rel_l2_count(tmp, first, n, &nonfinite);
    EXPECT(nonfinite == 0 && e <= 1e-6, "%s %s: rel L2 %.3g, %zu non-finite", what, name, e,
           nonfinite);
    if (differ) printf("%s %s: %zu of %zu values differ in bits (rel L2 %.2g)\n", what, name,
                       differ, n, e);
}

static void run_case(const acase *c, uint64_t seed) {
    const int B = c->B, N = c->N, M = c->M, H = c->H, D = c->D, causal = c->causal;
    const size_t nq = (size_t)B * N * H * D, nk = (size_t)B * M * H * D, nl = (size_t)B * H * N;
    char what[128];
    snprintf(what, sizeof what, "B=%d N=%d M=%d H=%d D=%d causal=%d qr=%g scale=%g", B, N, M, H,
             D, causal, c->qr, c->scale);

    // Host inputs and the CPU float32 reference.
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *g = malloc(nq * 4);
    size_t nmax = nq > nk ? nq : nk;
    float *out = malloc(nq * 4), *lse = malloc(nl * 4), *dq = malloc(nq * 4), *dk = malloc(nk * 4),
          *dv = malloc(nk * 4), *tmp = malloc(nmax * 4), *first = malloc(nmax * 4);
    float *scratch = malloc(attention_scratch_floats(N, M) * sizeof(float));

    // The same draws on both sides.
    float *d_q = dalloc(nq), *d_k = dalloc(nk), *d_v = dalloc(nk), *d_g = dalloc(nq);
    fill_uniform_both(q, d_q, nq, seed, 0, -c->qr, c->qr);
    fill_uniform_both(k, d_k, nk, seed, 1, -c->qr, c->qr);
    fill_uniform_both(v, d_v, nk, seed, 2, -1, 1);
    fill_uniform_both(g, d_g, nq, seed, 3, -1, 1);
    attention_forward(out, lse, scratch, q, k, v, B, N, M, H, D, c->scale, causal);
    attention_backward(dq, dk, dv, scratch, g, q, k, v, out, lse, B, N, M, H, D, c->scale, causal);

    float *d_out = dalloc(nq), *d_lse = dalloc(nl), *d_dq = dalloc(nq), *d_dk = dalloc(nk),
          *d_dv = dalloc(nk);
    float *d_scr = dalloc(attention_cuda_scratch_floats(B, N, H));
    gpu_to_host(tmp, d_q, nq);
    EXPECT(memcmp(tmp, q, nq * 4) == 0, "%s: device q differs from host q", what);

    // Forward with 4 warps per block twice (same bits), then with 8 (SELMA_ATTN_WARPS):
    // every row goes through the same operations either way, so 8 must agree with 4 to
    // rounding (bits expected; 1e-6 allowed in case the compiler contracts differently).
    setenv("SELMA_ATTN_WARPS", "4", 1);
    gpu_poison(d_out, nq), gpu_poison(d_lse, nl);
    attention_forward_cuda(d_out, d_lse, d_q, d_k, d_v, B, N, M, H, D, c->scale, causal);
    double e_out = compare(what, "out", d_out, out, nq, tmp);
    memcpy(first, tmp, nq * 4);
    double e_lse = compare(what, "lse", d_lse, lse, nl, tmp);
    gpu_poison(d_out, nq);
    attention_forward_cuda(d_out, d_lse, d_q, d_k, d_v, B, N, M, H, D, c->scale, causal);
    same_bits(what, "out", d_out, first, nq, tmp);
    setenv("SELMA_ATTN_WARPS", "8", 1);
    gpu_poison(d_out, nq), gpu_poison(d_lse, nl);
    attention_forward_cuda(d_out, d_lse, d_q, d_k, d_v, B, N, M, H, D, c->scale, causal);
    agrees(what, "out (8 warps vs 4)", d_out, first, nq, tmp);
    compare(what, "lse (8 warps)", d_lse, lse, nl, tmp);

    // Backward from the GPU forward's out and lse, 4 then 8 warps. Scratch starts as NaN.
    setenv("SELMA_ATTN_WARPS", "4", 1);
    gpu_poison(d_dq, nq), gpu_poison(d_dk, nk), gpu_poison(d_dv, nk);
    gpu_poison(d_scr, attention_cuda_scratch_floats(B, N, H));
    attention_backward_cuda(d_dq, d_dk, d_dv, d_scr, d_g, d_q, d_k, d_v, d_out, d_lse, B, N, M, H,
                            D, c->scale, causal);
    double e_dq = compare(what, "dq", d_dq, dq, nq, tmp);
    double e_dk = compare(what, "dk", d_dk, dk, nk, tmp);
    memcpy(first, tmp, nk * 4);
    double e_dv = compare(what, "dv", d_dv, dv, nk, tmp);
    gpu_poison(d_dk, nk);
    attention_backward_cuda(d_dq, d_dk, d_dv, d_scr, d_g, d_q, d_k, d_v, d_out, d_lse, B, N, M, H,
                            D, c->scale, causal);
    same_bits(what, "dk", d_dk, first, nk, tmp);
    setenv("SELMA_ATTN_WARPS", "8", 1);
    gpu_poison(d_dq, nq), gpu_poison(d_dk, nk), gpu_poison(d_dv, nk);
    attention_backward_cuda(d_dq, d_dk, d_dv, d_scr, d_g, d_q, d_k, d_v, d_out, d_lse, B, N, M, H,
                            D, c->scale, causal);
    agrees(what, "dk (8 warps vs 4)", d_dk, first, nk, tmp);
    compare(what, "dq (8 warps)", d_dq, dq, nq, tmp);
    compare(what, "dv (8 warps)", d_dv, dv, nk, tmp);
    setenv("SELMA_ATTN_WARPS", seed % 2 ? "8" : "4", 1);
    printf("%-58s out %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n", what, e_out, e_lse, e_dq, e_dk,
           e_dv);

    // NULL gradients are skipped; the others are still right.
    if (seed % 3 == 0) {
        gpu_poison(d_dq, nq), gpu_poison(d_dv, nk);
        attention_backward_cuda(d_dq, NULL, d_dv, d_scr, d_g, d_q, d_k, d_v, d_out, d_lse, B, N,
                                M, H, D, c->scale, causal);
        compare(what, "dq (dk NULL)", d_dq, dq, nq, tmp);
        compare(what, "dv (dk NULL)", d_dv, dv, nk, tmp);
    } else if (seed % 3 == 1) {
        gpu_poison(d_dk, nk);
        attention_backward_cuda(NULL, d_dk, NULL, d_scr, d_g, d_q, d_k, d_v, d_out, d_lse, B, N, M,
                                H, D, c->scale, causal);
        compare(what, "dk (dq, dv NULL)", d_dk, dk, nk, tmp);
    }

    // The cuBLAS baseline (bf16 tensor cores too) on the smaller cases.
    if ((size_t)H * N * M <= (size_t)8 << 20) {
        gpu_poison(d_out, nq), gpu_poison(d_lse, nl);
        attention_forward_cuda_naive(d_out, d_lse, d_q, d_k, d_v, B, N, M, H, D, c->scale, causal);
        compare(what, "naive out", d_out, out, nq, tmp);
        compare(what, "naive lse", d_lse, lse, nl, tmp);
    }

    free(q), free(k), free(v), free(g), free(out), free(lse), free(dq), free(dk), free(dv);
    free(tmp), free(first), free(scratch);
    float *dev[] = {d_q, d_k, d_v, d_g, d_out, d_lse, d_dq, d_dk, d_dv, d_scr};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) device_free(DEVICE_CUDA, dev[i]);
}

int main(void) {
    if (gpu_check_skip()) return TEST_SKIP;
    printf("%s\n", cuda_device_describe());
    const int quick = getenv("SELMA_GPU_QUICK") != NULL;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (!quick || cases[i].quick) run_case(&cases[i], 1000 + i);
    return check_report("test_attention_gpu");
}
