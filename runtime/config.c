#include "runtime/config.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "runtime/error.h"
#include "runtime/fileio.h"

// ---------------------------------------------------------------------------------
// The schema

// A mismatch between a cfg_field row and the struct member it points at is a bug in
// the caller's table, not bad input: abort.
static void schema_check(const cfg_field *fields, int n) {
    for (int i = 0; i < n; i++) {
        const cfg_field *f = &fields[i];
        CHECK(f->section && f->section[0] && f->key && f->key[0]);
        switch (f->type) {
        case CFG_TYPE_INT: case CFG_TYPE_BOOL: case CFG_TYPE_ENUM:
            CHECK(f->size == sizeof(int)); break;
        case CFG_TYPE_INT64: CHECK(f->size == sizeof(int64_t)); break;
        case CFG_TYPE_FLOAT: CHECK(f->size == sizeof(float)); break;
        case CFG_TYPE_DOUBLE: CHECK(f->size == sizeof(double)); break;
        case CFG_TYPE_STRING: CHECK(f->size >= 2); break;
        case CFG_TYPE_FLOAT_LIST: case CFG_TYPE_INT_LIST: CHECK(f->size >= 1); break;
        }
        if (f->type == CFG_TYPE_ENUM) CHECK(f->choices && f->n_choices > 0);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(fields[j].section, f->section) || strcmp(fields[j].key, f->key));
    }
}

const cfg_field *cfg_find(const cfg_field *fields, int n, const char *section, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(fields[i].section, section) && !strcmp(fields[i].key, key)) return &fields[i];
    return NULL;
}

static int section_known(const cfg_field *fields, int n, const char *section) {
    for (int i = 0; i < n; i++)
        if (!strcmp(fields[i].section, section)) return 1;
    return 0;
}

static int section_is_free(const char *const *free_sections, const char *section) {
    for (int i = 0; free_sections && free_sections[i]; i++)
        if (!strcmp(free_sections[i], section)) return 1;
    return 0;
}

// Appends to a fixed buffer, truncating quietly (messages only).
static void buf_add(char *buf, size_t n, const char *fmt, ...) {
    size_t len = strlen(buf);
    if (len + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, n - len, fmt, ap);
    va_end(ap);
}

static void range_text(char *buf, size_t n, const char *what, double lo, double hi, int integer) {
    const char *fmt = integer ? "%.0f" : "%g";
    buf_add(buf, n, "%s", what);
    if (isinf(lo) && isinf(hi)) return;
    if (isinf(lo) || isinf(hi)) {
        buf_add(buf, n, isinf(hi) ? " >= " : " <= ");
        buf_add(buf, n, fmt, isinf(hi) ? lo : hi);
        return;
    }
    buf_add(buf, n, " in [");
    buf_add(buf, n, fmt, lo);
    buf_add(buf, n, ", ");
    buf_add(buf, n, fmt, hi);
    buf_add(buf, n, "]");
}

// "(expected ...)" text of a field.
static void expected_text(const cfg_field *f, char *buf, size_t n) {
    buf[0] = 0;
    switch (f->type) {
    case CFG_TYPE_INT: case CFG_TYPE_INT64:
        range_text(buf, n, "an integer", f->min, f->max, 1); break;
    case CFG_TYPE_FLOAT: case CFG_TYPE_DOUBLE:
        range_text(buf, n, "a finite number", f->min, f->max, 0); break;
    case CFG_TYPE_BOOL: buf_add(buf, n, "true, false, yes, no, 1 or 0"); break;
    case CFG_TYPE_STRING: buf_add(buf, n, "text of at most %zu bytes", f->size - 1); break;
    case CFG_TYPE_ENUM:
        buf_add(buf, n, "one of:");
        for (int i = 0; i < f->n_choices; i++) buf_add(buf, n, "%s %s", i ? "," : "", f->choices[i]);
        break;
    case CFG_TYPE_FLOAT_LIST: case CFG_TYPE_INT_LIST:
        buf_add(buf, n, "up to %zu comma-separated values, each ", f->size);
        if (f->type == CFG_TYPE_INT_LIST) range_text(buf, n, "an integer", f->min, f->max, 1);
        else range_text(buf, n, "a finite number", f->min, f->max, 0);
        break;
    }
}

// ---------------------------------------------------------------------------------
// Values

