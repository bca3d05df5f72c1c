// `selma sample`: images of one prompt from a model bundle, as a labelled PNG grid
// (image i from seed + i, so any tile can be remade alone).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_io.h"
#include "experiments/commands.h"
#include "models/bundle.h"
#include "models/lora_fold.h"
#include "runtime/error.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: selma sample --model DIR --prompt TEXT --out GRID.png [options]\n"
            "  --n N              images (default 8)\n"
            "  --steps N          sampling steps (default 20)\n"
            "  --cfg S            guidance scale (default 3; 1 = no guidance)\n"
            "  --seed K           image i uses seed K + i (default 0)\n"
            "  --sampler NAME     ddim or euler (default ddim)\n"
            "  --scale F          tiles upscaled F times (default 4)\n"
            "  --lora FILE[:W]    fold a LoRA file in with weight W (default 1); repeatable\n"
            "  --device cpu|cuda  where the UNet runs (default cpu; text encoder on the CPU)\n");
}

static int parse_num(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "selma sample: %s: '%s' is not a number in [%g, %g]\n", opt, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_sample(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *out = NULL, *sampler = "ddim", *device = "cpu";
    double n = 8, steps = 20, cfg = 3, seed = 0, scale = 4;
    enum { MAX_LORAS = 8 };
    char *lora[MAX_LORAS];
    float lora_w[MAX_LORAS];
    int n_lora = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); return 0; }
        if (i + 1 >= argc) {
            fprintf(stderr, "selma sample: unknown or incomplete option '%s'\n", k);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--prompt")) prompt = v;
        else if (!strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--sampler")) sampler = v;
        else if (!strcmp(k, "--device")) device = v;
        else if (!strcmp(k, "--n")) bad = parse_num(k, v, 1, 1024, &n);
        else if (!strcmp(k, "--steps")) bad = parse_num(k, v, 1, 1000, &steps);
        else if (!strcmp(k, "--cfg")) bad = parse_num(k, v, 0, 100, &cfg);
        else if (!strcmp(k, "--seed")) bad = parse_num(k, v, 0, 9e15, &seed);
        else if (!strcmp(k, "--scale")) bad = parse_num(k, v, 1, 32, &scale);
        else if (!strcmp(k, "--lora")) {
            if (n_lora == MAX_LORAS) {
                fprintf(stderr, "selma sample: --lora: at most %d files\n", MAX_LORAS);
                return 2;
            }
            lora[n_lora] = argv[i];
            lora_arg_split(lora[n_lora], &lora_w[n_lora]);
            n_lora++;
        }
        else {
            fprintf(stderr, "selma sample: unknown option '%s'\n", k);
            usage(stderr);
            return 2;
        }
        if (bad) return 2;
    }
    if (!model || !prompt || !out) {
        fprintf(stderr, "selma sample: --model, --prompt and --out are required\n");
        usage(stderr);
        return 2;
    }
    sampler_kind kind;
    if (sampler_kind_from_name(sampler, &kind)) {
        fprintf(stderr, "selma sample: --sampler: %s\n", err_msg());
        return 2;
    }
    device_kind dev;
    if (t2i_device_parse(device, "--device", &dev)) {
        fprintf(stderr, "selma sample: %s\n", err_msg());
        return 2;
    }
    t2i_model m;
    if (bundle_load(&m, model, UNET_FROZEN, NULL)) {
        fprintf(stderr, "selma sample: %s\n", err_msg());
        return 1;
    }
    for (int i = 0; i < n_lora; i++)
        if (unet_fold_lora(&m.unet, lora[i], lora_w[i], NULL)) {
            fprintf(stderr, "selma sample: %s\n", err_msg());
            t2i_free(&m);
            return 1;
        }
    if (t2i_unet_to_device(&m, dev)) {  // after the folds, which work on host weights
        fprintf(stderr, "selma sample: %s\n", err_msg());
        t2i_free(&m);
        return 1;
    }
    int N = (int)n, S = m.cfg.image_size;
    sampler_opts o;
    t2i_sampler_opts(&m, kind, (int)steps, cfg, &o);
    uint64_t *seeds = malloc(sizeof(uint64_t) * (size_t)N);
    const char **prompts = malloc(sizeof(char *) * (size_t)N);
    char (*labels)[32] = malloc(sizeof *labels * (size_t)N);
    const char **lp = malloc(sizeof(char *) * (size_t)N);
    uint8_t *rgb = malloc((size_t)N * S * S * 3);
    CHECK(seeds && prompts && labels && lp && rgb);
    for (int i = 0; i < N; i++) {
        seeds[i] = (uint64_t)seed + (uint64_t)i;
        prompts[i] = prompt;
        snprintf(labels[i], sizeof labels[i], "seed %llu", (unsigned long long)seeds[i]);
        lp[i] = labels[i];
    }
    int cols = N < 8 ? N : 8;
    int rc = t2i_sample(&m, &o, prompts, N, seeds, rgb);
    if (!rc) rc = png_write_grid(out, rgb, N, S, S, cols, (int)scale, lp);
    if (rc) fprintf(stderr, "selma sample: %s\n", err_msg());
    else printf("sample: %d images of '%s' (%s, %d steps, guidance %g) -> %s\n", N, prompt, sampler,
                (int)steps, cfg, out);
    free(seeds);
    free(prompts);
    free(labels);
    free(lp);
    free(rgb);
    t2i_free(&m);
    return rc ? 1 : 0;
}
