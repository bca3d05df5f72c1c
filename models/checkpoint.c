// Training checkpoints (see checkpoint.h).
#include "models/checkpoint.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/bundle.h"
#include "runtime/checksum.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"

#define CKPT_PREFIX "step_"

// Step of a complete-looking name "step_000500" (digits only); -1 otherwise.
static long name_step(const char *name) {
    if (strncmp(name, CKPT_PREFIX, strlen(CKPT_PREFIX))) return -1;
    const char *p = name + strlen(CKPT_PREFIX);
    if (!*p) return -1;
    long s = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || s > 100000000000L) return -1;
        s = s * 10 + (*p - '0');
    }
    return s;
}

static int is_done(const char *root, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/DONE", root, name);
    return access(path, F_OK) == 0;
}

// Complete checkpoint steps under root, ascending (malloc'd); -1 if root cannot be read.
static int list_steps(const char *root, long **steps, int *n, int *n_skipped, int quiet) {
    *steps = NULL, *n = 0;
    if (n_skipped) *n_skipped = 0;
    DIR *d = opendir(root);
    if (!d) return 1;
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, CKPT_PREFIX, strlen(CKPT_PREFIX))) continue;
        long s = name_step(e->d_name);
        if (s < 0 || !is_done(root, e->d_name)) {
            if (!quiet) log_line("checkpoint %s/%s is incomplete (no DONE): skipped", root, e->d_name);
            if (n_skipped) (*n_skipped)++;
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *steps = realloc(*steps, (size_t)cap * sizeof **steps);
            CHECK(*steps);
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    for (int i = 1; i < *n; i++)  // few entries: insertion sort
        for (int j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
            long t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1], (*steps)[j - 1] = t;
        }
    return 0;
}

int ckpt_find_latest(const char *root, char *dir, size_t n, long *step, int *n_skipped) {
    long *steps;
    int count;
    if (list_steps(root, &steps, &count, n_skipped, 0) || count == 0) {
        free(steps);
        return 1;
    }
    *step = steps[count - 1];
    snprintf(dir, n, "%s/" CKPT_PREFIX "%06ld", root, *step);
    free(steps);
    return 0;
}

// The checksum of the arrays: FNV-1a 64 over each array's name (with its NUL) and
// bytes, arrays in strcmp order of their names -- the order st_file.by_name has, so
// the reader needs no knowledge of the writer's layout.
static uint64_t arrays_checksum(const ckpt_array *arrays, int n_arrays) {
    const ckpt_array **order = malloc((n_arrays > 0 ? (size_t)n_arrays : 1) * sizeof *order);
    CHECK(order);
    for (int i = 0; i < n_arrays; i++) order[i] = &arrays[i];
    for (int i = 1; i < n_arrays; i++)  // few arrays: insertion sort
        for (int j = i; j > 0 && strcmp(order[j - 1]->name, order[j]->name) > 0; j--) {
            const ckpt_array *t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    uint64_t h = FNV1A64_INIT;
    for (int i = 0; i < n_arrays; i++) {
        h = fnv1a64(h, order[i]->name, strlen(order[i]->name) + 1);
        h = fnv1a64(h, order[i]->data, order[i]->n * sizeof(float));
    }
    free(order);
    return h;
}

static uint64_t file_checksum(const st_file *f) {
    uint64_t h = FNV1A64_INIT;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = f->by_name[i];
        h = fnv1a64(h, t->name, strlen(t->name) + 1);
        h = fnv1a64(h, t->data, t->nbytes);
    }
    return h;
}

// Removes a checkpoint directory so that a kill at any moment leaves it complete or
// visibly incomplete: DONE goes first (and that is made durable), then the rest.
// Removing the tree in readdir order could leave DONE beside a missing state.json.
static int remove_checkpoint(const char *dir) {
    char done[8192];
    snprintf(done, sizeof done, "%s/DONE", dir);
    if (unlink(done) == 0 && dir_fsync(dir)) return -1;
    return dir_remove_tree(dir);
}

