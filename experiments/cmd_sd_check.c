// `selma sd-check`: runs each piece of a Stable Diffusion pipeline folder on given
// inputs and writes every output, so that selma can be compared with another
// implementation (tools/make_sd_fixture.py writes such inputs with diffusers' outputs).
//
// Inputs (IN.safetensors, any numeric dtype):
//   input_ids (B, T) token ids, or else __metadata__ "prompts": a JSON list of B strings
//   latents (B, latent_channels, S, S), S = the UNet's sample_size
//   timestep (B) or (1): the UNet's timestep per image; integer for the DDIM step
//   context (B, T, C) optional: the UNet's text states (default: text_states below)
//   image (Bi, 3, H, W) in [-1, 1], H and W multiples of the VAE's factor f
//   __metadata__ "ddim_steps" optional: inference steps of the DDIM step (default 50)
// Outputs (OUT.safetensors, written atomically; F32 except input_ids I32):
//   input_ids, text_states = the text encoder's output, unet_out = UNet(latents,
//   timestep, context), ddim_step = one DDIM step (eta 0) from latents at timestep with
//   unet_out, vae_latents = VAE mean of image times scaling_factor, vae_decoded =
//   decode(latents / scaling_factor).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/commands.h"
#include "models/bundle.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: selma sd-check --model DIR --inputs IN.safetensors --out OUT.safetensors\n"
               "  DIR: a Stable Diffusion 1.x/2.x folder in diffusers' layout (model_index.json)\n"
               "  inputs and outputs: see experiments/README.md\n");
}

