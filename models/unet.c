// UNet2DConditionModel: configs, construction, forward and backward (see unet.h).
#include "models/unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/device_ops.h"
#include "models/lora_moe.h"
#include "runtime/error.h"
#include "runtime/log.h"

unet_config unet_config_sd15(void) {
    return (unet_config){.in_channels = 4, .out_channels = 4, .n_levels = 4,
                         .block_out_channels = {320, 640, 1280, 1280}, .layers_per_block = 2,
                         .cross_attn = {1, 1, 1, 0}, .num_heads = {8, 8, 8, 8},
                         .cross_attention_dim = 768, .norm_num_groups = 32, .norm_eps = 1e-5f,
                         .use_linear_projection = 0, .flip_sin_to_cos = 1, .freq_shift = 0,
                         .sample_size = 64};
}

unet_config unet_config_shapes(void) {
    // 8 groups: GroupNorm(32) would leave one channel per group at 32 channels.
    return (unet_config){.in_channels = 3, .out_channels = 3, .n_levels = 3,
                         .block_out_channels = {32, 64, 64}, .layers_per_block = 1,
                         .cross_attn = {0, 1, 1}, .num_heads = {4, 4, 4},
                         .cross_attention_dim = 128, .norm_num_groups = 8, .norm_eps = 1e-5f,
                         .use_linear_projection = 0, .flip_sin_to_cos = 1, .freq_shift = 0,
                         .sample_size = 32};
}

unet_config unet_config_tiny(void) {
    return (unet_config){.in_channels = 3, .out_channels = 2, .n_levels = 2,
                         .block_out_channels = {4, 8}, .layers_per_block = 1,
                         .cross_attn = {1, 0}, .num_heads = {2, 2},
                         .cross_attention_dim = 8, .norm_num_groups = 2, .norm_eps = 1e-5f,
                         .use_linear_projection = 0, .flip_sin_to_cos = 1, .freq_shift = 0,
                         .sample_size = 8};
}

int unet_config_check(const unet_config *c) {
    if (c->n_levels < 1 || c->n_levels > UNET_MAX_LEVELS)
        return err_set("unet config: n_levels %d not in [1, %d]", c->n_levels, UNET_MAX_LEVELS);
    if (c->layers_per_block < 1 || c->layers_per_block > UNET_MAX_LAYERS)
        return err_set("unet config: layers_per_block %d not in [1, %d]", c->layers_per_block,
                       UNET_MAX_LAYERS);
    if (c->in_channels < 1 || c->out_channels < 1)
        return err_set("unet config: in_channels %d / out_channels %d must be positive",
                       c->in_channels, c->out_channels);
    if (c->class_embed_dim < 0)
        return err_set("unet config: class_embed_dim %d must be 0 (none) or positive", c->class_embed_dim);
    if (c->norm_num_groups < 1 || c->cross_attention_dim < 1 || !(c->norm_eps > 0))
        return err_set("unet config: norm_num_groups, cross_attention_dim and norm_eps must be positive");
    for (int i = 0; i < c->n_levels; i++) {
        int C = c->block_out_channels[i], h = c->num_heads[i];
        if (C < 1 || C % c->norm_num_groups)
            return err_set("unet config: block_out_channels[%d] = %d is not a positive multiple of norm_num_groups %d",
                           i, C, c->norm_num_groups);
        if (h < 1 || C % h)
            return err_set("unet config: num_heads[%d] = %d does not divide %d channels", i, h, C);
    }
    int f = 1 << (c->n_levels - 1);
    if (c->sample_size < f || c->sample_size % f)
        return err_set("unet config: sample_size %d is not a multiple of %d (2^(levels-1))",
                       c->sample_size, f);
    return 0;
}

static void fmt(char *buf, const char *f, int i, int j) {
    int n = snprintf(buf, UNET_NAME_MAX, f, i, j);
    CHECK(n > 0 && n < UNET_NAME_MAX);
}

