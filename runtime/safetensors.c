// safetensors reader: header validation, lookups and conversions. The writer is in
// safetensors_write.c. Rules and their reasons are in safetensors.h.
#include "runtime/safetensors.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.h"

// Tensor bytes are read in place as host numbers: safetensors is little-endian.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

static const struct {
    const char *name;
    size_t size;
} st_info[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

size_t st_dtype_size(st_dtype t) { CHECK(t >= 0 && t < ST_DTYPE_COUNT); return st_info[t].size; }
const char *st_dtype_name(st_dtype t) { CHECK(t >= 0 && t < ST_DTYPE_COUNT); return st_info[t].name; }

int st_dtype_from_name(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, st_info[i].name) == 0) { *out = (st_dtype)i; return 0; }
    return -1;
}

int st_dtype_to_runtime(st_dtype t, dtype *out) {
    switch (t) {
    case ST_F32: *out = DTYPE_F32; return 0;
    case ST_BF16: *out = DTYPE_BF16; return 0;
    case ST_F16: *out = DTYPE_F16; return 0;
    case ST_I32: *out = DTYPE_I32; return 0;
    case ST_U8: *out = DTYPE_U8; return 0;
    default: return -1;
    }
}

st_dtype st_dtype_from_runtime(dtype t) {
    static const st_dtype map[DTYPE_COUNT] = {
        [DTYPE_F32] = ST_F32, [DTYPE_BF16] = ST_BF16, [DTYPE_F16] = ST_F16,
        [DTYPE_I32] = ST_I32, [DTYPE_U8] = ST_U8,
    };
    CHECK(t >= 0 && t < DTYPE_COUNT);
    return map[t];
}

int utf8_valid(const void *s, size_t n, size_t *bad_at) {
    const uint8_t *p = s;
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp, min;
        // 0x80-0xc1 are continuation bytes or overlong 2-byte leads; 0xf5-0xff lead
        // past U+10FFFF or are not UTF-8 at all.
        if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1fu; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0fu; min = 0x800; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07u; min = 0x10000; }
        else goto bad;
        if (n - i < len) goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) goto bad;
            cp = (cp << 6) | (p[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) goto bad;
        i += len;
    }
    return 1;
bad:
    if (bad_at) *bad_at = i;
    return 0;
}

// cJSON is laxer than RFC 8259 where it matters here: it reads numbers with strtod
// ("1.0", "1e3", "01" all pass), takes raw control bytes inside strings and any byte
// <= 0x20 as whitespace, and turns "\u0000" into a C string's end. A valid header
// holds numbers only in shapes and offsets, so every number must be a plain integer.
static int json_lex_check(const char *s, size_t n, const char *file) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = (uint8_t)s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++) {
                uint8_t b = (uint8_t)s[i];
                if (b < 0x20)
                    return err_set("%s: header: raw control character 0x%02x in a string at byte %zu",
                                   file, b, i);
                if (b == '\\') {
                    if (n - i >= 6 && memcmp(s + i + 1, "u0000", 5) == 0)
                        return err_set("%s: header: \\u0000 in a string at byte %zu", file, i);
                    i++;
                }
            }
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + (c == '-'), d0 = j;
            while (j < n && s[j] >= '0' && s[j] <= '9') j++;
            if (j < n && (s[j] == '.' || s[j] == 'e' || s[j] == 'E'))
                return err_set("%s: header: number at byte %zu is not an integer", file, i);
            if (j - d0 > 1 && s[d0] == '0')
                return err_set("%s: header: number at byte %zu has a leading zero", file, i);
            i = j;
        } else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return err_set("%s: header: control character 0x%02x at byte %zu", file, c, i);
        } else {
            i++;
        }
    }
    return 0;
}

// A JSON number as an exact non-negative integer. Below 2^53 every integer is exact
// in a double; a longer literal may have been rounded, so it is refused.
static int json_u64(const cJSON *v, uint64_t *out, const char **why) {
    if (!cJSON_IsNumber(v)) { *why = "is not a number"; return -1; }
    double d = v->valuedouble;
    if (signbit(d)) { *why = "is negative"; return -1; }
    if (d != floor(d)) { *why = "is not an integer"; return -1; }
    if (d >= 9007199254740992.0) { *why = "is too large (2^53 or more)"; return -1; }
    *out = (uint64_t)d;
    return 0;
}

