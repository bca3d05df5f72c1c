// `selma world render`, `selma prompts` and `selma eval`, run as the built binary
// (SELMA_BUILD_ROOT/experiments/selma): a small end-to-end round, then bad input --
// a truncated HDF5 file, one without /image, one with images of the wrong shape, a
// failing generator command -- which must exit non-zero naming the file or command.
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/fileio.h"
#include "tests/check.h"
#include "tests/selma_cli.h"

static char tmpdir[64];
#define run selma_run

// An HDF5 file with /prompt (fixed-length strings) and, if channels > 0, /image of
// n x 32 x 32 x channels uint8 (zeros).
static void h5_make(const char *path, const char *const *prompts, int n, int channels) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 64);
    hsize_t dn = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dn, NULL);
    hid_t ds = H5Dcreate2(f, "/prompt", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    char buf[8][64] = {{0}};
    for (int i = 0; i < n; i++) snprintf(buf[i], 64, "%s", prompts[i]);
    H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(st);
    if (channels > 0) {
        hsize_t dims[4] = {(hsize_t)n, 32, 32, (hsize_t)channels};
        static uint8_t px[8 * 32 * 32 * 4];
        sp = H5Screate_simple(4, dims, NULL);
        ds = H5Dcreate2(f, "/image", H5T_NATIVE_UINT8, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, px);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Fclose(f);
}

static void test_round(void) {
    static char out[1 << 16], args[8192], path[256];
    snprintf(args, sizeof args, "world render --skill all --n 4 --seed 3 --out %s/w.h5", tmpdir);
    EXPECT(run(args, out, sizeof out) == 0, "%s", out);
    EXPECT_IN(out, "wrote 20 images of 32x32");
    snprintf(args, sizeof args, "eval --dataset %s/w.h5 --json %s/s.json", tmpdir, tmpdir);
    EXPECT(run(args, out, sizeof out) == 0, "%s", out);
    EXPECT_IN(out, "dense");
    snprintf(path, sizeof path, "%s/s.json", tmpdir);
    char *text;
    size_t len;
    EXPECT(file_read_all(path, &text, &len) == 0, "no %s", path);
    cJSON *doc = cJSON_Parse(text ? text : "");
    free(text);
    EXPECT(doc != NULL, "JSON parses");
    if (doc) {
        cJSON *dsg = cJSON_GetObjectItem(doc, "dsg"), *n = cJSON_GetObjectItem(doc, "n");
        cJSON *count = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "skills"), "count");
        EXPECT(cJSON_IsNumber(dsg) && dsg->valuedouble >= 0.9, "dsg of ground truth");
        EXPECT(cJSON_IsNumber(cJSON_GetObjectItem(doc, "tifa")), "tifa");
        EXPECT(cJSON_IsNumber(n) && n->valueint == 20, "n");
        EXPECT(count && cJSON_IsNumber(cJSON_GetObjectItem(count, "dsg")) &&
                   cJSON_IsNumber(cJSON_GetObjectItem(count, "tifa")) &&
                   cJSON_GetObjectItem(count, "n")->valueint == 4,
               "skills.count.{dsg,tifa,n}");
        cJSON_Delete(doc);
    }
    snprintf(args, sizeof args, "world render --skill pretrain --n 3 --size 48 --out %s/p.h5", tmpdir);
    EXPECT(run(args, out, sizeof out) == 0, "%s", out);
    EXPECT_IN(out, "wrote 3 images of 48x48");

    snprintf(args, sizeof args, "prompts --skill spatial --n 20 --seed 1 --out %s/p.txt", tmpdir);
    EXPECT(run(args, out, sizeof out) == 0, "%s", out);
    EXPECT_IN(out, "kept 20");
    snprintf(path, sizeof path, "%s/p.txt", tmpdir);
    int lines = 0;
    if (file_read_all(path, &text, &len) == 0) {
        for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
        free(text);
    }
    EXPECT(lines == 20, "%d lines", lines);
    snprintf(args, sizeof args, "prompts --skill count --n 3 --generator-cmd 'exit 4' --out %s/q.txt", tmpdir);
    EXPECT(run(args, out, sizeof out) != 0, "%s", out);
    EXPECT_IN(out, "generator command 'exit 4' failed with exit status 4");
    snprintf(path, sizeof path, "%s/q.txt", tmpdir);
    EXPECT(access(path, F_OK) != 0, "nothing written on failure");
    EXPECT(run("prompts --skill colour --n 3 --out x.txt", out, sizeof out) == 2, "%s", out);
    EXPECT_IN(out, "unknown skill 'colour'");
}

static void test_bad_files(void) {
    static char out[1 << 16], args[8192], path[256], bad[256];
    // truncated: the first half of a good file
    snprintf(path, sizeof path, "%s/w.h5", tmpdir);
    snprintf(bad, sizeof bad, "%s/truncated.h5", tmpdir);
    char *text;
    size_t len;
    if (file_read_all(path, &text, &len) == 0) {
        atomic_write(bad, text, len / 2);
        free(text);
    }
    snprintf(args, sizeof args, "eval --dataset %s", bad);
    EXPECT(run(args, out, sizeof out) == 1, "%s", out);
    EXPECT_IN(out, bad);

    const char *prompts[2] = {"a red circle next to a square", "two blue squares"};
    snprintf(bad, sizeof bad, "%s/noimage.h5", tmpdir);
    h5_make(bad, prompts, 2, 0);
    snprintf(args, sizeof args, "eval --dataset %s", bad);
    EXPECT(run(args, out, sizeof out) == 1, "%s", out);
    EXPECT_IN(out, bad);
    EXPECT_IN(out, "/image");

    snprintf(bad, sizeof bad, "%s/rgba.h5", tmpdir);
    h5_make(bad, prompts, 2, 4);
    snprintf(args, sizeof args, "eval --dataset %s", bad);
    EXPECT(run(args, out, sizeof out) == 1, "%s", out);
    EXPECT_IN(out, bad);
    EXPECT_IN(out, "2 x 32 x 32 x 4");

    snprintf(args, sizeof args, "eval --dataset %s/absent.h5", tmpdir);
    EXPECT(run(args, out, sizeof out) == 1, "%s", out);
    EXPECT_IN(out, "absent.h5");

    // any file with /prompt and /image: no /skill -> "unknown"; unparsed words reported
    snprintf(bad, sizeof bad, "%s/plain.h5", tmpdir);
    h5_make(bad, prompts, 2, 3);
    snprintf(args, sizeof args, "eval --dataset %s", bad);
    EXPECT(run(args, out, sizeof out) == 0, "%s", out);
    EXPECT_IN(out, "unknown");
    EXPECT_IN(out, "unparsed: 2 words in 1 prompts");
    EXPECT_IN(out, "next to");
}

int main(void) {
    if (selma_locate("test_cmd_world")) return 1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/selma-world-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_round();
    test_bad_files();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_report("test_cmd_world");
}
