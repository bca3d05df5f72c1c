// safetensors: round trips of every dtype, byte-exact agreement with the reference
// writer's test vectors, writer errors, and a corpus of malformed files that must
// each be refused with a message naming the file and the problem.
//
// The corpus also lives in tests/fixtures/safetensors_bad/ (the fuzzer's seeds, with
// one valid file in tests/fixtures/safetensors_good/). `test_safetensors
// --write-fixtures` (from the source root) regenerates them; a normal run checks
// that the committed files still equal what this file generates.
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/safetensors.h"
#include "tests/check.h"

static char tmpdir[64];

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

// ---- round trip -----------------------------------------------------------------

typedef struct rt_case {
    const char *name;
    st_dtype dt;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} rt_case;

static const rt_case rt_cases[] = {
    {"f32.matrix", ST_F32, 2, {2, 3}},
    {"bf16.vec", ST_BF16, 1, {5}},
    {"f16.4d", ST_F16, 4, {1, 2, 3, 2}},
    {"i32.scalar", ST_I32, 0, {0}},
    {"u8.empty", ST_U8, 2, {0, 5}},
    {"u8.odd", ST_U8, 1, {3}},  // odd length: would misalign what follows without sorting
    {"f64.vec", ST_F64, 1, {3}},
    {"i64.vec", ST_I64, 1, {2}},
    {"i8.vec", ST_I8, 1, {4}},
    {"bool.vec", ST_BOOL, 1, {3}},
    {"u16.mat", ST_U16, 2, {2, 2}},
    {"f8e4m3", ST_F8_E4M3, 1, {4}},
    {"f8e5m2", ST_F8_E5M2, 1, {2}},
    {"f32.8d", ST_F32, 8, {1, 1, 1, 1, 1, 1, 2, 1}},
    {"zero.4d", ST_F32, 4, {3, 0, 2, 2}},
    {"name with \"quotes\" \\ and ünïcode", ST_U32, 1, {1}},
};
#define N_RT (sizeof rt_cases / sizeof rt_cases[0])

// Byte i of tensor k: distinct per tensor so a mixed-up offset shows.
static uint8_t rt_byte(size_t k, size_t i) { return (uint8_t)(k * 37 + i * 11 + 1); }

