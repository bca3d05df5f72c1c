// gpu suite: training and sampling with the UNet on CUDA (models/train.h, bundle.h's
// t2i_unet_to_device) against the same run on the CPU. Skipped (77) without a device.
//
// SELMA_GPU_QUICK=1 (check.sh's memcheck pass) runs 4 steps instead of STEPS = 20.
//
//   full mode (text encoder on the host + UNet on the device, pooled text on, warm-up,
//     clip, EMA, caption dropout): STEPS steps from the same weights and seed;
//   LoRA mode (adapters on to_q/k/v/out): the same, base weights must stay bit-identical;
//   a checkpoint written by a CUDA run: the arrays restored on the device equal the saved
//     ones bit for bit, and the resumed run continues as the uninterrupted one did;
//   unet_save of a CUDA model equals the CPU twin's file (staging through the host);
//   DDIM sampling with guidance on a CUDA UNet vs the CPU;
//   data-parallel in one process (gradient accumulation), full and LoRA mode: the batch
//     in 2 shards on CUDA against 1 shard on CUDA and against 2 shards on the CPU.
//     tests/test_train_dp_gpu.c does the same over 2 ranks.
//
// Tolerances. The CUDA UNet runs its convolutions, attention and LoRA GEMMs on bf16
// tensor cores (8-bit mantissa, float accumulation); tests/test_unet_gpu.c finds one
// forward and backward within 2e-2 relative L2. Here errors also compound over steps:
//   TOL_LOSS    5e-2  |loss_gpu - loss_cpu| / loss_cpu at every step (the MSE of an
//                     output within ~1e-2, of nearly independent weights after 20 steps)
//   TOL_WEIGHTS 1e-2  relative L2 of the final weights (they move ~lr per step from the
//                     same start, so this mostly checks that nothing went astray)
//   TOL_UPDATE  0.2   relative L2 of the updates (final - initial): AdamW divides by
//                     sqrt(v), so gradients near zero get sign flips, which the norm
//                     bounds but cannot remove
//   TOL_RESUME  1e-2  losses after a CUDA resume vs the uninterrupted CUDA run (the
//                     arrays are exact; atomicAdd weight gradients vary in the last bits)
//   TOL_SAMPLE  3e-2  relative L2 of images after 5 DDIM steps with guidance 3
// 2 shards against 1 shard, both on CUDA, from the same weights and draws: the shards
// change only the order of float sums (two shard means averaged instead of one mean;
// each shard's weight gradients summed, then the two added), as atomicAdd already does
// between two runs of one shard, so the bounds are those of nondeterministic sums,
// far below the CPU-vs-CUDA ones, and far above 1e-6-level float rounding:
//   TOL_DP_LOSS   1e-3  |loss_2 - loss_1| / loss_1 at every step
//   TOL_DP_NORM   1e-3  the same for the gradient norm before the clip: where a missing
//                       (x2) or doubled (x1/2) average would show, since neither AdamW
//                       nor the clip sees a gradient's scale
//   TOL_DP_UPDATE 5e-2  relative L2 of the updates: AdamW's first steps move each weight
//                       by about +-lr whatever its gradient's size, so a gradient that
//                       sums to nearly zero may flip sign under reordering
// 2 shards on CUDA against 2 shards on the CPU: TOL_LOSS, TOL_WEIGHTS, TOL_UPDATE.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/bundle.h"
#include "models/train.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "tests/gpu_check.h"
#include "tests/tiny_t2i.h"

#define B 4
#define S 16
static int STEPS = 20;  // 4 under SELMA_GPU_QUICK (check.sh's memcheck pass)
#define TOL_LOSS 5e-2
#define TOL_WEIGHTS 1e-2
#define TOL_UPDATE 0.2
#define TOL_RESUME 1e-2
#define TOL_SAMPLE 3e-2
#define TOL_DP_LOSS 1e-3
#define TOL_DP_NORM 1e-3
#define TOL_DP_UPDATE 5e-2

static const char *const captions[B] = {"a red circle", "two blue squares",
                                        "a green triangle left of a yellow circle", "a purple square"};

