// Internals shared by clip_tokenizer_load.c, clip_tokenizer_utf8.c and
// clip_tokenizer.c; not part of the tokenizer's API.
#ifndef SELMA_MODELS_CLIP_TOKENIZER_IMPL_H
#define SELMA_MODELS_CLIP_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "models/clip_tokenizer.h"

// The rank of merging ids a then b (*merged: the result's id), or -1 if no merge.
int clip_merge_rank(const clip_tokenizer *t, int a, int b, int *merged);

// GPT-2's byte-to-unicode map: printable Latin-1 bytes to themselves, the other 68
// bytes to U+0100.. in byte order, so that every byte is a visible vocabulary symbol.
int32_t clip_byte_to_unicode(int byte);
// Writes the UTF-8 of code point c (at most 4 bytes); returns the byte count.
int clip_utf8_put(int32_t c, char *out);
// Decodes NUL-terminated UTF-8 into a malloc'd code point array (*n of them); every
// maximal invalid subpart becomes U+FFFD (Unicode's "best practice", which Python's
// errors="replace" follows). NULL only when out of memory.
int32_t *clip_utf8_decode(const char *s, int *n);

#endif
