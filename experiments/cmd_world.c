// `selma world render`: ground-truth images of the shapes world -- generated prompts
// of a skill (or every skill), each drawn exactly as stated, written as a dataset
// (data/dataset.h) with the drawn scene as JSON in /scene.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/prompt_gen.h"
#include "data/prompt_parse.h"
#include "data/render.h"
#include "experiments/commands.h"
#include "experiments/prompt_opts.h"
#include "runtime/error.h"

static void world_usage(FILE *f) {
    fprintf(f,
            "usage: selma world render --skill S --n N --seed K --out FILE.h5 [options]\n"
            "  --skill S            count, spatial, binding, dense, style, all (every skill but\n"
            "                       pretrain, N each) or pretrain (full random scenes with their\n"
            "                       incomplete captions as prompts)\n"
            "  --n N                images per skill\n"
            "  --seed K             random seed (default 0)\n"
            "  --out FILE           HDF5 dataset, written atomically\n"
            "  --size S             canvas side in pixels (default 32)\n"
            "  --distractors D      extra objects no entity describes, where they fit (default 0)\n"
            "  prompt options       --threshold --max-rejects --generator-cmd --timeout as in\n"
            "                       `selma prompts`\n");
}

// The placement seed of item i of a skill: independent of every other item.
static uint64_t place_seed(uint64_t seed, int skill, long i) {
    rng r = rng_make(seed, 0x706c61636500ULL + (uint64_t)skill);  // "place" + skill
    r.pos = 2 * (uint64_t)i;
    return rng_u64(&r);
}

// Draws one item; placement is retried with other seeds (a crowded graph can miss with
// one). -1 with a message naming the prompt.
static int render_item(const scene_graph *g, const char *prompt, int size, int distractors,
                       uint64_t seed, dataset *d, int k) {
    scene s;
    int tries = 0;
    while (scene_place(g, size, size, distractors, seed + (uint64_t)tries, &s) != 0)
        if (++tries == 8) return err_wrap("'%s'", prompt);
    d->seed[k] = seed + (uint64_t)tries;
    scene_render(&s, d->image + (size_t)k * size * size * 3);
    d->prompt[k] = strdup(prompt);
    CHECK(d->prompt[k]);
    return scene_to_json(&s, &d->scene[k]);
}

int cmd_world(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "render")) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) { world_usage(stdout); return 0; }
        fprintf(stderr, "selma world: expected the sub-command 'render'\n");
        world_usage(stderr);
        return 2;
    }
    int skill = -2, size = 32, distractors = 0;
    long n = -1;
    uint64_t seed = 0;
    const char *out = NULL;
    prompt_gen_opts o;
    prompt_gen_defaults(&o);
    for (int i = 2; i < argc; i++) {
        int r = prompt_option("world", argc, argv, &i, &skill, &n, &seed, &o);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { world_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) { out = argv[++i]; continue; }
        if ((!strcmp(argv[i], "--size") || !strcmp(argv[i], "--distractors")) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            int is_size = !strcmp(argv[i], "--size");
            if (*end || v < (is_size ? 8 : 0) || v > (is_size ? 1024 : MAX_OBJECTS)) {
                fprintf(stderr, "selma world: %s: bad value '%s'\n", argv[i], argv[i + 1]);
                return 2;
            }
            *(is_size ? &size : &distractors) = (int)v;
            i++;
            continue;
        }
        fprintf(stderr, "selma world: unknown or incomplete option '%s'\n", argv[i]);
        world_usage(stderr);
        return 2;
    }
    if (skill == -2 || n < 0 || !out) {
        fprintf(stderr, "selma world: --skill, --n and --out are required\n");
        world_usage(stderr);
        return 2;
    }
    int first = skill < 0 ? 0 : skill, last = skill < 0 ? SKILL_STYLE : skill;
    long total = n * (last - first + 1);
    if (total > 10000000) {
        fprintf(stderr, "selma world: %ld images is too many for one file\n", total);
        return 2;
    }
    dataset d;
    if (dataset_alloc(&d, (int)total, size, size)) {
        fprintf(stderr, "selma world: %s\n", err_msg());
        return 1;
    }
    d.scene = calloc(total ? (size_t)total : 1, sizeof(char *));
    CHECK(d.scene);
    snprintf(d.generator, sizeof d.generator, "shapes-world ground truth (exact renderer)");
    snprintf(d.sampler, sizeof d.sampler, "none");
    snprintf(d.world, sizeof d.world, "shapes");
    int rc = 0, k = 0;
    for (int s = first; s <= last && !rc; s++) {
        prompt_list l = {0};
        prompt_gen_stats st;
        if (prompt_generate(s, (int)n, seed, &o, &l, &st)) {
            fprintf(stderr, "selma world: %s\n", err_msg());
            rc = 1;
        }
        if (s != SKILL_PRETRAIN && !rc) prompt_stats_print("world", s, &st, l.n, &o);
        for (int i = 0; i < l.n && !rc; i++, k++) {
            scene_graph full, stated;
            char caption[PROMPT_MAX_LEN];
            const scene_graph *g = &l.graph[i];
            if (s == SKILL_PRETRAIN) {  // the picture holds the full scene
                CHECK(prompt_pretrain_item(seed, i, &full, caption, sizeof caption, &stated) == 0);
                g = &full;
            }
            d.skill[k] = s;
            if (render_item(g, l.text[i], size, distractors, place_seed(seed, s, i), &d, k)) {
                fprintf(stderr, "selma world: %s\n", err_msg());
                rc = 1;
            }
        }
        prompt_list_free(&l);
    }
    if (!rc && dataset_write(out, &d)) {
        fprintf(stderr, "selma world: %s\n", err_msg());
        rc = 1;
    }
    if (!rc) printf("world: wrote %d images of %dx%d to %s\n", k, size, size, out);
    dataset_free(&d);
    return rc;
}
