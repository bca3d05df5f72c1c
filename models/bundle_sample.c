// Sampling images from a model bundle: tokenize, encode the prompts once (and the
// empty prompt for guidance), run the sampler with the UNet as its denoiser, decode
// latents with the VAE (sd), map pixels from [-1, 1] to uint8 (see bundle.h).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/bundle.h"
#include "models/tokenizer.h"
#include "runtime/device.h"
#include "runtime/error.h"

int t2i_tokenize(const t2i_model *m, const char *const *prompts, int n, int *ids) {
    int T = m->cfg.te.max_tokens;
    if (!strcmp(m->cfg.world, "sd")) {
        if (!m->clip.n_tokens) return err_set("model: the sd world's CLIP tokenizer (tokenizer/) is not loaded");
        for (int i = 0; i < n; i++)
            if (clip_tokenizer_encode(&m->clip, prompts[i] ? prompts[i] : "", T, ids + (size_t)i * T, NULL) < 0)
                return -1;
        return 0;
    }
    if (strcmp(m->cfg.world, "shapes"))
        return err_set("model: the %s world's tokenizer is not available here", m->cfg.world);
    for (int i = 0; i < n; i++)
        if (tokenizer_encode(prompts[i] ? prompts[i] : "", T, TOKENIZER_DEFAULT_PAD,
                             ids + (size_t)i * T, NULL) < 0)
            return -1;
    return 0;
}

static int eos_position(const t2i_model *m, const int *row) {
    int T = m->cfg.te.max_tokens, end = strcmp(m->cfg.world, "sd") ? TOKEN_END : m->clip.eos_id;
    for (int i = 0; i < T; i++)
        if (row[i] == end) return i;
    return T - 1;  // truncated without <end> (tokenizer_encode always writes one)
}

void t2i_pool(const t2i_model *m, const int *ids, const float *ctx, int B, float *pooled) {
    int T = m->cfg.te.max_tokens, C = m->cfg.te.width;
    for (int b = 0; b < B; b++)
        memcpy(pooled + (size_t)b * C, ctx + ((size_t)b * T + eos_position(m, ids + (size_t)b * T)) * C,
               (size_t)C * sizeof(float));
}

void t2i_pool_backward(const t2i_model *m, const int *ids, const float *dpooled, int B, float *dctx) {
    int T = m->cfg.te.max_tokens, C = m->cfg.te.width;
    for (int b = 0; b < B; b++) {
        float *d = dctx + ((size_t)b * T + eos_position(m, ids + (size_t)b * T)) * C;
        for (int c = 0; c < C; c++) d[c] += dpooled[(size_t)b * C + c];
    }
}

void t2i_sampler_opts(const t2i_model *m, sampler_kind kind, int steps, double guidance,
                      sampler_opts *o) {
    sampler_defaults(o);
    o->kind = kind;
    o->steps = steps;
    o->spacing = m->cfg.spacing;
    o->steps_offset = m->cfg.steps_offset;
    o->set_alpha_to_one = m->cfg.set_alpha_to_one;
    o->eta = 0;
    o->cfg = guidance != 1.0;  // guidance 1 is the conditional model alone
    o->guidance = guidance;
}

// On a CUDA UNet the latents go over and the prediction comes back each call: the
// sampler's update stays host code (a first pass; keeping the latents on the device
// would save two copies of n_img images per step).
static int denoise(void *ctx, const float *x, const float *t, int n_img, float *out) {
    t2i_model *m = ctx;
    const unet_config *c = &m->cfg.unet;
    size_t hw = (size_t)c->sample_size * c->sample_size;
    device_kind dev = m->unet.params.params.device;
    const float *xin = x, *text = m->ctx, *pooled = c->class_embed_dim ? m->pooled : NULL;
    if (dev != DEVICE_CPU) {
        device_copy(dev, m->dev_x, DEVICE_CPU, x, (size_t)n_img * c->in_channels * hw * sizeof(float));
        xin = m->dev_x, text = m->dev_ctx, pooled = pooled ? m->dev_pooled : NULL;
    }
    if (unet_forward_cond(&m->unet, xin, t, text, pooled, n_img)) return -1;
    device_copy(DEVICE_CPU, out, dev, m->unet.out, (size_t)n_img * c->out_channels * hw * sizeof(float));
    return 0;
}