static void config(t2i_config *c) {
    tiny_t2i_config(c, S);
    c->unet.class_embed_dim = c->te.width;  // the pooled text path, as the shapes bases have it
}

// A smooth-ish batch in [-1, 1]: the same on every call.
static void batch(float *x) {
    rng_fill_uniform(x, (size_t)B * 3 * S * S, 1234, 0, 0, -1, 1);
}

// Builds the model on the CPU from one seed and moves its UNet to dev.
static void build(t2i_model *m, unet_train_mode mode, const lora_config *l, device_kind dev) {
    memset(m, 0, sizeof *m);
    config(&m->cfg);
    CHECK(t2i_build(m, mode, l) == 0);
    t2i_init_random(m, 7);
    if (t2i_unet_to_device(m, dev)) {  // a CPU model left in its place would compare equal
        fprintf(stderr, "t2i_unet_to_device: %s\n", err_msg());
        exit(1);
    }
}

static train_hparams hparams(int lora) {
    train_hparams hp = {.adam = {.lr = lora ? 3e-3 : 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                 .weight_decay = 0.01},
                        .warmup_steps = 5, .decay_steps = lora ? 0 : 40, .grad_clip = 1.0,
                        .ema_decay = 0.9, .ema_warmup = 1, .caption_dropout = 0.25,
                        .text_lr_scale = 0.1};
    return hp;
}

// Every parameter of kind `kind` of a model on any device, flat on the host in table
// order (through a CPU twin for a CUDA model).
static float *host_params(const unet *u, param_kind kind, size_t *n) {
    unet twin;
    const unet *src = u;
    if (u->params.params.device != DEVICE_CPU) {
        lora_config l = u->params.lora;
        CHECK(unet_build(&twin, &u->cfg, UNET_FROZEN, l.rank > 0 ? &l : NULL) == 0);
        CHECK(unet_copy_params(&twin, u) == 0);
        src = &twin;
    }
    size_t total = 0;
    for (int i = 0; i < src->params.n; i++)
        if (src->params.items[i].kind == kind) total += (size_t)tensor_numel(&src->params.items[i].t);
    float *out = malloc((total ? total : 1) * sizeof(float)), *p = out;
    CHECK(out);
    for (int i = 0; i < src->params.n; i++) {
        const unet_param *q = &src->params.items[i];
        if (q->kind != kind) continue;
        memcpy(p, q->t.data, (size_t)tensor_numel(&q->t) * sizeof(float));
        p += tensor_numel(&q->t);
    }
    if (src != u) unet_free(&twin);
    *n = total;
    return out;
}

