// Drawing and degrading shapes-world images; the geometry the detector shares.
#include "data/render.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/rng.h"

#define RENDER_SS 4  // supersamples per pixel side
#define SQRT5 2.2360680f

float scene_radius(int size, int width, int height) {
    float m = (float)(width < height ? width : height);
    return (size == SIZE_LARGE ? 0.19f : 0.11f) * m;
}

// A constant part keeps small outlines at least about a pixel wide at 32x32 (thinner
// strokes anti-alias into half-covered pixels the detector cannot connect); the
// proportional part keeps outlines the same look at larger canvases.
float shape_stroke(float r) { return 0.7f + 0.2f * r; }

// The triangle's inradius: base 2r, height 2r, sides r*sqrt(5).
static float tri_inradius(float r) { return 2.0f * r / (1.0f + SQRT5); }

// Whether the point (x, y), relative to the box centre, is inside the drawn shape.
static int shape_contains(int shape, int fill, float r, float s, float x, float y) {
    float ax = fabsf(x), ay = fabsf(y);
    switch (shape) {
    case SHAPE_CIRCLE: {
        float d2 = x * x + y * y;
        if (d2 > r * r) return 0;
        return fill == FILL_FILLED || s >= r || d2 > (r - s) * (r - s);
    }
    case SHAPE_SQUARE: {
        float d = ax > ay ? ax : ay;
        if (d > r) return 0;
        return fill == FILL_FILLED || d > r - s;
    }
    default: {  // triangle: apex (0, -r), base from (-r, r) to (r, r)
        if (y > r || 2.0f * ax > y + r) return 0;
        if (fill == FILL_FILLED) return 1;
        // inside the triangle inset by s on all three sides -> the hole
        return !(y <= r - s && (y + r - 2.0f * ax) >= s * SQRT5);
    }
    }
}

float shape_coverage(int shape, int fill, float r, float px, float py) {
    float s = shape_stroke(r);
    int hit = 0;
    for (int j = 0; j < RENDER_SS; j++)
        for (int i = 0; i < RENDER_SS; i++)
            hit += shape_contains(shape, fill, r, s, px + (i + 0.5f) / RENDER_SS,
                                  py + (j + 0.5f) / RENDER_SS);
    return hit * (1.0f / (RENDER_SS * RENDER_SS));
}

// Inner (hole) scale of an outlined triangle relative to the whole, about the incentre.
static float tri_hole_scale(float r) {
    float rho = tri_inradius(r), k = (rho - shape_stroke(r)) / rho;
    return k > 0 ? k : 0;
}

float shape_area(int shape, int fill, float r) {
    float s = shape_stroke(r), in = r - s > 0 ? r - s : 0;
    switch (shape) {
    case SHAPE_CIRCLE: return (float)M_PI * (r * r - (fill == FILL_OUTLINED ? in * in : 0));
    case SHAPE_SQUARE: return 4.0f * (r * r - (fill == FILL_OUTLINED ? in * in : 0));
    default: {
        float k = fill == FILL_OUTLINED ? tri_hole_scale(r) : 0;
        return 2.0f * r * r * (1.0f - k * k);
    }
    }
}

float shape_centroid_dy(int shape, int fill, float r) {
    if (shape != SHAPE_TRIANGLE) return 0;
    float c1 = r / 3.0f;  // centroid of the whole triangle
    if (fill == FILL_FILLED) return c1;
    float k = tri_hole_scale(r), yi = r - tri_inradius(r);
    float c2 = yi + k * (c1 - yi);  // the hole is the triangle scaled by k about the incentre
    return (c1 - k * k * c2) / (1.0f - k * k);
}

void scene_render(const scene *s, uint8_t *rgb) {
    int w = s->width, h = s->height;
    const uint8_t *bg = color_rgb[s->background];
    for (int i = 0; i < w * h; i++) memcpy(rgb + 3 * i, bg, 3);
    for (int k = 0; k < s->n_objects; k++) {
        const object *o = &s->objects[k];
        const uint8_t *c = color_rgb[o->color];
        int x0 = (int)floorf(o->cx - o->radius) - 1, x1 = (int)ceilf(o->cx + o->radius) + 1;
        int y0 = (int)floorf(o->cy - o->radius) - 1, y1 = (int)ceilf(o->cy + o->radius) + 1;
        if (x0 < 0) x0 = 0;
        if (y0 < 0) y0 = 0;
        if (x1 > w) x1 = w;
        if (y1 > h) y1 = h;
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                float a = shape_coverage(o->shape, o->fill, o->radius, x - o->cx, y - o->cy);
                if (a <= 0) continue;
                uint8_t *p = rgb + 3 * (y * w + x);
                for (int ch = 0; ch < 3; ch++)
                    p[ch] = (uint8_t)lrintf(p[ch] + a * ((float)c[ch] - p[ch]));
            }
    }
}

// One pass of a 1-D Gaussian along rows (dx=1) or columns, edges clamped.
static void blur_pass(const float *src, float *dst, int w, int h, const float *kern, int kr,
                      int along_x) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < 3; ch++) {
                float acc = 0;
                for (int t = -kr; t <= kr; t++) {
                    int xx = along_x ? x + t : x, yy = along_x ? y : y + t;
                    xx = xx < 0 ? 0 : xx >= w ? w - 1 : xx;
                    yy = yy < 0 ? 0 : yy >= h ? h - 1 : yy;
                    acc += kern[t + kr] * src[3 * (yy * w + xx) + ch];
                }
                dst[3 * (y * w + x) + ch] = acc;
            }
}

void image_degrade(uint8_t *rgb, int width, int height, float blur_sigma, float noise_sd,
                   uint64_t seed) {
    if (width <= 0 || height <= 0) return;
    size_t n = (size_t)width * height * 3;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    CHECK(a && b);
    for (size_t i = 0; i < n; i++) a[i] = rgb[i];
    if (blur_sigma > 0) {
        int kr = (int)ceilf(3.0f * blur_sigma);
        float *kern = malloc((size_t)(2 * kr + 1) * sizeof(float)), sum = 0;
        CHECK(kern);
        for (int t = -kr; t <= kr; t++)
            sum += kern[t + kr] = expf(-0.5f * t * t / (blur_sigma * blur_sigma));
        for (int t = 0; t < 2 * kr + 1; t++) kern[t] /= sum;
        blur_pass(a, b, width, height, kern, kr, 1);
        blur_pass(b, a, width, height, kern, kr, 0);
        free(kern);
    }
    rng r = rng_make(seed, 0x6e6f697365ULL);  // "noise"
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + (noise_sd > 0 ? noise_sd * 255.0f * rng_normal(&r) : 0);
        rgb[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrintf(v));
    }
    free(a);
    free(b);
}
