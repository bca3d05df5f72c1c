// The CLIP BPE tokenizer: ids equal transformers' CLIPTokenizer on every string of
// tests/fixtures/clip_tokenizer_ids.json (made by tools/make_clip_tokenizer_fixture.py)
// for an SD 1.x-style folder (pads with <|endoftext|>) and an SD 2.x-style one (pads
// with "!"); malformed folders are rejected with the file and line or key named;
// invalid UTF-8 and odd arguments do not crash.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/bundle.h"
#include "models/clip_tokenizer.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "tests/check.h"

#define FIXTURES "tests/fixtures/"

static void test_parity(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, FIXTURES "clip_tokenizer_%s", name);
    clip_tokenizer t;
    if (clip_tokenizer_load(&t, dir)) {
        EXPECT(0, "load %s: %s", dir, err_msg());
        return;
    }
    char *text;
    size_t len;
    EXPECT_TRUE(file_read_all(FIXTURES "clip_tokenizer_ids.json", &text, &len) == 0);
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *strings = cJSON_GetObjectItem(j, "strings"), *want = cJSON_GetObjectItem(j, name);
    int T = cJSON_GetObjectItem(j, "max_length")->valueint, n = cJSON_GetArraySize(strings);
    EXPECT(T == t.model_max_length && n == cJSON_GetArraySize(want) && n > 20, "%s: fixture shape", name);
    int *ids = malloc((size_t)T * sizeof *ids), mismatched = 0;
    for (int i = 0; i < n; i++) {
        const char *s = cJSON_GetArrayItem(strings, i)->valuestring;
        const cJSON *w = cJSON_GetArrayItem(want, i);
        int dropped, len_ = clip_tokenizer_encode(&t, s, 0, ids, &dropped), bad = -1;
        for (int k = 0; k < T && bad < 0; k++)
            if (ids[k] != cJSON_GetArrayItem(w, k)->valueint) bad = k;
        if (bad >= 0 || len_ < 2) {
            mismatched++;
            EXPECT(0, "%s string %d \"%.40s\": token %d is %d \"%s\", transformers %d \"%s\"", name, i, s, bad,
                   bad >= 0 ? ids[bad] : -1, bad >= 0 ? clip_tokenizer_token(&t, ids[bad]) : "",
                   bad >= 0 ? cJSON_GetArrayItem(w, bad)->valueint : -1,
                   bad >= 0 ? clip_tokenizer_token(&t, cJSON_GetArrayItem(w, bad)->valueint) : "");
        }
    }
    printf("%s: %d strings, %d match transformers\n", name, n, n - mismatched);
    // bos/eos from the vocabulary, pad as the configs say.
    EXPECT(t.bos_id == clip_tokenizer_id(&t, "<|startoftext|>") && t.eos_id == clip_tokenizer_id(&t, "<|endoftext|>"),
           "%s: bos %d eos %d", name, t.bos_id, t.eos_id);
    EXPECT(t.pad_id == (strcmp(name, "sd2") ? t.eos_id : 0), "%s: pad %d", name, t.pad_id);
    // Truncation keeps eos last and counts what it cut; a short max_len.
    const char *cat = "a photo of a cat on a red sofa";
    int dropped, full = clip_tokenizer_encode(&t, cat, 0, ids, &dropped);
    // 9 words, "sofa" unmerged as s o f a</w>: 12 + bos + eos.
    EXPECT(full == 14 && dropped == 0, "%s: %d tokens, %d dropped", name, full, dropped);
    int got = clip_tokenizer_encode(&t, cat, 5, ids, &dropped);
    EXPECT(got == 5 && ids[0] == t.bos_id && ids[4] == t.eos_id && dropped == full - 5,
           "%s: max_len 5: %d, %d dropped", name, got, dropped);
    got = clip_tokenizer_encode(&t, "", 3, ids, NULL);
    EXPECT(got == 2 && ids[1] == t.eos_id && ids[2] == t.pad_id, "%s: empty", name);
    EXPECT(clip_tokenizer_encode(&t, "a", 1, ids, NULL) == -1 && strstr(err_msg(), "max_len"), "max_len 1");
    EXPECT(clip_tokenizer_encode(&t, NULL, 0, ids, NULL) == -1, "NULL text");
    free(ids);
    cJSON_Delete(j);
    clip_tokenizer_free(&t);
}

