// AutoencoderKL: configs, construction, loading, encode and decode (see vae.h).
#include "models/vae.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/upsample.h"
#include "models/param_file.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rng.h"

vae_config vae_config_default(void) {
    return (vae_config){.in_channels = 3, .out_channels = 3, .latent_channels = 4, .n_levels = 1,
                        .block_out_channels = {64}, .layers_per_block = 1, .norm_num_groups = 32,
                        .sample_size = 32, .scaling_factor = 0.18215f, .use_quant_conv = 1,
                        .use_post_quant_conv = 1, .mid_block_add_attention = 1};
}

vae_config vae_config_sd(void) {
    vae_config c = vae_config_default();
    c.n_levels = 4;
    int boc[4] = {128, 256, 512, 512};
    memcpy(c.block_out_channels, boc, sizeof boc);
    c.layers_per_block = 2;
    c.sample_size = 512;
    return c;
}

int vae_config_check(const vae_config *c) {
    if (c->n_levels < 1 || c->n_levels > VAE_MAX_LEVELS)
        return err_set("vae config: block_out_channels has %d entries, not 1..%d", c->n_levels,
                       VAE_MAX_LEVELS);
    if (c->layers_per_block < 1 || c->layers_per_block > VAE_MAX_LAYERS)
        return err_set("vae config: layers_per_block %d not in [1, %d]", c->layers_per_block,
                       VAE_MAX_LAYERS);
    if (c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1)
        return err_set("vae config: in_channels %d, out_channels %d and latent_channels %d must be positive",
                       c->in_channels, c->out_channels, c->latent_channels);
    if (c->norm_num_groups < 1)
        return err_set("vae config: norm_num_groups %d must be positive", c->norm_num_groups);
    for (int i = 0; i < c->n_levels; i++)
        if (c->block_out_channels[i] < 1 || c->block_out_channels[i] % c->norm_num_groups)
            return err_set("vae config: block_out_channels[%d] = %d is not a positive multiple of norm_num_groups %d",
                           i, c->block_out_channels[i], c->norm_num_groups);
    if (!(c->scaling_factor > 0) || !isfinite(c->scaling_factor))
        return err_set("vae config: scaling_factor %g must be positive", (double)c->scaling_factor);
    return 0;
}

static void fmt(char *buf, const char *f, const char *part, int i, int j) {
    int n = snprintf(buf, UNET_NAME_MAX, f, part, i, j);
    CHECK(n > 0 && n < UNET_NAME_MAX);
}

// UNetMidBlock2D: resnet, attention (optional), resnet, all at C channels.
static void mid_setup(unet_resnet rs[2], vae_attention *at, param_table *t, const char *part,
                      const vae_config *c, int C) {
    char name[UNET_NAME_MAX];
    int G = c->norm_num_groups;
    if (c->mid_block_add_attention) {
        fmt(name, "%s.mid_block.attentions.%d", part, 0, 0);
        vae_attention_setup(at, t, name, C, G);
    }
    for (int j = 0; j < 2; j++) {
        fmt(name, "%s.mid_block.resnets.%d", part, j, 0);
        unet_resnet_setup(&rs[j], t, name, C, C, 0, G, VAE_EPS, 0, 0);
    }
}

