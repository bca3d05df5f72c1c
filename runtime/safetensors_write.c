// safetensors writer: collects named tensors (data referenced) and metadata, then
// writes the file atomically. Layout rules are in safetensors.h.
#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"

void st_writer_init(st_writer *w) { memset(w, 0, sizeof *w); }

void st_writer_free(st_writer *w) {
    for (size_t i = 0; i < w->n; i++) free(w->entries[i].name);
    for (size_t i = 0; i < w->n_meta; i++) { free(w->meta[i].key); free(w->meta[i].value); }
    free(w->entries);
    free(w->slots);
    free(w->meta);
    memset(w, 0, sizeof *w);
}

static uint64_t name_hash(const char *s) {  // FNV-1a 64
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

// Open addressing with linear probing; slots hold entry index + 1, 0 is empty.
// Returns the slot that holds name or the empty slot where it would go.
static size_t slot_find(const st_writer *w, const char *name) {
    size_t mask = w->n_slots - 1, i = (size_t)name_hash(name) & mask;
    while (w->slots[i] && strcmp(w->entries[w->slots[i] - 1].name, name) != 0) i = (i + 1) & mask;
    return i;
}

static void slots_grow(st_writer *w) {
    free(w->slots);
    w->n_slots = w->n_slots ? 2 * w->n_slots : 64;
    w->slots = calloc(w->n_slots, sizeof *w->slots);
    CHECK(w->slots);
    for (size_t k = 0; k < w->n; k++) w->slots[slot_find(w, w->entries[k].name)] = k + 1;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dt, int ndim,
                  const int64_t *shape, const void *data) {
    if (!utf8_valid(name, strlen(name), NULL)) return err_set("safetensors writer: tensor name is not valid UTF-8");
    if (!strcmp(name, "__metadata__")) return err_set("safetensors writer: '__metadata__' is not a tensor name");
    if (dt < 0 || dt >= ST_DTYPE_COUNT) return err_set("safetensors writer: tensor '%s': bad dtype %d", name, (int)dt);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return err_set("safetensors writer: tensor '%s': %d dimensions (0..%d)", name, ndim, ST_MAX_DIMS);
    uint64_t numel = 1, size = st_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        // The reader refuses entries of 2^53 or more (see safetensors.h): never write them.
        if (shape[i] < 0 || shape[i] >= (int64_t)1 << 53)
            return err_set("safetensors writer: tensor '%s': shape entry %d is %lld", name, i, (long long)shape[i]);
        uint64_t d = (uint64_t)shape[i];
        if (d && numel > UINT64_MAX / d) return err_set("safetensors writer: tensor '%s': size overflows", name);
        numel *= d;
    }
    if (numel > UINT64_MAX / size) return err_set("safetensors writer: tensor '%s': size overflows", name);
    if (numel && !data) return err_set("safetensors writer: tensor '%s': no data", name);
    if (2 * (w->n + 1) > w->n_slots) slots_grow(w);
    size_t s = slot_find(w, name);
    if (w->slots[s]) return err_set("safetensors writer: duplicate tensor name '%s'", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->entries = realloc(w->entries, w->cap * sizeof *w->entries);
        CHECK(w->entries);
    }
    st_writer_entry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    CHECK(e->name);
    e->dtype = dt;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = numel * size;
    e->data = data;
    w->slots[s] = ++w->n;
    return 0;
}

int st_writer_add_tensor(st_writer *w, const char *name, const tensor *t) {
    if (t->device != DEVICE_CPU) return err_set("safetensors writer: tensor '%s' is not on the CPU", name);
    return st_writer_add(w, name, st_dtype_from_runtime(t->dtype), t->ndim, t->shape, t->data);
}

int st_writer_set_meta(st_writer *w, const char *key, const char *value) {
    if (!utf8_valid(key, strlen(key), NULL) || !utf8_valid(value, strlen(value), NULL))
        return err_set("safetensors writer: metadata '%s' is not valid UTF-8", key);
    for (size_t i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[i].key, key)) return err_set("safetensors writer: duplicate metadata key '%s'", key);
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 8;
        w->meta = realloc(w->meta, w->cap_meta * sizeof *w->meta);
        CHECK(w->meta);
    }
    w->meta[w->n_meta].key = strdup(key);
    w->meta[w->n_meta].value = strdup(value);
    CHECK(w->meta[w->n_meta].key && w->meta[w->n_meta].value);
    w->n_meta++;
    return 0;
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(sbuf *b, uint64_t v) {
    char tmp[24];
    sb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v));
}

// A JSON string: quotes and backslashes escaped, control characters as \u00XX,
// everything else (already valid UTF-8) as is.
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        uint8_t c = (uint8_t)*s;
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; sb_put(b, e, 2); }
        else if (c < 0x20) { char e[8]; sb_put(b, e, (size_t)snprintf(e, sizeof e, "\\u%04x", c)); }
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

static int cmp_write_order(const void *a, const void *b) {
    const st_writer_entry *x = *(st_writer_entry *const *)a, *y = *(st_writer_entry *const *)b;
    size_t sx = st_dtype_size(x->dtype), sy = st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

int st_writer_save(const st_writer *w, const char *path) {
    const st_writer_entry **order = malloc((w->n ? w->n : 1) * sizeof *order);
    CHECK(order);
    for (size_t i = 0; i < w->n; i++) order[i] = &w->entries[i];
    qsort(order, w->n, sizeof *order, cmp_write_order);

    sbuf h = {0};
    sb_str(&h, "{");
    if (w->n_meta) {
        sb_str(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&h, ",");
            sb_json_str(&h, w->meta[i].key);
            sb_str(&h, ":");
            sb_json_str(&h, w->meta[i].value);
        }
        sb_str(&h, "}");
    }
    uint64_t off = 0;
    int rc = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_writer_entry *e = order[i];
        if (e->nbytes > UINT64_MAX - off) { rc = err_set("%s: total size overflows", path); break; }
        if (i || w->n_meta) sb_str(&h, ",");
        sb_json_str(&h, e->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, st_dtype_name(e->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            if (d) sb_str(&h, ",");
            sb_u64(&h, (uint64_t)e->shape[d]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_u64(&h, off);
        sb_str(&h, ",");
        sb_u64(&h, off + e->nbytes);
        sb_str(&h, "]}");
        off += e->nbytes;
    }
    sb_str(&h, "}");
    while (h.n % 8) sb_str(&h, " ");  // the reference writer's padding: data starts 8-aligned
    if (rc == 0 && h.n > ST_MAX_HEADER)
        rc = err_set("%s: header of %zu bytes is over the %llu cap", path, h.n, (unsigned long long)ST_MAX_HEADER);

    afile a;
    if (rc == 0 && afile_open(&a, path) == 0) {
        uint8_t len[8];
        for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
        int ok = fwrite(len, 1, 8, a.f) == 8 && fwrite(h.p, 1, h.n, a.f) == h.n;
        for (size_t i = 0; ok && i < w->n; i++)
            ok = order[i]->nbytes == 0 || fwrite(order[i]->data, 1, order[i]->nbytes, a.f) == order[i]->nbytes;
        if (!ok) { afile_abort(&a); rc = err_set("%s: write failed: %s", path, err_errno_string()); }
        else rc = afile_commit(&a);
    } else if (rc == 0) {
        rc = -1;  // afile_open set the message
    }
    free(h.p);
    free(order);
    return rc;
}
