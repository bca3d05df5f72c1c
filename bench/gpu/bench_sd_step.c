// The Stable Diffusion 1.5 step of issue 8, the selma side (the diffusers + PEFT side is
// sd_step_torch.py, which prints the same lines):
//   train   one LoRA training step at batch 1: unet_forward, the MSE gradient against
//           a random target, unet_backward, unet_adamw_update of the adapters (base
//           frozen: UNET_TRAIN_LORA has no base-weight gradients at all)
//   sample  one sampling step at batch 2 (classifier-free guidance's cond + uncond
//           halves in one call): unet_forward of the same model, adapters attached
//           (the fused LoRA GEMM), no backward
// SD 1.5's UNet (unet_config_sd15: block_out_channels 320/640/1280/1280, 2 layers per
// block, 8 heads per level = head dims 40/80/160, cross_attention_dim 768) on 64x64
// latents (512x512 images) and 77 context tokens, random weights (unet_init_random:
// PyTorch's and PEFT's init), LoRA of rank --rank (default 128, SELMA's; PEFT has no
// default, the user picks r) with alpha = rank on to_q, to_k, to_v, to_out.0. AdamW
// with SELMA's lr 3e-4 and PyTorch's other defaults but weight decay 1e-2.
//
// Timing: 3 warm-up steps, then the median of --repeats steps, each between two CUDA
// events on selma_cuda_stream() (on the CPU: the monotonic clock). The MSE value is
// computed outside the timed steps (mse_loss_forward_cuda synchronizes the stream; the
// gradient needs only the backward). Memory: selma allocates everything up front (one
// arena per kind), so the arenas after a phase are its peak; on CUDA the rise of
// cudaMemGetInfo's used bytes over the empty context is printed beside them (cuBLAS's
// and cuDNN's workspaces included).
//
//   bench_sd_step [--device cuda|cpu] [--config sd15|tiny] [--rank R] [--repeats N]
//                 [--conv igemm|cudnn]
// --config tiny is SD 1.5's layout at a small width (sd_step_torch.py's TINY), for
// checking the plumbing on a machine without a GPU; never time sd15 on the CPU.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kernels/conv2d.h"
#include "kernels/mse.h"
#include "models/unet.h"
#include "runtime/cuda_context.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rng.h"

#define TOKENS 77
#define WARMUPS 3
#define MAX_REPEATS 1000

typedef struct options {
    device_kind dev;
    const char *config;
    int rank, repeats;
    conv2d_cuda_impl_kind conv;
} options;

typedef struct bench {
    options o;
    unet m;
    int S, C, D;                       // latent size, latent channels, context width
    float *x1, *ctx1, *target, *dout;  // batch 1 (train), on o.dev
    float *x2, *ctx2;                  // batch 2 (sample), on o.dev
    float t1[1], t2[2];                // timesteps stay on the host (unet.h)
    float *adam_m, *adam_v;            // unet_adam_state_floats(&m) each, on o.dev
    adamw_hparams hp;
    int step;                          // AdamW's t, 1 on the first update
    double first_loss;
} bench;

// SD 1.5's layout (4 levels, attention at the first three, 2 layers per block, 8 heads,
// 77 tokens) at widths the CPU runs in a second; must equal sd_step_torch.py's TINY.
static unet_config config_tiny_sd_layout(void) {
    unet_config c = unet_config_sd15();
    c.block_out_channels[0] = 32;
    c.block_out_channels[1] = c.block_out_channels[2] = c.block_out_channels[3] = 64;
    c.cross_attention_dim = 32;
    c.norm_num_groups = 8;
    c.sample_size = 16;
    return c;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_sd_step [--device cuda|cpu] [--config sd15|tiny] [--rank R>=1] "
                    "[--repeats 1..%d] [--conv igemm|cudnn]\n", MAX_REPEATS);
    return 2;
}

static int parse(int argc, char **argv, options *o) {
    *o = (options){.dev = DEVICE_CUDA, .config = "sd15", .rank = 128, .repeats = 10,
                   .conv = CONV2D_CUDA_IGEMM};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        i++;
        if (!strcmp(k, "--device") && (!strcmp(v, "cuda") || !strcmp(v, "cpu")))
            o->dev = strcmp(v, "cuda") ? DEVICE_CPU : DEVICE_CUDA;
        else if (!strcmp(k, "--config") && (!strcmp(v, "sd15") || !strcmp(v, "tiny")))
            o->config = v;
        else if (!strcmp(k, "--rank") && atoi(v) >= 1)
            o->rank = atoi(v);
        else if (!strcmp(k, "--repeats") && atoi(v) >= 1 && atoi(v) <= MAX_REPEATS)
            o->repeats = atoi(v);
        else if (!strcmp(k, "--conv") && (!strcmp(v, "igemm") || !strcmp(v, "cudnn")))
            o->conv = strcmp(v, "igemm") ? CONV2D_CUDA_CUDNN : CONV2D_CUDA_IGEMM;
        else
            return usage();
    }
    return 0;
}

