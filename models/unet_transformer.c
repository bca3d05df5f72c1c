// Transformer2DModel with one BasicTransformerBlock (see unet_modules.h), diffusers'
// order: GroupNorm, proj_in, [LN -> self-attn -> +] [LN -> cross-attn -> +]
// [LN -> GEGLU FF -> +], proj_out, + input.
//
// proj_in/proj_out as a 1x1 conv (SD1) on NCHW and as a Linear (SD2) on tokens are
// the same per-pixel channel mix, so both run as a Linear on tokens; only the stored
// weight shape differs ((C, C, 1, 1) vs (C, C)).
#include <stdio.h>
#include <string.h>

#include "models/device_ops.h"
#include "models/unet_modules.h"
#include "runtime/error.h"

#define TRANSFORMER_GN_EPS 1e-6f  // diffusers' Transformer2DModel hard-codes it
#define TRANSFORMER_LN_EPS 1e-5f  // BasicTransformerBlock's norm_eps default

static void name2(char *buf, const char *a, const char *b) {
    int n = snprintf(buf, UNET_NAME_MAX, "%s.%s", a, b);
    CHECK(n > 0 && n < UNET_NAME_MAX);
}

static void attention_setup(unet_attention *at, param_table *t, const char *name, int C,
                            int kv_dim, int heads) {
    char buf[UNET_NAME_MAX];
    memset(at, 0, sizeof *at);
    at->heads = heads;
    at->kv_dim = kv_dim;
    name2(buf, name, "to_q");
    unet_linear_setup(&at->to_q, t, buf, C, C, 0, 0);
    name2(buf, name, "to_k");
    unet_linear_setup(&at->to_k, t, buf, kv_dim, C, 0, 0);
    name2(buf, name, "to_v");
    unet_linear_setup(&at->to_v, t, buf, kv_dim, C, 0, 0);
    name2(buf, name, "to_out.0");
    unet_linear_setup(&at->to_out, t, buf, C, C, 1, 0);
}

void unet_transformer_setup(unet_transformer *tr, param_table *t, const char *prefix, int C,
                            int heads, int cross_dim, int groups, int linear_proj, int H,
                            int W) {
    char buf[UNET_NAME_MAX];
    CHECK(C % heads == 0);  // the config check rejects this before any setup
    *tr = (unet_transformer){.dev = t->params.device, .C = C, .H = H, .W = W, .heads = heads,
                             .cross_dim = cross_dim};
    name2(buf, prefix, "norm");
    unet_norm_setup(&tr->norm, t, buf, C, groups, TRANSFORMER_GN_EPS);
    name2(buf, prefix, "proj_in");
    unet_linear_setup(&tr->proj_in, t, buf, C, C, 1, !linear_proj);
    char blk[UNET_NAME_MAX];
    name2(blk, prefix, "transformer_blocks.0");
    name2(buf, blk, "norm1");
    unet_norm_setup(&tr->norm1, t, buf, C, 0, TRANSFORMER_LN_EPS);
    name2(buf, blk, "attn1");
    attention_setup(&tr->attn1, t, buf, C, C, heads);
    name2(buf, blk, "norm2");
    unet_norm_setup(&tr->norm2, t, buf, C, 0, TRANSFORMER_LN_EPS);
    name2(buf, blk, "attn2");
    attention_setup(&tr->attn2, t, buf, C, cross_dim, heads);
    name2(buf, blk, "norm3");
    unet_norm_setup(&tr->norm3, t, buf, C, 0, TRANSFORMER_LN_EPS);
    name2(buf, blk, "ff.net.0.proj");
    unet_linear_setup(&tr->ff_proj, t, buf, C, 8 * C, 1, 0);
    name2(buf, blk, "ff.net.2");
    unet_linear_setup(&tr->ff_out, t, buf, 4 * C, C, 1, 0);
    name2(buf, prefix, "proj_out");
    unet_linear_setup(&tr->proj_out, t, buf, C, C, 1, !linear_proj);
}

static float *take(arena *a, size_t n) { return arena_take(a, n * sizeof(float)); }

static void attention_acts(unet_attention *at, arena *a, int B, int N, int M, int C) {
    at->q = take(a, (size_t)B * N * C);
    at->k = take(a, (size_t)B * M * C);
    at->v = take(a, (size_t)B * M * C);
    at->o = take(a, (size_t)B * N * C);
    at->lse = take(a, (size_t)B * at->heads * N);
    unet_linear_acts(&at->to_q, a, B * N);
    unet_linear_acts(&at->to_k, a, B * M);
    unet_linear_acts(&at->to_v, a, B * M);
    unet_linear_acts(&at->to_out, a, B * N);
}