static int ensure_acts(t2i_model *m, int rows) {
    if (m->acts_B >= rows) return 0;
    const text_encoder_config *tc = &m->cfg.te;
    float *ctx = realloc(m->ctx, (size_t)rows * tc->max_tokens * tc->width * sizeof(float));
    if (!ctx) return err_set("model: out of memory for %d text embeddings", rows);
    m->ctx = ctx;
    float *pooled = realloc(m->pooled, (size_t)rows * tc->width * sizeof(float));
    if (!pooled) return err_set("model: out of memory for %d pooled text embeddings", rows);
    m->pooled = pooled;
    if (text_encoder_alloc_acts(&m->te, rows, 0) || unet_alloc_activations(&m->unet, rows, tc->max_tokens))
        return -1;
    device_kind dev = m->unet.params.params.device;
    if (dev != DEVICE_CPU) {
        const unet_config *c = &m->cfg.unet;
        float **bufs[] = {&m->dev_x, &m->dev_ctx, &m->dev_pooled};
        size_t n[] = {(size_t)rows * c->in_channels * c->sample_size * c->sample_size,
                      (size_t)rows * tc->max_tokens * tc->width, (size_t)rows * tc->width};
        for (int i = 0; i < 3; i++) {
            if (*bufs[i]) device_free(dev, *bufs[i]);
            if (!(*bufs[i] = device_alloc(dev, n[i] * sizeof(float))))
                return err_set("model: out of device memory for %d sampling rows", rows);
        }
    }
    m->acts_B = rows;
    return 0;
}

// sd: the VAE's activations for n images at image_size (kept while large enough).
static int ensure_vae_acts(t2i_model *m, int n) {
    vae *v = m->vae;
    int H = m->cfg.image_size;
    if (v->acts.base && v->B >= n && v->H == H && v->W == H) return 0;
    return vae_alloc_activations(v, n, H, H);
}

int t2i_sample_float(t2i_model *m, const sampler_opts *o, const char *const *prompts, int n,
                     const uint64_t *seeds, const float *latents, float *img) {
    const t2i_config *c = &m->cfg;
    int T = c->te.max_tokens, rows = o->cfg ? 2 * n : n, S = c->unet.sample_size;
    int ch = c->unet.out_channels, sd = m->vae != NULL;
    if (n < 1) return err_set("sample: %d images", n);
    if (ensure_acts(m, rows) || (sd && ensure_vae_acts(m, n))) return -1;
    size_t nx = (size_t)n * ch * S * S;
    int *ids = malloc((size_t)rows * T * sizeof(int));
    const char **texts = malloc((size_t)rows * sizeof(char *));
    float *x = sd ? malloc(nx * sizeof(float)) : img;  // shapes: the sample is the image
    CHECK(ids && texts && x);
    if (latents) memcpy(x, latents, nx * sizeof(float));
    // diffusers' order: unconditional rows first, then the conditional ones.
    for (int i = 0; i < rows; i++) texts[i] = o->cfg && i < n ? "" : prompts[o->cfg ? i - n : i];
    int rc = t2i_tokenize(m, texts, rows, ids);
    if (!rc) rc = text_encoder_forward(&m->te, ids, rows);
    if (!rc) {
        memcpy(m->ctx, m->te.acts.out, (size_t)rows * T * c->te.width * sizeof(float));
        t2i_pool(m, ids, m->ctx, rows, m->pooled);
        device_kind dev = m->unet.params.params.device;
        if (dev != DEVICE_CPU) {  // the text rows cross once per call, not per step
            device_copy(dev, m->dev_ctx, DEVICE_CPU, m->ctx, (size_t)rows * T * c->te.width * sizeof(float));
            device_copy(dev, m->dev_pooled, DEVICE_CPU, m->pooled, (size_t)rows * c->te.width * sizeof(float));
        }
        rc = latents ? sampler_run_from(o, &m->sched, denoise, m, n, ch * S * S, seeds, x)
                     : sampler_run(o, &m->sched, denoise, m, n, ch * S * S, seeds, x);
    }
    if (!rc && sd) rc = vae_decode(m->vae, x, n, img);
    free(ids);
    free(texts);
    if (sd) free(x);
    return rc;
}

int t2i_sample(t2i_model *m, const sampler_opts *o, const char *const *prompts, int n,
               const uint64_t *seeds, uint8_t *rgb) {
    int S = m->cfg.image_size;
    if (n < 1) return err_set("sample: %d images", n);
    float *img = malloc((size_t)n * 3 * S * S * sizeof(float));
    CHECK(img);
    int rc = t2i_sample_float(m, o, prompts, n, seeds, NULL, img);
    // NCHW floats in [-1, 1] -> HWC bytes.
    for (int b = 0; b < n && !rc; b++)
        for (int y = 0; y < S; y++)
            for (int xx = 0; xx < S; xx++)
                for (int k = 0; k < 3; k++) {
                    float v = img[(((size_t)b * 3 + k) * S + y) * S + xx];
                    float p = roundf((v + 1.0f) * 127.5f);
                    p = p != p ? 0 : p < 0 ? 0 : p > 255 ? 255 : p;
                    rgb[(((size_t)b * S + y) * S + xx) * 3 + k] = (uint8_t)p;
                }
    free(img);
    return rc;
}
