// Merging experts and baking adapters into weights: the merge stage, `selma merge`
// (models/lora_merge.h: SELMA's sum of weighted deltas by default, weights 1/N) and
// `selma fold` (an adapter folded into a copy of the base bundle, so the merged model
// costs nothing extra at inference).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/commands.h"
#include "experiments/pipeline.h"
#include "models/bundle.h"
#include "models/lora_fold.h"
#include "models/lora_merge.h"
#include "runtime/error.h"
#include "runtime/log.h"

int merge_files(const char *const *experts, int n, const char *method, int rank, double density,
                const char *out) {
    lora_merge_opts mo = {.rank = rank, .density = density};
    if (lora_merge_method_parse(method, &mo.method)) return -1;
    lora_set *sets = calloc((size_t)n, sizeof *sets), merged;
    CHECK(sets);
    int rc = 0, loaded = 0;
    for (; loaded < n && !rc; loaded++) {
        lora_set_init(&sets[loaded]);
        rc = lora_set_load(&sets[loaded], experts[loaded]);
    }
    if (!rc) rc = lora_merge(sets, n, NULL, &mo, &merged);
    if (!rc) {
        rc = lora_set_save(&merged, out, LORA_FORMAT_PEFT);
        lora_set_free(&merged);
    }
    for (int i = 0; i < loaded; i++) lora_set_free(&sets[i]);
    free(sets);
    if (!rc) log_line("merge: %d experts (%s, default weights) -> %s", n, method, out);
    return rc;
}

static void merge_usage(FILE *f) {
    fprintf(f,
            "usage: selma merge --out MERGED.safetensors [--method M] [--rank K] [--density D] EXPERT...\n"
            "  merges LoRA experts: sum (SELMA, default: the exact sum of deltas with weights\n"
            "  1/N), cat, linear, svd, ties, dare_linear, dare_ties, magnitude_prune\n");
}

int cmd_merge(int argc, char **argv) {
    const char *out = NULL, *method = "sum";
    int rank = 0, n = 0;
    double density = 0;
    const char **experts = malloc(sizeof(char *) * (size_t)argc);
    CHECK(experts);
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { merge_usage(stdout); free(experts); return 0; }
        if (k[0] != '-') { experts[n++] = k; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "selma merge: option '%s' needs a value\n", k);
            free(experts);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--method")) method = v;
        else if (!strcmp(k, "--rank")) rank = atoi(v);
        else if (!strcmp(k, "--density")) density = atof(v);
        else {
            fprintf(stderr, "selma merge: unknown option '%s'\n", k);
            merge_usage(stderr);
            free(experts);
            return 2;
        }
    }
    if (!out || n < 1) {
        merge_usage(stderr);
        free(experts);
        return 2;
    }
    int rc = merge_files(experts, n, method, rank, density, out);
    free(experts);
    if (rc) fprintf(stderr, "selma merge: %s\n", err_msg());
    return rc ? 1 : 0;
}

int cmd_fold(int argc, char **argv) {
    const char *model = NULL, *lora = NULL, *out = NULL;
    float w = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--lora")) lora = argv[i + 1];
        else if (!strcmp(argv[i], "--out")) out = argv[i + 1];
        else if (!strcmp(argv[i], "--weight")) w = (float)atof(argv[i + 1]);
        else model = NULL, i = argc;
    }
    if (!model || !lora || !out) {
        fprintf(stderr, "usage: selma fold --model DIR --lora ADAPTER.safetensors --out DIR [--weight W]\n"
                        "  bakes W * alpha/rank * B A into the base weights and writes a new bundle\n");
        return 2;
    }
    t2i_model m = {0};
    int folded = 0, rc = bundle_load(&m, model, UNET_FROZEN, NULL);
    if (!rc) rc = unet_fold_lora(&m.unet, lora, w, &folded);
    char tj[4400];
    snprintf(tj, sizeof tj, "{\"folded\": {\"base\": \"%s\", \"lora\": \"%s\", \"weight\": %g}}", model, lora, w);
    if (!rc) rc = bundle_save(&m, out, tj);
    t2i_free(&m);
    if (rc) {
        fprintf(stderr, "selma fold: %s\n", err_msg());
        return 1;
    }
    printf("fold: %s + %s (weight %g, %d weights changed) -> %s\n", model, lora, w, folded, out);
    return 0;
}
