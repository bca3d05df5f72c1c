// Placement, drawing, degradation and the JSON form of scenes (data/render.h).
// SELMA_RENDER_PNG=path writes a grid of renders (clean and degraded) to look at.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "data/image_io.h"
#include "data/render.h"
#include "runtime/error.h"
#include "runtime/rng.h"
#include "scene_gen.h"

static float centroid_y(const object *o) { return o->cy + shape_centroid_dy(o->shape, o->fill, o->radius); }

// Every property scene_place promises, for one placed graph. Returns the failures.
static int scene_check(const scene_graph *g, const scene *s, int w, int h) {
    int bad = 0, count[MAX_ENTITIES] = {0};
    int bg = g->background == ATTR_UNSET ? COLOR_BLACK : g->background;
    bad += s->width != w || s->height != h || s->background != bg;
    float margin = fmaxf(2.0f, 0.0625f * (float)(w < h ? w : h)) - 1e-4f;
    for (int i = 0; i < s->n_objects; i++) {
        const object *o = &s->objects[i];
        bad += o->color == bg || o->color < 0 || o->color >= COLOR_OBJECT_COUNT;
        bad += o->cx - o->radius < 1 - 1e-4f || o->cx + o->radius > w - 1 + 1e-4f;
        bad += o->cy - o->radius < 1 - 1e-4f || o->cy + o->radius > h - 1 + 1e-4f;
        bad += o->radius != scene_radius(o->size, w, h);
        for (int j = 0; j < i; j++) {  // boxes apart by the gap (2 px at 32x32)
            const object *q = &s->objects[j];
            float apart = fmaxf(fabsf(o->cx - q->cx), fabsf(o->cy - q->cy)) - o->radius - q->radius;
            bad += apart < 2.0f - 1e-4f;
        }
        if (o->entity < 0) continue;
        const entity *e = &g->entities[o->entity];
        count[o->entity]++;
        bad += o->shape != e->shape || (e->color != ATTR_UNSET && o->color != e->color) ||
               (e->size != ATTR_UNSET && o->size != e->size) ||
               (e->fill != ATTR_UNSET && o->fill != e->fill);
    }
    for (int i = 0; i < g->n_entities; i++) bad += count[i] != g->entities[i].count;
    for (int k = 0; k < g->n_relations; k++) {
        const relation *rl = &g->relations[k];
        for (int i = 0; i < s->n_objects; i++)
            for (int j = 0; j < s->n_objects; j++) {
                const object *a = &s->objects[i], *b = &s->objects[j];
                if (a->entity != rl->a || b->entity != rl->b) continue;
                switch (rl->kind) {
                case REL_LEFT_OF: bad += !(a->cx + margin <= b->cx); break;
                case REL_RIGHT_OF: bad += !(a->cx >= b->cx + margin); break;
                case REL_ABOVE:
                    bad += !(a->cy + margin <= b->cy && centroid_y(a) + margin <= centroid_y(b));
                    break;
                default:
                    bad += !(a->cy >= b->cy + margin && centroid_y(a) >= centroid_y(b) + margin);
                }
            }
    }
    return bad;
}

static void test_place_random(int size, int n_graphs) {
    rng r = rng_make(77, (uint64_t)size);
    int placed = 0, bad = 0;
    for (int k = 0; k < n_graphs; k++) {
        scene_graph g = scene_gen_graph(&r, 8);
        scene s;
        if (scene_place(&g, size, size, 0, (uint64_t)k, &s)) continue;
        placed++;
        int b = scene_check(&g, &s, size, size);
        EXPECT(b == 0, "graph %d at %dx%d: %d violations", k, size, size, b);
        bad += b;
    }
    printf("placement %dx%d: %d of %d random graphs placed (%.4f)\n", size, size, placed, n_graphs,
           (double)placed / n_graphs);
    EXPECT(placed >= 0.99 * n_graphs, "%d of %d placed", placed, n_graphs);
}

static void test_place_deterministic(void) {
    rng r = rng_make(5, 5);
    uint8_t a[32 * 32 * 3], b[32 * 32 * 3];
    int same_seed_differs = 0, other_seed_same = 0;
    for (int k = 0; k < 50; k++) {
        scene_graph g = scene_gen_graph(&r, 6);
        scene s1, s2, s3;
        if (scene_place(&g, 32, 32, 2, 9, &s1)) continue;
        EXPECT(scene_place(&g, 32, 32, 2, 9, &s2) == 0, "%s", err_msg());
        same_seed_differs += memcmp(&s1, &s2, sizeof s1) != 0;
        scene_render(&s1, a);
        scene_render(&s2, b);
        same_seed_differs += memcmp(a, b, sizeof a) != 0;
        if (scene_place(&g, 32, 32, 2, 10, &s3) == 0) other_seed_same += !memcmp(&s1, &s3, sizeof s1);
    }
    EXPECT(same_seed_differs == 0, "%d scenes or images differ for one seed", same_seed_differs);
    EXPECT(other_seed_same == 0, "%d scenes equal for two seeds", other_seed_same);
}

