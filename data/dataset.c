#include "data/dataset.h"

#ifdef SELMA_HDF5
#include <hdf5.h>
#endif
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/shapes.h"
#include "runtime/checksum.h"
#include "runtime/error.h"
#include "runtime/fileio.h"

#ifndef SELMA_VERSION
#define SELMA_VERSION "unknown"
#endif

// Largest image side accepted; keeps n*h*w*3 far from overflow and a hostile header
// from asking for absurd allocations per item.
#define DATASET_MAX_SIDE 16384
#define DATASET_STR_CHUNK 256  // items per chunk of the 1-D datasets
// The HDF5 user block (bytes HDF5 leaves to the application before its superblock)
// holds one line, "selma-dataset fnv1a64:<hex> bytes <N>\n", the checksum and size
// of the file after the block. It is checked before libhdf5 parses anything: a
// corrupt HDF5 object header can crash or hang libhdf5 1.10 (tests/fuzz/README.md).
#define DATASET_USERBLOCK 512
#define USERBLOCK_MAGIC "selma-dataset "

#ifdef SELMA_HDF5
// ---------------------------------------------------------------------------------
// Small helpers

// HDF5 prints its error stack to stderr unless told not to; selma reports its own
// messages instead, with HDF5's innermost error description appended.
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc) snprintf((char *)data, 256, "%s", e->desc);
    return 0;
}

// -1 with "path: obj: what (HDF5: innermost error)".
static int h5_fail(const char *path, const char *obj, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int h5_fail(const char *path, const char *obj, const char *fmt, ...) {
    char what[512], detail[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, detail);
    if (detail[0]) return err_set("%s: %s: %s (HDF5: %s)", path, obj, what, detail);
    return err_set("%s: %s: %s", path, obj, what);
}

// Closes any kind of HDF5 id; ignores -1 (never opened) and predefined types.
static void h5_close(hid_t id) {
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

static hid_t str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static hid_t skill_type(void) {
    hid_t t = H5Tenum_create(H5T_NATIVE_UINT8);
    for (int i = 0; i < SKILL_KINDS; i++) {
        uint8_t v = (uint8_t)i;
        H5Tenum_insert(t, skill_names[i], &v);
    }
    return t;
}

static void skill_list(char *buf, size_t n) {
    buf[0] = 0;
    for (int i = 0; i < SKILL_KINDS; i++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? ", " : "", skill_names[i]);
}
#endif  // SELMA_HDF5

int dataset_alloc(dataset *d, int n, int h, int w) {
    memset(d, 0, sizeof *d);
    if (n < 0 || h < 1 || w < 1 || h > DATASET_MAX_SIDE || w > DATASET_MAX_SIDE)
        return err_set("dataset: bad size n=%d height=%d width=%d (expected n >= 0, sides 1..%d)",
                       n, h, w, DATASET_MAX_SIDE);
    size_t m = n ? (size_t)n : 1, bytes = (size_t)n * (size_t)h * (size_t)w * 3;
    d->n = n;
    d->height = h;
    d->width = w;
    d->prompt = calloc(m, sizeof *d->prompt);
    d->skill = malloc(m * sizeof *d->skill);
    d->seed = calloc(m, sizeof *d->seed);
    d->image = calloc(bytes ? bytes : 1, 1);
    if (!d->prompt || !d->skill || !d->seed || !d->image) {
        dataset_free(d);
        return err_set("dataset: out of memory for %d images of %dx%d (%zu bytes)", n, h, w, bytes);
    }
    for (int i = 0; i < n; i++) d->skill[i] = SKILL_UNKNOWN;
    return 0;
}

void dataset_free(dataset *d) {
    for (int i = 0; d->prompt && i < d->n; i++) free(d->prompt[i]);
    for (int i = 0; d->scene && i < d->n; i++) free(d->scene[i]);
    free(d->prompt);
    free(d->scene);
    free(d->skill);
    free(d->seed);
    free(d->image);
    memset(d, 0, sizeof *d);
}

#ifdef SELMA_HDF5
// FNV-1a 64 of the file from DATASET_USERBLOCK to its end, and that length.
static int hash_after_block(FILE *f, const char *path, uint64_t *h, uint64_t *n) {
    unsigned char buf[1 << 16];
    size_t got;
    *h = FNV1A64_INIT, *n = 0;
    if (fseek(f, DATASET_USERBLOCK, SEEK_SET)) return err_set("%s: cannot seek past the user block", path);
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) *h = fnv1a64(*h, buf, got), *n += got;
    if (ferror(f)) return err_set("%s: read error", path);
    return 0;
}

// Writes the user block line of a closed file (see DATASET_USERBLOCK).
static int seal_file(const char *tmp, const char *path) {
    FILE *f = fopen(tmp, "r+b");
    IO_TRY(f, path);
    uint64_t h, n;
    char block[DATASET_USERBLOCK] = {0}, sum[FNV1A64_TEXT_LEN];
    int rc = hash_after_block(f, path, &h, &n);
    fnv1a64_text(h, sum);
    snprintf(block, sizeof block, USERBLOCK_MAGIC "%s bytes %llu\n", sum, (unsigned long long)n);
    if (!rc && (fseek(f, 0, SEEK_SET) || fwrite(block, 1, sizeof block, f) != sizeof block || fflush(f)))
        rc = err_set("%s: cannot write the user block", path);
    fclose(f);
    return rc;
}

// Verifies the user block line when there is one (files from other tools have none).
static int check_sealed(FILE *f, const char *path) {
    char block[DATASET_USERBLOCK + 1] = {0}, want[FNV1A64_TEXT_LEN], sum[FNV1A64_TEXT_LEN];
    if (fread(block, 1, DATASET_USERBLOCK, f) != DATASET_USERBLOCK ||
        strncmp(block, USERBLOCK_MAGIC, strlen(USERBLOCK_MAGIC)))
        return 0;
    // The block must be exactly the line the writer makes (NUL padding included).
    unsigned long long want_n;
    char again[DATASET_USERBLOCK] = {0};
    int ok = sscanf(block + strlen(USERBLOCK_MAGIC), "%24s bytes %llu", want, &want_n) == 2;
    if (ok) snprintf(again, sizeof again, USERBLOCK_MAGIC "%s bytes %llu\n", want, want_n);
    if (!ok || memcmp(again, block, DATASET_USERBLOCK))
        return err_set("%s: damaged selma user block (corrupt file)", path);
    uint64_t h, n;
    if (hash_after_block(f, path, &h, &n)) return -1;
    fnv1a64_text(h, sum);
    if (n != want_n)
        return err_set("%s: file holds %llu bytes after its user block, which records %llu (truncated or "
                       "corrupt file)", path, (unsigned long long)n, want_n);
    if (strcmp(sum, want))
        return err_set("%s: file checksum mismatch: the bytes hash to %s, the user block records %s "
                       "(corrupt file)", path, sum, want);
    return 0;
}

// ---------------------------------------------------------------------------------
// Writing

static int attr_write(hid_t file, const char *name, hid_t type, const void *value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, type, value);
    h5_close(a);
    h5_close(sp);
    return rc < 0 ? -1 : 0;
}