// STEPS steps on CPU and CUDA from the same weights; losses, weights and updates compared.
static void check_training(unet_train_mode mode, const char *what) {
    int lora = mode == UNET_TRAIN_LORA;
    lora_config lc = {.rank = 4, .alpha = 4, .targets = "to_q,to_k,to_v,to_out.0"};
    t2i_model mc, mg;
    build(&mc, mode, lora ? &lc : NULL, DEVICE_CPU);
    build(&mg, mode, lora ? &lc : NULL, DEVICE_CUDA);
    train_hparams hp = hparams(lora);
    trainer tc, tg;
    CHECK(trainer_init(&tc, &mc, &hp, B, 11) == 0);
    if (trainer_init(&tg, &mg, &hp, B, 11)) {
        fprintf(stderr, "trainer_init on cuda: %s\n", err_msg());
        exit(1);
    }
    if (lora) trainer_init_lora(&tc, 5), trainer_init_lora(&tg, 5);
    param_kind kind = lora ? PARAM_LORA : PARAM_BASE;
    size_t n, n2, nb;
    float *w0 = host_params(&mc.unet, kind, &n), *base0 = lora ? host_params(&mc.unet, PARAM_BASE, &nb) : NULL;
    float *w0g = host_params(&mg.unet, kind, &n2);
    EXPECT(n == n2 && memcmp(w0, w0g, n * sizeof(float)) == 0, "%s: CPU and CUDA start from different weights", what);
    size_t nte = mc.te.params_arena.size / sizeof(float);
    float *te0 = malloc(nte * sizeof(float) + 1);
    CHECK(te0);
    memcpy(te0, mc.te.params_arena.base, nte * sizeof(float));
    float x[B * 3 * S * S];
    batch(x);
    double worst = 0;
    for (int s = 0; s < STEPS; s++) {
        double lc_, lg, gc, gg;
        int rc = trainer_step(&tc, x, captions, &lc_, &gc), rg = trainer_step(&tg, x, captions, &lg, &gg);
        EXPECT(rc == 0 && rg == 0, "%s step %d: cpu %d, cuda %d (%s)", what, s + 1, rc, rg, err_msg());
        double rel = fabs(lg - lc_) / lc_;
        worst = fmax(worst, rel);
        printf("  %s step %2d: loss cpu %.6f cuda %.6f (rel %.2e), grad norm cpu %.4f cuda %.4f\n", what, s + 1,
               lc_, lg, rel, gc, gg);
        EXPECT(rel <= TOL_LOSS, "%s step %d: loss %.6f on cuda, %.6f on cpu", what, s + 1, lg, lc_);
    }
    float *wc = host_params(&mc.unet, kind, &n), *wg = host_params(&mg.unet, kind, &n2);
    double rw = rel_l2_base(wg, wc, NULL, n), ru = rel_l2_base(wg, wc, w0, n);
    printf("  %s: worst loss rel %.2e; UNet %s weights rel L2 %.2e, updates rel L2 %.2e (%zu floats)\n", what,
           worst, lora ? "adapter" : "base", rw, ru, n);
    EXPECT(rw <= TOL_WEIGHTS, "%s: final weights rel L2 %.3e", what, rw);
    EXPECT(ru <= TOL_UPDATE, "%s: updates rel L2 %.3e", what, ru);
    if (lora) {  // the frozen base stays exactly as it was on both devices
        size_t nbg;
        float *bg = host_params(&mg.unet, PARAM_BASE, &nbg);
        EXPECT(nbg == nb && memcmp(bg, base0, nb * sizeof(float)) == 0, "%s: base weights moved on cuda", what);
        free(bg);
    } else {
        double rt = rel_l2_base((const float *)mg.te.params_arena.base, (const float *)mc.te.params_arena.base, te0, nte);
        printf("  %s: text encoder (host, fed by the device's dcontext) updates rel L2 %.2e\n", what, rt);
        EXPECT(rt <= TOL_UPDATE, "%s: text encoder updates rel L2 %.3e", what, rt);
    }
    // EMA on the device: swapped in, the model holds the shadow; swapped back, the weights.
    trainer_swap_ema(&tc), trainer_swap_ema(&tg);
    float *ec = host_params(&mc.unet, kind, &n), *eg = host_params(&mg.unet, kind, &n2);
    double re = rel_l2_base(eg, ec, w0, n);
    printf("  %s: EMA updates rel L2 %.2e\n", what, re);
    EXPECT(re <= TOL_UPDATE, "%s: EMA rel L2 %.3e", what, re);
    trainer_swap_ema(&tc), trainer_swap_ema(&tg);
    float *back = host_params(&mg.unet, kind, &n2);
    EXPECT(memcmp(back, wg, n * sizeof(float)) == 0, "%s: EMA swapped twice is not the identity on cuda", what);
    free(w0), free(w0g), free(base0), free(te0), free(wc), free(wg), free(ec), free(eg), free(back);
    trainer_free(&tc), trainer_free(&tg);
    t2i_free(&mc), t2i_free(&mg);
}

// The device arrays of a trainer's group 0 as host copies, in state order.
static float *group0(const trainer *tr) {
    size_t n = tr->n[0];
    float *h = malloc(4 * n * sizeof(float));
    CHECK(h);
    const float *src[4] = {tr->param[0], tr->adam_m[0], tr->adam_v[0], tr->ema[0].shadow};
    for (int k = 0; k < 4; k++) device_copy(DEVICE_CPU, h + k * n, tr->dev, src[k], n * sizeof(float));
    return h;
}

