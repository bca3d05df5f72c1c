// Folding LoRA adapters into base weights, for sampling with one or more experts at
// no extra cost per step: for every module of a LoRA file
//   W += weight * alpha / rank * B @ A      (W (out, in), B (out, r), A (r, in))
// SELMA's merge is exactly a sum of such weighted deltas. The file is read by
// lora_set_load (models/lora_set.h): PEFT / diffusers names ("unet.<module>.lora_A.weight",
// models/unet.c's LoRA saving, diffusers' save_lora_weights) or kohya's, 2-D or 1x1-conv
// (r, in, 1, 1) factors, alpha per module by lora_set.h's rules (diffusers'
// lora_adapter_metadata included). 1x1-convolution weights (out, in, 1, 1) fold like
// linears.
#ifndef SELMA_MODELS_LORA_FOLD_H
#define SELMA_MODELS_LORA_FOLD_H

#include "models/lora_set.h"
#include "models/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

// -1 with a message naming the file and tensor when a pair is incomplete, names a
// module the model lacks, or has shapes that do not fit; the model is unchanged then.
// *n_folded (may be NULL) gets the number of weights changed.
int unet_fold_lora(unet *m, const char *path, float weight, int *n_folded);
// The same for a set in memory; source names it in messages.
int unet_fold_lora_set(unet *m, const lora_set *s, float weight, const char *source);
// A command-line "FILE[:W]" (weight W, default 1): cuts arg at the colon when a number
// follows it (a path with a colon and no weight stays whole).
void lora_arg_split(char *arg, float *weight);

#ifdef __cplusplus
}
#endif
#endif
