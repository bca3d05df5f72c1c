// INI configs: every field type loads, every kind of bad input is rejected with
// FILE:LINE and the key, overrides, and the write/load round trip.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/config.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "tests/check.h"

typedef struct test_cfg {
    char name[256];
    int seed;
    int64_t big;
    int sampler;
    int ema;
    float lr;
    double beta;
    int steps;
    float lrs[4];
    int n_lrs;
    int ranks[3];
    int n_ranks;
} test_cfg;

static const char *const samplers[] = {"ddim", "euler"};

static const cfg_field fields[] = {
    CFG_STRING(test_cfg, "model", "name", name, "model name"),
    CFG_INT(test_cfg, "model", "seed", seed, -1000, 1000000, "random seed"),
    CFG_INT64(test_cfg, "model", "big", big, -9e18, 9e18, "a large count"),
    CFG_ENUM(test_cfg, "model", "sampler", sampler, samplers, "sampler"),
    CFG_BOOL(test_cfg, "train", "ema", ema, "sample with EMA weights"),
    CFG_FLOAT(test_cfg, "train", "lr", lr, 0, 1, "learning rate"),
    CFG_DOUBLE(test_cfg, "train", "beta", beta, -HUGE_VAL, HUGE_VAL, "any number"),
    CFG_INT(test_cfg, "train", "steps", steps, 1, 100000, "optimizer steps"),
    CFG_FLOAT_LIST(test_cfg, "train", "lrs", lrs, n_lrs, 0, 1, "learning rates to try"),
    CFG_INT_LIST(test_cfg, "train", "ranks", ranks, n_ranks, 1, 1024, "LoRA ranks"),
};
static const int n_fields = sizeof fields / sizeof fields[0];

static char dir[64];

static void defaults(test_cfg *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "tiny");
    c->seed = 1;
    c->steps = 10;
    c->lr = 0.5f;
}

static const char *write_tmp(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(atomic_write(path, text, strlen(text)) == 0);
    return path;
}

// Loads `text` and expects failure with a message holding "<file>:<line>:" and `what`.
static void expect_bad(const char *name, const char *text, int line, const char *key, const char *what) {
    const char *path = write_tmp(name, text);
    test_cfg c;
    defaults(&c);
    err_clear();
    int rc = cfg_load(path, fields, n_fields, &c);
    char where[320];
    snprintf(where, sizeof where, "%s:%d:", path, line);
    EXPECT(rc == -1, "%s: loaded", name);
    EXPECT(strstr(err_msg(), where) != NULL, "%s: no '%s' in: %s", name, where, err_msg());
    EXPECT(!key || strstr(err_msg(), key), "%s: no key '%s' in: %s", name, key, err_msg());
    EXPECT(strstr(err_msg(), what) != NULL, "%s: no '%s' in: %s", name, what, err_msg());
}

