// The image-quality figure of image_quality.h: per-image features, then KID.
#include "data/image_quality.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/detect.h"
#include "data/shapes.h"
#include "runtime/error.h"
#include "runtime/rng.h"

#define PALETTE_RADIUS 40.0f   // RGB distance that still counts as a palette colour
#define BLEND_RADIUS 30.0f     // distance from the bg -> colour line that counts as a blend
#define FOREGROUND_DIST 60.0f  // farther than this from the background: foreground
#define SD_FLOOR 0.05          // smallest standard deviation used to standardize
#define SQUASH 1.0             // standardized values beyond about this are compressed
#define TOP_GRADIENT 0.03      // share of pixels whose mean gradient is the sharpness
#define MAX_PIXELS (1 << 26)

static const float grad_edges[IQ_EDGES - 1] = {32, 64, 96, 128, 160, 192, 224};

static float dist3(const float *a, const float *b) {
    float d0 = a[0] - b[0], d1 = a[1] - b[1], d2 = a[2] - b[2];
    return sqrtf(d0 * d0 + d1 * d1 + d2 * d2);
}

static void palette_rgb(int c, float *out) {
    for (int k = 0; k < 3; k++) out[k] = color_rgb[c][k];
}

// palette (10): per palette colour, blend, off-palette; fractions of the canvas
static void palette_features(const uint8_t *rgb, int npix, int bg, float *out) {
    double count[IQ_PALETTE] = {0};
    float pal[COLOR_COUNT][3], bgc[3];
    for (int c = 0; c < COLOR_COUNT; c++) palette_rgb(c, pal[c]);
    palette_rgb(bg, bgc);
    for (int i = 0; i < npix; i++) {
        float p[3] = {rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]};
        int best = 0;
        float bd = INFINITY;
        for (int c = 0; c < COLOR_COUNT; c++) {
            float d = dist3(p, pal[c]);
            if (d < bd) bd = d, best = c;
        }
        if (bd < PALETTE_RADIUS) { count[best]++; continue; }
        int blend = 0;
        for (int c = 0; c < COLOR_OBJECT_COUNT && !blend; c++) {
            if (c == bg) continue;
            float dir[3], rel[3], dd = 0, dot = 0;
            for (int k = 0; k < 3; k++) {
                dir[k] = pal[c][k] - bgc[k], rel[k] = p[k] - bgc[k];
                dd += dir[k] * dir[k], dot += dir[k] * rel[k];
            }
            float a = dot / dd, q[3];
            if (a <= 0 || a >= 1) continue;
            for (int k = 0; k < 3; k++) q[k] = bgc[k] + a * dir[k];
            blend = dist3(p, q) < BLEND_RADIUS;
        }
        count[blend ? COLOR_COUNT : COLOR_COUNT + 1]++;
    }
    for (int k = 0; k < IQ_PALETTE; k++) out[k] = (float)(count[k] / npix);
}

// median of n values 0..255 given their histogram
static int hist_median(const int *hist, int n) {
    int acc = 0;
    for (int v = 0; v < 256; v++)
        if ((acc += hist[v]) * 2 >= n) return v;
    return 255;
}

