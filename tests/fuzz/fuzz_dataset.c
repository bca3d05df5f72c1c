// libFuzzer target: the HDF5 dataset reader (dataset_read) on files that libhdf5
// itself writes, shaped by the input: each of /image, /prompt, /skill, /scene, /seed
// and the root attributes is absent or present with a right or wrong type, rank,
// length or link kind, and the strings are arbitrary bytes. This fuzzes selma's
// validation, not libhdf5's parser of corrupt files (fuzz_hdf5_raw does that). A
// file dataset_read accepts must hold what dataset.h promises.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "data/dataset.h"
#include "data/shapes.h"

static char path[64];

static void cleanup(void) { unlink(path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(path, sizeof path, "/tmp/selma-fuzz-dataset-%ld.h5", (long)getpid());
    atexit(cleanup);
    return 0;
}

// The input, read a byte at a time; zeros once it runs out.
typedef struct input { const uint8_t *p; size_t n; } input;

static unsigned take(input *in, unsigned mod) {
    unsigned v = in->n ? (in->n--, *in->p++) : 0;
    return mod ? v % mod : v;
}

// A string of up to 15 arbitrary input bytes, or (half the time) a skill's name.
static void take_str(input *in, char *out) {
    if (take(in, 2)) {
        snprintf(out, 16, "%s", skill_names[take(in, SKILL_KINDS)]);
        return;
    }
    unsigned len = take(in, 16);
    for (unsigned i = 0; i < len; i++) out[i] = (char)(take(in, 0) | 1);  // no inner NUL
    out[len] = 0;
}

static hid_t vlen_str(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

// A 1-D dataset of `count` items of one of several types.
static void write_items(hid_t f, const char *name, input *in, int count) {
    hsize_t dims[2] = {(hsize_t)count, 2};
    int rank = take(in, 8) == 0 ? 2 : 1;  // sometimes the wrong rank
    hid_t sp = H5Screate_simple(rank, dims, NULL), t;
    size_t items = (size_t)count * (rank == 2 ? 2 : 1);
    unsigned kind = take(in, 5);
    if (kind == 0) {  // vlen strings
        t = vlen_str();
        char (*buf)[16] = calloc(items ? items : 1, 16);
        const char **ptr = calloc(items ? items : 1, sizeof *ptr);
        for (size_t i = 0; i < items; i++) take_str(in, buf[i]), ptr[i] = buf[i];
        hid_t ds = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptr);
        H5Dclose(ds);
        free(buf);
        free(ptr);
    } else if (kind == 1) {  // fixed-length strings, any padding
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 1 + take(in, 8));
        H5Tset_strpad(t, (H5T_str_t)take(in, 3));
        size_t size = H5Tget_size(t);
        char *buf = calloc(items ? items : 1, size);
        for (size_t i = 0; i < items * size; i++) buf[i] = (char)take(in, 0);
        hid_t ds = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        H5Dclose(ds);
        free(buf);
    } else if (kind == 2) {  // an enum with names from the input, any values
        t = H5Tenum_create(take(in, 2) ? H5T_NATIVE_UINT8 : H5T_NATIVE_INT16);
        int members = 1 + take(in, 4);
        for (int m = 0; m < members; m++) {
            char nm[16];
            take_str(in, nm);
            if (!nm[0]) snprintf(nm, sizeof nm, "m%d", m);
            int16_t v16 = (int16_t)m;
            uint8_t v8 = (uint8_t)m;
            H5Tenum_insert(t, nm, H5Tget_size(t) == 1 ? (void *)&v8 : (void *)&v16);
        }
        // Values in the enum's own base type; members + 1 is none of its members.
        size_t es = H5Tget_size(t);
        uint8_t *buf = calloc(items ? items : 1, es);
        for (size_t i = 0; i < items; i++) {
            int16_t v = (int16_t)take(in, members + 2);
            if (es == 1) buf[i] = (uint8_t)v;
            else memcpy(buf + 2 * i, &v, 2);
        }
        hid_t ds = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        H5Dclose(ds);
        free(buf);
    } else {  // numbers: uint64, int8 or float
        t = H5Tcopy(kind == 3 ? H5T_STD_U64LE : take(in, 2) ? H5T_STD_I8LE : H5T_IEEE_F32LE);
        double *buf = calloc(items ? items : 1, sizeof *buf);
        for (size_t i = 0; i < items; i++) buf[i] = (double)take(in, 0) - 20;
        hid_t ds = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        H5Dclose(ds);
        free(buf);
    }
    H5Tclose(t);
    H5Sclose(sp);
}

