// The pieces the UNet is made of: a table of named parameters (names are diffusers'
// state-dict keys), the leaf modules (linear with an optional LoRA adapter,
// convolution, group norm, layer norm) and the two blocks that carry most of the
// work, ResnetBlock2D and Transformer2DModel (one BasicTransformerBlock), each with
// explicit forward / backward (llm.c style). models/unet.h assembles them.
//
// Memory: parameters and gradients come from the table's two arenas, activations
// from the caller's arena; every layout function runs twice (plan, then assign) as
// runtime/arena.h describes. The table's device (CPU or CUDA) is every module's
// `dev`: the caller's activation arena and every pointer passed to a forward or
// backward must live there too; models/device_ops.h sends each kernel call to that
// device's version. Backward temporaries come from a caller workspace sized
// by the *_scratch_floats functions, so one buffer serves every block in turn.
//
// Gradient rule (DESIGN.md): parameter gradients accumulate (+=), activation
// gradients are assigned (=). Exceptions, named where they occur: the time-embedding
// and context gradients, which several blocks share, accumulate (+=).
#ifndef SELMA_MODELS_UNET_MODULES_H
#define SELMA_MODELS_UNET_MODULES_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/arena.h"
#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UNET_NAME_MAX 160

typedef enum param_kind { PARAM_BASE, PARAM_LORA } param_kind;
// How unet_init_random fills a parameter (PyTorch's and PEFT's defaults).
typedef enum param_init {
    PARAM_INIT_UNIFORM,  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)): nn.Linear/Conv2d weight and bias
    PARAM_INIT_ONES,     // norm weights
    PARAM_INIT_ZEROS,    // norm biases; lora_B (PEFT: the adapter starts as the identity)
} param_init;

typedef struct unet_param {
    char name[UNET_NAME_MAX];  // diffusers' key, e.g. "down_blocks.1.attentions.0.proj_in.weight"
    tensor t;                  // f32, the state dict's shape
    float *grad;               // same shape; NULL when not trainable (never allocated)
    int trainable;
    param_kind kind;
    param_init init;
    int fan_in;                // for PARAM_INIT_UNIFORM
    float **grad_slot;         // the module field that receives `grad`
    struct unet_linear *linear;  // a linear's weight: its module (models/lora_moe.c attaches by name)
} unet_param;

// LoRA rule: a linear whose name ends in ".<target>" for one of the comma-separated
// targets gets an adapter of rank `rank` (0 = none) with scale alpha / rank.
typedef struct lora_config {
    int rank;
    float alpha;
    char targets[256];  // SELMA: "to_q,to_k,to_v,to_out.0"
} lora_config;

typedef struct param_table {
    unet_param *items;
    int n, cap;
    arena params, grads;    // both on the table's device (params.device)
    int train_base, train_lora;  // which kinds get gradients
    lora_config lora;
} param_table;

// Starts an empty table (no memory yet) on the CPU, or on `device`.
void ptab_init(param_table *t, const char *name, int train_base, int train_lora,
               const lora_config *lora);
void ptab_init_device(param_table *t, const char *name, int train_base, int train_lora,
                      const lora_config *lora, device_kind device);
// Lay-out protocol: ptab_begin(); register everything; ptab_commit_params(); begin;
// register again (same order, pointers now real); ptab_commit_grads().
void ptab_begin(param_table *t);
float *ptab_add(param_table *t, const char *name, int ndim, const int64_t *shape,
                param_kind kind, param_init init, int fan_in, float **grad_slot);
int ptab_commit_params(param_table *t);
int ptab_commit_grads(param_table *t);  // allocates and hands out gradient buffers
void ptab_zero_grad(param_table *t);  // on the table's device
void ptab_free(param_table *t);
unet_param *ptab_find(const param_table *t, const char *name);
size_t ptab_count(const param_table *t, param_kind kind, int trainable_only);

// ---- leaf modules ----

