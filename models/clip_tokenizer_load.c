// Loading a CLIP tokenizer folder (see clip_tokenizer.h): vocabulary and merges into
// open-addressing tables, special tokens from the two JSON configs.
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/clip_tokenizer.h"
#include "models/clip_tokenizer_impl.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

// Ids above this are not a CLIP vocabulary (49408 entries) but a broken file; the
// bound keeps the id -> token table small.
#define CLIP_MAX_ID (1 << 24)

static uint32_t str_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static uint32_t pair_hash(uint64_t k) { return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32); }

int clip_tokenizer_id(const clip_tokenizer *t, const char *token) {
    if (!t->vocab_cap) return -1;
    for (uint32_t i = str_hash(token) & (t->vocab_cap - 1);; i = (i + 1) & (t->vocab_cap - 1)) {
        int id = t->vocab_slot[i];
        if (id < 0 || !strcmp(t->token[id], token)) return id;
    }
}

const char *clip_tokenizer_token(const clip_tokenizer *t, int id) {
    return id >= 0 && id < t->id_bound ? t->token[id] : NULL;
}

static int pow2_at_least(int n) {
    int c = 16;
    while (c < n) c *= 2;
    return c;
}

// "DIR/NAME" -> buf; reads it. A missing optional file returns 1.
static int read_text(const char *dir, const char *name, int optional, char *path, size_t np,
                     char **text) {
    snprintf(path, np, "%s/%s", dir, name);
    if (optional) {
        FILE *f = fopen(path, "rb");
        if (!f) return 1;
        fclose(f);
    }
    size_t n;
    return file_read_all(path, text, &n);
}

static int json_line(const char *text, const char *at) {
    int line = 1;
    for (const char *p = text; at && p < at && *p; p++) line += *p == '\n';
    return line;
}

static cJSON *parse_json(const char *text, const char *path) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
    if (!j) err_set("%s:%d: JSON syntax error", path, json_line(text, end));
    else if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
        err_set("%s: not a JSON object", path);
    }
    return j;
}

static int load_vocab(clip_tokenizer *t, const char *dir) {
    char path[4096], *text;
    if (read_text(dir, "vocab.json", 0, path, sizeof path, &text)) return -1;
    cJSON *j = parse_json(text, path);
    free(text);
    if (!j) return -1;
    int n = cJSON_GetArraySize(j), bound = 0, rc = 0;
    for (cJSON *e = j->child; e && !rc; e = e->next) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (v < 0 || v >= CLIP_MAX_ID || v != (int)v)
            rc = err_set("%s: key \"%s\": id must be an integer in [0, %d)", path, e->string, CLIP_MAX_ID);
        else if ((int)v >= bound) bound = (int)v + 1;
    }
    t->id_bound = bound;
    t->n_tokens = n;
    t->vocab_cap = pow2_at_least(2 * n);
    t->token = rc ? NULL : calloc((size_t)bound + 1, sizeof *t->token);
    t->vocab_slot = rc ? NULL : malloc((size_t)t->vocab_cap * sizeof *t->vocab_slot);
    if (!rc && (!t->token || !t->vocab_slot)) rc = err_set("%s: out of memory", path);
    if (!rc) memset(t->vocab_slot, 0xff, (size_t)t->vocab_cap * sizeof *t->vocab_slot);
    for (cJSON *e = j->child; e && !rc; e = e->next) {
        int id = e->valueint;
        if (t->token[id]) {
            rc = err_set("%s: key \"%s\": id %d is also \"%s\"", path, e->string, id, t->token[id]);
        } else if (clip_tokenizer_id(t, e->string) >= 0) {
            rc = err_set("%s: key \"%s\" appears twice", path, e->string);
        } else if (!(t->token[id] = strdup(e->string))) {
            rc = err_set("%s: out of memory", path);
        } else {
            uint32_t i = str_hash(e->string) & (t->vocab_cap - 1);
            while (t->vocab_slot[i] >= 0) i = (i + 1) & (t->vocab_cap - 1);
            t->vocab_slot[i] = id;
        }
    }
    if (!rc && n == 0) rc = err_set("%s: the vocabulary is empty", path);
    cJSON_Delete(j);
    return rc;
}

