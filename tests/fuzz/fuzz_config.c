// libFuzzer target: the INI config loader (cfg_load_ex with a free [sweep] section)
// on arbitrary file contents, through one temporary file, since the loader reads by
// path. A schema with every field type; a file that loads must write back
// (cfg_write) and reload to the same struct, bit for bit.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/config.h"

typedef struct fz_cfg {
    int i, b, e, n_fl, n_il;
    int64_t i64;
    float f;
    double d;
    char s[16];
    float fl[4];
    int il[3];
} fz_cfg;

static const char *const colours[] = {"red", "green", "blue"};
static const cfg_field fields[] = {
    CFG_INT(fz_cfg, "a", "int", i, -100, 100, "int"),
    CFG_INT64(fz_cfg, "a", "int64", i64, 0, 9e18, "int64"),
    CFG_FLOAT(fz_cfg, "a", "float", f, -1, 1, "float"),
    CFG_DOUBLE(fz_cfg, "b", "double", d, -HUGE_VAL, HUGE_VAL, "double"),
    CFG_BOOL(fz_cfg, "b", "bool", b, "bool"),
    CFG_STRING(fz_cfg, "b", "string", s, "string"),
    CFG_ENUM(fz_cfg, "c", "enum", e, colours, "enum"),
    CFG_FLOAT_LIST(fz_cfg, "c", "floats", fl, n_fl, 0, 10, "float list"),
    CFG_INT_LIST(fz_cfg, "c", "ints", il, n_il, -5, 5, "int list"),
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

static char in_path[64], out_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    snprintf(in_path, sizeof in_path, "/tmp/selma-fuzz-config-%ld.ini", (long)getpid());
    snprintf(out_path, sizeof out_path, "/tmp/selma-fuzz-config-%ld.out.ini", (long)getpid());
    return 0;
}

static void cleanup(void) {
    unlink(in_path);
    unlink(out_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int registered;
    if (!registered) registered = atexit(cleanup) == 0;
    FILE *fp = fopen(in_path, "wb");
    if (!fp) abort();
    if (size && fwrite(data, 1, size, fp) != size) abort();
    fclose(fp);
    fz_cfg c, back;
    memset(&c, 0, sizeof c);
    static const char *const free_sections[] = {"sweep", NULL};
    cfg_pairs pairs = {0};
    if (cfg_load_ex(in_path, fields, N_FIELDS, &c, free_sections, &pairs) == 0 &&
        cfg_write(out_path, fields, N_FIELDS, &c) == 0) {
        memset(&back, 0, sizeof back);
        // What cfg_write wrote must load again and give the same values.
        if (cfg_load(out_path, fields, N_FIELDS, &back) != 0) abort();
        if (memcmp(&c, &back, sizeof c) != 0) abort();
    }
    cfg_pairs_free(&pairs);
    return 0;
}