// Registers every parameter in forward order and fills the module tree (dims, skip
// bookkeeping). Runs twice: planning, then with the committed arena.
static void unet_setup(unet *m) {
    const unet_config *c = &m->cfg;
    param_table *t = &m->params;
    char name[UNET_NAME_MAX];
    int C0 = c->block_out_channels[0], temb = 4 * C0, G = c->norm_num_groups, L = c->layers_per_block;
    int lin = c->use_linear_projection, D = c->cross_attention_dim;
    float eps = c->norm_eps;
    int S = c->sample_size, nl = c->n_levels;
    ptab_begin(t);
    unet_conv_setup(&m->conv_in, t, "conv_in", c->in_channels, C0, 3, 1, 1);
    unet_linear_setup(&m->time_linear_1, t, "time_embedding.linear_1", C0, temb, 1, 0);
    unet_linear_setup(&m->time_linear_2, t, "time_embedding.linear_2", temb, temb, 1, 0);
    if (c->class_embed_dim > 0) {
        unet_linear_setup(&m->class_linear_1, t, "class_embedding.linear_1", c->class_embed_dim, temb, 1, 0);
        unet_linear_setup(&m->class_linear_2, t, "class_embedding.linear_2", temb, temb, 1, 0);
    }
    int ns = 0, ch = C0, H = S;
    m->skip_c[ns] = C0, m->skip_hw[ns++] = S * S;
    for (int i = 0; i < nl; i++) {
        unet_down_level *d = &m->down[i];
        d->C = c->block_out_channels[i], d->H = d->W = H;
        d->has_attn = c->cross_attn[i], d->has_down = i < nl - 1;
        for (int j = 0; j < L; j++) {
            fmt(name, "down_blocks.%d.resnets.%d", i, j);
            unet_resnet_setup(&d->resnets[j], t, name, ch, d->C, temb, G, eps, H, H);
            ch = d->C;
            if (d->has_attn) {
                fmt(name, "down_blocks.%d.attentions.%d", i, j);
                unet_transformer_setup(&d->attentions[j], t, name, ch, c->num_heads[i], D, G,
                                       lin, H, H);
            }
            d->skip[j] = ns, m->skip_c[ns] = ch, m->skip_hw[ns++] = H * H;
        }
        if (d->has_down) {
            fmt(name, "down_blocks.%d.downsamplers.0.conv", i, 0);
            unet_conv_setup(&d->downsampler, t, name, ch, ch, 3, 2, 1);
            H /= 2;
            d->skip[L] = ns, m->skip_c[ns] = ch, m->skip_hw[ns++] = H * H;
        }
    }
    m->n_skips = ns;
    unet_resnet_setup(&m->mid_resnets[0], t, "mid_block.resnets.0", ch, ch, temb, G, eps, H, H);
    unet_transformer_setup(&m->mid_attn, t, "mid_block.attentions.0", ch, c->num_heads[nl - 1],
                           D, G, lin, H, H);
    unet_resnet_setup(&m->mid_resnets[1], t, "mid_block.resnets.1", ch, ch, temb, G, eps, H, H);
    for (int i = 0; i < nl; i++) {
        unet_up_level *u = &m->up[i];
        int lvl = nl - 1 - i;  // the down level this one mirrors
        u->C = c->block_out_channels[lvl], u->H = u->W = H;
        u->has_attn = c->cross_attn[lvl], u->has_up = i < nl - 1;
        for (int j = 0; j <= L; j++) {
            int k = --ns;
            CHECK(m->skip_hw[k] == H * H);  // the stack mirrors by construction
            u->skip[j] = k, u->cprev[j] = ch, u->cskip[j] = m->skip_c[k];
            fmt(name, "up_blocks.%d.resnets.%d", i, j);
            unet_resnet_setup(&u->resnets[j], t, name, ch + m->skip_c[k], u->C, temb, G, eps, H, H);
            ch = u->C;
            if (u->has_attn) {
                fmt(name, "up_blocks.%d.attentions.%d", i, j);
                unet_transformer_setup(&u->attentions[j], t, name, ch, c->num_heads[lvl], D, G,
                                       lin, H, H);
            }
        }
        if (u->has_up) {
            fmt(name, "up_blocks.%d.upsamplers.0.conv", i, 0);
            unet_conv_setup(&u->upsampler, t, name, ch, ch, 3, 1, 1);
            H *= 2;
        }
    }
    CHECK(ns == 0 && H == S);
    unet_norm_setup(&m->conv_norm_out, t, "conv_norm_out", C0, G, eps);
    unet_conv_setup(&m->conv_out, t, "conv_out", C0, c->out_channels, 3, 1, 1);
}

