// LoRA files across selma and diffusers / PEFT, on the tiny UNet of
// tests/fixtures/unet_tiny_weights.safetensors and the inputs of unet_tiny_io:
//   - unet_tiny_lora_diffusers.safetensors, written by diffusers' save_lora_weights
//     (tools/check_lora_interop.py: r 4, lora_alpha 8, rank_pattern / alpha_pattern,
//     1x1-conv proj_in adapters), folded by selma, gives the UNet output diffusers gave
//     (unet_tiny_lora_io.safetensors "out");
//   - sets selma writes (a trained expert, merges by cat and svd whose modules have
//     different ranks, the diffusers file re-saved) read back through lora_set as the
//     same tensors and alphas and give identical UNet outputs, in the PEFT and kohya forms.
// `test_lora_interop --write DIR` writes those files and selma's output for each
// (DIR/selma_outputs.safetensors) for tools/check_lora_interop.py to load in diffusers.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/lora_fold.h"
#include "models/lora_merge.h"
#include "models/lora_set.h"
#include "models/unet.h"
#include "runtime/error.h"
#include "runtime/log.h"
#include "runtime/rng.h"
#include "runtime/safetensors.h"
#include "tests/check.h"
#include "tests/parity.h"

#define FIX "tests/fixtures/"
#define BASE FIX "unet_tiny_weights.safetensors"
#define INPUTS FIX "unet_tiny_io.safetensors"
#define DIFFUSERS_LORA FIX "unet_tiny_lora_diffusers.safetensors"
#define DIFFUSERS_OUT FIX "unet_tiny_lora_io.safetensors"
#define PARITY_TOL 1e-4  // as tests/test_unet_parity.c: float32, other summation orders
#define NB 2  // batch and context length of unet_tiny_io
#define NT 3

#define MAX_KEPT 16

static float *x_in, *t_in, *ctx_in;
static float *kept[MAX_KEPT];  // --write: outputs added to the writer, freed after it saved
static int n_kept;
static size_t n_out;

static int read_inputs(void) {
    unet_config c = unet_config_tiny();
    st_file io;
    if (st_open(INPUTS, &io)) return -1;
    size_t S = (size_t)c.sample_size;
    x_in = parity_load(&io, "x", NB * c.in_channels * S * S);
    t_in = parity_load(&io, "t", NB);
    ctx_in = parity_load(&io, "context", (size_t)NB * NT * c.cross_attention_dim);
    n_out = NB * c.out_channels * S * S;
    st_close(&io);
    return x_in && t_in && ctx_in ? 0 : -1;
}

// The tiny UNet with the fixture's base weights (and adapters of lc, zero, if not NULL).
static int base_model(unet *m, const lora_config *lc) {
    unet_config c = unet_config_tiny();
    if (unet_build(m, &c, UNET_FROZEN, lc)) return -1;
    if (unet_load(m, BASE, PARAM_BASE) || unet_alloc_activations(m, NB, NT)) {
        unet_free(m);
        return -1;
    }
    return 0;
}

// The UNet output with a set folded in (malloc'd), or NULL with a message.
static float *output_with(const lora_set *s, const char *source) {
    unet m;
    if (base_model(&m, NULL)) return NULL;
    float *out = NULL;
    if (!unet_fold_lora_set(&m, s, 1.0f, source) && !unet_forward(&m, x_in, t_in, ctx_in, NB)) {
        out = malloc(n_out * sizeof *out);
        CHECK(out);
        memcpy(out, m.out, n_out * sizeof *out);
    }
    unet_free(&m);
    return out;
}

static void fill_normal(float *x, size_t n, rng *r, float sd) {
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(r) * sd;
}

