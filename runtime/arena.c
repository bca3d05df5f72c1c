#include "runtime/arena.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/log.h"

arena arena_plan(const char *name, device_kind device) {
    return (arena){.name = name, .device = device};
}

int arena_commit(arena *a) {
    CHECK(a->base == NULL);
    size_t bytes = a->used ? a->used : ARENA_ALIGN;
    a->base = device_alloc(a->device, bytes);
    if (!a->base)
        return err_set("arena %s: cannot allocate %.1f MiB on %s", a->name,
                       (double)bytes / (1 << 20), a->device == DEVICE_CPU ? "cpu" : "cuda");
    device_memset(a->device, a->base, 0, bytes);
    a->size = bytes;
    a->used = 0;
    log_line("arena %-12s %10.2f MiB on %s", a->name, (double)bytes / (1 << 20),
             a->device == DEVICE_CPU ? "cpu" : "cuda");
    return 0;
}

void *arena_take(arena *a, size_t bytes) {
    size_t off = (a->used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    CHECK(off >= a->used && off + bytes >= off);  // overflow is a bug in the caller
    a->used = off + bytes;
    if (!a->base) return NULL;
    CHECK(a->used <= a->size);
    return a->base + off;
}

tensor arena_tensor(arena *a, dtype t, int ndim, const int64_t *shape) {
    tensor x = tensor_make(t, a->device, NULL, ndim, shape);
    x.data = arena_take(a, tensor_nbytes(&x));
    return x;
}

void arena_rewind(arena *a) { a->used = 0; }

void arena_free(arena *a) {
    if (a->base) device_free(a->device, a->base);
    a->base = NULL;
    a->size = a->used = 0;
}
