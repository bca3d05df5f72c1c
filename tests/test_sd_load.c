// Loading Stable Diffusion pipeline folders (models/sd_load.c) against diffusers:
// tests/fixtures/sd_tiny_sd{1,2}/ and their _io.safetensors from
// tools/make_sd_fixture.py (tiny random pipelines, F16 weights computed in float32).
// Every piece (tokenizer ids, text states, UNet noise prediction, one DDIM step, VAE
// encode and decode) and a whole 2-step pipeline image at guidance 7.5 must match
// within PARITY_TOL: max |ours - ref| / max |ref| (pipeline: max absolute difference
// of pixels in [0, 1]). Float32 summation order alone gives ~1e-6 here; the DDIM
// step divides by sqrt(ac) at t = 501 and the pipeline amplifies by the guidance
// scale, hence the margin. Also: errors naming the missing tensor / file / bad key,
// and `selma sd-check` on a fixture.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/bundle.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"
#include "tests/check.h"
#include "tests/parity.h"
#include "tests/selma_cli.h"

#define PARITY_TOL 1e-4
#define B 2

static void expect_close(const char *what, const float *ours, const float *ref, size_t n) {
    double e = ref ? parity_diff(ours, ref, n) : 1e9;
    EXPECT(e <= PARITY_TOL, "%s: max rel diff %.3g", what, e);
    printf("  %-40s %.2e\n", what, e);
}

static void pieces(t2i_model *m, const st_file *io, const char *world) {
    const t2i_config *c = &m->cfg;
    int T = c->te.max_tokens, C = c->te.width, S = c->unet.sample_size, L = c->unet.in_channels;
    int H = c->image_size;
    size_t nl = (size_t)B * L * S * S, ni = (size_t)B * 3 * H * H;
    char what[128];
    // Tokenizer on the prompts stored in the metadata.
    const char *prompts[B] = {0};
    char *meta = strdup(st_meta_get(io, "prompts"));  // ["...", "..."], no escapes but UTF-8
    char *p = meta;
    for (int i = 0; i < B; i++) {
        p = strchr(p, '"') + 1;
        prompts[i] = p;
        p = strchr(p, '"');
        *p++ = 0;
    }
    int ids[B * 77];
    float *ref_ids = parity_load(io, "expected.input_ids", (size_t)B * T);
    EXPECT_TRUE(T == 77 && !t2i_tokenize(m, prompts, B, ids) && ref_ids);
    int same = 1;
    for (int i = 0; ref_ids && i < B * T; i++) same &= ids[i] == (int)ref_ids[i];
    EXPECT(same, "%s: tokenizer ids differ from CLIPTokenizer's", world);
    // Text encoder.
    EXPECT_TRUE(!text_encoder_alloc_acts(&m->te, B, 0) && !text_encoder_forward(&m->te, ids, B));
    float *ref = parity_load(io, "expected.text_states", (size_t)B * T * C);
    snprintf(what, sizeof what, "%s text_states", world);
    expect_close(what, m->te.acts.out, ref, (size_t)B * T * C);
    free(ref);
    // UNet and one DDIM step.
    float *lat = parity_load(io, "latents", nl), *t = parity_load(io, "timestep", B);
    float *ctx = parity_load(io, "context", (size_t)B * T * C);
    EXPECT_TRUE(lat && t && ctx && !unet_alloc_activations(&m->unet, B, T) &&
                !unet_forward(&m->unet, lat, t, ctx, B));
    ref = parity_load(io, "expected.unet_out", nl);
    snprintf(what, sizeof what, "%s unet_out", world);
    expect_close(what, m->unet.out, ref, nl);
    free(ref);
    sampler_opts so;
    t2i_sampler_opts(m, SAMPLER_DDIM, atoi(st_meta_get(io, "ddim_steps")), 1.0, &so);
    float *x = malloc(nl * sizeof(float));
    memcpy(x, lat, nl * sizeof(float));
    ddim_step(&so, &m->sched, (int)t[0], m->unet.out, x, NULL, (int)nl);
    ref = parity_load(io, "expected.ddim_step", nl);
    snprintf(what, sizeof what, "%s ddim_step (t = %d)", world, (int)t[0]);
    expect_close(what, x, ref, nl);
    free(ref);
    // VAE encode and decode.
    float *img = parity_load(io, "image", ni), *dec = malloc(ni * sizeof(float));
    EXPECT_TRUE(img && !vae_alloc_activations(m->vae, B, H, H) && !vae_encode(m->vae, img, B, x, NULL));
    ref = parity_load(io, "expected.vae_latents", nl);
    snprintf(what, sizeof what, "%s vae_latents", world);
    expect_close(what, x, ref, nl);
    free(ref);
    EXPECT_TRUE(!vae_decode(m->vae, lat, B, dec));
    ref = parity_load(io, "expected.vae_decoded", ni);
    snprintf(what, sizeof what, "%s vae_decoded", world);
    expect_close(what, dec, ref, ni);
    free(ref);
    // The whole pipeline from fixed latents: 2 DDIM steps, guidance 7.5, then diffusers'
    // postprocess (x / 2 + 0.5 clamped to [0, 1], HWC).
    float *pl = parity_load(io, "pipeline_latents", nl);
    t2i_sampler_opts(m, SAMPLER_DDIM, 2, 7.5, &so);
    EXPECT_TRUE(pl && !t2i_sample_float(m, &so, prompts, B, NULL, pl, dec));
    ref = parity_load(io, "expected.pipeline_image", ni);
    double worst = ref ? 0 : 1e9;
    for (int b = 0; ref && b < B; b++)
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < H * H; i++) {
                float v = dec[((size_t)b * 3 + k) * H * H + i] / 2 + 0.5f;
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                double e = fabs(v - ref[((size_t)b * H * H + i) * 3 + k]);
                worst = e > worst || e != e ? e : worst;
            }
    EXPECT(worst <= PARITY_TOL, "%s pipeline image: max abs diff %.3g", world, worst);
    snprintf(what, sizeof what, "%s pipeline image (2 steps, cfg 7.5)", world);
    printf("  %-40s %.2e\n", what, worst);
    free(ref), free(pl), free(img), free(dec), free(x), free(lat), free(t), free(ctx);
    free(ref_ids), free(meta);
}