// background (3): border robust sd, Immerkaer sd, tint
static void background_features(const uint8_t *rgb, int w, int h, float *out) {
    int nb = 0, med[3];
    double mad_sum = 0;
    for (int k = 0; k < 3; k++) {
        int hist[256] = {0}, dev[256] = {0};
        nb = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if (y == 0 || x == 0 || y == h - 1 || x == w - 1) hist[rgb[(y * w + x) * 3 + k]]++, nb++;
        med[k] = hist_median(hist, nb);
        for (int v = 0; v < 256; v++) dev[abs(v - med[k])] += hist[v];
        mad_sum += 1.4826 * hist_median(dev, nb);
    }
    out[0] = (float)(mad_sum / 3 / 255);
    // Immerkaer, per channel: the mask [1 -2 1; -2 4 -2; 1 -2 1] cancels smooth
    // structure; the mean of |response| times sqrt(pi/2)/6 is the sd of Gaussian noise
    double s = 0;
    if (w >= 3 && h >= 3) {
        static const int m[3][3] = {{1, -2, 1}, {-2, 4, -2}, {1, -2, 1}};
        for (int y = 1; y < h - 1; y++)
            for (int x = 1; x < w - 1; x++)
                for (int k = 0; k < 3; k++) {
                    int r = 0;
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++)
                            r += m[dy + 1][dx + 1] * rgb[((size_t)(y + dy) * w + x + dx) * 3 + k];
                    s += abs(r);
                }
        s *= sqrt(M_PI / 2) / (6.0 * 3 * (w - 2) * (h - 2));
    }
    out[1] = (float)(s / 255);
    float m3[3] = {(float)med[0], (float)med[1], (float)med[2]}, pal[3], best = INFINITY;
    for (int c = 0; c < COLOR_COUNT; c++) {
        palette_rgb(c, pal);
        float d = dist3(m3, pal);
        if (d < best) best = d;
    }
    out[2] = best / 255;
}

static int cmp_float_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

// edges (8): fractions of pixels whose gradient magnitude reaches each threshold (7; a
// survival function rather than a histogram, so that each entry grows monotonically
// with noise) and the mean of the top 3% / 255
static void edge_features(const uint8_t *rgb, int w, int h, float *out) {
    int npix = w * h;
    float *mag = malloc((size_t)npix * sizeof(float));
    CHECK(mag);
    double above[IQ_EDGES - 1] = {0};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            float s = 0;
            for (int k = 0; k < 3; k++) {
                float dx = x + 1 < w ? (float)p[3 + k] - p[k] : 0;
                float dy = y + 1 < h ? (float)p[(size_t)w * 3 + k] - p[k] : 0;
                s += dx * dx + dy * dy;
            }
            float g = mag[y * w + x] = sqrtf(s);
            for (int b = 0; b < IQ_EDGES - 1 && g >= grad_edges[b]; b++) above[b]++;
        }
    for (int b = 0; b < IQ_EDGES - 1; b++) out[b] = (float)(above[b] / npix);
    int top = (int)ceil(TOP_GRADIENT * npix);
    qsort(mag, (size_t)npix, sizeof(float), cmp_float_desc);
    double s = 0;
    for (int i = 0; i < top; i++) s += mag[i];
    out[IQ_EDGES - 1] = (float)(s / top / 255);
    free(mag);
}

// layout (64): 8x8 luminance area means. Pixel x covers [x, x+1); cell c covers
// [c w/8, (c+1) w/8); each pixel adds its overlap with every cell it touches.
static void layout_features(const uint8_t *rgb, int w, int h, float *out) {
    double acc[IQ_LAYOUT] = {0};
    double cw = w / 8.0, ch = h / 8.0;
    for (int y = 0; y < h; y++) {
        int cy0 = (int)floor(y / ch), cy1 = (int)ceil((y + 1) / ch) - 1;
        for (int x = 0; x < w; x++) {
            const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            double lum = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            int cx0 = (int)floor(x / cw), cx1 = (int)ceil((x + 1) / cw) - 1;
            for (int cy = cy0; cy <= cy1 && cy < 8; cy++) {
                double oy = fmin(y + 1, (cy + 1) * ch) - fmax(y, cy * ch);
                for (int cx = cx0; cx <= cx1 && cx < 8; cx++) {
                    double ox = fmin(x + 1, (cx + 1) * cw) - fmax(x, cx * cw);
                    if (ox > 0 && oy > 0) acc[cy * 8 + cx] += ox * oy * lum;
                }
            }
        }
    }
    for (int i = 0; i < IQ_LAYOUT; i++) out[i] = (float)(acc[i] / (cw * ch) / 255);
}

