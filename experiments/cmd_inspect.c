// `selma inspect FILE [--json]`: what a safetensors or HDF5 file holds.
// safetensors: every tensor's name, dtype, shape, byte count and the FNV-1a 64-bit
// hash of its raw (little-endian) bytes, the totals and the __metadata__.
// HDF5 (recognised by its 8-byte signature at offset 0 or at a userblock offset
// 512, 1024, 2048, ...): every dataset's path, type, shape and storage, and the root
// group's attributes with their values. Anything else is read as safetensors, so a
// broken file gets the reader's message; the exit status is then 1.
#include <cjson/cJSON.h>
#include <fcntl.h>
#ifdef SELMA_HDF5
#include <hdf5.h>
#endif
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "experiments/commands.h"
#include "runtime/error.h"
#include "runtime/safetensors.h"

static uint64_t fnv1a64(const uint8_t *p, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int is_hdf5(const char *path) {
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    struct stat sb;
    int found = 0;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
        for (off_t at = 0; !found && at + 8 <= sb.st_size; at = at ? 2 * at : 512) {
            uint8_t b[8];
            found = pread(fd, b, 8, at) == 8 && memcmp(b, sig, 8) == 0;
        }
    close(fd);
    return found;
}

static cJSON *shape_json(int ndim, const int64_t *shape) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < ndim; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)shape[i]));
    return a;
}

static void shape_text(const cJSON *a, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    int i = 0;
    for (const cJSON *c = a->child; c && k < n; c = c->next, i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %.0f" : "%.0f", c->valuedouble);
    if (k < n) snprintf(buf + k, n - k, i == 1 ? ",)" : ")");
}

static cJSON *inspect_safetensors(const char *path) {
    st_file f;
    if (st_open(path, &f) != 0) return NULL;
    cJSON *doc = cJSON_CreateObject(), *ts = cJSON_CreateArray(), *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "file", path);
    cJSON_AddStringToObject(doc, "format", "safetensors");
    cJSON_AddNumberToObject(doc, "file_bytes", (double)f.map_len);
    cJSON_AddNumberToObject(doc, "header_bytes", (double)f.header_len);
    cJSON_AddNumberToObject(doc, "data_bytes", (double)f.data_len);
    double numel = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        char hash[20];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)fnv1a64(t->data, t->nbytes));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", st_dtype_name(t->dtype));
        cJSON_AddItemToObject(o, "shape", shape_json(t->ndim, t->shape));
        cJSON_AddNumberToObject(o, "offset", (double)t->offset);
        cJSON_AddNumberToObject(o, "nbytes", (double)t->nbytes);
        cJSON_AddStringToObject(o, "fnv1a64", hash);
        cJSON_AddItemToArray(ts, o);
        numel += (double)st_tensor_numel(t);
    }
    cJSON_AddNumberToObject(doc, "elements", numel);
    cJSON_AddItemToObject(doc, "tensors", ts);
    for (size_t i = 0; i < f.n_meta; i++) cJSON_AddStringToObject(meta, f.meta[i].key, f.meta[i].value);
    cJSON_AddItemToObject(doc, "metadata", meta);
    st_close(&f);
    return doc;
}

static void print_safetensors(const cJSON *doc) {
    const cJSON *ts = cJSON_GetObjectItem(doc, "tensors"), *meta = cJSON_GetObjectItem(doc, "metadata");
    printf("%s: safetensors, %d tensors, %.0f elements, %.0f bytes (header %.0f, data %.0f)\n",
           cJSON_GetObjectItem(doc, "file")->valuestring, cJSON_GetArraySize(ts),
           cJSON_GetObjectItem(doc, "elements")->valuedouble,
           cJSON_GetObjectItem(doc, "file_bytes")->valuedouble,
           cJSON_GetObjectItem(doc, "header_bytes")->valuedouble,
           cJSON_GetObjectItem(doc, "data_bytes")->valuedouble);
    printf("%-8s %-20s %12s %16s  %s\n", "dtype", "shape", "bytes", "fnv1a64", "name");
    for (const cJSON *t = ts->child; t; t = t->next) {
        char shape[160];
        shape_text(cJSON_GetObjectItem(t, "shape"), shape, sizeof shape);
        printf("%-8s %-20s %12.0f %16s  %s\n", cJSON_GetObjectItem(t, "dtype")->valuestring, shape,
               cJSON_GetObjectItem(t, "nbytes")->valuedouble, cJSON_GetObjectItem(t, "fnv1a64")->valuestring,
               cJSON_GetObjectItem(t, "name")->valuestring);
    }
    printf("metadata: %d keys\n", cJSON_GetArraySize(meta));
    for (const cJSON *m = meta->child; m; m = m->next) printf("  %s = %s\n", m->string, m->valuestring);
}

#ifdef SELMA_HDF5
// ---- HDF5 -----------------------------------------------------------------------