static int attr_write_str(hid_t file, const char *name, const char *value) {
    hid_t t = str_type();
    int rc = attr_write(file, name, t, &value);
    h5_close(t);
    return rc;
}

// A 1-D (rank 1) or image (rank 4) dataset with an unlimited first dimension, so
// that batches can be appended; chunked as required for that.
static hid_t create_ds(hid_t file, const char *name, hid_t type, int rank, int h, int w) {
    hsize_t dims[4] = {0, (hsize_t)h, (hsize_t)w, 3};
    hsize_t maxdims[4] = {H5S_UNLIMITED, (hsize_t)h, (hsize_t)w, 3};
    hsize_t chunk[4] = {rank == 1 ? DATASET_STR_CHUNK : 1, (hsize_t)h, (hsize_t)w, 3};
    hid_t sp = H5Screate_simple(rank, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    if (rank == 4) H5Pset_deflate(dcpl, 4);
    hid_t ds = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    h5_close(dcpl);
    h5_close(sp);
    return ds;
}

void dataset_writer_abort(dataset_writer *w) {
    h5_close(w->prompt);
    h5_close(w->skill);
    h5_close(w->scene);
    h5_close(w->seed);
    h5_close(w->image);
    h5_close(w->file);
    if (w->tmp[0]) unlink(w->tmp);
    w->file = w->prompt = w->skill = w->scene = w->seed = w->image = -1;
    w->tmp[0] = 0;
}

int dataset_writer_open(dataset_writer *w, const char *path, const dataset *meta) {
    h5_quiet();
    memset(w, 0, sizeof *w);
    w->file = w->prompt = w->skill = w->scene = w->seed = w->image = -1;
    if (strlen(path) >= sizeof w->path) return err_set("%s: path too long", path);
    if (meta->height < 1 || meta->width < 1 || meta->height > DATASET_MAX_SIDE || meta->width > DATASET_MAX_SIDE)
        return err_set("%s: bad image size %dx%d (sides 1..%d)", path, meta->height, meta->width, DATASET_MAX_SIDE);
    snprintf(w->path, sizeof w->path, "%s", path);
    atomic_tmp_name(path, w->tmp, sizeof w->tmp);
    w->height = meta->height;
    w->width = meta->width;
    w->checksum = FNV1A64_INIT;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_userblock(fcpl, DATASET_USERBLOCK);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    h5_close(fcpl);
    if (w->file < 0) {
        w->tmp[0] = 0;  // nothing to remove
        return h5_fail(path, "/", "cannot create the file");
    }
    hid_t st = str_type(), sk = skill_type();
    w->prompt = create_ds(w->file, "prompt", st, 1, 0, 0);
    w->skill = create_ds(w->file, "skill", sk, 1, 0, 0);
    w->seed = create_ds(w->file, "seed", H5T_STD_U64LE, 1, 0, 0);
    w->image = create_ds(w->file, "image", H5T_STD_U8LE, 4, w->height, w->width);
    if (meta->scene) w->scene = create_ds(w->file, "scene", st, 1, 0, 0);
    h5_close(st);
    h5_close(sk);
    if (w->prompt < 0 || w->skill < 0 || w->seed < 0 || w->image < 0 || (meta->scene && w->scene < 0)) {
        h5_fail(path, "/", "cannot create the datasets");
        dataset_writer_abort(w);
        return -1;
    }

    char created[40];
    if (meta->created[0]) {
        snprintf(created, sizeof created, "%s", meta->created);
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    int32_t steps = meta->steps, height = meta->height, width = meta->width;
    float guidance = meta->guidance_scale;
    int bad = attr_write_str(w->file, "generator", meta->generator) |
              attr_write_str(w->file, "generator_hash", meta->generator_hash) |
              attr_write_str(w->file, "sampler", meta->sampler) |
              attr_write_str(w->file, "created", created) |
              attr_write_str(w->file, "selma_version", SELMA_VERSION) |
              attr_write_str(w->file, "world", meta->world) |
              attr_write(w->file, "steps", H5T_NATIVE_INT32, &steps) |
              attr_write(w->file, "height", H5T_NATIVE_INT32, &height) |
              attr_write(w->file, "width", H5T_NATIVE_INT32, &width) |
              attr_write(w->file, "guidance_scale", H5T_NATIVE_FLOAT, &guidance);
    if (bad) {
        h5_fail(path, "/", "cannot write the attributes");
        dataset_writer_abort(w);
        return -1;
    }
    return 0;
}

// Writes items [start, start + count) of a dataset whose first dimension grows.
static int append_rows(hid_t ds, hid_t memtype, int rank, hsize_t start, hsize_t count, const void *buf) {
    hsize_t dims[4], off[4] = {start, 0, 0, 0};
    hid_t sp = H5Dget_space(ds);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    h5_close(sp);
    dims[0] = start + count;
    if (H5Dset_extent(ds, dims) < 0) return -1;
    sp = H5Dget_space(ds);
    hsize_t cnt[4] = {count, dims[1], dims[2], dims[3]};
    hid_t mem = H5Screate_simple(rank, cnt, NULL);
    herr_t rc = H5Sselect_hyperslab(sp, H5S_SELECT_SET, off, NULL, cnt, NULL);
    if (rc >= 0) rc = H5Dwrite(ds, memtype, mem, sp, H5P_DEFAULT, buf);
    h5_close(mem);
    h5_close(sp);
    return rc < 0 ? -1 : 0;
}

static size_t image_bytes(const dataset_writer *w) { return (size_t)w->height * (size_t)w->width * 3; }

// Feeds n items to the running checksum (the order is the one dataset.h defines).
static uint64_t items_checksum(uint64_t h, int n, const char *const *prompts, const uint8_t *image, size_t bytes) {
    for (int i = 0; i < n; i++) {
        const char *p = prompts[i] ? prompts[i] : "";
        h = fnv1a64(h, p, strlen(p) + 1);
        h = fnv1a64(h, image + (size_t)i * bytes, bytes);
    }
    return h;
}

int dataset_writer_append(dataset_writer *w, const dataset *b) {
    h5_quiet();
    CHECK(w->file >= 0);
    if (b->n == 0) return 0;
    if (b->n < 0 || b->height != w->height || b->width != w->width)
        return err_set("%s: batch of %d images of %dx%d does not fit a file of %dx%d images",
                       w->path, b->n, b->height, b->width, w->height, w->width);
    if (b->scene && w->scene < 0)
        return err_set("%s: batch has /scene but the writer was opened without it", w->path);
    if ((long long)w->n + b->n > INT_MAX) return err_set("%s: more than %d items", w->path, INT_MAX);
    if (!b->image) return err_set("%s: /image: batch has no pixels", w->path);
    int n = b->n;
    const char **prompts = malloc((size_t)n * sizeof *prompts), **scenes = NULL;
    uint8_t *skills = malloc((size_t)n);
    uint64_t *zeros = b->seed ? NULL : calloc((size_t)n, sizeof *zeros);
    CHECK(prompts && skills && (b->seed || zeros));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        prompts[i] = b->prompt && b->prompt[i] ? b->prompt[i] : "";
        int s = b->skill ? b->skill[i] : SKILL_UNKNOWN;
        if (s < 0 || s >= SKILL_KINDS) {
            rc = err_set("%s: /skill: item %d has skill %d (expected 0..%d)", w->path, w->n + i,
                         s, SKILL_KINDS - 1);
            break;
        }
        skills[i] = (uint8_t)s;
    }
    if (rc == 0 && w->scene >= 0) {
        scenes = malloc((size_t)n * sizeof *scenes);
        CHECK(scenes);
        for (int i = 0; i < n; i++) scenes[i] = b->scene && b->scene[i] ? b->scene[i] : "";
    }
    hid_t st = str_type(), sk = skill_type();
    hsize_t start = (hsize_t)w->n;
    const char *which = NULL;
    if (rc == 0) {
        if (append_rows(w->prompt, st, 1, start, n, prompts) < 0) which = "/prompt";
        else if (append_rows(w->skill, sk, 1, start, n, skills) < 0) which = "/skill";
        else if (append_rows(w->seed, H5T_NATIVE_UINT64, 1, start, n, b->seed ? b->seed : zeros) < 0) which = "/seed";
        else if (append_rows(w->image, H5T_NATIVE_UINT8, 4, start, n, b->image) < 0) which = "/image";
        else if (w->scene >= 0 && append_rows(w->scene, st, 1, start, n, scenes) < 0) which = "/scene";
        if (which) rc = h5_fail(w->path, which, "cannot write items %d..%d", w->n, w->n + n - 1);
        else w->n += n, w->checksum = items_checksum(w->checksum, n, prompts, b->image, image_bytes(w));
    }
    h5_close(st);
    h5_close(sk);
    free(prompts);
    free(scenes);
    free(skills);
    free(zeros);
    return rc;
}

int dataset_writer_close(dataset_writer *w) {
    h5_quiet();
    char sum[FNV1A64_TEXT_LEN];
    fnv1a64_text(w->checksum, sum);
    if (attr_write_str(w->file, "checksum", sum)) {
        h5_fail(w->path, "/", "cannot write the attribute checksum");
        dataset_writer_abort(w);
        return -1;
    }
    hid_t *ids[] = {&w->prompt, &w->skill, &w->scene, &w->seed, &w->image};
    for (int i = 0; i < 5; i++) { h5_close(*ids[i]); *ids[i] = -1; }
    herr_t rc = H5Fclose(w->file);
    w->file = -1;
    if (rc < 0) {
        h5_fail(w->path, "/", "cannot close the file");
        dataset_writer_abort(w);
        return -1;
    }
    if (seal_file(w->tmp, w->path)) {
        dataset_writer_abort(w);
        return -1;
    }
    int pub = atomic_publish(w->tmp, w->path);
    w->tmp[0] = 0;
    return pub;
}

int dataset_write(const char *path, const dataset *d) {
    dataset_writer w;
    if (dataset_writer_open(&w, path, d) != 0) return -1;
    if (dataset_writer_append(&w, d) != 0) { dataset_writer_abort(&w); return -1; }
    return dataset_writer_close(&w);
}

// ---------------------------------------------------------------------------------
// Reading

static void type_text(hid_t t, char *buf, size_t n) {
    H5T_class_t c = H5Tget_class(t);
    size_t bits = H5Tget_size(t) * 8;
    if (c == H5T_INTEGER) snprintf(buf, n, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", bits);
    else if (c == H5T_FLOAT) snprintf(buf, n, "float%zu", bits);
    else if (c == H5T_STRING) snprintf(buf, n, "strings");
    else if (c == H5T_ENUM) snprintf(buf, n, "an enum");
    else if (c == H5T_COMPOUND) snprintf(buf, n, "a compound type");
    else snprintf(buf, n, "type class %d", (int)c);
}

// Opens `name` if it exists as a hard link to a dataset whose data lives in this
// file. 1 with *ds open, 0 if absent, -1 with a message.
static int open_ds(hid_t file, const char *path, const char *name, hid_t *ds) {
    *ds = -1;
    htri_t ex = H5Lexists(file, name, H5P_DEFAULT);
    if (ex < 0) return h5_fail(path, name, "cannot look it up (corrupt file?)");
    if (ex == 0) return 0;
    H5L_info_t li;
    if (H5Lget_info(file, name, &li, H5P_DEFAULT) < 0) return h5_fail(path, name, "cannot read its link");
    if (li.type != H5L_TYPE_HARD)
        return err_set("%s: %s: is %s link (expected a dataset stored in this file)", path, name,
                       li.type == H5L_TYPE_SOFT ? "a soft" : "an external");
    *ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (*ds < 0) return h5_fail(path, name, "is not a readable dataset");
    hid_t dcpl = H5Dget_create_plist(*ds);
    int ext = dcpl < 0 ? -1 : H5Pget_external_count(dcpl);
    H5D_layout_t layout = dcpl < 0 ? H5D_LAYOUT_ERROR : H5Pget_layout(dcpl);
    h5_close(dcpl);
    if (ext == 0 && layout != H5D_VIRTUAL && layout != H5D_LAYOUT_ERROR) return 1;
    h5_close(*ds);
    *ds = -1;
    if (ext > 0) return err_set("%s: %s: uses external storage (expected data stored in this file)", path, name);
    if (layout == H5D_VIRTUAL) return err_set("%s: %s: is a virtual dataset (expected data stored in this file)", path, name);
    return h5_fail(path, name, "cannot read its storage properties");
}

// A per-item dataset must be 1-D with one entry per image.
static int check_items(hid_t ds, const char *path, const char *name, int n) {
    hsize_t dims[H5S_MAX_RANK];
    hid_t sp = H5Dget_space(ds);
    int rank = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (rank >= 0) H5Sget_simple_extent_dims(sp, dims, NULL);
    h5_close(sp);
    if (rank < 0) return h5_fail(path, name, "cannot read its shape");
    if (rank != 1) return err_set("%s: %s: has rank %d (expected 1-D, one entry per image)", path, name, rank);
    if (dims[0] != (hsize_t)n)
        return err_set("%s: %s: has %llu items but /image has %d", path, name, (unsigned long long)dims[0], n);
    return 0;
}

// Reads n strings (vlen or fixed-length, any padding) into out[i] (malloc'd).
static int read_strings(hid_t ds, const char *path, const char *name, int n, char **out) {
    int rc = -1;
    hid_t ft = H5Dget_type(ds), mt = -1, sp = -1;
    char *buf = NULL, **ptrs = NULL, what[64];
    if (ft < 0) { h5_fail(path, name, "cannot read its type"); goto done; }
    if (H5Tget_class(ft) != H5T_STRING) {
        type_text(ft, what, sizeof what);
        err_set("%s: %s: holds %s (expected strings)", path, name, what);
        goto done;
    }
    mt = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mt, H5Tget_cset(ft));  // same encoding: no conversion between csets
    if (H5Tis_variable_str(ft) > 0) {
        H5Tset_size(mt, H5T_VARIABLE);
        ptrs = calloc(n ? (size_t)n : 1, sizeof *ptrs);
        CHECK(ptrs);
        if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs) < 0) {
            h5_fail(path, name, "cannot read the strings");
            goto done;
        }
        for (int i = 0; i < n; i++) { out[i] = strdup(ptrs[i] ? ptrs[i] : ""); CHECK(out[i]); }
        sp = H5Dget_space(ds);
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, ptrs);
    } else {
        // Fixed length: one more byte so that HDF5 NUL-terminates every item.
        size_t size = H5Tget_size(ft) + 1;
        H5Tset_size(mt, size);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        buf = malloc((n ? (size_t)n : 1) * size);
        if (!buf) { err_set("%s: %s: out of memory for %d strings of %zu bytes", path, name, n, size); goto done; }
        if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            h5_fail(path, name, "cannot read the strings");
            goto done;
        }
        for (int i = 0; i < n; i++) { out[i] = strdup(buf + (size_t)i * size); CHECK(out[i]); }
    }
    rc = 0;
