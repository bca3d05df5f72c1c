// `selma inspect`: runs the built binary (SELMA_BUILD_ROOT/experiments/selma) on a
// valid safetensors file, on malformed and foreign files, and on an HDF5 file made
// here, and checks what it prints and its exit status.
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/safetensors.h"
#include "tests/check.h"
#include "tests/selma_cli.h"

static char tmpdir[64];

// Runs `selma inspect ARGS`, stdout and stderr together; returns the exit status.
static int run_inspect(const char *args, char *out, size_t n) {
    char a[4200];
    snprintf(a, sizeof a, "inspect %s", args);
    return selma_run(a, out, n);
}

static void test_safetensors_file(void) {
    static char out[1 << 16];
    const char *good = "tests/fixtures/safetensors_good/lora_small.safetensors";
    EXPECT(run_inspect(good, out, sizeof out) == 0, "%s", out);
    EXPECT_IN(out, "unet.down.0.to_q.lora_A.weight");
    EXPECT_IN(out, "4 tensors");
    EXPECT_IN(out, "F32      (2, 3)");
    EXPECT_IN(out, "BF16     (3, 1)");
    EXPECT_IN(out, "U8       (3,)");
    EXPECT_IN(out, "I32      ()");
    EXPECT_IN(out, "rank = 1");
    // The checksum is FNV-1a 64 of the tensor's bytes.
    st_file f;
    if (st_open(good, &f) == 0) {
        const st_tensor *t = st_find(&f, "labels");
        uint64_t h = 0xcbf29ce484222325ull;
        for (uint64_t i = 0; t && i < t->nbytes; i++) h = (h ^ ((const uint8_t *)t->data)[i]) * 0x100000001b3ull;
        char hex[20];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        EXPECT_IN(out, hex);
        st_close(&f);
    } else {
        EXPECT(0, "%s", err_msg());
    }

    char args[512];
    snprintf(args, sizeof args, "--json %s", good);
    EXPECT(run_inspect(args, out, sizeof out) == 0, "%s", out);
    cJSON *doc = cJSON_Parse(out);
    EXPECT(doc && cJSON_GetArraySize(cJSON_GetObjectItem(doc, "tensors")) == 4, "%s", out);
    cJSON_Delete(doc);

    // Malformed, missing and foreign files: exit 1 and a message naming the file.
    const char *bad[] = {"tests/fixtures/safetensors_bad/gap.safetensors",
                         "tests/fixtures/safetensors_bad/utf8_surrogate.safetensors",
                         "tests/fixtures/safetensors_bad/empty_file.safetensors",
                         "tests/fixtures/no_such_file.safetensors", "tests/check.h"};
    const char *why[] = {"gap", "UTF-8", "truncated", "No such file", "too large"};
    for (int i = 0; i < 5; i++) {
        EXPECT(run_inspect(bad[i], out, sizeof out) == 1, "%s: %s", bad[i], out);
        EXPECT_IN(out, bad[i]);
        EXPECT_IN(out, why[i]);
    }
    EXPECT(run_inspect("", out, sizeof out) == 2, "no file: %s", out);
}