static void test_load_good(void) {
    const char *path = write_tmp("good.ini",
        "\xEF\xBB\xBF# a comment\n"
        "; another comment\n"
        "[model]\n"
        "name = sd 1.5 \xC3\xA9t\xC3\xA9   ; inline comment\n"
        "seed=-7\n"
        "  big = 8000000000\n"
        "sampler = euler\n"
        "\n"
        "[train]\r\n"
        "ema = yes\n"
        "lr = 3e-4\n"
        "beta = -2.5e300\n"
        "steps : 5000\n"
        "lrs = 1e-4, 3e-4 ,1e-3\n"
        "ranks = 4,128\n");
    test_cfg c;
    defaults(&c);
    int rc = cfg_load(path, fields, n_fields, &c);
    EXPECT(rc == 0, "%s", err_msg());
    EXPECT(!strcmp(c.name, "sd 1.5 \xC3\xA9t\xC3\xA9"), "name '%s'", c.name);
    EXPECT_TRUE(c.seed == -7);
    EXPECT_TRUE(c.big == 8000000000LL);
    EXPECT_TRUE(c.sampler == 1);
    EXPECT_TRUE(c.ema == 1);
    EXPECT_TRUE(c.lr == 3e-4f);
    EXPECT_TRUE(c.beta == -2.5e300);
    EXPECT_TRUE(c.steps == 5000);
    EXPECT(c.n_lrs == 3 && c.lrs[0] == 1e-4f && c.lrs[1] == 3e-4f && c.lrs[2] == 1e-3f, "lrs n %d", c.n_lrs);
    EXPECT(c.n_ranks == 2 && c.ranks[0] == 4 && c.ranks[1] == 128, "ranks n %d", c.n_ranks);

    // Keys not in the file keep their defaults.
    path = write_tmp("partial.ini", "[train]\nsteps = 3\n");
    defaults(&c);
    EXPECT(cfg_load(path, fields, n_fields, &c) == 0, "%s", err_msg());
    EXPECT_TRUE(c.steps == 3 && c.seed == 1 && c.lr == 0.5f && !strcmp(c.name, "tiny"));

    // Bools: every accepted spelling.
    const char *truths[] = {"true", "yes", "1", "TRUE", "Yes"}, *lies[] = {"false", "no", "0", "False"};
    for (int i = 0; i < 5; i++) {
        char text[64];
        snprintf(text, sizeof text, "[train]\nema = %s\n", truths[i]);
        defaults(&c);
        EXPECT(cfg_load(write_tmp("b.ini", text), fields, n_fields, &c) == 0 && c.ema == 1, "%s", truths[i]);
        if (i < 4) {
            snprintf(text, sizeof text, "[train]\nema = %s\n", lies[i]);
            c.ema = 1;
            EXPECT(cfg_load(write_tmp("b.ini", text), fields, n_fields, &c) == 0 && c.ema == 0, "%s", lies[i]);
        }
    }

    // The longest line inih accepts (198 characters) loads; a long comment is cut, not refused.
    char text[600] = "[model]\nname = ";
    size_t len = strlen(text);
    memset(text + len, 'x', 198 - 7);
    strcpy(text + len + 198 - 7, "\n# ");
    memset(text + strlen(text), 'c', 300);
    strcat(text, "\n");
    defaults(&c);
    EXPECT(cfg_load(write_tmp("long.ini", text), fields, n_fields, &c) == 0, "%s", err_msg());
    EXPECT(strlen(c.name) == 191, "name length %zu", strlen(c.name));
}