static void parity(const char *world, int act, prediction_type pred) {
    char dir[256], io_path[256];
    snprintf(dir, sizeof dir, "tests/fixtures/sd_tiny_%s", world);
    snprintf(io_path, sizeof io_path, "tests/fixtures/sd_tiny_%s_io.safetensors", world);
    t2i_model m;
    st_file io = {0};
    int rc = bundle_load(&m, dir, UNET_FROZEN, NULL);
    EXPECT(!rc, "%s: %s", dir, err_msg());
    EXPECT(!st_open(io_path, &io), "%s", err_msg());
    if (rc || !io.name) return;
    EXPECT_TRUE(!strcmp(m.cfg.world, "sd") && m.cfg.image_size == 16 && m.vae);
    EXPECT_TRUE((int)m.cfg.te.act == act && m.cfg.prediction == pred && m.cfg.beta == BETA_SCALED_LINEAR);
    EXPECT_TRUE(m.cfg.spacing == SPACING_LEADING && m.cfg.steps_offset == 1 && !m.cfg.set_alpha_to_one);
    pieces(&m, &io, world);
    t2i_free(&m);
    st_close(&io);
}

// Copies src to dst without tensor `skip` (metadata kept).
static int copy_without(const char *src, const char *dst, const char *skip) {
    st_file f = {0};
    st_writer w;
    st_writer_init(&w);
    int rc = st_open(src, &f);
    for (size_t i = 0; !rc && i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        if (!strcmp(t->name, skip)) continue;
        rc = st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    for (size_t i = 0; !rc && i < f.n_meta; i++) rc = st_writer_set_meta(&w, f.meta[i].key, f.meta[i].value);
    if (!rc) rc = st_writer_save(&w, dst);
    st_writer_free(&w);
    st_close(&f);
    return rc;
}

static void expect_load_error(const char *dir, const char *what, const char *s1, const char *s2) {
    t2i_model m;
    int rc = bundle_load(&m, dir, UNET_FROZEN, NULL);
    EXPECT(rc && strstr(err_msg(), s1) && strstr(err_msg(), s2), "%s: '%s' should name %s and %s", what,
           rc ? err_msg() : "(loaded)", s1, s2);
    if (!rc) t2i_free(&m);
    else printf("  %s: %s\n", what, err_msg());
}

static void errors(const char *tmp) {
    char dir[512], cmd[1200], path[600];
    snprintf(dir, sizeof dir, "%s/sd", tmp);
    snprintf(cmd, sizeof cmd, "cp -r tests/fixtures/sd_tiny_sd1 '%s'", dir);
    EXPECT_TRUE(system(cmd) == 0);
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    EXPECT_TRUE(!copy_without("tests/fixtures/sd_tiny_sd1/unet/diffusion_pytorch_model.safetensors", path,
                              "conv_in.bias"));
    expect_load_error(dir, "missing tensor", "unet/diffusion_pytorch_model.safetensors", "conv_in.bias");
    EXPECT_TRUE(!system((snprintf(cmd, sizeof cmd, "cp tests/fixtures/sd_tiny_sd1/unet/*.safetensors "
                                  "'%s/unet/'", dir), cmd)));
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    EXPECT_TRUE(!remove(path));
    expect_load_error(dir, "missing file", "vae/diffusion_pytorch_model.safetensors", "No such file");
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    const char *bad = "{\"unet\": [\"diffusers\", \"UNet2DModel\"]}";
    EXPECT_TRUE(!atomic_write(path, bad, strlen(bad)));
    expect_load_error(dir, "bad model_index.json", "model_index.json", "\"unet\" names class 'UNet2DModel'");
    EXPECT_TRUE(!atomic_write(path, "[1, 2", 5));
    expect_load_error(dir, "model_index.json not JSON", "model_index.json", "not a JSON object");
}

// `selma sd-check` on the SD 2 fixture: every output against diffusers', and an input
// file without "image" refused with the tensor's name.
static void sd_check(const char *tmp) {
    char args[2048], out[1 << 14], res[512], in[512];
    snprintf(res, sizeof res, "%s/check.safetensors", tmp);
    snprintf(args, sizeof args, "sd-check --model tests/fixtures/sd_tiny_sd2 --inputs "
             "tests/fixtures/sd_tiny_sd2_io.safetensors --out '%s'", res);
    int rc = selma_run(args, out, sizeof out);
    EXPECT(rc == 0, "sd-check exit %d:\n%s", rc, out);
    st_file f = {0}, io = {0};
    if (!rc && !st_open(res, &f) && !st_open("tests/fixtures/sd_tiny_sd2_io.safetensors", &io)) {
        static const char *const names[] = {"input_ids", "text_states", "unet_out", "ddim_step",
                                            "vae_latents", "vae_decoded"};
        for (int i = 0; i < 6; i++) {
            char key[64], what[64];
            snprintf(key, sizeof key, "expected.%s", names[i]);
            const st_tensor *t = st_find(&f, names[i]);
            size_t n = t ? (size_t)st_tensor_numel(t) : 0;
            float *ours = t ? parity_load(&f, names[i], n) : NULL, *ref = parity_load(&io, key, n);
            snprintf(what, sizeof what, "sd-check %s", names[i]);
            EXPECT(ours && ref, "%s missing", names[i]);
            if (ours && ref) expect_close(what, ours, ref, n);
            free(ours), free(ref);
        }
    }
    st_close(&f);
    st_close(&io);
    snprintf(in, sizeof in, "%s/no_image.safetensors", tmp);
    EXPECT_TRUE(!copy_without("tests/fixtures/sd_tiny_sd2_io.safetensors", in, "image"));
    snprintf(args, sizeof args, "sd-check --model tests/fixtures/sd_tiny_sd2 --inputs '%s' --out '%s'", in, res);
    rc = selma_run(args, out, sizeof out);
    EXPECT(rc == 1, "sd-check without image: exit %d", rc);
    EXPECT_IN(out, "input tensor \"image\" is missing");
}

int main(void) {
    log_set_quiet(1);
    if (selma_locate("test_sd_load")) return 1;
    char tmp[] = "/tmp/test_sd_load.XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    printf("parity (max |ours - diffusers| / max |diffusers|):\n");
    parity("sd1", GELU_QUICK, PRED_EPSILON);
    parity("sd2", GELU_ERF, PRED_V);
    errors(tmp);
    sd_check(tmp);
    dir_remove_tree(tmp);
    return check_report("test_sd_load");
}
