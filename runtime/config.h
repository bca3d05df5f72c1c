// INI configs into typed structs. A schema is a table of cfg_field rows, one per key,
// each naming its section, key, type, where the value lives in the caller's struct
// (offsetof), the allowed range or choices, and a line of help. The caller fills the
// struct with defaults, then cfg_load() overwrites what the file states and
// cfg_set() applies "section.key=value" overrides; cfg_write() writes every key back
// so that a run's config.ini reloads to the same struct.
//
//   typedef struct train_cfg { int steps; float lr; char sampler[16]; int ema; } train_cfg;
//   static const char *const samplers[] = {"ddim", "euler"};
//   static const cfg_field train_fields[] = {
//       CFG_INT(train_cfg, "train", "steps", steps, 1, 1000000, "optimizer steps"),
//       CFG_FLOAT(train_cfg, "train", "lr", lr, 0, 1, "learning rate"),
//       CFG_STRING(train_cfg, "train", "sampler", sampler, "sampler name"),
//       CFG_BOOL(train_cfg, "train", "ema", ema, "sample with EMA weights"),
//   };
//
// Errors name the place: "exp.ini:12: [train] lr: bad number 'abc' (expected a
// number in [0, 1])". Line numbers come from our own line reader because Debian's
// libinih is built without INI_HANDLER_LINENO.
#ifndef SELMA_RUNTIME_CONFIG_H
#define SELMA_RUNTIME_CONFIG_H

#include <math.h>  // HUGE_VAL: -HUGE_VAL, HUGE_VAL leave a number unbounded
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cfg_type {
    CFG_TYPE_INT,         // int
    CFG_TYPE_INT64,       // int64_t
    CFG_TYPE_FLOAT,       // float
    CFG_TYPE_DOUBLE,      // double
    CFG_TYPE_BOOL,        // int, 0 or 1; the file says true/false/yes/no/1/0
    CFG_TYPE_STRING,      // char[size], NUL-terminated
    CFG_TYPE_ENUM,        // int, index into choices
    CFG_TYPE_FLOAT_LIST,  // float[size] plus an int count: "1e-4, 3e-4"
    CFG_TYPE_INT_LIST,    // int[size] plus an int count: "1, 2, 4"
} cfg_type;

typedef struct cfg_field {
    const char *section, *key;
    cfg_type type;
    size_t offset;        // offsetof(struct, member)
    size_t size;          // sizeof the member (strings: capacity; lists: element count)
    size_t count_offset;  // lists: offsetof the int holding the number of elements
    double min, max;      // numbers and list elements: inclusive bounds
    const char *const *choices;  // enums
    int n_choices;
    const char *help;     // one line, written as a comment by cfg_write()
} cfg_field;

#define CFG_MEMBER_SIZE(T, m) sizeof(((T *)0)->m)
#define CFG_INT(T, sec, key, m, lo, hi, help) \
    {sec, key, CFG_TYPE_INT, offsetof(T, m), CFG_MEMBER_SIZE(T, m), 0, lo, hi, NULL, 0, help}
#define CFG_INT64(T, sec, key, m, lo, hi, help) \
    {sec, key, CFG_TYPE_INT64, offsetof(T, m), CFG_MEMBER_SIZE(T, m), 0, lo, hi, NULL, 0, help}
#define CFG_FLOAT(T, sec, key, m, lo, hi, help) \
    {sec, key, CFG_TYPE_FLOAT, offsetof(T, m), CFG_MEMBER_SIZE(T, m), 0, lo, hi, NULL, 0, help}
#define CFG_DOUBLE(T, sec, key, m, lo, hi, help) \
    {sec, key, CFG_TYPE_DOUBLE, offsetof(T, m), CFG_MEMBER_SIZE(T, m), 0, lo, hi, NULL, 0, help}
#define CFG_BOOL(T, sec, key, m, help) \
    {sec, key, CFG_TYPE_BOOL, offsetof(T, m), CFG_MEMBER_SIZE(T, m), 0, 0, 1, NULL, 0, help}
#define CFG_STRING(T, sec, key, m, help) \
    {sec, key, CFG_TYPE_STRING, offsetof(T, m), CFG_MEMBER_SIZE(T, m), 0, 0, 0, NULL, 0, help}
// choices: a static array of names; the member is an int index into it.
#define CFG_ENUM(T, sec, key, m, choices, help)                                   \
    {sec, key, CFG_TYPE_ENUM, offsetof(T, m), CFG_MEMBER_SIZE(T, m), 0, 0, 0, choices, \
     (int)(sizeof(choices) / sizeof((choices)[0])), help}
// m is an array (float m[K] / int m[K]); count is the int member holding how many.
#define CFG_FLOAT_LIST(T, sec, key, m, count, lo, hi, help)                       \
    {sec, key, CFG_TYPE_FLOAT_LIST, offsetof(T, m),                               \
     CFG_MEMBER_SIZE(T, m) / sizeof(float), offsetof(T, count), lo, hi, NULL, 0, help}
#define CFG_INT_LIST(T, sec, key, m, count, lo, hi, help)                         \
    {sec, key, CFG_TYPE_INT_LIST, offsetof(T, m),                                 \
     CFG_MEMBER_SIZE(T, m) / sizeof(int), offsetof(T, count), lo, hi, NULL, 0, help}

// A key = value line of a free-form section, kept verbatim for the caller (e.g.
// [sweep], whose values are lists to cross and whose keys name other sections' keys).
typedef struct cfg_pair {
    char *section, *key, *value;
    int line;
} cfg_pair;

typedef struct cfg_pairs {
    cfg_pair *items;
    int n, cap;
} cfg_pairs;

// Reads `path` into `out` (defaults set by the caller). Returns 0, or -1 with
// "FILE:LINE: [section] key: what is wrong (expected ...)". On error `out` may be
// partly updated.
int cfg_load(const char *path, const cfg_field *fields, int n, void *out);
// As cfg_load, but the sections named in free_sections (a NULL-terminated list) are
// not checked against the schema: their pairs are appended to `pairs` with their
// line numbers (duplicates within a free section are still errors).
int cfg_load_ex(const char *path, const cfg_field *fields, int n, void *out,
                const char *const *free_sections, cfg_pairs *pairs);
void cfg_pairs_free(cfg_pairs *pairs);

// Applies one "section.key=value" override; errors name `origin` ("command line").
int cfg_set(const cfg_field *fields, int n, void *out, const char *assignment,
            const char *origin);

// Writes every key of the schema, grouped by section in table order, help text as
// comments, atomically. Floats are printed with %.9g and doubles with %.17g, so that
// cfg_load() gives back the same bits. -1 if a string value cannot be written in INI
// (leading/trailing spaces, a newline, or an inline comment marker " ;").
int cfg_write(const char *path, const cfg_field *fields, int n, const void *cfg);

// The value of one field as the text cfg_write() would put in the file.
int cfg_format_value(const cfg_field *f, const void *cfg, char *buf, size_t n);
const cfg_field *cfg_find(const cfg_field *fields, int n, const char *section, const char *key);

#ifdef __cplusplus
}
#endif
#endif
