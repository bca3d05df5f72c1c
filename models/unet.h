// The denoising UNet in Stable Diffusion's layout: diffusers' UNet2DConditionModel
// with CrossAttnDownBlock2D / DownBlock2D, UNetMidBlock2DCrossAttn and the mirrored
// CrossAttnUpBlock2D / UpBlock2D, one Transformer2DModel layer per attention.
// Parameters carry diffusers' state-dict keys ("down_blocks.0.resnets.0.conv1.weight"),
// so a real SD 1.x/2.x checkpoint loads by name; one config drives SD and the
// shapes-world model alike.
//
//   unet m;  unet_build(&m, &cfg, UNET_TRAIN_FULL, NULL);   // parameters (+ grads)
//   unet_init_random(&m, seed) or unet_load(&m, "unet.safetensors", PARAM_BASE);
//   unet_alloc_activations(&m, B, T);                       // for batches up to B
//   unet_forward(&m, x, t, ctx, B);   -> m.out (B, out_channels, H, W)
//   unet_zero_grad(&m); unet_backward(&m, dout, NULL, dctx);
//
// Heads: diffusers' SD1 configs put the number of heads in `attention_head_dim`
// (a known naming quirk: UNet2DConditionModel uses num_attention_heads =
// attention_head_dim when the former is unset). Here num_heads[] is the number of
// heads per level; the head dim is channels / heads. SD1: 8 heads at every level;
// SD2 sets attention_head_dim = (5, 10, 20, 20), i.e. head dim 64 at C = 320..1280,
// which diffusers also treats as head *counts* 5, 10, 20, 20.
//
// LoRA: with a lora_config of rank r, every linear whose name ends in one of the
// targets gets "<module>.lora_A.weight" (r, in) and "<module>.lora_B.weight"
// (out, r); out = base + alpha / r * B A x. In UNET_TRAIN_LORA mode only those are
// trainable and the base weights have no gradient buffer at all. A LoRA file holds
// the adapter tensors with a "unet." prefix (diffusers' / PEFT's convention for a
// pipeline's LoRA file: "unet.down_blocks.1.attentions.0.transformer_blocks.0.
// attn1.to_q.lora_A.weight") and rank, alpha and targets in __metadata__.
//
// Devices: unet_build_device(..., DEVICE_CUDA) puts parameters, gradients and
// activations in device memory, float32, and every forward/backward kernel runs on
// the GPU (models/device_ops.h); LoRA adapters included. Then x, context,
// class_labels, dout, dx, dcontext, dclass and m->out are device pointers, while the
// timesteps t stay host memory on every device (the samplers and the trainer draw
// them on the host; the model copies B floats over). Host code must not read a CUDA
// model's tensors: unet_copy_params moves weights between a CPU and a CUDA model of
// the same build; unet_save / unet_load stage a CUDA model's weights through a CPU twin
// (a host copy of every weight while they run); unet_init_random draws on the host and
// copies. models/bundle.h's t2i_unet_to_device moves a loaded model's UNet to a device.
// Not on CUDA yet: a LoRA mixture of experts (lora_moe_init refuses).
#ifndef SELMA_MODELS_UNET_H
#define SELMA_MODELS_UNET_H

#include <stdint.h>

#include "kernels/adamw.h"
#include "models/unet_modules.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UNET_MAX_LEVELS 4
#define UNET_MAX_LAYERS 3  // layers_per_block (SD: 2); up blocks have one more
#define UNET_MAX_SKIPS (1 + UNET_MAX_LEVELS * (UNET_MAX_LAYERS + 1))

typedef struct unet_config {
    int in_channels, out_channels;           // SD: 4, 4 (latents); shapes: 3, 3 (RGB)
    int n_levels;                            // len(block_out_channels)
    int block_out_channels[UNET_MAX_LEVELS]; // SD: 320, 640, 1280, 1280
    int layers_per_block;                    // SD: 2
    int cross_attn[UNET_MAX_LEVELS];         // 1: CrossAttn{Down,Up}Block2D at this level
    int num_heads[UNET_MAX_LEVELS];          // heads per level (see the quirk above)
    int cross_attention_dim;                 // text width: SD1 768, SD2 1024, shapes 128
    int norm_num_groups;                     // SD: 32
    float norm_eps;                          // ResNet and output GroupNorm eps, SD: 1e-5
    int use_linear_projection;               // proj_in/out as Linear (SD2) or 1x1 conv (SD1)
    int flip_sin_to_cos;                     // SD: 1
    float freq_shift;                        // SD: 0
    int sample_size;                         // H = W of the input (SD1: 64 latents)
    // 0: no class embedding (SD). > 0: diffusers' class_embed_type "projection" with
    // projection_class_embeddings_input_dim = class_embed_dim: a vector per image (the
    // pooled text embedding, as Imagen and unCLIP condition) goes through
    // class_embedding.linear_1, SiLU, linear_2 and is added to the time embedding, so
    // the caption reaches every ResNet block, not only the cross-attention layers.
    int class_embed_dim;
} unet_config;