// n floats on dev, N(0, 1) from (seed, stream), drawn on the host so that both devices
// get the same inputs.
static float *random_on(device_kind dev, size_t n, uint64_t stream) {
    float *h = malloc(n * sizeof *h), *d = device_alloc(dev, n * sizeof *d);
    CHECK(h && d);
    rng r = rng_make(1, stream);
    for (size_t i = 0; i < n; i++) h[i] = rng_normal(&r);
    device_copy(dev, d, DEVICE_CPU, h, n * sizeof *h);
    free(h);
    return d;
}

static double mse_on(const bench *b, size_t n) {
    return b->o.dev == DEVICE_CUDA ? mse_loss_forward_cuda(b->m.out, b->target, n)
                                   : mse_loss_forward(b->m.out, b->target, n);
}

static void train_step(bench *b) {
    const size_t n = (size_t)b->C * b->S * b->S;
    unet_zero_grad(&b->m);
    CHECK(unet_forward(&b->m, b->x1, b->t1, b->ctx1, 1) == 0);
    if (b->step == 0) b->first_loss = mse_on(b, n);  // a warm-up step: untimed
    if (b->o.dev == DEVICE_CUDA)
        mse_loss_backward_cuda(b->dout, b->m.out, b->target, 1.0f, n);
    else
        mse_loss_backward(b->dout, b->m.out, b->target, 1.0f, n);
    unet_backward(&b->m, b->dout, NULL, NULL, 1);
    unet_adamw_update(&b->m, b->adam_m, b->adam_v, &b->hp, ++b->step);
}

static void sample_step(bench *b) { CHECK(unet_forward(&b->m, b->x2, b->t2, b->ctx2, 2) == 0); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Milliseconds of one step: CUDA events around it on selma's stream, or the host clock.
static double step_ms(bench *b, void (*fn)(bench *)) {
    if (b->o.dev == DEVICE_CPU) {
        double t0 = time_now();
        fn(b);
        return (time_now() - t0) * 1e3;
    }
    cudaStream_t st = (cudaStream_t)selma_cuda_stream();
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDA_CHECK(cudaEventRecord(e0, st));
    fn(b);
    CUDA_CHECK(cudaEventRecord(e1, st));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return ms;
}

static double median_ms(bench *b, void (*fn)(bench *)) {
    double ms[MAX_REPEATS];
    for (int i = 0; i < WARMUPS; i++) step_ms(b, fn);
    for (int i = 0; i < b->o.repeats; i++) ms[i] = step_ms(b, fn);
    qsort(ms, (size_t)b->o.repeats, sizeof *ms, cmp_double);
    int n = b->o.repeats;
    return n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
}

static double used_mib(device_kind dev) {
    if (dev == DEVICE_CPU) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return ru.ru_maxrss / 1024.0;
    }
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return (double)(total_b - free_b) / (1 << 20);
}

static double arenas_mib(const bench *b) {
    size_t adam = 2 * unet_adam_state_floats(&b->m) * sizeof(float);
    return (double)(b->m.params.params.size + b->m.params.grads.size + adam + b->m.acts.size) / (1 << 20);
}

// The model on o.dev with random weights: drawn on the host (unet_init_random is
// CPU-only), copied over for CUDA.
static int build_model(bench *b, const unet_config *cfg, const lora_config *lora) {
    if (unet_build_device(&b->m, cfg, UNET_TRAIN_LORA, lora, b->o.dev)) return -1;
    if (b->o.dev == DEVICE_CPU) {
        unet_init_random(&b->m, 7);
        return 0;
    }
    unet host;
    if (unet_build(&host, cfg, UNET_TRAIN_LORA, lora)) return -1;
    unet_init_random(&host, 7);
    int rc = unet_copy_params(&b->m, &host);
    unet_free(&host);
    return rc;
}

