// The VAE (models/vae.h) against diffusers' AutoencoderKL: tools/make_vae_fixture.py
// wrote two tiny random models (2 levels, one ResNet per level, square images; 3
// levels of different widths, two ResNets per level, 3 latent channels, 16x12 images)
// with their config.json, weights, and encode / decode results. Also checked:
//   - convolutions in one-row bands give the same results as in whole images;
//   - a batch smaller than the allocated one, and a larger one is refused;
//   - sampling the posterior: latents = sf * (mean + std * eps) with eps of each image
//     from its own seed;
//   - loading: missing, unexpected and wrong-shape tensors are named; the attention's
//     pre-0.14 names (query, key, value, proj_attn) load like the new ones;
//   - config.json: unsupported values and unknown keys are named with the file.
//
// Tolerance: max |ours - diffusers| / max |diffusers| <= 1e-4 per tensor, as for the
// UNet: both sides compute in float32 with different summation orders.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/vae.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "runtime/rng.h"
#include "runtime/safetensors.h"
#include "tests/check.h"
#include "tests/parity.h"

#define PARITY_TOL 1e-4

typedef struct fixture {
    const char *tag;
    int H, W;
} fixture;

static void expect_close(const char *what, const float *ours, const float *ref, size_t n) {
    double e = parity_diff(ours, ref, n);
    EXPECT(e <= PARITY_TOL, "%s: max rel diff %.3g", what, e);
    printf("  %-44s %.2e\n", what, e);
}

static void path_of(char *buf, size_t cap, const fixture *fx, const char *part) {
    snprintf(buf, cap, "tests/fixtures/vae_%s_%s", fx->tag, part);
}

// A VAE of the fixture's config.json with its weights, for batches up to B.
static int open_model(vae *v, const fixture *fx, int B, size_t band_budget) {
    char path[256];
    vae_config c;
    path_of(path, sizeof path, fx, "config.json");
    if (vae_config_load(path, &c) || vae_build(v, &c)) return -1;
    path_of(path, sizeof path, fx, "weights.safetensors");
    if (band_budget) v->band_budget = band_budget;
    if (vae_load(v, path) || vae_alloc_activations(v, B, fx->H, fx->W)) {
        vae_free(v);
        return -1;
    }
    return 0;
}

typedef struct io_data {
    float *image, *latents, *std, *z, *decoded;
    size_t n_img, n_lat;
} io_data;

static int read_io(const fixture *fx, const vae_config *c, io_data *d) {
    char path[256];
    st_file io;
    path_of(path, sizeof path, fx, "io.safetensors");
    if (st_open(path, &io)) return -1;
    int f = 1 << (c->n_levels - 1);
    d->n_img = (size_t)2 * 3 * fx->H * fx->W;
    d->n_lat = (size_t)2 * c->latent_channels * (fx->H / f) * (fx->W / f);
    d->image = parity_load(&io, "image", d->n_img);
    d->decoded = parity_load(&io, "decoded", d->n_img);
    d->latents = parity_load(&io, "latents", d->n_lat);
    d->std = parity_load(&io, "std", d->n_lat);
    d->z = parity_load(&io, "z", d->n_lat);
    st_close(&io);
    return d->image && d->decoded && d->latents && d->std && d->z ? 0 : -1;
}

static void free_io(io_data *d) {
    free(d->image), free(d->latents), free(d->std), free(d->z), free(d->decoded);
}

// open_model and read_io, or a failed check.
static int open_with_io(const fixture *fx, int B, size_t band_budget, vae *v, io_data *d) {
    if (open_model(v, fx, B, band_budget) == 0) {
        if (read_io(fx, &v->cfg, d) == 0) return 0;
        free_io(d);
        vae_free(v);
    }
    EXPECT(0, "%s: %s", fx->tag, err_msg());
    return -1;
}

// Encode mean, posterior std and decode against diffusers, batch 2.
static void parity(const fixture *fx, size_t band_budget, const char *label) {
    vae v;
    io_data d = {0};
    if (open_with_io(fx, 2, band_budget, &v, &d)) return;
    printf("%s (%s)\n", fx->tag, label);
    int f = 1 << (v.cfg.n_levels - 1), L = v.cfg.latent_channels;
    size_t hw = (size_t)(fx->H / f) * (fx->W / f);
    float *lat = malloc(d.n_lat * sizeof *lat), *img = malloc(d.n_img * sizeof *img);
    float *std = malloc(d.n_lat * sizeof *std);
    EXPECT_TRUE(vae_encode(&v, d.image, 2, lat, NULL) == 0);
    expect_close("latents (mean * scaling_factor)", lat, d.latents, d.n_lat);
    for (int b = 0; b < 2; b++)  // moments: per image L mean channels, then L logvar
        for (size_t i = 0; i < L * hw; i++)
            std[b * L * hw + i] = expf(0.5f * v.moments[(2 * b + 1) * L * hw + i]);
    expect_close("posterior std", std, d.std, d.n_lat);
    EXPECT_TRUE(vae_decode(&v, d.z, 2, img) == 0);
    expect_close("decoded", img, d.decoded, d.n_img);
    free(lat), free(img), free(std);
    free_io(&d);
    vae_free(&v);
}