static void test_round_trip(void) {
    static uint8_t bufs[N_RT][64];
    st_writer w;
    st_writer_init(&w);
    for (size_t k = 0; k < N_RT; k++) {
        for (size_t i = 0; i < sizeof bufs[k]; i++) bufs[k][i] = rt_byte(k, i);
        EXPECT(st_writer_add(&w, rt_cases[k].name, rt_cases[k].dt, rt_cases[k].ndim, rt_cases[k].shape,
                             bufs[k]) == 0, "%s", err_msg());
    }
    // Known values for the conversions.
    float f32v[6] = {1.5f, -2.25f, 0, 3e-8f, 65504, -1e30f};
    uint16_t bf16v[5];
    for (int i = 0; i < 5; i++) bf16v[i] = f32_to_bf16((float)i - 2.5f);
    double f64v[3] = {0.1, -7, 1e300};
    int64_t i64v[2] = {-5, 1ll << 40};
    uint8_t e4m3[4] = {0x38, 0x7e, 0x01, 0xb8};  // 1, 448, 2^-9, -1
    uint8_t e5m2[2] = {0x3c, 0xc0};              // 1, -2
    int64_t one = 1;
    EXPECT_TRUE(st_writer_add(&w, "conv.f32", ST_F32, 1, (int64_t[]){6}, f32v) == 0);
    EXPECT_TRUE(st_writer_add(&w, "conv.bf16", ST_BF16, 1, (int64_t[]){5}, bf16v) == 0);
    EXPECT_TRUE(st_writer_add(&w, "conv.f64", ST_F64, 1, (int64_t[]){3}, f64v) == 0);
    EXPECT_TRUE(st_writer_add(&w, "conv.i64", ST_I64, 1, (int64_t[]){2}, i64v) == 0);
    EXPECT_TRUE(st_writer_add(&w, "conv.e4m3", ST_F8_E4M3, 1, (int64_t[]){4}, e4m3) == 0);
    EXPECT_TRUE(st_writer_add(&w, "conv.e5m2", ST_F8_E5M2, 1, (int64_t[]){2}, e5m2) == 0);
    EXPECT_TRUE(st_writer_set_meta(&w, "format", "pt") == 0);
    EXPECT_TRUE(st_writer_set_meta(&w, "config", "{\"rank\": 4, \"alpha\": \"4\"}\n\tünï") == 0);

    // Writer refusals.
    EXPECT_TRUE(st_writer_add(&w, "f32.matrix", ST_F32, 1, &one, f32v) == -1 && strstr(err_msg(), "duplicate"));
    EXPECT_TRUE(st_writer_add(&w, "__metadata__", ST_F32, 1, &one, f32v) == -1);
    EXPECT_TRUE(st_writer_add(&w, "neg", ST_F32, 1, (int64_t[]){-1}, f32v) == -1);
    EXPECT_TRUE(st_writer_add(&w, "bad\xff", ST_F32, 1, &one, f32v) == -1 && strstr(err_msg(), "UTF-8"));
    EXPECT_TRUE(st_writer_add(&w, "nodata", ST_F32, 1, &one, NULL) == -1);
    EXPECT_TRUE(st_writer_set_meta(&w, "format", "again") == -1 && strstr(err_msg(), "duplicate"));

    char path[128];
    tmp_path(path, sizeof path, "rt.safetensors");
    EXPECT(st_writer_save(&w, path) == 0, "%s", err_msg());
    st_writer_free(&w);

    st_file f;
    if (st_open(path, &f) != 0) { EXPECT(0, "%s", err_msg()); return; }
    EXPECT_TRUE(f.n_tensors == N_RT + 6);
    EXPECT_TRUE(f.header_len % 8 == 0);
    EXPECT_TRUE(f.n_meta == 2 && !strcmp(st_meta_get(&f, "format"), "pt"));
    EXPECT_TRUE(!strcmp(st_meta_get(&f, "config"), "{\"rank\": 4, \"alpha\": \"4\"}\n\tünï"));
    EXPECT_TRUE(st_meta_get(&f, "absent") == NULL && st_find(&f, "absent") == NULL);
    for (size_t i = 1; i < f.n_tensors; i++)  // largest elements first
        EXPECT_TRUE(st_dtype_size(f.tensors[i - 1].dtype) >= st_dtype_size(f.tensors[i].dtype));
    for (size_t k = 0; k < N_RT; k++) {
        const rt_case *c = &rt_cases[k];
        const st_tensor *t = st_find(&f, c->name);
        if (!t) { EXPECT(0, "tensor %s missing", c->name); continue; }
        EXPECT(t->dtype == c->dt && t->ndim == c->ndim, "%s", c->name);
        int64_t numel = 1;
        for (int d = 0; d < c->ndim; d++) { EXPECT_TRUE(t->shape[d] == c->shape[d]); numel *= c->shape[d]; }
        EXPECT(t->nbytes == (uint64_t)numel * st_dtype_size(c->dt), "%s", c->name);
        EXPECT(memcmp(t->data, bufs[k], t->nbytes) == 0, "%s: data differs", c->name);
        EXPECT((uintptr_t)t->data % st_dtype_size(t->dtype) == 0, "%s: unaligned", c->name);
        tensor v;
        dtype rd;
        int runtime = st_dtype_to_runtime(c->dt, &rd) == 0 && c->ndim <= TENSOR_MAX_DIMS;
        EXPECT(st_tensor_view(&f, t, &v) == (runtime ? 0 : -1), "%s", c->name);
        if (runtime) EXPECT_TRUE(v.data == t->data && v.dtype == rd && tensor_numel(&v) == numel);
        else EXPECT(strstr(err_msg(), c->name) && strstr(err_msg(), path), "%s", err_msg());
    }
    float out[8];
    const st_tensor *t = st_find(&f, "conv.f32");
    EXPECT_TRUE(t && st_tensor_to_f32(&f, t, out, 6) == 0 && memcmp(out, f32v, sizeof f32v) == 0);
    EXPECT_TRUE(t && st_tensor_to_f32(&f, t, out, 5) == -1 && strstr(err_msg(), "conv.f32"));
    t = st_find(&f, "conv.bf16");
    EXPECT_TRUE(t && st_tensor_to_f32(&f, t, out, 5) == 0);
    for (int i = 0; i < 5; i++) EXPECT_TRUE(out[i] == (float)i - 2.5f);
    t = st_find(&f, "conv.f64");
    EXPECT_TRUE(t && st_tensor_to_f32(&f, t, out, 3) == 0 && out[0] == 0.1f && out[1] == -7 && isinf(out[2]));
    t = st_find(&f, "conv.i64");
    EXPECT_TRUE(t && st_tensor_to_f32(&f, t, out, 2) == 0 && out[0] == -5 && out[1] == 0x1p40f);
    t = st_find(&f, "conv.e4m3");
    EXPECT_TRUE(t && st_tensor_to_f32(&f, t, out, 4) == 0 && out[0] == 1 && out[1] == 448 &&
                out[2] == 0x1p-9f && out[3] == -1);
    t = st_find(&f, "conv.e5m2");
    EXPECT_TRUE(t && st_tensor_to_f32(&f, t, out, 2) == 0 && out[0] == 1 && out[1] == -2);
    t = st_find(&f, "bool.vec");
    EXPECT_TRUE(t && st_tensor_to_f32(&f, t, out, 3) == 0 && out[0] == 1 && out[2] == 1);
    st_close(&f);
    unlink(path);
}