static scene_graph graph_two(int kind1, int kind2) {
    scene_graph g = {.n_entities = 2, .background = ATTR_UNSET, .n_relations = 2};
    for (int i = 0; i < 2; i++)
        g.entities[i] = (entity){.shape = i, .color = ATTR_UNSET, .size = ATTR_UNSET,
                                 .fill = ATTR_UNSET, .count = 1};
    g.relations[0] = (relation){0, 1, kind1};
    g.relations[1] = (relation){1, 0, kind2};
    return g;
}

static void expect_rejected(const scene_graph *g, int w, int h, const char *what, const char *msg_part) {
    scene s;
    err_clear();
    int rc = scene_place(g, w, h, 0, 1, &s);
    EXPECT(rc == -1 && strstr(err_msg(), msg_part), "%s: rc %d, message '%s'", what, rc, err_msg());
}

static void test_place_rejects(void) {
    scene_graph g = graph_two(REL_LEFT_OF, REL_LEFT_OF);
    expect_rejected(&g, 32, 32, "a left of b left of a", "contradictory");
    g = graph_two(REL_ABOVE, REL_ABOVE);
    expect_rejected(&g, 32, 32, "a above b above a", "contradictory");
    g = graph_two(REL_LEFT_OF, REL_RIGHT_OF);  // the same fact twice
    scene s;
    EXPECT(scene_place(&g, 32, 32, 0, 1, &s) == 0 && s.objects[0].cx < s.objects[1].cx, "%s", err_msg());
    g.n_entities = 3;  // a cycle through three entities
    g.entities[2] = g.entities[0];
    g.entities[2].shape = SHAPE_TRIANGLE;
    g.relations[0] = (relation){0, 1, REL_BELOW};
    g.relations[1] = (relation){1, 2, REL_BELOW};
    g.relations[2] = (relation){2, 0, REL_BELOW};
    g.n_relations = 3;
    expect_rejected(&g, 32, 32, "a below b below c below a", "contradictory");
    g = graph_two(REL_LEFT_OF, REL_RIGHT_OF);
    g.relations[0].b = 0;
    expect_rejected(&g, 32, 32, "a left of a", "itself");
    g = graph_two(REL_LEFT_OF, REL_RIGHT_OF);
    g.entities[0].color = COLOR_RED, g.background = COLOR_RED;
    expect_rejected(&g, 32, 32, "red on red", "background");
    g = graph_two(REL_LEFT_OF, REL_RIGHT_OF);
    g.entities[0].count = 4, g.entities[1].count = 4;
    g.entities[0].size = g.entities[1].size = SIZE_LARGE;
    expect_rejected(&g, 32, 32, "eight large objects", "do not fit");
    g.entities[0].count = 6, g.entities[1].count = 5;
    expect_rejected(&g, 64, 64, "eleven objects", "at most");
    g = graph_two(REL_LEFT_OF, REL_RIGHT_OF);
    expect_rejected(&g, 5, 7, "5x7 canvas", "too small");
    g.entities[1].shape = 7;
    expect_rejected(&g, 32, 32, "shape 7", "shape");
}

// Distractors: extra objects with entity -1 that fit no entity's description.
static void test_place_distractors(void) {
    scene_graph g = {.n_entities = 1, .background = ATTR_UNSET};
    g.entities[0] = (entity){.shape = SHAPE_CIRCLE, .color = COLOR_RED, .size = ATTR_UNSET,
                             .fill = ATTR_UNSET, .count = 1};
    int extra = 0;
    for (int k = 0; k < 50; k++) {
        scene s;
        EXPECT(scene_place(&g, 32, 32, 3, (uint64_t)k, &s) == 0, "%s", err_msg());
        EXPECT(scene_check(&g, &s, 32, 32) == 0, "seed %d", k);
        for (int i = 1; i < s.n_objects; i++) {
            const object *o = &s.objects[i];
            EXPECT(o->entity == -1 && !(o->shape == SHAPE_CIRCLE && o->color == COLOR_RED),
                   "distractor %d: entity %d, %s %s", i, o->entity, color_names[o->color], shape_names[o->shape]);
        }
        extra += s.n_objects - 1;
    }
    printf("distractors: %.2f of 3 placed per scene\n", extra / 50.0);
    EXPECT(extra >= 100, "%d distractors in 50 scenes", extra);
}