int unet_build(unet *m, const unet_config *cfg, unet_train_mode mode, const lora_config *lora) {
    return unet_build_device(m, cfg, mode, lora, DEVICE_CPU);
}

int unet_build_device(unet *m, const unet_config *cfg, unet_train_mode mode,
                      const lora_config *lora, device_kind device) {
    memset(m, 0, sizeof *m);
    if (device == DEVICE_CUDA && cuda_device_count() == 0)
        return err_set("unet: cannot build on cuda: %s", cuda_device_describe());
    if (unet_config_check(cfg)) return -1;
    int rank = lora ? lora->rank : 0;
    if (mode == UNET_TRAIN_LORA && rank <= 0)
        return err_set("unet: LoRA training needs an adapter rank > 0");
    if (mode == UNET_TRAIN_FULL && rank > 0)
        return err_set("unet: full training with adapters attached is not supported "
                       "(the adapter kernels compute no base-weight gradient)");
    if (mode == UNET_TRAIN_MOE && rank > 0)
        return err_set("unet: a LoRA mixture of experts takes its experts from LoRA files "
                       "(models/lora_moe.h), not from a lora_config");
    if (rank > 0 && !(lora->alpha > 0))
        return err_set("unet: LoRA alpha must be positive (got %g)", (double)lora->alpha);
    m->cfg = *cfg;
    m->mode = mode;
    ptab_init_device(&m->params, "unet params", mode == UNET_TRAIN_FULL, mode == UNET_TRAIN_LORA,
                     lora, device);
    unet_setup(m);
    if (ptab_commit_params(&m->params)) goto fail;
    unet_setup(m);
    if (ptab_commit_grads(&m->params)) goto fail;
    if (rank > 0 && ptab_count(&m->params, PARAM_LORA, 0) == 0) {
        err_set("unet: LoRA targets '%s' match no linear layer", lora->targets);
        goto fail;
    }
    log_line("unet: %zu base parameters, %zu LoRA parameters, %zu trainable",
             ptab_count(&m->params, PARAM_BASE, 0), ptab_count(&m->params, PARAM_LORA, 0),
             ptab_count(&m->params, PARAM_BASE, 1) + ptab_count(&m->params, PARAM_LORA, 1));
    return 0;
fail:
    unet_free(m);
    return -1;
}

int unet_param_count(const unet_config *cfg, size_t *n_params, int *n_tensors) {
    if (unet_config_check(cfg)) return -1;
    unet *m = calloc(1, sizeof *m);  // tens of KB of module structs: not on the stack
    if (!m) return err_set("unet_param_count: out of memory");
    m->cfg = *cfg;
    ptab_init(&m->params, "unet params", 0, 0, NULL);
    unet_setup(m);  // planning pass only: nothing is allocated
    *n_params = ptab_count(&m->params, PARAM_BASE, 0);
    *n_tensors = m->params.n;
    ptab_free(&m->params);
    free(m);
    return 0;
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }
static float *take(arena *a, size_t n) { return arena_take(a, n * sizeof(float)); }

typedef struct scratch_sizes {
    size_t ws, conv, attn, stream;
} scratch_sizes;

