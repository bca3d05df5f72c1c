// Merging LoRA experts into one adapter (SELMA's stage 4), with the combination types
// of PEFT's LoraModel.add_weighted_adapter. Notation: expert i has weight w_i, scale
// s_i = alpha_i / r_i and delta_i = s_i B_i A_i (out, in) for each module it adapts.
//
//   sum     SELMA's merge, the default: delta = sum_i w_i delta_i, exactly. Stored by
//           concatenation: A = [w_1 s_1 A_1; ...; w_N s_N A_N] (sum r_i, in),
//           B = [B_1, ..., B_N] (out, sum r_i), alpha = rank (scale 1).
//   cat     PEFT's name for the same construction; literally identical to sum here
//           (PEFT's cat also puts w_i s_i on A's rows).
//   linear  PEFT's linear: A = sum_i sqrt(w_i s_i) A_i, B = sum_i sqrt(w_i s_i) B_i,
//           alpha = rank. NOT the sum of deltas: B A = sum_ij sqrt(w_i s_i w_j s_j)
//           B_i A_j has cross terms i != j. Needs one rank per module and w_i s_i >= 0.
//   svd     the exact sum above truncated to rank k by SVD (best rank-k approximation,
//           Eckart-Young): B = U_k S_k, A = V_k^T (PEFT's placement of S), alpha = k.
//   ties, dare_linear, dare_ties, magnitude_prune
//           PEFT's *_svd variants: the combination acts on the dense deltas delta_i
//           (elementwise on A and B, as PEFT's non-svd variants do, would compare
//           entries of different experts' factors, which live in unrelated bases), then
//           the result is truncated to rank k by SVD as for svd:
//           trim     magnitude_prune / ties keep the floor(density * out * in) entries of
//                    largest |delta_i| (ties: the lower flat index first);
//           drop     dare keeps entry j of expert i with probability density, when
//                    philox_uniform(seed, fnv1a(module) + i, j) < density, and rescales
//                    kept entries by 1 / density (1 / (1 - p), p = drop rate);
//           elect    ties / dare_ties: per entry the majority sign of the trimmed,
//                    unweighted deltas, sign(sum_i t_i) ("total") or sign(sum_i sign t_i)
//                    ("frequency"), + on a tie; entry i counts when its sign equals it
//                    (zeros never count);
//           combine  ties / dare_ties: sum_i w_i t_i [counts] / max(1, #counts) (a mean
//                    over the agreeing experts); magnitude_prune / dare_linear:
//                    sum_i w_i t_i.
//           density 1 trims and drops nothing.
//
// Default weights (weights == NULL): 1/N for every method that sums, N the number of
// experts (SELMA's released code divided by the length of a string instead; never
// that), and 1 for ties and dare_ties, whose combine step already averages; either
// way the default merge is an average of the experts on their own scale.
// PEFT's *_svd code weights get_delta_weight(), which already holds s_i, by w_i s_i,
// i.e. s_i twice; here s_i counts once, which agrees with PEFT when alpha = rank.
//
// Modules: the union over the experts, in first-seen order; an expert without a module
// takes no part in it (PEFT's rule). A module's (out, in) must agree across experts.
// The rank k of svd-based methods is o->rank, or the largest expert rank when 0
// (PEFT's default), cut to the largest rank the delta can have (min(out, in), and
// sum r_i for svd): k at or above that rank represents the delta exactly.
// Every output module has alpha = rank (scale 1). Metadata: lora_merge_method,
// lora_merge_weights, lora_merge_{rank,density,sign,seed} where they apply, and
// lora_targets as the union of the experts' lists.
// SVD: Householder QR of the factor A^T, then one-sided Jacobi (Hestenes) on the small
// factor, in double (the build machines' OpenBLAS ships no lapacke.h); cost
// O(R^2 (out + in)) for sum/svd, O(min(out, in)^2 max(out, in)) for the dense methods.
#ifndef SELMA_MODELS_LORA_MERGE_H
#define SELMA_MODELS_LORA_MERGE_H

#include <stdint.h>

#include "models/lora_set.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lora_merge_method {
    LORA_MERGE_SUM,  // 0: the zeroed options are SELMA's merge
    LORA_MERGE_CAT,
    LORA_MERGE_LINEAR,
    LORA_MERGE_SVD,
    LORA_MERGE_TIES,
    LORA_MERGE_DARE_LINEAR,
    LORA_MERGE_DARE_TIES,
    LORA_MERGE_MAGNITUDE_PRUNE,
    LORA_MERGE_COUNT
} lora_merge_method;

typedef enum lora_merge_sign { LORA_SIGN_TOTAL, LORA_SIGN_FREQUENCY } lora_merge_sign;

// Zero-initialised (or NULL) means: sum, default rank, density 0.2, total, seed 0.
typedef struct lora_merge_opts {
    lora_merge_method method;
    int rank;          // svd-based methods: output rank k; 0: the largest expert rank
    double density;    // fraction kept, in (0, 1]; 0: 0.2 (the TIES paper's top-20%)
    lora_merge_sign sign;
    uint64_t seed;     // dare's drop mask
} lora_merge_opts;

const char *lora_merge_method_name(lora_merge_method m);  // "sum", "cat", "linear", ...
int lora_merge_method_parse(const char *s, lora_merge_method *m);  // -1 with a message

// weights: n finite numbers, or NULL for the defaults above. out is initialised here
// (any previous contents are not freed). -1 with a message naming the module and
// expert on disagreeing shapes, ranks (linear) or weights, or on bad options; out is
// left empty then.
int lora_merge(const lora_set *experts, int n, const double *weights, const lora_merge_opts *o,
               lora_set *out);

#ifdef __cplusplus
}
#endif
#endif