static void check_resume(unet_train_mode mode, const char *what) {
    int lora = mode == UNET_TRAIN_LORA;
    lora_config lc = {.rank = 4, .alpha = 4, .targets = "to_q,to_k,to_v,to_out.0"};
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/selma_train_gpu_XXXXXX");
    CHECK(mkdtemp(dir));
    train_hparams hp = hparams(lora);
    float x[B * 3 * S * S];
    batch(x);
    t2i_model m;
    trainer tr;
    build(&m, mode, lora ? &lc : NULL, DEVICE_CUDA);
    CHECK(trainer_init(&tr, &m, &hp, B, 3) == 0);
    if (lora) trainer_init_lora(&tr, 5);
    for (int s = 0; s < 8; s++) CHECK(trainer_step(&tr, x, captions, NULL, NULL) == 0);
    EXPECT(trainer_save(&tr, dir, 42, 0) == 0, "%s: trainer_save on cuda: %s", what, err_msg());
    float *saved = group0(&tr);
    double cont[6];
    for (int s = 0; s < 6; s++) CHECK(trainer_step(&tr, x, captions, &cont[s], NULL) == 0);

    t2i_model m2;
    trainer t2;
    build(&m2, mode, lora ? &lc : NULL, DEVICE_CUDA);
    CHECK(trainer_init(&t2, &m2, &hp, B, 3) == 0);
    char ck[128];
    snprintf(ck, sizeof ck, "%s/step_000008", dir);
    long pos = 0;
    EXPECT(trainer_load(&t2, ck, &pos) == 0, "%s: trainer_load on cuda: %s", what, err_msg());
    float *restored = group0(&t2);
    EXPECT(pos == 42 && t2.step == 8 && memcmp(saved, restored, 4 * t2.n[0] * sizeof(float)) == 0,
           "%s: the restored device arrays differ from the saved ones (pos %ld, step %ld)", what, pos, t2.step);
    for (int s = 0; s < 6; s++) {
        double l;
        CHECK(trainer_step(&t2, x, captions, &l, NULL) == 0);
        double rel = fabs(l - cont[s]) / cont[s];
        printf("  %s resumed step %d: loss %.6f, uninterrupted %.6f (rel %.2e)\n", what, 9 + s, l, cont[s], rel);
        EXPECT(rel <= TOL_RESUME, "%s: resumed step %d loss %.6f vs %.6f", what, 9 + s, l, cont[s]);
    }
    // unet_save of the CUDA model (through its host twin) equals a CPU copy's file.
    char f1[128], f2[128];
    snprintf(f1, sizeof f1, "%s/cuda.safetensors", dir);
    snprintf(f2, sizeof f2, "%s/cpu.safetensors", dir);
    param_kind kind = lora ? PARAM_LORA : PARAM_BASE;
    unet twin;
    lora_config l = m2.unet.params.lora;
    CHECK(unet_build(&twin, &m2.unet.cfg, UNET_FROZEN, l.rank > 0 ? &l : NULL) == 0);
    CHECK(unet_copy_params(&twin, &m2.unet) == 0);
    EXPECT(unet_save(&m2.unet, f1, kind) == 0 && unet_save(&twin, f2, kind) == 0, "unet_save: %s", err_msg());
    char *a, *b;
    size_t na, nb;
    CHECK(file_read_all(f1, &a, &na) == 0 && file_read_all(f2, &b, &nb) == 0);
    EXPECT(na == nb && memcmp(a, b, na) == 0, "%s: unet_save of the CUDA model differs from its CPU twin's", what);
    // ... and unet_load into the CUDA model brings the same weights back.
    EXPECT(unet_load(&m.unet, f1, kind) == 0, "unet_load into a CUDA model: %s", err_msg());
    size_t n1, n2;
    float *p1 = host_params(&m.unet, kind, &n1), *p2 = host_params(&twin, kind, &n2);
    EXPECT(n1 == n2 && memcmp(p1, p2, n1 * sizeof(float)) == 0, "%s: unet_load on cuda", what);
    free(a), free(b), free(p1), free(p2), free(saved), free(restored);
    unet_free(&twin);
    trainer_free(&tr), trainer_free(&t2);
    t2i_free(&m), t2i_free(&m2);
    CHECK(dir_remove_tree(dir) == 0);
}