static int parse_entry(const cJSON *e, st_tensor *t, uint64_t *begin, uint64_t *end,
                       const char *file) {
    const char *nm = t->name, *why;
    if (!cJSON_IsObject(e)) return err_set("%s: tensor '%s': entry is not an object", file, nm);
    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = !strcmp(c->string, "dtype") ? &dt
                           : !strcmp(c->string, "shape") ? &sh
                           : !strcmp(c->string, "data_offsets") ? &off : NULL;
        if (!slot) return err_set("%s: tensor '%s': unknown field '%s'", file, nm, c->string);
        if (*slot) return err_set("%s: tensor '%s': duplicate field '%s'", file, nm, c->string);
        *slot = c;
    }
    if (!dt || !sh || !off)
        return err_set("%s: tensor '%s': missing field '%s'", file, nm,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt)) return err_set("%s: tensor '%s': dtype is not a string", file, nm);
    if (st_dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return err_set("%s: tensor '%s': unknown dtype '%s'", file, nm, dt->valuestring);
    if (!cJSON_IsArray(sh)) return err_set("%s: tensor '%s': shape is not an array", file, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return err_set("%s: tensor '%s': %d dimensions, more than %d", file, nm, nd, ST_MAX_DIMS);
    t->ndim = 0;
    for (const cJSON *c = sh->child; c; c = c->next) {
        uint64_t d;
        if (json_u64(c, &d, &why) != 0)
            return err_set("%s: tensor '%s': shape entry %d %s", file, nm, t->ndim, why);
        t->shape[t->ndim++] = (int64_t)d;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return err_set("%s: tensor '%s': data_offsets is not a pair [begin, end]", file, nm);
    if (json_u64(off->child, begin, &why) != 0 || json_u64(off->child->next, end, &why) != 0)
        return err_set("%s: tensor '%s': data_offsets entry %s", file, nm, why);
    // The element count, then the byte count, with the reference's overflow checks
    // (left to right, so a huge dimension before a zero one still overflows).
    uint64_t numel = 1, size = st_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (d && numel > UINT64_MAX / d)
            return err_set("%s: tensor '%s': element count overflows 64 bits", file, nm);
        numel *= d;
    }
    if (numel > UINT64_MAX / size)
        return err_set("%s: tensor '%s': byte count overflows 64 bits", file, nm);
    t->nbytes = numel * size;
    return 0;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(st_tensor *const *)a)->name, (*(st_tensor *const *)b)->name);
}

static int cmp_meta_key(const void *a, const void *b) {
    return strcmp((*(st_meta *const *)a)->key, (*(st_meta *const *)b)->key);
}

static char *xstrdup(const char *s) {
    char *p = strdup(s);
    CHECK(p);
    return p;
}

static int parse_metadata(const cJSON *m, st_file *f) {
    if (!cJSON_IsObject(m)) return err_set("%s: __metadata__ is not an object", f->name);
    size_t n = (size_t)cJSON_GetArraySize(m);
    f->meta = calloc(n ? n : 1, sizeof *f->meta);
    CHECK(f->meta);
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return err_set("%s: __metadata__ key '%s': value is not a string", f->name, c->string);
        f->meta[f->n_meta].key = xstrdup(c->string);
        f->meta[f->n_meta].value = xstrdup(c->valuestring);
        f->n_meta++;
    }
    st_meta **tmp = malloc((n ? n : 1) * sizeof *tmp);
    CHECK(tmp);
    for (size_t i = 0; i < n; i++) tmp[i] = &f->meta[i];
    qsort(tmp, n, sizeof *tmp, cmp_meta_key);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(tmp[i - 1]->key, tmp[i]->key)) {
            err_set("%s: __metadata__: duplicate key '%s'", f->name, tmp[i]->key);
            free(tmp);
            return -1;
        }
    free(tmp);
    return 0;
}

