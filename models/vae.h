// The image autoencoder of Stable Diffusion: diffusers' AutoencoderKL (Encoder of
// DownEncoderBlock2D levels, UNetMidBlock2D with one single-head attention, Decoder of
// UpDecoderBlock2D levels, 1x1 quant_conv / post_quant_conv), forward only: the VAE is
// frozen in SELMA, so there are no gradients and activations are not kept
// (models/vae_modules.h). Parameters carry diffusers' state-dict keys
// ("encoder.down_blocks.0.resnets.0.conv1.weight"), so a checkpoint loads by name.
//
//   vae v;  vae_open(&v, "sd/vae");                  // config.json + weights
//   vae_alloc_activations(&v, B, 512, 512);          // for batches up to B of 512x512
//   vae_encode(&v, img, B, latents, NULL);           // posterior mean * scaling_factor
//   vae_decode(&v, latents, B, img);
//
// Scaling: AutoencoderKL itself never scales; SD's pipelines multiply encoded latents
// by config.scaling_factor (SD 1.x/2.x: 0.18215) and divide by it before decoding.
// vae_encode and vae_decode do the same, so their latents are the UNet's.
#ifndef SELMA_MODELS_VAE_H
#define SELMA_MODELS_VAE_H

#include <stdint.h>

#include "models/vae_modules.h"
#include "runtime/arena.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VAE_MAX_LEVELS 6
#define VAE_MAX_LAYERS 4  // layers_per_block (SD: 2); decoder levels have one more
#define VAE_BAND_FLOATS ((size_t)1 << 24)  // default convolution workspace: 64 MB

typedef struct vae_config {
    int in_channels, out_channels;           // image channels: 3, 3
    int latent_channels;                     // SD: 4
    int n_levels;                            // len(block_out_channels)
    int block_out_channels[VAE_MAX_LEVELS];  // SD: 128, 256, 512, 512
    int layers_per_block;                    // SD: 2
    int norm_num_groups;                     // SD: 32
    int sample_size;                         // the training image size (SD 1.x: 512); not a limit
    float scaling_factor;                    // SD 1.x/2.x: 0.18215
    int use_quant_conv, use_post_quant_conv; // diffusers' defaults: 1, 1
    int mid_block_add_attention;             // 1
} vae_config;

// diffusers' AutoencoderKL defaults for keys config.json leaves out.
vae_config vae_config_default(void);
vae_config vae_config_sd(void);              // SD 1.x/2.x's vae/config.json
int vae_config_check(const vae_config *c);   // -1 with a message naming the key
// diffusers' vae/config.json (vae_config.c). Unknown keys and values this code does not
// build (another act_fn or block type, shift_factor, latents_mean, ...) are errors
// naming the file and key; keys starting with "_" are metadata and ignored.
int vae_config_parse(const char *text, const char *file, vae_config *c);
int vae_config_load(const char *path, vae_config *c);

typedef struct vae_encoder {
    unet_conv conv_in;
    unet_resnet resnets[VAE_MAX_LEVELS][VAE_MAX_LAYERS];
    unet_conv downsamplers[VAE_MAX_LEVELS];  // 3x3 stride 2 after a (0, 1, 0, 1) pad; not on the last level
    unet_resnet mid_resnets[2];
    vae_attention mid_attn;
    unet_norm conv_norm_out;
    unet_conv conv_out;                      // -> 2 * latent_channels: mean, logvar
} vae_encoder;

typedef struct vae_decoder {
    unet_conv conv_in;
    unet_resnet mid_resnets[2];
    vae_attention mid_attn;
    unet_resnet resnets[VAE_MAX_LEVELS][VAE_MAX_LAYERS + 1];
    unet_conv upsamplers[VAE_MAX_LEVELS];    // nearest 2x, then 3x3; not on the last level
    unet_norm conv_norm_out;
    unet_conv conv_out;
} vae_decoder;

typedef struct vae {
    vae_config cfg;
    param_table params;  // every parameter by name (all frozen)
    vae_encoder enc;
    vae_decoder dec;
    unet_conv quant_conv, post_quant_conv;  // 1x1; w NULL when the config has none
    // activations (arena `acts`) for batches up to B of H x W images
    arena acts;
    int B, H, W;
    size_t band_budget;  // floats of convolution workspace (VAE_BAND_FLOATS); set before
                         // vae_alloc_activations to trade memory for GEMM size
    vae_work work;
    float *moments;      // (B, 2 * latent_channels, H / f, W / f) the last encode's
                         // posterior: mean, then logvar clamped to [-30, 20]
} vae;

// Builds the parameter table and allocates the parameters (zeroed). -1 with a message
// on a bad config.
int vae_build(vae *v, const vae_config *cfg);
// Loads diffusers' weights by name: exactly the model's tensors (the attention's
// pre-0.14 names query/key/value/proj_attn are accepted too, as diffusers accepts
// them); missing, unexpected and wrong-shape tensors are named, and the model is
// unchanged unless everything matches.
int vae_load(vae *v, const char *path);
// dir/config.json and dir/diffusion_pytorch_model.safetensors (a pipeline's vae/).
int vae_open(vae *v, const char *dir);
// H and W must be multiples of f = 2^(n_levels - 1). Logs the plan and the arena size.
int vae_alloc_activations(vae *v, int B, int H, int W);
void vae_free(vae *v);

// img (B, in_channels, H, W) in [-1, 1] -> latents (B, latent_channels, H / f, W / f)
// = scaling_factor * (mean, or with seeds a sample mean + std * eps, eps of image b
// rng_fill_normal(seeds[b], stream 0): each image depends on its own seed only).
// B <= the allocated batch. Also fills v->moments.
int vae_encode(vae *v, const float *img, int B, float *latents, const uint64_t *seeds);
// latents (B, latent_channels, H / f, W / f) in the UNet's scale -> img (B,
// out_channels, H, W), nominally [-1, 1] but not clamped (pipelines clamp when
// converting to pixels).
int vae_decode(vae *v, const float *latents, int B, float *img);

#ifdef __cplusplus
}
#endif
#endif