// Allocated for 3, run with 1 (the second image of the fixture) and refused with 4.
static void smaller_batch(const fixture *fx) {
    vae v;
    io_data d = {0};
    if (open_with_io(fx, 3, 0, &v, &d)) return;
    size_t li = d.n_lat / 2, ii = d.n_img / 2;
    float *lat = malloc(li * sizeof *lat), *img = malloc(ii * sizeof *img);
    EXPECT_TRUE(vae_encode(&v, d.image + ii, 1, lat, NULL) == 0);
    expect_close("batch 1 of 3: latents", lat, d.latents + li, li);
    EXPECT_TRUE(vae_decode(&v, d.z + li, 1, img) == 0);
    expect_close("batch 1 of 3: decoded", img, d.decoded + ii, ii);
    EXPECT(vae_encode(&v, d.image, 4, lat, NULL) == -1 && strstr(err_msg(), "allocated for 3"),
           "%s", err_msg());
    EXPECT_TRUE(vae_decode(&v, d.z, 0, img) == -1);
    free(lat), free(img);
    free_io(&d);
    vae_free(&v);
}

// latents = sf * (mean + std * eps), eps = rng_fill_normal(seed of that image).
static void sampling(const fixture *fx) {
    vae v;
    io_data d = {0};
    if (open_with_io(fx, 2, 0, &v, &d)) return;
    size_t n = d.n_lat / 2;
    float sf = v.cfg.scaling_factor;
    float *s2 = malloc(2 * n * sizeof *s2), *s1 = malloc(n * sizeof *s1), *eps = malloc(n * sizeof *eps);
    uint64_t seeds[2] = {11, 12};
    EXPECT_TRUE(vae_encode(&v, d.image, 2, s2, seeds) == 0);
    double worst = 0;
    for (int b = 0; b < 2; b++) {
        rng_fill_normal(eps, n, seeds[b], 0, 0, 0, 1);
        for (size_t i = 0; i < n; i++) {
            double want = (double)d.latents[b * n + i] + sf * (double)d.std[b * n + i] * eps[i];
            double e = fabs(s2[b * n + i] - want);
            worst = e > worst ? e : worst;
        }
    }
    EXPECT(worst <= 1e-4 * sf, "sampled latents off by %.3g", worst);
    printf("  %-44s %.2e\n", "sample - (mean + std * eps), absolute", worst);
    // The second image alone with its seed draws the same sample.
    EXPECT_TRUE(vae_encode(&v, d.image + d.n_img / 2, 1, s1, seeds + 1) == 0);
    EXPECT(parity_diff(s1, s2 + n, n) <= 1e-6, "the sample depends on the batch");
    free(s2), free(s1), free(eps);
    free_io(&d);
    vae_free(&v);
}

