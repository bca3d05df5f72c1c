// Integrity of what selma writes: checkpoints (models/checkpoint.h) and datasets
// (data/dataset.h: user block and @checksum) carry FNV-1a 64 checksums, and a flipped
// byte or a cut file is refused before anything is used, with a message naming the
// file. Older files without a checksum still load.
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "models/bundle.h"  // dir_remove_tree
#include "models/checkpoint.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"
#include "tests/check.h"

static char tmpdir[64];

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
}

// ---- checkpoints ----

static float a[7] = {1, -2, 3.5f, 1e-30f, 0, -0.0f, 7}, b[3] = {0.25f, 9, -1};
static float a2[7], b2[3];
static const ckpt_array arrays[2] = {{"a", a, 7}, {"b", b, 3}};
static const ckpt_array back[2] = {{"a", a2, 7}, {"b", b2, 3}};
static const char *json = "{\"step\": 1, \"rng\": [1, 2, 3], \"data_pos\": 64}";

// ckpt_load must fail and name `file`; nothing may be half-used, so state is NULL.
static int load_refused(const char *dir, const char *file) {
    char *state = (char *)1;
    int rc = ckpt_load(dir, back, 2, &state);
    return rc != 0 && state == NULL && strstr(err_msg(), file) != NULL;
}

// Every byte of `path` flipped (two masks) and every shorter length: all refused.
static void corrupt_every_byte(const char *dir, const char *path, const char *name) {
    char *orig;
    size_t n;
    CHECK(file_read_all(path, &orig, &n) == 0);
    char *bad = malloc(n);
    CHECK(bad);
    int refused = 0, tried = 0;
    static const unsigned char masks[2] = {0x01, 0x80};
    for (size_t k = 0; k < n; k++)
        for (int m = 0; m < 2; m++) {
            memcpy(bad, orig, n);
            bad[k] ^= (char)masks[m];
            write_bytes(path, bad, n);
            tried++;
            if (load_refused(dir, name)) refused++;
            else fprintf(stderr, "%s: byte %zu ^ 0x%02x accepted (%s)\n", name, k, masks[m], err_msg());
        }
    EXPECT(refused == tried, "%s: %d of %d flipped bytes refused", name, refused, tried);
    refused = tried = 0;
    for (size_t len = 0; len < n; len++) {
        write_bytes(path, orig, len);
        tried++;
        if (load_refused(dir, name)) refused++;
        else fprintf(stderr, "%s: cut to %zu of %zu bytes accepted\n", name, len, n);
    }
    EXPECT(refused == tried, "%s: %d of %d truncations refused", name, refused, tried);
    write_bytes(path, orig, n);
    printf("%s: %zu bytes, every flip (x2) and every truncation refused\n", name, n);
    free(bad);
    free(orig);
}

static void test_checkpoint(void) {
    char root[128], dir[256], st_path[300], js_path[300];
    snprintf(root, sizeof root, "%s/ck", tmpdir);
    CHECK(ckpt_save(root, 1, arrays, 2, json, 0) == 0);
    long step;
    CHECK(ckpt_find_latest(root, dir, sizeof dir, &step, NULL) == 0);
    snprintf(st_path, sizeof st_path, "%s/state.safetensors", dir);
    snprintf(js_path, sizeof js_path, "%s/state.json", dir);

    // The file records both checksums; an intact checkpoint loads exactly.
    st_file f;
    CHECK(st_open(st_path, &f) == 0);
    const char *s1 = st_meta_get(&f, "checksum"), *s2 = st_meta_get(&f, "state_json_checksum");
    EXPECT(s1 && strlen(s1) == 24 && !strncmp(s1, "fnv1a64:", 8), "checksum '%s'", s1 ? s1 : "(none)");
    EXPECT(s2 && strlen(s2) == 24 && !strncmp(s2, "fnv1a64:", 8), "state_json_checksum '%s'", s2 ? s2 : "(none)");
    st_close(&f);
    char *state = NULL;
    EXPECT(ckpt_load(dir, back, 2, &state) == 0, "%s", err_msg());
    EXPECT_TRUE(!memcmp(a, a2, sizeof a) && !memcmp(b, b2, sizeof b) && state && !strcmp(state, json));
    free(state);

    corrupt_every_byte(dir, st_path, "state.safetensors");
    corrupt_every_byte(dir, js_path, "state.json");
    EXPECT(ckpt_load(dir, back, 2, &state) == 0, "restored: %s", err_msg());
    free(state);

    // The message says what is wrong: one flipped bit in the last float.
    char *orig;
    size_t n;
    CHECK(file_read_all(st_path, &orig, &n) == 0);
    orig[n - 1] ^= 0x01;
    write_bytes(st_path, orig, n);
    EXPECT(load_refused(dir, "state.safetensors") && strstr(err_msg(), "checksum mismatch"), "%s", err_msg());
    free(orig);

    // A checkpoint from before checksums (no metadata) still loads.
    st_writer w;
    st_writer_init(&w);
    int64_t sa[1] = {7}, sb[1] = {3};
    CHECK(st_writer_add(&w, "a", ST_F32, 1, sa, a) == 0 && st_writer_add(&w, "b", ST_F32, 1, sb, b) == 0);
    CHECK(st_writer_save(&w, st_path) == 0);
    st_writer_free(&w);
    memset(a2, 0, sizeof a2);
    EXPECT(ckpt_load(dir, back, 2, &state) == 0, "no checksum: %s", err_msg());
    EXPECT_TRUE(!memcmp(a, a2, sizeof a));
    free(state);
}