static int write_state(const char *tmp, const ckpt_array *arrays, int n_arrays, const char *state_json) {
    char path[8192], sum[FNV1A64_TEXT_LEN];
    st_writer w;
    st_writer_init(&w);
    int rc = 0;
    for (int i = 0; i < n_arrays && !rc; i++) {
        int64_t shape[1] = {(int64_t)arrays[i].n};
        rc = st_writer_add(&w, arrays[i].name, ST_F32, 1, shape, arrays[i].data);
    }
    fnv1a64_text(arrays_checksum(arrays, n_arrays), sum);
    if (!rc) rc = st_writer_set_meta(&w, "checksum", sum);
    fnv1a64_text(fnv1a64(FNV1A64_INIT, state_json, strlen(state_json)), sum);
    if (!rc) rc = st_writer_set_meta(&w, "state_json_checksum", sum);
    snprintf(path, sizeof path, "%s/state.safetensors", tmp);
    if (!rc) rc = st_writer_save(&w, path);
    st_writer_free(&w);
    snprintf(path, sizeof path, "%s/state.json", tmp);
    if (!rc) rc = atomic_write(path, state_json, strlen(state_json));
    if (!rc) rc = dir_fsync(tmp);
    return rc;
}

int ckpt_save(const char *root, long step, const ckpt_array *arrays, int n_arrays,
              const char *state_json, int keep) {
    char dir[4096], tmp[4200], path[4200];
    snprintf(dir, sizeof dir, "%s/" CKPT_PREFIX "%06ld", root, step);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    if (mkdir_p(root) || dir_remove_tree(tmp) || remove_checkpoint(dir) || mkdir_p(tmp))
        return err_wrap("checkpoint %s", dir);
    if (write_state(tmp, arrays, n_arrays, state_json)) {
        err_wrap("checkpoint %s", dir);
        dir_remove_tree(tmp);
        return -1;
    }
    if (rename(tmp, dir)) {
        err_set("checkpoint %s: rename: %s", dir, err_errno_string());
        dir_remove_tree(tmp);
        return -1;
    }
    snprintf(path, sizeof path, "%s/DONE", dir);
    if (dir_fsync(root) || atomic_write(path, "done\n", 5) || dir_fsync(dir)) return -1;
    long *steps;
    int count;
    if (keep > 0 && list_steps(root, &steps, &count, NULL, 1) == 0) {
        for (int i = 0; i < count - keep; i++) {
            snprintf(path, sizeof path, "%s/" CKPT_PREFIX "%06ld", root, steps[i]);
            if (remove_checkpoint(path)) log_line("checkpoint: cannot prune %s: %s", path, err_msg());
        }
        free(steps);
    }
    return 0;
}

int ckpt_load(const char *dir, const ckpt_array *arrays, int n_arrays, char **state_json) {
    char path[8192], json_path[8192], sum[FNV1A64_TEXT_LEN];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    snprintf(json_path, sizeof json_path, "%s/state.json", dir);
    *state_json = NULL;
    st_file f;
    if (st_open(path, &f)) return -1;
    // Both files are checked before anything is restored. Checkpoints written before
    // checksums existed have no metadata at all and are taken as they are; a file with
    // metadata but without both checksums has a damaged key.
    const char *want = st_meta_get(&f, "checksum"), *want_json = st_meta_get(&f, "state_json_checksum");
    int rc = 0;
    fnv1a64_text(file_checksum(&f), sum);
    if (f.n_meta && (!want || !want_json))
        rc = err_set("%s: __metadata__ lacks checksum or state_json_checksum (corrupt checkpoint)", path);
    else if (want && strcmp(want, sum))
        rc = err_set("%s: checksum mismatch: the arrays hash to %s but the file records %s "
                     "(corrupt checkpoint)", path, sum, want);
    size_t n;
    if (!rc) rc = file_read_all(json_path, state_json, &n);
    if (!rc && want_json) {
        fnv1a64_text(fnv1a64(FNV1A64_INIT, *state_json, n), sum);
        if (strcmp(want_json, sum))
            rc = err_set("%s: checksum mismatch: the text hashes to %s but %s records %s "
                         "(corrupt checkpoint)", json_path, sum, path, want_json);
    }
    for (int i = 0; i < n_arrays && !rc; i++) {
        const st_tensor *t = st_find(&f, arrays[i].name);
        if (!t) rc = err_set("%s: array '%s' is missing", path, arrays[i].name);
        else if (t->dtype != ST_F32 || st_tensor_numel(t) != (int64_t)arrays[i].n)
            rc = err_set("%s: array '%s' holds %lld values, the model needs %zu F32 (another config?)",
                         path, arrays[i].name, (long long)st_tensor_numel(t), arrays[i].n);
    }
    for (int i = 0; i < n_arrays && !rc; i++)
        rc = st_tensor_to_f32(&f, st_find(&f, arrays[i].name), arrays[i].data, arrays[i].n);
    st_close(&f);
    if (rc) {
        free(*state_json);
        *state_json = NULL;
        return -1;
    }
    return 0;
}