static void check_sampling(void) {
    t2i_model mc, mg;
    build(&mc, UNET_FROZEN, NULL, DEVICE_CPU);
    build(&mg, UNET_FROZEN, NULL, DEVICE_CUDA);
    sampler_opts o;
    t2i_sampler_opts(&mc, SAMPLER_DDIM, 5, 3.0, &o);
    const char *prompts[3] = {"a red circle", "two blue squares", "a green triangle"};
    uint64_t seeds[3] = {1, 2, 3};
    size_t n = (size_t)3 * 3 * S * S;
    float *ic = malloc(n * sizeof(float)), *ig = malloc(n * sizeof(float));
    CHECK(ic && ig);
    EXPECT(t2i_sample_float(&mc, &o, prompts, 3, seeds, NULL, ic) == 0, "%s", err_msg());
    EXPECT(t2i_sample_float(&mg, &o, prompts, 3, seeds, NULL, ig) == 0, "sampling on cuda: %s", err_msg());
    double r = rel_l2_base(ig, ic, NULL, n);
    printf("  DDIM 5 steps, guidance 3, 3 images: rel L2 cuda vs cpu %.2e\n", r);
    EXPECT(r <= TOL_SAMPLE, "sampling: rel L2 %.3e", r);
    free(ic), free(ig);
    t2i_free(&mc), t2i_free(&mg);
}

// A host copy of the text encoder's parameters (full mode).
static float *te_params(const t2i_model *m, size_t *n) {
    *n = m->te.params_arena.size / sizeof(float);
    float *p = malloc(*n * sizeof(float) + 1);
    CHECK(p);
    memcpy(p, m->te.params_arena.base, *n * sizeof(float));
    return p;
}

