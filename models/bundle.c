// Model bundles: build, save and load a text encoder + UNet + schedule (see bundle.h).
#include "models/bundle.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/tokenizer.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

#define BUNDLE_FORMAT 1
#define SHAPES_TOKENIZER "selma-shapes-words"

void t2i_config_shapes(t2i_config *c) {
    *c = (t2i_config){0};
    snprintf(c->world, sizeof c->world, "shapes");
    c->unet = unet_config_shapes();
    c->image_size = c->unet.sample_size;
    text_encoder_config_shapes(&c->te, tokenizer_vocab_size());
    c->te.max_tokens = 48;
    c->beta = BETA_COSINE;
    c->prediction = PRED_V;
    c->train_timesteps = 1000;
    c->beta_start = 0.0001, c->beta_end = 0.02;
    // Trailing spacing starts sampling at t = T-1, where the cosine schedule's signal is
    // ~0 and the initial noise matches what the model saw in training; the last DDIM
    // step goes to ac = 1, a clean image.
    c->spacing = SPACING_TRAILING;
    c->steps_offset = 0;
    c->set_alpha_to_one = 1;
}

int t2i_config_check(const t2i_config *c) {
    if (strcmp(c->world, "shapes") && strcmp(c->world, "sd"))
        return err_set("model config: world '%s' is not shapes or sd", c->world);
    if (unet_config_check(&c->unet) || text_encoder_config_check(&c->te)) return -1;
    if (c->unet.cross_attention_dim != c->te.width)
        return err_set("model config: unet cross_attention_dim %d != text encoder width %d",
                       c->unet.cross_attention_dim, c->te.width);
    if (c->unet.class_embed_dim && c->unet.class_embed_dim != c->te.width)
        return err_set("model config: unet projection_class_embeddings_input_dim %d != text encoder width %d "
                       "(the class embedding takes the pooled text embedding)", c->unet.class_embed_dim, c->te.width);
    if (!strcmp(c->world, "shapes")) {
        if (c->te.vocab_size != tokenizer_vocab_size())
            return err_set("model config: text encoder vocab_size %d != the shapes tokenizer's %d",
                           c->te.vocab_size, tokenizer_vocab_size());
        if (c->image_size != c->unet.sample_size || c->unet.in_channels != 3 || c->unet.out_channels != 3)
            return err_set("model config: a shapes model draws RGB at sample_size (image_size %d, sample_size %d, channels %d/%d)",
                           c->image_size, c->unet.sample_size, c->unet.in_channels, c->unet.out_channels);
    } else {
        const vae_config *v = &c->vae;
        if (vae_config_check(v)) return err_wrap("model config: vae");
        if (c->unet.in_channels != v->latent_channels || c->unet.out_channels != v->latent_channels)
            return err_set("model config: unet in/out_channels %d/%d != vae latent_channels %d",
                           c->unet.in_channels, c->unet.out_channels, v->latent_channels);
        if (v->out_channels != 3)
            return err_set("model config: vae out_channels %d is not 3 (RGB)", v->out_channels);
        if (c->image_size != c->unet.sample_size << (v->n_levels - 1))
            return err_set("model config: image_size %d != unet sample_size %d x the vae's factor %d",
                           c->image_size, c->unet.sample_size, 1 << (v->n_levels - 1));
    }
    return 0;
}

int t2i_build(t2i_model *m, unet_train_mode mode, const lora_config *lora) {
    t2i_config c = m->cfg;
    memset(m, 0, sizeof *m);
    m->cfg = c;
    if (t2i_config_check(&c)) return -1;
    if (schedule_init(&m->sched, c.beta, c.prediction, c.train_timesteps, c.beta_start, c.beta_end))
        return -1;
    if (text_encoder_create(&m->te, &c.te) || (mode == UNET_TRAIN_FULL && text_encoder_alloc_grads(&m->te)) ||
        unet_build(&m->unet, &c.unet, mode, lora)) {
        t2i_free(m);
        return -1;
    }
    if (!strcmp(c.world, "sd")) {
        m->vae = calloc(1, sizeof *m->vae);
        CHECK(m->vae);
        if (vae_build(m->vae, &c.vae)) {
            t2i_free(m);
            return -1;
        }
    }
    return 0;
}

void t2i_init_random(t2i_model *m, uint64_t seed) {
    text_encoder_init_random(&m->te, seed);
    unet_init_random(&m->unet, seed ^ 0x756e6574ULL);  // "unet": a stream of its own
}

void t2i_free(t2i_model *m) {
    text_encoder_free(&m->te);
    unet_free(&m->unet);
    schedule_free(&m->sched);
    free(m->ctx);
    free(m->pooled);
    m->ctx = m->pooled = NULL;
    float *rows[] = {m->dev_x, m->dev_ctx, m->dev_pooled};  // only a CUDA UNet's (else NULL)
    for (int i = 0; i < 3; i++)
        if (rows[i]) device_free(DEVICE_CUDA, rows[i]);
    m->dev_x = m->dev_ctx = m->dev_pooled = NULL;
    m->acts_B = 0;
    clip_tokenizer_free(&m->clip);
    if (m->vae) vae_free(m->vae);
    free(m->vae);
    m->vae = NULL;
}