done:
    free(buf);
    free(ptrs);
    h5_close(sp);
    h5_close(mt);
    h5_close(ft);
    return rc;
}

static int skill_parse(const char *path, const char *name, int item, const char *s, int *out) {
    *out = skill_from_name(s);
    if (*out >= 0) return 0;
    char known[256];
    skill_list(known, sizeof known);
    return err_set("%s: %s: item %d: unknown skill '%s' (expected one of: %s)", path, name, item, s, known);
}

// /skill as an HDF5 enum (any integer base) or as strings; names map to enum skill.
static int read_skills(hid_t ds, const char *path, int n, int *skill) {
    int rc = -1;
    hid_t ft = H5Dget_type(ds), mt = -1;
    unsigned char *buf = NULL;
    char what[64];
    if (ft < 0) return h5_fail(path, "/skill", "cannot read its type");
    if (H5Tget_class(ft) == H5T_STRING) {
        char **names = calloc(n ? (size_t)n : 1, sizeof *names);
        CHECK(names);
        rc = read_strings(ds, path, "/skill", n, names);
        for (int i = 0; rc == 0 && i < n; i++) rc = skill_parse(path, "/skill", i, names[i], &skill[i]);
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        goto done;
    }
    if (H5Tget_class(ft) != H5T_ENUM) {
        type_text(ft, what, sizeof what);
        err_set("%s: /skill: holds %s (expected an enum or strings naming skills)", path, what);
        goto done;
    }
    mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    size_t size = mt < 0 ? 0 : H5Tget_size(mt);
    if (size == 0 || size > 8) { h5_fail(path, "/skill", "unsupported enum base type"); goto done; }
    buf = malloc((n ? (size_t)n : 1) * size);
    CHECK(buf);
    if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        h5_fail(path, "/skill", "cannot read the values");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        char name[64];
        if (H5Tenum_nameof(mt, buf + (size_t)i * size, name, sizeof name) < 0) {
            err_set("%s: /skill: item %d: value is not a member of the enum", path, i);
            goto done;
        }
        if (skill_parse(path, "/skill", i, name, &skill[i]) != 0) goto done;
    }
    rc = 0;
