// libFuzzer target: the strict safetensors reader on arbitrary bytes. A file that
// passes st_parse must be safe to use: every tensor is found by name, viewed and
// converted to float32 without reading outside the buffer (ASan watches).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"

// Conversion buffer: tensors larger than this are checked by name only, so that one
// input cannot make the fuzzer allocate gigabytes.
#define MAX_FLOATS (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // A copy of exactly `size` bytes, so that a read past the end is a heap overflow.
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    st_file f;
    if (st_parse(buf, size, "fuzz.safetensors", &f) == 0) {
        static float out[MAX_FLOATS];
        for (size_t i = 0; i < f.n_tensors; i++) {
            const st_tensor *t = &f.tensors[i];
            if (st_find(&f, t->name) != t) abort();  // names are unique, so found exactly
            int64_t n = st_tensor_numel(t);
            if (n >= 0 && (uint64_t)n <= MAX_FLOATS) st_tensor_to_f32(&f, t, out, (size_t)n);
            tensor view;
            st_tensor_view(&f, t, &view);
        }
        for (size_t i = 0; i < f.n_meta; i++)
            if (!st_meta_get(&f, f.meta[i].key)) abort();
    }
    st_close(&f);
    free(buf);
    return 0;
}