static void need_resnet(scratch_sizes *s, const unet_resnet *r, int B) {
    s->ws = zmax(s->ws, unet_resnet_scratch_floats(r, B));
    s->conv = zmax(s->conv, unet_resnet_conv_scratch_floats(r, B));
    s->stream = zmax(s->stream, (size_t)B * r->cin * r->H * r->W);
}

static void need_transformer(scratch_sizes *s, const unet_transformer *tr, int B) {
    s->ws = zmax(s->ws, unet_transformer_scratch_floats(tr, B));
    s->attn = zmax(s->attn, unet_transformer_attn_scratch_floats(tr, B));
}

// Every activation and backward buffer, in forward order.
static void acts_layout(unet *m, arena *a, int B, int T) {
    const unet_config *c = &m->cfg;
    int C0 = c->block_out_channels[0], S = c->sample_size, L = c->layers_per_block;
    size_t img0 = (size_t)B * C0 * S * S;
    scratch_sizes need = {.stream = zmax(img0, (size_t)B * c->in_channels * S * S)};
    // The timesteps come from the host; a CUDA model keeps its copy here.
    m->t_dev = a->device == DEVICE_CUDA ? take(a, (size_t)B) : NULL;
    m->tproj = take(a, (size_t)B * C0);
    m->e1 = take(a, (size_t)B * 4 * C0), m->e1a = take(a, (size_t)B * 4 * C0);
    m->emb = take(a, (size_t)B * 4 * C0), m->emb_act = take(a, (size_t)B * 4 * C0);
    unet_linear_acts(&m->time_linear_1, a, B);
    unet_linear_acts(&m->time_linear_2, a, B);
    if (c->class_embed_dim > 0) {
        m->c1 = take(a, (size_t)B * 4 * C0), m->c1a = take(a, (size_t)B * 4 * C0);
        unet_linear_acts(&m->class_linear_1, a, B);
        unet_linear_acts(&m->class_linear_2, a, B);
    }
    m->h_in = take(a, img0);
    need.conv = unet_conv_scratch_floats(&m->conv_in, B, S, S);
    for (int i = 0; i < c->n_levels; i++) {
        unet_down_level *d = &m->down[i];
        for (int j = 0; j < L; j++) {
            unet_resnet_acts(&d->resnets[j], a, B);
            need_resnet(&need, &d->resnets[j], B);
            if (!d->has_attn) continue;
            unet_transformer_acts(&d->attentions[j], a, B, T);
            need_transformer(&need, &d->attentions[j], B);
        }
        if (d->has_down) {
            d->down_out = take(a, (size_t)B * d->C * (d->H / 2) * (d->W / 2));
            need.conv = zmax(need.conv, unet_conv_scratch_floats(&d->downsampler, B, d->H, d->W));
        }
    }
    for (int j = 0; j < 2; j++) {
        unet_resnet_acts(&m->mid_resnets[j], a, B);
        need_resnet(&need, &m->mid_resnets[j], B);
    }
    unet_transformer_acts(&m->mid_attn, a, B, T);
    need_transformer(&need, &m->mid_attn, B);
    for (int i = 0; i < c->n_levels; i++) {
        unet_up_level *u = &m->up[i];
        for (int j = 0; j <= L; j++) {
            u->cat[j] = take(a, (size_t)B * (u->cprev[j] + u->cskip[j]) * u->H * u->W);
            unet_resnet_acts(&u->resnets[j], a, B);
            need_resnet(&need, &u->resnets[j], B);
            if (!u->has_attn) continue;
            unet_transformer_acts(&u->attentions[j], a, B, T);
            need_transformer(&need, &u->attentions[j], B);
        }
        if (u->has_up) {
            size_t n = (size_t)B * u->C * 4 * u->H * u->W;
            u->up_in = take(a, n), u->up_out = take(a, n);
            need.stream = zmax(need.stream, n);
            need.conv = zmax(need.conv, unet_conv_scratch_floats(&u->upsampler, B, 2 * u->H, 2 * u->W));
        }
    }
    m->no = take(a, img0), m->no_act = take(a, img0);
    m->no_mean = take(a, (size_t)B * c->norm_num_groups);
    m->no_rstd = take(a, (size_t)B * c->norm_num_groups);
    m->out = take(a, (size_t)B * c->out_channels * S * S);
    need.conv = zmax(need.conv, unet_conv_scratch_floats(&m->conv_out, B, S, S));
    // backward
    for (int k = 0; k < m->n_skips; k++)
        m->dskips[k] = take(a, (size_t)B * m->skip_c[k] * m->skip_hw[k]);
    m->g0 = take(a, need.stream), m->g1 = take(a, need.stream);
    m->demb_act = take(a, (size_t)B * 4 * C0), m->dtmp = take(a, (size_t)B * 4 * C0);
    m->ws = take(a, need.ws);
    m->conv_ws = take(a, need.conv);
    m->attn_ws = take(a, need.attn);
    // The adapters' dh: at most (B * largest token count) x rank.
    m->lora_ws = take(a, (size_t)B * (size_t)zmax((size_t)S * S, (size_t)T) * m->params.lora.rank);
}

