// Pretraining captions: random full scenes described the way web alt-text describes
// pictures -- partly. Every caption is true of its scene under the language's
// reading ("a" = at least one, a bare plural = at least two, a number = exactly).
#include <stdio.h>
#include <string.h>

#include "data/prompt_gen.h"
#include "data/prompt_parse.h"
#include "data/render.h"
#include "runtime/error.h"

void scene_graph_random(rng *r, scene_graph *g) {
    for (;;) {
        memset(g, 0, sizeof *g);
        g->background = ATTR_UNSET;
        float u = rng_uniform(r);
        // Mostly one or two kinds of object, so that a caption of one or two mentions
        // covers most pictures: with up to four kinds and one mention (the first
        // design), captions explained too little of the image for a small model to
        // learn to read them in an hour (models/weights/README.md).
        g->n_entities = u < 0.45f ? 1 : u < 0.8f ? 2 : u < 0.95f ? 3 : 4;
        int units = 0, ok = 1;
        for (int e = 0; e < g->n_entities; e++) {
            entity *x = &g->entities[e];
            x->shape = (int)rng_below(r, SHAPE_COUNT);
            x->color = (int)rng_below(r, COLOR_OBJECT_COUNT);
            x->size = (int)rng_below(r, SIZE_COUNT);
            x->fill = rng_uniform(r) < 0.75f ? FILL_FILLED : FILL_OUTLINED;
            float c = rng_uniform(r);
            x->count = c < 0.6f ? 1 : c < 0.85f ? 2 : 3;
            x->count_stated = 1;
            units += x->count * (x->size == SIZE_SMALL ? 1 : 2);
            for (int f = 0; f < e; f++)  // one entity per kind of object
                ok &= memcmp(&g->entities[f], x, 4 * sizeof(int)) != 0;
        }
        if (!ok || units > 7) continue;
        // relations between distinct pairs, each joining a later entity to an earlier
        // one, so they form a forest and never contradict
        for (int e = 1; e < g->n_entities; e++)
            if (rng_uniform(r) < 0.4f)
                g->relations[g->n_relations++] =
                    (relation){e, (int)rng_below(r, (uint32_t)e), (int)rng_below(r, REL_COUNT)};
        if (rng_uniform(r) < 0.25f) {
            int bg, clash;
            do {
                bg = (int)rng_below(r, COLOR_COUNT);
                clash = bg == COLOR_BLACK;
                for (int e = 0; e < g->n_entities; e++) clash |= g->entities[e].color == bg;
            } while (clash);
            g->background = bg;
        }
        return;
    }
}

// Objects of the full scene that fit a stated description.
static int objects_fitting(const scene_graph *full, const entity *d) {
    int k = 0;
    for (int e = 0; e < full->n_entities; e++) {
        const entity *x = &full->entities[e];
        if (x->shape == d->shape && (d->color == ATTR_UNSET || d->color == x->color) &&
            (d->size == ATTR_UNSET || d->size == x->size) && (d->fill == ATTR_UNSET || d->fill == x->fill))
            k += x->count;
    }
    return k;
}

static void put(char *out, size_t n, size_t *len, const char *w) {
    int k = snprintf(out + *len, n - *len, "%s%s", *len && w[0] != ',' ? " " : "", w);
    *len = k < 0 || *len + (size_t)k >= n ? n : *len + (size_t)k;
}

static void put_entity(char *out, size_t n, size_t *len, const entity *e) {
    if (e->count_stated) put(out, n, len, count_words[e->count]);
    else if (e->count == 1) {
        const char *next = e->size != ATTR_UNSET ? size_names[e->size]
                           : e->fill != ATTR_UNSET ? fill_names[e->fill]
                           : e->color != ATTR_UNSET ? color_names[e->color]
                                                    : shape_names[e->shape];
        put(out, n, len, strchr("aeiou", next[0]) ? "an" : "a");
    }
    if (e->size != ATTR_UNSET) put(out, n, len, size_names[e->size]);
    if (e->fill != ATTR_UNSET) put(out, n, len, fill_names[e->fill]);
    if (e->color != ATTR_UNSET) put(out, n, len, color_names[e->color]);
    put(out, n, len, e->count > 1 ? shape_plurals[e->shape] : shape_names[e->shape]);
}