// objects (6): from the detector
static void object_features(const uint8_t *rgb, int npix, const detections *d, float *out) {
    float bgc[3];
    palette_rgb(d->background, bgc);
    long fg = 0, area = 0;
    for (int i = 0; i < npix; i++) {
        float p[3] = {rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]};
        fg += dist3(p, bgc) > FOREGROUND_DIST;
    }
    int outlined = 0, small = 0;
    for (int j = 0; j < d->n; j++) {
        area += d->d[j].area;
        outlined += d->d[j].fill == FILL_OUTLINED, small += d->d[j].size == SIZE_SMALL;
    }
    out[0] = d->n / 4.0f;
    out[1] = (float)area / npix;
    out[2] = fg > area ? (float)(fg - area) / npix : 0;
    out[3] = d->n ? (float)area / d->n / npix : 0;
    out[4] = d->n ? (float)outlined / d->n : 0;
    out[5] = d->n ? (float)small / d->n : 0;
}

int image_quality_features(const uint8_t *rgb, int width, int height, float *out) {
    if (width <= 0 || height <= 0 || (long long)width * height > MAX_PIXELS)
        return err_set("image quality: bad image size %dx%d", width, height);
    int npix = width * height;
    detections d;
    detect_objects(rgb, width, height, &d);
    float *o = out;
    palette_features(rgb, npix, d.background, o), o += IQ_PALETTE;
    background_features(rgb, width, height, o), o += IQ_BACKGROUND;
    edge_features(rgb, width, height, o), o += IQ_EDGES;
    layout_features(rgb, width, height, o), o += IQ_LAYOUT;
    object_features(rgb, npix, &d, o);
    return 0;
}

void image_quality_defaults(image_quality_opts *o) {
    o->n_subsets = 20;
    o->subset_size = 0;
    o->seed = 0;
}

static double kernel(const double *x, const double *y) {
    double s = 0;
    for (int k = 0; k < IQ_DIM; k++) s += x[k] * y[k];
    double t = s / IQ_DIM + 1;
    return t * t * t;
}

// standardized, compressed (asinh) and weighted by group; see image_quality.h
static double squash(float v, const double *mean, const double *scale, const double *weight,
                     int k) {
    return weight[k] * SQUASH * asinh((v - mean[k]) * scale[k] / SQUASH);
}

// unbiased MMD^2 between rows xi[0..m) of x and yi[0..n) of y (standardized features)
static double mmd2_unbiased(const double *x, const int *xi, int m, const double *y,
                            const int *yi, int n) {
    double kxx = 0, kyy = 0, kxy = 0;
    for (int i = 0; i < m; i++)
        for (int j = i + 1; j < m; j++) kxx += kernel(x + (size_t)xi[i] * IQ_DIM, x + (size_t)xi[j] * IQ_DIM);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) kyy += kernel(y + (size_t)yi[i] * IQ_DIM, y + (size_t)yi[j] * IQ_DIM);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) kxy += kernel(x + (size_t)xi[i] * IQ_DIM, y + (size_t)yi[j] * IQ_DIM);
    // the i<j sums are half of the i!=j sums
    return 2 * kxx / ((double)m * (m - 1)) + 2 * kyy / ((double)n * (n - 1)) -
           2 * kxy / ((double)m * n);
}

// the first k entries of idx become a uniform sample without replacement of 0..n-1
static void draw_subset(rng *r, int *idx, int n, int k) {
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)rng_below(r, (uint32_t)(n - i)), t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
}