int unet_alloc_activations(unet *m, int B, int T) {
    if (B < 1 || T < 1) return err_set("unet: batch %d and context length %d must be positive", B, T);
    arena_free(&m->acts);
    m->acts = arena_plan("unet acts", m->params.params.device);
    acts_layout(m, &m->acts, B, T);
    if (arena_commit(&m->acts)) return -1;
    acts_layout(m, &m->acts, B, T);
    m->B = B, m->T = T;
    return 0;
}

void unet_free(unet *m) {
    arena_free(&m->acts);
    ptab_free(&m->params);
}

void unet_zero_grad(unet *m) {
    ptab_zero_grad(&m->params);
    if (m->moe) lora_moe_zero_grad(m->moe);
}

int unet_forward(unet *m, const float *x, const float *t, const float *context, int B) {
    return unet_forward_cond(m, x, t, context, NULL, B);
}

int unet_forward_cond(unet *m, const float *x, const float *t, const float *context,
                      const float *class_labels, int B) {
    const unet_config *c = &m->cfg;
    if (!m->acts.base || B < 1 || B > m->B)
        return err_set("unet_forward: batch %d but activations allocated for %d", B, m->B);
    if ((c->class_embed_dim > 0) != (class_labels != NULL))
        return err_set("unet_forward: the model has class_embed_dim %d but class labels were %s",
                       c->class_embed_dim, class_labels ? "given" : "not given");
    int C0 = c->block_out_channels[0], S = c->sample_size, L = c->layers_per_block;
    size_t temb = (size_t)B * 4 * C0;
    device_kind dev = m->acts.device;
    if (dev == DEVICE_CUDA) {  // t is host memory on every device (unet.h)
        device_copy(DEVICE_CUDA, m->t_dev, DEVICE_CPU, t, (size_t)B * sizeof(float));
        t = m->t_dev;
    }
    // time embedding; silu(emb) is shared by every ResNet's time_emb_proj
    dev_timestep_embedding_forward(dev, m->tproj, t, B, C0, c->flip_sin_to_cos, c->freq_shift,
                                   10000.0f);
    unet_linear_forward(&m->time_linear_1, m->e1, m->tproj, B);
    dev_silu_forward(dev, m->e1a, m->e1, temb);
    unet_linear_forward(&m->time_linear_2, m->emb, m->e1a, B);
    m->class_in = class_labels;
    if (class_labels) {  // emb += linear_2(silu(linear_1(class_labels))), dtmp as scratch
        unet_linear_forward(&m->class_linear_1, m->c1, class_labels, B);
        dev_silu_forward(dev, m->c1a, m->c1, temb);
        unet_linear_forward(&m->class_linear_2, m->dtmp, m->c1a, B);
        dev_add_into(dev, m->emb, m->dtmp, temb);
    }
    dev_silu_forward(dev, m->emb_act, m->emb, temb);
    m->x = x;
    unet_conv_forward(&m->conv_in, m->h_in, x, B, S, S, m->conv_ws);
    const float *h = m->h_in;
    m->skips[0] = h;
    for (int i = 0; i < c->n_levels; i++) {
        unet_down_level *d = &m->down[i];
        for (int j = 0; j < L; j++) {
            unet_resnet_forward(&d->resnets[j], h, m->emb_act, B, m->conv_ws);
            h = d->resnets[j].out;
            if (d->has_attn) {
                unet_transformer_forward(&d->attentions[j], h, context, B, m->attn_ws);
                h = d->attentions[j].out;
            }
            m->skips[d->skip[j]] = h;
        }
        if (d->has_down) {
            unet_conv_forward(&d->downsampler, d->down_out, h, B, d->H, d->W, m->conv_ws);
            h = m->skips[d->skip[L]] = d->down_out;
        }
    }
    unet_resnet_forward(&m->mid_resnets[0], h, m->emb_act, B, m->conv_ws);
    unet_transformer_forward(&m->mid_attn, m->mid_resnets[0].out, context, B, m->attn_ws);
    unet_resnet_forward(&m->mid_resnets[1], m->mid_attn.out, m->emb_act, B, m->conv_ws);
    h = m->mid_resnets[1].out;
    for (int i = 0; i < c->n_levels; i++) {
        unet_up_level *u = &m->up[i];
        for (int j = 0; j <= L; j++) {
            dev_concat_channels_forward(dev, u->cat[j], h, m->skips[u->skip[j]], B, u->cprev[j],
                                        u->cskip[j], u->H * u->W);
            unet_resnet_forward(&u->resnets[j], u->cat[j], m->emb_act, B, m->conv_ws);
            h = u->resnets[j].out;
            if (u->has_attn) {
                unet_transformer_forward(&u->attentions[j], h, context, B, m->attn_ws);
                h = u->attentions[j].out;
            }
        }
        if (u->has_up) {
            dev_upsample_nearest2x_forward(dev, u->up_in, h, B, u->C, u->H, u->W);
            unet_conv_forward(&u->upsampler, u->up_out, u->up_in, B, 2 * u->H, 2 * u->W, m->conv_ws);
            h = u->up_out;
        }
    }
    m->h_last = h;
    dev_groupnorm_forward(dev, m->no, m->no_mean, m->no_rstd, h, m->conv_norm_out.w,
                          m->conv_norm_out.b, B, C0, S * S, c->norm_num_groups, c->norm_eps);
    dev_silu_forward(dev, m->no_act, m->no, (size_t)B * C0 * S * S);
    unet_conv_forward(&m->conv_out, m->out, m->no_act, B, S, S, m->conv_ws);
    return 0;
}

