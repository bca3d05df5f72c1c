// `selma generate`: the model draws an image for every prompt of a file (SELMA's
// self-generated data), written in batches as a dataset (data/dataset.h) that `selma
// eval` scores and `selma train` learns from. Image i is drawn from seed + i alone, so
// any image can be remade without the others. LoRA experts are folded into the base
// weights first (W += weight * alpha/rank * B A).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/shapes.h"
#include "experiments/commands.h"
#include "models/bundle.h"
#include "models/lora_fold.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"

#define MAX_LORAS 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: selma generate --model DIR --prompts FILE --out FILE.h5 [options]\n"
            "  --prompts FILE        .txt (one prompt a line) or .h5 (/prompt, maybe /skill)\n"
            "  --lora FILE[:W]       fold a LoRA file in with weight W (default 1); repeatable\n"
            "  --skill NAME          the skill recorded for every item (count, spatial, ...)\n"
            "  --steps N             sampling steps (default 20)\n"
            "  --cfg S               guidance scale (default 3)\n"
            "  --seed K              image i uses seed K + i (default 0)\n"
            "  --sampler NAME        ddim or euler (default ddim)\n"
            "  --batch B             images drawn at once (default 16)\n"
            "  --device cpu|cuda     where the UNet runs (default cpu; text encoder on the CPU)\n");
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