done:
    free(buf);
    h5_close(mt);
    h5_close(ft);
    return rc;
}

// Opens a root attribute holding one value. 1 open, 0 absent, -1 with a message.
static int attr_open(hid_t file, const char *path, const char *name, hid_t *a) {
    *a = -1;
    htri_t ex = H5Aexists(file, name);
    if (ex < 0) return h5_fail(path, name, "cannot look up the attribute");
    if (ex == 0) return 0;
    *a = H5Aopen(file, name, H5P_DEFAULT);
    if (*a < 0) return h5_fail(path, name, "cannot open the attribute");
    hid_t sp = H5Aget_space(*a);
    hssize_t np = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    h5_close(sp);
    if (np == 1) return 1;
    h5_close(*a);
    *a = -1;
    return err_set("%s: attribute %s: holds %lld values (expected one)", path, name, (long long)np);
}

// A string attribute into out[cap], cut to fit. 1 read, 0 absent (out unchanged), -1.
static int attr_read_str(hid_t file, const char *path, const char *name, char *out, size_t cap) {
    hid_t a;
    int r = attr_open(file, path, name, &a);
    if (r <= 0) return r;
    int rc = -1;
    hid_t ft = H5Aget_type(a), mt = H5Tcopy(H5T_C_S1);
    char what[64];
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        if (ft >= 0) type_text(ft, what, sizeof what);
        err_set("%s: attribute %s: holds %s (expected a string)", path, name, ft < 0 ? "an unreadable type" : what);
    } else if (H5Tset_cset(mt, H5Tget_cset(ft)), H5Tis_variable_str(ft) > 0) {
        char *s = NULL;
        H5Tset_size(mt, H5T_VARIABLE);
        if (H5Aread(a, mt, &s) < 0) h5_fail(path, name, "cannot read the attribute");
        else { snprintf(out, cap, "%s", s ? s : ""); rc = 1; }
        if (s) H5free_memory(s);
    } else {
        size_t size = H5Tget_size(ft) + 1;
        char *s = malloc(size);
        CHECK(s);
        H5Tset_size(mt, size);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        if (H5Aread(a, mt, s) < 0) h5_fail(path, name, "cannot read the attribute");
        else { snprintf(out, cap, "%s", s); rc = 1; }
        free(s);
    }
    h5_close(mt);
    h5_close(ft);
    h5_close(a);
    return rc;
}