static int parse_int64(const char *s, long long *v) {
    if (!*s) return -1;
    errno = 0;
    char *end;
    *v = strtoll(s, &end, 10);
    if (*end || errno == ERANGE) return -1;
    return 0;
}

static int parse_double(const char *s, double *v) {
    if (!*s) return -1;
    errno = 0;
    char *end;
    *v = strtod(s, &end);
    if (*end || !isfinite(*v)) return -1;
    return 0;
}

// Parses `value` into the field's member. On failure writes what is wrong (without
// the location) into why.
static int value_parse(const cfg_field *f, const char *value, void *out, char *why, size_t nwhy) {
    char *dst = (char *)out + f->offset;
    long long iv = 0;
    double dv = 0;
    switch (f->type) {
    case CFG_TYPE_INT: case CFG_TYPE_INT64:
        if (parse_int64(value, &iv) != 0)
            return snprintf(why, nwhy, "'%s' is not an integer", value), -1;
        if ((double)iv < f->min || (double)iv > f->max ||
            (f->type == CFG_TYPE_INT && (iv < INT_MIN || iv > INT_MAX)))
            return snprintf(why, nwhy, "%s is out of range", value), -1;
        if (f->type == CFG_TYPE_INT) *(int *)dst = (int)iv;
        else *(int64_t *)dst = (int64_t)iv;
        return 0;
    case CFG_TYPE_FLOAT: case CFG_TYPE_DOUBLE:
        if (parse_double(value, &dv) != 0)
            return snprintf(why, nwhy, "'%s' is not a finite number", value), -1;
        if (dv < f->min || dv > f->max || (f->type == CFG_TYPE_FLOAT && fabs(dv) > FLT_MAX))
            return snprintf(why, nwhy, "%s is out of range", value), -1;
        if (f->type == CFG_TYPE_FLOAT) *(float *)dst = (float)dv;
        else *(double *)dst = dv;
        return 0;
    case CFG_TYPE_BOOL:
        if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") || !strcmp(value, "1"))
            *(int *)dst = 1;
        else if (!strcasecmp(value, "false") || !strcasecmp(value, "no") || !strcmp(value, "0"))
            *(int *)dst = 0;
        else
            return snprintf(why, nwhy, "'%s' is not a boolean", value), -1;
        return 0;
    case CFG_TYPE_STRING: {
        size_t len = strlen(value);
        if (len >= f->size) return snprintf(why, nwhy, "value is %zu bytes long", len), -1;
        memcpy(dst, value, len + 1);
        return 0;
    }
    case CFG_TYPE_ENUM:
        for (int i = 0; i < f->n_choices; i++)
            if (!strcmp(value, f->choices[i])) { *(int *)dst = i; return 0; }
        return snprintf(why, nwhy, "'%s' is not a valid choice", value), -1;
    case CFG_TYPE_FLOAT_LIST: case CFG_TYPE_INT_LIST: {
        // Parse into a scratch copy so that a bad list leaves the member untouched.
        size_t elem = f->type == CFG_TYPE_INT_LIST ? sizeof(int) : sizeof(float);
        char *vals = calloc(f->size, elem), item[256];
        CHECK(vals);
        int count = 0;
        const char *p = value;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            while (len && (p[0] == ' ' || p[0] == '\t')) { p++; len--; }
            while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
            snprintf(item, sizeof item, "%.*s", (int)len, p);
            if ((size_t)count >= f->size) {
                free(vals);
                return snprintf(why, nwhy, "more than %zu values", f->size), -1;
            }
            int bad = f->type == CFG_TYPE_INT_LIST ? parse_int64(item, &iv) : parse_double(item, &dv);
            if (bad) {
                free(vals);
                return snprintf(why, nwhy, "value %d '%s' is not %s", count + 1, item,
                                f->type == CFG_TYPE_INT_LIST ? "an integer" : "a finite number"), -1;
            }
            double x = f->type == CFG_TYPE_INT_LIST ? (double)iv : dv;
            if (x < f->min || x > f->max || (f->type == CFG_TYPE_INT_LIST && (iv < INT_MIN || iv > INT_MAX)) ||
                (f->type == CFG_TYPE_FLOAT_LIST && fabs(x) > FLT_MAX)) {
                free(vals);
                return snprintf(why, nwhy, "value %d (%s) is out of range", count + 1, item), -1;
            }
            if (f->type == CFG_TYPE_INT_LIST) ((int *)vals)[count++] = (int)iv;
            else ((float *)vals)[count++] = (float)dv;
            if (!comma) break;
            p = comma + 1;
            if (!*p) { free(vals); return snprintf(why, nwhy, "trailing comma"), -1; }
        }
        memcpy(dst, vals, f->size * elem);
        *(int *)((char *)out + f->count_offset) = count;
        free(vals);
        return 0;
    }
    }
    return snprintf(why, nwhy, "unknown field type"), -1;
}