// The tensor as floats; want[i] < 0 matches any size. NULL with a message naming the
// file and tensor if it is missing (and required) or of another rank or shape.
static float *read_input(const st_file *f, const char *name, int ndim, const int64_t *want,
                         int required, int64_t *shape) {
    const st_tensor *t = st_find(f, name);
    if (!t) {
        if (required) err_set("%s: input tensor \"%s\" is missing", f->name, name);
        else err_clear();
        return NULL;
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = want[i] < 0 || t->shape[i] == want[i];
    if (!ok) {
        char exp[128] = "", *p = exp;
        for (int i = 0; i < ndim; i++)
            p += want[i] < 0 ? sprintf(p, "%s?", i ? ", " : "") : sprintf(p, "%s%lld", i ? ", " : "", (long long)want[i]);
        err_set("%s: input tensor \"%s\" must have shape (%s)", f->name, name, exp);
        return NULL;
    }
    size_t n = (size_t)st_tensor_numel(t);
    float *x = malloc((n ? n : 1) * sizeof(float));
    CHECK(x);
    if (st_tensor_to_f32(f, t, x, n)) {
        free(x);
        return NULL;
    }
    for (int i = 0; i < ndim; i++) shape[i] = t->shape[i];
    return x;
}

// input_ids, or the prompts in the metadata through the model's tokenizer. ids (B, T).
static int read_ids(t2i_model *m, const st_file *f, int **ids, int *B) {
    int T = m->cfg.te.max_tokens;
    int64_t want[2] = {-1, T}, shape[2];
    float *x = read_input(f, "input_ids", 2, want, 0, shape);
    if (x) {
        *B = (int)shape[0];
        *ids = malloc((size_t)*B * T * sizeof(int) + 1);
        CHECK(*ids);
        for (size_t i = 0; i < (size_t)*B * T; i++) (*ids)[i] = (int)x[i];
        free(x);
        return 0;
    }
    if (st_find(f, "input_ids")) return -1;  // present but bad: read_input said why
    const char *meta = st_meta_get(f, "prompts");
    if (!meta) return err_set("%s: neither input tensor \"input_ids\" nor __metadata__ \"prompts\"", f->name);
    cJSON *a = cJSON_Parse(meta);
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0, rc = 0;
    const char **texts = malloc((size_t)(n ? n : 1) * sizeof(char *));
    CHECK(texts);
    for (int i = 0; i < n && !rc; i++)
        if (!(texts[i] = cJSON_GetStringValue(cJSON_GetArrayItem(a, i))))
            rc = err_set("%s: __metadata__ \"prompts\"[%d] is not a string", f->name, i);
    if (!rc && n < 1) rc = err_set("%s: __metadata__ \"prompts\" is not a non-empty JSON list of strings", f->name);
    if (!rc) {
        *B = n;
        *ids = malloc((size_t)n * T * sizeof(int));
        CHECK(*ids);
        rc = t2i_tokenize(m, texts, n, *ids);
    }
    free(texts);
    cJSON_Delete(a);
    return rc;
}

typedef struct outputs {
    int *ids;
    float *text, *unet, *ddim, *enc, *dec;
    int64_t s_ids[2], s_text[3], s_lat[4], s_enc[4], s_dec[4];
} outputs;

static int run_checks(t2i_model *m, const st_file *f, outputs *o) {
    const t2i_config *c = &m->cfg;
    int B = 0, T = c->te.max_tokens, C = c->te.width, S = c->unet.sample_size, L = c->unet.in_channels;
    if (read_ids(m, f, &o->ids, &B)) return -1;
    o->s_ids[0] = B, o->s_ids[1] = T;
    if (text_encoder_alloc_acts(&m->te, B, 0) || text_encoder_forward(&m->te, o->ids, B)) return -1;
    size_t nt = (size_t)B * T * C;
    o->text = malloc(nt * sizeof(float));
    CHECK(o->text);
    memcpy(o->text, m->te.acts.out, nt * sizeof(float));
    o->s_text[0] = B, o->s_text[1] = T, o->s_text[2] = C;

    int64_t want_lat[4] = {B, L, S, S}, want_ctx[3] = {B, T, C}, shape[4];
    float *lat = read_input(f, "latents", 4, want_lat, 1, shape), *ts = NULL, *ctx = NULL;
    int64_t want_t[1] = {-1};
    if (lat) ts = read_input(f, "timestep", 1, want_t, 1, shape);
    if (ts && shape[0] != 1 && shape[0] != B) {
        err_set("%s: input tensor \"timestep\" must have 1 or %d entries", f->name, B);
        free(ts), ts = NULL;
    }
    int t_n = ts ? (int)shape[0] : 0;
    if (ts) {
        ctx = read_input(f, "context", 3, want_ctx, 0, shape);
        if (!ctx && st_find(f, "context")) free(ts), ts = NULL;
    }
    int rc = ts ? 0 : -1;
    size_t n = (size_t)L * S * S;
    float t_all[256];
    if (!rc && B > 256) rc = err_set("sd-check: at most 256 images, not %d", B);
    for (int b = 0; !rc && b < B; b++) t_all[b] = ts[t_n == 1 ? 0 : b];
    if (!rc) rc = unet_alloc_activations(&m->unet, B, T);
    if (!rc) rc = unet_forward(&m->unet, lat, t_all, ctx ? ctx : o->text, B);
    if (!rc) {
        o->unet = malloc(B * n * sizeof(float));
        o->ddim = malloc(B * n * sizeof(float));
        CHECK(o->unet && o->ddim);
        memcpy(o->unet, m->unet.out, B * n * sizeof(float));
        memcpy(o->ddim, lat, B * n * sizeof(float));
        for (int i = 0; i < 4; i++) o->s_lat[i] = want_lat[i];
        const char *st = st_meta_get(f, "ddim_steps");
        int steps = st ? atoi(st) : 50;
        if (steps < 1 || steps > c->train_timesteps)
            rc = err_set("%s: __metadata__ \"ddim_steps\" = '%s' is not in 1..%d", f->name, st, c->train_timesteps);
        sampler_opts so;
        t2i_sampler_opts(m, SAMPLER_DDIM, steps, 1.0, &so);
        for (int b = 0; !rc && b < B; b++) {
            if (t_all[b] != floorf(t_all[b]) || t_all[b] < 0 || t_all[b] >= c->train_timesteps)
                rc = err_set("%s: input tensor \"timestep\"[%d] = %g is not an integer step in [0, %d)",
                             f->name, b, t_all[b], c->train_timesteps);
            else
                ddim_step(&so, &m->sched, (int)t_all[b], o->unet + b * n, o->ddim + b * n, NULL, (int)n);
        }
    }

    int64_t want_img[4] = {-1, c->vae.in_channels, -1, -1};
    float *img = rc ? NULL : read_input(f, "image", 4, want_img, 1, shape);
    if (!rc && !img) rc = -1;
    vae *v = m->vae;
    int fct = 1 << (c->vae.n_levels - 1), lc = c->vae.latent_channels;
    if (!rc) rc = vae_alloc_activations(v, (int)shape[0], (int)shape[2], (int)shape[3]);
    if (!rc) {
        o->s_enc[0] = shape[0], o->s_enc[1] = lc, o->s_enc[2] = shape[2] / fct, o->s_enc[3] = shape[3] / fct;
        o->enc = malloc((size_t)shape[0] * lc * o->s_enc[2] * o->s_enc[3] * sizeof(float));
        CHECK(o->enc);
        rc = vae_encode(v, img, (int)shape[0], o->enc, NULL);
    }
    if (!rc) rc = vae_alloc_activations(v, B, S * fct, S * fct);
    if (!rc) {
        o->s_dec[0] = B, o->s_dec[1] = c->vae.out_channels, o->s_dec[2] = o->s_dec[3] = S * fct;
        o->dec = malloc((size_t)B * c->vae.out_channels * S * fct * S * fct * sizeof(float));
        CHECK(o->dec);
        rc = vae_decode(v, lat, B, o->dec);
    }
    free(lat);
    free(ts);
    free(ctx);
    free(img);
    return rc;
}

static int write_outputs(const outputs *o, const char *model, const char *path) {
    st_writer w;
    st_writer_init(&w);
    int rc = st_writer_add(&w, "input_ids", ST_I32, 2, o->s_ids, o->ids) ||
             st_writer_add(&w, "text_states", ST_F32, 3, o->s_text, o->text) ||
             st_writer_add(&w, "unet_out", ST_F32, 4, o->s_lat, o->unet) ||
             st_writer_add(&w, "ddim_step", ST_F32, 4, o->s_lat, o->ddim) ||
             st_writer_add(&w, "vae_latents", ST_F32, 4, o->s_enc, o->enc) ||
             st_writer_add(&w, "vae_decoded", ST_F32, 4, o->s_dec, o->dec) ||
             st_writer_set_meta(&w, "model", model) ||
             st_writer_set_meta(&w, "selma_version", SELMA_VERSION) || st_writer_save(&w, path);
    st_writer_free(&w);
    return rc ? -1 : 0;
}

int cmd_sd_check(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) { usage(stdout); return 0; }
        if (i + 1 >= argc || (strcmp(k, "--model") && strcmp(k, "--inputs") && strcmp(k, "--out"))) {
            fprintf(stderr, "selma sd-check: unknown or incomplete option '%s'\n", k);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(k, "--model")) model = v;
        else if (!strcmp(k, "--inputs")) in = v;
        else out = v;
    }
    if (!model || !in || !out) {
        fprintf(stderr, "selma sd-check: --model, --inputs and --out are required\n");
        usage(stderr);
        return 2;
    }
    if (!sd_is_pipeline(model)) {
        fprintf(stderr, "selma sd-check: %s: no model_index.json (not a diffusers pipeline folder)\n", model);
        return 1;
    }
    t2i_model m;
    st_file f = {0};
    outputs o = {0};
    int rc = bundle_load(&m, model, UNET_FROZEN, NULL);
    if (!rc) {
        rc = st_open(in, &f) || run_checks(&m, &f, &o) || write_outputs(&o, model, out);
        t2i_free(&m);
    }
    if (rc) fprintf(stderr, "selma sd-check: %s\n", err_msg());
    else printf("selma sd-check: wrote %s (%lld images)\n", out, (long long)o.s_ids[0]);
    st_close(&f);
    free(o.ids), free(o.text), free(o.unet), free(o.ddim), free(o.enc), free(o.dec);
    return rc ? 1 : 0;
}
