// The detector's accuracy on rendered scenes, clean and degraded, at 32x32 and 64x64
// (and at SELMA_DETECT_SIZE if set, and under SELMA_DETECT_DEGRADE="sigma,sd"), and its
// behaviour on images that hold no scene.
// Detections are matched to objects one to one, nearest centroids first; an object
// without a detection within its radius counts as wrong on every attribute.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "data/detect.h"
#include "data/render.h"
#include "runtime/error.h"
#include "runtime/rng.h"
#include "scene_gen.h"

typedef struct tally {
    int objects, color, shape, size, fill, position;  // per object
    int images, count, background;                   // per image
    int pairs, order;  // object pairs apart by >= 2 px on an axis, and those whose order holds
} tally;

static int verbose;

static void scene_score(const scene *s, const detections *d, tally *t) {
    int match[MAX_OBJECTS], used[MAX_DETECTIONS] = {0};
    float tx[MAX_OBJECTS], ty[MAX_OBJECTS];
    for (int i = 0; i < s->n_objects; i++) {
        const object *o = &s->objects[i];
        tx[i] = o->cx, ty[i] = o->cy + shape_centroid_dy(o->shape, o->fill, o->radius);
        match[i] = -1;
    }
    for (;;) {  // greedy one-to-one matching, nearest pair first
        int bi = -1, bj = -1;
        float bd = INFINITY;
        for (int i = 0; i < s->n_objects; i++)
            for (int j = 0; j < d->n; j++) {
                if (match[i] >= 0 || used[j]) continue;
                float dd = hypotf(d->d[j].cx - tx[i], d->d[j].cy - ty[i]);
                if (dd < bd && dd < s->objects[i].radius) bd = dd, bi = i, bj = j;
            }
        if (bi < 0) break;
        match[bi] = bj, used[bj] = 1;
    }
    float tol = 0.05f * (float)(s->width < s->height ? s->width : s->height);
    for (int i = 0; i < s->n_objects; i++) {
        const object *o = &s->objects[i];
        t->objects++;
        if (match[i] < 0) {
            if (verbose) printf("  missed %s %s %s %s at (%.1f, %.1f)\n", size_names[o->size],
                                fill_names[o->fill], color_names[o->color], shape_names[o->shape], o->cx, o->cy);
            continue;
        }
        const detection *e = &d->d[match[i]];
        t->color += e->color == o->color, t->shape += e->shape == o->shape;
        t->size += e->size == o->size, t->fill += e->fill == o->fill;
        t->position += hypotf(e->cx - tx[i], e->cy - ty[i]) <= tol;
        if (verbose && (e->shape != o->shape || e->size != o->size || e->fill != o->fill ||
                        e->color != o->color))
            printf("  %s %s %s %s (r %.2f) seen as %s %s %s %s\n", size_names[o->size],
                   fill_names[o->fill], color_names[o->color], shape_names[o->shape], o->radius,
                   size_names[e->size], fill_names[e->fill], color_names[e->color], shape_names[e->shape]);
    }
    for (int i = 0; i < s->n_objects; i++)
        for (int j = i + 1; j < s->n_objects; j++) {
            float gx = tx[j] - tx[i], gy = ty[j] - ty[i];
            for (int axis = 0; axis < 2; axis++) {
                float g = axis ? gy : gx;
                if (fabsf(g) < 2.0f) continue;
                t->pairs++;
                if (match[i] < 0 || match[j] < 0) continue;
                const detection *a = &d->d[match[i]], *b = &d->d[match[j]];
                float e = axis ? b->cy - a->cy : b->cx - a->cx;
                t->order += (e > 0) == (g > 0);
            }
        }
    t->images++;
    t->count += d->n == s->n_objects;
    t->background += d->background == s->background;
    if (verbose && d->n != s->n_objects) printf("  %d objects, %d detections\n", s->n_objects, d->n);
}

static tally tally_run(int size, float blur, float noise, int n_scenes, uint64_t seed) {
    tally t = {0};
    rng r = rng_make(seed, 1);
    uint8_t *img = malloc((size_t)size * size * 3);
    for (int k = 0; k < n_scenes; k++) {
        scene_graph g = scene_gen_graph(&r, 8);
        scene s;
        if (scene_place(&g, size, size, (int)rng_below(&r, 3), seed + (uint64_t)k, &s)) continue;
        scene_render(&s, img);
        image_degrade(img, size, size, blur, noise, seed + (uint64_t)k);
        detections d;
        detect_objects(img, size, size, &d);
        scene_score(&s, &d, &t);
    }
    free(img);
    return t;
}

static double frac(int a, int b) { return b ? (double)a / b : 0; }

static void tally_print(const char *name, const tally *t) {
    printf("%-24s %5d objs %4d imgs | color %.4f shape %.4f size %.4f fill %.4f position %.4f"
           " order %.4f | count %.4f background %.4f\n",
           name, t->objects, t->images, frac(t->color, t->objects), frac(t->shape, t->objects),
           frac(t->size, t->objects), frac(t->fill, t->objects), frac(t->position, t->objects),
           frac(t->order, t->pairs), frac(t->count, t->images), frac(t->background, t->images));
}