// ---- datasets ----

static void make_dataset(dataset *d, int n, int h, int w) {
    CHECK(dataset_alloc(d, n, h, w) == 0);
    static const char *prompts[] = {"three red circles", "a blue square left of a circle",
                                    "un carr\xC3\xA9 bleu", ""};
    for (int i = 0; i < n; i++) d->prompt[i] = strdup(prompts[i % 4]);
    for (size_t k = 0; k < (size_t)n * h * w * 3; k++) d->image[k] = (uint8_t)(k * 31 + k / 7);
    snprintf(d->world, sizeof d->world, "shapes");
}

static int read_refused(const char *path) {
    dataset d;
    int rc = dataset_read(path, &d);
    if (rc == 0) dataset_free(&d);
    return rc != 0 && strstr(err_msg(), path) != NULL;
}

static void attr_text(const char *path, char *out, size_t cap) {
    out[0] = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t at = H5Aopen(f, "checksum", H5P_DEFAULT), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    char *s = NULL;
    if (at >= 0 && H5Aread(at, t, &s) >= 0 && s) snprintf(out, cap, "%s", s);
    if (s) H5free_memory(s);
    H5Tclose(t);
    if (at >= 0) H5Aclose(at);
    H5Fclose(f);
}

// Rewrites one pixel byte (item 1) or one prompt in place, as a disk error or an
// editor would, leaving the checksum as it was.
static void poke(const char *path, int prompt) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t ds = H5Dopen2(f, prompt ? "prompt" : "image", H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    hsize_t off[4] = {1, 2, 3, 1}, cnt[4] = {1, 1, 1, 1};
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, off, NULL, cnt, NULL);
    hid_t mem = H5Screate_simple(prompt ? 1 : 4, cnt, NULL);
    if (prompt) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5T_CSET_UTF8);
        const char *s = "a blue square left of a circlE";
        CHECK(H5Dwrite(ds, t, mem, sp, H5P_DEFAULT, &s) >= 0);
        H5Tclose(t);
    } else {
        uint8_t v = 0x5a;
        CHECK(H5Dwrite(ds, H5T_NATIVE_UINT8, mem, sp, H5P_DEFAULT, &v) >= 0);
    }
    H5Sclose(mem);
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
}

// Blanks the user block, as a file from another tool has it.
static void unseal(const char *path) {
    char *buf;
    size_t n;
    CHECK(file_read_all(path, &buf, &n) == 0 && n > 512);
    memset(buf, 0, 512);
    write_bytes(path, buf, n);
    free(buf);
}