// Shortest %g text that reads back to the same float/double, for readable files.
static void format_real(char *buf, size_t n, double v, int is_float) {
    for (int prec = is_float ? 6 : 15; prec <= (is_float ? 9 : 17); prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (is_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) return;
    }
}

int cfg_format_value(const cfg_field *f, const void *cfg, char *buf, size_t n) {
    const char *src = (const char *)cfg + f->offset;
    char tmp[64];
    buf[0] = 0;
    switch (f->type) {
    case CFG_TYPE_INT: snprintf(buf, n, "%d", *(const int *)src); break;
    case CFG_TYPE_INT64: snprintf(buf, n, "%lld", (long long)*(const int64_t *)src); break;
    case CFG_TYPE_FLOAT: case CFG_TYPE_DOUBLE: {
        double v = f->type == CFG_TYPE_FLOAT ? *(const float *)src : *(const double *)src;
        if (!isfinite(v)) return err_set("[%s] %s: value %g is not finite", f->section, f->key, v);
        format_real(buf, n, v, f->type == CFG_TYPE_FLOAT);
        break;
    }
    case CFG_TYPE_BOOL: snprintf(buf, n, "%s", *(const int *)src ? "true" : "false"); break;
    case CFG_TYPE_STRING: {
        size_t len = strnlen(src, f->size);
        if (len == f->size) return err_set("[%s] %s: string is not NUL-terminated", f->section, f->key);
        // What inih would not give back: surrounding blanks, line breaks, comments.
        int bad = len && (src[0] == ' ' || src[0] == '\t' || src[0] == ';' ||
                          src[len - 1] == ' ' || src[len - 1] == '\t');
        bad |= strchr(src, '\n') || strchr(src, '\r') || strstr(src, " ;") || strstr(src, "\t;");
        if (bad) return err_set("[%s] %s: '%s' cannot be written in an INI file "
                                "(leading/trailing blanks, a line break or ' ;')", f->section, f->key, src);
        if (len >= n) return err_set("[%s] %s: value too long to format", f->section, f->key);
        memcpy(buf, src, len + 1);
        break;
    }
    case CFG_TYPE_ENUM: {
        int v = *(const int *)src;
        if (v < 0 || v >= f->n_choices)
            return err_set("[%s] %s: enum value %d is not one of the %d choices", f->section, f->key, v, f->n_choices);
        snprintf(buf, n, "%s", f->choices[v]);
        break;
    }
    case CFG_TYPE_FLOAT_LIST: case CFG_TYPE_INT_LIST: {
        int count = *(const int *)((const char *)cfg + f->count_offset);
        if (count < 0 || (size_t)count > f->size)
            return err_set("[%s] %s: list count %d out of [0, %zu]", f->section, f->key, count, f->size);
        for (int i = 0; i < count; i++) {
            if (f->type == CFG_TYPE_INT_LIST) snprintf(tmp, sizeof tmp, "%d", ((const int *)src)[i]);
            else format_real(tmp, sizeof tmp, ((const float *)src)[i], 1);
            buf_add(buf, n, "%s%s", i ? ", " : "", tmp);
        }
        break;
    }
    }
    return 0;
}

// ---------------------------------------------------------------------------------
// Loading

typedef struct load_state {
    const char *path;
    FILE *f;
    const cfg_field *fields;
    int n;
    void *out;
    const char *const *free_sections;
    cfg_pairs *pairs;
    int pairs_start;  // pairs from this file start here (duplicate check)
    int *seen;        // per field: the line that set it, 0 if none
    int line;         // line being parsed
    int err_line;     // line of the first error we reported, 0 if none
    char *buf;
    size_t cap;
} load_state;