// The byte strings the reference writer's own tests expect (safetensors/src/tensor.rs:
// test_serialization, test_empty): the same JSON layout and the same space padding.
static void test_reference_bytes(void) {
    static const struct { const char *header; int meta, tensor; } refs[] = {
        {"{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", 0, 1},
        {"{}      ", 0, 0},
        {"{\"__metadata__\":{\"framework\":\"pt\"}}     ", 1, 0},
    };
    float v[6] = {0, 1, 2, 3, 4, 5};
    for (size_t r = 0; r < 3; r++) {
        st_writer w;
        st_writer_init(&w);
        if (refs[r].tensor) st_writer_add(&w, "attn.0", ST_F32, 3, (int64_t[]){1, 2, 3}, v);
        if (refs[r].meta) st_writer_set_meta(&w, "framework", "pt");
        char path[128];
        tmp_path(path, sizeof path, "ref.safetensors");
        EXPECT(st_writer_save(&w, path) == 0, "%s", err_msg());
        st_writer_free(&w);
        char *got;
        size_t n;
        if (file_read_all(path, &got, &n) != 0) { EXPECT(0, "%s", err_msg()); continue; }
        size_t hl = strlen(refs[r].header), want = 8 + hl + (refs[r].tensor ? 24 : 0);
        EXPECT(n == want && (uint8_t)got[0] == hl && memcmp(got + 8, refs[r].header, hl) == 0 &&
               (!refs[r].tensor || memcmp(got + 8 + hl, v, 24) == 0), "reference vector %zu", r);
        free(got);
        unlink(path);
    }
}

// ---- malformed corpus -------------------------------------------------------------

typedef struct bad_case {
    const char *name;
    const char *header;  // bytes after the length field
    long long n;         // declared header length; -1: strlen(header)
    size_t data_len;     // data bytes after the header
    long long cut;       // truncate the file to this many bytes; -1: no
    const char *expect;  // substring of the message
} bad_case;

#define T1(dt, shape, off) "{\"a\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}}"
#define E(dt, shape, off) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"

