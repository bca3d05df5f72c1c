// Reading a parameter table from a safetensors file by name, shared by the models that
// load diffusers checkpoints (unet_io.c, vae.c). A file must hold exactly the table's
// tensors of one kind: missing, unexpected and wrong-shape tensors are counted and
// named together, so one message says everything that is wrong with a checkpoint.
#ifndef SELMA_MODELS_PARAM_FILE_H
#define SELMA_MODELS_PARAM_FILE_H

#include <stddef.h>

#include "models/unet_modules.h"
#include "runtime/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct param_naming {
    const char *prefix;  // put before every table name in the file ("unet." for LoRA files)
    // An older spelling of a table name that a file may use instead (diffusers still
    // reads checkpoints written before a rename): writes it to buf and returns 1, or 0.
    int (*legacy)(const char *name, char *buf, size_t cap);
} param_naming;

// 0 when f holds the table's tensors of `kind` under their names (or legacy names)
// with the table's shapes and nothing else; otherwise -1 with a message
// "N missing: a, b; N unexpected: c; N wrong shape: d (model [4, 3])" (the first few
// names of each).
int ptab_match_file(const param_table *t, const st_file *f, param_kind kind,
                    const param_naming *nm);
// Converts the tensors of `kind` to f32 into the table; call after ptab_match_file.
int ptab_read_file(param_table *t, const st_file *f, param_kind kind, const param_naming *nm);

#ifdef __cplusplus
}
#endif
#endif
