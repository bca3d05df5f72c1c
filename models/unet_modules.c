// Parameter table, leaf modules and ResnetBlock2D (see unet_modules.h).
#include "models/unet_modules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/device_ops.h"
#include "models/lora_moe.h"
#include "runtime/error.h"

// ---- parameter table ----

void ptab_init(param_table *t, const char *name, int train_base, int train_lora,
               const lora_config *lora) {
    ptab_init_device(t, name, train_base, train_lora, lora, DEVICE_CPU);
}

void ptab_init_device(param_table *t, const char *name, int train_base, int train_lora,
                      const lora_config *lora, device_kind device) {
    memset(t, 0, sizeof *t);
    t->params = arena_plan(name, device);
    t->grads = arena_plan("grads", device);
    t->train_base = train_base;
    t->train_lora = train_lora;
    if (lora) t->lora = *lora;
}

void ptab_begin(param_table *t) {
    t->n = 0;
    arena_rewind(&t->params);
}

float *ptab_add(param_table *t, const char *name, int ndim, const int64_t *shape,
                param_kind kind, param_init init, int fan_in, float **grad_slot) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->items = realloc(t->items, (size_t)t->cap * sizeof *t->items);
        CHECK(t->items != NULL);
    }
    unet_param *p = &t->items[t->n++];
    memset(p, 0, sizeof *p);
    CHECK(strlen(name) < UNET_NAME_MAX);  // names are built by the model, not read
    strcpy(p->name, name);
    p->t = arena_tensor(&t->params, DTYPE_F32, ndim, shape);
    p->kind = kind;
    p->init = init;
    p->fan_in = fan_in;
    p->trainable = kind == PARAM_BASE ? t->train_base : t->train_lora;
    p->grad_slot = grad_slot;
    if (grad_slot) *grad_slot = NULL;
    return p->t.data;
}

int ptab_commit_params(param_table *t) { return arena_commit(&t->params); }

static void grads_layout(param_table *t) {
    arena_rewind(&t->grads);
    for (int i = 0; i < t->n; i++) {
        unet_param *p = &t->items[i];
        if (!p->trainable) continue;
        p->grad = arena_take(&t->grads, tensor_nbytes(&p->t));
        if (p->grad_slot) *p->grad_slot = p->grad;
    }
}

int ptab_commit_grads(param_table *t) {
    grads_layout(t);
    if (t->grads.used == 0) return 0;  // a frozen model gets no gradient arena at all
    if (arena_commit(&t->grads)) return -1;
    grads_layout(t);
    return 0;
}

void ptab_zero_grad(param_table *t) {
    if (t->grads.base) device_memset(t->grads.device, t->grads.base, 0, t->grads.size);
}

void ptab_free(param_table *t) {
    arena_free(&t->params);
    arena_free(&t->grads);
    free(t->items);
    t->items = NULL;
    t->n = t->cap = 0;
}

unet_param *ptab_find(const param_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->items[i].name, name)) return &t->items[i];
    return NULL;
}

size_t ptab_count(const param_table *t, param_kind kind, int trainable_only) {
    size_t n = 0;
    for (int i = 0; i < t->n; i++)
        if (t->items[i].kind == kind && (!trainable_only || t->items[i].trainable))
            n += (size_t)tensor_numel(&t->items[i].t);
    return n;
}

// ---- leaf modules ----

static void name2(char *buf, const char *a, const char *b) {
    int n = snprintf(buf, UNET_NAME_MAX, "%s.%s", a, b);
    CHECK(n > 0 && n < UNET_NAME_MAX);
}

// Does `name` end in ".<target>" for one of the comma-separated targets?
static int lora_matches(const lora_config *c, const char *name) {
    if (c->rank <= 0) return 0;
    size_t nl = strlen(name);
    const char *s = c->targets;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t tl = e ? (size_t)(e - s) : strlen(s);
        if (tl && tl < nl && name[nl - tl - 1] == '.' && !strncmp(name + nl - tl, s, tl))
            return 1;
        if (!e) break;
        s = e + 1;
    }
    return 0;
}