// nn.Linear (and a 1x1 nn.Conv2d used as one: SD1's proj_in/proj_out, whose weight
// is (out, in, 1, 1) with the same memory). Optional LoRA adapter (kernels/lora.h).
typedef struct unet_linear {
    device_kind dev;         // where its parameters live (the table's device)
    int in, out, rank;
    float scale;             // alpha / rank
    float *w, *b;            // (out, in), (out) or NULL
    float *dw, *db;          // NULL when frozen
    float *lora_a, *lora_b;  // (rank, in), (out, rank)
    float *dlora_a, *dlora_b;
    float *lora_h;           // activation (N, rank): inp @ lora_a^T, kept for backward
    struct moe_linear *moe;  // NULL, or a mixture of LoRA experts (models/lora_moe.h) in
                             // place of the adapter, attached after the build
} unet_linear;

typedef struct unet_conv {
    device_kind dev;
    int in, out, k, stride, pad;
    float *w, *b;    // (out, in, k, k), (out)
    float *dw, *db;
} unet_conv;

typedef struct unet_norm {  // GroupNorm (groups > 0) or LayerNorm (groups == 0)
    device_kind dev;
    int C, groups;
    float eps;
    float *w, *b;    // (C)
    float *dw, *db;
} unet_norm;

void unet_linear_setup(unet_linear *l, param_table *t, const char *name, int in, int out,
                       int bias, int as_conv1x1);
void unet_linear_acts(unet_linear *l, arena *a, int N);
void unet_linear_forward(unet_linear *l, float *out, const float *inp, int N);
// dinp (N, in) assigned, may be NULL; dh_scratch holds N * rank floats.
void unet_linear_backward(unet_linear *l, float *dinp, const float *dout, const float *inp,
                          int N, float *dh_scratch);

void unet_conv_setup(unet_conv *c, param_table *t, const char *name, int in, int out,
                     int k, int stride, int pad);
void unet_norm_setup(unet_norm *n, param_table *t, const char *name, int C, int groups,
                     float eps);
void unet_conv_forward(const unet_conv *c, float *out, const float *inp, int B, int H, int W,
                       float *conv_ws);
// dinp (B, in, H, W) assigned, may be NULL.
void unet_conv_backward(const unet_conv *c, float *dinp, const float *dout, const float *inp,
                        int B, int H, int W, float *conv_ws);
// conv_ws floats a convolution of B images of H x W needs (kernels/conv2d.h; none on
// CUDA).
size_t unet_conv_scratch_floats(const unet_conv *c, int B, int H, int W);

// ---- ResnetBlock2D ----
// out = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + time_emb_proj(silu(temb)))))
// shortcut is the 1x1 conv_shortcut when cin != cout, else the identity;
// output_scale_factor 1. silu(temb) is computed once by the caller (diffusers
// computes the same value in every block).
typedef struct unet_resnet {
    device_kind dev;
    int cin, cout, H, W, temb_dim;
    unet_norm norm1, norm2;
    unet_conv conv1, conv2, conv_shortcut;  // conv_shortcut.w NULL when cin == cout
    unet_linear time_emb_proj;
    // activations, B the allocated batch, HW = H * W
    const float *x;          // (B, cin, HW) the input, owned by the previous block
    float *mean1, *rstd1;    // (B, groups)
    float *n1;               // (B, cin, HW) norm1(x)
    float *a1;               // (B, cin, HW) silu(n1)
    float *t;                // (B, cout) time_emb_proj(silu(temb))
    float *h1;               // (B, cout, HW) conv1(a1) + t
    float *mean2, *rstd2;    // (B, groups)
    float *n2;               // (B, cout, HW) norm2(h1)
    float *a2;               // (B, cout, HW) silu(n2)
    float *sc;               // (B, cout, HW) conv_shortcut(x); NULL when cin == cout
    float *out;              // (B, cout, HW)
} unet_resnet;

// temb_dim 0 registers no time_emb_proj: diffusers' ResnetBlock2D with temb_channels
// None, as the VAE uses it (models/vae_modules.h runs its forward; the functions below
// need a time embedding).
void unet_resnet_setup(unet_resnet *r, param_table *t, const char *prefix, int cin, int cout,
                       int temb_dim, int groups, float eps, int H, int W);
