// A LoRA adapter file as data, independent of any live model: a list of modules, each
// with its own rank and alpha (scale = alpha / rank), plus the file's other metadata.
// Experts are loaded into sets, merged (models/lora_merge.h) and saved again.
//
// Two on-disk forms, both read by one loader through one name normalizer:
//   PEFT / diffusers (what models/unet_io.c writes and unet_load / unet_fold_lora read):
//     unet.<module>.lora_A.weight (rank, in)   unet.<module>.lora_B.weight (out, rank)
//   kohya (sd-scripts): the module name with '.' -> '_':
//     lora_unet_<module_>.lora_down.weight (rank, in)
//     lora_unet_<module_>.lora_up.weight (out, rank)
//     lora_unet_<module_>.alpha             scalar
// A and B may also be (rank, in, 1, 1) / (out, rank, 1, 1) (PEFT's 1x1 Conv2d
// adapters); they are held as 2-D, the UNet's convention, and written back 4-D.
//
// Rank and alpha in the PEFT form (__metadata__, all values strings):
//   lora_rank           the rank of every module; written only when all share one,
//                       checked against every A on load
//   lora_alpha          the alpha of every module, when all share one
//   lora_alpha_pattern  JSON object {"<module>": alpha, ...} for every module, written
//                       instead of lora_alpha when alphas differ (a merge that gives
//                       modules different ranks); PEFT's LoraConfig.alpha_pattern with
//                       full module names
//   lora_adapter_metadata  diffusers' record (models/lora_diffusers.h): LoraConfig's r,
//                       lora_alpha, rank_pattern, alpha_pattern, "unet."-prefixed; the
//                       PEFT form is written with it so that diffusers applies the same
//                       scales (without it diffusers uses scale 1); the kohya form never
//                       (diffusers refuses a kohya file with it: the .alpha tensors rule)
// A module's alpha is its pattern entry, else lora_alpha, else lora_adapter_metadata's
// (PEFT's rules), else its rank (scale 1). When lora_adapter_metadata and the selma keys
// are both present they must agree.
// In the kohya form every module carries its .alpha tensor, which wins over metadata.
// Other metadata (lora_targets, merge provenance) is kept as strings, in file order.
#ifndef SELMA_MODELS_LORA_SET_H
#define SELMA_MODELS_LORA_SET_H

#include <stddef.h>

#include "runtime/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LORA_NAME_MAX 192

typedef struct lora_module {
    char name[LORA_NAME_MAX];  // "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    int rank, in, out;
    float alpha;               // scale = alpha / rank
    int conv1x1;               // adapts a 1x1 convolution (SD1's proj_in / proj_out): saved
                               // as (rank, in, 1, 1) / (out, rank, 1, 1), the shapes of
                               // PEFT's Conv2d LoRA layers, which refuse 2-D factors
    float *A;                  // (rank, in)
    float *B;                  // (out, rank); one allocation with A
} lora_module;

typedef struct lora_set {
    lora_module *mods;
    int n, cap;
    st_meta *meta;             // metadata other than lora_rank / lora_alpha / lora_alpha_pattern /
                               // lora_adapter_metadata (derived from the modules on save)
    int n_meta, cap_meta;
} lora_set;

typedef enum lora_format { LORA_FORMAT_PEFT, LORA_FORMAT_KOHYA } lora_format;

void lora_set_init(lora_set *s);
void lora_set_free(lora_set *s);
// A new module with A and B zeroed. NULL with a message on a duplicate or too long
// name, rank/in/out < 1 or alpha not positive and finite. The pointer is valid until
// the next lora_set_add.
lora_module *lora_set_add(lora_set *s, const char *name, int rank, int in, int out, float alpha);
lora_module *lora_set_find(const lora_set *s, const char *name);  // NULL if absent
// Sets or replaces a metadata entry (a managed rank/alpha key is refused).
int lora_set_meta_set(lora_set *s, const char *key, const char *value);
const char *lora_set_meta_get(const lora_set *s, const char *key);  // NULL if absent

// Validates everything before returning (errors name the file and the tensor or key):
// names of either form, A and B both present with agreeing shapes, ranks equal to
// lora_rank, alphas positive, values finite, no module given twice. Tensors of any
// numeric dtype are converted to f32. Modules come sorted by name.
int lora_set_load(lora_set *s, const char *path);
// Atomic. -1 with a message on an empty set or, for kohya, a module name that would
// not read back as itself (see lora_kohya_decode). The kohya form carries one alpha
// (the first module's by name) when the set's alphas differ, a module's own scale
// moved into its B (diffusers 0.42.1 misreads differing .alpha tensors): it reads back
// with the same A and deltas, B and alpha changed by float rounding of B alpha / alpha0.
int lora_set_save(const lora_set *s, const char *path, lora_format fmt);

// out (out, in) += weight * alpha / rank * B A, in double.
void lora_module_delta(const lora_module *m, double weight, double *out);

// The name normalizer. A file key -> (module, role); -1 (no message) if the key is
// neither form. role: 'A', 'B' or 'a' (the kohya alpha scalar).
int lora_key_parse(const char *key, char *module, size_t cap, char *role);
// kohya's joined name ("down_blocks_0_attentions_0_proj_in") -> the module name.
// '_' joins the pieces of diffusers' identifiers as well as the path, so it is read
// back with the UNet's identifiers that contain '_' (down_blocks, to_out, ...).
void lora_kohya_decode(const char *joined, char *module, size_t cap);
// A module's alpha by the PEFT-form rules above; -1 with a message naming the file and
// key on malformed metadata. For readers that work on the st_file directly
// (models/lora_fold.c, models/unet_io.c).
int lora_file_alpha(const st_file *f, const char *module, int rank, double *alpha);

#ifdef __cplusplus
}
#endif
#endif