// Registers every parameter; runs twice (planning, then with the committed arena).
static void vae_setup(vae *v) {
    const vae_config *c = &v->cfg;
    param_table *t = &v->params;
    vae_encoder *e = &v->enc;
    vae_decoder *d = &v->dec;
    char name[UNET_NAME_MAX];
    int G = c->norm_num_groups, L = c->layers_per_block, nl = c->n_levels;
    int Clast = c->block_out_channels[nl - 1], lat = c->latent_channels;
    ptab_begin(t);
    unet_conv_setup(&e->conv_in, t, "encoder.conv_in", c->in_channels, c->block_out_channels[0], 3, 1, 1);
    int ch = c->block_out_channels[0];
    for (int i = 0; i < nl; i++) {
        int C = c->block_out_channels[i];
        for (int j = 0; j < L; j++, ch = C) {
            fmt(name, "%s.down_blocks.%d.resnets.%d", "encoder", i, j);
            unet_resnet_setup(&e->resnets[i][j], t, name, ch, C, 0, G, VAE_EPS, 0, 0);
        }
        if (i < nl - 1) {
            fmt(name, "%s.down_blocks.%d.downsamplers.0.conv", "encoder", i, 0);
            unet_conv_setup(&e->downsamplers[i], t, name, C, C, 3, 2, 0);
        }
    }
    mid_setup(e->mid_resnets, &e->mid_attn, t, "encoder", c, Clast);
    unet_norm_setup(&e->conv_norm_out, t, "encoder.conv_norm_out", Clast, G, VAE_EPS);
    unet_conv_setup(&e->conv_out, t, "encoder.conv_out", Clast, 2 * lat, 3, 1, 1);
    if (c->use_quant_conv) unet_conv_setup(&v->quant_conv, t, "quant_conv", 2 * lat, 2 * lat, 1, 1, 0);
    if (c->use_post_quant_conv) unet_conv_setup(&v->post_quant_conv, t, "post_quant_conv", lat, lat, 1, 1, 0);
    unet_conv_setup(&d->conv_in, t, "decoder.conv_in", lat, Clast, 3, 1, 1);
    mid_setup(d->mid_resnets, &d->mid_attn, t, "decoder", c, Clast);
    ch = Clast;
    for (int i = 0; i < nl; i++) {
        int C = c->block_out_channels[nl - 1 - i];
        for (int j = 0; j <= L; j++, ch = C) {
            fmt(name, "%s.up_blocks.%d.resnets.%d", "decoder", i, j);
            unet_resnet_setup(&d->resnets[i][j], t, name, ch, C, 0, G, VAE_EPS, 0, 0);
        }
        if (i < nl - 1) {
            fmt(name, "%s.up_blocks.%d.upsamplers.0.conv", "decoder", i, 0);
            unet_conv_setup(&d->upsamplers[i], t, name, C, C, 3, 1, 1);
        }
    }
    unet_norm_setup(&d->conv_norm_out, t, "decoder.conv_norm_out", c->block_out_channels[0], G, VAE_EPS);
    unet_conv_setup(&d->conv_out, t, "decoder.conv_out", c->block_out_channels[0], c->out_channels, 3, 1, 1);
}

int vae_build(vae *v, const vae_config *cfg) {
    memset(v, 0, sizeof *v);
    if (vae_config_check(cfg)) return -1;
    v->cfg = *cfg;
    v->band_budget = VAE_BAND_FLOATS;
    ptab_init(&v->params, "vae params", 0, 0, NULL);
    vae_setup(v);
    if (ptab_commit_params(&v->params)) {
        vae_free(v);
        return -1;
    }
    vae_setup(v);
    log_line("vae: %zu parameters in %d tensors, %d levels, latents of %d channels at 1/%d",
             ptab_count(&v->params, PARAM_BASE, 0), v->params.n, cfg->n_levels,
             cfg->latent_channels, 1 << (cfg->n_levels - 1));
    return 0;
}

// diffusers before 0.14 named the mid block's attention query, key, value, proj_attn.
static int legacy_name(const char *name, char *buf, size_t cap) {
    static const char *const now[] = {".to_q.", ".to_k.", ".to_v.", ".to_out.0."};
    static const char *const old[] = {".query.", ".key.", ".value.", ".proj_attn."};
    for (int i = 0; i < 4; i++) {
        const char *p = strstr(name, now[i]);
        if (!p || !strstr(name, ".mid_block.attentions.")) continue;
        snprintf(buf, cap, "%.*s%s%s", (int)(p - name), name, old[i], p + strlen(now[i]));
        return 1;
    }
    return 0;
}

int vae_load(vae *v, const char *path) {
    st_file f;
    if (st_open(path, &f)) return -1;
    param_naming nm = {.prefix = "", .legacy = legacy_name};
    int rc = ptab_match_file(&v->params, &f, PARAM_BASE, &nm) ||
             ptab_read_file(&v->params, &f, PARAM_BASE, &nm);
    st_close(&f);
    return rc ? err_wrap("vae_load %s", path) : 0;
}

