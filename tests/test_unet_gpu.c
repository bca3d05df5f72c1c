// gpu suite: the whole UNet on CUDA (unet_build_device(..., DEVICE_CUDA)) against the
// same UNet on the CPU, with identical weights (built on the CPU, unet_copy_params to
// the device) and identical inputs. Skipped (77) without a CUDA device.
//
// A small config that still has every kind of block: three levels (16/32/32 channels
// at 16x16, 8x8, 4x4), two ResNets per level, cross-attention at levels 0 and 2 and in
// the mid block (head dims 8 and 16, 7 context tokens of width 24), GroupNorm of 4
// groups, a class embedding (the shapes bases' pooled text), 3 input channels (the
// convolutions' unaligned K = 27 path). Cases: full training with 1x1-conv
// projections, LoRA training (rank 4 on the attention projections) with linear
// projections; each with conv2d_cuda_impl = IGEMM and, where the build has cuDNN,
// CUDNN (left out under SELMA_GPU_QUICK=1, bench/gpu/check.sh's compute-sanitizer pass:
// memcheck has nothing to find in cuDNN's kernels and they are the slow part there).
//
// Per case: one training step, B = 3 (forward, MSE loss against a random target,
// backward, AdamW) and one sampling forward of a frozen model (B = 2 of 3 allocated).
// Compared: the output, the loss, dx, dcontext, dclass, every parameter gradient and
// every parameter's AdamW update (p_new - p_old), each by its relative L2 error
// ||gpu - cpu|| / ||cpu|| <= TOL. The device's activations and gradients are poisoned
// with NaN before the run (bytes 0xFF), so an element no kernel writes fails.
//
// TOL 2e-2: convolutions and attention round their operands to bf16 on tensor cores
// (about 1e-2 relative per op against float32, kernels/attention.h and conv2d.h), the
// linears to TF32; through some twenty layers forward and back the per-tensor errors
// stay at that order, not below it.
// AdamW uses eps = the largest |gradient| of the CPU model: at PyTorch's 1e-8 the first
// step is lr * sign(g), which flips wherever g is within rounding of zero and would
// make the comparison meaningless; with a large eps the step is smooth in g.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/adamw.h"
#include "kernels/conv2d.h"
#include "kernels/mse.h"
#include "models/unet.h"
#include "runtime/rng.h"
#include "tests/gpu_check.h"

#define TOL 2e-2
#define B_TRAIN 3
#define B_SAMPLE 2
#define T_CTX 7

static unet_config small_config(int linear_projection) {
    return (unet_config){.in_channels = 3, .out_channels = 3, .n_levels = 3,
                         .block_out_channels = {16, 32, 32}, .layers_per_block = 2,
                         .cross_attn = {1, 0, 1}, .num_heads = {2, 2, 2},
                         .cross_attention_dim = 24, .norm_num_groups = 4, .norm_eps = 1e-5f,
                         .use_linear_projection = linear_projection, .flip_sin_to_cos = 1,
                         .freq_shift = 0, .sample_size = 16, .class_embed_dim = 12};
}

static char g_case[128];

// rel L2 of the device array against the host one, NaN counted as a failure. Prints
// the line when verbose or failing; returns the error.
static double compare(const char *what, const float *dev, const float *host, const float *base,
                      size_t n, int verbose) {
    float *g = gpu_download(dev, n);
    size_t nonfinite = 0;
    for (size_t i = 0; i < n; i++) nonfinite += !isfinite(g[i]);
    double rel = rel_l2_base(g, host, base, n);
    int ok = nonfinite == 0 && rel <= TOL;
    if (verbose || !ok)
        printf("  %-60s n %7zu  relL2 %.2e%s\n", what, n, rel, nonfinite ? "  NaN!" : "");
    EXPECT(ok, "%s %s: relative L2 %.3g (tolerance %.0e), %zu not finite", g_case, what, rel, TOL,
           nonfinite);
    free(g);
    return rel;
}

static float *host_randn(size_t n, uint64_t stream, float std) {
    float *h = malloc(n * sizeof *h);
    CHECK(h);
    rng_fill_normal(h, n, 2026, stream, 0, 0, std);
    return h;
}