static int merge_find(const clip_tokenizer *t, uint64_t key) {
    for (uint32_t i = pair_hash(key) & (t->merge_cap - 1);; i = (i + 1) & (t->merge_cap - 1))
        if (t->merge_key[i] == key || t->merge_key[i] == UINT64_MAX) return (int)i;
}

int clip_merge_rank(const clip_tokenizer *t, int a, int b, int *merged) {
    if (a < 0 || b < 0) return -1;
    int i = merge_find(t, (uint64_t)a << 32 | (uint32_t)b);
    if (t->merge_key[i] == UINT64_MAX) return -1;
    *merged = t->merge_id[i];
    return t->merge_rank[i];
}

static int add_merge(clip_tokenizer *t, char *line, const char *path, int lineno) {
    char *sp = strchr(line, ' ');
    if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' '))
        return err_set("%s:%d: a merge is two tokens separated by one space", path, lineno);
    *sp = 0;
    int a = clip_tokenizer_id(t, line), b = clip_tokenizer_id(t, sp + 1);
    size_t la = strlen(line), lb = strlen(sp + 1);
    char *ab = malloc(la + lb + 1);
    if (!ab) return err_set("%s: out of memory", path);
    memcpy(ab, line, la);
    memcpy(ab + la, sp + 1, lb + 1);
    int id = clip_tokenizer_id(t, ab);
    int rc = 0;
    if (a < 0 || b < 0 || id < 0)
        rc = err_set("%s:%d: \"%s\" is not in vocab.json", path, lineno, a < 0 ? line : b < 0 ? sp + 1 : ab);
    free(ab);
    if (rc) return rc;
    // A repeated pair keeps its last rank, as tokenizers' and CLIP's dict building do.
    uint64_t key = (uint64_t)a << 32 | (uint32_t)b;
    int i = merge_find(t, key);
    t->merge_key[i] = key;
    t->merge_rank[i] = t->n_merges++;
    t->merge_id[i] = id;
    return 0;
}

static int load_merges(clip_tokenizer *t, const char *dir) {
    char path[4096], *text;
    if (read_text(dir, "merges.txt", 0, path, sizeof path, &text)) return -1;
    int lines = 1;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    t->merge_cap = pow2_at_least(2 * lines);
    t->merge_key = malloc((size_t)t->merge_cap * sizeof *t->merge_key);
    t->merge_rank = malloc((size_t)t->merge_cap * sizeof *t->merge_rank);
    t->merge_id = malloc((size_t)t->merge_cap * sizeof *t->merge_id);
    int rc = t->merge_key && t->merge_rank && t->merge_id ? 0 : err_set("%s: out of memory", path);
    if (!rc) memset(t->merge_key, 0xff, (size_t)t->merge_cap * sizeof *t->merge_key);
    char *line = text;
    for (int lineno = 1; !rc && *line; lineno++) {
        char *nl = strchr(line, '\n');
        char *next = nl ? nl + 1 : line + strlen(line);
        if (nl) *nl = 0;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[len - 1] = 0;
        if (strncmp(line, "#version", 8)) rc = add_merge(t, line, path, lineno);
        line = next;
    }
    free(text);
    return rc;
}

static void byte_symbols(clip_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char s[8 + 4];
        int n = clip_utf8_put(clip_byte_to_unicode(b), s);
        s[n] = 0;
        t->byte_id[b] = clip_tokenizer_id(t, s);
        memcpy(s + n, "</w>", 5);
        t->byte_end_id[b] = clip_tokenizer_id(t, s);
    }
}