// Gradient accumulation on one GPU: the batch of B in 2 shards of B / 2, run in turn,
// their gradients summed on the device (TOL_DP_* above).
static void check_shards(unet_train_mode mode, const char *what) {
    int lora = mode == UNET_TRAIN_LORA, steps = STEPS < 6 ? STEPS : 6;
    lora_config lc = {.rank = 4, .alpha = 4, .targets = "to_q,to_k,to_v,to_out.0"};
    t2i_model mc, m1, m2;  // CPU 2 shards, CUDA 1 shard, CUDA 2 shards
    build(&mc, mode, lora ? &lc : NULL, DEVICE_CPU);
    build(&m1, mode, lora ? &lc : NULL, DEVICE_CUDA);
    build(&m2, mode, lora ? &lc : NULL, DEVICE_CUDA);
    train_hparams h1 = hparams(lora), h2 = h1;
    h2.shards = 2;
    trainer tc, t1, t2;
    CHECK(trainer_init(&tc, &mc, &h2, B, 11) == 0 && trainer_init(&t1, &m1, &h1, B, 11) == 0);
    if (trainer_init(&t2, &m2, &h2, B, 11)) {
        fprintf(stderr, "trainer_init, 2 shards on cuda: %s\n", err_msg());
        exit(1);
    }
    EXPECT(t2.shards == 2 && t2.Bs == B / 2 && t2.n_local == 2 && t2.gacc[0], "%s: 2 shards on cuda not set up", what);
    if (lora) trainer_init_lora(&tc, 5), trainer_init_lora(&t1, 5), trainer_init_lora(&t2, 5);
    param_kind kind = lora ? PARAM_LORA : PARAM_BASE;
    size_t n, n1, n2, nte;
    float *w0 = host_params(&mc.unet, kind, &n), *te0 = te_params(&mc, &nte);
    float x[B * 3 * S * S];
    batch(x);
    for (int s = 0; s < steps; s++) {
        double lc_, l1, l2, gc, g1, g2;
        int rc = trainer_step(&tc, x, captions, &lc_, &gc), r1 = trainer_step(&t1, x, captions, &l1, &g1),
            r2 = trainer_step(&t2, x, captions, &l2, &g2);
        EXPECT(rc == 0 && r1 == 0 && r2 == 0, "%s step %d: cpu %d, cuda %d, cuda 2 shards %d (%s)", what, s + 1,
               rc, r1, r2, err_msg());
        double rl = fabs(l2 - l1) / l1, rg = fabs(g2 - g1) / g1, rlc = fabs(l2 - lc_) / lc_;
        printf("  %s 2 shards step %d: loss cuda %.6f (1 shard %.6f, rel %.2e; cpu %.6f, rel %.2e), "
               "grad norm %.5f (1 shard %.5f, rel %.2e; cpu %.5f)\n",
               what, s + 1, l2, l1, rl, lc_, rlc, g2, g1, rg, gc);
        EXPECT(rl <= TOL_DP_LOSS, "%s step %d: loss %.6f with 2 shards, %.6f with 1", what, s + 1, l2, l1);
        EXPECT(rg <= TOL_DP_NORM, "%s step %d: grad norm %.6f with 2 shards, %.6f with 1", what, s + 1, g2, g1);
        EXPECT(rlc <= TOL_LOSS, "%s step %d: loss %.6f on cuda, %.6f on cpu (2 shards)", what, s + 1, l2, lc_);
    }
    float *wc = host_params(&mc.unet, kind, &n), *w1 = host_params(&m1.unet, kind, &n1),
          *w2 = host_params(&m2.unet, kind, &n2);
    CHECK(n1 == n && n2 == n);
    double u21 = rel_l2_base(w2, w1, w0, n), u2c = rel_l2_base(w2, wc, w0, n), w2c = rel_l2_base(w2, wc, NULL, n);
    printf("  %s 2 shards: UNet updates rel L2 %.2e vs 1 shard; vs cpu: weights %.2e, updates %.2e\n", what, u21,
           w2c, u2c);
    EXPECT(u21 <= TOL_DP_UPDATE, "%s: 2 vs 1 shard, updates rel L2 %.3e", what, u21);
    EXPECT(w2c <= TOL_WEIGHTS, "%s: 2 shards, cuda vs cpu weights rel L2 %.3e", what, w2c);
    EXPECT(u2c <= TOL_UPDATE, "%s: 2 shards, cuda vs cpu updates rel L2 %.3e", what, u2c);
    if (!lora) {  // the text encoder's gradient is summed over the shards on the host
        size_t m;
        float *tc_ = te_params(&mc, &m), *t1_ = te_params(&m1, &m), *t2_ = te_params(&m2, &m);
        double v21 = rel_l2_base(t2_, t1_, te0, nte), v2c = rel_l2_base(t2_, tc_, te0, nte);
        printf("  %s 2 shards: text encoder updates rel L2 %.2e vs 1 shard, %.2e vs cpu\n", what, v21, v2c);
        EXPECT(v21 <= TOL_DP_UPDATE, "%s: text encoder, 2 vs 1 shard, updates rel L2 %.3e", what, v21);
        EXPECT(v2c <= TOL_UPDATE, "%s: text encoder, 2 shards, cuda vs cpu updates rel L2 %.3e", what, v2c);
        free(tc_), free(t1_), free(t2_);
    }
    free(w0), free(te0), free(wc), free(w1), free(w2);
    trainer_free(&tc), trainer_free(&t1), trainer_free(&t2);
    t2i_free(&mc), t2i_free(&m1), t2i_free(&m2);
}

int main(void) {
    if (gpu_check_skip()) return TEST_SKIP;
    log_set_quiet(1);
    printf("%s\n", cuda_device_describe());
    const char *quick = getenv("SELMA_GPU_QUICK");
    if (quick && *quick) STEPS = 4;
    check_training(UNET_TRAIN_FULL, "full");
    check_training(UNET_TRAIN_LORA, "lora");
    check_resume(UNET_TRAIN_FULL, "full");
    check_resume(UNET_TRAIN_LORA, "lora");
    check_sampling();
    check_shards(UNET_TRAIN_FULL, "full");
    check_shards(UNET_TRAIN_LORA, "lora");
    return check_report("test_train_gpu");
}