// Copies the fixture's weights to `out`, renaming / reshaping as asked.
static int rewrite_weights(const fixture *fx, const char *out, const char *from, const char *to,
                           const char *reshape) {
    char path[256];
    st_file f;
    st_writer w;
    path_of(path, sizeof path, fx, "weights.safetensors");
    if (st_open(path, &f)) return -1;
    st_writer_init(&w);
    int rc = 0;
    for (size_t i = 0; i < f.n_tensors && !rc; i++) {
        const st_tensor *t = &f.tensors[i];
        const char *name = from && !strcmp(t->name, from) ? to : t->name;
        int64_t shape[ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        int ndim = t->ndim;
        if (reshape && !strcmp(t->name, reshape)) {  // (8, 8) -> (4, 16): same bytes
            shape[0] /= 2, shape[1] *= 2;
        }
        rc = st_writer_add(&w, name, t->dtype, ndim, shape, t->data);
    }
    if (!rc) rc = st_writer_save(&w, out);
    st_writer_free(&w);
    st_close(&f);
    return rc;
}

static void loading(const fixture *fx, const char *dir) {
    char bad[512], path[256];
    vae_config c;
    vae v;
    path_of(path, sizeof path, fx, "config.json");
    if (vae_config_load(path, &c) || vae_build(&v, &c)) {
        EXPECT(0, "%s", err_msg());
        return;
    }
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    const char *q = "encoder.mid_block.attentions.0.to_q.weight";
    const char *k = "decoder.mid_block.attentions.0.to_k.weight";
    EXPECT_TRUE(rewrite_weights(fx, bad, q, "encoder.mid_block.attentions.0.to_qq.weight", k) == 0);
    EXPECT(vae_load(&v, bad) == -1, "a bad file loaded");
    const char *m = err_msg();
    EXPECT(strstr(m, bad) && strstr(m, "1 missing: encoder.mid_block.attentions.0.to_q.weight") &&
           strstr(m, "1 unexpected: encoder.mid_block.attentions.0.to_qq.weight") &&
           strstr(m, "1 wrong shape: decoder.mid_block.attentions.0.to_k.weight (model (8, 8))"),
           "%s", m);
    EXPECT(v.params.items[0].t.data && ((float *)v.params.items[0].t.data)[0] == 0,
           "a failed load changed the model");
    // diffusers' pre-0.14 attention names load as the new ones.
    EXPECT_TRUE(rewrite_weights(fx, bad, q, "encoder.mid_block.attentions.0.query.weight", NULL) == 0);
    EXPECT(vae_load(&v, bad) == 0, "legacy names: %s", err_msg());
    vae_free(&v);
    unlink(bad);
}

static void expect_config_error(const char *json, const char *want) {
    vae_config c;
    int rc = vae_config_parse(json, "vae/config.json", &c);
    EXPECT(rc == -1 && strstr(err_msg(), "vae/config.json") && strstr(err_msg(), want),
           "%s -> %s (want '%s')", json, rc ? err_msg() : "accepted", want);
}

static void configs(void) {
    vae_config c;
    const char *sd = "{\"_class_name\": \"AutoencoderKL\", \"_diffusers_version\": \"0.6.0\","
                     "\"act_fn\": \"silu\", \"block_out_channels\": [128, 256, 512, 512],"
                     "\"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\","
                     "\"DownEncoderBlock2D\", \"DownEncoderBlock2D\"], \"in_channels\": 3,"
                     "\"latent_channels\": 4, \"layers_per_block\": 2, \"norm_num_groups\": 32,"
                     "\"out_channels\": 3, \"sample_size\": 512, \"up_block_types\": [\"UpDecoderBlock2D\","
                     "\"UpDecoderBlock2D\", \"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}";
    EXPECT(vae_config_parse(sd, "sd", &c) == 0, "%s", err_msg());
    vae_config want = vae_config_sd();
    EXPECT(!memcmp(&c, &want, sizeof c), "SD's config.json differs from vae_config_sd()");
    expect_config_error("{\"act_fn\": \"gelu\"}", "\"act_fn\"");
    expect_config_error("{\"block_out_channels\": [64, 64], \"down_block_types\": [\"DownEncoderBlock2D\","
                        "\"DownBlock2D\"]}", "\"down_block_types\"[1]");
    expect_config_error("{\"block_out_channels\": [64, 64]}", "\"down_block_types\"");
    expect_config_error("{\"shift_factor\": 0.1159}", "\"shift_factor\"");
    expect_config_error("{\"latents_mean\": [0, 0, 0, 0]}", "\"latents_mean\"");
    expect_config_error("{\"layers_per_block\": 2.5}", "\"layers_per_block\"");
    expect_config_error("{\"use_quant_conv\": 1}", "\"use_quant_conv\"");
    expect_config_error("{\"norm_num_groups\": 3}", "block_out_channels[0] = 64");
    expect_config_error("{\"block_out_channels\": []}", "\"block_out_channels\"");
    expect_config_error("{\"dropout\": 0.1}", "unknown key \"dropout\"");
    expect_config_error("{\"_class_name\": \"AutoencoderTiny\"}", "\"_class_name\"");
    expect_config_error("[1, 2]", "not a JSON object");
}

int main(void) {
    log_set_quiet(1);
    char dir[] = "/tmp/test_vae_XXXXXX";
    CHECK(mkdtemp(dir));
    const fixture fixtures[] = {{"tiny", 16, 16}, {"tiny3", 16, 12}};
    for (int i = 0; i < 2; i++) {
        parity(&fixtures[i], 0, "whole-image convolutions");
        parity(&fixtures[i], 1, "one-row convolution bands");
    }
    smaller_batch(&fixtures[1]);
    sampling(&fixtures[0]);
    loading(&fixtures[0], dir);
    configs();
    rmdir(dir);
    return check_report("test_vae");
}