static void test_load_bad(void) {
    expect_bad("unknown_key.ini", "[train]\nsteps = 5\nlrr = 1\n", 3, "lrr", "unknown key (expected one of: ema, lr");
    expect_bad("unknown_section.ini", "[train]\nsteps=5\n\n[trian]\nlr=1\n", 4, "trian", "unknown section");
    expect_bad("empty_section.ini", "[train]\nsteps=5\n[extra]\n", 3, "extra", "unknown section");
    expect_bad("bad_int.ini", "[train]\n# c\nsteps = abc\n", 3, "steps", "'abc' is not an integer (expected an integer in [1, 100000])");
    expect_bad("frac_int.ini", "[train]\nsteps = 1.5\n", 2, "steps", "'1.5' is not an integer");
    expect_bad("hex_int.ini", "[train]\nsteps = 0x10\n", 2, "steps", "not an integer");
    expect_bad("range_int.ini", "[train]\nlr = 0.1\nsteps = 0\n", 3, "steps", "0 is out of range");
    expect_bad("range_int64.ini", "[model]\nbig = 99999999999999999999\n", 2, "big", "not an integer");
    expect_bad("bad_float.ini", "[train]\nlr = 3e-4x\n", 2, "lr", "'3e-4x' is not a finite number (expected a finite number in [0, 1])");
    expect_bad("nan_float.ini", "[train]\nbeta = nan\n", 2, "beta", "not a finite number (expected a finite number)");
    expect_bad("range_float.ini", "[train]\nlr = 1.5\n", 2, "lr", "out of range");
    expect_bad("empty_float.ini", "[train]\nlr =\n", 2, "lr", "'' is not a finite number");
    expect_bad("bad_bool.ini", "[train]\nema = maybe\n", 2, "ema", "'maybe' is not a boolean (expected true, false, yes, no, 1 or 0)");
    expect_bad("bad_enum.ini", "[model]\nsampler = heun\n", 2, "sampler", "'heun' is not a valid choice (expected one of: ddim, euler)");
    expect_bad("dup.ini", "[train]\nsteps = 5\nlr = 0.1\n[model]\nseed = 1\n[train]\nsteps = 6\n", 7, "steps",
               "duplicate key (first set on line 2)");
    expect_bad("no_section.ini", "# top\nsteps = 3\n[train]\n", 2, "steps", "key outside any section");
    expect_bad("syntax.ini", "[train]\nsteps = 3\njust words\n", 3, NULL, "syntax error");
    expect_bad("bracket.ini", "[train]\nsteps = 3\n[model\nseed = 1\n", 3, NULL, "syntax error");
    expect_bad("bad_list.ini", "[train]\nlrs = 1e-4, x\n", 2, "lrs", "value 2 'x' is not a finite number");
    expect_bad("long_list.ini", "[train]\nranks = 1,2,3,4\n", 2, "ranks", "more than 3 values");
    expect_bad("range_list.ini", "[train]\nranks = 1,2000\n", 2, "ranks", "value 2 (2000) is out of range");
    expect_bad("comma_list.ini", "[train]\nranks = 1,2,\n", 2, "ranks", "trailing comma");
    char long_line[256] = "[model]\nname = ";
    memset(long_line + strlen(long_line), 'a', 199 - 7);  // a 199-character line
    strcat(long_line, "\n");
    expect_bad("long_line.ini", long_line, 2, NULL, "line too long (199 characters; at most 198)");

    // A syntax error before a schema error is the one reported.
    expect_bad("first.ini", "[train]\nwords\nsteps = abc\n", 2, NULL, "syntax error");

    test_cfg c;
    defaults(&c);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.ini", dir);
    EXPECT(cfg_load(missing, fields, n_fields, &c) == -1, "missing file loaded");
    EXPECT(strstr(err_msg(), "missing.ini") && strstr(err_msg(), "No such file"), "%s", err_msg());
}

static void test_free_sections(void) {
    const char *path = write_tmp("sweep.ini",
        "[train]\nsteps = 4\n[sweep]\ntrain.lr = 1e-4, 3e-4\nmodel.seed = 1, 2, 3\n");
    const char *const free_sections[] = {"sweep", NULL};
    cfg_pairs pairs = {0};
    test_cfg c;
    defaults(&c);
    EXPECT(cfg_load_ex(path, fields, n_fields, &c, free_sections, &pairs) == 0, "%s", err_msg());
    EXPECT(pairs.n == 2, "pairs %d", pairs.n);
    if (pairs.n == 2) {
        EXPECT_TRUE(!strcmp(pairs.items[0].section, "sweep") && !strcmp(pairs.items[0].key, "train.lr"));
        EXPECT_TRUE(!strcmp(pairs.items[0].value, "1e-4, 3e-4") && pairs.items[0].line == 4);
        EXPECT_TRUE(!strcmp(pairs.items[1].key, "model.seed") && pairs.items[1].line == 5);
    }
    cfg_pairs_free(&pairs);
    // Without declaring it free, [sweep] is an unknown section.
    EXPECT(cfg_load(path, fields, n_fields, &c) == -1 && strstr(err_msg(), ":3: [sweep]: unknown section"),
           "%s", err_msg());
    path = write_tmp("sweep_dup.ini", "[sweep]\na = 1\nb = 2\na = 3\n");
    EXPECT(cfg_load_ex(path, fields, n_fields, &c, free_sections, &pairs) == -1, "duplicate accepted");
    EXPECT(strstr(err_msg(), "sweep_dup.ini:4: [sweep] a: duplicate key (first set on line 2)"), "%s", err_msg());
    cfg_pairs_free(&pairs);
}