// ---- directories ----

int dir_fsync(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return err_set("%s: %s", path, err_errno_string());
    int rc = fsync(fd);
    close(fd);
    return rc ? err_set("%s: fsync: %s", path, err_errno_string()) : 0;
}

int dir_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : err_set("%s: %s", path, err_errno_string());
    if (!S_ISDIR(st.st_mode))
        return unlink(path) ? err_set("%s: %s", path, err_errno_string()) : 0;
    DIR *d = opendir(path);
    if (!d) return err_set("%s: %s", path, err_errno_string());
    struct dirent *e;
    int rc = 0;
    char sub[4096];
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
            rc = err_set("%s: path too long", path);
        else
            rc = dir_remove_tree(sub);
    }
    closedir(d);
    if (!rc && rmdir(path)) rc = err_set("%s: %s", path, err_errno_string());
    return rc;
}

static int write_text(const char *dir, const char *name, char *text) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t n = strlen(text);
    char *buf = malloc(n + 2);
    CHECK(buf);
    memcpy(buf, text, n);
    buf[n] = '\n';
    free(text);
    int rc = atomic_write(path, buf, n + 1);
    free(buf);
    return rc;
}

static char *tokenizer_config_json(const t2i_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tokenizer_class", SHAPES_TOKENIZER);
    cJSON_AddStringToObject(o, "note", "word-level vocabulary built into selma (models/tokenizer.c); vocab.json lists it");
    cJSON_AddNumberToObject(o, "model_max_length", c->te.max_tokens);
    cJSON_AddNumberToObject(o, "vocab_size", tokenizer_vocab_size());
    cJSON_AddStringToObject(o, "bos_token", tokenizer_word(TOKEN_START));
    cJSON_AddStringToObject(o, "eos_token", tokenizer_word(TOKEN_END));
    cJSON_AddStringToObject(o, "pad_token", tokenizer_word(TOKENIZER_DEFAULT_PAD));
    cJSON_AddStringToObject(o, "unk_token", tokenizer_word(TOKEN_UNK));
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    CHECK(s);
    return s;
}

static char *vocab_json(void) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < tokenizer_vocab_size(); i++) cJSON_AddNumberToObject(o, tokenizer_word(i), i);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    CHECK(s);
    return s;
}

static char *selma_json(const t2i_config *c, const char *training_json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "format", BUNDLE_FORMAT);
    cJSON_AddStringToObject(o, "world", c->world);
    cJSON_AddNumberToObject(o, "image_size", c->image_size);
    cJSON_AddStringToObject(o, "selma_version", SELMA_VERSION);
    cJSON *t = training_json ? cJSON_Parse(training_json) : NULL;
    if (t) cJSON_AddItemToObject(o, "training", t);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    CHECK(s);
    return s;
}

static int save_files(const t2i_model *m, const char *tmp, const char *training_json) {
    if (!strcmp(m->cfg.world, "sd")) return sd_save_files(m, tmp, training_json);
    char path[8192];
    static const char *const subs[] = {"unet", "text_encoder", "scheduler", "tokenizer"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, subs[i]);
        if (mkdir_p(path)) return -1;
    }
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", tmp);
    if (unet_save(&m->unet, path, PARAM_BASE)) return -1;
    snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", tmp);
    if (text_encoder_save(&m->te, path)) return -1;
    if (write_text(tmp, "unet/config.json", unet_config_json(&m->cfg.unet)) ||
        write_text(tmp, "text_encoder/config.json", text_encoder_config_json(&m->cfg.te)) ||
        write_text(tmp, "scheduler/scheduler_config.json", scheduler_config_json(&m->cfg)) ||
        write_text(tmp, "selma.json", selma_json(&m->cfg, training_json)))
        return -1;
    if (!strcmp(m->cfg.world, "shapes") &&
        (write_text(tmp, "tokenizer/tokenizer_config.json", tokenizer_config_json(&m->cfg)) ||
         write_text(tmp, "tokenizer/vocab.json", vocab_json())))
        return -1;
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, subs[i]);
        if (dir_fsync(path)) return -1;
    }
    return dir_fsync(tmp);
}

// The parent directory of path (for the fsync after a rename).
static void parent_of(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash) snprintf(out, n, ".");
    else if (slash == out) out[1] = 0;
    else *slash = 0;
}

