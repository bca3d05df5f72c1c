// The detector (see detect.h for the method).
#include "data/detect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/render.h"
#include "runtime/error.h"

#define SEED_ALPHA 0.45f   // least blend fraction that starts an object's component
#define GROW_ALPHA 0.2f    // ... that extends one (hysteresis: thin blurred strokes stay whole)
#define WINDOW_PAD 4       // px around a component's box at 32x32: holds blur tails (sigma <= 1.5)
#define MAX_KERNEL_RADIUS 32
#define FIT_MAX_ERR 0.35f  // a component whose best template leaves more relative error is dropped
#define N_SIGMAS 6  // blurs the templates try, in pixels at 32x32 (scaled with the canvas)
static const float fit_sigmas[N_SIGMAS] = {0.0f, 0.5f, 0.7f, 0.9f, 1.1f, 1.4f};

typedef struct unmix {
    float bg[3];
    float v[COLOR_OBJECT_COUNT][3];  // object colour - background
    float inv2[COLOR_OBJECT_COUNT];  // 1 / |v|^2, 0 for a colour that cannot be told from bg
} unmix;

// Blend fraction of colour c in pixel p and the distance of p from the bg -> c line.
static float unmix_alpha(const unmix *u, int c, const uint8_t *p, float *resid) {
    float d[3] = {p[0] - u->bg[0], p[1] - u->bg[1], p[2] - u->bg[2]};
    float a = (d[0] * u->v[c][0] + d[1] * u->v[c][1] + d[2] * u->v[c][2]) * u->inv2[c];
    float r2 = 0;
    for (int ch = 0; ch < 3; ch++) {
        float e = d[ch] - a * u->v[c][ch];
        r2 += e * e;
    }
    *resid = sqrtf(r2);
    return a;
}

// The colour a pixel may belong to (blend at least GROW_ALPHA), or -1 for background;
// *a gets the blend. The residual allowed grows with the blend so that slightly off
// colours (generated images) still count.
static int pixel_class(const unmix *u, const uint8_t *p, float *alpha) {
    int best = -1;
    float best_res = INFINITY;
    *alpha = 0;
    for (int c = 0; c < COLOR_OBJECT_COUNT; c++) {
        if (u->inv2[c] == 0) continue;
        float res, a = unmix_alpha(u, c, p, &res);
        if (a < GROW_ALPHA) continue;
        float tol = fmaxf(48.0f, 0.3f * a / sqrtf(u->inv2[c]));
        if (res <= tol && res < best_res) best = c, best_res = res, *alpha = a;
    }
    return best;
}

static int u8_median(const uint8_t *x, int n, int stride) {
    int hist[256] = {0}, acc = 0;
    for (int i = 0; i < n; i++) hist[x[i * stride]]++;
    for (int v = 0; v < 256; v++)
        if ((acc += hist[v]) * 2 >= n) return v;
    return 255;
}

static int background_find(const uint8_t *rgb, int w, int h, float bg[3]) {
    int n = 0;
    uint8_t *b = malloc((size_t)(2 * (w + h)) * 3);
    CHECK(b);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (y == 0 || y == h - 1 || x == 0 || x == w - 1) memcpy(b + 3 * n++, rgb + 3 * (y * w + x), 3);
    for (int ch = 0; ch < 3; ch++) bg[ch] = (float)u8_median(b + ch, n, 3);
    free(b);
    int best = 0;
    float best_d = INFINITY;
    for (int c = 0; c < COLOR_COUNT; c++) {
        float d = 0;
        for (int ch = 0; ch < 3; ch++) d += (bg[ch] - color_rgb[c][ch]) * (bg[ch] - color_rgb[c][ch]);
        if (d < best_d) best = c, best_d = d;
    }
    return best;
}

// Separable Gaussian blur of a w x h map with zero padding (the template is zero outside).
static void map_blur(const float *src, float *dst, float *tmp, int w, int h, float sigma) {
    if (sigma <= 0) {
        memcpy(dst, src, (size_t)w * h * sizeof(float));
        return;
    }
    float k[2 * MAX_KERNEL_RADIUS + 1];
    int kr = (int)ceilf(2.5f * sigma);
    if (kr > MAX_KERNEL_RADIUS) kr = MAX_KERNEL_RADIUS;
    float sum = 0;
    for (int t = -kr; t <= kr; t++) sum += k[t + kr] = expf(-0.5f * t * t / (sigma * sigma));
    for (int t = 0; t <= 2 * kr; t++) k[t] /= sum;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float acc = 0;
            for (int t = -kr; t <= kr; t++)
                if (x + t >= 0 && x + t < w) acc += k[t + kr] * src[y * w + x + t];
            tmp[y * w + x] = acc;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float acc = 0;
            for (int t = -kr; t <= kr; t++)
                if (y + t >= 0 && y + t < h) acc += k[t + kr] * tmp[(y + t) * w + x];
            dst[y * w + x] = acc;
        }
}