// Every attribute at least `lo`; colour, count, position, order and background at least `lo_easy`.
static void tally_expect(const tally *t, double lo, double lo_easy) {
    EXPECT(t->images >= 100, "%d images scored", t->images);
    EXPECT(frac(t->color, t->objects) >= lo_easy, "color %.4f", frac(t->color, t->objects));
    EXPECT(frac(t->position, t->objects) >= lo_easy, "position %.4f", frac(t->position, t->objects));
    EXPECT(frac(t->order, t->pairs) >= lo_easy, "order %.4f", frac(t->order, t->pairs));
    EXPECT(frac(t->count, t->images) >= lo_easy, "count %.4f", frac(t->count, t->images));
    EXPECT(frac(t->background, t->images) >= lo_easy, "background %.4f", frac(t->background, t->images));
    EXPECT(frac(t->shape, t->objects) >= lo, "shape %.4f", frac(t->shape, t->objects));
    EXPECT(frac(t->size, t->objects) >= lo, "size %.4f", frac(t->size, t->objects));
    EXPECT(frac(t->fill, t->objects) >= lo, "fill %.4f", frac(t->fill, t->objects));
}

// Images that hold no scene: flat canvases give nothing, noise next to nothing, and
// degenerate sizes do not crash.
static void test_no_scene(void) {
    uint8_t img[64 * 64 * 3];
    detections d;
    for (int c = 0; c < COLOR_COUNT; c++) {
        for (int i = 0; i < 32 * 32; i++) memcpy(img + 3 * i, color_rgb[c], 3);
        detect_objects(img, 32, 32, &d);
        EXPECT(d.n == 0 && d.background == c, "flat %s: %d detections, background %d",
               color_names[c], d.n, d.background);
        image_degrade(img, 32, 32, 0.8f, 0.05f, (uint64_t)c);
        detect_objects(img, 32, 32, &d);
        EXPECT(d.n == 0 && d.background == c, "noisy flat %s: %d detections", color_names[c], d.n);
    }
    rng r = rng_make(5, 0);
    int total = 0;
    for (int k = 0; k < 50; k++) {
        for (int i = 0; i < 32 * 32 * 3; i++) img[i] = (uint8_t)rng_below(&r, 256);
        detect_objects(img, 32, 32, &d);
        total += d.n;
        EXPECT(d.n <= MAX_DETECTIONS, "%d", d.n);
    }
    printf("uniform noise 32x32: %.2f detections per image\n", total / 50.0);
    EXPECT(total <= 50, "uniform noise: %d detections in 50 images", total);
    int sizes[][2] = {{1, 1}, {5, 7}, {7, 5}, {1, 64}, {64, 1}, {2, 2}, {3, 64}};
    for (int k = 0; k < 7; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        for (int i = 0; i < w * h * 3; i++) img[i] = (uint8_t)rng_below(&r, 256);
        detect_objects(img, w, h, &d);
        EXPECT(d.n >= 0 && d.n <= MAX_DETECTIONS, "%dx%d: %d", w, h, d.n);
        image_degrade(img, w, h, 0.8f, 0.05f, 1);
    }
    detect_objects(img, 0, 0, &d);
    EXPECT(d.n == 0, "0x0: %d", d.n);
}

int main(void) {
    verbose = getenv("SELMA_DETECT_VERBOSE") != NULL;
    tally t = tally_run(32, 0, 0, 500, 1000);
    tally_print("clean 32x32", &t);
    tally_expect(&t, 0.99, 0.99);
    t = tally_run(32, 0.8f, 0.05f, 500, 2000);
    tally_print("blur 0.8 noise 0.05 32", &t);
    tally_expect(&t, 0.97, 0.98);  // measured: >= 0.996 on every attribute
    t = tally_run(64, 0, 0, 150, 3000);
    tally_print("clean 64x64", &t);
    tally_expect(&t, 0.99, 0.99);
    const char *extra = getenv("SELMA_DETECT_SIZE");
    if (extra && atoi(extra) >= 16) {
        int n = atoi(extra);
        char name[32];
        snprintf(name, sizeof name, "clean %dx%d", n, n);
        t = tally_run(n, 0, 0, 150, 4000);
        tally_print(name, &t);
        tally_expect(&t, 0.99, 0.99);
    }
    // SELMA_DETECT_DEGRADE="sigma,sd": one more degradation at 32x32, printed only
    const char *deg = getenv("SELMA_DETECT_DEGRADE");
    float sigma, sd;
    if (deg && sscanf(deg, "%f,%f", &sigma, &sd) == 2) {
        char name[48];
        snprintf(name, sizeof name, "blur %.2g noise %.2g 32", sigma, sd);
        t = tally_run(32, sigma, sd, 500, 2000);
        tally_print(name, &t);
    }
    test_no_scene();
    return check_report("test_detect");
}