#define SWAP(a, b) do { float *t_ = (a); (a) = (b); (b) = t_; } while (0)

void unet_backward(unet *m, const float *dout, float *dx, float *dcontext, int B) {
    unet_backward_cond(m, dout, dx, dcontext, NULL, B);
}

void unet_backward_cond(unet *m, const float *dout, float *dx, float *dcontext, float *dclass,
                        int B) {
    const unet_config *c = &m->cfg;
    int C0 = c->block_out_channels[0], S = c->sample_size, L = c->layers_per_block;
    size_t temb = (size_t)B * 4 * C0;
    float *g = m->g0, *o = m->g1;  // g: gradient of the current stream tensor; o: the other
    device_kind dev = m->acts.device;
    if (dcontext) dev_zero(dev, dcontext, (size_t)B * m->T * c->cross_attention_dim * sizeof(float));
    dev_zero(dev, m->demb_act, temb * sizeof(float));
    // out = conv_out(silu(conv_norm_out(h)))
    unet_conv_backward(&m->conv_out, o, dout, m->no_act, B, S, S, m->conv_ws);
    dev_silu_backward(dev, o, o, m->no, (size_t)B * C0 * S * S);
    dev_groupnorm_backward(dev, g, m->conv_norm_out.dw, m->conv_norm_out.db, o, m->h_last,
                           m->conv_norm_out.w, m->no_mean, m->no_rstd, B, C0, S * S,
                           c->norm_num_groups);
    for (int i = c->n_levels - 1; i >= 0; i--) {
        unet_up_level *u = &m->up[i];
        if (u->has_up) {
            unet_conv_backward(&u->upsampler, o, g, u->up_in, B, 2 * u->H, 2 * u->W, m->conv_ws);
            dev_upsample_nearest2x_backward(dev, g, o, B, u->C, u->H, u->W);
        }
        for (int j = L; j >= 0; j--) {
            if (u->has_attn) {
                unet_transformer_backward(&u->attentions[j], o, dcontext, g, B, m->ws, m->attn_ws,
                                          m->lora_ws);
                SWAP(g, o);
            }
            unet_resnet_backward(&u->resnets[j], o, m->demb_act, g, m->emb_act, B, m->ws,
                                 m->conv_ws, m->lora_ws);
            dev_concat_channels_backward(dev, g, m->dskips[u->skip[j]], o, B, u->cprev[j],
                                         u->cskip[j], u->H * u->W);
        }
    }
    unet_resnet_backward(&m->mid_resnets[1], o, m->demb_act, g, m->emb_act, B, m->ws, m->conv_ws,
                         m->lora_ws);
    unet_transformer_backward(&m->mid_attn, g, dcontext, o, B, m->ws, m->attn_ws, m->lora_ws);
    unet_resnet_backward(&m->mid_resnets[0], o, m->demb_act, g, m->emb_act, B, m->ws, m->conv_ws,
                         m->lora_ws);
    SWAP(g, o);
    // Every down-path output is also a skip: its gradient is the next block's plus the
    // up path's.
    for (int i = c->n_levels - 1; i >= 0; i--) {
        unet_down_level *d = &m->down[i];
        if (d->has_down) {
            dev_add_into(dev, g, m->dskips[d->skip[L]], (size_t)B * d->C * (d->H / 2) * (d->W / 2));
            unet_conv_backward(&d->downsampler, o, g, m->skips[d->skip[L - 1]], B, d->H, d->W,
                               m->conv_ws);
            SWAP(g, o);
        }
        for (int j = L - 1; j >= 0; j--) {
            dev_add_into(dev, g, m->dskips[d->skip[j]], (size_t)B * d->C * d->H * d->W);
            if (d->has_attn) {
                unet_transformer_backward(&d->attentions[j], o, dcontext, g, B, m->ws, m->attn_ws,
                                          m->lora_ws);
                SWAP(g, o);
            }
            unet_resnet_backward(&d->resnets[j], o, m->demb_act, g, m->emb_act, B, m->ws,
                                 m->conv_ws, m->lora_ws);
            SWAP(g, o);
        }
    }
    dev_add_into(dev, g, m->dskips[0], (size_t)B * C0 * S * S);
    unet_conv_backward(&m->conv_in, dx, g, m->x, B, S, S, m->conv_ws);
    // emb_act = silu(linear_2(silu(linear_1(tproj))))
    dev_silu_backward(dev, m->demb_act, m->demb_act, m->emb, temb);
    if (m->class_in) {
        unet_linear_backward(&m->class_linear_2, m->dtmp, m->demb_act, m->c1a, B, m->lora_ws);
        dev_silu_backward(dev, m->dtmp, m->dtmp, m->c1, temb);
        unet_linear_backward(&m->class_linear_1, dclass, m->dtmp, m->class_in, B, m->lora_ws);
    }
    unet_linear_backward(&m->time_linear_2, m->dtmp, m->demb_act, m->e1a, B, m->lora_ws);
    dev_silu_backward(dev, m->dtmp, m->dtmp, m->e1, temb);
    unet_linear_backward(&m->time_linear_1, NULL, m->dtmp, m->tproj, B, m->lora_ws);
}
