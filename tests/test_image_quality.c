// The KID-style image-quality figure (data/image_quality.h): identical sets score about
// 0, two independent sets of renders score near 0, degraded renders clearly more and
// more so the stronger the degradation, empty canvases far more. Also the features'
// basic facts (any size, palette fractions sum to 1, noise estimators see noise) and
// the unbiased estimator on a case with a known answer.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "data/image_quality.h"
#include "data/render.h"
#include "runtime/error.h"
#include "runtime/rng.h"
#include "scene_gen.h"

#define W 32
#define H 32
#define N 96

// n renders of random scenes drawn from seed; blur/noise applied when > 0
static uint8_t *render_set(int n, uint64_t seed, float blur, float noise) {
    uint8_t *img = malloc((size_t)n * W * H * 3);
    rng r = rng_make(seed, 1);
    for (int k = 0; k < n;) {
        scene_graph g = scene_gen_graph(&r, 6);
        scene s;
        if (scene_place(&g, W, H, (int)rng_below(&r, 2), seed * 1000 + (uint64_t)k, &s)) continue;
        uint8_t *p = img + (size_t)k * W * H * 3;
        scene_render(&s, p);
        if (blur > 0 || noise > 0) image_degrade(p, W, H, blur, noise, seed + (uint64_t)k);
        k++;
    }
    return img;
}

static double kid(const uint8_t *gen, const uint8_t *ref, int n, image_quality_result *res) {
    image_quality_opts o;
    image_quality_defaults(&o);
    image_quality_result tmp, *r = res ? res : &tmp;
    if (image_quality_images(gen, n, W, H, ref, n, W, H, &o, r)) {
        fprintf(stderr, "image_quality_images: %s\n", err_msg());
        return NAN;
    }
    return r->kid;
}

static void test_features(void) {
    float f[IQ_DIM];
    uint8_t *img = render_set(1, 5, 0, 0);
    EXPECT_TRUE(image_quality_features(img, W, H, f) == 0);
    double sum = 0;
    for (int k = 0; k < IQ_PALETTE; k++) sum += f[k];
    EXPECT_NEAR(sum, 1.0, 1e-5, 0);
    EXPECT(f[IQ_PALETTE] == 0, "clean border noise %g", f[IQ_PALETTE]);
    const float *edge = f + IQ_PALETTE + IQ_BACKGROUND;  // fractions at rising thresholds
    for (int k = 0; k + 1 < IQ_EDGES - 1; k++) EXPECT(edge[k] >= edge[k + 1], "edge %d", k);
    EXPECT(edge[0] > 0 && edge[0] < 0.5f, "edge pixels %g", edge[0]);
    // noise of sd 0.05 on a flat gray canvas: both estimators read about 0.05
    uint8_t gray[W * H * 3];
    memset(gray, 128, sizeof(gray));
    image_degrade(gray, W, H, 0, 0.05f, 3);
    EXPECT_TRUE(image_quality_features(gray, W, H, f) == 0);
    EXPECT_NEAR(f[IQ_PALETTE], 0.05, 0.01, 0);
    EXPECT_NEAR(f[IQ_PALETTE + 1], 0.05, 0.01, 0);
    // a flat canvas's layout is its luminance everywhere, at any size
    static uint8_t flat[7 * 5 * 3];
    memset(flat, 200, sizeof(flat));
    const int sizes[][2] = {{1, 1}, {7, 5}, {3, 2}};
    for (int t = 0; t < 3; t++) {
        EXPECT_TRUE(image_quality_features(flat, sizes[t][0], sizes[t][1], f) == 0);
        const float *lay = f + IQ_PALETTE + IQ_BACKGROUND + IQ_EDGES;
        for (int k = 0; k < IQ_LAYOUT; k++)
            EXPECT(fabsf(lay[k] - 200.0f / 255) < 1e-5f, "%dx%d cell %d: %g", sizes[t][0],
                   sizes[t][1], k, lay[k]);
    }
    EXPECT_TRUE(image_quality_features(flat, 0, 4, f) == -1);
    free(img);
}

static double ker(const double *u, const double *v) {
    double d = 0;
    for (int k = 0; k < IQ_DIM; k++) d += u[k] * v[k];
    return pow(d / IQ_DIM + 1, 3);
}

