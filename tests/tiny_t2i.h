// The tiny shapes-world text-to-image config the training tests share: 16/32 channels,
// attention at the second level, a one-layer width-32 text encoder; S x S images.
#ifndef SELMA_TESTS_TINY_T2I_H
#define SELMA_TESTS_TINY_T2I_H

#include "models/bundle.h"

static inline void tiny_t2i_config(t2i_config *c, int S) {
    t2i_config_shapes(c);
    c->image_size = S;
    c->unet = (unet_config){.in_channels = 3, .out_channels = 3, .n_levels = 2,
                            .block_out_channels = {16, 32}, .layers_per_block = 1,
                            .cross_attn = {0, 1}, .num_heads = {2, 2}, .cross_attention_dim = 32,
                            .norm_num_groups = 4, .norm_eps = 1e-5f, .flip_sin_to_cos = 1,
                            .sample_size = S};
    c->te.width = 32, c->te.layers = 1, c->te.heads = 2, c->te.mlp_width = 64;
}

#endif
