// Placement: a scene_graph and a seed -> a concrete scene. Objects are placed one at a
// time (large first); each takes a position drawn from *all* free positions on a grid
// of m/32 px (at least 1 px; m = the canvas's smaller side) shifted by a random
// fraction of a step, so that positions are continuous. Free: inside the canvas,
// apart from the objects already placed and on the right side of every related one.
// When an object finds no position the attempt starts over; later attempts draw
// unstated sizes small more often, and every other one packs objects towards a corner
// (bottom-left-fill), which is what crowded scenes need. Failures left are scenes
// that do not fit: at 32x32, two related groups of 4 small objects (4 left of 4 needs
// four columns of three), or 4+ large objects with relations.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/render.h"
#include "runtime/error.h"
#include "runtime/rng.h"

#define PLACE_ATTEMPTS 400
#define ATTR_TRIES 20

typedef struct place_ctx {
    const scene_graph *g;
    int w, h;
    float edge;      // objects stay this far inside the canvas (the border shows background)
    float gap;       // minimum gap between boxes of different colours
    float gap_same;  // ... of one colour: blur must not join them into one component
    float margin;    // relation margin between centres
    float step;      // position grid
    int before[2][MAX_ENTITIES][MAX_ENTITIES];  // [axis][a][b]: a's centre must be smaller
    int chain_lo[2][MAX_ENTITIES];  // longest chain of entities that must come before
    int chain_hi[2][MAX_ENTITIES];  // ... after
    float *cand;    // candidate positions (x, y, score)
    int cand_cap;
} place_ctx;

static int graph_check(const scene_graph *g, int w, int h) {
    if (w < 8 || h < 8) return err_set("scene_place: canvas %dx%d is too small (8x8 at least)", w, h);
    if (g->n_entities < 0 || g->n_entities > MAX_ENTITIES)
        return err_set("scene_place: %d entities (0..%d)", g->n_entities, MAX_ENTITIES);
    if (g->n_relations < 0 || g->n_relations > MAX_RELATIONS)
        return err_set("scene_place: %d relations (0..%d)", g->n_relations, MAX_RELATIONS);
    if (g->background != ATTR_UNSET && (g->background < 0 || g->background >= COLOR_COUNT))
        return err_set("scene_place: background %d out of range", g->background);
    int bg = g->background == ATTR_UNSET ? COLOR_BLACK : g->background, total = 0;
    for (int i = 0; i < g->n_entities; i++) {
        const entity *e = &g->entities[i];
        if (e->shape < 0 || e->shape >= SHAPE_COUNT)
            return err_set("scene_place: entity %d: shape %d out of range", i, e->shape);
        if (e->color != ATTR_UNSET && (e->color < 0 || e->color >= COLOR_OBJECT_COUNT))
            return err_set("scene_place: entity %d: colour %d out of range", i, e->color);
        if (e->color == bg)
            return err_set("scene_place: entity %d is %s on a %s background", i,
                           color_names[e->color], color_names[bg]);
        if (e->size != ATTR_UNSET && (e->size < 0 || e->size >= SIZE_COUNT))
            return err_set("scene_place: entity %d: size %d out of range", i, e->size);
        if (e->fill != ATTR_UNSET && (e->fill < 0 || e->fill >= FILL_COUNT))
            return err_set("scene_place: entity %d: fill %d out of range", i, e->fill);
        if (e->count < 1) return err_set("scene_place: entity %d: count %d", i, e->count);
        total += e->count;
    }
    if (total > MAX_OBJECTS)
        return err_set("scene_place: %d objects, at most %d", total, MAX_OBJECTS);
    for (int k = 0; k < g->n_relations; k++) {
        const relation *rl = &g->relations[k];
        if (rl->a < 0 || rl->a >= g->n_entities || rl->b < 0 || rl->b >= g->n_entities ||
            rl->kind < 0 || rl->kind >= REL_COUNT)
            return err_set("scene_place: relation %d (%d, %d, kind %d) out of range", k, rl->a,
                           rl->b, rl->kind);
        if (rl->a == rl->b)
            return err_set("scene_place: relation %d relates entity %d to itself", k, rl->a);
    }
    return 0;
}

