// Folding LoRA adapters into base weights, for sampling with one or more experts at
// no extra cost per step: for every adapter pair in a LoRA file
//   W += weight * alpha / rank * B @ A      (W (out, in), B (out, r), A (r, in))
// SELMA's merge is exactly a sum of such weighted deltas. Files use PEFT / diffusers
// names with the "unet." prefix ("unet.<module>.lora_A.weight", models/unet.c's LoRA
// saving); rank comes from A's shape, alpha per module from __metadata__
// "lora_alpha_pattern", else "lora_alpha", else the rank (scale 1), as models/lora_set.h
// defines. 1x1-convolution weights (out, in, 1, 1) fold like linears.
#ifndef SELMA_MODELS_LORA_FOLD_H
#define SELMA_MODELS_LORA_FOLD_H

#include "models/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

// -1 with a message naming the file and tensor when a pair is incomplete, names a
// module the model lacks, or has shapes that do not fit; the model is unchanged then.
// *n_folded (may be NULL) gets the number of weights changed.
int unet_fold_lora(unet *m, const char *path, float weight, int *n_folded);

#ifdef __cplusplus
}
#endif
#endif
