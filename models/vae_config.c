// diffusers' AutoencoderKL config.json -> vae_config (see vae.h). Every key of the
// class is known here: the ones that shape the model are read, the ones whose other
// values this code does not build must have diffusers' defaults, and an unknown key
// is an error too (it may change the architecture: silently ignoring it would load
// weights into the wrong model).
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "models/vae.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

typedef enum key_kind {
    KEY_INT,        // a positive integer into an int field
    KEY_FLOAT,      // a number into a float field
    KEY_BOOL,       // true/false into an int field
    KEY_CHANNELS,   // block_out_channels: a list of positive integers
    KEY_BLOCKS,     // a list of block names, each must equal `want`
    KEY_STRING,     // must equal `want`
    KEY_NULL,       // must be null (a feature not built here)
    KEY_ANY,        // accepted and unused (force_upcast: selma computes in float32)
} key_kind;

typedef struct vae_key {
    const char *name;
    key_kind kind;
    size_t offset;     // into vae_config, for the kinds that store
    const char *want;  // KEY_BLOCKS, KEY_STRING
} vae_key;

#define AT(field) offsetof(vae_config, field)

static const vae_key keys[] = {
    {"in_channels", KEY_INT, AT(in_channels), NULL},
    {"out_channels", KEY_INT, AT(out_channels), NULL},
    {"latent_channels", KEY_INT, AT(latent_channels), NULL},
    {"block_out_channels", KEY_CHANNELS, 0, NULL},
    {"layers_per_block", KEY_INT, AT(layers_per_block), NULL},
    {"norm_num_groups", KEY_INT, AT(norm_num_groups), NULL},
    {"sample_size", KEY_INT, AT(sample_size), NULL},
    {"scaling_factor", KEY_FLOAT, AT(scaling_factor), NULL},
    {"use_quant_conv", KEY_BOOL, AT(use_quant_conv), NULL},
    {"use_post_quant_conv", KEY_BOOL, AT(use_post_quant_conv), NULL},
    {"mid_block_add_attention", KEY_BOOL, AT(mid_block_add_attention), NULL},
    {"down_block_types", KEY_BLOCKS, 0, "DownEncoderBlock2D"},
    {"up_block_types", KEY_BLOCKS, 0, "UpDecoderBlock2D"},
    {"act_fn", KEY_STRING, 0, "silu"},
    {"shift_factor", KEY_NULL, 0, NULL},
    {"latents_mean", KEY_NULL, 0, NULL},
    {"latents_std", KEY_NULL, 0, NULL},
    {"force_upcast", KEY_ANY, 0, NULL},
};

// Reads one key's value into c; n_blocks[0/1] count the down/up block lists.
static int read_key(const vae_key *k, const cJSON *v, const char *file, vae_config *c,
                    int *n_blocks) {
    char *base = (char *)c;
    switch (k->kind) {
    case KEY_INT:
        if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble || v->valuedouble < 1)
            return err_set("%s: key \"%s\" is not a positive integer", file, k->name);
        *(int *)(base + k->offset) = (int)v->valuedouble;
        return 0;
    case KEY_FLOAT:
        if (!cJSON_IsNumber(v)) return err_set("%s: key \"%s\" is not a number", file, k->name);
        *(float *)(base + k->offset) = (float)v->valuedouble;
        return 0;
    case KEY_BOOL:
        if (!cJSON_IsBool(v)) return err_set("%s: key \"%s\" is not true or false", file, k->name);
        *(int *)(base + k->offset) = cJSON_IsTrue(v);
        return 0;
    case KEY_CHANNELS: {
        int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
        if (n < 1 || n > VAE_MAX_LEVELS)
            return err_set("%s: key \"%s\" is not a list of 1..%d numbers", file, k->name, VAE_MAX_LEVELS);
        for (int i = 0; i < n; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(e) || e->valuedouble != (int)e->valuedouble || e->valuedouble < 1)
                return err_set("%s: key \"%s\"[%d] is not a positive integer", file, k->name, i);
            c->block_out_channels[i] = (int)e->valuedouble;
        }
        c->n_levels = n;
        return 0;
    }
    case KEY_BLOCKS: {
        if (!cJSON_IsArray(v)) return err_set("%s: key \"%s\" is not a list", file, k->name);
        int n = cJSON_GetArraySize(v);
        for (int i = 0; i < n; i++) {
            const char *s = cJSON_GetStringValue(cJSON_GetArrayItem(v, i));
            if (!s || strcmp(s, k->want))
                return err_set("%s: key \"%s\"[%d]: unsupported block '%s' (only %s)", file, k->name,
                               i, s ? s : "(not a string)", k->want);
        }
        n_blocks[k->want[0] == 'U'] = n;
        return 0;
    }
    case KEY_STRING: {
        const char *s = cJSON_GetStringValue(v);
        if (!s || strcmp(s, k->want))
            return err_set("%s: key \"%s\": only \"%s\" is supported, not '%s'", file, k->name,
                           k->want, s ? s : "(not a string)");
        return 0;
    }
    case KEY_NULL:
        if (!cJSON_IsNull(v))
            return err_set("%s: key \"%s\": only null is supported (this VAE has no %s)", file,
                           k->name, k->name);
        return 0;
    case KEY_ANY:
        return 0;
    }
    return 0;
}

int vae_config_parse(const char *text, const char *file, vae_config *out) {
    cJSON *o = cJSON_Parse(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return err_set("%s: not a JSON object", file);
    }
    vae_config c = vae_config_default();
    int n_blocks[2] = {-1, -1}, rc = 0;  // -1: the key is absent
    const cJSON *item;
    cJSON_ArrayForEach(item, o) {
        const char *name = item->string;
        if (!strcmp(name, "_class_name")) {
            const char *s = cJSON_GetStringValue(item);
            if (!s || strcmp(s, "AutoencoderKL"))
                rc = err_set("%s: key \"_class_name\": '%s' is not an AutoencoderKL", file, s ? s : "(not a string)");
        } else if (name[0] == '_') {
            continue;  // _diffusers_version, _name_or_path: metadata
        } else {
            const vae_key *k = NULL;
            for (size_t i = 0; i < sizeof keys / sizeof *keys && !k; i++)
                if (!strcmp(keys[i].name, name)) k = &keys[i];
            rc = k ? read_key(k, item, file, &c, n_blocks)
                   : err_set("%s: unknown key \"%s\" (not an AutoencoderKL option this code builds)", file, name);
        }
        if (rc) break;
    }
    cJSON_Delete(o);
    if (rc) return -1;
    // Absent block lists are diffusers' one-entry defaults; present ones name every level.
    for (int u = 0; u < 2; u++)
        if ((n_blocks[u] >= 0 ? n_blocks[u] : 1) != c.n_levels)
            return err_set("%s: key \"%s\" lists %d blocks but block_out_channels %d", file,
                           u ? "up_block_types" : "down_block_types",
                           n_blocks[u] >= 0 ? n_blocks[u] : 1, c.n_levels);
    if (vae_config_check(&c)) return err_wrap("%s", file);
    *out = c;
    return 0;
}

int vae_config_load(const char *path, vae_config *c) {
    char *text;
    size_t n;
    if (file_read_all(path, &text, &n)) return -1;
    int rc = vae_config_parse(text, path, c);
    free(text);
    return rc;
}