// Radius at which the shape's drawn area equals `mass` (areas grow with r).
static float radius_for_area(int shape, int fill, float mass, float r_max) {
    float lo = 0.25f, hi = r_max;
    for (int it = 0; it < 30; it++) {
        float mid = 0.5f * (lo + hi);
        if (shape_area(shape, fill, mid) < mass) lo = mid;
        else hi = mid;
    }
    return 0.5f * (lo + hi);
}

// Squared error between obs and the template (shape, fill, r) centred so that its
// centroid is (mx, my), blurred by sigma. Scratch: 3 n floats.
static float template_sse(const float *obs, int ww, int wh, float mx, float my, int shape,
                          int fill, float r, float sigma, float *scratch) {
    int n = ww * wh;
    float *tpl = scratch, *blur = scratch + n, *tmp = scratch + 2 * n;
    float bx = mx, by = my - shape_centroid_dy(shape, fill, r);
    // coverage is zero outside the shape's box: draw only the box
    memset(tpl, 0, (size_t)n * sizeof(float));
    int ty0 = (int)floorf(by - r), ty1 = (int)ceilf(by + r);
    int tx0 = (int)floorf(bx - r), tx1 = (int)ceilf(bx + r);
    for (int y = ty0 < 0 ? 0 : ty0; y <= ty1 && y < wh; y++)
        for (int x = tx0 < 0 ? 0 : tx0; x <= tx1 && x < ww; x++)
            tpl[y * ww + x] = shape_coverage(shape, fill, r, x - bx, y - by);
    map_blur(tpl, blur, tmp, ww, wh, sigma);
    float sse = 0;
    for (int i = 0; i < n; i++) sse += (obs[i] - blur[i]) * (obs[i] - blur[i]);
    return sse;
}

// Best template for the coverage map obs (ww x wh; centroid (mx, my) and total `mass`
// in window coordinates) over every shape and fill: first at the radius whose area is
// the mass, under every blur of the list (scaled to the canvas, m = its smaller side);
// then, at that blur, 5% and 10% either side of the radius (blur and noise bias the
// mass). Returns the least squared error; scratch: 3 ww*wh floats.
static float fit_templates(const float *obs, int ww, int wh, float mx, float my, float mass,
                           float m, float *scratch, int *shape_out, int *fill_out, float *r_out) {
    float best = INFINITY, sigma_scale = m > 32 ? m / 32 : 1;
    for (int shape = 0; shape < SHAPE_COUNT; shape++)
        for (int fill = 0; fill < FILL_COUNT; fill++) {
            float r0 = radius_for_area(shape, fill, mass, m), best_h = INFINITY, sigma = 0;
            for (int k = 0; k < N_SIGMAS; k++) {
                float s = fit_sigmas[k] * sigma_scale;
                float e = template_sse(obs, ww, wh, mx, my, shape, fill, r0, s, scratch);
                if (e < best_h) best_h = e, sigma = s;
            }
            float r_h = r0;
            for (int rs = -2; rs <= 2; rs++) {
                float r = r0 * (1.0f + 0.05f * rs);
                float e = rs ? template_sse(obs, ww, wh, mx, my, shape, fill, r, sigma, scratch) : best_h;
                if (e < best_h) best_h = e, r_h = r;
            }
            if (best_h < best) best = best_h, *shape_out = shape, *fill_out = fill, *r_out = r_h;
        }
    return best;
}

typedef struct component {
    int color, area;
    int x0, y0, x1, y1;  // box, inclusive
} component;

// Fits the templates to one component; returns 0 and fills *d, or -1 when nothing fits.
static int component_fit(const uint8_t *rgb, int w, int h, const unmix *u, const int *owner,
                         int id, const component *cp, float *buf, detection *d) {
    int m = w < h ? w : h, pad = m > 32 ? WINDOW_PAD * m / 32 : WINDOW_PAD;
    int x0 = cp->x0 - pad, y0 = cp->y0 - pad, x1 = cp->x1 + pad, y1 = cp->y1 + pad;
    x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
    x1 = x1 >= w ? w - 1 : x1, y1 = y1 >= h ? h - 1 : y1;
    int ww = x1 - x0 + 1, wh = y1 - y0 + 1, n = ww * wh;
    float *obs = buf, *tpl = buf + n;  // tpl: 3 n floats of scratch for fit_templates
    float mass = 0, mx = 0, my = 0, energy = 0;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            int i = y * w + x;
            float a = 0, res;
            // pixels nearer another object belong to it (its faint edges can project onto
            // this colour too)
            if (owner[i] == id) {
                a = unmix_alpha(u, cp->color, rgb + 3 * i, &res);
                a = a < -0.5f ? -0.5f : a > 1.5f ? 1.5f : a;
            }
            obs[(y - y0) * ww + x - x0] = a;
            mass += a, mx += a * (x + 0.5f), my += a * (y + 0.5f), energy += a * a;
        }
    // a fifth of the smallest drawn object (a small outlined triangle): less is a speck
    float r_small = scene_radius(SIZE_SMALL, w, h);
    if (mass < 0.2f * shape_area(SHAPE_TRIANGLE, FILL_OUTLINED, r_small)) return -1;
    mx /= mass, my /= mass;
    int shape = 0, fill = 0;
    float r = 0, best = fit_templates(obs, ww, wh, mx - x0, my - y0, mass,
                                  (float)m, tpl, &shape, &fill, &r);
    if (best > FIT_MAX_ERR * energy) return -1;
    float r_split = sqrtf(r_small * scene_radius(SIZE_LARGE, w, h));
    *d = (detection){.color = cp->color, .shape = shape, .fill = fill,
                     .size = r >= r_split ? SIZE_LARGE : SIZE_SMALL,
                     .cx = mx, .cy = my, .area = cp->area};
    return 0;
}