static void make_hdf5(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    hsize_t n3 = 3;
    hid_t sp3 = H5Screate_simple(1, &n3, NULL);
    const char *prompts[3] = {"three red circles", "a blue square left of a green triangle", "ünïcode"};
    hid_t d = H5Dcreate2(f, "prompt", str, sp3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, str, H5S_ALL, H5S_ALL, H5P_DEFAULT, prompts);
    H5Dclose(d);

    hsize_t idims[4] = {3, 4, 4, 3}, chunk[4] = {1, 4, 4, 3};
    static uint8_t img[3 * 4 * 4 * 3];
    hid_t isp = H5Screate_simple(4, idims, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, 4, chunk);
    H5Pset_deflate(pl, 4);
    d = H5Dcreate2(f, "image", H5T_NATIVE_UINT8, isp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, img);
    H5Dclose(d);
    H5Pclose(pl);
    H5Sclose(isp);

    hid_t en = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t v = 0;
    H5Tenum_insert(en, "count", &v);
    v = 1;
    H5Tenum_insert(en, "spatial", &v);
    int8_t skills[3] = {0, 1, 1};
    d = H5Dcreate2(f, "skill", en, sp3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, en, H5S_ALL, H5S_ALL, H5P_DEFAULT, skills);
    H5Dclose(d);

    hid_t g = H5Gcreate2(f, "extra", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float fl[3] = {1, 2, 3};
    d = H5Dcreate2(g, "loss", H5T_IEEE_F32LE, sp3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, fl);
    H5Dclose(d);
    H5Gclose(g);

    hid_t scalar = H5Screate(H5S_SCALAR);
    int64_t steps = 50;
    double cfg = 7.5;
    const char *sampler = "ddim";
    hid_t a = H5Acreate2(f, "steps", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &steps);
    H5Aclose(a);
    a = H5Acreate2(f, "guidance_scale", H5T_IEEE_F64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &cfg);
    H5Aclose(a);
    a = H5Acreate2(f, "sampler", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, str, &sampler);
    H5Aclose(a);
    hid_t fixed = H5Tcopy(H5T_C_S1);
    H5Tset_size(fixed, 4);
    H5Tset_strpad(fixed, H5T_STR_NULLPAD);
    a = H5Acreate2(f, "model", fixed, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, fixed, "tiny");
    H5Aclose(a);
    v = 1;
    a = H5Acreate2(f, "skill", en, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, en, &v);
    H5Aclose(a);
    int32_t seeds[3] = {1, 2, -3};
    a = H5Acreate2(f, "seeds", H5T_STD_I32LE, sp3, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, seeds);
    H5Aclose(a);
    H5Tclose(fixed);
    H5Sclose(scalar);
    H5Tclose(en);
    H5Sclose(sp3);
    H5Tclose(str);
    H5Fclose(f);
}

static void test_hdf5_file(void) {
    static char out[1 << 16];
    char path[128], args[256];
    snprintf(path, sizeof path, "%s/set.h5", tmpdir);
    make_hdf5(path);
    EXPECT(run_inspect(path, out, sizeof out) == 0, "%s", out);
    EXPECT_IN(out, "4 datasets, 6 root attributes");
    EXPECT_IN(out, "/prompt  vlen utf-8 string  (3,)");
    EXPECT_IN(out, "/image  uint8  (3, 4, 4, 3)  chunked (1, 4, 4, 3), deflate");
    EXPECT_IN(out, "/skill  enum(int8){count=0, spatial=1}  (3,)");
    EXPECT_IN(out, "/extra/loss  float32  (3,)");
    EXPECT_IN(out, "steps = 50  (int64)");
    EXPECT_IN(out, "guidance_scale = 7.5  (float64)");
    EXPECT_IN(out, "sampler = \"ddim\"  (vlen utf-8 string)");
    EXPECT_IN(out, "model = \"tiny\"  (fixed ascii string[4])");
    EXPECT_IN(out, "skill = spatial");
    EXPECT_IN(out, "seeds = [1, 2, -3]  (int32)");
    snprintf(args, sizeof args, "--json %s", path);
    EXPECT(run_inspect(args, out, sizeof out) == 0, "%s", out);
    cJSON *doc = cJSON_Parse(out);
    EXPECT(doc && cJSON_GetArraySize(cJSON_GetObjectItem(doc, "datasets")) == 4, "%s", out);
    cJSON_Delete(doc);
    unlink(path);

    // The signature and nothing behind it: HDF5 refuses it, selma says so and exits 1.
    snprintf(path, sizeof path, "%s/broken.h5", tmpdir);
    FILE *fp = fopen(path, "wb");
    if (fp) { fwrite("\x89HDF\r\n\x1a\ngarbage, not a superblock", 1, 34, fp); fclose(fp); }
    EXPECT(run_inspect(path, out, sizeof out) == 1, "%s", out);
    EXPECT_IN(out, path);
    EXPECT_IN(out, "HDF5");
    unlink(path);
}

int main(void) {
    if (selma_locate("test_inspect")) return 1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/selma-inspect-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_safetensors_file();
    test_hdf5_file();
    rmdir(tmpdir);
    return check_report("test_inspect");
}