// Time embedding width is 4 * block_out_channels[0]; the mid block always has
// attention (UNetMidBlock2DCrossAttn) with num_heads[n_levels - 1] heads.
unet_config unet_config_sd15(void);
unet_config unet_config_shapes(void);  // NOTES.md: 32/64/64 at 32/16/8, attn at 16 and 8
unet_config unet_config_tiny(void);    // tests: 4/8 channels at 8x8/4x4 (= the "tiny" fixture)
int unet_config_check(const unet_config *c);  // -1 with a message naming the field

typedef enum unet_train_mode {
    UNET_FROZEN,      // no gradients (sampling; backward may still give dcontext)
    UNET_TRAIN_FULL,  // every base parameter trainable (pretraining); no adapters
    UNET_TRAIN_LORA,  // adapters trainable, base frozen
    UNET_TRAIN_MOE,   // base frozen, no adapters: a LoRA mixture of experts attached after
                      // the build trains its routers (models/lora_moe.h)
} unet_train_mode;

typedef struct unet_down_level {
    int C, H, W, has_attn, has_down;
    unet_resnet resnets[UNET_MAX_LAYERS];
    unet_transformer attentions[UNET_MAX_LAYERS];
    unet_conv downsampler;  // 3x3 stride 2 pad 1 ("downsamplers.0.conv")
    float *down_out;        // (B, C, H/2, W/2)
    int skip[UNET_MAX_LAYERS + 1];  // skip-stack index of each output (last: downsampler)
} unet_down_level;

typedef struct unet_up_level {
    int C, H, W, has_attn, has_up;
    unet_resnet resnets[UNET_MAX_LAYERS + 1];
    unet_transformer attentions[UNET_MAX_LAYERS + 1];
    unet_conv upsampler;    // nearest 2x, then 3x3 pad 1 ("upsamplers.0.conv")
    float *cat[UNET_MAX_LAYERS + 1];  // (B, Cprev + Cskip, H, W) resnet inputs
    int cprev[UNET_MAX_LAYERS + 1], cskip[UNET_MAX_LAYERS + 1], skip[UNET_MAX_LAYERS + 1];
    float *up_in;           // (B, C, 2H, 2W) nearest-upsampled
    float *up_out;          // (B, C, 2H, 2W)
} unet_up_level;

typedef struct unet {
    unet_config cfg;
    unet_train_mode mode;
    param_table params;     // every parameter by name; save/load iterate over it
    struct lora_moe *moe;   // the mixture of LoRA experts attached by lora_moe_init, or NULL
    unet_linear time_linear_1, time_linear_2;  // time_embedding.linear_{1,2}
    unet_linear class_linear_1, class_linear_2;  // class_embedding.linear_{1,2} (if class_embed_dim)
    unet_conv conv_in;
    unet_down_level down[UNET_MAX_LEVELS];
    unet_resnet mid_resnets[2];
    unet_transformer mid_attn;
    unet_up_level up[UNET_MAX_LEVELS];
    unet_norm conv_norm_out;
    unet_conv conv_out;
    int n_skips, skip_c[UNET_MAX_SKIPS], skip_hw[UNET_MAX_SKIPS];
    // activations (arena `acts`), for batches up to B and T context tokens
    arena acts;             // on the parameters' device
    int B, T;
    float *t_dev;           // (B) the timesteps copied to a CUDA model; NULL on the CPU
    const float *x;                      // (B, in_channels, H, W) the forward's input
    const float *skips[UNET_MAX_SKIPS];  // pointers to block outputs
    const float *h_last;                 // (B, C0, H, W) the last up block's output
    float *tproj;      // (B, C0) sinusoidal embedding
    float *e1, *e1a;   // (B, 4C0) linear_1 output, silu of it
    float *emb;        // (B, 4C0) linear_2 output (+ the class embedding)
    const float *class_in;  // (B, class_embed_dim) the forward's class labels
    float *c1, *c1a;   // (B, 4C0) class_embedding.linear_1 output, silu of it
    float *emb_act;    // (B, 4C0) silu(emb), the input of every time_emb_proj
    float *h_in;       // (B, C0, H, W) conv_in output
    float *no, *no_mean, *no_rstd, *no_act;  // conv_norm_out: (B, C0, H, W), (B, G) x2, silu
    float *out;        // (B, out_channels, H, W) the prediction
    // backward buffers
    float *dskips[UNET_MAX_SKIPS];  // gradients of the skip tensors from the up path
    float *g0, *g1;    // ping-pong stream gradients (largest stream tensor)
    float *demb_act, *dtmp;  // (B, 4C0)
    float *ws, *conv_ws, *attn_ws, *lora_ws;  // block scratch (sized at allocation)
} unet;

