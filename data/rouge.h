// ROUGE-L F-measure between prompts, the diversity filter of prompt generation.
// Matches Google's rouge_score package (rouge_scorer.RougeScorer(["rougeL"]), no
// stemmer), which Self-Instruct and SELMA's released code use: text lower-cased,
// every run of characters other than ASCII letters and digits is a separator, and
// F = 2PR / (P + R) with P = LCS / |candidate|, R = LCS / |reference| (rouge_score's
// fmeasure is the harmonic mean, not ROUGE-1.5.5's beta-weighted F). Two empty token
// lists score 0, as in rouge_score.
#ifndef SELMA_DATA_ROUGE_H
#define SELMA_DATA_ROUGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ROUGE_MAX_TOKENS 256  // longer texts are cut here (prompts are far shorter)

// Word tokens as 64-bit hashes of their lower-cased text; returns how many (<= max).
int rouge_tokenize(const char *text, uint64_t *ids, int max);
// Length of the longest common subsequence of two token lists.
int rouge_lcs(const uint64_t *a, int na, const uint64_t *b, int nb);
// ROUGE-L F-measure of two texts, in [0, 1]; symmetric.
double rouge_l(const char *a, const char *b);

// The set of prompts kept so far, tokenized once.
typedef struct rouge_pool {
    int n, cap;
    uint64_t **ids;  // (n) token lists
    int *len;        // (n)
} rouge_pool;

void rouge_pool_init(rouge_pool *p);
void rouge_pool_free(rouge_pool *p);
void rouge_pool_add(rouge_pool *p, const char *text);
// Highest ROUGE-L of text against any member (0 for an empty pool); *which gets that
// member's index (or -1) when non-NULL.
double rouge_pool_max(const rouge_pool *p, const char *text, int *which);

#ifdef __cplusplus
}
#endif
#endif