void detect_objects(const uint8_t *rgb, int width, int height, detections *out) {
    memset(out, 0, sizeof *out);
    out->background = COLOR_BLACK;
    if (!rgb || width <= 0 || height <= 0) return;
    int w = width, h = height, np = w * h;
    unmix u;
    out->background = background_find(rgb, w, h, u.bg);
    for (int c = 0; c < COLOR_OBJECT_COUNT; c++) {
        float n2 = 0;
        for (int ch = 0; ch < 3; ch++) {
            u.v[c][ch] = color_rgb[c][ch] - u.bg[ch];
            n2 += u.v[c][ch] * u.v[c][ch];
        }
        // the background's own colour (and anything within 60 of the border) is not an object
        u.inv2[c] = c == out->background || n2 < 60.0f * 60.0f ? 0 : 1.0f / n2;
    }
    int8_t *label = malloc((size_t)np);
    uint8_t *strong = malloc((size_t)np);
    int *comp = malloc((size_t)np * sizeof(int)), *stack = malloc((size_t)np * sizeof(int));
    int *owner = malloc((size_t)np * sizeof(int));
    component *cps = malloc((size_t)np * sizeof(component));
    float *buf = malloc((size_t)np * 4 * sizeof(float));
    detection *cand = malloc((size_t)np * sizeof(detection));
    CHECK(label && strong && comp && owner && stack && cps && buf && cand);
    for (int i = 0; i < np; i++) {
        float a;
        label[i] = (int8_t)pixel_class(&u, rgb + 3 * i, &a);
        strong[i] = a >= SEED_ALPHA;
        comp[i] = -1;
    }

    // connected components, 8-connectivity (specks get ids too, and are skipped below)
    int min_area = (int)(0.004f * np) > 3 ? (int)(0.004f * np) : 3, n_comp = 0, n_cand = 0;
    for (int s = 0; s < np; s++) {
        if (label[s] < 0 || !strong[s] || comp[s] >= 0) continue;
        component *cp = &cps[n_comp];
        *cp = (component){.color = label[s], .x0 = s % w, .x1 = s % w, .y0 = s / w, .y1 = s / w};
        int top = 0;
        stack[top++] = s, comp[s] = n_comp;
        while (top) {
            int i = stack[--top], x = i % w, y = i / w;
            cp->area++;
            cp->x0 = x < cp->x0 ? x : cp->x0, cp->x1 = x > cp->x1 ? x : cp->x1;
            cp->y0 = y < cp->y0 ? y : cp->y0, cp->y1 = y > cp->y1 ? y : cp->y1;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int xx = x + dx, yy = y + dy, j = yy * w + xx;
                    if (xx < 0 || yy < 0 || xx >= w || yy >= h || comp[j] >= 0 || label[j] != cp->color)
                        continue;
                    comp[j] = n_comp, stack[top++] = j;
                }
        }
        n_comp++;
    }
    // every pixel goes to the nearest kept component (chessboard distance, breadth first)
    int head = 0, tail = 0;
    for (int i = 0; i < np; i++) {
        owner[i] = comp[i] >= 0 && cps[comp[i]].area >= min_area ? comp[i] : -1;
        if (owner[i] >= 0) stack[tail++] = i;
    }
    while (head < tail) {
        int i = stack[head++], x = i % w, y = i / w;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                int xx = x + dx, yy = y + dy, j = yy * w + xx;
                if (xx < 0 || yy < 0 || xx >= w || yy >= h || owner[j] >= 0) continue;
                owner[j] = owner[i], stack[tail++] = j;
            }
    }
    for (int k = 0; k < n_comp; k++) {
        if (cps[k].area < min_area) continue;
        if (component_fit(rgb, w, h, &u, owner, k, &cps[k], buf, &cand[n_cand]) == 0) n_cand++;
    }
    // keep the largest MAX_DETECTIONS, in scan order
    while (n_cand > MAX_DETECTIONS) {
        int small = 0;
        for (int k = 1; k < n_cand; k++)
            if (cand[k].area < cand[small].area) small = k;
        memmove(cand + small, cand + small + 1, (size_t)(n_cand - small - 1) * sizeof(detection));
        n_cand--;
    }
    out->n = n_cand;
    memcpy(out->d, cand, (size_t)n_cand * sizeof(detection));
    free(label), free(strong), free(comp), free(owner), free(stack), free(cps), free(buf), free(cand);
}