// A trained expert as unet_save writes it (rank 2, alpha 3, SELMA's targets, A and B
// random and non-zero) and the output of the model with the adapter attached.
static int make_expert(const char *path, float **out) {
    lora_config lc = {.rank = 2, .alpha = 3.0f};
    snprintf(lc.targets, sizeof lc.targets, "to_q,to_k,to_v,to_out.0");
    unet m;
    if (base_model(&m, &lc)) return -1;
    rng r = rng_make(11, 1);
    for (int i = 0; i < m.params.n; i++)
        if (m.params.items[i].kind == PARAM_LORA)
            fill_normal(m.params.items[i].t.data, (size_t)tensor_numel(&m.params.items[i].t), &r, 0.4f);
    int rc = unet_save(&m, path, PARAM_LORA) || unet_forward(&m, x_in, t_in, ctx_in, NB) ? -1 : 0;
    if (!rc) {
        *out = malloc(n_out * sizeof **out);
        CHECK(*out);
        memcpy(*out, m.out, n_out * sizeof **out);
    }
    unet_free(&m);
    return rc;
}

// A second expert of rank 3, alpha 1.5 on the cross-attention modules only, so that a
// cat or svd merge with the first gives modules of different ranks.
static void make_second_expert(const lora_set *first, lora_set *s) {
    lora_set_init(s);
    rng r = rng_make(12, 1);
    for (int i = 0; i < first->n; i++) {
        const lora_module *f = &first->mods[i];
        if (!strstr(f->name, "attn2")) continue;
        lora_module *m = lora_set_add(s, f->name, 3, f->in, f->out, 1.5f);
        CHECK(m);
        fill_normal(m->A, (size_t)m->rank * m->in, &r, 0.4f);
        fill_normal(m->B, (size_t)m->out * m->rank, &r, 0.4f);
    }
}

// Identical tensors and alphas; with `scaled` (the kohya form of a set whose alphas
// differ, lora_set_save) identical A and alpha / rank * B to float rounding.
static int same_sets(const lora_set *a, const lora_set *b, int scaled) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++) {
        const lora_module *x = &a->mods[i], *y = lora_set_find(b, x->name);
        if (!y || x->rank != y->rank || x->in != y->in || x->out != y->out || x->conv1x1 != y->conv1x1 ||
            memcmp(x->A, y->A, (size_t)x->rank * x->in * sizeof *x->A))
            return 0;
        for (size_t k = 0; k < (size_t)x->out * x->rank; k++) {
            double u = (double)x->B[k] * x->alpha, v = (double)y->B[k] * y->alpha;
            if (scaled ? fabs(u - v) > 1e-6 * fabs(u) : x->B[k] != y->B[k] || x->alpha != y->alpha) return 0;
        }
    }
    return 1;
}

static int alphas_differ(const lora_set *s) {
    for (int i = 1; i < s->n; i++)
        if (s->mods[i].alpha != s->mods[0].alpha) return 1;
    return 0;
}

// Saves s in both forms under dir/stem{,_kohya}.safetensors; each must read back as s
// and give out (when not NULL: the output s itself was made to give). The outputs are
// added to w as "<stem>" and "<stem>_kohya".
static void save_both(const lora_set *s, const char *dir, const char *stem, const float *out, st_writer *w) {
    float *ref = output_with(s, stem);
    EXPECT(ref != NULL, "%s: %s", stem, err_msg());
    if (!ref) return;
    if (out) {
        double e = parity_diff(ref, out, n_out);
        printf("  %-28s folded vs attached %.2e\n", stem, e);
        EXPECT(e <= PARITY_TOL, "%s: folded vs attached %.3g", stem, e);
    }
    for (int k = 0; k < 2; k++) {
        char path[512], name[128];
        snprintf(name, sizeof name, "%s%s", stem, k ? "_kohya" : "");
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
        lora_set back;
        int ok = lora_set_save(s, path, k ? LORA_FORMAT_KOHYA : LORA_FORMAT_PEFT) == 0;
        ok = ok && lora_set_load(&back, path) == 0;
        EXPECT(ok, "%s: %s", path, err_msg());
        if (!ok) continue;
        int scaled = k && alphas_differ(s);
        EXPECT(same_sets(s, &back, scaled), "%s: read back other tensors or alphas", path);
        float *got = output_with(&back, path);
        EXPECT(got && (scaled ? parity_diff(got, ref, n_out) <= 1e-6 : !memcmp(got, ref, n_out * sizeof *got)),
               "%s: another UNet output", path);
        unet_config c = unet_config_tiny();
        int64_t shape[4] = {NB, c.out_channels, c.sample_size, c.sample_size};
        if (w && got) {  // the writer holds the pointer until it saves
            CHECK(st_writer_add(w, name, ST_F32, 4, shape, got) == 0 && n_kept < MAX_KEPT);
            kept[n_kept++] = got;
        } else {
            free(got);
        }
        lora_set_free(&back);
    }
    free(ref);
}

