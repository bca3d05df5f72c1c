// UTF-8 in and out for the CLIP tokenizer, and GPT-2's byte-to-unicode map.
#include <stdlib.h>
#include <string.h>

#include "models/clip_tokenizer_impl.h"

int32_t clip_byte_to_unicode(int b) {
    // Bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF are printable and map to themselves.
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) return b;
    // The others, counted in byte order: 0x00..0x20 (33), 0x7F..0xA0 (34), 0xAD.
    int n = b <= 0x20 ? b : b <= 0xa0 ? 33 + (b - 0x7f) : 67;
    return 256 + n;
}

int clip_utf8_put(int32_t c, char *o) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | (c >> 6 & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | (c >> 12 & 0x3f));
    o[2] = (char)(0x80 | (c >> 6 & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

// One code point from s; *len: bytes consumed (>= 1). Invalid: U+FFFD over the
// longest prefix that could still have begun a valid sequence (the second byte's
// range depends on the lead: this is what rules out overlongs and surrogates).
static int32_t decode_one(const unsigned char *s, int *len) {
    unsigned c = s[0];
    int need;
    unsigned lo = 0x80, hi = 0xbf;
    if (c < 0x80) {
        *len = 1;
        return (int32_t)c;
    }
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) need = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4) need = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else {
        *len = 1;
        return 0xfffd;
    }
    int32_t cp = (int32_t)(c & (0x3f >> need));
    for (int i = 1; i <= need; i++) {
        unsigned b = s[i];  // a NUL stops here: it is not a continuation byte
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf)) {
            *len = i;
            return 0xfffd;
        }
        cp = cp << 6 | (int32_t)(b & 0x3f);
    }
    *len = need + 1;
    return cp;
}

int32_t *clip_utf8_decode(const char *s, int *n) {
    size_t bytes = strlen(s);
    int32_t *out = malloc((bytes + 1) * sizeof *out);
    if (!out) return NULL;
    int k = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int len;
        out[k++] = decode_one(p, &len);
        p += len;
    }
    *n = k;
    return out;
}
