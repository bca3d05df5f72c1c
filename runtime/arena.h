// Arenas: one allocation per kind of memory (parameters, gradients, optimizer state,
// activations), sized up front, as llm.c does. Layout code runs twice over the same
// arena: first in planning mode, where arena_take() only counts bytes and returns
// NULL, then after arena_commit(), where it hands out the real pointers in the same
// order. The size is logged at commit.
//
//   arena a = arena_plan("params", DEVICE_CPU);
//   unet_layout(&m, &a);      // counts
//   arena_commit(&a);          // one allocation
//   unet_layout(&m, &a);      // assigns pointers
#ifndef SELMA_RUNTIME_ARENA_H
#define SELMA_RUNTIME_ARENA_H

#include <stddef.h>

#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ARENA_ALIGN 64  // a cache line; also satisfies every CUDA vector load

typedef struct arena {
    const char *name;
    device_kind device;
    char *base;        // NULL while planning
    size_t size;       // committed bytes
    size_t used;       // bytes handed out (or counted) in the current pass
} arena;

arena arena_plan(const char *name, device_kind device);
// Allocates `used` bytes (zeroed) and rewinds for the assigning pass. Returns -1 with
// a message if the memory cannot be had.
int arena_commit(arena *a);
// Returns the next `bytes` (aligned) or NULL while planning. Past the committed size
// is a broken invariant (the two passes disagree) and aborts.
void *arena_take(arena *a, size_t bytes);
tensor arena_tensor(arena *a, dtype t, int ndim, const int64_t *shape);
void arena_rewind(arena *a);
void arena_free(arena *a);

#ifdef __cplusplus
}
#endif
#endif