// Every file selma writes, into dir; with w, their outputs as well.
static void selma_files(const char *dir, st_writer *w) {
    char path[512];
    float *expert_out = NULL;
    snprintf(path, sizeof path, "%s/expert.safetensors", dir);
    EXPECT(make_expert(path, &expert_out) == 0, "%s", err_msg());
    lora_set experts[2];
    if (!expert_out || lora_set_load(&experts[0], path)) {
        EXPECT(0, "%s: %s", path, err_msg());
        free(expert_out);
        return;
    }
    save_both(&experts[0], dir, "expert", expert_out, w);  // overwrites the file with the same content
    make_second_expert(&experts[0], &experts[1]);
    lora_merge_opts cat = {.method = LORA_MERGE_CAT}, svd = {.method = LORA_MERGE_SVD};
    lora_set merged;
    EXPECT(lora_merge(experts, 2, NULL, &cat, &merged) == 0, "%s", err_msg());
    save_both(&merged, dir, "merged_cat", NULL, w);
    lora_set_free(&merged);
    EXPECT(lora_merge(experts, 2, NULL, &svd, &merged) == 0, "%s", err_msg());
    save_both(&merged, dir, "merged_svd", NULL, w);
    lora_set_free(&merged);
    lora_set d;
    EXPECT(lora_set_load(&d, DIFFUSERS_LORA) == 0, "%s", err_msg());
    if (d.n) save_both(&d, dir, "diffusers_resaved", NULL, w);
    lora_set_free(&d);
    lora_set_free(&experts[0]);
    lora_set_free(&experts[1]);
    free(expert_out);
}

static void test_diffusers_file(void) {
    st_file io;
    EXPECT(st_open(DIFFUSERS_OUT, &io) == 0, "%s", err_msg());
    float *ref = parity_load(&io, "out", n_out);
    lora_set s;
    EXPECT(lora_set_load(&s, DIFFUSERS_LORA) == 0, "%s", err_msg());
    float *ours = s.n ? output_with(&s, DIFFUSERS_LORA) : NULL;
    EXPECT(ref && ours, "%s", err_msg());
    if (ref && ours) {
        double e = parity_diff(ours, ref, n_out);
        printf("  diffusers-written LoRA in selma: max rel diff %.2e (%d modules)\n", e, s.n);
        EXPECT(e <= PARITY_TOL, "%s: max rel diff %.3g", DIFFUSERS_LORA, e);
    }
    // The scale must come from lora_adapter_metadata: at scale 1 the output differs.
    int scaled = 0;
    for (int i = 0; i < s.n; i++) scaled |= s.mods[i].alpha != s.mods[i].rank;
    EXPECT(scaled, "%s: every module has alpha = rank", DIFFUSERS_LORA);
    free(ref), free(ours);
    lora_set_free(&s);
    st_close(&io);
}

static int write_mode(const char *dir) {
    char path[512];
    st_writer w;
    st_writer_init(&w);
    selma_files(dir, &w);
    snprintf(path, sizeof path, "%s/selma_outputs.safetensors", dir);
    EXPECT(st_writer_save(&w, path) == 0, "%s", err_msg());
    st_writer_free(&w);
    for (int i = 0; i < n_kept; i++) free(kept[i]);
    printf("wrote %s\n", path);
    return check_report("test_lora_interop --write");
}

int main(int argc, char **argv) {
    log_set_quiet(1);
    CHECK(read_inputs() == 0);
    if (argc == 3 && !strcmp(argv[1], "--write")) return write_mode(argv[2]);
    test_diffusers_file();
    char dir[] = "/tmp/test_lora_interop.XXXXXX";
    CHECK(mkdtemp(dir));
    selma_files(dir, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_report("test_lora_interop");
}
