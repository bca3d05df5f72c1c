// The model both CPU training benchmarks time (bench_step.c, bench_dp.c): the shapes
// base (t2i_config_shapes) from a fixed random init, with pretrain's recipe (AdamW lr
// 1e-3, clip 1.0, EMA 0.995, caption dropout 0.1), a trainer for batch B over the
// ranks of w (NULL: one process). Logging is silenced. -1 with a message naming `name`.
#ifndef SELMA_BENCH_SHAPES_H
#define SELMA_BENCH_SHAPES_H

#include <stdio.h>

#include "models/train.h"
#include "runtime/error.h"
#include "runtime/log.h"

static inline int bench_shapes_trainer(const char *name, t2i_model *m, trainer *tr, int B, comm *w) {
    log_set_quiet(1);
    *m = (t2i_model){0};
    t2i_config_shapes(&m->cfg);
    train_hparams hp = {.adam = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01},
                        .warmup_steps = 0, .grad_clip = 1.0, .ema_decay = 0.995, .ema_warmup = 1,
                        .caption_dropout = 0.1, .comm = w};
    if (t2i_build(m, UNET_TRAIN_FULL, NULL)) {
        fprintf(stderr, "%s: %s\n", name, err_msg());
        return -1;
    }
    t2i_init_random(m, 0);
    if (trainer_init(tr, m, &hp, B, 0)) {
        fprintf(stderr, "%s: %s\n", name, err_msg());
        return -1;
    }
    return 0;
}

#endif