// Drawing: the border is background, a filled object's centre pixel is its colour, an
// outlined circle's or square's centre shows the background; odd sizes do not crash.
static void test_render_pixels(void) {
    rng r = rng_make(3, 3);
    uint8_t img[64 * 64 * 3];
    int bad_border = 0, bad_centre = 0;
    for (int k = 0; k < 100; k++) {
        scene_graph g = scene_gen_graph(&r, 6);
        scene s;
        int w = 32 + 32 * (k % 2);
        if (scene_place(&g, w, w, 1, (uint64_t)k, &s)) continue;
        scene_render(&s, img);
        for (int x = 0; x < w; x++)
            for (int e = 0; e < 2; e++) {
                bad_border += memcmp(img + 3 * (e * (w - 1) * w + x), color_rgb[s.background], 3) != 0;
                bad_border += memcmp(img + 3 * (x * w + e * (w - 1)), color_rgb[s.background], 3) != 0;
            }
        for (int i = 0; i < s.n_objects; i++) {
            const object *o = &s.objects[i];
            int x = (int)o->cx, y = (int)centroid_y(o);
            const uint8_t *p = img + 3 * (y * w + x);
            if (o->fill == FILL_FILLED) bad_centre += memcmp(p, color_rgb[o->color], 3) != 0;
            else if (o->shape != SHAPE_TRIANGLE) bad_centre += memcmp(p, color_rgb[s.background], 3) != 0;
        }
    }
    EXPECT(bad_border == 0, "%d border pixels are not background", bad_border);
    EXPECT(bad_centre == 0, "%d object centres have the wrong colour", bad_centre);
    scene s = {.width = 1, .height = 1, .background = COLOR_GRAY, .n_objects = 1};
    s.objects[0] = (object){.shape = SHAPE_CIRCLE, .color = COLOR_RED, .cx = 0.5f, .cy = 0.5f, .radius = 3};
    scene_render(&s, img);  // an object larger than the canvas is clipped
    EXPECT(img[0] == color_rgb[COLOR_RED][0], "1x1: %d", img[0]);
    s.width = 5, s.height = 7, s.objects[0].cx = 4.5f, s.objects[0].cy = -1;
    scene_render(&s, img);
    EXPECT(memcmp(img + 3 * 34, color_rgb[COLOR_GRAY], 3) == 0, "5x7 bottom-right pixel");
}

// Geometry: the exact areas and centroid offsets agree with the drawn (sampled) shapes,
// averaged over sub-pixel offsets that span the 4x4 sample grid's period (1/4 px), so
// that the sampling's own bias (up to 1/8 px per edge at one offset) cancels.
static void test_geometry(void) {
    for (int shape = 0; shape < SHAPE_COUNT; shape++)
        for (int fill = 0; fill < FILL_COUNT; fill++)
            for (float r = 3; r <= 13; r += 2.5f) {
                double area = 0, my = 0;
                for (int k = 0; k < 4; k++) {
                    float o = 0.0625f * k - 0.09375f;  // sample lattice at 1/8, 3/8, 5/8, 7/8 of its period
                    for (int y = -15; y < 15; y++)
                        for (int x = -15; x < 15; x++) {
                            float c = shape_coverage(shape, fill, r, x + o, y + o);
                            area += c / 4, my += c * (y + o + 0.5f) / 4;
                        }
                }
                EXPECT_NEAR(area, shape_area(shape, fill, r), 0.3 + 0.05 * r, 0.01);
                EXPECT_NEAR(my / area, shape_centroid_dy(shape, fill, r), 0.05, 0.0);
            }
}

static void test_degrade(void) {
    uint8_t a[32 * 32 * 3], b[32 * 32 * 3];
    for (int i = 0; i < 32 * 32 * 3; i++) a[i] = (uint8_t)(i * 7 % 256);
    memcpy(b, a, sizeof a);
    image_degrade(b, 32, 32, 0, 0, 1);
    EXPECT(memcmp(a, b, sizeof a) == 0, "no blur and no noise changes the image");
    // noise: sd as a fraction of 255 on a mid-gray image, seeded
    for (int i = 0; i < 32 * 32 * 3; i++) a[i] = b[i] = 128;
    image_degrade(a, 32, 32, 0, 0.05f, 4);
    image_degrade(b, 32, 32, 0, 0.05f, 4);
    EXPECT(memcmp(a, b, sizeof a) == 0, "one seed, one result");
    double s1 = 0, s2 = 0;
    for (int i = 0; i < 32 * 32 * 3; i++) s1 += a[i] - 128.0, s2 += (a[i] - 128.0) * (a[i] - 128.0);
    double n = 32 * 32 * 3, sd = sqrt(s2 / n - (s1 / n) * (s1 / n));
    EXPECT_NEAR(sd, 0.05 * 255, 0.0, 0.05);
    EXPECT_NEAR(s1 / n, 0.0, 0.5, 0.0);
    // blur: a flat image stays flat, a single dot spreads with its mass kept
    memset(a, 0, sizeof a);
    a[3 * (16 * 32 + 16)] = 200;
    image_degrade(a, 32, 32, 1.0f, 0, 1);
    int sum = 0;
    for (int i = 0; i < 32 * 32; i++) sum += a[3 * i];
    EXPECT(a[3 * (16 * 32 + 16)] < 40 && a[3 * (16 * 32 + 17)] > 10 && abs(sum - 200) <= 25,
           "dot: centre %d, neighbour %d, sum %d", a[3 * (16 * 32 + 16)], a[3 * (16 * 32 + 17)], sum);
    for (int i = 0; i < 32 * 32 * 3; i++) a[i] = 90;
    image_degrade(a, 32, 32, 1.5f, 0, 1);
    int flat = 1;
    for (int i = 0; i < 32 * 32 * 3; i++) flat &= a[i] == 90;
    EXPECT(flat, "blurred flat image not flat");
    image_degrade(a, 1, 1, 2.0f, 0.1f, 1);  // degenerate sizes
    image_degrade(a, 5, 7, 0.8f, 0.05f, 1);
    image_degrade(a, 0, 0, 0.8f, 0.05f, 1);
}

