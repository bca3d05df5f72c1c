// `selma prompts`: prompts of one skill, generated from its seeds and filtered for
// diversity (data/prompt_gen.h), one per line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/prompt_gen.h"
#include "experiments/commands.h"
#include "experiments/prompt_opts.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

static void prompts_usage(FILE *f) {
    fprintf(f,
            "usage: selma prompts --skill S --n N --seed K --out FILE.txt [options]\n"
            "  --skill S            count, spatial, binding, dense, style, or pretrain (incomplete\n"
            "                       captions of random scenes; not filtered)\n"
            "  --n N                prompts to write\n"
            "  --seed K             random seed (default 0)\n"
            "  --out FILE           one prompt per line, written atomically\n"
            "  --threshold T        ROUGE-L F above which a prompt is rejected (default 0.8)\n"
            "  --max-rejects M      give up after M rejections in a row (default 2000)\n"
            "  --generator-cmd CMD  external generator: gets 3 examples on stdin, one per line,\n"
            "                       prints prompts on stdout, one per line (run by /bin/sh)\n"
            "  --timeout S          seconds per call of the command (default 60)\n");
}

// Parses "--key value" options shared by the prompt-making commands. Returns 1 if
// argv[*i] was one of them, 0 if not, -1 on a bad value (message printed).
int prompt_option(const char *cmd, int argc, char **argv, int *i, int *skill, long *n,
                  uint64_t *seed, prompt_gen_opts *o) {
    const char *k = argv[*i];
    int known = !strcmp(k, "--skill") || !strcmp(k, "--n") || !strcmp(k, "--seed") ||
                !strcmp(k, "--threshold") || !strcmp(k, "--max-rejects") ||
                !strcmp(k, "--generator-cmd") || !strcmp(k, "--timeout");
    if (!known) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "selma %s: %s needs a value\n", cmd, k);
        return -1;
    }
    const char *v = argv[++*i];
    char *end;
    if (!strcmp(k, "--skill")) {
        *skill = !strcmp(v, "all") ? -1 : skill_from_name(v);
        if (*skill == SKILL_UNKNOWN || (*skill < 0 && strcmp(v, "all"))) {
            fprintf(stderr, "selma %s: --skill: unknown skill '%s'\n", cmd, v);
            return -1;
        }
        return 1;
    }
    if (!strcmp(k, "--generator-cmd")) {
        o->command = v;
        return 1;
    }
    if (!strcmp(k, "--threshold")) {
        o->threshold = strtod(v, &end);
        if (*end || !(o->threshold >= 0 && o->threshold <= 1)) {
            fprintf(stderr, "selma %s: --threshold: '%s' is not a number in [0, 1]\n", cmd, v);
            return -1;
        }
        return 1;
    }
    long long x = strtoll(v, &end, 10);
    long long lo = !strcmp(k, "--seed") || !strcmp(k, "--n") ? 0 : 1;
    if (*end || !*v || x < lo || (strcmp(k, "--seed") && x > 100000000)) {
        fprintf(stderr, "selma %s: %s: '%s' is not a valid count\n", cmd, k, v);
        return -1;
    }
    if (!strcmp(k, "--n")) *n = (long)x;
    else if (!strcmp(k, "--seed")) *seed = (uint64_t)x;
    else if (!strcmp(k, "--max-rejects")) o->max_rejects = (int)x;
    else o->command_timeout_s = (int)x;
    return 1;
}

void prompt_stats_print(const char *cmd, int skill, const prompt_gen_stats *st, int kept,
                        const prompt_gen_opts *o) {
    printf("%s: %s: kept %d of %ld candidates; rejected %ld as too similar (ROUGE-L > %.2f), "
           "%ld invalid\n", cmd, skill_names[skill], kept, st->candidates, st->rejected_similar,
           o->threshold, st->rejected_invalid);
    for (int i = 0; i < st->n_examples; i++) printf("  dropped: %s\n", st->examples[i]);
}

int cmd_prompts(int argc, char **argv) {
    int skill = -2;
    long n = -1;
    uint64_t seed = 0;
    const char *out = NULL;
    prompt_gen_opts o;
    prompt_gen_defaults(&o);
    for (int i = 1; i < argc; i++) {
        int r = prompt_option("prompts", argc, argv, &i, &skill, &n, &seed, &o);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { prompts_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) { out = argv[++i]; continue; }
        fprintf(stderr, "selma prompts: unknown or incomplete option '%s'\n", argv[i]);
        prompts_usage(stderr);
        return 2;
    }
    if (skill < 0 || n < 0 || !out) {
        fprintf(stderr, "selma prompts: --skill (one skill), --n and --out are required\n");
        prompts_usage(stderr);
        return 2;
    }
    prompt_list l = {0};
    prompt_gen_stats st;
    int rc = prompt_generate(skill, (int)n, seed, &o, &l, &st);
    if (skill != SKILL_PRETRAIN) prompt_stats_print("prompts", skill, &st, l.n, &o);
    if (rc) {
        fprintf(stderr, "selma prompts: %s; nothing written to %s\n", err_msg(), out);
        prompt_list_free(&l);
        return 1;
    }
    afile f;
    if (afile_open(&f, out)) {
        fprintf(stderr, "selma prompts: %s\n", err_msg());
        prompt_list_free(&l);
        return 1;
    }
    for (int i = 0; i < l.n; i++) fprintf(f.f, "%s\n", l.text[i]);
    rc = afile_commit(&f);
    if (rc) fprintf(stderr, "selma prompts: %s\n", err_msg());
    else printf("prompts: wrote %d %s prompts to %s\n", l.n, skill_names[skill], out);
    prompt_list_free(&l);
    return rc ? 1 : 0;
}