void unet_resnet_acts(unet_resnet *r, arena *a, int B);
size_t unet_resnet_scratch_floats(const unet_resnet *r, int B);
// conv_ws floats its convolutions need (conv1, conv2, the shortcut).
size_t unet_resnet_conv_scratch_floats(const unet_resnet *r, int B);
// temb_act (B, temb_dim) = silu(time embedding). Writes r->out.
void unet_resnet_forward(unet_resnet *r, const float *x, const float *temb_act, int B,
                         float *conv_ws);
// dx (B, cin, HW) assigned; dtemb_act (B, temb_dim) ACCUMULATES (+=).
void unet_resnet_backward(unet_resnet *r, float *dx, float *dtemb_act, const float *dout,
                          const float *temb_act, int B, float *ws, float *conv_ws,
                          float *lora_ws);

// ---- Transformer2DModel with one BasicTransformerBlock ----
// h = proj_in(norm(x)) as tokens (B, HW, C); h += attn1(norm1(h)); h += attn2(norm2(h),
// context); h += ff(norm3(h)); out = proj_out(h) as (B, C, H, W) + x.
// norm: GroupNorm eps 1e-6 (diffusers hard-codes it); norm1-3: LayerNorm eps 1e-5;
// ff: GEGLU proj C -> 2 * 4C, then 4C -> C. Heads split C evenly.
typedef struct unet_attention {
    unet_linear to_q, to_k, to_v, to_out;  // to_q/k/v without bias, to_out.0 with
    int heads, kv_dim;                     // kv_dim: C (self) or cross_attention_dim
    float *q;    // (B, N, C)
    float *k;    // (B, M, C)
    float *v;    // (B, M, C)
    float *o;    // (B, N, C) attention output before to_out
    float *lse;  // (B, heads, N)
} unet_attention;

typedef struct unet_transformer {
    device_kind dev;
    int C, H, W, T, heads, cross_dim;
    unet_norm norm;                  // GroupNorm
    unet_linear proj_in, proj_out;   // 1x1 conv or Linear (use_linear_projection)
    unet_norm norm1, norm2, norm3;   // LayerNorm
    unet_attention attn1, attn2;
    unet_linear ff_proj, ff_out;     // ff.net.0.proj (C -> 8C), ff.net.2 (4C -> C)
    // activations, N = HW tokens per image
    const float *x;                  // (B, C, HW) input (the residual)
    const float *context;            // (B, T, cross_dim)
    float *gmean, *grstd;            // (B, groups)
    float *gn;                       // (B, C, HW) norm(x)
    float *tok;                      // (B, N, C) gn as tokens
    float *h0;                       // (B, N, C) proj_in(tok)
    float *ln1, *mean1, *rstd1;      // (B, N, C), (B, N), (B, N)
    float *h1;                       // (B, N, C) h0 + attn1
    float *ln2, *mean2, *rstd2;
    float *h2;                       // (B, N, C) h1 + attn2
    float *ln3, *mean3, *rstd3;
    float *ff1;                      // (B, N, 8C) ff_proj(ln3)
    float *gg;                       // (B, N, 4C) geglu(ff1)
    float *h3;                       // (B, N, C) h2 + ff_out(gg)
    float *po;                       // (B, N, C) proj_out(h3)
    float *out;                      // (B, C, HW) po as an image + x
} unet_transformer;

void unet_transformer_setup(unet_transformer *tr, param_table *t, const char *prefix, int C,
                            int heads, int cross_dim, int groups, int linear_proj, int H,
                            int W);
// T: context tokens.
void unet_transformer_acts(unet_transformer *tr, arena *a, int B, int T);
size_t unet_transformer_scratch_floats(const unet_transformer *tr, int B);
// Attention scratch for batches up to B on the block's device (models/device_ops.h).
size_t unet_transformer_attn_scratch_floats(const unet_transformer *tr, int B);
// context (B, T, cross_dim). Writes tr->out.
void unet_transformer_forward(unet_transformer *tr, const float *x, const float *context,
                              int B, float *attn_ws);
// dx (B, C, HW) assigned; dcontext (B, T, cross_dim) ACCUMULATES (+=), may be NULL.
void unet_transformer_backward(unet_transformer *tr, float *dx, float *dcontext,
                               const float *dout, int B, float *ws, float *attn_ws,
                               float *lora_ws);

#ifdef __cplusplus
}
#endif
#endif