static void test_json(void) {
    rng r = rng_make(8, 8);
    int n = 0;
    for (int k = 0; k < 100; k++) {
        scene_graph g = scene_gen_graph(&r, 8);
        scene s, t;
        if (scene_place(&g, 32, 48, 2, (uint64_t)k, &s)) continue;
        char *text;
        EXPECT(scene_to_json(&s, &text) == 0, "%s", err_msg());
        EXPECT(scene_from_json(text, &t) == 0, "%s: %s", text, err_msg());
        EXPECT(memcmp(&s, &t, sizeof s) == 0, "round trip differs: %s", text);
        if (k == 0) printf("scene JSON: %.200s...\n", text);
        free(text);
        n++;
    }
    EXPECT(n >= 90, "%d scenes", n);
    const char *bad[] = {
        "", "[1, 2]", "{\"width\": 32}", "not json",
        "{\"width\": 32, \"height\": 32, \"background\": \"pink\", \"objects\": []}",
        "{\"width\": 0, \"height\": 32, \"background\": \"black\", \"objects\": []}",
        "{\"width\": 32, \"height\": 32, \"background\": \"black\", \"objects\": [{\"shape\": \"circle\"}]}",
        "{\"width\": 32, \"height\": 32, \"background\": \"black\", \"objects\": [{\"shape\": \"circle\", "
        "\"color\": \"gray\", \"size\": \"small\", \"fill\": \"filled\", \"cx\": 5, \"cy\": 5, \"radius\": 3, \"entity\": 0}]}",
        "{\"width\": 32, \"height\": 32, \"background\": \"black\", \"objects\": [{\"shape\": \"circle\", "
        "\"color\": \"red\", \"size\": \"small\", \"fill\": \"filled\", \"cx\": 5, \"cy\": 5, \"radius\": -3, \"entity\": 0}]}",
    };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        scene t;
        err_clear();
        EXPECT(scene_from_json(bad[i], &t) == -1 && err_msg()[0], "bad JSON %d accepted", i);
    }
    scene t;
    EXPECT(scene_from_json("{\"width\": 32, \"height\": 32, \"background\": \"gray\", \"objects\": []}", &t) == 0 &&
           t.background == COLOR_GRAY && t.n_objects == 0, "%s", err_msg());
}

// A grid of renders to look at: clean, then the same scenes blurred and noisy.
static void png_dump(const char *path) {
    enum { N = 16, W = 32 };
    uint8_t *img = malloc((size_t)2 * N * W * W * 3);
    rng r = rng_make(11, 0);
    int n = 0;
    while (n < N) {
        scene_graph g = scene_gen_graph(&r, 6);
        scene s;
        if (scene_place(&g, W, W, 1, (uint64_t)n, &s)) continue;
        scene_render(&s, img + (size_t)n * W * W * 3);
        memcpy(img + (size_t)(N + n) * W * W * 3, img + (size_t)n * W * W * 3, W * W * 3);
        image_degrade(img + (size_t)(N + n) * W * W * 3, W, W, 0.8f, 0.05f, (uint64_t)n);
        n++;
    }
    EXPECT(png_write_grid(path, img, 2 * N, W, W, N / 2, 4, NULL) == 0, "%s", err_msg());
    printf("wrote %s\n", path);
    free(img);
}

int main(void) {
    test_place_random(32, 2000);
    test_place_random(64, 300);
    test_place_deterministic();
    test_place_rejects();
    test_place_distractors();
    test_render_pixels();
    test_geometry();
    test_degrade();
    test_json();
    const char *png = getenv("SELMA_RENDER_PNG");
    if (png) png_dump(png);
    return check_report("test_render");
}