// A numeric attribute converted to memtype (int or float). 1 read, 0 absent, -1.
static int attr_read_num(hid_t file, const char *path, const char *name, hid_t memtype, void *out) {
    hid_t a;
    int r = attr_open(file, path, name, &a);
    if (r <= 0) return r;
    hid_t ft = H5Aget_type(a);
    H5T_class_t c = ft < 0 ? H5T_NO_CLASS : H5Tget_class(ft);
    int rc = -1;
    char what[64] = "an unreadable type";
    if (c != H5T_INTEGER && c != H5T_FLOAT) {
        if (ft >= 0) type_text(ft, what, sizeof what);
        err_set("%s: attribute %s: holds %s (expected a number)", path, name, what);
    } else if (H5Aread(a, memtype, out) < 0) {
        h5_fail(path, name, "cannot read the attribute");
    } else {
        rc = 1;
    }
    h5_close(ft);
    h5_close(a);
    return rc;
}

static int read_image(hid_t file, const char *path, dataset *d) {
    hid_t ds;
    int r = open_ds(file, path, "/image", &ds);
    if (r < 0) return -1;
    if (r == 0) return err_set("%s: /image: missing (expected N x H x W x 3 uint8 images)", path);
    int rc = -1;
    hsize_t dims[H5S_MAX_RANK];
    char what[64];
    hid_t sp = H5Dget_space(ds), ft = H5Dget_type(ds);
    int rank = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (rank >= 0) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (rank < 0 || ft < 0) {
        h5_fail(path, "/image", "cannot read its shape or type");
    } else if (rank != 4 || dims[3] != 3) {
        char shape[128] = "";
        for (int i = 0; i < rank; i++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", i ? " x " : "", (unsigned long long)dims[i]);
        err_set("%s: /image: has shape (%s) (expected N x H x W x 3)", path, shape);
    } else if (H5Tget_class(ft) != H5T_INTEGER || H5Tget_size(ft) != 1 || H5Tget_sign(ft) != H5T_SGN_NONE) {
        type_text(ft, what, sizeof what);
        err_set("%s: /image: holds %s (expected uint8)", path, what);
    } else if (dims[0] > INT_MAX || dims[1] < 1 || dims[2] < 1 || dims[1] > DATASET_MAX_SIDE || dims[2] > DATASET_MAX_SIDE) {
        err_set("%s: /image: %llu images of %llux%llu out of range (sides 1..%d)", path,
                (unsigned long long)dims[0], (unsigned long long)dims[1], (unsigned long long)dims[2], DATASET_MAX_SIDE);
    } else if (dataset_alloc(d, (int)dims[0], (int)dims[1], (int)dims[2]) != 0) {
        err_wrap("%s: /image", path);
    } else if (d->n && H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->image) < 0) {
        h5_fail(path, "/image", "cannot read the pixels (truncated or corrupt file?)");
    } else {
        rc = 0;
    }
    h5_close(ft);
    h5_close(sp);
    h5_close(ds);
    return rc;
}