void unet_linear_setup(unet_linear *l, param_table *t, const char *name, int in, int out,
                       int bias, int as_conv1x1) {
    char buf[UNET_NAME_MAX];
    memset(l, 0, sizeof *l);
    l->dev = t->params.device;
    l->in = in;
    l->out = out;
    int64_t ws[4] = {out, in, 1, 1}, bs[1] = {out};
    name2(buf, name, "weight");
    l->w = ptab_add(t, buf, as_conv1x1 ? 4 : 2, ws, PARAM_BASE, PARAM_INIT_UNIFORM, in, &l->dw);
    t->items[t->n - 1].linear = l;
    if (bias) {
        name2(buf, name, "bias");
        l->b = ptab_add(t, buf, 1, bs, PARAM_BASE, PARAM_INIT_UNIFORM, in, &l->db);
    }
    if (lora_matches(&t->lora, name)) {
        int r = t->lora.rank;
        l->rank = r;
        l->scale = t->lora.alpha / (float)r;
        int64_t as[2] = {r, in}, bs2[2] = {out, r};
        name2(buf, name, "lora_A.weight");
        l->lora_a = ptab_add(t, buf, 2, as, PARAM_LORA, PARAM_INIT_UNIFORM, in, &l->dlora_a);
        name2(buf, name, "lora_B.weight");
        l->lora_b = ptab_add(t, buf, 2, bs2, PARAM_LORA, PARAM_INIT_ZEROS, r, &l->dlora_b);
    }
}

void unet_linear_acts(unet_linear *l, arena *a, int N) {
    l->lora_h = l->rank ? arena_take(a, (size_t)N * l->rank * sizeof(float)) : NULL;
    if (l->moe) moe_linear_acts(l->moe, a, N);
}

void unet_linear_forward(unet_linear *l, float *out, const float *inp, int N) {
    if (l->moe)  // CPU only: lora_moe_init refuses a CUDA model
        moe_linear_forward(l, out, inp, N);
    else if (l->rank)
        dev_lora_linear_forward(l->dev, out, l->lora_h, inp, l->w, l->b, l->lora_a, l->lora_b,
                                l->scale, N, l->in, l->out, l->rank);
    else
        dev_linear_forward(l->dev, out, inp, l->w, l->b, N, l->in, l->out);
}

void unet_linear_backward(unet_linear *l, float *dinp, const float *dout, const float *inp,
                          int N, float *dh_scratch) {
    if (l->moe)  // base and experts frozen: router gradients only
        moe_linear_backward(l, dinp, dout, inp, N);
    else if (l->rank)  // the base weight is frozen under an adapter: lora.h computes none
        dev_lora_linear_backward(l->dev, dinp, l->dlora_a, l->dlora_b, dh_scratch, dout, inp,
                                 l->lora_h, l->w, l->lora_a, l->lora_b, l->scale, N, l->in,
                                 l->out, l->rank);
    else if (dinp || l->dw || l->db)
        dev_linear_backward(l->dev, dinp, l->dw, l->db, dout, inp, l->w, N, l->in, l->out);
}

void unet_conv_setup(unet_conv *c, param_table *t, const char *name, int in, int out, int k,
                     int stride, int pad) {
    char buf[UNET_NAME_MAX];
    *c = (unet_conv){.dev = t->params.device, .in = in, .out = out, .k = k, .stride = stride,
                     .pad = pad};
    int64_t ws[4] = {out, in, k, k}, bs[1] = {out};
    name2(buf, name, "weight");
    c->w = ptab_add(t, buf, 4, ws, PARAM_BASE, PARAM_INIT_UNIFORM, in * k * k, &c->dw);
    name2(buf, name, "bias");
    c->b = ptab_add(t, buf, 1, bs, PARAM_BASE, PARAM_INIT_UNIFORM, in * k * k, &c->db);
}

static conv2d_shape conv_shape(const unet_conv *c, int B, int H, int W) {
    return (conv2d_shape){.B = B, .C = c->in, .H = H, .W = W, .OC = c->out, .K = c->k,
                          .stride = c->stride, .pad = c->pad};
}

size_t unet_conv_scratch_floats(const unet_conv *c, int B, int H, int W) {
    conv2d_shape s = conv_shape(c, B, H, W);
    return dev_conv2d_scratch_floats(c->dev, &s);
}

