// A LoRA mixture of experts over N frozen skill experts (the comparison in SELMA's
// paper, in the style of MoLE / X-LoRA): at every linear the expert files adapt,
//   out = W x + b + sum_e g_e(x) * scale_e * B_e A_e x,   g(x) = softmax((W_r x + b_r) / T)
// per token, with one router W_r (E, in), b_r (E) per adapted linear. The experts'
// A and B are frozen; only the routers train (on the mixed data of every skill).
// Routers start at zero, so every gate starts at 1/E: SELMA's uniform merge of the
// experts (tests/test_lora_moe.c checks the equality with unet_fold_lora at 1/E).
// The op is kernels/moe_lora.h.
//
//   unet m;  unet_build(&m, &cfg, UNET_TRAIN_MOE, NULL);  unet_load(&m, base, PARAM_BASE);
//   lora_moe moe;  lora_moe_init(&moe, &m, &(lora_moe_config){3, {f0, f1, f2}, 1.0f});
//   unet_alloc_activations(&m, B, T);          // (or before init: init re-lays them out)
//   unet_forward / unet_backward as usual;  the router gradients land in moe.router_grads
//   lora_moe_save(&moe, "routers.safetensors");   ...   lora_moe_free(&moe); unet_free(&m);
//
// Expert files are LoRA files as unet_save writes them (PEFT / diffusers names
// "unet.<module>.lora_A.weight" (r, in) and ".lora_B.weight" (out, r), alpha in
// __metadata__ "lora_alpha", rank when absent, as models/lora_fold.h). Every expert
// must adapt the same modules; ranks and alphas may differ between experts.
//
// Training: models/train.c runs a UNET_TRAIN_MOE model in its LoRA mode (text encoder
// frozen, one group): t2i_build(&m, UNET_TRAIN_MOE, NULL); load the base;
// lora_moe_init(&moe, &m.unet, ...); trainer_init(&tr, &m, ...); trainer_step ...;
// lora_moe_save. The trainable state is ONE flat pair of arrays,
//   params = (float *)moe.router.base, grads = (float *)moe.router_grads.base,
//   n = moe.router.size / sizeof(float)     (lora_moe_trainable gives the three)
// laid out identically (same tensors, order and alignment; padding is zero in both
// and stays zero under AdamW). unet_zero_grad zeroes the router gradients too; the
// UNet itself has no gradient arena in this mode.
//
// The router file (lora_moe_save): tensors "<module>.router.weight" (E, in) and
// "<module>.router.bias" (E), diffusers' module names without the "unet." prefix;
// __metadata__ "moe_n_experts", "moe_temperature", "moe_expert_<i>" (the path as
// given to init) and "moe_expert_<i>_fnv1a" (64-bit FNV-1a of the expert file, 16
// hex digits), so that routers are never paired with other experts than their own.
//
// The lora_moe must stay at its address while attached (m->moe points to it). Free it
// before the UNet: freeing detaches it from the UNet's linears.
#ifndef SELMA_MODELS_LORA_MOE_H
#define SELMA_MODELS_LORA_MOE_H

#include <stdint.h>

#include "models/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LORA_MOE_MAX_EXPERTS 16

typedef struct lora_moe_config {
    int n_experts;
    const char *files[LORA_MOE_MAX_EXPERTS];  // expert LoRA files
    float temperature;                        // router softmax temperature (> 0; 1 = plain)
} lora_moe_config;

// One adapted linear. E experts, R = roff[E] packed rank.
typedef struct moe_linear {
    char module[UNET_NAME_MAX];  // "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    unet_linear *lin;            // the UNet's linear it is attached to
    int E, R;
    int roff[LORA_MOE_MAX_EXPERTS + 1];  // expert e: rows roff[e].. of a, columns of b
    float scale[LORA_MOE_MAX_EXPERTS];   // alpha_e / R_e
    float temperature;
    float *a, *b;       // (R, in), (out, R): the experts' lora_A stacked, lora_B side by side
    float *wr, *br;     // (E, in), (E): the router
    float *dwr, *dbr;   // same shapes; NULL when the routers do not train
    // activations (the UNet's arena), N tokens of the layer
    float *h, *g, *ws;  // (N, R) inp @ a^T, (N, E) gates, moe_lora_scratch_floats(N, R, E)
} moe_linear;

typedef struct lora_moe {
    unet *m;
    int n_experts;
    float temperature;
    char *files[LORA_MOE_MAX_EXPERTS];
    uint64_t hash[LORA_MOE_MAX_EXPERTS];   // FNV-1a of each expert file
    moe_linear *mods;
    int n_mods;
    arena experts;       // every a and b, frozen
    arena router;        // every wr, br (trainable)
    arena router_grads;  // same layout; not allocated unless the UNet is UNET_TRAIN_MOE
} lora_moe;

// Loads and checks the experts, attaches them to the UNet (built UNET_TRAIN_MOE to
// train the routers, or UNET_FROZEN to sample; no lora_config), routers zero. Errors
// name the file and tensor (a tensor that is not a LoRA tensor, a missing partner, a
// module the model lacks or that is not a linear, shapes that do not fit, a module set
// that differs from the first expert's); the UNet is untouched then.
int lora_moe_init(lora_moe *moe, unet *m, const lora_moe_config *cfg);
void lora_moe_free(lora_moe *moe);
void lora_moe_zero_grad(lora_moe *moe);
// The flat trainable arrays (see above); *grads is NULL unless training.
void lora_moe_trainable(lora_moe *moe, float **params, float **grads, size_t *n);

// Routers + experts' list and hashes + temperature (see above).
int lora_moe_save(const lora_moe *moe, const char *path);
// Routers into an initialised MoE. The file's experts (count and hashes) and
// temperature must match; tensors missing, unexpected or of the wrong shape are
// named. The routers are unchanged unless everything matches.
int lora_moe_load(lora_moe *moe, const char *path);
// lora_moe_init from the file's expert list and temperature, then lora_moe_load.
int lora_moe_open(lora_moe *moe, unet *m, const char *path);

// The hooks unet_linear_{acts,forward,backward} call for a linear with l->moe set.
void moe_linear_acts(moe_linear *x, arena *a, int N);
void moe_linear_forward(const unet_linear *l, float *out, const float *inp, int N);
// dinp (N, in) assigned, may be NULL; router gradients accumulate.
void moe_linear_backward(const unet_linear *l, float *dinp, const float *dout, const float *inp,
                         int N);

#ifdef __cplusplus
}
#endif
#endif