static int load_fail(load_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int load_fail(load_state *s, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set("%s:%d: %s", s->path, s->line, msg);
    s->err_line = s->line;
    return 0;
}

// inih's fgets-style reader, ours so that we know the line number, can reject long
// lines (inih would silently split them at INI_MAX_LINE) and can check section
// headers (inih calls no handler for a section without keys). Leading blanks are
// removed, which also turns off inih's multi-line continuation values: an indented
// line is an ordinary line here.
static char *load_reader(char *str, int num, void *stream) {
    load_state *s = stream;
    if (s->err_line) return NULL;
    ssize_t len = getline(&s->buf, &s->cap, s->f);
    if (len < 0) return NULL;
    s->line++;
    char *p = s->buf;
    size_t L = (size_t)len;
    while (L && (p[L - 1] == '\n' || p[L - 1] == '\r')) L--;
    if (s->line == 1 && L >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) { p += 3; L -= 3; }
    while (L && (*p == ' ' || *p == '\t')) { p++; L--; }
    if (memchr(p, 0, L)) { load_fail(s, "line contains a NUL byte"); return NULL; }
    if (L + 2 > (size_t)num && (*p == '#' || *p == ';')) L = (size_t)num - 2;  // a comment: cut it
    if (L + 2 > (size_t)num) {
        load_fail(s, "line too long (%zu characters; at most %d)", L, num - 2);
        return NULL;
    }
    memcpy(str, p, L);
    str[L] = '\n';
    str[L + 1] = 0;
    if (str[0] == '[') {
        char *end = strchr(str, ']');
        if (end) {
            *end = 0;
            const char *name = str + 1;
            if (!section_known(s->fields, s->n, name) && !section_is_free(s->free_sections, name)) {
                char known[1024] = "";
                for (int i = 0; i < s->n; i++)
                    if (!section_known(s->fields, i, s->fields[i].section))
                        buf_add(known, sizeof known, "%s%s", known[0] ? ", " : "", s->fields[i].section);
                for (int i = 0; s->free_sections && s->free_sections[i]; i++)
                    buf_add(known, sizeof known, "%s%s", known[0] ? ", " : "", s->free_sections[i]);
                load_fail(s, "[%s]: unknown section (expected one of: %s)", name, known);
                return NULL;
            }
            *end = ']';
        }
    }
    return str;
}

static int pairs_add(cfg_pairs *p, const char *section, const char *key, const char *value, int line) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->items = realloc(p->items, (size_t)p->cap * sizeof *p->items);
        CHECK(p->items);
    }
    cfg_pair *it = &p->items[p->n++];
    it->section = strdup(section);
    it->key = strdup(key);
    it->value = strdup(value);
    CHECK(it->section && it->key && it->value);
    it->line = line;
    return 0;
}

void cfg_pairs_free(cfg_pairs *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->items[i].section);
        free(p->items[i].key);
        free(p->items[i].value);
    }
    free(p->items);
    memset(p, 0, sizeof *p);
}

static int load_handler(void *user, const char *section, const char *key, const char *value) {
    load_state *s = user;
    if (!section[0])
        return load_fail(s, "%s: key outside any section (expected a [section] line before it)", key);
    if (section_is_free(s->free_sections, section)) {
        for (int i = s->pairs_start; i < s->pairs->n; i++) {
            const cfg_pair *q = &s->pairs->items[i];
            if (!strcmp(q->section, section) && !strcmp(q->key, key))
                return load_fail(s, "[%s] %s: duplicate key (first set on line %d)", section, key, q->line);
        }
        pairs_add(s->pairs, section, key, value, s->line);
        return 1;
    }
    const cfg_field *f = cfg_find(s->fields, s->n, section, key);
    if (!f) {
        char known[1024] = "";
        for (int i = 0; i < s->n; i++)
            if (!strcmp(s->fields[i].section, section))
                buf_add(known, sizeof known, "%s%s", known[0] ? ", " : "", s->fields[i].key);
        return load_fail(s, "[%s] %s: unknown key (expected one of: %s)", section, key, known);
    }
    int idx = (int)(f - s->fields);
    if (s->seen[idx])
        return load_fail(s, "[%s] %s: duplicate key (first set on line %d)", section, key, s->seen[idx]);
    char why[512], expected[512];
    if (value_parse(f, value, s->out, why, sizeof why) != 0) {
        expected_text(f, expected, sizeof expected);
        return load_fail(s, "[%s] %s: %s (expected %s)", section, key, why, expected);
    }
    s->seen[idx] = s->line;
    return 1;
}