int vae_open(vae *v, const char *dir) {
    char path[1024];
    vae_config c;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (vae_config_load(path, &c) || vae_build(v, &c)) return -1;
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (vae_load(v, path)) {
        vae_free(v);
        return -1;
    }
    return 0;
}

void vae_free(vae *v) {
    arena_free(&v->acts);
    ptab_free(&v->params);
}

static void advance(vae_work *w) { w->cur = (w->cur + 1) % 3; }

// conv of the current tensor into the next buffer: the conv's own symmetric padding.
static void conv_step(const unet_conv *c, vae_work *w, int B, int H, int W) {
    vae_conv_forward(c, w, vae_buf(w, 1), vae_buf(w, 0), B, H, W, c->pad, c->pad);
    if (!w->plan) advance(w);
}

static void mid_forward(const unet_resnet rs[2], const vae_attention *at, const vae_config *c,
                        vae_work *w, int B, int H, int W) {
    vae_resnet_forward(&rs[0], w, B, H, W);
    if (c->mid_block_add_attention) vae_attention_forward(at, w, B, H, W);
    vae_resnet_forward(&rs[1], w, B, H, W);
}

// Encoder + quant_conv: the current tensor (the image) -> moments at 1/f.
static void encode_pass(vae *v, int B) {
    const vae_config *c = &v->cfg;
    const vae_encoder *e = &v->enc;
    vae_work *w = &v->work;
    int H = v->H, W = v->W;
    conv_step(&e->conv_in, w, B, H, W);
    for (int i = 0; i < c->n_levels; i++) {
        for (int j = 0; j < c->layers_per_block; j++) vae_resnet_forward(&e->resnets[i][j], w, B, H, W);
        if (i == c->n_levels - 1) break;
        // diffusers' Downsample2D with padding 0 pads (0, 1, 0, 1) by hand first.
        vae_conv_forward(&e->downsamplers[i], w, vae_buf(w, 1), vae_buf(w, 0), B, H, W, 0, 1);
        if (!w->plan) advance(w);
        H /= 2, W /= 2;
    }
    mid_forward(e->mid_resnets, &e->mid_attn, c, w, B, H, W);
    vae_norm_silu_forward(&e->conv_norm_out, w, B, H * W);
    conv_step(&e->conv_out, w, B, H, W);
    if (v->quant_conv.w) conv_step(&v->quant_conv, w, B, H, W);
}

// post_quant_conv + Decoder: the current tensor (latents / scaling_factor) -> image.
static void decode_pass(vae *v, int B) {
    const vae_config *c = &v->cfg;
    const vae_decoder *d = &v->dec;
    vae_work *w = &v->work;
    int f = 1 << (c->n_levels - 1), H = v->H / f, W = v->W / f;
    if (v->post_quant_conv.w) conv_step(&v->post_quant_conv, w, B, H, W);
    conv_step(&d->conv_in, w, B, H, W);
    mid_forward(d->mid_resnets, &d->mid_attn, c, w, B, H, W);
    for (int i = 0; i < c->n_levels; i++) {
        for (int j = 0; j <= c->layers_per_block; j++) vae_resnet_forward(&d->resnets[i][j], w, B, H, W);
        if (i == c->n_levels - 1) break;
        int C = d->upsamplers[i].in;
        size_t up = (size_t)B * C * 4 * H * W;
        if (w->plan) {
            if (up > w->need.stream) w->need.stream = up;
        } else {
            upsample_nearest2x_forward(vae_buf(w, 1), vae_buf(w, 0), B, C, H, W);
            advance(w);
        }
        H *= 2, W *= 2;
        conv_step(&d->upsamplers[i], w, B, H, W);
    }
    vae_norm_silu_forward(&d->conv_norm_out, w, B, H * W);
    conv_step(&d->conv_out, w, B, H, W);
}

static float *take(arena *a, size_t n) { return arena_take(a, n * sizeof(float)); }