static float *upload(const float *h, size_t n) {
    float *d = gpu_alloc(n);
    gpu_from_host(d, h, n);
    return d;
}

// Weights away from the init: norms around 1 / 0, LoRA B non-zero (PEFT starts it at
// 0, which would leave lora_A's gradient 0 and untested).
static void perturb(unet *m, uint64_t seed) {
    for (int i = 0; i < m->params.n; i++) {
        unet_param *p = &m->params.items[i];
        size_t n = (size_t)tensor_numel(&p->t);
        float b = p->init == PARAM_INIT_UNIFORM ? 1.0f / sqrtf((float)p->fan_in) : 0.2f;
        float c = p->init == PARAM_INIT_ONES ? 1.0f : 0.0f;
        rng_fill_uniform(p->t.data, n, seed, (uint64_t)i, 0, c - b, c + b);
    }
}

// unet_copy_params both ways: the CPU weights survive a trip through the device.
static void check_round_trip(const unet *gpu, const unet *cpu, const unet_config *cfg,
                             const lora_config *lora) {
    unet back;
    CHECK(unet_build(&back, cfg, UNET_FROZEN, lora) == 0);
    EXPECT(unet_copy_params(&back, gpu) == 0, "%s: copy back: %s", g_case, err_msg());
    size_t differ = 0;
    for (int i = 0; i < cpu->params.n; i++)
        differ += memcmp(back.params.items[i].t.data, cpu->params.items[i].t.data,
                         tensor_nbytes(&cpu->params.items[i].t)) != 0;
    EXPECT(differ == 0, "%s: %zu tensors changed on the way to the device and back", g_case, differ);
    unet_free(&back);
}

typedef struct inputs {
    float *x, *ctx, *cls, *target;     // host
    float *xd, *ctxd, *clsd, *targetd;  // device
    float t[B_TRAIN];                  // host on both devices
    size_t nx, nctx, ncls, nout;
} inputs;

static inputs make_inputs(const unet_config *c) {
    inputs in = {.t = {999.0f, 10.5f, 250.0f}};
    size_t hw = (size_t)c->sample_size * c->sample_size;
    in.nx = (size_t)B_TRAIN * c->in_channels * hw;
    in.nout = (size_t)B_TRAIN * c->out_channels * hw;
    in.nctx = (size_t)B_TRAIN * T_CTX * c->cross_attention_dim;
    in.ncls = (size_t)B_TRAIN * c->class_embed_dim;
    in.x = host_randn(in.nx, 1, 1), in.ctx = host_randn(in.nctx, 2, 1);
    in.cls = host_randn(in.ncls, 3, 1), in.target = host_randn(in.nout, 4, 1);
    in.xd = upload(in.x, in.nx), in.ctxd = upload(in.ctx, in.nctx);
    in.clsd = upload(in.cls, in.ncls), in.targetd = upload(in.target, in.nout);
    return in;
}

static void free_inputs(inputs *in) {
    free(in->x), free(in->ctx), free(in->cls), free(in->target);
    device_free(DEVICE_CUDA, in->xd), device_free(DEVICE_CUDA, in->ctxd);
    device_free(DEVICE_CUDA, in->clsd), device_free(DEVICE_CUDA, in->targetd);
}

static void poison_model(unet *gpu) {
    gpu_poison((float *)gpu->acts.base, gpu->acts.size / sizeof(float));
    if (gpu->params.grads.base)  // unet_zero_grad must then clear every gradient
        gpu_poison((float *)gpu->params.grads.base, gpu->params.grads.size / sizeof(float));
}