// The order relations impose per axis, their transitive closure (a cycle is a
// contradiction) and the chain lengths used to reserve room for entities not yet placed.
static int ctx_orders(place_ctx *c) {
    const scene_graph *g = c->g;
    int n = g->n_entities;
    for (int k = 0; k < g->n_relations; k++) {
        const relation *rl = &g->relations[k];
        int axis = rl->kind == REL_LEFT_OF || rl->kind == REL_RIGHT_OF ? 0 : 1;
        int first = rl->kind == REL_LEFT_OF || rl->kind == REL_ABOVE;
        if (first) c->before[axis][rl->a][rl->b] = 1;
        else c->before[axis][rl->b][rl->a] = 1;
    }
    for (int axis = 0; axis < 2; axis++) {
        int reach[MAX_ENTITIES][MAX_ENTITIES];
        memcpy(reach, c->before[axis], sizeof reach);
        for (int m = 0; m < n; m++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    if (reach[i][m] && reach[m][j]) reach[i][j] = 1;
        for (int i = 0; i < n; i++)
            if (reach[i][i])
                return err_set("scene_place: contradictory relations: entity %d would be %s "
                               "itself", i, axis == 0 ? "left of" : "above");
        // longest paths in a DAG of <= MAX_ENTITIES nodes: n rounds of relaxation suffice
        for (int round = 0; round < n; round++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    if (c->before[axis][i][j]) {
                        if (c->chain_lo[axis][j] < c->chain_lo[axis][i] + 1)
                            c->chain_lo[axis][j] = c->chain_lo[axis][i] + 1;
                        if (c->chain_hi[axis][i] < c->chain_hi[axis][j] + 1)
                            c->chain_hi[axis][i] = c->chain_hi[axis][j] + 1;
                    }
    }
    return 0;
}

static int object_fits_entity(const object *o, const entity *e) {
    return o->shape == e->shape && (e->color == ATTR_UNSET || e->color == o->color) &&
           (e->size == ATTR_UNSET || e->size == o->size) &&
           (e->fill == ATTR_UNSET || e->fill == o->fill);
}

// Draws the attributes an entity leaves open (all of them for a distractor, ent < 0),
// retrying so that the object fits no other entity's description when that is avoidable.
// Returns whether it still fits another entity's description.
static int object_draw(const place_ctx *c, rng *r, int ent, float p_large, int bg, object *o) {
    const scene_graph *g = c->g;
    entity any = {.shape = ATTR_UNSET, .color = ATTR_UNSET, .size = ATTR_UNSET,
                  .fill = ATTR_UNSET, .count = 1};
    const entity *e = ent >= 0 ? &g->entities[ent] : &any;
    int clash = 0;
    for (int t = 0; t < ATTR_TRIES; t++) {
        o->shape = e->shape != ATTR_UNSET ? e->shape : (int)rng_below(r, SHAPE_COUNT);
        if (e->color != ATTR_UNSET) {
            o->color = e->color;
        } else {  // any object colour but the background's
            int n_avail = COLOR_OBJECT_COUNT - (bg < COLOR_OBJECT_COUNT);
            o->color = (int)rng_below(r, (uint32_t)n_avail);
            if (bg < COLOR_OBJECT_COUNT && o->color >= bg) o->color++;
        }
        o->size = e->size != ATTR_UNSET ? e->size : rng_uniform(r) < p_large ? SIZE_LARGE : SIZE_SMALL;
        o->fill = e->fill != ATTR_UNSET ? e->fill : (int)rng_below(r, FILL_COUNT);
        clash = 0;
        for (int j = 0; j < g->n_entities; j++)
            if (j != ent && object_fits_entity(o, &g->entities[j])) clash = 1;
        if (!clash) break;
    }
    o->radius = scene_radius(o->size, c->w, c->h);
    o->entity = ent;
    return clash;
}

// Whether p may stand at (x, y): inside the canvas, leaving room for the entities that
// must come before or after it, apart from the placed objects and on the right side
// of every related one.
static int position_ok(const place_ctx *c, const object *p, float x, float y,
                       const object *placed, int n_placed) {
    float r = p->radius, cdy = shape_centroid_dy(p->shape, p->fill, r);
    if (x - r < c->edge || x + r > c->w - c->edge || y - r < c->edge || y + r > c->h - c->edge)
        return 0;
    if (p->entity >= 0) {
        float rmin = scene_radius(SIZE_SMALL, c->w, c->h);
        float pos[2] = {x, y}, size[2] = {(float)c->w, (float)c->h};
        for (int axis = 0; axis < 2; axis++) {
            int n_lo = c->chain_lo[axis][p->entity], n_hi = c->chain_hi[axis][p->entity];
            if (n_lo && pos[axis] < c->edge + rmin + n_lo * c->margin) return 0;
            if (n_hi && pos[axis] > size[axis] - c->edge - rmin - n_hi * c->margin) return 0;
        }
    }
    for (int k = 0; k < n_placed; k++) {
        const object *q = &placed[k];
        float sep = r + q->radius + (q->color == p->color ? c->gap_same : c->gap);
        if (fabsf(x - q->cx) < sep && fabsf(y - q->cy) < sep) return 0;
        if (p->entity < 0 || q->entity < 0) continue;
        float qdy = shape_centroid_dy(q->shape, q->fill, q->radius);
        for (int axis = 0; axis < 2; axis++) {
            // both the box centres and the centroids keep the order with the margin
            float pc = axis ? y : x, qc = axis ? q->cy : q->cx;
            float pm = axis ? y + cdy : x, qm = axis ? q->cy + qdy : q->cx;
            if (c->before[axis][p->entity][q->entity] && (pc + c->margin > qc || pm + c->margin > qm))
                return 0;
            if (c->before[axis][q->entity][p->entity] && (qc + c->margin > pc || qm + c->margin > pm))
                return 0;
        }
    }
    return 1;
}

// Puts p at a free position: uniform over all of them, or packed: pushed as far as it
// goes towards a corner (dir, weighting one axis more, as bottom-left-fill packing
// does), except along an axis where its relations point (an entity that must be left of
// others goes left). Returns 0 when there is no free position.
static int object_put(place_ctx *c, rng *r, object *p, const object *placed, int n_placed,
                      const float *dir) {
    float u = rng_uniform(r) * c->step, v = rng_uniform(r) * c->step;
    float pull[2] = {0, 0};
    for (int axis = 0; axis < 2 && dir; axis++) {
        int d = p->entity >= 0 ? c->chain_hi[axis][p->entity] - c->chain_lo[axis][p->entity] : 0;
        pull[axis] = d > 0 ? fabsf(dir[axis]) : d < 0 ? -fabsf(dir[axis]) : dir[axis];
    }
    int n = 0;
    float best = INFINITY;
    for (float y = c->edge + p->radius + v; y <= c->h - c->edge - p->radius; y += c->step)
        for (float x = c->edge + p->radius + u; x <= c->w - c->edge - p->radius; x += c->step) {
            if (n >= c->cand_cap || !position_ok(c, p, x, y, placed, n_placed)) continue;
            float score = pull[0] * x + pull[1] * y;
            c->cand[3 * n] = x, c->cand[3 * n + 1] = y, c->cand[3 * n + 2] = score;
            n++;
            if (score < best) best = score;
        }
    if (n == 0) return 0;
    if (dir) {  // keep the best positions only
        int m = 0;
        for (int i = 0; i < n; i++)
            if (c->cand[3 * i + 2] <= best + 0.5f * c->step) {
                memmove(c->cand + 3 * m, c->cand + 3 * i, 3 * sizeof(float));
                m++;
            }
        n = m;
    }
    int pick = (int)rng_below(r, (uint32_t)n);
    p->cx = c->cand[3 * pick], p->cy = c->cand[3 * pick + 1];
    return 1;
}

int scene_place(const scene_graph *g, int width, int height, int distractors, uint64_t seed,
                scene *out) {
    memset(out, 0, sizeof *out);
    if (graph_check(g, width, height)) return -1;
    place_ctx c = {.g = g, .w = width, .h = height};
    float m = (float)(width < height ? width : height);
    c.edge = 1.0f;
    c.gap = fmaxf(2.0f, 0.06f * m);
    c.gap_same = c.gap + 1.5f;
    c.margin = fmaxf(2.0f, 0.0625f * m);
    c.step = fmaxf(1.0f, m / 32.0f);
    if (ctx_orders(&c)) return -1;
    c.cand_cap = (int)((width / c.step + 2) * (height / c.step + 2));
    c.cand = malloc((size_t)c.cand_cap * 3 * sizeof(float));
    CHECK(c.cand);

    int bg = g->background == ATTR_UNSET ? COLOR_BLACK : g->background;
    int n_obj = 0, owner[MAX_OBJECTS];
    for (int i = 0; i < g->n_entities; i++)
        for (int k = 0; k < g->entities[i].count; k++) owner[n_obj++] = i;

    rng r = rng_make(seed, 0x706c616365ULL);  // "place"
    object placed[MAX_OBJECTS];
    int ok = 0;
    for (int attempt = 0; attempt < PLACE_ATTEMPTS && !ok; attempt++) {
        float p_large = attempt < PLACE_ATTEMPTS / 4 ? 0.5f : attempt < PLACE_ATTEMPTS / 2 ? 0.25f : 0;
        // packed attempts: a random corner to pack towards, one axis weighted more
        float corner[2] = {rng_uniform(&r) < 0.5f ? 1.0f : -1.0f, rng_uniform(&r) < 0.5f ? 1.0f : -1.0f};
        corner[rng_below(&r, 2)] *= 0.25f;
        const float *dir = attempt >= 10 && attempt % 2 == 1 ? corner : NULL;
        object objs[MAX_OBJECTS];
        int order[MAX_OBJECTS];
        for (int k = 0; k < n_obj; k++) {
            object_draw(&c, &r, owner[k], p_large, bg, &objs[k]);
            order[k] = k;
        }
        rng_shuffle(&r, order, n_obj);
        for (int a = 1; a < n_obj; a++)  // large first (stable insertion sort)
            for (int b = a; b > 0 && objs[order[b]].radius > objs[order[b - 1]].radius; b--) {
                int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
            }
        ok = 1;
        for (int k = 0; k < n_obj && ok; k++) {
            object *p = &objs[order[k]];
            ok = object_put(&c, &r, p, placed, k, dir);
            placed[k] = *p;
        }
        if (ok) memcpy(placed, objs, (size_t)n_obj * sizeof(object));  // entity order
    }
    if (!ok) {
        free(c.cand);
        return err_set("scene_place: %d objects do not fit on a %dx%d canvas (%d attempts)",
                       n_obj, width, height, PLACE_ATTEMPTS);
    }
    for (int d = 0; d < distractors && n_obj < MAX_OBJECTS; d++) {
        object *p = &placed[n_obj];
        if (object_draw(&c, &r, -1, 0.5f, bg, p)) continue;  // it would change a count
        if (object_put(&c, &r, p, placed, n_obj, NULL)) { n_obj++; continue; }
        if (p->size == SIZE_SMALL) continue;
        p->size = SIZE_SMALL;  // a large one did not fit: try small before giving up on it
        p->radius = scene_radius(SIZE_SMALL, width, height);
        int clash = 0;
        for (int j = 0; j < g->n_entities; j++) clash |= object_fits_entity(p, &g->entities[j]);
        if (!clash && object_put(&c, &r, p, placed, n_obj, NULL)) n_obj++;
    }
    free(c.cand);
    out->width = width, out->height = height, out->background = bg, out->n_objects = n_obj;
    memcpy(out->objects, placed, (size_t)n_obj * sizeof(object));
    return 0;
}
