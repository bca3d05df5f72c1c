// Model configs as JSON in the names diffusers and transformers use (see bundle.h), so
// a bundle's config.json files read like the ones on the Hugging Face hub and theirs
// read here.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/bundle.h"
#include "runtime/error.h"

static char *print(cJSON *o) {
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    CHECK(s);
    return s;
}

// A float as the shortest decimal that reads back to it (1e-5, not 9.99999974737875e-06).
static double short_float(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", (double)f);
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if ((float)strtod(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static cJSON *int_array(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

// ---- readers that name the file and key ----

static int get_num(const cJSON *o, const char *file, const char *key, int required, double lo,
                   double hi, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return required ? err_set("%s: key \"%s\" is missing", file, key) : 1;
    if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else if (cJSON_IsNumber(v)) *out = v->valuedouble;
    else return err_set("%s: key \"%s\" is not a number", file, key);
    if (!(*out >= lo && *out <= hi))
        return err_set("%s: key \"%s\" = %g is outside [%g, %g]", file, key, *out, lo, hi);
    return 0;
}

static int get_int(const cJSON *o, const char *file, const char *key, int required, int lo,
                   int hi, int *out) {
    double d = 0;
    int rc = get_num(o, file, key, required, lo, hi, &d);
    if (rc) return rc;
    if (d != (int)d) return err_set("%s: key \"%s\" = %g is not an integer", file, key, d);
    *out = (int)d;
    return 0;
}

static int get_str(const cJSON *o, const char *file, const char *key, int required,
                   const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return required ? err_set("%s: key \"%s\" is missing", file, key) : 1;
    if (!cJSON_IsString(v)) return err_set("%s: key \"%s\" is not a string", file, key);
    *out = v->valuestring;
    return 0;
}

// An int list, or a single int broadcast to n entries (diffusers allows both).
static int get_int_list(const cJSON *o, const char *file, const char *key, int n, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return err_set("%s: key \"%s\" is missing", file, key);
    if (cJSON_IsNumber(v)) {
        for (int i = 0; i < n; i++) out[i] = v->valueint;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != n)
        return err_set("%s: key \"%s\" is not a list of %d numbers", file, key, n);
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != e->valueint || e->valueint < 1)
            return err_set("%s: key \"%s\"[%d] is not a positive integer", file, key, i);
        out[i] = e->valueint;
    }
    return 0;
}

static cJSON *parse(const char *text, const char *file) {
    cJSON *o = cJSON_Parse(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        err_set("%s: not a JSON object", file);
        return NULL;
    }
    return o;
}

// ---- UNet2DConditionModel ----

char *unet_config_json(const unet_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "UNet2DConditionModel");
    cJSON_AddStringToObject(o, "_diffusers_version", "0.27.2");
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddNumberToObject(o, "sample_size", c->sample_size);
    cJSON_AddItemToObject(o, "block_out_channels", int_array(c->block_out_channels, c->n_levels));
    cJSON_AddNumberToObject(o, "layers_per_block", c->layers_per_block);
    cJSON *down = cJSON_CreateArray(), *up = cJSON_CreateArray();
    for (int i = 0; i < c->n_levels; i++) {
        cJSON_AddItemToArray(down, cJSON_CreateString(c->cross_attn[i] ? "CrossAttnDownBlock2D" : "DownBlock2D"));
        cJSON_AddItemToArray(up, cJSON_CreateString(c->cross_attn[c->n_levels - 1 - i] ? "CrossAttnUpBlock2D" : "UpBlock2D"));
    }
    cJSON_AddItemToObject(o, "down_block_types", down);
    cJSON_AddItemToObject(o, "up_block_types", up);
    cJSON_AddStringToObject(o, "mid_block_type", "UNetMidBlock2DCrossAttn");
    cJSON_AddNumberToObject(o, "cross_attention_dim", c->cross_attention_dim);
    // Head counts under attention_head_dim: diffusers' quirk (unet.h).
    cJSON_AddItemToObject(o, "attention_head_dim", int_array(c->num_heads, c->n_levels));
    cJSON_AddNumberToObject(o, "norm_num_groups", c->norm_num_groups);
    cJSON_AddNumberToObject(o, "norm_eps", short_float(c->norm_eps));
    cJSON_AddBoolToObject(o, "use_linear_projection", c->use_linear_projection);
    cJSON_AddBoolToObject(o, "flip_sin_to_cos", c->flip_sin_to_cos);
    cJSON_AddNumberToObject(o, "freq_shift", short_float(c->freq_shift));
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddBoolToObject(o, "center_input_sample", 0);
    cJSON_AddNumberToObject(o, "downsample_padding", 1);
    cJSON_AddNumberToObject(o, "mid_block_scale_factor", 1);
    cJSON_AddNumberToObject(o, "transformer_layers_per_block", 1);
    if (c->class_embed_dim > 0) {
        cJSON_AddStringToObject(o, "class_embed_type", "projection");
        cJSON_AddNumberToObject(o, "projection_class_embeddings_input_dim", c->class_embed_dim);
    } else {
        cJSON_AddNullToObject(o, "class_embed_type");
    }
    return print(o);
}

int unet_config_parse(const char *text, const char *file, unet_config *c) {
    cJSON *o = parse(text, file);
    if (!o) return -1;
    unet_config u = {0};
    int rc = -1;
    const cJSON *boc = cJSON_GetObjectItemCaseSensitive(o, "block_out_channels");
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(o, "down_block_types");
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(o, "up_block_types");
    double d = 0;
    const char *s = NULL;
    if (!cJSON_IsArray(boc) || cJSON_GetArraySize(boc) < 1 || cJSON_GetArraySize(boc) > UNET_MAX_LEVELS) {
        err_set("%s: key \"block_out_channels\" is not a list of 1..%d numbers", file, UNET_MAX_LEVELS);
        goto done;
    }
    u.n_levels = cJSON_GetArraySize(boc);
    if (get_int_list(o, file, "block_out_channels", u.n_levels, u.block_out_channels)) goto done;
    if (!cJSON_IsArray(down) || cJSON_GetArraySize(down) != u.n_levels || !cJSON_IsArray(up) ||
        cJSON_GetArraySize(up) != u.n_levels) {
        err_set("%s: keys \"down_block_types\" and \"up_block_types\" must list %d blocks each", file, u.n_levels);
        goto done;
    }
    for (int i = 0; i < u.n_levels; i++) {
        const char *dn = cJSON_GetStringValue(cJSON_GetArrayItem(down, i));
        const char *un = cJSON_GetStringValue(cJSON_GetArrayItem(up, u.n_levels - 1 - i));
        if (!dn || !un) { err_set("%s: block types must be strings", file); goto done; }
        if (!strcmp(dn, "CrossAttnDownBlock2D")) u.cross_attn[i] = 1;
        else if (strcmp(dn, "DownBlock2D")) {
            err_set("%s: key \"down_block_types\"[%d]: unsupported block '%s'", file, i, dn);
            goto done;
        }
        const char *want = u.cross_attn[i] ? "CrossAttnUpBlock2D" : "UpBlock2D";
        if (strcmp(un, want)) {
            err_set("%s: key \"up_block_types\"[%d] = '%s' does not mirror the down block ('%s' expected)",
                    file, u.n_levels - 1 - i, un, want);
            goto done;
        }
    }
    if (get_str(o, file, "mid_block_type", 0, &s) == 0 && strcmp(s, "UNetMidBlock2DCrossAttn")) {
        err_set("%s: key \"mid_block_type\": unsupported block '%s'", file, s);
        goto done;
    }
    if (get_int(o, file, "in_channels", 1, 1, 1 << 16, &u.in_channels) ||
        get_int(o, file, "out_channels", 1, 1, 1 << 16, &u.out_channels) ||
        get_int(o, file, "sample_size", 1, 1, 1 << 16, &u.sample_size) ||
        get_int(o, file, "layers_per_block", 1, 1, UNET_MAX_LAYERS, &u.layers_per_block) ||
        get_int(o, file, "cross_attention_dim", 1, 1, 1 << 16, &u.cross_attention_dim) ||
        get_int(o, file, "norm_num_groups", 1, 1, 1 << 16, &u.norm_num_groups))
        goto done;
    // num_attention_heads wins when set; else attention_head_dim holds the head counts.
    const cJSON *nh = cJSON_GetObjectItemCaseSensitive(o, "num_attention_heads");
    const char *hk = nh && !cJSON_IsNull(nh) ? "num_attention_heads" : "attention_head_dim";
    if (get_int_list(o, file, hk, u.n_levels, u.num_heads)) goto done;
    int r;
    u.norm_eps = 1e-5f;
    if ((r = get_num(o, file, "norm_eps", 0, 0, 1, &d)) < 0) goto done;
    if (r == 0) u.norm_eps = (float)d;
    u.flip_sin_to_cos = 1;
    if ((r = get_num(o, file, "flip_sin_to_cos", 0, 0, 1, &d)) < 0) goto done;
    if (r == 0) u.flip_sin_to_cos = d != 0;
    if ((r = get_num(o, file, "use_linear_projection", 0, 0, 1, &d)) < 0) goto done;
    if (r == 0) u.use_linear_projection = d != 0;
    if ((r = get_num(o, file, "freq_shift", 0, -1e6, 1e6, &d)) < 0) goto done;
    if (r == 0) u.freq_shift = (float)d;
    if (get_str(o, file, "act_fn", 0, &s) == 0 && strcmp(s, "silu")) {
        err_set("%s: key \"act_fn\": only \"silu\" is supported, not '%s'", file, s);
        goto done;
    }
    if ((r = get_num(o, file, "transformer_layers_per_block", 0, 1, 1, &d)) < 0) goto done;
    // class_embed_type: null (SD) or "projection" (a vector per image added to the time
    // embedding); diffusers' other kinds ("timestep", "identity", ...) are not built here.
    if ((r = get_str(o, file, "class_embed_type", 0, &s)) < 0) goto done;
    if (r == 0) {
        if (strcmp(s, "projection")) {
            err_set("%s: key \"class_embed_type\": only null or \"projection\" is supported, not '%s'",
                    file, s);
            goto done;
        }
        if (get_int(o, file, "projection_class_embeddings_input_dim", 1, 1, 1 << 16, &u.class_embed_dim))
            goto done;
    }
    if (unet_config_check(&u)) {
        err_wrap("%s", file);
        goto done;
    }
    *c = u;
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

// ---- CLIPTextConfig ----

char *text_encoder_config_json(const text_encoder_config *c) {
    cJSON *o = cJSON_CreateObject(), *arch = cJSON_CreateArray();
    cJSON_AddItemToArray(arch, cJSON_CreateString("CLIPTextModel"));
    cJSON_AddItemToObject(o, "architectures", arch);
    cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_tokens);
    cJSON_AddNumberToObject(o, "hidden_size", c->width);
    cJSON_AddNumberToObject(o, "intermediate_size", c->mlp_width);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->heads);
    cJSON_AddStringToObject(o, "hidden_act", c->act == GELU_QUICK ? "quick_gelu" : "gelu");
    cJSON_AddNumberToObject(o, "layer_norm_eps", short_float(c->ln_eps));
    cJSON_AddNumberToObject(o, "clip_skip", c->clip_skip);  // selma's; transformers ignores it
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    return print(o);
}