int main(int argc, char **argv) {
    bench b = {0};
    if (parse(argc, argv, &b.o)) return 2;
    if (b.o.dev == DEVICE_CUDA && cuda_device_count() == 0) {
        printf("bench_sd_step: no CUDA device (%s); nothing to time\n", cuda_device_describe());
        return 0;
    }
    const unet_config cfg = strcmp(b.o.config, "sd15") ? config_tiny_sd_layout() : unet_config_sd15();
    lora_config lora = {.rank = b.o.rank, .alpha = (float)b.o.rank};
    snprintf(lora.targets, sizeof lora.targets, "to_q,to_k,to_v,to_out.0");
    b.S = cfg.sample_size, b.C = cfg.in_channels, b.D = cfg.cross_attention_dim;
    b.hp = (adamw_hparams){.lr = 3e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2};
    b.t1[0] = b.t2[0] = b.t2[1] = 417.0f;
    conv2d_cuda_impl = b.o.conv;
    if (b.o.dev == DEVICE_CUDA) {
        if (b.o.conv == CONV2D_CUDA_CUDNN && !conv2d_cuda_have_cudnn()) {
            fprintf(stderr, "bench_sd_step: --conv cudnn, but this build has no cuDNN\n");
            return 2;
        }
        CUDA_CHECK(cudaFree(NULL));  // the context exists before the baseline is read
        selma_cublas_handle();
    }
    const double mem0 = b.o.dev == DEVICE_CUDA ? used_mib(DEVICE_CUDA) : 0;

    if (build_model(&b, &cfg, &lora)) {
        fprintf(stderr, "bench_sd_step: %s\n", err_msg());
        return 1;
    }
    const size_t lat = (size_t)b.C * b.S * b.S, ctx = (size_t)TOKENS * b.D;
    b.x1 = random_on(b.o.dev, lat, 1), b.target = random_on(b.o.dev, lat, 2);
    b.ctx1 = random_on(b.o.dev, ctx, 3);
    b.x2 = random_on(b.o.dev, 2 * lat, 4), b.ctx2 = random_on(b.o.dev, 2 * ctx, 5);
    b.dout = device_alloc(b.o.dev, lat * sizeof(float));
    const size_t na = unet_adam_state_floats(&b.m);
    b.adam_m = device_alloc(b.o.dev, na * sizeof(float)), b.adam_v = device_alloc(b.o.dev, na * sizeof(float));
    CHECK(b.dout && b.adam_m && b.adam_v);
    device_memset(b.o.dev, b.adam_m, 0, na * sizeof(float));
    device_memset(b.o.dev, b.adam_v, 0, na * sizeof(float));

    const int cuda = b.o.dev == DEVICE_CUDA;
    printf("selma: %s; %s\n", cuda ? cuda_device_describe() : "cpu (OpenBLAS threads: OPENBLAS_NUM_THREADS)",
           !cuda ? "float32"
           : b.o.conv == CONV2D_CUDA_IGEMM
               ? "float32 weights and activations; convolutions, attention and the fused LoRA GEMM on bf16 "
                 "tensor cores (float accumulation), linears cuBLAS TF32"
               : "float32 weights and activations; convolutions cuDNN (TF32), attention and the fused LoRA "
                 "GEMM on bf16 tensor cores (float accumulation), linears cuBLAS TF32");
    printf("config: %s, %dx%d latents, %d tokens of %d, block_out_channels %d,%d,%d,%d\n", b.o.config, b.S,
           b.S, TOKENS, b.D, cfg.block_out_channels[0], cfg.block_out_channels[1], cfg.block_out_channels[2],
           cfg.block_out_channels[3]);
    printf("parameters: base %zu (frozen), lora %zu (rank %d, alpha %d, targets %s)\n",
           ptab_count(&b.m.params, PARAM_BASE, 0), ptab_count(&b.m.params, PARAM_LORA, 0), b.o.rank, b.o.rank,
           lora.targets);
    fflush(stdout);  // each result as it comes: a timeout keeps what was measured

    CHECK(unet_alloc_activations(&b.m, 1, TOKENS) == 0);
    const double t_train = median_ms(&b, train_step);
    const double arena_train = arenas_mib(&b), used_train = used_mib(b.o.dev) - mem0;
    printf("train loss: first %.6f, last %.6f\n", b.first_loss, mse_on(&b, lat));
    printf("train step: %.3f ms (batch 1, median of %d after %d warm-ups)\n", t_train, b.o.repeats, WARMUPS);
    fflush(stdout);
    CHECK(unet_alloc_activations(&b.m, 2, TOKENS) == 0);  // frees batch 1's first
    const double t_sample = median_ms(&b, sample_step);
    const double arena_sample = arenas_mib(&b), used_sample = used_mib(b.o.dev) - mem0;
    printf("sample step: %.3f ms (batch 2, median of %d after %d warm-ups)\n", t_sample, b.o.repeats, WARMUPS);
    if (cuda)
        printf("peak memory: train %.1f MiB, sample %.1f MiB (arenas: parameters, gradients, AdamW state, "
               "activations; cudaMemGetInfo over the context: %.1f, %.1f MiB)\n",
               arena_train, arena_sample, used_train, used_sample);
    else
        printf("peak memory: train %.1f MiB, sample %.1f MiB (arenas: parameters, gradients, AdamW state, "
               "activations; peak RSS of the process: %.1f MiB)\n", arena_train, arena_sample, used_sample);

    float *bufs[] = {b.x1, b.ctx1, b.target, b.dout, b.x2, b.ctx2, b.adam_m, b.adam_v};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) device_free(b.o.dev, bufs[i]);
    unet_free(&b.m);
    if (cuda) selma_cuda_context_free();
    return 0;
}
