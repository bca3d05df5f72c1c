// Stable Diffusion 1.x / 2.x pipeline folders as diffusers' save_pretrained writes
// them (see bundle.h): model_index.json names the components, each folder's config
// gives the architecture, the weights load by name.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/bundle.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

int sd_is_pipeline(const char *dir) {
    char path[8192];
    struct stat st;
    snprintf(path, sizeof path, "%s/selma.json", dir);
    if (!stat(path, &st)) return 0;
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    return !stat(path, &st);
}

static int read_text(const char *dir, const char *name, char **text, char *path, size_t n) {
    snprintf(path, n, "%s/%s", dir, name);
    size_t len;
    return file_read_all(path, text, &len);
}

// model_index.json: "<component>": ["<library>", "<class>"].
static int check_component(const cJSON *o, const char *path, const char *key, const char *cls,
                           const char *cls2) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    const char *c = cJSON_GetStringValue(cJSON_GetArrayItem(v, 1));
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !c)
        return err_set("%s: key \"%s\" is missing or not a [library, class] pair", path, key);
    if (cls && strcmp(c, cls) && (!cls2 || strcmp(c, cls2)))
        return err_set("%s: key \"%s\" names class '%s'; selma loads %s%s%s", path, key, c, cls,
                       cls2 ? " or " : "", cls2 ? cls2 : "");
    return 0;
}

static int read_model_index(const char *dir) {
    char path[8192], *text = NULL;
    if (read_text(dir, "model_index.json", &text, path, sizeof path)) return -1;
    cJSON *o = cJSON_Parse(text);
    free(text);
    int rc = 0;
    if (!cJSON_IsObject(o)) rc = err_set("%s: not a JSON object", path);
    if (!rc) rc = check_component(o, path, "unet", "UNet2DConditionModel", NULL);
    if (!rc) rc = check_component(o, path, "text_encoder", "CLIPTextModel", NULL);
    if (!rc) rc = check_component(o, path, "vae", "AutoencoderKL", NULL);
    if (!rc) rc = check_component(o, path, "tokenizer", "CLIPTokenizer", "CLIPTokenizerFast");
    if (!rc) rc = check_component(o, path, "scheduler", NULL, NULL);
    cJSON_Delete(o);
    return rc;
}

int sd_read_config(const char *dir, t2i_config *c) {
    char path[8192], *text = NULL;
    t2i_config t;
    t2i_config_shapes(&t);
    snprintf(t.world, sizeof t.world, "sd");
    int rc = read_model_index(dir);
    if (!rc) rc = read_text(dir, "unet/config.json", &text, path, sizeof path);
    if (!rc) rc = unet_config_parse(text, path, &t.unet), free(text);
    if (!rc) rc = read_text(dir, "text_encoder/config.json", &text, path, sizeof path);
    if (!rc) rc = text_encoder_config_parse(text, path, &t.te), free(text);
    if (!rc) rc = read_text(dir, "scheduler/scheduler_config.json", &text, path, sizeof path);
    if (!rc) rc = scheduler_config_parse(text, path, &t), free(text);
    if (!rc) {
        snprintf(path, sizeof path, "%s/vae/config.json", dir);
        rc = vae_config_load(path, &t.vae);
    }
    if (rc) return -1;
    // diffusers' pipeline default: height = unet sample_size * vae_scale_factor.
    t.image_size = t.unet.sample_size << (t.vae.n_levels - 1);
    if (t2i_config_check(&t)) return err_wrap("%s", dir);
    *c = t;
    return 0;
}

int sd_load_parts(t2i_model *m, const char *dir) {
    char path[8192];
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    int rc = vae_load(m->vae, path);
    snprintf(path, sizeof path, "%s/tokenizer", dir);
    if (!rc) rc = clip_tokenizer_load(&m->clip, path);
    // The pipeline pads to the tokenizer's length and the encoder has that many positions.
    if (!rc && m->clip.model_max_length != m->cfg.te.max_tokens)
        rc = err_set("%s/tokenizer_config.json: model_max_length %d != the text encoder's "
                     "max_position_embeddings %d", path, m->clip.model_max_length, m->cfg.te.max_tokens);
    if (!rc && m->clip.id_bound > m->cfg.te.vocab_size)
        rc = err_set("%s: token ids up to %d do not fit the text encoder's vocab_size %d", path,
                     m->clip.id_bound - 1, m->cfg.te.vocab_size);
    return rc;
}