// Appends to a fixed buffer, truncating quietly: types and values are for reading.
typedef struct sbuf {
    char *p;
    size_t n, len;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->len + 1 >= b->n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->len, b->n - b->len, fmt, ap);
    va_end(ap);
    if (k > 0) b->len = b->len + (size_t)k < b->n ? b->len + (size_t)k : b->n - 1;
}

// An integer of `size` bytes with signedness, from raw bytes, as text.
static void sb_int(sbuf *b, const void *p, size_t size, int is_signed) {
    uint64_t u = 0;
    memcpy(&u, p, size < 8 ? size : 8);
    if (is_signed && size < 8 && (u >> (8 * size - 1)) & 1) u |= ~0ull << (8 * size);
    if (is_signed) sb_add(b, "%lld", (long long)u);
    else sb_add(b, "%llu", (unsigned long long)u);
}

static void h5_type(hid_t t, sbuf *b) {
    size_t size = H5Tget_size(t);
    switch (H5Tget_class(t)) {
    case H5T_INTEGER: sb_add(b, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", 8 * size); break;
    case H5T_FLOAT: sb_add(b, "float%zu", 8 * size); break;
    case H5T_STRING: {
        const char *cs = H5Tget_cset(t) == H5T_CSET_UTF8 ? "utf-8" : "ascii";
        if (H5Tis_variable_str(t) > 0) sb_add(b, "vlen %s string", cs);
        else sb_add(b, "fixed %s string[%zu]", cs, size);
        break;
    }
    case H5T_ENUM: {
        hid_t base = H5Tget_super(t);
        int sgn = H5Tget_sign(base) != H5T_SGN_NONE;
        size_t bs = H5Tget_size(base);
        sb_add(b, "enum(");
        h5_type(base, b);
        sb_add(b, "){");
        int nm = H5Tget_nmembers(t);
        for (int i = 0; i < nm; i++) {
            char *name = H5Tget_member_name(t, (unsigned)i);
            uint8_t v[16] = {0};
            H5Tget_member_value(t, (unsigned)i, v);
            sb_add(b, "%s%s=", i ? ", " : "", name ? name : "?");
            sb_int(b, v, bs, sgn);
            H5free_memory(name);
        }
        sb_add(b, "}");
        H5Tclose(base);
        break;
    }
    case H5T_COMPOUND: {
        sb_add(b, "compound{");
        int nm = H5Tget_nmembers(t);
        for (int i = 0; i < nm; i++) {
            char *name = H5Tget_member_name(t, (unsigned)i);
            hid_t mt = H5Tget_member_type(t, (unsigned)i);
            sb_add(b, "%s%s: ", i ? ", " : "", name ? name : "?");
            h5_type(mt, b);
            H5Tclose(mt);
            H5free_memory(name);
        }
        sb_add(b, "}");
        break;
    }
    case H5T_ARRAY: {
        hsize_t dims[H5S_MAX_RANK];
        int nd = H5Tget_array_dims2(t, dims);
        sb_add(b, "array[");
        for (int i = 0; i < nd; i++) sb_add(b, i ? "x%llu" : "%llu", (unsigned long long)dims[i]);
        sb_add(b, "] of ");
        hid_t base = H5Tget_super(t);
        h5_type(base, b);
        H5Tclose(base);
        break;
    }
    case H5T_VLEN: {
        sb_add(b, "vlen sequence of ");
        hid_t base = H5Tget_super(t);
        h5_type(base, b);
        H5Tclose(base);
        break;
    }
    case H5T_OPAQUE: sb_add(b, "opaque[%zu]", size); break;
    case H5T_BITFIELD: sb_add(b, "bitfield%zu", 8 * size); break;
    case H5T_REFERENCE: sb_add(b, "reference"); break;
    default: sb_add(b, "unknown type class"); break;
    }
}

static void h5_shape(hid_t space, cJSON *o) {
    H5S_class_t cls = H5Sget_simple_extent_type(space);
    if (cls != H5S_SIMPLE) {
        cJSON_AddStringToObject(o, "shape", cls == H5S_SCALAR ? "scalar" : "null");
        return;
    }
    hsize_t dims[H5S_MAX_RANK];
    int nd = H5Sget_simple_extent_dims(space, dims, NULL);
    int64_t d[H5S_MAX_RANK];
    for (int i = 0; i < nd; i++) d[i] = (int64_t)dims[i];
    cJSON_AddItemToObject(o, "shape", shape_json(nd < 0 ? 0 : nd, d));
}

static void h5_storage(hid_t ds, sbuf *b) {
    hid_t pl = H5Dget_create_plist(ds);
    H5D_layout_t lay = H5Pget_layout(pl);
    if (lay == H5D_CHUNKED) {
        hsize_t dims[H5S_MAX_RANK];
        int nd = H5Pget_chunk(pl, H5S_MAX_RANK, dims);
        sb_add(b, "chunked (");
        for (int i = 0; i < nd; i++) sb_add(b, i ? ", %llu" : "%llu", (unsigned long long)dims[i]);
        sb_add(b, ")");
    } else {
        sb_add(b, lay == H5D_CONTIGUOUS ? "contiguous" : lay == H5D_COMPACT ? "compact" : "other layout");
    }
    int nf = H5Pget_nfilters(pl);
    for (int i = 0; i < nf; i++) {
        unsigned flags, cd[8];
        size_t ncd = 8;
        char name[64] = "";
        unsigned cfg;
        H5Pget_filter2(pl, (unsigned)i, &flags, &ncd, cd, sizeof name, name, &cfg);
        sb_add(b, ", %s", name[0] ? name : "filter");
    }
    H5Pclose(pl);
}

typedef struct h5_walk {
    cJSON *datasets;
} h5_walk;

static herr_t h5_visit(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    h5_walk *w = data;
    if (info->type != H5L_TYPE_HARD) return 0;  // soft and external links may dangle
    hid_t obj = H5Oopen(g, name, H5P_DEFAULT);
    if (obj < 0) return 0;
    if (H5Iget_type(obj) == H5I_DATASET) {
        char tbuf[1024] = "", sbuf_[256] = "", path[4096];
        sbuf tb = {tbuf, sizeof tbuf, 0}, sb = {sbuf_, sizeof sbuf_, 0};
        hid_t t = H5Dget_type(obj), sp = H5Dget_space(obj);
        h5_type(t, &tb);
        h5_storage(obj, &sb);
        snprintf(path, sizeof path, "/%s", name);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", path);
        cJSON_AddStringToObject(o, "type", tbuf);
        h5_shape(sp, o);
        cJSON_AddStringToObject(o, "storage", sbuf_);
        cJSON_AddItemToArray(w->datasets, o);
        H5Tclose(t);
        H5Sclose(sp);
    }
    H5Oclose(obj);
    return 0;
}

#define H5_SHOW_MAX 16  // values shown per attribute

// The attribute's values as text; types without a simple rendering show the type only.
static void h5_attr_value(hid_t a, sbuf *b) {
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a), mt = -1;
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    H5T_class_t cls = H5Tget_class(ft);
    int is_vlen = cls == H5T_STRING && H5Tis_variable_str(ft) > 0;
    size_t esize = 0;
    if (cls == H5T_INTEGER) { mt = H5Tcopy(H5Tget_sign(ft) == H5T_SGN_NONE ? H5T_NATIVE_ULLONG : H5T_NATIVE_LLONG); }
    else if (cls == H5T_FLOAT) mt = H5Tcopy(H5T_NATIVE_DOUBLE);
    else if (cls == H5T_ENUM) mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    else if (cls == H5T_STRING) {
        mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, is_vlen ? H5T_VARIABLE : H5Tget_size(ft) + 1);  // + 1: room for the NUL
        H5Tset_cset(mt, H5Tget_cset(ft));
    }
    if (mt >= 0) esize = H5Tget_size(mt);
    uint8_t *buf = NULL;
    if (mt < 0 || np < 0 || (size_t)np * esize > (1u << 20)) {
        sb_add(b, "(%lld values, not shown)", (long long)np);
    } else if ((buf = calloc((size_t)np + 1, esize)) && H5Aread(a, mt, buf) >= 0) {
        if (np != 1) sb_add(b, "[");
        for (hssize_t i = 0; i < np && i < H5_SHOW_MAX; i++) {
            const uint8_t *p = buf + (size_t)i * esize;
            if (i) sb_add(b, ", ");
            if (cls == H5T_INTEGER) sb_int(b, p, 8, H5Tget_sign(ft) != H5T_SGN_NONE);
            else if (cls == H5T_FLOAT) { double v; memcpy(&v, p, 8); sb_add(b, "%.9g", v); }
            else if (cls == H5T_ENUM) {
                char name[128];
                if (H5Tenum_nameof(mt, p, name, sizeof name) >= 0) sb_add(b, "%s", name);
                else sb_add(b, "?");
            } else if (is_vlen) {
                const char *s;
                memcpy(&s, p, sizeof s);
                sb_add(b, "\"%s\"", s ? s : "");
            } else {
                sb_add(b, "\"%.*s\"", (int)strnlen((const char *)p, esize), (const char *)p);
            }
        }
        if (np > H5_SHOW_MAX) sb_add(b, ", ... %lld more", (long long)(np - H5_SHOW_MAX));
        if (np != 1) sb_add(b, "]");
        if (is_vlen) {
#if H5_VERSION_GE(1, 12, 0)
            H5Treclaim(mt, sp, H5P_DEFAULT, buf);
#else
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
#endif
        }
    } else {
        sb_add(b, "(unreadable)");
    }
    free(buf);
    if (mt >= 0) H5Tclose(mt);
    H5Tclose(ft);
    H5Sclose(sp);
}