int prompt_caption(const scene_graph *full, rng *r, char *out, size_t n, scene_graph *stated) {
    static const char *const leads[] = {"", "", "", "a photo of", "an image of", "a drawing of"};
    memset(stated, 0, sizeof *stated);
    stated->background = ATTR_UNSET;
    int order[MAX_ENTITIES];
    for (int e = 0; e < full->n_entities; e++) order[e] = e;
    rng_shuffle(r, order, full->n_entities);
    int want = full->n_entities > 1 && rng_uniform(r) < 0.75f ? 2 : 1, src[2];
    for (int k = 0; k < want && k < full->n_entities; k++) {
        const entity *x = &full->entities[order[k]];
        entity d = {x->shape, ATTR_UNSET, ATTR_UNSET, ATTR_UNSET, 1, 0};
        if (rng_uniform(r) < 0.85f) d.color = x->color;
        if (rng_uniform(r) < 0.3f) d.size = x->size;
        if (rng_uniform(r) < (x->fill == FILL_OUTLINED ? 0.4f : 0.15f)) d.fill = x->fill;
        // the number only when it is exact for everything the words fit, and rarely above two
        float p_number = x->count == 1 ? 0.1f : x->count == 2 ? 0.5f : 0.1f;
        if (rng_uniform(r) < p_number && objects_fitting(full, &d) == x->count) {
            d.count = x->count;
            d.count_stated = 1;
        } else {
            d.count = x->count > 1 ? 2 : 1;  // "a" = at least one, a plural = at least two
        }
        // two mentions of one shape must differ in an attribute both state, else the
        // caption could not be scored unambiguously ("a circle and a circle")
        int same = 0;
        for (int j = 0; j < stated->n_entities; j++) {
            const entity *y = &stated->entities[j];
            same |= y->shape == d.shape &&
                    !((y->color != ATTR_UNSET && d.color != ATTR_UNSET && y->color != d.color) ||
                      (y->size != ATTR_UNSET && d.size != ATTR_UNSET && y->size != d.size) ||
                      (y->fill != ATTR_UNSET && d.fill != ATTR_UNSET && y->fill != d.fill));
        }
        if (same) break;
        src[stated->n_entities] = order[k];
        stated->entities[stated->n_entities++] = d;
    }
    int rel = -1;
    if (stated->n_entities == 2 && rng_uniform(r) < 0.25f)
        for (int k = 0; k < full->n_relations; k++) {
            const relation *x = &full->relations[k];
            if (x->a == src[0] && x->b == src[1]) rel = x->kind;
            if (x->a == src[1] && x->b == src[0]) rel = (x->kind ^ 1);  // left<->right, above<->below
        }
    int say_bg = full->background != ATTR_UNSET && rng_uniform(r) < 0.3f;

    size_t len = 0;
    out[0] = 0;
    put(out, n, &len, leads[rng_below(r, 6)]);
    put_entity(out, n, &len, &stated->entities[0]);
    if (stated->n_entities == 2) {
        if (rel >= 0) {
            put(out, n, &len, relation_words[0][rel]);
            stated->relations[stated->n_relations++] = (relation){0, 1, rel};
        } else {
            put(out, n, &len, rng_uniform(r) < 0.7f ? "and" : "with");
        }
        put_entity(out, n, &len, &stated->entities[1]);
    }
    if (say_bg) {
        put(out, n, &len, "on a");
        put(out, n, &len, color_names[full->background]);
        put(out, n, &len, "background");
        stated->background = full->background;
    }
    if (len >= n) return err_set("prompt_caption: caption longer than %zu bytes", n);
    return 0;
}

int prompt_pretrain_item(uint64_t seed, long i, scene_graph *full, char *caption, size_t n,
                         scene_graph *stated) {
    rng r = rng_make(seed ^ 0x707265747261696eULL, (uint64_t)i);  // "pretrain"
    scene s;
    do scene_graph_random(&r, full);  // about 1 in 300 is too crowded to draw
    while (scene_place(full, 32, 32, 0, 1, &s) != 0);
    return prompt_caption(full, &r, caption, n, stated);
}