// Forward, loss, backward and AdamW on both models; then every comparison.
static void check_train_step(unet *cpu, unet *gpu, const inputs *in) {
    const int B = B_TRAIN;
    EXPECT_TRUE(unet_forward_cond(cpu, in->x, in->t, in->ctx, in->cls, B) == 0);
    EXPECT_TRUE(unet_forward_cond(gpu, in->xd, in->t, in->ctxd, in->clsd, B) == 0);
    compare("forward out", gpu->out, cpu->out, NULL, in->nout, 1);
    double loss_c = mse_loss_forward(cpu->out, in->target, in->nout);
    double loss_g = mse_loss_forward_cuda(gpu->out, in->targetd, in->nout);
    printf("  loss cpu %.6f gpu %.6f\n", loss_c, loss_g);
    EXPECT(fabs(loss_g - loss_c) <= TOL * fabs(loss_c), "%s: loss %g vs %g", g_case, loss_g, loss_c);

    float *dout = malloc(in->nout * sizeof *dout), *doutd = gpu_nan(in->nout);
    mse_loss_backward(dout, cpu->out, in->target, 1.0f, in->nout);
    mse_loss_backward_cuda(doutd, gpu->out, in->targetd, 1.0f, in->nout);
    float *dx = malloc(in->nx * sizeof *dx), *dctx = malloc(in->nctx * sizeof *dctx);
    float *dcls = malloc(in->ncls * sizeof *dcls);
    float *dxd = gpu_nan(in->nx), *dctxd = gpu_nan(in->nctx), *dclsd = gpu_nan(in->ncls);
    unet_zero_grad(cpu);
    unet_zero_grad(gpu);
    unet_backward_cond(cpu, dout, dx, dctx, dcls, B);
    unet_backward_cond(gpu, doutd, dxd, dctxd, dclsd, B);
    compare("dx", dxd, dx, NULL, in->nx, 1);
    compare("dcontext", dctxd, dctx, NULL, in->nctx, 1);
    compare("dclass", dclsd, dcls, NULL, in->ncls, 1);

    const param_table *pc = &cpu->params, *pg = &gpu->params;
    double worst = 0, gmax = 0;
    const char *worst_name = "";
    int ngrads = 0;
    for (int i = 0; i < pc->n; i++) {
        const unet_param *p = &pc->items[i];
        if (!p->grad) continue;
        size_t n = (size_t)tensor_numel(&p->t);
        double e = compare(p->name, pg->items[i].grad, p->grad, NULL, n, 0);
        if (e > worst) worst = e, worst_name = p->name;
        for (size_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(p->grad[k]));
        ngrads++;
    }
    printf("  %d parameter gradients, worst relL2 %.2e (%s)\n", ngrads, worst, worst_name);
    EXPECT(ngrads > 0, "%s: no trainable parameter", g_case);

    // AdamW: the update p_new - p_old of every trainable tensor.
    float *old = malloc(pc->params.size);
    CHECK(old);
    memcpy(old, pc->params.base, pc->params.size);
    size_t ns = unet_adam_state_floats(cpu);
    CHECK(ns == unet_adam_state_floats(gpu));
    float *am = calloc(ns, sizeof *am), *av = calloc(ns, sizeof *av);
    float *amd = gpu_alloc(ns), *avd = gpu_alloc(ns);
    device_memset(DEVICE_CUDA, amd, 0, ns * sizeof(float));
    device_memset(DEVICE_CUDA, avd, 0, ns * sizeof(float));
    adamw_hparams hp = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = gmax, .weight_decay = 1e-2};
    unet_adamw_update(cpu, am, av, &hp, 1);
    unet_adamw_update(gpu, amd, avd, &hp, 1);
    worst = 0;
    for (int i = 0; i < pc->n; i++) {
        const unet_param *p = &pc->items[i];
        if (!p->grad) continue;
        const float *base = old + ((const char *)p->t.data - pc->params.base) / sizeof(float);
        char what[UNET_NAME_MAX + 16];
        snprintf(what, sizeof what, "adamw %s", p->name);
        double e = compare(what, pg->items[i].t.data, p->t.data, base, (size_t)tensor_numel(&p->t), 0);
        worst = e > worst ? e : worst;
    }
    printf("  adamw step: worst relL2 of the updates %.2e\n", worst);
    free(old), free(am), free(av), free(dout), free(dx), free(dctx), free(dcls);
    device_free(DEVICE_CUDA, amd), device_free(DEVICE_CUDA, avd), device_free(DEVICE_CUDA, doutd);
    device_free(DEVICE_CUDA, dxd), device_free(DEVICE_CUDA, dctxd), device_free(DEVICE_CUDA, dclsd);
}

