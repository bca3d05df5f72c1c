// Parameter tables from safetensors files by name (see param_file.h).
#include "models/param_file.h"

#include <stdio.h>
#include <string.h>

#include "runtime/error.h"

#define FILE_NAME_MAX (UNET_NAME_MAX + 16)

// The tensor of f that holds parameter p, under its name or its legacy name.
static const st_tensor *find(const st_file *f, const unet_param *p, const param_naming *nm,
                             char *name) {
    char old[FILE_NAME_MAX];
    snprintf(name, FILE_NAME_MAX, "%s%s", nm->prefix ? nm->prefix : "", p->name);
    const st_tensor *t = st_find(f, name);
    if (t || !nm->legacy || !nm->legacy(p->name, old, sizeof old)) return t;
    t = st_find(f, old);
    if (t) snprintf(name, FILE_NAME_MAX, "%s", old);
    return t;
}

// A problem list of one kind: the first names, then a count of the rest.
typedef struct problems {
    const char *what;
    char names[1024];
    int n;
} problems;

#define PROBLEM_NAMES 6

static void note(problems *p, const char *name, const char *detail) {
    size_t len = strlen(p->names);
    if (p->n++ < PROBLEM_NAMES)
        snprintf(p->names + len, sizeof p->names - len, "%s%s%s", len ? ", " : "", name, detail);
}

static void summary(char *buf, size_t cap, const problems *p) {
    if (!p->n) return;
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len, "%s%d %s: %s%s", len ? "; " : "", p->n, p->what, p->names,
             p->n > PROBLEM_NAMES ? ", ..." : "");
}

// Is the file's tensor `fn` one of the table's (under either spelling)?
static int known(const param_table *t, const st_file *f, param_kind kind,
                 const param_naming *nm, const char *fn) {
    char name[FILE_NAME_MAX];
    for (int k = 0; k < t->n; k++) {
        const unet_param *p = &t->items[k];
        if (p->kind != kind) continue;
        const st_tensor *s = find(f, p, nm, name);
        if (s && !strcmp(s->name, fn)) return 1;
    }
    return 0;
}

int ptab_match_file(const param_table *t, const st_file *f, param_kind kind,
                    const param_naming *nm) {
    char name[FILE_NAME_MAX], shape[64], detail[96];
    problems missing = {.what = "missing"}, unexpected = {.what = "unexpected"},
             wrong = {.what = "wrong shape"};
    size_t used = 0;
    for (int i = 0; i < t->n; i++) {
        const unet_param *p = &t->items[i];
        if (p->kind != kind) continue;
        const st_tensor *s = find(f, p, nm, name);
        if (!s) {
            snprintf(name, sizeof name, "%s%s", nm->prefix ? nm->prefix : "", p->name);
            note(&missing, name, "");
            continue;
        }
        used++;
        int same = s->ndim == p->t.ndim;
        for (int d = 0; same && d < s->ndim; d++) same = s->shape[d] == p->t.shape[d];
        if (!same) {
            snprintf(detail, sizeof detail, " (model %s)", tensor_shape_str(&p->t, shape, sizeof shape));
            note(&wrong, name, detail);
        }
    }
    if (used < f->n_tensors)
        for (size_t i = 0; i < f->n_tensors; i++)
            if (!known(t, f, kind, nm, f->tensors[i].name)) note(&unexpected, f->tensors[i].name, "");
    if (!missing.n && !unexpected.n && !wrong.n) return 0;
    char msg[4096] = "";
    summary(msg, sizeof msg, &missing);
    summary(msg, sizeof msg, &unexpected);
    summary(msg, sizeof msg, &wrong);
    return err_set("%s", msg);
}

int ptab_read_file(param_table *t, const st_file *f, param_kind kind, const param_naming *nm) {
    char name[FILE_NAME_MAX];
    for (int i = 0; i < t->n; i++) {
        unet_param *p = &t->items[i];
        if (p->kind != kind) continue;
        const st_tensor *s = find(f, p, nm, name);
        CHECK(s != NULL);  // ptab_match_file said so
        if (st_tensor_to_f32(f, s, p->t.data, (size_t)tensor_numel(&p->t))) return -1;
    }
    return 0;
}