void unet_conv_forward(const unet_conv *c, float *out, const float *inp, int B, int H, int W,
                       float *conv_ws) {
    conv2d_shape s = conv_shape(c, B, H, W);
    dev_conv2d_forward(c->dev, out, inp, c->w, c->b, &s, conv_ws);
}

void unet_conv_backward(const unet_conv *c, float *dinp, const float *dout, const float *inp,
                        int B, int H, int W, float *conv_ws) {
    conv2d_shape s = conv_shape(c, B, H, W);
    if (dinp || c->dw || c->db)
        dev_conv2d_backward(c->dev, dinp, c->dw, c->db, dout, inp, c->w, &s, conv_ws);
}

void unet_norm_setup(unet_norm *n, param_table *t, const char *name, int C, int groups,
                     float eps) {
    char buf[UNET_NAME_MAX];
    *n = (unet_norm){.dev = t->params.device, .C = C, .groups = groups, .eps = eps};
    int64_t s[1] = {C};
    name2(buf, name, "weight");
    n->w = ptab_add(t, buf, 1, s, PARAM_BASE, PARAM_INIT_ONES, 0, &n->dw);
    name2(buf, name, "bias");
    n->b = ptab_add(t, buf, 1, s, PARAM_BASE, PARAM_INIT_ZEROS, 0, &n->db);
}

// ---- ResnetBlock2D ----

void unet_resnet_setup(unet_resnet *r, param_table *t, const char *prefix, int cin, int cout,
                       int temb_dim, int groups, float eps, int H, int W) {
    char buf[UNET_NAME_MAX];
    memset(r, 0, sizeof *r);
    r->dev = t->params.device;
    r->cin = cin;
    r->cout = cout;
    r->H = H;
    r->W = W;
    r->temb_dim = temb_dim;
    // diffusers' parameter order within the block (state-dict order).
    name2(buf, prefix, "norm1");
    unet_norm_setup(&r->norm1, t, buf, cin, groups, eps);
    name2(buf, prefix, "conv1");
    unet_conv_setup(&r->conv1, t, buf, cin, cout, 3, 1, 1);
    if (temb_dim > 0) {  // 0: the VAE's blocks (temb_channels None), which have none
        name2(buf, prefix, "time_emb_proj");
        unet_linear_setup(&r->time_emb_proj, t, buf, temb_dim, cout, 1, 0);
    }
    name2(buf, prefix, "norm2");
    unet_norm_setup(&r->norm2, t, buf, cout, groups, eps);
    name2(buf, prefix, "conv2");
    unet_conv_setup(&r->conv2, t, buf, cout, cout, 3, 1, 1);
    if (cin != cout) {
        name2(buf, prefix, "conv_shortcut");
        unet_conv_setup(&r->conv_shortcut, t, buf, cin, cout, 1, 1, 0);
    }
}

void unet_resnet_acts(unet_resnet *r, arena *a, int B) {
    size_t X = (size_t)B * r->cin * r->H * r->W, Y = (size_t)B * r->cout * r->H * r->W;
    size_t G = (size_t)B * r->norm1.groups, f = sizeof(float);
    r->mean1 = arena_take(a, G * f);
    r->rstd1 = arena_take(a, G * f);
    r->n1 = arena_take(a, X * f);
    r->a1 = arena_take(a, X * f);
    r->t = arena_take(a, (size_t)B * r->cout * f);
    r->h1 = arena_take(a, Y * f);
    r->mean2 = arena_take(a, G * f);
    r->rstd2 = arena_take(a, G * f);
    r->n2 = arena_take(a, Y * f);
    r->a2 = arena_take(a, Y * f);
    r->sc = r->cin != r->cout ? arena_take(a, Y * f) : NULL;
    r->out = arena_take(a, Y * f);
    unet_linear_acts(&r->time_emb_proj, a, B);
}

size_t unet_resnet_conv_scratch_floats(const unet_resnet *r, int B) {
    size_t n = unet_conv_scratch_floats(&r->conv1, B, r->H, r->W);
    size_t n2 = unet_conv_scratch_floats(&r->conv2, B, r->H, r->W);
    size_t n3 = r->cin != r->cout ? unet_conv_scratch_floats(&r->conv_shortcut, B, r->H, r->W) : 0;
    n = n > n2 ? n : n2;
    return n > n3 ? n : n3;
}

