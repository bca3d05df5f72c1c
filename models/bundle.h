// A text-to-image model: text encoder + UNet + noise schedule, on disk as a directory
// in diffusers' folder layout, so that one loading path serves the shapes world's
// own models and (later) real SD checkpoints:
//
//   unet/config.json                          UNet2DConditionModel's keys
//   unet/diffusion_pytorch_model.safetensors  diffusers' state-dict names
//   text_encoder/config.json                  transformers' CLIPTextConfig keys
//   text_encoder/model.safetensors            transformers' state-dict names
//   scheduler/scheduler_config.json           DDIMScheduler's keys
//   tokenizer/tokenizer_config.json           shapes: the word-level vocabulary's
//   tokenizer/vocab.json                      name, size, max length; word -> id
//   selma.json                                world, image size, how it was trained
//
// A bundle is written atomically: into "<dir>.tmp.<pid>", every file fsync'd, the
// directory fsync'd, then renamed over <dir> (an old <dir> is moved aside first and
// removed after). Loading errors name the file and the key or tensor.
//
// World "sd" loads a Stable Diffusion 1.x / 2.x pipeline folder as diffusers saves it
// (sd_load.c): model_index.json instead of selma.json, plus vae/ and a CLIP tokenizer/.
#ifndef SELMA_MODELS_BUNDLE_H
#define SELMA_MODELS_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "models/clip_tokenizer.h"
#include "models/sampler.h"
#include "models/schedule.h"
#include "models/text_encoder.h"
#include "models/unet.h"
#include "models/vae.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct t2i_config {
    char world[16];               // "shapes" (the word tokenizer) or "sd"
    int image_size;               // pixels (shapes: = unet sample_size)
    unet_config unet;
    text_encoder_config te;       // te.max_tokens: the tokenizer's padded length too
    beta_schedule beta;
    prediction_type prediction;
    int train_timesteps;          // num_train_timesteps
    double beta_start, beta_end;
    // Sampling defaults stored in the scheduler config (diffusers' names).
    timestep_spacing spacing;
    int steps_offset, set_alpha_to_one;
    vae_config vae;               // sd only: image_size = unet sample_size * 2^(levels - 1)
} t2i_config;

typedef struct t2i_model {
    t2i_config cfg;
    noise_schedule sched;
    text_encoder te;
    unet unet;
    int acts_B;         // batch the sampling activations were laid out for (0: none)
    float *ctx;         // (acts_B, T, C) text embeddings while sampling
    float *pooled;      // (acts_B, C) their pooled vectors (class_embed_dim > 0 only)
    // A UNet on CUDA (t2i_unet_to_device): the sampler's input and the text rows on the
    // device, (acts_B, in_channels, S, S), (acts_B, T, C), (acts_B, C); else NULL.
    float *dev_x, *dev_ctx, *dev_pooled;
    clip_tokenizer clip; // world "sd": tokenizer/ by clip_tokenizer_load, after t2i_build
                         // (which clears the model); freed by t2i_free
    vae *vae;           // sd only (built by t2i_build from cfg.vae), else NULL
    char source[1024];  // the directory bundle_load read (bundle_save of an sd model
                        // copies what it does not hold from there: vae/, tokenizer/, ...)
} t2i_model;

// The shapes world's base model (NOTES.md recipe B: cosine betas, v-prediction),
// 48 tokens (dense prompts need up to 43 words plus <start>/<end>).
void t2i_config_shapes(t2i_config *c);
int t2i_config_check(const t2i_config *c);  // -1 with a message naming the field

// Builds text encoder and UNet from m->cfg (set by the caller), parameters zeroed;
// UNET_TRAIN_FULL also allocates the text encoder's gradients. lora may be NULL.
int t2i_build(t2i_model *m, unet_train_mode mode, const lora_config *lora);
void t2i_init_random(t2i_model *m, uint64_t seed);
void t2i_free(t2i_model *m);

// Writes the weights in m (as they are) and the configs. training_json: a JSON object
// (text) stored under "training" in selma.json, or NULL. World sd: a diffusers folder
// again (sd_save_files), so that diffusers and selma both load the result.
int bundle_save(const t2i_model *m, const char *dir, const char *training_json);
// Reads the configs, builds (mode as t2i_build) and loads the weights.
int bundle_load(t2i_model *m, const char *dir, unet_train_mode mode, const lora_config *lora);
// Reads only the configs. Both also read an sd pipeline folder (sd_is_pipeline).
int bundle_read_config(const char *dir, t2i_config *c);