int image_quality_kid(const float *gen, int n_gen, const float *ref, int n_ref,
                      const image_quality_opts *o, image_quality_result *out) {
    if (n_gen < 2 || n_ref < 2)
        return err_set("image quality: KID needs >= 2 images per set (got %d generated, %d reference)",
                       n_gen, n_ref);
    if (o->n_subsets < 0 || o->subset_size < 0 || o->subset_size == 1)
        return err_set("image quality: bad subsets %d of size %d", o->n_subsets, o->subset_size);
    static const int group_dim[IQ_GROUPS] = {IQ_PALETTE, IQ_BACKGROUND, IQ_EDGES, IQ_LAYOUT, IQ_OBJECTS};
    double mean[IQ_DIM], scale[IQ_DIM], weight[IQ_DIM];
    for (int k = 0, g = 0, left = group_dim[0]; k < IQ_DIM; k++, left--) {
        if (left == 0) left = group_dim[++g];
        double s = 0, ss = 0;
        for (int i = 0; i < n_ref; i++) s += ref[(size_t)i * IQ_DIM + k];
        mean[k] = s / n_ref;
        for (int i = 0; i < n_ref; i++) {
            double dv = ref[(size_t)i * IQ_DIM + k] - mean[k];
            ss += dv * dv;
        }
        double sd = fmax(sqrt(ss / (n_ref - 1)), SD_FLOOR);
        // every group's share of E[x.x] is IQ_DIM / IQ_GROUPS
        scale[k] = 1 / sd;
        weight[k] = sqrt((double)IQ_DIM / (IQ_GROUPS * group_dim[g]));
    }
    double *x = malloc((size_t)n_gen * IQ_DIM * sizeof(double));
    double *y = malloc((size_t)n_ref * IQ_DIM * sizeof(double));
    int *xi = malloc((size_t)n_gen * sizeof(int)), *yi = malloc((size_t)n_ref * sizeof(int));
    CHECK(x && y && xi && yi);
    for (size_t i = 0; i < (size_t)n_gen * IQ_DIM; i++) x[i] = squash(gen[i], mean, scale, weight, i % IQ_DIM);
    for (size_t i = 0; i < (size_t)n_ref * IQ_DIM; i++) y[i] = squash(ref[i], mean, scale, weight, i % IQ_DIM);
    for (int i = 0; i < n_gen; i++) xi[i] = i;
    for (int i = 0; i < n_ref; i++) yi[i] = i;
    memset(out, 0, sizeof(*out));
    out->n_gen = n_gen, out->n_ref = n_ref;
    out->kid = mmd2_unbiased(x, xi, n_gen, y, yi, n_ref);
    out->subset_mean = out->kid;
    int smaller = n_gen < n_ref ? n_gen : n_ref;
    int size = o->subset_size ? o->subset_size : (smaller / 2 < 2 ? 2 : smaller / 2);
    if (size > smaller) size = smaller;
    if (o->n_subsets > 0) {
        rng r = rng_make(o->seed, 0x6b6964ULL);  // "kid"
        double *v = malloc((size_t)o->n_subsets * sizeof(double)), s = 0, ss = 0;
        CHECK(v);
        for (int t = 0; t < o->n_subsets; t++) {
            draw_subset(&r, xi, n_gen, size);
            draw_subset(&r, yi, n_ref, size);
            s += v[t] = mmd2_unbiased(x, xi, size, y, yi, size);
        }
        out->n_subsets = o->n_subsets, out->subset_size = size;
        out->subset_mean = s / o->n_subsets;
        for (int t = 0; t < o->n_subsets; t++) ss += (v[t] - out->subset_mean) * (v[t] - out->subset_mean);
        out->subset_sd = o->n_subsets > 1 ? sqrt(ss / (o->n_subsets - 1)) : 0;
        free(v);
    }
    free(x), free(y), free(xi), free(yi);
    return 0;
}

static float *features_of(const uint8_t *img, int n, int w, int h) {
    float *f = malloc((size_t)n * IQ_DIM * sizeof(float));
    CHECK(f);
    for (int i = 0; i < n; i++)
        if (image_quality_features(img + (size_t)i * w * h * 3, w, h, f + (size_t)i * IQ_DIM)) {
            free(f);
            return NULL;
        }
    return f;
}

int image_quality_images(const uint8_t *gen, int n_gen, int gw, int gh,
                         const uint8_t *ref, int n_ref, int rw, int rh,
                         const image_quality_opts *o, image_quality_result *out) {
    if (n_gen < 2 || n_ref < 2)
        return err_set("image quality: KID needs >= 2 images per set (got %d generated, %d reference)",
                       n_gen, n_ref);
    float *fg = features_of(gen, n_gen, gw, gh), *fr = fg ? features_of(ref, n_ref, rw, rh) : NULL;
    int rc = fg && fr ? image_quality_kid(fg, n_gen, fr, n_ref, o, out) : -1;
    free(fg), free(fr);
    return rc;
}