size_t unet_resnet_scratch_floats(const unet_resnet *r, int B) {
    size_t X = (size_t)B * r->cin * r->H * r->W, Y = (size_t)B * r->cout * r->H * r->W;
    return 2 * Y + 2 * X + (size_t)B * r->cout + (size_t)B * r->temb_dim;
}

void unet_resnet_forward(unet_resnet *r, const float *x, const float *temb_act, int B,
                         float *conv_ws) {
    int HW = r->H * r->W;
    size_t X = (size_t)B * r->cin * HW, Y = (size_t)B * r->cout * HW;
    device_kind dev = r->dev;
    r->x = x;
    dev_groupnorm_forward(dev, r->n1, r->mean1, r->rstd1, x, r->norm1.w, r->norm1.b, B, r->cin,
                          HW, r->norm1.groups, r->norm1.eps);
    dev_silu_forward(dev, r->a1, r->n1, X);
    unet_conv_forward(&r->conv1, r->h1, r->a1, B, r->H, r->W, conv_ws);
    unet_linear_forward(&r->time_emb_proj, r->t, temb_act, B);
    dev_plane_bias_forward(dev, r->h1, r->t, B, r->cout, HW);  // h1 += t[:, :, None, None]
    dev_groupnorm_forward(dev, r->n2, r->mean2, r->rstd2, r->h1, r->norm2.w, r->norm2.b, B,
                          r->cout, HW, r->norm2.groups, r->norm2.eps);
    dev_silu_forward(dev, r->a2, r->n2, Y);
    unet_conv_forward(&r->conv2, r->out, r->a2, B, r->H, r->W, conv_ws);
    if (r->sc) {
        unet_conv_forward(&r->conv_shortcut, r->sc, x, B, r->H, r->W, conv_ws);
        dev_add_into(dev, r->out, r->sc, Y);
    } else {
        dev_add_into(dev, r->out, x, Y);
    }
}

void unet_resnet_backward(unet_resnet *r, float *dx, float *dtemb_act, const float *dout,
                          const float *temb_act, int B, float *ws, float *conv_ws,
                          float *lora_ws) {
    int HW = r->H * r->W;
    size_t X = (size_t)B * r->cin * HW, Y = (size_t)B * r->cout * HW;
    float *dY1 = ws, *dY2 = dY1 + Y, *dX1 = dY2 + Y, *dX2 = dX1 + X, *dt = dX2 + X;
    float *dtemb = dt + (size_t)B * r->cout;
    device_kind dev = r->dev;
    // out = conv2(a2) + shortcut
    unet_conv_backward(&r->conv2, dY1, dout, r->a2, B, r->H, r->W, conv_ws);
    dev_silu_backward(dev, dY1, dY1, r->n2, Y);
    dev_groupnorm_backward(dev, dY2, r->norm2.dw, r->norm2.db, dY1, r->h1, r->norm2.w, r->mean2,
                           r->rstd2, B, r->cout, HW, r->norm2.groups);
    // h1 = conv1(a1) + t broadcast over the plane: dt is the plane sum of dh1.
    dev_plane_bias_backward(dev, dt, dY2, B, r->cout, HW);
    unet_linear_backward(&r->time_emb_proj, dtemb_act ? dtemb : NULL, dt, temb_act, B, lora_ws);
    if (dtemb_act) dev_add_into(dev, dtemb_act, dtemb, (size_t)B * r->temb_dim);
    unet_conv_backward(&r->conv1, dX1, dY2, r->a1, B, r->H, r->W, conv_ws);
    dev_silu_backward(dev, dX1, dX1, r->n1, X);
    dev_groupnorm_backward(dev, dx, r->norm1.dw, r->norm1.db, dX1, r->x, r->norm1.w, r->mean1,
                           r->rstd1, B, r->cin, HW, r->norm1.groups);
    if (r->sc) {
        unet_conv_backward(&r->conv_shortcut, dX2, dout, r->x, B, r->H, r->W, conv_ws);
        dev_add_into(dev, dx, dX2, X);
    } else {
        dev_add_into(dev, dx, dout, X);
    }
}