int text_encoder_config_parse(const char *text, const char *file, text_encoder_config *c) {
    cJSON *o = parse(text, file);
    if (!o) return -1;
    text_encoder_config t = {.ln_eps = 1e-5f, .act = GELU_QUICK};
    int rc = -1, r;
    double d = 0;
    const char *s = NULL;
    if (get_int(o, file, "vocab_size", 1, 1, 1 << 24, &t.vocab_size) ||
        get_int(o, file, "max_position_embeddings", 1, 1, 1 << 16, &t.max_tokens) ||
        get_int(o, file, "hidden_size", 1, 1, 1 << 16, &t.width) ||
        get_int(o, file, "intermediate_size", 1, 1, 1 << 20, &t.mlp_width) ||
        get_int(o, file, "num_hidden_layers", 1, 1, 1024, &t.layers) ||
        get_int(o, file, "num_attention_heads", 1, 1, 1024, &t.heads))
        goto done;
    if ((r = get_str(o, file, "hidden_act", 0, &s)) < 0) goto done;
    if (r == 0) {
        if (!strcmp(s, "quick_gelu")) t.act = GELU_QUICK;
        else if (!strcmp(s, "gelu")) t.act = GELU_ERF;
        else { err_set("%s: key \"hidden_act\": unsupported '%s'", file, s); goto done; }
    }
    if ((r = get_num(o, file, "layer_norm_eps", 0, 0, 1, &d)) < 0) goto done;
    if (r == 0) t.ln_eps = (float)d;
    if (get_int(o, file, "clip_skip", 0, 0, t.layers - 1, &t.clip_skip) < 0) goto done;
    if (text_encoder_config_check(&t)) {
        err_wrap("%s", file);
        goto done;
    }
    *c = t;
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}