// Prompts (and skills, SKILL_UNKNOWN where the file has none) from a .txt or .h5 file.
static int read_prompts(const char *path, char ***prompts, int **skills, int *n) {
    if (ends_with(path, ".h5") || ends_with(path, ".hdf5")) {
        dataset d;
        if (dataset_read(path, &d)) return -1;
        *n = d.n, *prompts = d.prompt, *skills = d.skill;
        d.prompt = NULL, d.skill = NULL, d.n = 0;
        dataset_free(&d);
        return 0;
    }
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len)) return -1;
    int cap = 64, k = 0;
    *prompts = malloc(sizeof(char *) * (size_t)cap);
    CHECK(*prompts);
    for (char *line = strtok(text, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        while (*line == ' ' || *line == '\t') line++;
        size_t l = strlen(line);
        while (l && (line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
        if (!l) continue;
        if (k == cap) *prompts = realloc(*prompts, sizeof(char *) * (size_t)(cap *= 2));
        CHECK(*prompts);
        (*prompts)[k] = strdup(line);
        CHECK((*prompts)[k]);
        k++;
    }
    free(text);
    *n = k;
    *skills = malloc(sizeof(int) * (size_t)(k ? k : 1));
    CHECK(*skills);
    for (int i = 0; i < k; i++) (*skills)[i] = SKILL_UNKNOWN;
    return 0;
}

typedef struct gen_opts {
    const char *model, *prompts, *out, *sampler;
    const char *lora[MAX_LORAS];
    float lora_w[MAX_LORAS];
    int n_lora, skill, steps, batch;
    device_kind device;
    double cfg;
    unsigned long long seed;
} gen_opts;

// "FILE" or "FILE:W" (the weight is the part after the last colon when it is a number).
static int parse_lora(char *arg, gen_opts *g) {
    if (g->n_lora == MAX_LORAS) return err_set("--lora: at most %d files", MAX_LORAS);
    float w;
    lora_arg_split(arg, &w);
    g->lora[g->n_lora] = arg, g->lora_w[g->n_lora++] = w;
    return 0;
}

static int generate(const gen_opts *g) {
    char **prompts = NULL;
    int *skills = NULL, n = 0;
    if (read_prompts(g->prompts, &prompts, &skills, &n)) return -1;
    int rc = n ? 0 : err_set("%s: holds no prompts", g->prompts);
    t2i_model m = {0};
    if (!rc) rc = bundle_load(&m, g->model, UNET_FROZEN, NULL);
    // The generator's name and hash cover the base weights and each folded expert.
    char name[128], hash[24], path[4200];
    uint64_t h = 1469598103934665603ull;
    int bl = (int)strlen(g->model);
    while (bl > 1 && g->model[bl - 1] == '/') bl--;
    snprintf(name, sizeof name, "%.*s", bl, g->model);
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", g->model);
    if (!rc) rc = file_fnv1a(path, &h);
    snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", g->model);
    if (!rc) rc = file_fnv1a(path, &h);
    for (int i = 0; i < g->n_lora && !rc; i++) {
        int folded;
        rc = unet_fold_lora(&m.unet, g->lora[i], g->lora_w[i], &folded);
        if (!rc) rc = file_fnv1a(g->lora[i], &h);
        for (size_t b = 0; b < sizeof(float) && !rc; b++) h = (h ^ ((const unsigned char *)&g->lora_w[i])[b]) * 1099511628211ull;
        if (!rc) {
            const char *ln = strrchr(g->lora[i], '/');
            size_t used = strlen(name);
            snprintf(name + used, sizeof name - used, "+%s:%g", ln ? ln + 1 : g->lora[i], g->lora_w[i]);
            log_line("generate: folded %s (weight %g) into %d weights", g->lora[i], g->lora_w[i], folded);
        }
    }
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)h);
    if (!rc) rc = t2i_unet_to_device(&m, g->device);  // after the folds, which work on host weights
    sampler_kind kind = SAMPLER_DDIM;
    if (!rc) rc = sampler_kind_from_name(g->sampler, &kind);
    sampler_opts o;
    int S = m.cfg.image_size;
    dataset meta = {0};
    dataset_writer w;
    if (!rc) {
        t2i_sampler_opts(&m, kind, g->steps, g->cfg, &o);
        meta.height = meta.width = S, meta.steps = g->steps, meta.guidance_scale = (float)g->cfg;
        snprintf(meta.generator, sizeof meta.generator, "%s", name);
        snprintf(meta.generator_hash, sizeof meta.generator_hash, "%s", hash);
        snprintf(meta.sampler, sizeof meta.sampler, "%s", g->sampler);
        snprintf(meta.world, sizeof meta.world, "%s", m.cfg.world);
        rc = dataset_writer_open(&w, g->out, &meta);
    }
    uint64_t *seeds = malloc(sizeof(uint64_t) * (size_t)g->batch);
    CHECK(seeds);
    progress p;
    if (!rc) progress_begin(&p, "generate", 0, n);
    for (int i0 = 0; i0 < n && !rc; i0 += g->batch) {
        int nb = n - i0 < g->batch ? n - i0 : g->batch;
        dataset d;
        if ((rc = dataset_alloc(&d, nb, S, S))) break;
        for (int b = 0; b < nb; b++) {
            seeds[b] = g->seed + (uint64_t)(i0 + b);
            d.seed[b] = seeds[b];
            d.skill[b] = g->skill >= 0 ? g->skill : skills[i0 + b];
            d.prompt[b] = strdup(prompts[i0 + b] ? prompts[i0 + b] : "");
            CHECK(d.prompt[b]);
        }
        rc = t2i_sample(&m, &o, (const char *const *)prompts + i0, nb, seeds, d.image);
        if (!rc) rc = dataset_writer_append(&w, &d);
        dataset_free(&d);
        progress_update(&p, i0 + nb, NAN);
    }
    if (!rc) progress_end(&p);
    if (meta.height) {
        if (!rc) rc = dataset_writer_close(&w);
        else dataset_writer_abort(&w);
    }
    if (!rc) printf("generate: %d images from %s (%s) -> %s\n", n, name, hash, g->out);
    free(seeds);
    for (int i = 0; i < n; i++) free(prompts[i]);
    free(prompts);
    free(skills);
    t2i_free(&m);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_opts g = {.sampler = "ddim", .skill = -1, .steps = 20, .batch = 16, .cfg = 3};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); return 0; }
        if (i + 1 >= argc) {
            fprintf(stderr, "selma generate: unknown or incomplete option '%s'\n", k);
            usage(stderr);
            return 2;
        }
        char *v = argv[++i], *end;
        long x = 0;
        int bad = 0;
        if (!strcmp(k, "--model")) g.model = v;
        else if (!strcmp(k, "--prompts")) g.prompts = v;
        else if (!strcmp(k, "--out")) g.out = v;
        else if (!strcmp(k, "--sampler")) g.sampler = v;
        else if (!strcmp(k, "--device")) bad = t2i_device_parse(v, "--device", &g.device);
        else if (!strcmp(k, "--lora")) bad = parse_lora(v, &g);
        else if (!strcmp(k, "--cfg")) g.cfg = strtod(v, &end), bad = !*v || *end || !(g.cfg >= 0 && g.cfg <= 100);
        else if (!strcmp(k, "--seed")) g.seed = strtoull(v, &end, 10), bad = !*v || *end;
        else if (!strcmp(k, "--skill")) {
            g.skill = -1;
            for (int s = 0; s < SKILL_KINDS; s++)
                if (!strcmp(v, skill_names[s])) g.skill = s;
            bad = g.skill < 0;
        } else if (!strcmp(k, "--steps") || !strcmp(k, "--batch")) {
            x = strtol(v, &end, 10);
            bad = !*v || *end || x < 1 || x > 4096;
            *(!strcmp(k, "--steps") ? &g.steps : &g.batch) = (int)x;
        } else {
            fprintf(stderr, "selma generate: unknown option '%s'\n", k);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "selma generate: %s: bad value '%s'%s%s\n", k, v, err_msg()[0] ? ": " : "", err_msg());
            return 2;
        }
    }
    if (!g.model || !g.prompts || !g.out) {
        fprintf(stderr, "selma generate: --model, --prompts and --out are required\n");
        usage(stderr);
        return 2;
    }
    if (generate(&g)) {
        fprintf(stderr, "selma generate: %s\n", err_msg());
        return 1;
    }
    return 0;
}
