// Encoding with the CLIP tokenizer: the five steps of clip_tokenizer.h, on arrays of
// code points. Unicode classes, NFC and lower-casing come from ICU.
#ifdef SELMA_ICU
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "models/clip_tokenizer.h"
#include "models/clip_tokenizer_impl.h"
#include "runtime/error.h"

typedef struct bpe_symbol {
    int id, prev, next, alive;
} bpe_symbol;

typedef struct bpe_pair {
    int rank, pos, merged;
} bpe_pair;

typedef struct encoder {
    const clip_tokenizer *t;
    int *out;        // (limit) content ids, between bos and eos
    int n, limit, dropped;
    int oom;
    bpe_symbol *sym; // scratch for one piece, grown as needed
    bpe_pair *heap;
    int sym_cap, heap_cap, heap_n;
} encoder;

static void emit(encoder *e, int id) {
    if (e->n < e->limit) e->out[e->n++] = id;
    else e->dropped++;
}

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

// Min-heap on (rank, pos): lowest rank first, leftmost on ties, as tokenizers' BPE.
static int pair_less(const bpe_pair *a, const bpe_pair *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(encoder *e, int left, int right) {
    int merged, rank = clip_merge_rank(e->t, e->sym[left].id, e->sym[right].id, &merged);
    if (rank < 0) return;
    bpe_pair p = {rank, left, merged};
    int i = e->heap_n++;  // capacity: at most one push per symbol plus two per merge
    for (; i > 0 && pair_less(&p, &e->heap[(i - 1) / 2]); i = (i - 1) / 2) e->heap[i] = e->heap[(i - 1) / 2];
    e->heap[i] = p;
}

static bpe_pair heap_pop(encoder *e) {
    bpe_pair top = e->heap[0], last = e->heap[--e->heap_n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= e->heap_n) break;
        if (c + 1 < e->heap_n && pair_less(&e->heap[c + 1], &e->heap[c])) c++;
        if (!pair_less(&e->heap[c], &last)) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (e->heap_n) e->heap[i] = last;
    return top;
}

// BPE over one piece's UTF-8 bytes; emits the resulting ids.
static void bpe_piece(encoder *e, const unsigned char *bytes, int nb) {
    const clip_tokenizer *t = e->t;
    if (grow((void **)&e->sym, &e->sym_cap, nb, sizeof *e->sym) ||
        grow((void **)&e->heap, &e->heap_cap, 3 * nb, sizeof *e->heap)) {
        e->oom = 1;
        return;
    }
    for (int k = 0; k < nb; k++) {
        int id = k == nb - 1 ? t->byte_end_id[bytes[k]] : t->byte_id[bytes[k]];
        e->sym[k] = (bpe_symbol){id < 0 ? t->unk_id : id, k - 1, k + 1 < nb ? k + 1 : -1, 1};
    }
    e->heap_n = 0;
    for (int k = 0; k + 1 < nb; k++) heap_push(e, k, k + 1);
    while (e->heap_n) {
        bpe_pair top = heap_pop(e);
        bpe_symbol *s = &e->sym[top.pos];
        if (!s->alive || s->next < 0) continue;
        int merged;
        // A stale entry: the pair at pos changed since it was pushed. Like tokenizers,
        // only the merged id is compared.
        if (clip_merge_rank(t, s->id, e->sym[s->next].id, &merged) < 0 || merged != top.merged) continue;
        bpe_symbol *r = &e->sym[s->next];
        s->id = merged;
        r->alive = 0;
        s->next = r->next;
        if (s->next >= 0) e->sym[s->next].prev = top.pos;
        if (s->prev >= 0) heap_push(e, s->prev, top.pos);
        if (s->next >= 0) heap_push(e, top.pos, s->next);
    }
    for (int k = 0; k >= 0; k = e->sym[k].next) emit(e, e->sym[k].id);
}

static int is_letter(int32_t c) { return (U_GET_GC_MASK(c) & U_GC_L_MASK) != 0; }
static int is_number(int32_t c) { return (U_GET_GC_MASK(c) & U_GC_N_MASK) != 0; }
static int is_space(int32_t c) { return u_isUWhiteSpace(c); }

static int match_ascii(const int32_t *s, int i, int n, const char *lit) {
    int k = 0;
    for (; lit[k]; k++)
        if (i + k >= n || s[i + k] != (unsigned char)lit[k]) return 0;
    return k;
}

// End of the piece that starts at s[i] (not a space) under CLIP's pattern (clip = 1)
// or ByteLevel's GPT-2 pattern (clip = 0: no special strings, numbers in runs).
static int piece_end(const int32_t *s, int i, int n, int clip) {
    static const char *const specials[] = {"<|startoftext|>", "<|endoftext|>"};
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (int k = 0; clip && k < 2; k++) {
        int len = match_ascii(s, i, n, specials[k]);
        if (len) return i + len;
    }
    for (int k = 0; k < 7; k++) {
        int len = match_ascii(s, i, n, contractions[k]);
        if (len) return i + len;
    }
    if (is_letter(s[i])) {
        while (i < n && is_letter(s[i])) i++;
        return i;
    }
    if (is_number(s[i])) {
        if (clip) return i + 1;
        while (i < n && is_number(s[i])) i++;
        return i;
    }
    while (i < n && !is_space(s[i]) && !is_letter(s[i]) && !is_number(s[i])) i++;
    return i;
}

static void encode_pieces(encoder *e, const int32_t *s, int n) {
    for (int i = 0; i < n && !e->oom;) {
        if (is_space(s[i])) {
            i++;
            continue;
        }
        int end = piece_end(s, i, n, 1);
        for (int j = i; j < end && !e->oom;) {
            int sub = piece_end(s, j, end, 0);
            unsigned char bytes[4 * 64];
            unsigned char *b = sub - j <= 64 ? bytes : malloc(4 * (size_t)(sub - j));
            if (!b) {
                e->oom = 1;
                return;
            }
            int nb = 0;
            for (int k = j; k < sub; k++) nb += clip_utf8_put(s[k], (char *)b + nb);
            bpe_piece(e, b, nb);
            if (b != bytes) free(b);
            j = sub;
        }
        i = end;
    }
}

// Leftmost-longest match of the specials with this `normalized` flag; calls `rest`
// on the text between matches.
static void split_specials(encoder *e, const int32_t *s, int n, int normalized,
                           void (*rest)(encoder *, const int32_t *, int)) {
    const clip_tokenizer *t = e->t;
    int start = 0;
    for (int i = 0; i < n && !e->oom; i++) {
        const clip_special *best = NULL;
        for (int k = 0; k < t->n_special; k++) {
            const clip_special *sp = &t->special[k];
            if (sp->normalized != normalized || sp->n > n - i || (best && sp->n <= best->n)) continue;
            if (!memcmp(s + i, sp->cps, (size_t)sp->n * sizeof *s)) best = sp;
        }
        if (!best) continue;
        rest(e, s + start, i - start);
        emit(e, best->id);
        start = i + best->n;
        i = start - 1;
    }
    if (!e->oom) rest(e, s + start, n - start);
}

static void encode_normalized(encoder *e, const int32_t *s, int n) {
    split_specials(e, s, n, 1, encode_pieces);
}

// NFC of s[0..n) as UTF-16 in *u (malloc'd); its length, or -1.
static int nfc_utf16(const int32_t *s, int n, UChar **u) {
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2 *nfc = unorm2_getNFCInstance(&err);
    int32_t len16 = 0;
    UChar *src = malloc((2 * (size_t)n + 1) * sizeof *src);
    if (!src || U_FAILURE(err)) {
        free(src);
        return -1;
    }
    u_strFromUTF32(src, 2 * n + 1, &len16, s, n, &err);
    int cap = 3 * len16 + 16, len = -1;  // NFC grows UTF-16 text at most 3x
    *u = U_SUCCESS(err) ? malloc((size_t)cap * sizeof **u) : NULL;
    if (*u) len = unorm2_normalize(nfc, src, len16, *u, cap, &err);
    free(src);
    if (U_FAILURE(err)) {
        free(*u);
        *u = NULL;
        return -1;
    }
    return len;
}

// Step 2 (NFC, White_Space runs -> " ", lower-case), then steps 1 (normalized
// specials) and 3-4.
static void encode_raw_segment(encoder *e, const int32_t *s, int n) {
    if (!n) return;
    UChar *u = NULL;
    int len = nfc_utf16(s, n, &u);
    // Full lower-casing maps one code point to at most 3.
    int32_t *norm = len < 0 ? NULL : malloc((3 * (size_t)len + 1) * sizeof *norm);
    if (!norm) {
        free(u);
        e->oom = 1;
        return;
    }
    int m = 0;
    for (int i = 0; i < len;) {
        UChar32 c;
        U16_NEXT(u, i, len, c);
        if (is_space(c)) {
            if (!m || norm[m - 1] != ' ') norm[m++] = ' ';
        } else if (c < 0x80) {
            norm[m++] = c >= 'A' && c <= 'Z' ? c + 32 : c;
        } else {
            // One code point at a time with the root locale: no context (final sigma)
            // and no language rules, as Rust's char::to_lowercase in tokenizers.
            UChar one[2], low[8];
            int32_t n1 = 0, nl;
            UErrorCode err = U_ZERO_ERROR;
            U16_APPEND_UNSAFE(one, n1, c);
            nl = u_strToLower(low, 8, one, n1, "", &err);
            for (int k = 0; U_SUCCESS(err) && k < nl;) {
                UChar32 lc;
                U16_NEXT(low, k, nl, lc);
                norm[m++] = lc;
            }
            if (U_FAILURE(err)) norm[m++] = c;
        }
    }
    free(u);
    encode_normalized(e, norm, m);
    free(norm);
}

int clip_tokenizer_encode(const clip_tokenizer *t, const char *text, int max_len, int *ids,
                          int *n_dropped) {
    if (!t || !text || !ids) return err_set("clip_tokenizer_encode: NULL argument");
    if (!t->n_tokens) return err_set("clip_tokenizer_encode: the tokenizer is not loaded");
    if (max_len <= 0) max_len = t->model_max_length;
    if (max_len < 2) return err_set("clip_tokenizer_encode: max_len %d < 2", max_len);
    if (strlen(text) > (size_t)1 << 28) return err_set("clip_tokenizer_encode: text of %zu bytes", strlen(text));
    int n;
    int32_t *cps = clip_utf8_decode(text, &n);
    encoder e = {.t = t, .out = ids + 1, .limit = max_len - 2};
    if (!cps) return err_set("clip_tokenizer_encode: out of memory");
    split_specials(&e, cps, n, 0, encode_raw_segment);
    free(cps);
    free(e.sym);
    free(e.heap);
    if (e.oom) return err_set("clip_tokenizer_encode: out of memory");
    ids[0] = t->bos_id;
    ids[e.n + 1] = t->eos_id;
    for (int i = e.n + 2; i < max_len; i++) ids[i] = t->pad_id;
    if (n_dropped) *n_dropped = e.dropped;
    return e.n + 2;
}

#else  // no ICU (meson -Dicu=disabled, or none found): the tokenizer's Unicode rules need it
#include "models/clip_tokenizer.h"
#include "runtime/error.h"

int clip_tokenizer_encode(const clip_tokenizer *t, const char *text, int max_len, int *ids, int *n_dropped) {
    (void)t, (void)text, (void)max_len, (void)ids, (void)n_dropped;
    return err_set("CLIP tokenizer: this build has no ICU (libicu-dev; meson -Dicu=enabled)");
}
#endif