// After the JSON: entries parsed, names unique; now the layout of the data section.
static int check_layout(st_file *f, uint64_t *begins, uint64_t *ends) {
    for (size_t i = 0; i < f->n_tensors; i++) {
        st_tensor *t = &f->tensors[i];
        if (begins[i] > ends[i])
            return err_set("%s: tensor '%s': reversed data_offsets [%llu, %llu]", f->name, t->name,
                           (unsigned long long)begins[i], (unsigned long long)ends[i]);
        if (ends[i] - begins[i] != t->nbytes)
            return err_set("%s: tensor '%s': data_offsets span %llu bytes but shape x %s needs %llu",
                           f->name, t->name, (unsigned long long)(ends[i] - begins[i]),
                           st_dtype_name(t->dtype), (unsigned long long)t->nbytes);
        t->offset = begins[i];
    }
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_tensor_offset);
    uint64_t pos = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        st_tensor *t = &f->tensors[i];
        if (t->offset < pos)
            return err_set("%s: tensor '%s': data_offsets overlap the previous tensor's (begin %llu < %llu)",
                           f->name, t->name, (unsigned long long)t->offset, (unsigned long long)pos);
        if (t->offset > pos)
            return err_set(i == 0 ? "%s: tensor '%s': data does not start at offset 0 (begin %llu)"
                                  : "%s: tensor '%s': gap before the tensor (begin %llu, previous end %llu)",
                           f->name, t->name, (unsigned long long)t->offset, (unsigned long long)pos);
        pos += t->nbytes;
    }
    if (pos < f->data_len)
        return err_set("%s: %llu extra bytes after the last tensor (data must fill the file)",
                       f->name, (unsigned long long)(f->data_len - pos));
    if (pos > f->data_len)
        return err_set("%s: truncated: the tensors need %llu data bytes, the file has %llu",
                       f->name, (unsigned long long)pos, (unsigned long long)f->data_len);
    for (size_t i = 0; i < f->n_tensors; i++) f->tensors[i].data = f->data + f->tensors[i].offset;
    return 0;
}

static int parse_header(const cJSON *root, st_file *f) {
    size_t n = (size_t)cJSON_GetArraySize(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
    uint64_t *begins = malloc((n ? n : 1) * sizeof *begins), *ends = malloc((n ? n : 1) * sizeof *ends);
    CHECK(f->tensors && f->by_name && begins && ends);
    int rc = 0, have_meta = 0;
    for (const cJSON *c = root->child; c && rc == 0; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) {
            rc = have_meta ? err_set("%s: duplicate __metadata__", f->name) : parse_metadata(c, f);
            have_meta = 1;
            continue;
        }
        size_t i = f->n_tensors++;
        f->tensors[i].name = xstrdup(c->string);
        rc = parse_entry(c, &f->tensors[i], &begins[i], &ends[i], f->name);
    }
    if (rc == 0) {
        st_tensor **names = f->by_name;
        for (size_t i = 0; i < f->n_tensors; i++) names[i] = &f->tensors[i];
        qsort(names, f->n_tensors, sizeof *names, cmp_tensor_name);
        for (size_t i = 1; i < f->n_tensors && rc == 0; i++)
            if (!strcmp(names[i - 1]->name, names[i]->name))
                rc = err_set("%s: duplicate tensor name '%s'", f->name, names[i]->name);
    }
    if (rc == 0) rc = check_layout(f, begins, ends);
    if (rc == 0) {  // the offset sort moved the tensors: index them by name again
        for (size_t i = 0; i < f->n_tensors; i++) f->by_name[i] = &f->tensors[i];
        qsort(f->by_name, f->n_tensors, sizeof *f->by_name, cmp_tensor_name);
    }
    free(begins);
    free(ends);
    return rc;
}

int st_parse(const void *buf, size_t len, const char *name, st_file *f) {
    memset(f, 0, sizeof *f);
    const uint8_t *p = buf;
    if (len < 8) return err_set("%s: truncated: %zu bytes, shorter than the 8-byte header length", name, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | p[i];
    if (n > ST_MAX_HEADER)
        return err_set("%s: header length %llu is too large (cap %llu)", name, (unsigned long long)n,
                       (unsigned long long)ST_MAX_HEADER);
    if (n > len - 8)
        return err_set("%s: truncated: header length %llu is past the end of the file (%zu bytes)",
                       name, (unsigned long long)n, len);
    const char *h = (const char *)p + 8;
    if (n == 0 || h[0] != '{') return err_set("%s: header does not start with '{'", name);
    size_t bad;
    if (!utf8_valid(h, n, &bad)) return err_set("%s: header is not valid UTF-8 (byte %zu)", name, bad);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, n, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - h) : 0;
        return err_set("%s: header is not valid JSON (near byte %zu)", name, at);
    }
    for (const char *q = end; q < h + n; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            cJSON_Delete(root);
            return err_set("%s: header is not valid JSON (trailing bytes at byte %zu)", name, (size_t)(q - h));
        }
    if (json_lex_check(h, n, name) != 0) { cJSON_Delete(root); return -1; }
    f->name = xstrdup(name);
    f->header_len = n;
    f->data = p + 8 + n;
    f->data_len = len - 8 - n;
    int rc = parse_header(root, f);
    cJSON_Delete(root);
    if (rc != 0) st_close(f);
    return rc;
}