// A frozen model (no gradients) as the samplers use it, from the trained weights, on
// a smaller batch than allocated.
static void check_sampling_forward(const unet *trained, const unet_config *cfg,
                                   const lora_config *lora, const inputs *in) {
    unet cpu, gpu;
    CHECK(unet_build(&cpu, cfg, UNET_FROZEN, lora) == 0);
    CHECK(unet_build_device(&gpu, cfg, UNET_FROZEN, lora, DEVICE_CUDA) == 0);
    EXPECT_TRUE(unet_copy_params(&cpu, trained) == 0);
    EXPECT_TRUE(unet_copy_params(&gpu, trained) == 0);
    EXPECT(gpu.params.grads.base == NULL, "%s: a frozen model has no gradient arena", g_case);
    CHECK(unet_alloc_activations(&cpu, B_TRAIN, T_CTX) == 0);
    CHECK(unet_alloc_activations(&gpu, B_TRAIN, T_CTX) == 0);
    poison_model(&gpu);
    const float t[B_SAMPLE] = {500.0f, 1.0f};
    EXPECT_TRUE(unet_forward_cond(&cpu, in->x, t, in->ctx, in->cls, B_SAMPLE) == 0);
    EXPECT_TRUE(unet_forward_cond(&gpu, in->xd, t, in->ctxd, in->clsd, B_SAMPLE) == 0);
    size_t n = (size_t)B_SAMPLE * cfg->out_channels * cfg->sample_size * cfg->sample_size;
    compare("sampling forward out (frozen, B 2 of 3)", gpu.out, cpu.out, NULL, n, 1);
    unet_free(&cpu);
    unet_free(&gpu);
}

static void run_case(const char *name, int linear_projection, unet_train_mode mode,
                     const lora_config *lora) {
    unet_config cfg = small_config(linear_projection);
    unet cpu, gpu;
    CHECK(unet_build(&cpu, &cfg, mode, lora) == 0);
    if (unet_build_device(&gpu, &cfg, mode, lora, DEVICE_CUDA)) {
        EXPECT(0, "%s: unet_build_device: %s", name, err_msg());
        unet_free(&cpu);
        return;
    }
    EXPECT(gpu.params.params.device == DEVICE_CUDA && gpu.params.grads.device == DEVICE_CUDA,
           "%s: parameters and gradients on the device", name);
    unet_init_random(&cpu, 7);
    perturb(&cpu, 8);
    EXPECT(unet_copy_params(&gpu, &cpu) == 0, "%s: %s", name, err_msg());
    check_round_trip(&gpu, &cpu, &cfg, lora);
    CHECK(unet_alloc_activations(&cpu, B_TRAIN, T_CTX) == 0);
    CHECK(unet_alloc_activations(&gpu, B_TRAIN, T_CTX) == 0);
    EXPECT(gpu.acts.device == DEVICE_CUDA, "%s: activations on the device", name);
    poison_model(&gpu);
    inputs in = make_inputs(&cfg);
    check_train_step(&cpu, &gpu, &in);
    check_sampling_forward(&cpu, &cfg, lora, &in);
    free_inputs(&in);
    unet_free(&cpu);
    unet_free(&gpu);
}

int main(void) {
    if (gpu_check_skip()) return TEST_SKIP;
    printf("%s\n", cuda_device_describe());
    lora_config lora = {.rank = 4, .alpha = 8, .targets = "to_q,to_k,to_v,to_out.0"};
    const int quick = getenv("SELMA_GPU_QUICK") != NULL;
    int impls = conv2d_cuda_have_cudnn() && !quick ? 2 : 1;
    for (int k = 0; k < impls; k++) {
        conv2d_cuda_impl = k ? CONV2D_CUDA_CUDNN : CONV2D_CUDA_IGEMM;
        const char *impl = k ? "cudnn" : "igemm";
        snprintf(g_case, sizeof g_case, "full training, conv1x1 projections, conv %s", impl);
        printf("%s\n", g_case);
        run_case(g_case, 0, UNET_TRAIN_FULL, NULL);
        snprintf(g_case, sizeof g_case, "LoRA rank 4, linear projections, conv %s", impl);
        printf("%s\n", g_case);
        run_case(g_case, 1, UNET_TRAIN_LORA, &lora);
    }
    if (impls == 1)
        printf("(IGEMM convolutions only: %s)\n", quick ? "SELMA_GPU_QUICK" : "no cuDNN in this build");
    return check_report("test_unet_gpu");
}