// /image fixes N, H and W; every other per-item dataset must agree.
static int read_file(hid_t file, const char *path, dataset *d) {
    if (read_image(file, path, d) != 0) return -1;
    int n = d->n;
    hid_t ds;
    int r = open_ds(file, path, "/prompt", &ds);
    if (r < 0) return -1;
    if (r == 0) return err_set("%s: /prompt: missing (expected N strings)", path);
    r = check_items(ds, path, "/prompt", n) || read_strings(ds, path, "/prompt", n, d->prompt);
    h5_close(ds);
    if (r) return -1;

    if ((r = open_ds(file, path, "/skill", &ds)) < 0) return -1;
    if (r == 1) {
        r = check_items(ds, path, "/skill", n) || read_skills(ds, path, n, d->skill);
        h5_close(ds);
        if (r) return -1;
    } else {
        char name[64] = "";
        if ((r = attr_read_str(file, path, "skill", name, sizeof name)) < 0) return -1;
        int s = SKILL_UNKNOWN;
        if (r == 1 && skill_parse(path, "attribute skill", 0, name, &s) != 0) return -1;
        for (int i = 0; i < n; i++) d->skill[i] = s;
    }

    if ((r = open_ds(file, path, "/scene", &ds)) < 0) return -1;
    if (r == 1) {
        d->scene = calloc(n ? (size_t)n : 1, sizeof *d->scene);
        CHECK(d->scene);
        r = check_items(ds, path, "/scene", n) || read_strings(ds, path, "/scene", n, d->scene);
        h5_close(ds);
        if (r) return -1;
    }

    if ((r = open_ds(file, path, "/seed", &ds)) < 0) return -1;
    if (r == 1) {
        hid_t ft = H5Dget_type(ds);
        char what[64] = "an unreadable type";
        if (ft >= 0) type_text(ft, what, sizeof what);
        if (check_items(ds, path, "/seed", n)) r = -1;
        else if (ft < 0 || H5Tget_class(ft) != H5T_INTEGER) r = err_set("%s: /seed: holds %s (expected integers)", path, what);
        else if (n && H5Dread(ds, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->seed) < 0)
            r = h5_fail(path, "/seed", "cannot read the seeds");
        else r = 0;
        h5_close(ft);
        h5_close(ds);
        if (r) return -1;
    }

    int height = d->height, width = d->width;
    if (attr_read_str(file, path, "generator", d->generator, sizeof d->generator) < 0 ||
        attr_read_str(file, path, "generator_hash", d->generator_hash, sizeof d->generator_hash) < 0 ||
        attr_read_str(file, path, "sampler", d->sampler, sizeof d->sampler) < 0 ||
        attr_read_str(file, path, "created", d->created, sizeof d->created) < 0 ||
        attr_read_str(file, path, "selma_version", d->version, sizeof d->version) < 0 ||
        attr_read_str(file, path, "world", d->world, sizeof d->world) < 0 ||
        attr_read_num(file, path, "steps", H5T_NATIVE_INT, &d->steps) < 0 ||
        attr_read_num(file, path, "guidance_scale", H5T_NATIVE_FLOAT, &d->guidance_scale) < 0 ||
        attr_read_num(file, path, "height", H5T_NATIVE_INT, &height) < 0 ||
        attr_read_num(file, path, "width", H5T_NATIVE_INT, &width) < 0)
        return -1;
    if (height != d->height || width != d->width)
        return err_set("%s: attributes height/width say %dx%d but /image holds %dx%d images", path,
                       height, width, d->height, d->width);
    char want[64] = "", sum[FNV1A64_TEXT_LEN];
    int r_sum = attr_read_str(file, path, "checksum", want, sizeof want);
    if (r_sum < 0) return -1;
    if (r_sum == 0) return 0;
    size_t bytes = (size_t)d->height * (size_t)d->width * 3;
    fnv1a64_text(items_checksum(FNV1A64_INIT, d->n, (const char *const *)d->prompt, d->image, bytes), sum);
    if (strcmp(want, sum))
        return err_set("%s: checksum mismatch: /prompt and /image hash to %s but attribute checksum "
                       "records %s (corrupt or modified file)", path, sum, want);
    return 0;
}