// Registers a special token (see clip_tokenizer.h, step 1). value: a string or an
// AddedToken object. Returns its id, or -1 with a message naming file and key.
static int add_special(clip_tokenizer *t, const cJSON *value, const char *path, const char *key,
                       int final) {
    const cJSON *c = cJSON_IsObject(value) ? cJSON_GetObjectItemCaseSensitive(value, "content") : value;
    if (!cJSON_IsString(c) || !c->valuestring[0])
        return err_set("%s: \"%s\" must be a string or an object with a \"content\" string", path, key);
    const cJSON *norm = cJSON_IsObject(value) ? cJSON_GetObjectItemCaseSensitive(value, "normalized") : NULL;
    if (norm && !cJSON_IsBool(norm)) return err_set("%s: \"%s\": \"normalized\" must be true or false", path, key);
    int id = clip_tokenizer_id(t, c->valuestring);
    if (id < 0) return err_set("%s: \"%s\": \"%s\" is not in vocab.json", path, key, c->valuestring);
    clip_special *s = NULL;
    for (int i = 0; i < t->n_special; i++)
        if (t->special[i].id == id) s = &t->special[i];
    if (!s) {
        if (t->n_special == CLIP_MAX_SPECIAL) return err_set("%s: more than %d special tokens", path, CLIP_MAX_SPECIAL);
        s = &t->special[t->n_special++];
        *s = (clip_special){.id = id};
        s->cps = clip_utf8_decode(c->valuestring, &s->n);
        if (!s->cps) return err_set("%s: out of memory", path);
    } else if (s->final) {
        return id;
    }
    s->normalized = norm && cJSON_IsTrue(norm);
    s->final = final;
    return id;
}

static int load_specials(clip_tokenizer *t, const char *dir) {
    char cpath[4096], mpath[4096], *ctext, *mtext = NULL;
    if (read_text(dir, "tokenizer_config.json", 0, cpath, sizeof cpath, &ctext)) return -1;
    int has_map = read_text(dir, "special_tokens_map.json", 1, mpath, sizeof mpath, &mtext);
    if (has_map < 0) {
        free(ctext);
        return -1;
    }
    cJSON *cfg = parse_json(ctext, cpath), *map = has_map == 0 && cfg ? parse_json(mtext, mpath) : NULL;
    free(ctext);
    free(mtext);
    int rc = !cfg || (has_map == 0 && !map) ? -1 : 0;

    const cJSON *mml = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length") : NULL;
    t->model_max_length = CLIP_DEFAULT_MAX_LENGTH;
    // transformers writes 1e30 for "no limit"; CLIP's context is 77 whatever it says.
    if (!rc && mml && (!cJSON_IsNumber(mml) || mml->valuedouble < 2 || mml->valuedouble != (long long)mml->valuedouble))
        rc = err_set("%s: \"model_max_length\" must be an integer >= 2", cpath);
    else if (!rc && mml && mml->valuedouble <= INT_MAX / 4)
        t->model_max_length = (int)mml->valuedouble;

    const cJSON *dec = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder") : NULL;
    for (const cJSON *e = dec ? dec->child : NULL; !rc && e; e = e->next) {
        int id = add_special(t, e, cpath, e->string, 1);
        if (id >= 0 && atoi(e->string) != id)
            id = err_set("%s: added_tokens_decoder \"%s\": vocab.json gives the token id %d", cpath, e->string, id);
        rc = id < 0 ? -1 : 0;
    }
    static const char *const keys[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    static const char *const defaults[4] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
    int *ids[4] = {&t->bos_id, &t->eos_id, &t->unk_id, &t->pad_id};
    for (int k = 0; k < 4 && !rc; k++) {
        const cJSON *v = map ? cJSON_GetObjectItemCaseSensitive(map, keys[k]) : NULL;
        const char *from = mpath;
        if (!v) v = cJSON_GetObjectItemCaseSensitive(cfg, keys[k]), from = cpath;
        cJSON *def = v ? NULL : cJSON_CreateString(defaults[k]);
        *ids[k] = add_special(t, v ? v : def, from, keys[k], 0);
        cJSON_Delete(def);
        rc = *ids[k] < 0 ? -1 : 0;
    }
    cJSON_Delete(cfg);
    cJSON_Delete(map);
    return rc;
}

void clip_tokenizer_free(clip_tokenizer *t) {
    for (int i = 0; t->token && i < t->id_bound; i++) free(t->token[i]);
    for (int i = 0; i < t->n_special; i++) free(t->special[i].cps);
    free(t->token);
    free(t->vocab_slot);
    free(t->merge_key);
    free(t->merge_rank);
    free(t->merge_id);
    memset(t, 0, sizeof *t);
}

int clip_tokenizer_load(clip_tokenizer *t, const char *dir) {
    memset(t, 0, sizeof *t);
    if (load_vocab(t, dir) || load_merges(t, dir) || load_specials(t, dir)) {
        clip_tokenizer_free(t);
        return -1;
    }
    byte_symbols(t);
    return 0;
}
