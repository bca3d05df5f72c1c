// FNV-1a 64-bit, the checksum selma writes into checkpoints and datasets so that a
// flipped byte or a cut file is refused before use. Not cryptographic: it guards
// against corruption, not tampering. Streaming: start from FNV1A64_INIT and feed
// the bytes in the order the format defines.
#ifndef SELMA_RUNTIME_CHECKSUM_H
#define SELMA_RUNTIME_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FNV1A64_INIT 0xcbf29ce484222325ull
#define FNV1A64_TEXT_LEN 25  // "fnv1a64:" + 16 hex digits + NUL

static inline uint64_t fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

// The form stored in files: "fnv1a64:0123456789abcdef".
static inline void fnv1a64_text(uint64_t h, char out[FNV1A64_TEXT_LEN]) {
    snprintf(out, FNV1A64_TEXT_LEN, "fnv1a64:%016llx", (unsigned long long)h);
}

#endif
