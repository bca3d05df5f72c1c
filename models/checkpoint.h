// Training checkpoints: one directory per step, <root>/step_000500/, holding
//   state.safetensors  the named float arrays (weights, EMA, optimizer moments),
//                      stored flat and exactly, so resuming is bit-exact
//   state.json         counters: step, RNG state, data position (the caller's JSON)
//   DONE               written last: a directory without it is incomplete
// Written as <root>/step_000500.tmp.<pid>/, fsync'd, renamed, then DONE (fsync'd);
// after a save only the newest `keep` complete checkpoints stay.
// state.safetensors' __metadata__ holds two checksums ("fnv1a64:<hex>",
// runtime/checksum.h): "checksum" over the arrays (each name with its NUL, then its
// bytes, in strcmp order of the names) and "state_json_checksum" over state.json;
// ckpt_load refuses a checkpoint whose bytes do not match before restoring anything.
#ifndef SELMA_MODELS_CHECKPOINT_H
#define SELMA_MODELS_CHECKPOINT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckpt_array {
    const char *name;
    float *data;   // saved from / restored into
    size_t n;      // floats
} ckpt_array;

int ckpt_save(const char *root, long step, const ckpt_array *arrays, int n_arrays,
              const char *state_json, int keep);
// The newest complete checkpoint under root: its directory and step. Returns 1 when
// there is none (root absent or empty), 0 when found, -1 on error. Incomplete
// directories (no DONE) and temporaries are skipped and counted in *n_skipped
// (may be NULL), each named in a log line.
int ckpt_find_latest(const char *root, char *dir, size_t n, long *step, int *n_skipped);
// Restores every array (each must be present with exactly n floats; the message names
// the file and array otherwise) and returns state.json's text (malloc'd). Checksums
// are verified first; a file without any metadata (written before checksums) loads
// unchecked. On failure nothing is restored and *state_json is NULL.
int ckpt_load(const char *dir, const ckpt_array *arrays, int n_arrays, char **state_json);

#ifdef __cplusplus
}
#endif
#endif
