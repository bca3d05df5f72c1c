// diffusers' LoRA metadata: the LoraConfig that diffusers (>= 0.34) stores with a LoRA
// file and reads back instead of guessing. A pipeline's file
// (StableDiffusionLoraLoaderMixin.save_lora_weights(..., unet_lora_adapter_metadata=))
// holds in __metadata__
//   lora_adapter_metadata  JSON: {"unet.r": 4, "unet.lora_alpha": 8,
//                          "unet.rank_pattern": {"<module>": 2}, "unet.alpha_pattern": {...},
//                          "unet.target_modules": [...], ...}
// (LoraConfig's fields, "unet."-prefixed). When the key is absent diffusers takes each
// module's rank from lora_B's shape and sets alpha = rank (scale 1), so a file whose
// alpha differs from its rank must carry it for diffusers to apply the right scale.
//
// PEFT's rule for a module (peft.utils.other.get_pattern_key): the first pattern key,
// in file order, that matches the module's full name gives its rank / alpha, else r /
// lora_alpha (LoraConfig's defaults: 8 and 8). A key matches the name when it equals it,
// ends it after a '.', or is "^<name>"; keys are compared literally (PEFT reads them as
// regexes; UNet module names hold no metacharacters other than '.').
#ifndef SELMA_MODELS_LORA_DIFFUSERS_H
#define SELMA_MODELS_LORA_DIFFUSERS_H

#include "runtime/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LORA_DIFFUSERS_META "lora_adapter_metadata"

// A module's alpha from the file's lora_adapter_metadata. *found = 0 (and 0 returned)
// when the file has none. -1 with a message naming the file, the module and the field
// on malformed JSON, on a use_rslora / use_dora config (another scale or weight
// formula that selma does not apply), or when the config's rank for the module is
// not `rank` (A's rank: PEFT would refuse to load such a file).
int lora_diffusers_alpha(const st_file *f, const char *module, int rank, int *found, double *alpha);

// The lora_adapter_metadata value for modules names[i] with ranks[i] and alphas[i]
// (malloc'd JSON). r and lora_alpha are the most common rank and alpha (the first on a
// tie), the patterns list the modules that differ, target_modules every module.
char *lora_diffusers_meta_json(const char *const *names, const int *ranks, const double *alphas, int n);

#ifdef __cplusplus
}
#endif
#endif