// Stable Diffusion pipeline folders (sd_load.c). model_index.json must name
// UNet2DConditionModel, CLIPTextModel, AutoencoderKL and CLIPTokenizer(Fast) for unet,
// text_encoder, vae and tokenizer; any scheduler class is accepted, as only its noise
// schedule and spacing keys are read (SD 1.5 ships PNDMScheduler; selma samples with its
// own DDIM or Euler). SD 2's penultimate text layer needs nothing here: diffusers'
// converted SD 2 text encoders already have num_hidden_layers 23 of OpenCLIP's 24 and
// the pipeline uses their last_hidden_state (final layer norm applied), as selma does
// with clip_skip 0.
int sd_is_pipeline(const char *dir);  // 1: model_index.json and no selma.json
int sd_read_config(const char *dir, t2i_config *c);
// The VAE's weights and the tokenizer, after the UNet and text encoder (bundle_load
// loads an sd folder with it).
int sd_load_parts(t2i_model *m, const char *dir);
// bundle_save's files for an sd model, into the new directory tmp: every file of
// m->source copied (model_index.json, vae/, tokenizer/, scheduler/, and components
// selma does not use, such as safety_checker/) except the UNet's and text encoder's
// weight files, which are written from m (diffusers' names, float32), and
// training_json (or nothing) as selma_training.json. No selma.json, so the result is
// still a pipeline folder (sd_is_pipeline).
int sd_save_files(const t2i_model *m, const char *tmp, const char *training_json);
// 64-bit FNV-1a over the bytes of the two weight files, as 16 hex digits: names the
// generator of a dataset. hex must hold 17 bytes.
int bundle_hash(const char *dir, char *hex, size_t n);
// FNV-1a continued over one file's bytes (for LoRA files added to a generator).
int file_fnv1a(const char *path, uint64_t *h);

// Config <-> JSON (bundle_json.c). `file` names the file in messages.
char *unet_config_json(const unet_config *c);
int unet_config_parse(const char *text, const char *file, unet_config *c);
char *text_encoder_config_json(const text_encoder_config *c);
int text_encoder_config_parse(const char *text, const char *file, text_encoder_config *c);
char *scheduler_config_json(const t2i_config *c);
int scheduler_config_parse(const char *text, const char *file, t2i_config *c);

// Tokenizes prompts (NULL = "") for this model: (n, te.max_tokens) ids. shapes: the
// word tokenizer; sd: m->clip (an error if it is not loaded).
int t2i_tokenize(const t2i_model *m, const char *const *prompts, int n, int *ids);
// The pooled text embedding, as CLIP's pooler_output: each row's context vector at its
// first <end> token (which has seen the whole caption through the causal mask).
// ids (B, T), ctx (B, T, C) -> pooled (B, C). For a UNet with class_embed_dim > 0.
void t2i_pool(const t2i_model *m, const int *ids, const float *ctx, int B, float *pooled);
// Its backward: dctx[b, <end> of row b] += dpooled[b].
void t2i_pool_backward(const t2i_model *m, const int *ids, const float *dpooled, int B, float *dctx);

// Draws n images for prompts[i] from seeds[i] (models/sampler.h: each image depends
// on its own seed only). rgb (n, H, W, 3) uint8, pixels mapped from [-1, 1]. Lays out
// sampling activations on first use (for n images, 2n with guidance). The model must
// be frozen or its training activations are replaced.
int t2i_sample(t2i_model *m, const sampler_opts *o, const char *const *prompts, int n,
               const uint64_t *seeds, uint8_t *rgb);
// The same as floats: img (n, 3, image_size, image_size), nominally [-1, 1], not
// clamped. latents: NULL (noise from seeds) or (n, in_channels, S, S) initial noise at
// unit scale (diffusers' `latents` argument; seeds may then be NULL when eta is 0).
// shapes: img is the sample itself; sd: the sampled latents (n, 4, H/f, W/f) go
// through the VAE decoder (divided by its scaling_factor first).
int t2i_sample_float(t2i_model *m, const sampler_opts *o, const char *const *prompts, int n,
                     const uint64_t *seeds, const float *latents, float *img);
// Moves the UNet, weights as they are (built, loaded, adapters attached), to `dev`
// (DEVICE_CUDA: a GPU; DEVICE_CPU: back), rebuilt there in the same mode; the text
// encoder and the VAE stay on the host. Training (models/train.h), t2i_sample and
// bundle_save / unet_save then work as before. Sampling on CUDA copies each step's
// latents to the device and the prediction back (the samplers' updates run on the
// host: a few values per pixel, small next to the UNet). -1 with a message without a
// GPU or for a LoRA mixture of experts (no CUDA kernel yet); the model is unchanged then.
int t2i_unet_to_device(t2i_model *m, device_kind dev);
// "cpu" or "cuda" -> *dev; -1 with a message naming `what` (e.g. "[train] device")
// otherwise, or for cuda when this build or machine has no CUDA device.
int t2i_device_parse(const char *name, const char *what, device_kind *dev);

// Sampler options from the bundle's scheduler config plus the caller's choices.
void t2i_sampler_opts(const t2i_model *m, sampler_kind kind, int steps, double guidance,
                      sampler_opts *o);

// Removes a directory tree (files and subdirectories); 0 if it does not exist.
int dir_remove_tree(const char *path);
// fsync of a directory (makes renames and new entries durable).
int dir_fsync(const char *path);

#ifdef __cplusplus
}
#endif
#endif
