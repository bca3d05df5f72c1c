// The text encoder in CLIP's layout (transformers' CLIPTextModel), used by both
// worlds: SD's CLIP ViT-L/14 (SD 1.x) and OpenCLIP ViT-H (SD 2.x) text towers, and the
// shapes world's small one trained jointly with its UNet.
//
//   x = token_embedding[ids] + position_embedding[0..T)               (B, T, C)
//   per layer (pre-LN):
//     x = x + out_proj(causal_attention(q_proj, k_proj, v_proj of layer_norm1(x)))
//     x = x + fc2(act(fc1(layer_norm2(x))))
//   out = final_layer_norm(x)                                         (B, T, C)
// act is quick_gelu (CLIP, SD 1.x) or erf gelu (transformers' "gelu", SD 2.x).
//
// clip_skip (diffusers' clip_skip): the output is final_layer_norm of the hidden state
// clip_skip layers before the last; the skipped layers are not run (their gradients
// stay zero). SD 2.x conditions on the penultimate layer (clip_skip = 1); diffusers'
// converted SD 2.x text encoders already drop the last layer and use clip_skip 0.
// Either way the final layer norm is applied, as diffusers and OpenCLIP do.
//
// Parameters carry transformers' state-dict names ("text_model.embeddings.
// token_embedding.weight", "text_model.encoder.layers.0.self_attn.q_proj.weight", ...,
// "text_model.final_layer_norm.weight"), so loading a checkpoint is a name lookup.
// Layouts are PyTorch's: Linear weights (out, in).
//
// Gradient rule: text_encoder_backward accumulates (+=) into every parameter
// gradient; text_encoder_zero_grads clears them once per optimizer step.
#ifndef SELMA_MODELS_TEXT_ENCODER_H
#define SELMA_MODELS_TEXT_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/activation.h"
#include "runtime/arena.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct text_encoder_config {
    int vocab_size;   // V
    int max_tokens;   // T: position embeddings, and the sequence length
    int width;        // C
    int layers;       // L
    int heads;        // H; C % H == 0
    int mlp_width;    // F (CLIP: 4C)
    gelu_kind act;    // GELU_QUICK ("quick_gelu") or GELU_ERF ("gelu")
    float ln_eps;     // 1e-5
    int clip_skip;    // 0 = last layer; 0 <= clip_skip < L
} text_encoder_config;

// The shapes world's encoder (NOTES.md): width 128, 2 layers, 4 heads, 16 tokens,
// MLP 512, quick_gelu; vocab_size is the tokenizer's.
void text_encoder_config_shapes(text_encoder_config *c, int vocab_size);
// -1 with a message naming the bad field.
int text_encoder_config_check(const text_encoder_config *c);
// Reads the shape of the model from a safetensors file (vocab, tokens, width, layers,
// MLP width from the tensors' shapes; heads and activation from the metadata keys
// "heads" and "hidden_act" that text_encoder_save writes, else CLIP's head size 64 and
// quick_gelu). -1 with a message if the file is not a CLIP text model, or has no
// "heads" and a width that is not a multiple of 64.
int text_encoder_config_from_file(const char *path, text_encoder_config *c);

typedef struct text_encoder_params {
    float *token_embedding;      // (V, C)
    float *position_embedding;   // (T, C)
    float *ln1_w, *ln1_b;        // (L, C)
    float *q_w, *k_w, *v_w;      // (L, C, C)
    float *q_b, *k_b, *v_b;      // (L, C)
    float *o_w;                  // (L, C, C)
    float *o_b;                  // (L, C)
    float *ln2_w, *ln2_b;        // (L, C)
    float *fc1_w;                // (L, F, C)
    float *fc1_b;                // (L, F)
    float *fc2_w;                // (L, C, F)
    float *fc2_b;                // (L, C)
    float *lnf_w, *lnf_b;        // (C)
} text_encoder_params;

// Activations for at most max_B sequences; N = max_B * T rows per slab. A forward with
// B < max_B uses the first B*T rows of each slab.
typedef struct text_encoder_acts {
    int *ids;                    // (N) the last forward's tokens, for the backward
    float *resid;                // (L+1, N, C) embeddings, then the stream after each layer
    float *ln1;                  // (L, N, C)
    float *ln1_mean, *ln1_rstd;  // (L, N)
    float *q, *k, *v;            // (L, N, C)
    float *att;                  // (L, N, C) attention before out_proj
    float *lse;                  // (L, max_B, H, T)
    float *resid_mid;            // (L, N, C) the stream after attention
    float *ln2;                  // (L, N, C)
    float *ln2_mean, *ln2_rstd;  // (L, N)
    float *fc1;                  // (L, N, F) before the activation
    float *act;                  // (L, N, F)
    float *out;                  // (N, C) the output: last (or clip_skip) hidden state
    float *lnf_mean, *lnf_rstd;  // (N)
    float *scratch;              // attention_scratch_floats(T, T)
    // backward only (training):
    float *dresid, *dbuf, *dtmp; // (N, C)
    float *dq, *dk, *dv;         // (N, C)
    float *dfc;                  // (N, F)
} text_encoder_acts;

typedef struct text_encoder {
    text_encoder_config cfg;
    text_encoder_params params, grads;
    text_encoder_acts acts;
    arena params_arena, grads_arena, acts_arena;
    size_t n_params;       // trainable floats (padding excluded)
    int max_B, training;   // what the activations were laid out for
    int B;                 // batch of the last forward
} text_encoder;

// One named parameter: name, shape and pointers into params and (when allocated) grads.
typedef struct text_encoder_tensor {
    char name[96];
    int ndim;
    int64_t shape[2];
    float *param, *grad;   // grad NULL before text_encoder_alloc_grads
} text_encoder_tensor;

// Parameters zeroed (layer norm weights too: call init_random or load).
int text_encoder_create(text_encoder *m, const text_encoder_config *cfg);
// transformers' CLIPPreTrainedModel._init_weights (factor 1): embeddings N(0, 0.02),
// q/k/v and fc2 N(0, C^-0.5 (2L)^-0.5), out_proj N(0, C^-0.5), fc1 N(0, (2C)^-0.5),
// biases 0, layer norms (1, 0). Philox stream per tensor.
void text_encoder_init_random(text_encoder *m, uint64_t seed);
int text_encoder_alloc_grads(text_encoder *m);
// training = 1 also lays out the backward's buffers.
int text_encoder_alloc_acts(text_encoder *m, int max_B, int training);
void text_encoder_free(text_encoder *m);

// The number of named tensors; fills out (may be NULL) in the order of the state dict.
int text_encoder_tensors(const text_encoder *m, text_encoder_tensor *out);

// ids (B, T) in [0, V). The output is m->acts.out (B, T, C). -1 with a message on a
// bad id or B outside 1..max_B.
int text_encoder_forward(text_encoder *m, const int *ids, int B);
// dout (B, T, C) for the last forward's output. -1 with a message if the model was not
// set up for training.
int text_encoder_backward(text_encoder *m, const float *dout);
void text_encoder_zero_grads(text_encoder *m);

// Float32 safetensors with the state-dict names and the config in the metadata.
int text_encoder_save(const text_encoder *m, const char *path);
// Every tensor must be present with its exact shape (any float dtype is converted);
// a tensor the model does not have is an error, except transformers' non-parameter
// buffer "text_model.embeddings.position_ids", which older files carry. Files written
// by transformers 5, whose names lack "text_model.", are read too.
int text_encoder_load(text_encoder *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