static herr_t h5_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    cJSON *attrs = data;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return 0;
    char tbuf[1024] = "", vbuf[4096] = "";
    sbuf tb = {tbuf, sizeof tbuf, 0}, vb = {vbuf, sizeof vbuf, 0};
    hid_t t = H5Aget_type(a);
    h5_type(t, &tb);
    H5Tclose(t);
    h5_attr_value(a, &vb);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "type", tbuf);
    cJSON_AddStringToObject(o, "value", vbuf);
    cJSON_AddItemToArray(attrs, o);
    H5Aclose(a);
    return 0;
}

static cJSON *inspect_hdf5(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);  // selma reports errors itself, naming the file
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) { err_set("%s: has the HDF5 signature but HDF5 cannot open it", path); return NULL; }
    cJSON *doc = cJSON_CreateObject();
    h5_walk w = {cJSON_CreateArray()};
    cJSON *attrs = cJSON_CreateArray();
    cJSON_AddStringToObject(doc, "file", path);
    cJSON_AddStringToObject(doc, "format", "hdf5");
    herr_t rv = H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, h5_visit, &w);
    herr_t ra = H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, h5_attr, attrs);
    cJSON_AddItemToObject(doc, "datasets", w.datasets);
    cJSON_AddItemToObject(doc, "attributes", attrs);
    H5Fclose(f);
    if (rv < 0 || ra < 0) {
        cJSON_Delete(doc);
        err_set("%s: HDF5 file is damaged (%s failed)", path, rv < 0 ? "walking the groups" : "reading root attributes");
        return NULL;
    }
    return doc;
}

