// A UNet's parameters between devices, and the AdamW step where they live (unet.h).
#include <stdint.h>
#include <string.h>

#include "models/device_ops.h"
#include "models/unet.h"
#include "runtime/error.h"

int unet_copy_params(unet *dst, const unet *src) {
    const param_table *d = &dst->params, *s = &src->params;
    if (d->n != s->n)
        return err_set("unet_copy_params: %d tensors into a model of %d", s->n, d->n);
    for (int i = 0; i < s->n; i++) {  // the same build registers the same tensors in order
        const unet_param *ps = &s->items[i], *pd = &d->items[i];
        if (strcmp(ps->name, pd->name) || ps->t.ndim != pd->t.ndim ||
            memcmp(ps->t.shape, pd->t.shape, (size_t)ps->t.ndim * sizeof ps->t.shape[0]))
            return err_set("unet_copy_params: tensor %d is %s in the source, %s (or another "
                           "shape) in the destination", i, ps->name, pd->name);
    }
    for (int i = 0; i < s->n; i++)
        device_copy(d->params.device, d->items[i].t.data, s->params.device, s->items[i].t.data,
                    tensor_nbytes(&s->items[i].t));
    return 0;
}

size_t unet_adam_state_floats(const unet *m) { return m->params.grads.size / sizeof(float); }

// Tensor by tensor: AdamW is elementwise, so this equals one update over the whole
// gradient arena (models/train.c's) without touching the alignment gaps.
void unet_adamw_update(unet *m, float *adam_m, float *adam_v, const adamw_hparams *hp, int t) {
    const param_table *pt = &m->params;
    for (int i = 0; i < pt->n; i++) {
        const unet_param *p = &pt->items[i];
        if (!p->grad) continue;
        size_t off = (size_t)((const char *)p->grad - pt->grads.base) / sizeof(float);
        dev_adamw_update(pt->params.device, p->t.data, p->grad, adam_m + off, adam_v + off,
                         (size_t)tensor_numel(&p->t), hp, t);
    }
}