// Invalid UTF-8 never crashes: each maximal invalid subpart is U+FFFD.
static void test_invalid_utf8(void) {
    clip_tokenizer t;
    if (clip_tokenizer_load(&t, FIXTURES "clip_tokenizer_sd1")) return;
    int a[77], b[77];
    static const char *const bad[][2] = {
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},                 // a byte that never starts UTF-8
        {"caf\xc3", "caf\xef\xbf\xbd"},                      // truncated at the end
        {"x\xe6\x97y", "x\xef\xbf\xbdy"},                    // truncated 3-byte sequence
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},            // overlong '/'
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},  // a surrogate
        {"\xf4\x90\x80\x80!", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!"},  // > U+10FFFF
        {"\x80\x80 ok", "\xef\xbf\xbd\xef\xbf\xbd ok"},      // stray continuation bytes
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int na = clip_tokenizer_encode(&t, bad[i][0], 0, a, NULL);
        int nb = clip_tokenizer_encode(&t, bad[i][1], 0, b, NULL);
        EXPECT(na > 2 && na == nb && !memcmp(a, b, sizeof a), "invalid UTF-8 case %zu: %d vs %d ids", i, na, nb);
    }
    // Random bytes (fixed LCG): any length up to 77, eos at the end, no crash.
    uint32_t x = 12345;
    for (int i = 0; i < 3000; i++) {
        char s[96];
        int len = 1 + i % 95;
        for (int k = 0; k < len; k++) {
            x = x * 1664525u + 1013904223u;
            s[k] = (char)(1 + (x >> 24) % 255);
        }
        s[len] = 0;
        int n = clip_tokenizer_encode(&t, s, 0, a, NULL);
        EXPECT(n >= 2 && n <= 77 && a[n - 1] == t.eos_id, "random bytes %d: %d ids", i, n);
    }
    clip_tokenizer_free(&t);
}

static const char *tmpdir_path(void) {
    static char dir[128];
    snprintf(dir, sizeof dir, "/tmp/selma_clip_tok_%d", (int)getpid());
    return dir;
}

static void put(const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir_path(), name);
    EXPECT(atomic_write(path, text, strlen(text)) == 0, "write %s", path);
}

// A minimal valid folder ("a", "b", their "</w>" forms, "ab", specials), then one
// file at a time broken; the message must name the file and the line or key.
static void expect_rejected(const char *what, const char *file, const char *text, const char *needle) {
    static const char *vocab = "{\"a\": 0, \"b\": 1, \"a</w>\": 2, \"b</w>\": 3, \"ab\": 4, \"ab</w>\": 5,"
                               " \"<|startoftext|>\": 6, \"<|endoftext|>\": 7, \"!\": 8}";
    put("vocab.json", vocab);
    put("merges.txt", "#version: 0.2\na b\na b</w>\n");
    put("tokenizer_config.json", "{\"model_max_length\": 77, \"pad_token\": \"!\"}");
    if (file) put(file, text);
    clip_tokenizer t;
    int rc = clip_tokenizer_load(&t, tmpdir_path());
    if (!file) {
        EXPECT(rc == 0 && t.pad_id == 8 && t.bos_id == 6 && t.n_merges == 2, "%s: %s", what, err_msg());
        int ids[6];
        EXPECT(clip_tokenizer_encode(&t, "ab ba", 6, ids, NULL) == 5 && ids[1] == 5 && ids[2] == 1 && ids[3] == 2,
               "minimal folder: %d %d %d", ids[1], ids[2], ids[3]);
        clip_tokenizer_free(&t);
        return;
    }
    EXPECT(rc == -1 && strstr(err_msg(), file) && strstr(err_msg(), needle), "%s: '%s' lacks '%s'", what,
           err_msg(), needle);
    clip_tokenizer_free(&t);
}