int cfg_load_ex(const char *path, const cfg_field *fields, int n, void *out,
                const char *const *free_sections, cfg_pairs *pairs) {
    schema_check(fields, n);
    CHECK(!free_sections || pairs);
    load_state s = {.path = path, .fields = fields, .n = n, .out = out,
                    .free_sections = free_sections, .pairs = pairs,
                    .pairs_start = pairs ? pairs->n : 0};
    s.f = fopen(path, "rb");
    IO_TRY(s.f, path);
    s.seen = calloc((size_t)n + 1, sizeof *s.seen);
    CHECK(s.seen);
    int r = ini_parse_stream(load_reader, &s, load_handler, &s);
    int io_bad = ferror(s.f);
    fclose(s.f);
    free(s.buf);
    free(s.seen);
    if (io_bad) return err_set("%s: read error", path);
    // inih reports the first line it disliked; our own error may come later or earlier.
    if (r > 0 && (!s.err_line || r < s.err_line))
        return err_set("%s:%d: syntax error (expected [section], key = value, or a comment)", path, r);
    if (s.err_line) return -1;
    if (r < 0) return err_set("%s: parser error %d", path, r);
    return 0;
}

int cfg_load(const char *path, const cfg_field *fields, int n, void *out) {
    return cfg_load_ex(path, fields, n, out, NULL, NULL);
}

// ---------------------------------------------------------------------------------
// Overrides and writing

static void trim(char *s) {
    size_t len = strlen(s), i = 0;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = 0;
    while (s[i] == ' ' || s[i] == '\t') i++;
    memmove(s, s + i, len - i + 1);
}

int cfg_set(const cfg_field *fields, int n, void *out, const char *assignment, const char *origin) {
    schema_check(fields, n);
    char name[256], value[1024];
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq || (size_t)(eq - assignment) >= sizeof name || strlen(eq + 1) >= sizeof value)
        return err_set("%s: '%s': expected section.key=value", origin, assignment);
    snprintf(name, sizeof name, "%.*s", (int)(eq - assignment), assignment);
    snprintf(value, sizeof value, "%s", eq + 1);
    trim(name);
    trim(value);
    char *key = strchr(name, '.');
    *key++ = 0;
    const cfg_field *f = cfg_find(fields, n, name, key);
    if (!f) {
        if (!section_known(fields, n, name))
            return err_set("%s: [%s] %s: unknown section '%s'", origin, name, key, name);
        char known[1024] = "";
        for (int i = 0; i < n; i++)
            if (!strcmp(fields[i].section, name))
                buf_add(known, sizeof known, "%s%s", known[0] ? ", " : "", fields[i].key);
        return err_set("%s: [%s] %s: unknown key (expected one of: %s)", origin, name, key, known);
    }
    char why[512], expected[512];
    if (value_parse(f, value, out, why, sizeof why) != 0) {
        expected_text(f, expected, sizeof expected);
        return err_set("%s: [%s] %s: %s (expected %s)", origin, name, key, why, expected);
    }
    return 0;
}

int cfg_write(const char *path, const cfg_field *fields, int n, const void *cfg) {
    schema_check(fields, n);
    afile a;
    if (afile_open(&a, path) != 0) return -1;
#ifdef SELMA_VERSION
    fprintf(a.f, "# resolved configuration, written by selma %s\n", SELMA_VERSION);
#endif
    size_t vcap = 4096;
    char *value = malloc(vcap), expected[512];
    CHECK(value);
    for (int i = 0; i < n; i++) {
        if (section_known(fields, i, fields[i].section)) continue;  // section already written
        fprintf(a.f, "\n[%s]\n", fields[i].section);
        for (int j = i; j < n; j++) {
            const cfg_field *f = &fields[j];
            if (strcmp(f->section, fields[i].section)) continue;
            if (cfg_format_value(f, cfg, value, vcap) != 0) {
                free(value);
                afile_abort(&a);
                return err_wrap("%s", path);
            }
            // inih reads lines of at most INI_MAX_LINE - 2 characters.
            if (strlen(f->key) + 3 + strlen(value) > INI_MAX_LINE - 2) {
                free(value);
                afile_abort(&a);
                return err_set("%s: [%s] %s: value too long for one INI line (at most %d characters)",
                               path, f->section, f->key, INI_MAX_LINE - 2);
            }
            expected_text(f, expected, sizeof expected);
            fprintf(a.f, "# %s (%s)\n%s = %s\n", f->help ? f->help : "", expected, f->key, value);
        }
    }
    free(value);
    return afile_commit(&a);
}