static const bad_case bad_cases[] = {
    {"empty_file", "", -1, 0, 0, "truncated"},
    {"short_file", "{}", -1, 0, 5, "truncated"},
    {"header_cut", T1("F32", "[1]", "[0,4]"), -1, 4, 30, "past the end"},
    {"header_len_past_eof", "{}", 100, 0, -1, "past the end"},
    {"header_len_over_cap", "{}", 100000001, 0, -1, "too large"},
    {"header_len_max", "{}", -2, 0, -1, "too large"},
    {"data_cut", T1("F32", "[2,3]", "[0,24]"), -1, 10, -1, "truncated"},
    {"no_brace", "[{\"a\":1}]", -1, 0, -1, "start with '{'"},
    {"leading_space", " {}", -1, 0, -1, "start with '{'"},
    {"bad_json", "{\"a\":{\"dtype\":\"F32\",", -1, 0, -1, "not valid JSON"},
    {"trailing_bytes", "{} x", -1, 0, -1, "not valid JSON"},
    {"deep_nesting", NULL, -1, 0, -1, "not valid JSON"},
    {"utf8_ff", T1("F32", "[1]", "[0,4]") "\xff", -1, 4, -1, "UTF-8"},
    {"utf8_overlong2", "{\"\xc0\xaf\":" E("U8", "[1]", "[0,1]") "}", -1, 1, -1, "UTF-8"},
    {"utf8_overlong3", "{\"\xe0\x80\xaf\":" E("U8", "[1]", "[0,1]") "}", -1, 1, -1, "UTF-8"},
    {"utf8_surrogate", "{\"\xed\xa0\x80\":" E("U8", "[1]", "[0,1]") "}", -1, 1, -1, "UTF-8"},
    {"utf8_above_max", "{\"\xf4\x90\x80\x80\":" E("U8", "[1]", "[0,1]") "}", -1, 1, -1, "UTF-8"},
    {"utf8_cut", "{\"\xe2\x82\":" E("U8", "[1]", "[0,1]") "}", -1, 1, -1, "UTF-8"},
    {"control_char", "{\"a\x01\":" E("U8", "[1]", "[0,1]") "}", -1, 1, -1, "control character"},
    {"control_outside", "{\x01\"a\":" E("U8", "[1]", "[0,1]") "}", -1, 1, -1, "control character"},
    {"nul_escape", "{\"a\\u0000b\":" E("U8", "[1]", "[0,1]") "}", -1, 1, -1, "\\u0000"},
    {"duplicate_name", "{\"a\":" E("U8", "[1]", "[0,1]") ",\"a\":" E("U8", "[1]", "[1,2]") "}", -1, 2, -1,
     "duplicate tensor name 'a'"},
    {"duplicate_metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", -1, 0, -1, "duplicate __metadata__"},
    {"duplicate_meta_key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", -1, 0, -1, "duplicate key 'k'"},
    {"duplicate_field", "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", -1, 1,
     -1, "duplicate field 'dtype'"},
    {"overlap", "{\"a\":" E("F32", "[2]", "[0,8]") ",\"b\":" E("F32", "[2]", "[4,12]") "}", -1, 12, -1,
     "overlap"},
    {"gap", "{\"a\":" E("F32", "[1]", "[0,4]") ",\"b\":" E("F32", "[1]", "[8,12]") "}", -1, 12, -1, "gap"},
    {"reversed", T1("F32", "[1]", "[8,4]"), -1, 8, -1, "reversed"},
    {"not_at_zero", T1("F32", "[1]", "[4,8]"), -1, 8, -1, "start at offset 0"},
    {"extra_bytes", T1("F32", "[1]", "[0,4]"), -1, 8, -1, "extra bytes"},
    {"numel_overflow", T1("F32", "[4294967296,4294967296,2]", "[0,0]"), -1, 0, -1, "element count overflows"},
    {"nbytes_overflow", T1("F32", "[2147483648,2147483648]", "[0,0]"), -1, 0, -1, "byte count overflows"},
    {"nbytes_mismatch", T1("F32", "[2]", "[0,4]"), -1, 4, -1, "span 4 bytes"},
    {"unknown_dtype", T1("F128", "[1]", "[0,16]"), -1, 16, -1, "unknown dtype 'F128'"},
    {"dtype_not_string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4, -1,
     "dtype is not a string"},
    {"negative_shape", T1("F32", "[-1]", "[0,4]"), -1, 4, -1, "negative"},
    {"negative_zero_shape", T1("F32", "[-0]", "[0,0]"), -1, 0, -1, "negative"},
    {"fractional_shape", T1("F32", "[1.5]", "[0,4]"), -1, 4, -1, "not an integer"},
    {"float_form_shape", T1("F32", "[1.0]", "[0,4]"), -1, 4, -1, "not an integer"},
    {"exponent_shape", T1("F32", "[1e0]", "[0,4]"), -1, 4, -1, "not an integer"},
    {"leading_zero_shape", T1("F32", "[01]", "[0,4]"), -1, 4, -1, "leading zero"},
    {"string_shape", T1("F32", "[\"1\"]", "[0,4]"), -1, 4, -1, "not a number"},
    {"shape_not_array", T1("F32", "1", "[0,4]"), -1, 4, -1, "shape is not an array"},
    {"too_many_dims", T1("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), -1, 4, -1, "more than 8"},
    {"huge_dim", T1("U8", "[9007199254740993,0]", "[0,0]"), -1, 0, -1, "too large"},
    {"negative_offset", T1("F32", "[1]", "[-4,0]"), -1, 0, -1, "negative"},
    {"offsets_not_pair", T1("F32", "[1]", "[0]"), -1, 4, -1, "pair"},
    {"metadata_not_string", "{\"__metadata__\":{\"k\":1}}", -1, 0, -1, "value is not a string"},
    {"metadata_not_object", "{\"__metadata__\":\"x\"}", -1, 0, -1, "__metadata__ is not an object"},
    {"extra_field", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"foo\":1}}", -1, 1, -1,
     "unknown field 'foo'"},
    {"missing_field", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", -1, 1, -1, "missing field 'data_offsets'"},
    {"entry_not_object", "{\"a\":3}", -1, 0, -1, "entry is not an object"},
};
#define N_BAD (sizeof bad_cases / sizeof bad_cases[0])

// The file's bytes; the caller frees.
static uint8_t *bad_bytes(const bad_case *c, size_t *len) {
    char deep[3100];
    const char *h = c->header;
    if (!h) {  // past cJSON's nesting limit (1000)
        size_t k = (size_t)snprintf(deep, sizeof deep, "{\"__metadata__\":");
        for (int i = 0; i < 1500; i++) deep[k++] = '[';
        for (int i = 0; i < 1500; i++) deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = 0;
        h = deep;
    }
    size_t hl = strlen(h);
    uint64_t n = c->n == -1 ? hl : c->n == -2 ? UINT64_MAX : (uint64_t)c->n;
    *len = 8 + hl + c->data_len;
    uint8_t *b = malloc(*len);
    CHECK(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    memcpy(b + 8, h, hl);
    for (size_t i = 0; i < c->data_len; i++) b[8 + hl + i] = (uint8_t)(0x40 + i);
    if (c->cut >= 0 && (size_t)c->cut < *len) *len = (size_t)c->cut;
    return b;
}

static void test_bad_corpus(void) {
    const char *dir = "tests/fixtures/safetensors_bad";
    for (size_t k = 0; k < N_BAD; k++) {
        const bad_case *c = &bad_cases[k];
        size_t len;
        uint8_t *b = bad_bytes(c, &len);
        st_file f;
        err_clear();
        EXPECT(st_parse(b, len, c->name, &f) == -1, "%s: accepted", c->name);
        EXPECT(strstr(err_msg(), c->expect) && !strncmp(err_msg(), c->name, strlen(c->name)),
               "%s: message '%s' lacks '%s'", c->name, err_msg(), c->expect);
        EXPECT_TRUE(f.n_tensors == 0 && f.tensors == NULL && f.name == NULL);  // nothing left to leak
        st_close(&f);

        // The committed seed must equal the generated bytes and fail the same way from disk.
        char path[256];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, c->name);
        char *disk;
        size_t n;
        if (file_read_all(path, &disk, &n) != 0) {
            EXPECT(0, "%s (regenerate with test_safetensors --write-fixtures)", err_msg());
        } else {
            EXPECT(n == len && memcmp(disk, b, len) == 0, "%s differs from the generated bytes", path);
            free(disk);
            EXPECT(st_open(path, &f) == -1 && strstr(err_msg(), path) && strstr(err_msg(), c->expect),
                   "%s: '%s'", path, err_msg());
        }
        free(b);
    }
}

// One small valid file as a fuzzing seed: what the round trip writes, minus oddities.
static int good_write(const char *path) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3f80, 0x4000, 0xc040};
    uint8_t c[3] = {7, 8, 9};
    st_writer w;
    st_writer_init(&w);
    st_writer_add(&w, "unet.down.0.to_q.lora_A.weight", ST_F32, 2, (int64_t[]){2, 3}, a);
    st_writer_add(&w, "unet.down.0.to_q.lora_B.weight", ST_BF16, 2, (int64_t[]){3, 1}, b);
    st_writer_add(&w, "labels", ST_U8, 1, (int64_t[]){3}, c);
    st_writer_add(&w, "scalar", ST_I32, 0, NULL, (int32_t[]){42});
    st_writer_set_meta(&w, "rank", "1");
    int rc = st_writer_save(&w, path);
    st_writer_free(&w);
    return rc;
}

static void test_good_fixture(void) {
    const char *path = "tests/fixtures/safetensors_good/lora_small.safetensors";
    char tmp[128];
    tmp_path(tmp, sizeof tmp, "good.safetensors");
    char *x, *y;
    size_t nx, ny;
    EXPECT_TRUE(good_write(tmp) == 0);
    if (file_read_all(path, &x, &nx) != 0) { EXPECT(0, "%s", err_msg()); return; }
    if (file_read_all(tmp, &y, &ny) == 0) {
        EXPECT(nx == ny && memcmp(x, y, nx) == 0, "%s differs from what the writer makes", path);
        free(y);
    }
    free(x);
    unlink(tmp);
    st_file f;
    EXPECT(st_open(path, &f) == 0, "%s", err_msg());
    EXPECT_TRUE(f.n_tensors == 4 && st_find(&f, "scalar") && *(const int32_t *)st_find(&f, "scalar")->data == 42);
    st_close(&f);
    EXPECT_TRUE(st_open(tmpdir, &f) == -1 && strstr(err_msg(), "not a regular file"));
    EXPECT_TRUE(st_open("tests/fixtures/no/such.safetensors", &f) == -1 && strstr(err_msg(), "no/such"));
}

static int write_fixtures(void) {
    const char *bad = "tests/fixtures/safetensors_bad", *good = "tests/fixtures/safetensors_good";
    if (mkdir_p(bad) != 0 || mkdir_p(good) != 0) { fprintf(stderr, "%s\n", err_msg()); return 1; }
    for (size_t k = 0; k < N_BAD; k++) {
        char path[256];
        size_t len;
        uint8_t *b = bad_bytes(&bad_cases[k], &len);
        snprintf(path, sizeof path, "%s/%s.safetensors", bad, bad_cases[k].name);
        int rc = atomic_write(path, b, len);
        free(b);
        if (rc != 0) { fprintf(stderr, "%s\n", err_msg()); return 1; }
    }
    if (good_write("tests/fixtures/safetensors_good/lora_small.safetensors") != 0) {
        fprintf(stderr, "%s\n", err_msg());
        return 1;
    }
    printf("wrote %zu bad files and 1 good file\n", N_BAD);
    return 0;
}

// Regression for the fuzzer's first find (tests/fuzz/corpus/safetensors/
// crash-numel-overflow.safetensors): a zero-element tensor whose leading dimensions
// multiply past 2^63 is valid, and counting its elements must not overflow (UBSan
// traps a signed overflow in the sanitizer pass).
static void test_zero_element_huge_dims(void) {
    static const char hdr[] =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,4294967296,0],\"data_offsets\":[0,0]}}";
    uint8_t buf[8 + sizeof hdr - 1];
    uint64_t n = sizeof hdr - 1;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, hdr, n);
    st_file f;
    EXPECT(st_parse(buf, sizeof buf, "zero-element", &f) == 0, "%s", err_msg());
    if (f.n_tensors == 1) EXPECT_TRUE(st_tensor_numel(&f.tensors[0]) == 0);
    st_close(&f);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--write-fixtures")) return write_fixtures();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/selma-st-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    test_round_trip();
    test_reference_bytes();
    test_bad_corpus();
    test_good_fixture();
    test_zero_element_huge_dims();
    rmdir(tmpdir);
    return check_report("test_safetensors");
}