static void test_overrides(void) {
    test_cfg c;
    defaults(&c);
    EXPECT(cfg_set(fields, n_fields, &c, "train.lr=0.25", "command line") == 0, "%s", err_msg());
    EXPECT(cfg_set(fields, n_fields, &c, " train.steps = 7 ", "command line") == 0, "%s", err_msg());
    EXPECT(cfg_set(fields, n_fields, &c, "model.sampler=euler", "command line") == 0, "%s", err_msg());
    EXPECT(cfg_set(fields, n_fields, &c, "train.ranks=8,16", "command line") == 0, "%s", err_msg());
    EXPECT(cfg_set(fields, n_fields, &c, "model.name=a=b", "command line") == 0, "%s", err_msg());
    EXPECT_TRUE(c.lr == 0.25f && c.steps == 7 && c.sampler == 1 && c.n_ranks == 2 && c.ranks[1] == 16);
    EXPECT(!strcmp(c.name, "a=b"), "name '%s'", c.name);

    struct { const char *text, *want; } bad[] = {
        {"train.lr=abc", "command line: [train] lr: 'abc' is not a finite number"},
        {"train.steps=100001", "command line: [train] steps: 100001 is out of range"},
        {"train.nokey=1", "command line: [train] nokey: unknown key"},
        {"nosection.x=1", "command line: [nosection] x: unknown section"},
        {"garbage", "command line: 'garbage': expected section.key=value"},
        {"train=1", "command line: 'train=1': expected section.key=value"},
        {"model.sampler=heun", "(expected one of: ddim, euler)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = cfg_set(fields, n_fields, &c, bad[i].text, "command line");
        EXPECT(rc == -1 && strstr(err_msg(), bad[i].want), "%s -> %s", bad[i].text, err_msg());
    }
    EXPECT_TRUE(c.lr == 0.25f && c.steps == 7);  // failed overrides change nothing
}

static void test_round_trip(void) {
    test_cfg a, b;
    memset(&a, 0, sizeof a);
    snprintf(a.name, sizeof a.name, "weird name: \xE2\x9C\x93 #1 [x] = y");
    a.seed = -999;
    a.big = -9000000000000000000LL;
    a.sampler = 1;
    a.ema = 1;
    a.lr = 0.1f;
    a.beta = 1.0 / 3.0;
    a.steps = 99999;
    a.lrs[0] = 1e-7f; a.lrs[1] = 0.3f; a.lrs[2] = 2.0f / 3.0f; a.n_lrs = 3;
    a.n_ranks = 0;
    char path[128];
    snprintf(path, sizeof path, "%s/resolved.ini", dir);
    EXPECT(cfg_write(path, fields, n_fields, &a) == 0, "%s", err_msg());
    defaults(&b);
    b.n_ranks = 2;  // the file's empty list must set the count to 0
    EXPECT(cfg_load(path, fields, n_fields, &b) == 0, "%s", err_msg());
    EXPECT(memcmp(&a, &b, sizeof a) == 0, "round trip differs: lr %.9g/%.9g beta %.17g/%.17g name '%s'",
           a.lr, b.lr, a.beta, b.beta, b.name);

    char *text;
    size_t n;
    EXPECT_TRUE(file_read_all(path, &text, &n) == 0);
    EXPECT(strstr(text, "# learning rate (a finite number in [0, 1])\nlr = 0.1\n") != NULL, "%s", text);
    EXPECT(strstr(text, "[model]\n") && strstr(text, "[train]\n") && strstr(text, "ranks = \n"), "%s", text);
    free(text);

    // Values INI cannot hold are refused, not written wrong.
    snprintf(a.name, sizeof a.name, "a ;b");
    EXPECT(cfg_write(path, fields, n_fields, &a) == -1 && strstr(err_msg(), "[model] name"), "%s", err_msg());
    snprintf(a.name, sizeof a.name, " lead");
    EXPECT(cfg_write(path, fields, n_fields, &a) == -1, "leading blank written");
    memset(a.name, 'x', 200);
    a.name[200] = 0;
    EXPECT(cfg_write(path, fields, n_fields, &a) == -1 && strstr(err_msg(), "too long"), "%s", err_msg());
    // The failed writes left the earlier file intact.
    EXPECT(cfg_load(path, fields, n_fields, &b) == 0 && b.lr == 0.1f, "%s", err_msg());
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/selma_test_config_XXXXXX");
    CHECK(mkdtemp(dir));
    test_load_good();
    test_load_bad();
    test_free_sections();
    test_overrides();
    test_round_trip();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_config");
}