// lora may be NULL (no adapters). Builds the parameter table, allocates parameters
// and (unless frozen) gradients. -1 with a message on a bad config or mode.
int unet_build(unet *m, const unet_config *cfg, unet_train_mode mode, const lora_config *lora);
// The same on `device`: DEVICE_CUDA needs a CUDA build and a device (-1 otherwise).
int unet_build_device(unet *m, const unet_config *cfg, unet_train_mode mode,
                      const lora_config *lora, device_kind device);
// Base parameters and tensors of a config, counted without allocating them.
int unet_param_count(const unet_config *cfg, size_t *n_params, int *n_tensors);
int unet_alloc_activations(unet *m, int B, int T);
void unet_free(unet *m);
// PyTorch's default init (U(+-1/sqrt(fan_in)) for conv/linear weights and biases,
// norms 1/0), PEFT's for adapters (A like a linear weight, B = 0). Each tensor draws
// its own Philox stream from a hash of its name, so the values do not depend on the
// layout.
void unet_init_random(unet *m, uint64_t seed);
void unet_zero_grad(unet *m);

// Every parameter of src into dst, whatever their devices: the two must have been
// built from the same config, LoRA config and mode (the same tensors by name and
// shape), else -1 with a message naming the first difference.
int unet_copy_params(unet *dst, const unet *src);
// One AdamW step (kernels/adamw.h) of every trainable parameter, on the model's
// device. adam_m and adam_v: unet_adam_state_floats(m) floats each on that device,
// zero before the first step (t = 1), laid out like the gradient arena.
size_t unet_adam_state_floats(const unet *m);
void unet_adamw_update(unet *m, float *adam_m, float *adam_v, const adamw_hparams *hp, int t);

// x (B, in_channels, H, W); t (B) timesteps (float, not necessarily integer);
// context (B, T, cross_attention_dim). B <= the allocated batch. Result in m->out.
// A model with class_embed_dim > 0 needs class labels: use unet_forward_cond.
int unet_forward(unet *m, const float *x, const float *t, const float *context, int B);
// class_labels (B, class_embed_dim), required exactly when the config has them.
int unet_forward_cond(unet *m, const float *x, const float *t, const float *context,
                      const float *class_labels, int B);
// After unet_forward with the same B. Parameter gradients accumulate; dx (B, in, H, W)
// and dcontext (B, T, D) are assigned and may be NULL.
void unet_backward(unet *m, const float *dout, float *dx, float *dcontext, int B);
// The same, and dclass (B, class_embed_dim) assigned when not NULL.
void unet_backward_cond(unet *m, const float *dout, float *dx, float *dcontext, float *dclass,
                        int B);

// Save / load by name. kind PARAM_BASE: the base weights, diffusers' names; PARAM_LORA:
// the adapters, "unet."-prefixed, with __metadata__ rank/alpha/targets. Loading
// requires exactly the model's tensors: missing, unexpected and wrong-shape tensors
// are counted and named (the first few of each) in the error, and the model is left
// unchanged unless everything matches. Tensors of any numeric dtype in the file are
// converted to f32 (fixtures store F16). A LoRA file's scale for each module
// (models/lora_set.h's alpha rules) must equal the model's lora alpha / rank.
int unet_save(const unet *m, const char *path, param_kind kind);
int unet_load(unet *m, const char *path, param_kind kind);

#ifdef __cplusplus
}
#endif
#endif