static void test_malformed(void) {
    mkdir(tmpdir_path(), 0755);
    expect_rejected("valid", NULL, NULL, NULL);
    expect_rejected("vocab syntax", "vocab.json", "{\"a\": 0,\n\"b\": }", "vocab.json:2");
    expect_rejected("vocab not an object", "vocab.json", "[1, 2]", "not a JSON object");
    expect_rejected("vocab id type", "vocab.json", "{\"a\": \"zero\"}", "key \"a\"");
    expect_rejected("vocab negative id", "vocab.json", "{\"a\": -1}", "key \"a\"");
    expect_rejected("vocab shared id", "vocab.json", "{\"a\": 0, \"b\": 0}", "key \"b\"");
    expect_rejected("vocab repeated key", "vocab.json", "{\"a\": 0, \"a\": 1}", "appears twice");
    expect_rejected("merge unknown token", "merges.txt", "#version: 0.2\na b\nb c\n", "merges.txt:3");
    expect_rejected("merge result unknown", "merges.txt", "b a\n", "merges.txt:1: \"ba\"");
    expect_rejected("merge one token", "merges.txt", "#version: 0.2\na b\nab\n", "merges.txt:3");
    expect_rejected("merge three tokens", "merges.txt", "a b a\n", "merges.txt:1");
    expect_rejected("merge blank line", "merges.txt", "a b\n\na b</w>\n", "merges.txt:2");
    expect_rejected("merge double space", "merges.txt", "a  b\n", "merges.txt:1");
    expect_rejected("config syntax", "tokenizer_config.json", "{\n\n\"pad_token\": \"!\",,}", "tokenizer_config.json:3");
    expect_rejected("pad not in vocab", "tokenizer_config.json", "{\"pad_token\": \"<pad>\"}", "\"pad_token\"");
    expect_rejected("bos not a string", "tokenizer_config.json", "{\"bos_token\": 3}", "\"bos_token\"");
    expect_rejected("max length", "tokenizer_config.json", "{\"model_max_length\": 1}", "model_max_length");
    expect_rejected("map overrides", "special_tokens_map.json", "{\"eos_token\": {\"content\": \"<eos>\"}}",
                    "\"eos_token\"");
    char path[256];
    snprintf(path, sizeof path, "%s/special_tokens_map.json", tmpdir_path());
    unlink(path);
    // An empty merges.txt is valid (no merges); a missing one is not.
    clip_tokenizer t;
    put("merges.txt", "");
    EXPECT(clip_tokenizer_load(&t, tmpdir_path()) == 0 && t.n_merges == 0, "empty merges: %s", err_msg());
    clip_tokenizer_free(&t);
    snprintf(path, sizeof path, "%s/merges.txt", tmpdir_path());
    unlink(path);
    EXPECT(clip_tokenizer_load(&t, tmpdir_path()) == -1 && strstr(err_msg(), "merges.txt"), "missing: %s", err_msg());
    for (const char *f = "vocab.json\0tokenizer_config.json\0"; *f; f += strlen(f) + 1) {
        snprintf(path, sizeof path, "%s/%s", tmpdir_path(), f);
        unlink(path);
    }
    rmdir(tmpdir_path());
}

// The t2i glue: world "sd" tokenizes with the model's CLIP tokenizer, and the pooled
// embedding is taken at its eos.
static void test_t2i_hook(void) {
    t2i_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.cfg.world, sizeof m.cfg.world, "sd");
    m.cfg.te.max_tokens = 77;
    m.cfg.te.width = 1;
    const char *prompts[2] = {"a photo of a cat", NULL};
    int ids[2 * 77], want[77];
    EXPECT(t2i_tokenize(&m, prompts, 2, ids) == -1 && strstr(err_msg(), "not loaded"), "unloaded: %s", err_msg());
    if (clip_tokenizer_load(&m.clip, FIXTURES "clip_tokenizer_sd2")) return;
    EXPECT(t2i_tokenize(&m, prompts, 2, ids) == 0, "%s", err_msg());
    int n = clip_tokenizer_encode(&m.clip, prompts[0], 77, want, NULL);
    EXPECT(!memcmp(ids, want, sizeof want) && ids[77] == m.clip.bos_id && ids[78] == m.clip.eos_id, "t2i ids");
    float ctx[2 * 77], pooled[2];
    for (int i = 0; i < 2 * 77; i++) ctx[i] = (float)i;
    t2i_pool(&m, ids, ctx, 2, pooled);
    EXPECT(pooled[0] == (float)(n - 1) && pooled[1] == 78.0f, "pooled at eos: %g %g", pooled[0], pooled[1]);
    t2i_free(&m);
}

int main(void) {
    test_parity("sd1");
    test_parity("sd2");
    test_invalid_utf8();
    test_malformed();
    test_t2i_hook();
    return check_report("test_clip_tokenizer");
}