int dataset_read(const char *path, dataset *d) {
    memset(d, 0, sizeof *d);
    h5_quiet();
    FILE *f = fopen(path, "rb");
    IO_TRY(f, path);
    int sealed = check_sealed(f, path);
    fclose(f);
    if (sealed) return -1;
    if (H5Fis_hdf5(path) <= 0) return err_set("%s: not an HDF5 file", path);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return h5_fail(path, "/", "cannot open (truncated or corrupt HDF5 file?)");
    int rc = read_file(file, path, d);
    if (H5Fclose(file) < 0 && rc == 0) rc = h5_fail(path, "/", "cannot close the file");
    if (rc != 0) dataset_free(d);
    return rc;
}

#else  // no HDF5 (meson -Dhdf5=disabled, or none found): datasets cannot be read or written
#define NO_HDF5(path) err_set("%s: this build has no HDF5 (libhdf5-dev; meson -Dhdf5=enabled)", path)

int dataset_writer_open(dataset_writer *w, const char *path, const dataset *meta) {
    (void)meta;
    memset(w, 0, sizeof *w);
    return NO_HDF5(path);
}
int dataset_writer_append(dataset_writer *w, const dataset *batch) {
    (void)w, (void)batch;
    return NO_HDF5("dataset");
}
int dataset_writer_close(dataset_writer *w) {
    (void)w;
    return NO_HDF5("dataset");
}
void dataset_writer_abort(dataset_writer *w) { (void)w; }
int dataset_write(const char *path, const dataset *d) {
    (void)d;
    return NO_HDF5(path);
}
int dataset_read(const char *path, dataset *d) {
    memset(d, 0, sizeof *d);
    return NO_HDF5(path);
}
#endif  // SELMA_HDF5