static void test_dataset(void) {
    char path[128], path2[128], sum1[64], sum2[64];
    snprintf(path, sizeof path, "%s/d.h5", tmpdir);
    snprintf(path2, sizeof path2, "%s/d2.h5", tmpdir);
    dataset d, r;
    make_dataset(&d, 3, 8, 6);
    CHECK(dataset_write(path, &d) == 0);
    EXPECT(dataset_read(path, &r) == 0, "%s", err_msg());
    dataset_free(&r);
    attr_text(path, sum1, sizeof sum1);
    EXPECT(strlen(sum1) == 24 && !strncmp(sum1, "fnv1a64:", 8), "@checksum '%s'", sum1);

    // Written in batches (1 + 2 items), the checksum is the same.
    dataset_writer w;
    dataset one = d, two = d;
    one.n = 1;
    two.n = 2, two.prompt = d.prompt + 1, two.skill = d.skill + 1, two.seed = d.seed + 1;
    two.image = d.image + 8 * 6 * 3;
    CHECK(dataset_writer_open(&w, path2, &d) == 0 && dataset_writer_append(&w, &one) == 0 &&
          dataset_writer_append(&w, &two) == 0 && dataset_writer_close(&w) == 0);
    attr_text(path2, sum2, sizeof sum2);
    EXPECT(!strcmp(sum1, sum2), "batches %s, whole %s", sum2, sum1);

    // One changed pixel, one changed prompt: refused, naming the file and the cause --
    // by the user block's file checksum, and without it by @checksum.
    for (int prompt = 0; prompt < 2; prompt++) {
        CHECK(dataset_write(path2, &d) == 0);
        poke(path2, prompt);
        EXPECT(read_refused(path2) && strstr(err_msg(), "user block"), "%s", err_msg());
        unseal(path2);
        EXPECT(read_refused(path2) && strstr(err_msg(), "attribute checksum"), "%s", err_msg());
    }

    // Without either (h5py, older selma) the file is read unchecked.
    CHECK(dataset_write(path2, &d) == 0);
    hid_t f = H5Fopen(path2, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0 && H5Adelete(f, "checksum") >= 0 && H5Fclose(f) >= 0);
    unseal(path2);
    EXPECT(dataset_read(path2, &r) == 0, "no checksum: %s", err_msg());
    dataset_free(&r);

    // Cut files: refused. Flipped bytes anywhere: refused by the user block's checksum.
    // Without the user block, flipped bytes in the stored pixels (every image chunk, as
    // HDF5 locates them) and in the stored prompt texts: refused by @checksum or by the
    // deflate stream's own check -- never read back as changed data. (Flips in HDF5's
    // own metadata of a file without the block are the fuzzer's business.)
    char *orig;
    size_t n;
    CHECK(file_read_all(path, &orig, &n) == 0);
    char *bad = malloc(n);
    CHECK(bad);
    int cut_ok = 0, cuts = 0;
    for (size_t len = 0; len < n; len += 1 + len / 8, cuts++) {
        write_bytes(path2, orig, len);
        if (read_refused(path2)) cut_ok++;
        else fprintf(stderr, "dataset cut to %zu of %zu bytes accepted\n", len, n);
    }
    EXPECT(cut_ok == cuts, "%d of %d truncations refused", cut_ok, cuts);
    size_t begin[8], size[8];
    int regions = 0;
    hid_t fh = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), ds = H5Dopen2(fh, "image", H5P_DEFAULT);
    hid_t fcpl = H5Fget_create_plist(fh);
    hsize_t base = 0;  // chunk addresses count from the end of the user block
    CHECK(fcpl >= 0 && H5Pget_userblock(fcpl, &base) >= 0 && base == 512);
    H5Pclose(fcpl);
    hsize_t nchunks = 0;
    hid_t space = H5Dget_space(ds);  // HDF5 1.10 mishandles H5S_ALL here (its H5Dpublic.h)
    CHECK(ds >= 0 && H5Dget_num_chunks(ds, space, &nchunks) >= 0 && nchunks == 3);
    for (hsize_t c = 0; c < nchunks; c++) {
        hsize_t coord[4], sz;
        haddr_t addr;
        unsigned mask;
        CHECK(H5Dget_chunk_info(ds, space, c, coord, &mask, &addr, &sz) >= 0 && base + addr + sz <= n);
        begin[regions] = (size_t)(base + addr), size[regions++] = (size_t)sz;
    }
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(fh);
    for (int i = 0; i < 3; i++) {  // the three non-empty prompts, as UTF-8 in the heap
        const char *hit = memmem(orig, n, d.prompt[i], strlen(d.prompt[i]));
        CHECK(hit);
        begin[regions] = (size_t)(hit - orig), size[regions++] = strlen(d.prompt[i]);
    }
    // Every byte of the file flipped: refused before libhdf5 parses anything -- except
    // in the block's magic word, which makes the file an unsealed one whose HDF5 part
    // is intact: it must then read back exactly (and @checksum agrees).
    int all = 0, magic = 0;
    size_t magic_len = strlen("selma-dataset ");
    CHECK(!memcmp(orig, "selma-dataset ", magic_len));
    for (size_t k = 0; k < n; k++) {
        memcpy(bad, orig, n);
        bad[k] ^= 0x01;
        write_bytes(path2, bad, n);
        if (read_refused(path2)) { all++; continue; }
        if (k < magic_len && dataset_read(path2, &r) == 0) {
            int eq = r.n == d.n && !memcmp(r.image, d.image, (size_t)d.n * d.height * d.width * 3);
            for (int i = 0; eq && i < d.n; i++) eq = !strcmp(r.prompt[i], d.prompt[i]);
            dataset_free(&r);
            if (eq) { magic++; continue; }
        }
        fprintf(stderr, "dataset: byte %zu flipped: accepted\n", k);
    }
    EXPECT(all + magic == (int)n && all >= (int)(n - magic_len), "%d + %d (magic) of %zu flipped bytes",
           all, magic, n);
    // Without the user block, flips in the data are still caught by @checksum.
    memset(orig, 0, 512);
    int flips = 0, refused = 0;
    for (int g = 0; g < regions; g++)
        for (size_t k = begin[g]; k < begin[g] + size[g]; k++) {
            memcpy(bad, orig, n);
            bad[k] ^= 0x01;
            write_bytes(path2, bad, n);
            flips++;
            if (read_refused(path2)) refused++;
            else fprintf(stderr, "dataset: byte %zu flipped: %s\n", k, err_msg());
        }
    EXPECT(refused == flips, "%d of %d flipped data bytes refused", refused, flips);
    printf("dataset: %zu bytes: %d of %d truncations refused; flipped bytes: %d refused, %d in the "
           "magic word read intact; without the user block %d of %d flipped data bytes refused\n",
           n, cut_ok, cuts, all, magic, refused, flips);
    free(bad);
    free(orig);
    dataset_free(&d);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_integrity.XXXXXX");
    CHECK(mkdtemp(tmpdir));
    test_checkpoint();
    test_dataset();
    dir_remove_tree(tmpdir);
    return check_report("test_integrity");
}