#else
static cJSON *inspect_hdf5(const char *path) {
    err_set("%s: this build has no HDF5 (libhdf5-dev; meson -Dhdf5=enabled)", path);
    return NULL;
}
#endif

static void print_hdf5(const cJSON *doc) {
    const cJSON *ds = cJSON_GetObjectItem(doc, "datasets"), *at = cJSON_GetObjectItem(doc, "attributes");
    printf("%s: hdf5, %d datasets, %d root attributes\n", cJSON_GetObjectItem(doc, "file")->valuestring,
           cJSON_GetArraySize(ds), cJSON_GetArraySize(at));
    for (const cJSON *d = ds->child; d; d = d->next) {
        const cJSON *sh = cJSON_GetObjectItem(d, "shape");
        char shape[160];
        if (cJSON_IsArray(sh)) shape_text(sh, shape, sizeof shape);
        else snprintf(shape, sizeof shape, "%s", sh->valuestring);
        printf("  %s  %s  %s  %s\n", cJSON_GetObjectItem(d, "path")->valuestring,
               cJSON_GetObjectItem(d, "type")->valuestring, shape,
               cJSON_GetObjectItem(d, "storage")->valuestring);
    }
    printf("attributes of /:\n");
    for (const cJSON *a = at->child; a; a = a->next)
        printf("  %s = %s  (%s)\n", cJSON_GetObjectItem(a, "name")->valuestring,
               cJSON_GetObjectItem(a, "value")->valuestring, cJSON_GetObjectItem(a, "type")->valuestring);
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: selma inspect FILE [--json]\n"
                   "Lists a safetensors file's tensors (dtype, shape, bytes, FNV-1a 64 of the bytes)\n"
                   "and metadata, or an HDF5 file's datasets (type, shape, storage) and root\n"
                   "attributes. Exits 1 if the file is unreadable or invalid.\n");
            return 0;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "selma inspect: unexpected argument '%s' (see --help)\n", argv[i]);
            return 2;
        } else path = argv[i];
    }
    if (!path) { fprintf(stderr, "usage: selma inspect FILE [--json]\n"); return 2; }
    int hdf5 = is_hdf5(path);
    cJSON *doc = hdf5 ? inspect_hdf5(path) : inspect_safetensors(path);
    if (!doc) {
        // Say how a file with another name was read, so a foreign file's message
        // (a "header length" error for a PNG) makes sense.
        struct stat sb;
        size_t n = strlen(path);
        int foreign = !hdf5 && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
                      (n < 12 || strcmp(path + n - 12, ".safetensors") != 0);
        fprintf(stderr, "selma inspect: %s%s\n", err_msg(), foreign ? " (not HDF5; read as safetensors)" : "");
        return 1;
    }
    if (json) {
        char *s = cJSON_Print(doc);
        CHECK(s);
        printf("%s\n", s);
        free(s);
    } else if (hdf5) {
        print_hdf5(doc);
    } else {
        print_safetensors(doc);
    }
    cJSON_Delete(doc);
    return 0;
}
