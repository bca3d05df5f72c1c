// Random scene graphs for the placement and detector tests: 1-4 entities with counts
// 1-4 (redrawn while the scene would hold more than `max_objects`), each attribute
// stated about half the time, sometimes a background, and up to 3 relations drawn
// consistent (from a hidden order of the entities on each axis). Kept out, because
// they do not fit a 32x32 canvas: a second relation between one pair (one group in a
// corner of the other), a relation between two groups of 7+ objects together, and
// stated large sizes in scenes of 4+ objects.
#ifndef SELMA_TESTS_SCENE_GEN_H
#define SELMA_TESTS_SCENE_GEN_H

#include "data/shapes.h"
#include "runtime/rng.h"

static inline scene_graph scene_gen_graph(rng *r, int max_objects) {
    scene_graph g = {0};
    g.background = rng_uniform(r) < 0.2f ? (int)rng_below(r, COLOR_COUNT) : ATTR_UNSET;
    int bg = g.background == ATTR_UNSET ? COLOR_BLACK : g.background;
    int n = 1 + (int)rng_below(r, 4), total, counts[4];
    do {  // counts 1-4 each, redrawn until the scene holds at most max_objects
        total = 0;
        for (int i = 0; i < n; i++) total += counts[i] = 1 + (int)rng_below(r, 4);
    } while (total > max_objects);
    for (int i = 0; i < n; i++) {
        entity *e = &g.entities[g.n_entities++];
        e->count = counts[i];
        e->count_stated = e->count > 1 || rng_uniform(r) < 0.3f;
        e->shape = (int)rng_below(r, SHAPE_COUNT);
        e->color = ATTR_UNSET;
        if (rng_uniform(r) < 0.5f)
            do e->color = (int)rng_below(r, COLOR_OBJECT_COUNT); while (e->color == bg);
        e->size = rng_uniform(r) < 0.4f ? (int)rng_below(r, SIZE_COUNT) : ATTR_UNSET;
        e->fill = rng_uniform(r) < 0.5f ? (int)rng_below(r, FILL_COUNT) : ATTR_UNSET;
    }
    if (total > 3)
        for (int i = 0; i < g.n_entities; i++)
            if (g.entities[i].size == SIZE_LARGE) g.entities[i].size = SIZE_SMALL;
    int rank[2][MAX_ENTITIES];
    for (int axis = 0; axis < 2; axis++) {
        for (int i = 0; i < g.n_entities; i++) rank[axis][i] = i;
        rng_shuffle(r, rank[axis], g.n_entities);
    }
    int n_rel = g.n_entities > 1 ? (int)rng_below(r, 4) : 0, used[MAX_ENTITIES][MAX_ENTITIES] = {{0}};
    for (int k = 0; k < n_rel; k++) {
        int a = (int)rng_below(r, (uint32_t)g.n_entities), b;
        do b = (int)rng_below(r, (uint32_t)g.n_entities); while (b == a);
        if (used[a][b] || g.entities[a].count + g.entities[b].count > 7) continue;
        used[a][b] = used[b][a] = 1;
        relation *rl = &g.relations[g.n_relations++];
        rl->a = a, rl->b = b;
        int axis = (int)rng_below(r, 2), first = rank[axis][a] < rank[axis][b];
        rl->kind = axis == 0 ? (first ? REL_LEFT_OF : REL_RIGHT_OF) : (first ? REL_ABOVE : REL_BELOW);
    }
    return g;
}

#endif
