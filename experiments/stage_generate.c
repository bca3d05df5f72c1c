// Drawing and scoring images for the pipeline: the generate stage (SELMA's
// self-generated training images, or ground-truth renders for the ablation), images of
// a method (base weights with adapters folded in, or a LoRA mixture of experts), and
// the evaluator over (prompt, image) pairs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/image_io.h"
#include "data/prompt_parse.h"
#include "data/render.h"
#include "experiments/pipeline.h"
#include "models/bundle.h"
#include "models/lora_fold.h"
#include "models/lora_moe.h"
#include "runtime/error.h"
#include "runtime/log.h"

int draw_images(const char *model, const char *const *adapters, const float *w, int n_adapters,
                const char *moe_routers, char **prompts, int n, const eval_sampling *s,
                uint8_t **rgb, int *size) {
    *rgb = NULL;
    t2i_model m = {0};
    if (bundle_load(&m, model, UNET_FROZEN, NULL)) return -1;
    int rc = 0;
    for (int i = 0; i < n_adapters && !rc; i++) rc = unet_fold_lora(&m.unet, adapters[i], w[i], NULL);
    lora_moe moe = {0};
    int have_moe = 0;
    if (!rc && moe_routers) rc = lora_moe_open(&moe, &m.unet, moe_routers), have_moe = !rc;
    int S = m.cfg.image_size;
    *size = S;
    sampler_opts o;
    t2i_sampler_opts(&m, s->sampler ? SAMPLER_EULER : SAMPLER_DDIM, s->steps, s->cfg, &o);
    uint8_t *out = malloc((size_t)(n ? n : 1) * S * S * 3);
    uint64_t *seeds = malloc(sizeof(uint64_t) * (size_t)s->batch);
    CHECK(out && seeds);
    for (int i0 = 0; i0 < n && !rc; i0 += s->batch) {
        int nb = n - i0 < s->batch ? n - i0 : s->batch;
        for (int b = 0; b < nb; b++) seeds[b] = s->seed + (uint64_t)(i0 + b);
        rc = t2i_sample(&m, &o, (const char *const *)prompts + i0, nb, seeds, out + (size_t)i0 * S * S * 3);
    }
    free(seeds);
    if (have_moe) lora_moe_free(&moe);
    t2i_free(&m);
    if (rc) free(out);
    else *rgb = out;
    return rc;
}

void score_images(char **prompts, const int *skills, const uint8_t *rgb, int n, int size, eval_totals *t) {
    for (int i = 0; i < n; i++)
        eval_add(t, prompts[i], skills[i], rgb + (size_t)i * size * size * 3, size, size, NULL);
}

// The ground-truth render of a prompt at S x S: placed and drawn at 32 x 32 or more
// (the placement's smallest canvas) and box-filtered down when S is smaller.
int render_prompt(const char *prompt, int S, uint64_t seed, uint8_t *rgb) {
    scene_graph g;
    parse_info info;
    if (prompt_parse(prompt, &g, &info)) return err_wrap("'%s'", prompt);
    int R = S < 32 ? 32 : S, f = R / S;
    if (R % S) return err_set("image size %d: renders need 32 or more, or a divisor of 32", S);
    scene sc;
    int tries = 0;
    while (scene_place(&g, R, R, 0, seed + (uint64_t)tries, &sc) != 0)
        if (++tries == 8) return err_wrap("'%s'", prompt);
    uint8_t *big = malloc((size_t)R * R * 3);
    CHECK(big);
    scene_render(&sc, big);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int dy = 0; dy < f; dy++)
                    for (int dx = 0; dx < f; dx++) sum += big[((y * f + dy) * R + x * f + dx) * 3 + c];
                rgb[(y * S + x) * 3 + c] = (uint8_t)((sum + f * f / 2) / (f * f));
            }
    free(big);
    return 0;
}

int stage_generate(const pipeline_cfg *c, const char *model, const char *prompts_dir, int skill,
                   const char *out) {
    char path[4200], **prompts;
    int n;
    snprintf(path, sizeof path, "%s/%s.train.txt", prompts_dir, skill_names[skill]);
    if (prompts_read(path, &prompts, &n)) return -1;
    t2i_config mc;
    if (bundle_read_config(model, &mc)) {
        prompts_free(prompts, n);
        return -1;
    }
    int S = mc.image_size, rc = 0;
    uint8_t *rgb = NULL;
    dataset d;
    if (dataset_alloc(&d, n, S, S)) {
        prompts_free(prompts, n);
        return -1;
    }
    uint64_t seed0 = (uint64_t)c->prompt_seed * 1000003u + (uint64_t)skill * 7919u;
    if (c->gen_source == GEN_SOURCE_GT) {
        for (int i = 0; i < n && !rc; i++) rc = render_prompt(prompts[i], S, seed0 + (uint64_t)i, d.image + (size_t)i * S * S * 3);
        snprintf(d.generator, sizeof d.generator, "shapes-world ground truth (exact renderer)");
    } else {
        eval_sampling s = {.steps = c->gen_steps, .sampler = c->gen_sampler, .batch = c->gen_batch,
                           .cfg = c->gen_cfg, .seed = seed0};
        int size;
        rc = draw_images(model, NULL, NULL, 0, NULL, prompts, n, &s, &rgb, &size);
        if (!rc) memcpy(d.image, rgb, (size_t)n * S * S * 3);
        snprintf(d.generator, sizeof d.generator, "%s", model);
        if (!rc) rc = bundle_hash(model, d.generator_hash, sizeof d.generator_hash);
        d.steps = c->gen_steps, d.guidance_scale = (float)c->gen_cfg;
        snprintf(d.sampler, sizeof d.sampler, "%s", c->gen_sampler ? "euler" : "ddim");
    }
    snprintf(d.world, sizeof d.world, "%s", c->world[0] ? c->world : "shapes");
    for (int i = 0; i < n; i++) {
        d.prompt[i] = prompts[i], prompts[i] = NULL;
        d.skill[i] = skill;
        d.seed[i] = seed0 + (uint64_t)i;
    }
    // The filter ablation: keep the images whose DSG score reaches filter_min.
    int kept = n;
    if (!rc && c->gen_filter) {
        kept = 0;
        for (int i = 0; i < n; i++) {
            eval_totals t;
            eval_init(&t);
            prompt_scores ps;
            eval_add(&t, d.prompt[i], skill, d.image + (size_t)i * S * S * 3, S, S, &ps);
            if (ps.dsg + 1e-9 < c->gen_filter_min) {
                free(d.prompt[i]);
                d.prompt[i] = NULL;
                continue;
            }
            if (kept != i) {
                d.prompt[kept] = d.prompt[i], d.prompt[i] = NULL;
                d.seed[kept] = d.seed[i];
                memcpy(d.image + (size_t)kept * S * S * 3, d.image + (size_t)i * S * S * 3, (size_t)S * S * 3);
            }
            kept++;
        }
        log_line("generate: %s: the filter (DSG >= %g) kept %d of %d images", skill_names[skill],
                 c->gen_filter_min, kept, n);
        if (kept == 0) rc = err_set("generate: %s: the filter kept no image", skill_names[skill]);
        d.n = kept;
    }
    if (!rc) rc = dataset_write(out, &d);
    if (!rc) log_line("generate: %s: %d images (%s) -> %s", skill_names[skill], kept,
                      c->gen_source == GEN_SOURCE_GT ? "ground truth"
                      : c->image_source[0]           ? "drawn by the image_source model"
                                                     : "self-generated", out);
    d.n = n;  // every prompt slot is freed
    dataset_free(&d);
    free(rgb);
    free(prompts);
    return rc;
}
