#include "data/rouge.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/error.h"

static int is_alnum(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int rouge_tokenize(const char *text, uint64_t *ids, int max) {
    int n = 0;
    const unsigned char *s = (const unsigned char *)text;
    while (*s && n < max) {
        while (*s && !is_alnum(*s)) s++;
        if (!*s) break;
        uint64_t h = 1469598103934665603ULL;  // FNV-1a over the lower-cased word
        while (*s && is_alnum(*s)) {
            int c = *s >= 'A' && *s <= 'Z' ? *s + 32 : *s;
            h = (h ^ (uint64_t)c) * 1099511628211ULL;
            s++;
        }
        ids[n++] = h;
    }
    return n;
}

int rouge_lcs(const uint64_t *a, int na, const uint64_t *b, int nb) {
    int row[ROUGE_MAX_TOKENS + 1];  // one DP row over b; nb <= ROUGE_MAX_TOKENS
    CHECK(nb <= ROUGE_MAX_TOKENS);
    memset(row, 0, sizeof(int) * (size_t)(nb + 1));
    for (int i = 0; i < na; i++) {
        int diag = 0;  // row[j] of the previous i, before overwriting
        for (int j = 1; j <= nb; j++) {
            int up = row[j];
            row[j] = a[i] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    return row[nb];
}

static double f_of(const uint64_t *a, int na, const uint64_t *b, int nb) {
    if (na == 0 || nb == 0) return 0;
    int l = rouge_lcs(a, na, b, nb);
    if (l == 0) return 0;
    double p = (double)l / na, r = (double)l / nb;
    return 2 * p * r / (p + r);
}

double rouge_l(const char *a, const char *b) {
    uint64_t ta[ROUGE_MAX_TOKENS], tb[ROUGE_MAX_TOKENS];
    int na = rouge_tokenize(a, ta, ROUGE_MAX_TOKENS), nb = rouge_tokenize(b, tb, ROUGE_MAX_TOKENS);
    return f_of(ta, na, tb, nb);
}

void rouge_pool_init(rouge_pool *p) { memset(p, 0, sizeof *p); }

void rouge_pool_free(rouge_pool *p) {
    for (int i = 0; i < p->n; i++) free(p->ids[i]);
    free(p->ids);
    free(p->len);
    memset(p, 0, sizeof *p);
}

void rouge_pool_add(rouge_pool *p, const char *text) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->ids = realloc(p->ids, sizeof(uint64_t *) * (size_t)p->cap);
        p->len = realloc(p->len, sizeof(int) * (size_t)p->cap);
        CHECK(p->ids && p->len);
    }
    uint64_t t[ROUGE_MAX_TOKENS];
    int n = rouge_tokenize(text, t, ROUGE_MAX_TOKENS);
    p->ids[p->n] = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    CHECK(p->ids[p->n]);
    memcpy(p->ids[p->n], t, sizeof(uint64_t) * (size_t)n);
    p->len[p->n++] = n;
}

double rouge_pool_max(const rouge_pool *p, const char *text, int *which) {
    uint64_t t[ROUGE_MAX_TOKENS];
    int n = rouge_tokenize(text, t, ROUGE_MAX_TOKENS);
    double best = 0;
    int arg = -1;
    for (int i = 0; i < p->n; i++) {
        // F <= 2 min / (na + nb): skip members too different in length to beat best
        int m = n < p->len[i] ? n : p->len[i];
        if (arg >= 0 && 2.0 * m / (n + p->len[i]) <= best) continue;
        double f = f_of(t, n, p->ids[i], p->len[i]);
        if (arg < 0 || f > best) { best = f; arg = i; }
    }
    if (which) *which = arg;
    return best;
}
