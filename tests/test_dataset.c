// HDF5 datasets: write/read round trip (UTF-8, every field, attributes, batches),
// files written by other tools (fixed-length strings, no /skill, skills as strings),
// and every kind of bad file rejected with the file and dataset named.
#include <hdf5.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/shapes.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "tests/check.h"

static char dir[64];

static const char *tmp_path(const char *name) {
    static char path[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
    return path[k];
}

static void make_dataset(dataset *d, int n, int h, int w, int with_scene) {
    static const char *prompts[] = {"three red circles", "un carr\xC3\xA9 bleu \xC3\xA0 gauche",
                                    "\xE4\xB8\x89\xE4\xB8\xAA\xE7\xBA\xA2\xE8\x89\xB2\xE5\x9C\x86", "",
                                    "a small green triangle above a large yellow square"};
    CHECK(dataset_alloc(d, n, h, w) == 0);
    if (with_scene) { d->scene = calloc((size_t)n, sizeof *d->scene); CHECK(d->scene); }
    for (int i = 0; i < n; i++) {
        d->prompt[i] = strdup(prompts[i % 5]);
        d->skill[i] = i % SKILL_KINDS;
        d->seed[i] = i == 1 ? UINT64_MAX : 1000003ull * (uint64_t)i;
        if (with_scene) {
            char json[64];
            snprintf(json, sizeof json, "{\"objects\": [%d], \"name\": \"\xC3\xA9\"}", i);
            d->scene[i] = strdup(json);
        }
    }
    for (size_t k = 0; k < (size_t)n * h * w * 3; k++) d->image[k] = (uint8_t)(k * 7 + k / 13);
    snprintf(d->generator, sizeof d->generator, "shapes-unet-1.5M");
    snprintf(d->generator_hash, sizeof d->generator_hash, "sha256:0123abcd");
    snprintf(d->sampler, sizeof d->sampler, "ddim");
    snprintf(d->created, sizeof d->created, "2024-03-11T10:20:30Z");
    snprintf(d->world, sizeof d->world, "shapes");
    d->steps = 20;
    d->guidance_scale = 7.5f;
}

static void expect_same(const dataset *a, const dataset *b, const char *what) {
    EXPECT(a->n == b->n && a->height == b->height && a->width == b->width, "%s: sizes", what);
    if (a->n != b->n || a->height != b->height || a->width != b->width) return;
    for (int i = 0; i < a->n; i++) {
        EXPECT(!strcmp(a->prompt[i], b->prompt[i]), "%s: prompt %d '%s'", what, i, b->prompt[i]);
        EXPECT(a->skill[i] == b->skill[i], "%s: skill %d: %d vs %d", what, i, a->skill[i], b->skill[i]);
        EXPECT(a->seed[i] == b->seed[i], "%s: seed %d", what, i);
    }
    EXPECT(!a->scene == !b->scene, "%s: scene presence", what);
    for (int i = 0; a->scene && b->scene && i < a->n; i++)
        EXPECT(!strcmp(a->scene[i], b->scene[i]), "%s: scene %d '%s'", what, i, b->scene[i]);
    EXPECT(!memcmp(a->image, b->image, (size_t)a->n * a->height * a->width * 3), "%s: pixels", what);
    EXPECT(!strcmp(a->generator, b->generator) && !strcmp(a->generator_hash, b->generator_hash) &&
           !strcmp(a->sampler, b->sampler) && !strcmp(a->created, b->created) && !strcmp(a->world, b->world),
           "%s: string attributes '%s' '%s' '%s' '%s' '%s'", what, b->generator, b->generator_hash,
           b->sampler, b->created, b->world);
    EXPECT(a->steps == b->steps && a->guidance_scale == b->guidance_scale, "%s: numeric attributes", what);
    EXPECT(!strcmp(b->version, SELMA_VERSION), "%s: version '%s'", what, b->version);
}

static void test_round_trip(void) {
    dataset a, b;
    make_dataset(&a, 5, 8, 6, 1);
    const char *path = tmp_path("rt.h5");
    EXPECT(dataset_write(path, &a) == 0, "%s", err_msg());
    EXPECT(dataset_read(path, &b) == 0, "%s", err_msg());
    expect_same(&a, &b, "round trip");
    dataset_free(&b);

    // No scene: /scene is absent and reads back as NULL; empty `created` becomes now.
    for (int i = 0; i < a.n; i++) free(a.scene[i]);
    free(a.scene);
    a.scene = NULL;
    a.created[0] = 0;
    path = tmp_path("noscene.h5");
    EXPECT(dataset_write(path, &a) == 0, "%s", err_msg());
    EXPECT(dataset_read(path, &b) == 0, "%s", err_msg());
    EXPECT(b.scene == NULL, "scene read back");
    EXPECT(strlen(b.created) == 20 && b.created[10] == 'T' && b.created[19] == 'Z', "created '%s'", b.created);
    snprintf(a.created, sizeof a.created, "%s", b.created);
    expect_same(&a, &b, "no scene");
    dataset_free(&b);
    dataset_free(&a);

    // An empty dataset is a valid file.
    dataset e;
    make_dataset(&e, 0, 4, 4, 0);
    path = tmp_path("empty.h5");
    EXPECT(dataset_write(path, &e) == 0, "%s", err_msg());
    EXPECT(dataset_read(path, &b) == 0 && b.n == 0 && b.height == 4, "%s", err_msg());
    dataset_free(&b);
    dataset_free(&e);
}

static void test_batches(void) {
    dataset all, part, b;
    make_dataset(&all, 7, 5, 4, 1);
    const char *path = tmp_path("batches.h5");
    dataset_writer w;
    EXPECT(dataset_writer_open(&w, path, &all) == 0, "%s", err_msg());
    int starts[] = {0, 3, 3, 7};  // batches of 3, 0 and 4 items
    for (int k = 0; k < 3; k++) {
        part = all;
        part.n = starts[k + 1] - starts[k];
        part.prompt += starts[k];
        part.skill += starts[k];
        part.scene += starts[k];
        part.seed += starts[k];
        part.image += (size_t)starts[k] * 5 * 4 * 3;
        EXPECT(dataset_writer_append(&w, &part) == 0, "batch %d: %s", k, err_msg());
    }
    EXPECT(access(path, F_OK) != 0, "file visible before close");
    EXPECT(dataset_writer_close(&w) == 0, "%s", err_msg());
    EXPECT(dataset_read(path, &b) == 0, "%s", err_msg());
    expect_same(&all, &b, "batches");
    dataset_free(&b);

    // A batch of another image size is refused; abort leaves no file behind.
    const char *path2 = tmp_path("aborted.h5");
    EXPECT(dataset_writer_open(&w, path2, &all) == 0, "%s", err_msg());
    part = all;
    part.width = 5;
    EXPECT(dataset_writer_append(&w, &part) == -1 && strstr(err_msg(), "aborted.h5"), "%s", err_msg());
    part = all;
    part.skill[0] = 99;
    EXPECT(dataset_writer_append(&w, &part) == -1 && strstr(err_msg(), "/skill"), "%s", err_msg());
    dataset_writer_abort(&w);
    EXPECT(access(path2, F_OK) != 0 && access(w.tmp, F_OK) != 0, "aborted file exists");
    dataset_free(&all);
}

// ---- hand-made files, as another tool would write them

static hid_t put_strings(hid_t file, const char *name, int n, const char *const *s, int fixed) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate_simple(1, dims, NULL);
    char *buf = NULL;
    if (fixed) {
        H5Tset_size(t, 40);
        H5Tset_strpad(t, H5T_STR_NULLPAD);
        buf = calloc((size_t)n, 40);
        for (int i = 0; i < n; i++) memcpy(buf + 40 * i, s[i], strnlen(s[i], 40));
    } else {
        H5Tset_size(t, H5T_VARIABLE);
    }
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t ds = H5Dcreate2(file, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(ds >= 0);
    CHECK(H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed ? (const void *)buf : (const void *)s) >= 0);
    free(buf);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(t);
    return 0;
}