int bundle_save(const t2i_model *m, const char *dir, const char *training_json) {
    char tmp[4096 + 32], old[4096 + 32], parent[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    snprintf(old, sizeof old, "%s.old.%ld", dir, (long)getpid());
    parent_of(dir, parent, sizeof parent);
    if (mkdir_p(parent) || dir_remove_tree(tmp)) return err_wrap("bundle %s", dir);
    if (save_files(m, tmp, training_json)) {
        err_wrap("bundle %s", dir);
        dir_remove_tree(tmp);
        return -1;
    }
    // A directory cannot be renamed over a non-empty one: move the old one aside.
    struct stat st;
    int had_old = stat(dir, &st) == 0;
    if (had_old && rename(dir, old)) {
        dir_remove_tree(tmp);
        return err_set("bundle %s: cannot move the old bundle aside: %s", dir, err_errno_string());
    }
    if (rename(tmp, dir)) {
        int e = errno;
        if (had_old) rename(old, dir);
        dir_remove_tree(tmp);
        errno = e;
        return err_set("bundle %s: rename: %s", dir, err_errno_string());
    }
    if (dir_fsync(parent)) return -1;
    return had_old ? dir_remove_tree(old) : 0;
}

static int read_json_file(const char *dir, const char *name, char **text, char *path, size_t n) {
    snprintf(path, n, "%s/%s", dir, name);
    size_t len;
    return file_read_all(path, text, &len);
}

int bundle_read_config(const char *dir, t2i_config *c) {
    struct stat st;
    if (stat(dir, &st)) return err_set("model %s: %s", dir, err_errno_string());
    if (!S_ISDIR(st.st_mode)) return err_set("model %s: not a directory", dir);
    if (sd_is_pipeline(dir)) return sd_read_config(dir, c);
    char path[8192], *text = NULL;
    t2i_config t;
    t2i_config_shapes(&t);  // sampling defaults for keys a scheduler config leaves out
    if (read_json_file(dir, "selma.json", &text, path, sizeof path)) return -1;
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return err_set("%s: not a JSON object", path);
    }
    const char *world = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "world"));
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(o, "image_size");
    if (!world || (strcmp(world, "shapes") && strcmp(world, "sd"))) {
        cJSON_Delete(o);
        return err_set("%s: key \"world\" must be \"shapes\" or \"sd\"", path);
    }
    if (!cJSON_IsNumber(size) || size->valueint < 1) {
        cJSON_Delete(o);
        return err_set("%s: key \"image_size\" is missing or not a positive integer", path);
    }
    snprintf(t.world, sizeof t.world, "%s", world);
    t.image_size = size->valueint;
    cJSON_Delete(o);
    int rc = read_json_file(dir, "unet/config.json", &text, path, sizeof path);
    if (!rc) rc = unet_config_parse(text, path, &t.unet), free(text);
    if (!rc) rc = read_json_file(dir, "text_encoder/config.json", &text, path, sizeof path);
    if (!rc) rc = text_encoder_config_parse(text, path, &t.te), free(text);
    if (!rc) rc = read_json_file(dir, "scheduler/scheduler_config.json", &text, path, sizeof path);
    if (!rc) rc = scheduler_config_parse(text, path, &t), free(text);
    if (!rc && !strcmp(t.world, "shapes")) {
        rc = read_json_file(dir, "tokenizer/tokenizer_config.json", &text, path, sizeof path);
        if (!rc) {
            cJSON *tc = cJSON_Parse(text);
            free(text);
            const char *cls = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tc, "tokenizer_class"));
            const cJSON *ml = cJSON_GetObjectItemCaseSensitive(tc, "model_max_length");
            if (!cls || strcmp(cls, SHAPES_TOKENIZER))
                rc = err_set("%s: key \"tokenizer_class\" is not \"%s\"", path, SHAPES_TOKENIZER);
            else if (!cJSON_IsNumber(ml) || ml->valueint != t.te.max_tokens)
                rc = err_set("%s: key \"model_max_length\" does not match the text encoder's %d positions",
                             path, t.te.max_tokens);
            cJSON_Delete(tc);
        }
    }
    if (!rc && t2i_config_check(&t)) rc = err_wrap("%s", dir);
    if (!rc) *c = t;
    return rc;
}

int bundle_load(t2i_model *m, const char *dir, unet_train_mode mode, const lora_config *lora) {
    memset(m, 0, sizeof *m);
    if (bundle_read_config(dir, &m->cfg) || t2i_build(m, mode, lora)) return -1;
    snprintf(m->source, sizeof m->source, "%s", dir);
    char path[8192];
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    int rc = unet_load(&m->unet, path, PARAM_BASE);
    snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", dir);
    if (!rc) rc = text_encoder_load(&m->te, path);
    if (!rc && m->vae) rc = sd_load_parts(m, dir);
    if (rc) t2i_free(m);
    return rc;
}

int file_fnv1a(const char *path, uint64_t *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set("%s: %s", path, err_errno_string());
    unsigned char buf[1 << 16];
    size_t n;
    uint64_t x = *h;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) x = (x ^ buf[i]) * 1099511628211ull;
    int bad = ferror(f);
    fclose(f);
    if (bad) return err_set("%s: read error", path);
    *h = x;
    return 0;
}

int bundle_hash(const char *dir, char *hex, size_t n) {
    char path[8192];
    uint64_t h = 1469598103934665603ull;
    snprintf(path, sizeof path, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    if (file_fnv1a(path, &h)) return -1;
    snprintf(path, sizeof path, "%s/text_encoder/model.safetensors", dir);
    if (file_fnv1a(path, &h)) return -1;
    snprintf(hex, n, "%016llx", (unsigned long long)h);
    return 0;
}