int st_open(const char *path, st_file *f) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    IO_TRY(fd >= 0, path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) { close(fd); IO_TRY(0, path); }
    if (!S_ISREG(sb.st_mode)) { close(fd); return err_set("%s: not a regular file", path); }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) {  // mmap refuses a zero length; st_parse reports the short file
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) { close(fd); IO_TRY(0, path); }
    }
    close(fd);
    if (st_parse(map ? map : "", len, path, f) != 0) {
        if (map) munmap(map, len);
        return -1;
    }
    f->map = map;
    f->map_len = len;
    return 0;
}

void st_close(st_file *f) {
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) { free(f->meta[i].key); free(f->meta[i].value); }
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->name);
    if (f->map) munmap(f->map, f->map_len);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    st_tensor *const *names = f->by_name;
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(names[mid]->name, name);
        if (c == 0) return names[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *st_meta_get(const st_file *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

int64_t st_tensor_numel(const st_tensor *t) {
    // Unsigned: the parser bounds the count by the file's size, except in a tensor with
    // a zero dimension, where the dimensions before it may multiply past 2^63 (signed
    // overflow, found by tests/fuzz/fuzz_safetensors); the product is 0 either way.
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return (int64_t)n;
}

int st_tensor_view(const st_file *f, const st_tensor *t, tensor *out) {
    dtype dt;
    if (st_dtype_to_runtime(t->dtype, &dt) != 0)
        return err_set("%s: tensor '%s': dtype %s has no runtime tensor type (use st_tensor_to_f32)",
                       f->name, t->name, st_dtype_name(t->dtype));
    if (t->ndim > TENSOR_MAX_DIMS)
        return err_set("%s: tensor '%s': %d dimensions, a runtime tensor holds at most %d",
                       f->name, t->name, t->ndim, TENSOR_MAX_DIMS);
    if ((uintptr_t)t->data % st_dtype_size(t->dtype) != 0)
        return err_set("%s: tensor '%s': data is not aligned to its %zu-byte elements",
                       f->name, t->name, st_dtype_size(t->dtype));
    *out = tensor_make(dt, DEVICE_CPU, (void *)t->data, t->ndim, t->shape);
    return 0;
}

static float f8_e4m3_to_f32(uint8_t b) {
    // OCP FP8 E4M3 ("fn"): bias 7, no infinities, S.1111.111 is NaN.
    int s = b >> 7, e = (b >> 3) & 0xf, m = b & 7;
    float v;
    if (e == 15 && m == 7) v = NAN;
    else if (e == 0) v = ldexpf((float)m / 8.0f, -6);
    else v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

int st_tensor_to_f32(const st_file *f, const st_tensor *t, float *dst, size_t n) {
    if ((int64_t)n != st_tensor_numel(t))
        return err_set("%s: tensor '%s': has %lld elements, the destination %zu", f->name, t->name,
                       (long long)st_tensor_numel(t), n);
    const uint8_t *p = t->data;
    size_t sz = st_dtype_size(t->dtype);
    for (size_t i = 0; i < n; i++, p += sz) {
        union { uint8_t b[8]; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
                uint64_t u64; int64_t i64; double f64; } v;
        memcpy(v.b, p, sz);  // the data may be unaligned
        switch (t->dtype) {
        case ST_BOOL: dst[i] = v.b[0] != 0; break;
        case ST_U8: dst[i] = v.b[0]; break;
        case ST_I8: dst[i] = (int8_t)v.b[0]; break;
        case ST_F8_E5M2: dst[i] = f16_to_f32((uint16_t)(v.b[0] << 8)); break;  // f16's top byte
        case ST_F8_E4M3: dst[i] = f8_e4m3_to_f32(v.b[0]); break;
        case ST_I16: dst[i] = v.i16; break;
        case ST_U16: dst[i] = v.u16; break;
        case ST_F16: dst[i] = f16_to_f32(v.u16); break;
        case ST_BF16: dst[i] = bf16_to_f32(v.u16); break;
        case ST_I32: dst[i] = (float)v.i32; break;
        case ST_U32: dst[i] = (float)v.u32; break;
        case ST_F32: dst[i] = v.f32; break;
        case ST_F64: dst[i] = (float)v.f64; break;
        case ST_I64: dst[i] = (float)v.i64; break;
        case ST_U64: dst[i] = (float)v.u64; break;
        default: CHECK(0);
        }
    }
    return 0;
}