static void put_array(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims, hid_t dcpl) {
    size_t count = 1;
    for (int i = 0; i < rank; i++) count *= dims[i];
    void *zeros = calloc(count, 8);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CHECK(ds >= 0);
    CHECK(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
    free(zeros);
    H5Dclose(ds);
    H5Sclose(sp);
}

static void put_str_attr(hid_t file, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t a = H5Acreate2(file, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(H5Awrite(a, t, &value) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static const char *const two_prompts[] = {"a red circle", "two blue squares"};
static const hsize_t img2[4] = {2, 4, 4, 3};

static hid_t new_file(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    return f;
}

static void expect_read_fails(const char *path, const char *want1, const char *want2) {
    dataset d;
    err_clear();
    int rc = dataset_read(path, &d);
    EXPECT(rc == -1, "%s read", path);
    EXPECT(strstr(err_msg(), path) != NULL, "no file name in: %s", err_msg());
    EXPECT(strstr(err_msg(), want1) != NULL, "no '%s' in: %s", want1, err_msg());
    EXPECT(!want2 || strstr(err_msg(), want2) != NULL, "no '%s' in: %s", want2, err_msg());
    EXPECT(d.n == 0 && d.prompt == NULL && d.image == NULL, "dataset not emptied");
}

static void test_foreign_files(void) {
    // Fixed-length prompts, no /skill, /seed, /scene or attributes: all unknown.
    const char *path = tmp_path("minimal.h5");
    hid_t f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 1);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, H5P_DEFAULT);
    H5Fclose(f);
    dataset d;
    EXPECT(dataset_read(path, &d) == 0, "%s", err_msg());
    EXPECT(d.n == 2 && d.height == 4 && d.width == 4, "n %d", d.n);
    if (d.n == 2) {
        EXPECT(!strcmp(d.prompt[1], "two blue squares"), "prompt '%s'", d.prompt[1]);
        EXPECT(d.skill[0] == SKILL_UNKNOWN && d.skill[1] == SKILL_UNKNOWN, "skills %d %d", d.skill[0], d.skill[1]);
        EXPECT(d.seed[1] == 0 && d.scene == NULL && d.generator[0] == 0 && d.steps == 0, "defaults");
    }
    dataset_free(&d);

    // Skills as vlen strings; and as a root attribute.
    static const char *const skills[] = {"spatial", "count"};
    path = tmp_path("skill_strings.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    put_strings(f, "skill", 2, skills, 0);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, H5P_DEFAULT);
    H5Fclose(f);
    EXPECT(dataset_read(path, &d) == 0 && d.skill[0] == SKILL_SPATIAL && d.skill[1] == SKILL_COUNT, "%s", err_msg());
    dataset_free(&d);

    path = tmp_path("skill_attr.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, H5P_DEFAULT);
    put_str_attr(f, "skill", "binding");
    H5Fclose(f);
    EXPECT(dataset_read(path, &d) == 0 && d.skill[0] == SKILL_BINDING && d.skill[1] == SKILL_BINDING, "%s", err_msg());
    dataset_free(&d);
}

static void test_bad_files(void) {
    hid_t f;
    const char *path = tmp_path("no_image.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    H5Fclose(f);
    expect_read_fails(path, "/image: missing", NULL);

    path = tmp_path("no_prompt.h5");
    f = new_file(path);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/prompt: missing", NULL);

    path = tmp_path("rank3.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    put_array(f, "image", H5T_NATIVE_UINT8, 3, img2, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/image: has shape (2 x 4 x 4)", "expected N x H x W x 3");

    path = tmp_path("rgba.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, (hsize_t[]){2, 4, 4, 4}, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/image: has shape (2 x 4 x 4 x 4)", NULL);

    path = tmp_path("float_image.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    put_array(f, "image", H5T_NATIVE_FLOAT, 4, img2, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/image: holds float32 (expected uint8)", NULL);

    path = tmp_path("mismatch.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, (hsize_t[]){3, 4, 4, 3}, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/prompt: has 2 items but /image has 3", NULL);

    static const char *const bad_skills[] = {"count", "juggling"};
    path = tmp_path("bad_skill.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    put_strings(f, "skill", 2, bad_skills, 0);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/skill: item 1: unknown skill 'juggling'", "expected one of: count, spatial");

    path = tmp_path("prompt_ints.h5");
    f = new_file(path);
    put_array(f, "prompt", H5T_NATIVE_INT32, 1, img2, H5P_DEFAULT);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/prompt: holds int32 (expected strings)", NULL);

    // Data kept outside the file, or reached through a link, is refused.
    path = tmp_path("external.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(dcpl, tmp_path("external.raw"), 0, 2 * 4 * 4 * 3);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, dcpl);
    H5Pclose(dcpl);
    H5Fclose(f);
    expect_read_fails(path, "/image: uses external storage", NULL);

    path = tmp_path("softlink.h5");
    f = new_file(path);
    put_strings(f, "real_prompt", 2, two_prompts, 0);
    H5Lcreate_soft("/real_prompt", f, "prompt", H5P_DEFAULT, H5P_DEFAULT);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/prompt: is a soft link", NULL);

    path = tmp_path("extlink.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    H5Lcreate_external(tmp_path("minimal.h5"), "/image", f, "image", H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    expect_read_fails(path, "/image: is an external link", NULL);

    path = tmp_path("height_attr.h5");
    f = new_file(path);
    put_strings(f, "prompt", 2, two_prompts, 0);
    put_array(f, "image", H5T_NATIVE_UINT8, 4, img2, H5P_DEFAULT);
    put_str_attr(f, "height", "tall");
    H5Fclose(f);
    expect_read_fails(path, "attribute height: holds strings (expected a number)", NULL);

    // Truncated: the first half of a valid file.
    dataset a;
    make_dataset(&a, 6, 16, 16, 1);
    const char *good = tmp_path("good.h5");
    CHECK(dataset_write(good, &a) == 0);
    dataset_free(&a);
    char *bytes;
    size_t n;
    CHECK(file_read_all(good, &bytes, &n) == 0);
    path = tmp_path("truncated.h5");
    CHECK(atomic_write(path, bytes, n / 2) == 0);
    expect_read_fails(path, "truncated or corrupt", NULL);
    // Corrupt: the middle of the file overwritten.
    memset(bytes + n / 3, 0xA5, n / 3);
    path = tmp_path("corrupt.h5");
    CHECK(atomic_write(path, bytes, n) == 0);
    dataset d;
    EXPECT(dataset_read(path, &d) == -1 && strstr(err_msg(), "corrupt.h5"), "corrupt file: %s", err_msg());
    free(bytes);

    // Not HDF5 at all, and no file.
    uint8_t noise[4096];
    for (size_t i = 0; i < sizeof noise; i++) noise[i] = (uint8_t)(i * 2654435761u >> 13);
    path = tmp_path("noise.h5");
    CHECK(atomic_write(path, noise, sizeof noise) == 0);
    expect_read_fails(path, "not an HDF5 file", NULL);
    expect_read_fails(tmp_path("absent.h5"), "No such file", NULL);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/selma_test_dataset_XXXXXX");
    CHECK(mkdtemp(dir));
    test_round_trip();
    test_batches();
    test_foreign_files();
    test_bad_files();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_dataset");
}