static void acts_layout(vae *v, arena *a, int B) {
    const vae_sizes *n = &v->work.need;
    int f = 1 << (v->cfg.n_levels - 1);
    vae_work *w = &v->work;
    for (int k = 0; k < 3; k++) w->buf[k] = take(a, n->stream);
    w->mean = take(a, n->stats), w->rstd = take(a, n->stats);
    w->q = take(a, n->qkv), w->k = take(a, n->qkv), w->v = take(a, n->qkv);
    w->attn_ws = take(a, n->attn);
    w->conv_ws = take(a, n->conv);
    v->moments = take(a, (size_t)B * 2 * v->cfg.latent_channels * (v->H / f) * (v->W / f));
}

int vae_alloc_activations(vae *v, int B, int H, int W) {
    int f = 1 << (v->cfg.n_levels - 1);
    if (B < 1 || H < f || W < f || H % f || W % f)
        return err_set("vae: batch %d of %dx%d images: the batch must be positive and the sides multiples of %d",
                       B, H, W, f);
    arena_free(&v->acts);
    v->B = B, v->H = H, v->W = W;
    vae_work *w = &v->work;
    *w = (vae_work){.plan = 1, .band_budget = v->band_budget};
    // The input image and the output image are stream tensors too.
    w->need.stream = (size_t)B * (v->cfg.in_channels > v->cfg.out_channels ? v->cfg.in_channels : v->cfg.out_channels) * H * W;
    encode_pass(v, B);
    decode_pass(v, B);
    w->plan = 0;
    v->acts = arena_plan("vae acts", DEVICE_CPU);
    acts_layout(v, &v->acts, B);
    if (arena_commit(&v->acts)) return -1;
    acts_layout(v, &v->acts, B);
    log_line("vae: activations for %d x %dx%d: 3 stream buffers of %.1f MB, convolution bands of %.1f MB, "
             "attention %.1f MB", B, H, W, w->need.stream * 4e-6, w->need.conv * 4e-6,
             (3 * w->need.qkv + w->need.attn) * 4e-6);
    return 0;
}

static int check_batch(const vae *v, const char *what, int B) {
    if (!v->acts.base || B < 1 || B > v->B)
        return err_set("%s: batch %d but activations allocated for %d", what, B, v->B);
    return 0;
}

int vae_encode(vae *v, const float *img, int B, float *latents, const uint64_t *seeds) {
    if (check_batch(v, "vae_encode", B)) return -1;
    const vae_config *c = &v->cfg;
    vae_work *w = &v->work;
    int f = 1 << (c->n_levels - 1), L = c->latent_channels;
    size_t hw = (size_t)(v->H / f) * (v->W / f), n = (size_t)B * 2 * L * hw;
    w->cur = 0;
    memcpy(w->buf[0], img, (size_t)B * c->in_channels * v->H * v->W * sizeof *img);
    encode_pass(v, B);
    memcpy(v->moments, vae_buf(w, 0), n * sizeof *v->moments);
    float sf = c->scaling_factor;
    for (int b = 0; b < B; b++) {
        float *mean = v->moments + (size_t)b * 2 * L * hw, *logvar = mean + L * hw;
        float *z = latents + (size_t)b * L * hw, *eps = vae_buf(w, 1);
        for (size_t i = 0; i < L * hw; i++) logvar[i] = fminf(fmaxf(logvar[i], -30.0f), 20.0f);
        if (seeds) rng_fill_normal(eps, L * hw, seeds[b], 0, 0, 0, 1);
        for (size_t i = 0; i < L * hw; i++) {
            float m = seeds ? mean[i] + expf(0.5f * logvar[i]) * eps[i] : mean[i];
            z[i] = m * sf;
        }
    }
    return 0;
}

int vae_decode(vae *v, const float *latents, int B, float *img) {
    if (check_batch(v, "vae_decode", B)) return -1;
    const vae_config *c = &v->cfg;
    vae_work *w = &v->work;
    int f = 1 << (c->n_levels - 1);
    size_t n = (size_t)B * c->latent_channels * (v->H / f) * (v->W / f);
    w->cur = 0;
    for (size_t i = 0; i < n; i++) w->buf[0][i] = latents[i] / c->scaling_factor;
    decode_pass(v, B);
    memcpy(img, vae_buf(w, 0), (size_t)B * c->out_channels * v->H * v->W * sizeof *img);
    return 0;
}
