// Parity with diffusers' UNet2DConditionModel: tools/make_unet_fixture.py wrote the
// weights, inputs, output and some gradients of two tiny models (an SD1-like one
// with 1x1-conv projections, an SD2-like one with Linear projections and two ResNets
// per level). The C model loads the weights by name and must reproduce them.
//
// Tolerance: max |ours - diffusers| / max |diffusers| <= 1e-4 per tensor. Both sides
// compute in float32 with different summation orders; the timestep embedding alone
// differs by up to ~3e-5 at t = 421 (PyTorch forms t * freq in float32,
// kernels/timestep_embedding.h in double).
#include <stdio.h>
#include <string.h>

#include "models/unet.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"
#include "tests/check.h"
#include "tests/parity.h"

#define PARITY_TOL 1e-4

static void compare(const st_file *io, const char *name, const float *ours, size_t n) {
    float *ref = parity_load(io, name, n);
    EXPECT(ref != NULL, "%s", name);
    if (!ref) return;
    double e = parity_diff(ours, ref, n);
    EXPECT(e <= PARITY_TOL, "%s: %s max rel diff %.3g", io->name, name, e);
    printf("  %-70s %.2e\n", name, e);
    free(ref);
}

static void run_case(const char *tag, const unet_config *cfg) {
    char wpath[256], iopath[256];
    snprintf(wpath, sizeof wpath, "tests/fixtures/unet_%s_weights.safetensors", tag);
    snprintf(iopath, sizeof iopath, "tests/fixtures/unet_%s_io.safetensors", tag);
    printf("%s\n", tag);
    const int B = 2, T = 3;
    unet m;
    st_file io;
    int ok = unet_build(&m, cfg, UNET_TRAIN_FULL, NULL) == 0;
    EXPECT(ok, "build: %s", err_msg());
    ok = ok && unet_alloc_activations(&m, B, T) == 0;
    ok = ok && unet_load(&m, wpath, PARAM_BASE) == 0;
    EXPECT(ok, "load: %s", err_msg());
    if (!ok || st_open(iopath, &io)) {
        EXPECT(0, "%s: %s", iopath, err_msg());
        unet_free(&m);
        return;
    }
    int S = cfg->sample_size;
    size_t nx = (size_t)B * cfg->in_channels * S * S, nout = (size_t)B * cfg->out_channels * S * S;
    size_t nc = (size_t)B * T * cfg->cross_attention_dim;
    float *x = parity_load(&io, "x", nx), *t = parity_load(&io, "t", B);
    float *ctx = parity_load(&io, "context", nc), *g = parity_load(&io, "g", nout);
    float *dx = malloc(nx * sizeof *dx), *dctx = malloc(nc * sizeof *dctx);
    size_t ncls = (size_t)B * cfg->class_embed_dim;
    float *cls = ncls ? parity_load(&io, "class_labels", ncls) : NULL;
    float *dcls = ncls ? malloc(ncls * sizeof *dcls) : NULL;
    if (x && t && ctx && g && (!ncls || cls)) {
        EXPECT_TRUE(unet_forward_cond(&m, x, t, ctx, cls, B) == 0);
        compare(&io, "out", m.out, nout);
        unet_zero_grad(&m);
        unet_backward_cond(&m, g, dx, dctx, dcls, B);
        compare(&io, "grad.x", dx, nx);
        compare(&io, "grad.context", dctx, nc);
        if (ncls) compare(&io, "grad.class_labels", dcls, ncls);
        int n_grads = 0;
        for (size_t i = 0; i < io.n_tensors; i++) {
            const char *name = io.tensors[i].name;
            if (strncmp(name, "grad.", 5) || !strcmp(name, "grad.x") || !strcmp(name, "grad.context") ||
                !strcmp(name, "grad.class_labels"))
                continue;
            unet_param *p = ptab_find(&m.params, name + 5);
            EXPECT(p != NULL, "no parameter %s", name + 5);
            if (!p) continue;
            compare(&io, name, p->grad, (size_t)tensor_numel(&p->t));
            n_grads++;
        }
        EXPECT(n_grads >= 4, "%s holds %d parameter gradients", iopath, n_grads);
    }
    free(x), free(t), free(ctx), free(g), free(dx), free(dctx), free(cls), free(dcls);
    st_close(&io);
    unet_free(&m);
}

int main(void) {
    log_set_quiet(1);
    unet_config tiny = unet_config_tiny();
    run_case("tiny", &tiny);
    // tools/make_unet_fixture.py's "tiny2"
    unet_config tiny2 = {.in_channels = 2, .out_channels = 2, .n_levels = 2,
                         .block_out_channels = {4, 8}, .layers_per_block = 2,
                         .cross_attn = {0, 1}, .num_heads = {2, 4}, .cross_attention_dim = 6,
                         .norm_num_groups = 2, .norm_eps = 1e-5f, .use_linear_projection = 1,
                         .flip_sin_to_cos = 1, .freq_shift = 0, .sample_size = 4};
    run_case("tiny2", &tiny2);
    // "tiny3": tiny with class_embed_type "projection" of 5 inputs
    unet_config tiny3 = unet_config_tiny();
    tiny3.class_embed_dim = 5;
    run_case("tiny3", &tiny3);
    return check_report("test_unet_parity");
}