// KID of two fixed point sets against a direct evaluation of the formula; too few
// samples are an error.
static void test_estimator(void) {
    float a[3 * IQ_DIM], b[2 * IQ_DIM];
    rng r = rng_make(9, 0);
    for (int i = 0; i < 3 * IQ_DIM; i++) a[i] = rng_uniform(&r);
    for (int i = 0; i < 2 * IQ_DIM; i++) b[i] = rng_uniform(&r);
    image_quality_opts o = {0, 0, 0};
    image_quality_result res;
    EXPECT_TRUE(image_quality_kid(a, 3, b, 2, &o, &res) == 0);
    // the same, standardized by hand (b's mean and sd, floor 0.05, asinh, group weights)
    static const int gd[IQ_GROUPS] = {IQ_PALETTE, IQ_BACKGROUND, IQ_EDGES, IQ_LAYOUT, IQ_OBJECTS};
    double x[3][IQ_DIM], y[2][IQ_DIM];
    for (int k = 0, g = 0, start = 0; k < IQ_DIM; k++) {
        if (k == start + gd[g]) start += gd[g++];
        double m = (b[k] + b[IQ_DIM + k]) / 2, sd = fabs(b[k] - b[IQ_DIM + k]) / sqrt(2.0);
        double s = 1 / fmax(sd, 0.05), wg = sqrt((double)IQ_DIM / (IQ_GROUPS * gd[g]));
        for (int i = 0; i < 3; i++) x[i][k] = wg * asinh((a[i * IQ_DIM + k] - m) * s);
        for (int i = 0; i < 2; i++) y[i][k] = wg * asinh((b[i * IQ_DIM + k] - m) * s);
    }
    double kxx = 0, kyy = ker(y[0], y[1]), kxy = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j) kxx += ker(x[i], x[j]) / 6;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) kxy += ker(x[i], y[j]) / 6;
    EXPECT_NEAR(res.kid, kxx + kyy - 2 * kxy, 1e-9, 1e-6);  // float inputs, cubed
    EXPECT_TRUE(res.subset_mean == res.kid && res.n_subsets == 0);
    EXPECT_TRUE(image_quality_kid(a, 1, b, 2, &o, &res) == -1);
    // subsets of the whole sets are the whole sets whatever the draw
    o.n_subsets = 3, o.subset_size = 2;
    EXPECT_TRUE(image_quality_kid(a, 2, b, 2, &o, &res) == 0);
    double full = res.kid;
    EXPECT_NEAR(res.subset_mean, full, 1e-12, 1e-12);
    EXPECT_NEAR(res.subset_sd, 0, 1e-9 * fabs(full), 0);
}

static void test_ordering(void) {
    uint8_t *ref = render_set(N, 1, 0, 0);
    uint8_t *other = render_set(N, 2, 0, 0);
    uint8_t *deg[3];
    const float noise[3] = {0.02f, 0.05f, 0.15f};
    for (int t = 0; t < 3; t++) {
        deg[t] = malloc((size_t)N * W * H * 3);
        memcpy(deg[t], ref, (size_t)N * W * H * 3);
        for (int k = 0; k < N; k++)
            image_degrade(deg[t] + (size_t)k * W * H * 3, W, H, 0.8f, noise[t], 100 + (uint64_t)k);
    }
    uint8_t *empty = malloc((size_t)N * W * H * 3);
    for (int i = 0; i < N * W * H; i++) memcpy(empty + 3 * i, color_rgb[COLOR_BLACK], 3);

    image_quality_result same_r;
    double same = kid(ref, ref, N, &same_r), indep = kid(other, ref, N, NULL);
    double d[3], emp = kid(empty, ref, N, NULL);
    for (int t = 0; t < 3; t++) d[t] = kid(deg[t], ref, N, NULL);
    printf("KID (x1000), %d images of %dx%d: identical %.2f (subsets %.2f +- %.2f), "
           "independent renders %.2f, blur 0.8 + noise 0.02 / 0.05 / 0.15: %.2f / %.2f / %.2f, "
           "empty canvases %.2f\n", N, W, H, 1e3 * same, 1e3 * same_r.subset_mean,
           1e3 * same_r.subset_sd, 1e3 * indep, 1e3 * d[0], 1e3 * d[1], 1e3 * d[2], 1e3 * emp);
    // identical sets: the unbiased estimator is a little negative here (the i != j
    // sums leave out the largest kernel values, k(x, x)), by O(1/N)
    EXPECT(fabs(same) < 0.05 * d[0], "identical sets %g vs mildest degradation %g", same, d[0]);
    EXPECT(fabs(indep) < 0.05 * d[0], "independent renders %g vs mildest degradation %g", indep, d[0]);
    EXPECT(d[1] > 50 * fabs(indep) && d[1] > 1, "degraded %g vs independent %g", d[1], indep);
    EXPECT(d[0] < d[1] && d[1] < d[2], "not monotone: %g %g %g", d[0], d[1], d[2]);
    EXPECT(emp > 2 * d[1] && emp > 100 * fabs(indep), "empty %g vs degraded %g", emp, d[1]);

    // deterministic: the same call gives the same figures
    image_quality_result again;
    kid(ref, ref, N, &again);
    EXPECT_TRUE(again.kid == same_r.kid && again.subset_mean == same_r.subset_mean);
    free(ref), free(other), free(empty);
    for (int t = 0; t < 3; t++) free(deg[t]);
}

int main(void) {
    test_features();
    test_estimator();
    test_ordering();
    return check_report("test_image_quality");
}