// ---- DDIMScheduler ----

static const char *const spacing_names[] = {"leading", "trailing", "linspace"};

char *scheduler_config_json(const t2i_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "DDIMScheduler");
    cJSON_AddStringToObject(o, "_diffusers_version", "0.27.2");
    cJSON_AddNumberToObject(o, "num_train_timesteps", c->train_timesteps);
    cJSON_AddStringToObject(o, "beta_schedule", beta_schedule_name(c->beta));
    cJSON_AddNumberToObject(o, "beta_start", c->beta_start);
    cJSON_AddNumberToObject(o, "beta_end", c->beta_end);
    cJSON_AddStringToObject(o, "prediction_type", prediction_type_name(c->prediction));
    cJSON_AddBoolToObject(o, "clip_sample", 0);
    cJSON_AddBoolToObject(o, "set_alpha_to_one", c->set_alpha_to_one);
    cJSON_AddNumberToObject(o, "steps_offset", c->steps_offset);
    cJSON_AddStringToObject(o, "timestep_spacing", spacing_names[c->spacing]);
    return print(o);
}

int scheduler_config_parse(const char *text, const char *file, t2i_config *c) {
    cJSON *o = parse(text, file);
    if (!o) return -1;
    int rc = -1, r;
    double d = 0;
    const char *s = NULL;
    t2i_config t = *c;
    if (get_int(o, file, "num_train_timesteps", 1, 1, SCHEDULE_MAX_T, &t.train_timesteps)) goto done;
    if (get_str(o, file, "beta_schedule", 1, &s)) goto done;
    if (beta_schedule_from_name(s, &t.beta)) {
        err_set("%s: key \"beta_schedule\": unknown schedule '%s'", file, s);
        goto done;
    }
    t.prediction = PRED_EPSILON;  // diffusers' default
    if ((r = get_str(o, file, "prediction_type", 0, &s)) < 0) goto done;
    if (r == 0 && prediction_type_from_name(s, &t.prediction)) {
        err_set("%s: key \"prediction_type\": unknown '%s'", file, s);
        goto done;
    }
    t.beta_start = 0.0001, t.beta_end = 0.02;
    if ((r = get_num(o, file, "beta_start", 0, 0, 1, &d)) < 0) goto done;
    if (r == 0) t.beta_start = d;
    if ((r = get_num(o, file, "beta_end", 0, 0, 1, &d)) < 0) goto done;
    if (r == 0) t.beta_end = d;
    t.set_alpha_to_one = 1, t.steps_offset = 0, t.spacing = SPACING_LEADING;
    if ((r = get_num(o, file, "set_alpha_to_one", 0, 0, 1, &d)) < 0) goto done;
    if (r == 0) t.set_alpha_to_one = d != 0;
    if (get_int(o, file, "steps_offset", 0, 0, SCHEDULE_MAX_T, &t.steps_offset) < 0) goto done;
    if ((r = get_str(o, file, "timestep_spacing", 0, &s)) < 0) goto done;
    if (r == 0 && timestep_spacing_from_name(s, &t.spacing)) {
        err_set("%s: key \"timestep_spacing\": unknown '%s'", file, s);
        goto done;
    }
    *c = t;
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}