void unet_transformer_acts(unet_transformer *tr, arena *a, int B, int T) {
    int C = tr->C, N = tr->H * tr->W;
    size_t NC = (size_t)B * N * C, BN = (size_t)B * N;
    tr->T = T;
    tr->gmean = take(a, (size_t)B * tr->norm.groups);
    tr->grstd = take(a, (size_t)B * tr->norm.groups);
    tr->gn = take(a, NC);
    tr->tok = take(a, NC);
    tr->h0 = take(a, NC);
    tr->ln1 = take(a, NC), tr->mean1 = take(a, BN), tr->rstd1 = take(a, BN);
    tr->h1 = take(a, NC);
    tr->ln2 = take(a, NC), tr->mean2 = take(a, BN), tr->rstd2 = take(a, BN);
    tr->h2 = take(a, NC);
    tr->ln3 = take(a, NC), tr->mean3 = take(a, BN), tr->rstd3 = take(a, BN);
    tr->ff1 = take(a, 8 * NC);
    tr->gg = take(a, 4 * NC);
    tr->h3 = take(a, NC);
    tr->po = take(a, NC);
    tr->out = take(a, NC);
    attention_acts(&tr->attn1, a, B, N, N, C);
    attention_acts(&tr->attn2, a, B, N, T, C);
    unet_linear_acts(&tr->proj_in, a, B * N);
    unet_linear_acts(&tr->ff_proj, a, B * N);
    unet_linear_acts(&tr->ff_out, a, B * N);
    unet_linear_acts(&tr->proj_out, a, B * N);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

size_t unet_transformer_scratch_floats(const unet_transformer *tr, int B) {
    size_t N = (size_t)tr->H * tr->W, NC = (size_t)B * N * tr->C;
    size_t KV = (size_t)B * max_sz(N, (size_t)tr->T) * tr->C;
    return 5 * NC + 8 * NC + 4 * NC + 2 * KV + (size_t)B * tr->T * tr->cross_dim;
}

size_t unet_transformer_attn_scratch_floats(const unet_transformer *tr, int B) {
    int N = tr->H * tr->W;
    return max_sz(dev_attention_scratch_floats(tr->dev, B, N, N, tr->heads),
                  dev_attention_scratch_floats(tr->dev, B, N, tr->T, tr->heads));
}

// out (B*N, C) = to_out(attention(to_q(xq), to_k(xkv), to_v(xkv))); xkv (B*M, kv_dim).
static void attention_forward_block(unet_attention *at, float *out, const float *xq,
                                    const float *xkv, int B, int N, int M, int C,
                                    float *attn_ws) {
    unet_linear_forward(&at->to_q, at->q, xq, B * N);
    unet_linear_forward(&at->to_k, at->k, xkv, B * M);
    unet_linear_forward(&at->to_v, at->v, xkv, B * M);
    dev_attention_forward(at->to_q.dev, at->o, at->lse, attn_ws, at->q, at->k, at->v, B, N, M,
                          at->heads, C / at->heads);
    unet_linear_forward(&at->to_out, out, at->o, B * N);
}

// dxq (B*N, C) assigned. dxkv (B*M, kv_dim): for self-attention (dxkv == dxq) the
// k and v paths are added into dxq; for cross-attention they ACCUMULATE into dxkv
// (the context gradient), which may be NULL. s: scratch of 4 * B*N*C + 2 * B*M*C.
static void attention_backward_block(unet_attention *at, float *dxq, float *dxkv,
                                     const float *dout, const float *xq, const float *xkv,
                                     int B, int N, int M, int C, float *s, float *attn_ws,
                                     float *lora_ws) {
    size_t NC = (size_t)B * N * C, MC = (size_t)B * M * C;
    float *d_o = s, *dq = d_o + NC, *dk = dq + NC, *dv = dk + MC, *tmp = dv + MC;
    device_kind dev = at->to_q.dev;
    unet_linear_backward(&at->to_out, d_o, dout, at->o, B * N, lora_ws);
    dev_attention_backward(dev, dq, dk, dv, attn_ws, d_o, at->q, at->k, at->v, at->o, at->lse, B,
                           N, M, at->heads, C / at->heads);
    unet_linear_backward(&at->to_q, dxq, dq, xq, B * N, lora_ws);
    int self = dxkv == dxq;
    float *dk_in = dxkv ? tmp : NULL;  // (B*M, kv_dim)
    unet_linear_backward(&at->to_k, dk_in, dk, xkv, B * M, lora_ws);
    if (dk_in) dev_add_into(dev, self ? dxq : dxkv, dk_in, (size_t)B * M * at->kv_dim);
    unet_linear_backward(&at->to_v, dk_in, dv, xkv, B * M, lora_ws);
    if (dk_in) dev_add_into(dev, self ? dxq : dxkv, dk_in, (size_t)B * M * at->kv_dim);
}

void unet_transformer_forward(unet_transformer *tr, const float *x, const float *context,
                              int B, float *attn_ws) {
    int C = tr->C, N = tr->H * tr->W, BN = B * N;
    size_t NC = (size_t)BN * C;
    device_kind dev = tr->dev;
    tr->x = x;
    tr->context = context;
    dev_groupnorm_forward(dev, tr->gn, tr->gmean, tr->grstd, x, tr->norm.w, tr->norm.b, B, C, N,
                          tr->norm.groups, tr->norm.eps);
    dev_channels_to_tokens(dev, tr->tok, tr->gn, B, C, N);
    unet_linear_forward(&tr->proj_in, tr->h0, tr->tok, BN);
    // h1 = h0 + attn1(norm1(h0))
    dev_layernorm_forward(dev, tr->ln1, tr->mean1, tr->rstd1, tr->h0, tr->norm1.w, tr->norm1.b,
                          BN, C, tr->norm1.eps);
    attention_forward_block(&tr->attn1, tr->h1, tr->ln1, tr->ln1, B, N, N, C, attn_ws);
    dev_add_into(dev, tr->h1, tr->h0, NC);
    // h2 = h1 + attn2(norm2(h1), context)
    dev_layernorm_forward(dev, tr->ln2, tr->mean2, tr->rstd2, tr->h1, tr->norm2.w, tr->norm2.b,
                          BN, C, tr->norm2.eps);
    attention_forward_block(&tr->attn2, tr->h2, tr->ln2, context, B, N, tr->T, C, attn_ws);
    dev_add_into(dev, tr->h2, tr->h1, NC);
    // h3 = h2 + ff(norm3(h2))
    dev_layernorm_forward(dev, tr->ln3, tr->mean3, tr->rstd3, tr->h2, tr->norm3.w, tr->norm3.b,
                          BN, C, tr->norm3.eps);
    unet_linear_forward(&tr->ff_proj, tr->ff1, tr->ln3, BN);
    dev_geglu_forward(dev, tr->gg, tr->ff1, BN, 4 * C);
    unet_linear_forward(&tr->ff_out, tr->h3, tr->gg, BN);
    dev_add_into(dev, tr->h3, tr->h2, NC);
    // out = proj_out(h3) as an image + x
    unet_linear_forward(&tr->proj_out, tr->po, tr->h3, BN);
    dev_tokens_to_channels(dev, tr->out, tr->po, B, C, N);
    dev_add_into(dev, tr->out, x, NC);
}

void unet_transformer_backward(unet_transformer *tr, float *dx, float *dcontext,
                               const float *dout, int B, float *ws, float *attn_ws,
                               float *lora_ws) {
    int C = tr->C, N = tr->H * tr->W, BN = B * N;
    size_t NC = (size_t)BN * C;
    float *g0 = ws, *dh = g0 + NC, *g1 = dh + NC, *g2 = g1 + NC, *big = g2 + NC;
    float *mid = big + 8 * NC;  // (BN, 4C), then the attention scratch runs on from here
    device_kind dev = tr->dev;
    // out = tokens_to_channels(proj_out(h3)) + x
    dev_channels_to_tokens(dev, g0, dout, B, C, N);
    unet_linear_backward(&tr->proj_out, dh, g0, tr->h3, BN, lora_ws);
    // h3 = h2 + ff_out(geglu(ff_proj(ln3)))
    unet_linear_backward(&tr->ff_out, mid, dh, tr->gg, BN, lora_ws);
    dev_geglu_backward(dev, big, mid, tr->ff1, BN, 4 * C);
    unet_linear_backward(&tr->ff_proj, g1, big, tr->ln3, BN, lora_ws);
    dev_layernorm_backward(dev, g2, tr->norm3.dw, tr->norm3.db, g1, tr->h2, tr->norm3.w,
                           tr->mean3, tr->rstd3, BN, C);
    dev_add_into(dev, dh, g2, NC);
    // h2 = h1 + attn2(ln2, context): the attention scratch reuses big and mid.
    attention_backward_block(&tr->attn2, g1, dcontext, dh, tr->ln2, tr->context, B, N, tr->T,
                             C, big, attn_ws, lora_ws);
    dev_layernorm_backward(dev, g2, tr->norm2.dw, tr->norm2.db, g1, tr->h1, tr->norm2.w,
                           tr->mean2, tr->rstd2, BN, C);
    dev_add_into(dev, dh, g2, NC);
    // h1 = h0 + attn1(ln1)
    attention_backward_block(&tr->attn1, g1, g1, dh, tr->ln1, tr->ln1, B, N, N, C, big,
                             attn_ws, lora_ws);
    dev_layernorm_backward(dev, g2, tr->norm1.dw, tr->norm1.db, g1, tr->h0, tr->norm1.w,
                           tr->mean1, tr->rstd1, BN, C);
    dev_add_into(dev, dh, g2, NC);
    // h0 = proj_in(channels_to_tokens(norm(x)))
    unet_linear_backward(&tr->proj_in, g0, dh, tr->tok, BN, lora_ws);
    dev_tokens_to_channels(dev, g1, g0, B, C, N);
    dev_groupnorm_backward(dev, dx, tr->norm.dw, tr->norm.db, g1, tr->x, tr->norm.w, tr->gmean,
                           tr->grstd, B, C, N, tr->norm.groups);
    dev_add_into(dev, dx, dout, NC);
}