// A root attribute: a string, an int, a float, or two ints.
static void write_attr(hid_t f, const char *name, input *in) {
    hsize_t two = 2;
    unsigned kind = take(in, 4);
    hid_t sp = kind == 3 ? H5Screate_simple(1, &two, NULL) : H5Screate(H5S_SCALAR);
    hid_t t = kind == 0 ? vlen_str() : kind == 2 ? H5Tcopy(H5T_NATIVE_FLOAT) : H5Tcopy(H5T_NATIVE_INT);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    char s[16];
    const char *sp_ = s;
    int iv[2] = {(int)take(in, 0) - 8, (int)take(in, 0)};
    float fv = (float)take(in, 0) / 7.0f;
    if (kind == 0) take_str(in, s), H5Awrite(a, t, &sp_);
    else if (kind == 2) H5Awrite(a, t, &fv);
    else H5Awrite(a, t, iv);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(sp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    input in = {data, size};
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) abort();
    int n = (int)take(&in, 4), h = 1 + (int)take(&in, 3), w = 1 + (int)take(&in, 3);
    // /image: usually right; else another rank, channel count or element type.
    unsigned im = take(&in, 8);
    if (im != 7) {
        hsize_t dims[4] = {(hsize_t)n, (hsize_t)h, (hsize_t)w, im == 1 ? 4 : 3};
        int rank = im == 2 ? 3 : 4;
        hid_t sp = H5Screate_simple(rank, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        hsize_t chunk[4] = {1, dims[1], dims[2], dims[3]};
        if (n > 0 && take(&in, 2)) H5Pset_chunk(dcpl, rank, chunk), H5Pset_deflate(dcpl, 1);
        hid_t t = H5Tcopy(im == 3 ? H5T_STD_I16LE : im == 4 ? H5T_IEEE_F32LE : H5T_STD_U8LE);
        hid_t ds = H5Dcreate2(f, "image", t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        size_t bytes = (size_t)n * h * w * dims[3];
        uint8_t *px = calloc(bytes ? bytes : 1, 1);
        for (size_t i = 0; i < bytes; i++) px[i] = (uint8_t)take(&in, 0);
        if (take(&in, 4)) H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, px);  // else unwritten
        free(px);
        H5Dclose(ds);
        H5Tclose(t);
        H5Pclose(dcpl);
        H5Sclose(sp);
    }
    // The per-item datasets: absent, or n (sometimes n + 1) items of some type.
    static const char *const names[] = {"prompt", "skill", "scene", "seed"};
    for (int i = 0; i < 4; i++) {
        unsigned k = take(&in, 8);
        if (k == 0) continue;
        if (k == 1) {  // a soft or an external link instead of a dataset
            if (take(&in, 2)) H5Lcreate_soft("/image", f, names[i], H5P_DEFAULT, H5P_DEFAULT);
            else H5Lcreate_external("other.h5", "/x", f, names[i], H5P_DEFAULT, H5P_DEFAULT);
            continue;
        }
        write_items(f, names[i], &in, n + (k == 2));
    }
    static const char *const attrs[] = {"generator", "generator_hash", "sampler", "created", "selma_version",
                                        "world", "steps", "guidance_scale", "height", "width", "skill", "checksum"};
    for (int i = 0; i < 12; i++)
        if (take(&in, 3) == 0) write_attr(f, attrs[i], &in);
    H5Fclose(f);

    dataset d;
    if (dataset_read(path, &d) == 0) {
        if (d.n != n || d.height != h || d.width != w) abort();  // N, H, W come from /image
        for (int i = 0; i < d.n; i++) {
            if (!d.prompt[i]) abort();
            if (d.skill[i] < 0 || d.skill[i] >= SKILL_KINDS) abort();
        }
        dataset_free(&d);
    }
    return 0;
}
