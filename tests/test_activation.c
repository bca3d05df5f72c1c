// SiLU, GELU (erf, tanh, quick) and GEGLU: known values, float64 backward vs finite
// differences, fast float32 vs reference on random and extreme inputs, in place.
#include "kernels/activation.h"
#include "tests/kernel_check.h"

// Activation-gradient buffers start as NaN: an output not assigned shows up.
static float *nan_f(size_t n) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

typedef struct {
    double *inp, *out, *g;
    size_t n;
    int N, C;
    int op;  // 0 silu, 1..3 gelu kind + 1, 4 geglu
} act_ctx;

static void act_ref(act_ctx *c) {
    if (c->op == 0) silu_forward_ref(c->out, c->inp, c->n);
    else if (c->op == 4) geglu_forward_ref(c->out, c->inp, c->N, c->C);
    else gelu_forward_ref(c->out, c->inp, c->n, (gelu_kind)(c->op - 1));
}

static void act_ref_back(act_ctx *c, double *dinp, const double *dout) {
    if (c->op == 0) silu_backward_ref(dinp, dout, c->inp, c->n);
    else if (c->op == 4) geglu_backward_ref(dinp, dout, c->inp, c->N, c->C);
    else gelu_backward_ref(dinp, dout, c->inp, c->n, (gelu_kind)(c->op - 1));
}

static void act_fast(int op, float *out, const float *inp, size_t n, int N, int C) {
    if (op == 0) silu_forward(out, inp, n);
    else if (op == 4) geglu_forward(out, inp, N, C);
    else gelu_forward(out, inp, n, (gelu_kind)(op - 1));
}

static void act_fast_back(int op, float *dinp, const float *dout, const float *inp, size_t n,
                          int N, int C) {
    if (op == 0) silu_backward(dinp, dout, inp, n);
    else if (op == 4) geglu_backward(dinp, dout, inp, N, C);
    else gelu_backward(dinp, dout, inp, n, (gelu_kind)(op - 1));
}

static const char *op_name[] = {"silu", "gelu_erf", "gelu_tanh", "gelu_quick", "geglu"};

static double act_loss(void *p) {
    act_ctx *c = p;
    act_ref(c);
    return dot_d(c->out, c->g, c->op == 4 ? (size_t)c->N * c->C : c->n);
}

// n inputs (for GEGLU: N rows of 2C), `scale` spreads them over the interesting range;
// `extra` values (if any) overwrite the first inputs to reach the saturated tails.
static void check_op(int op, int N, int C, double scale, const double *extra, int n_extra,
                     uint64_t seed, int fd) {
    size_t n_in = op == 4 ? (size_t)N * 2 * C : (size_t)N * C;
    size_t n_out = (size_t)N * C;
    act_ctx c = {randn_d(n_in, seed, 0), zeros_d(n_out), randn_d(n_out, seed, 1), n_in, N, C, op};
    for (size_t i = 0; i < n_in; i++) c.inp[i] *= scale;
    for (int i = 0; i < n_extra && (size_t)i < n_in; i++) c.inp[i] = extra[i];
    double *dinp = zeros_d(n_in);
    act_ref(&c);
    act_ref_back(&c, dinp, c.g);
    char what[96];
    snprintf(what, sizeof what, "%s N=%d C=%d scale=%g", op_name[op], N, C, scale);
    if (fd) EXPECT_FD(act_loss, &c, c.inp, n_in, dinp, what);

    act_ref(&c);
    float *inp = to_f32(c.inp, n_in), *g = to_f32(c.g, n_out), *out = zeros_f(n_out);
    float *fdinp = nan_f(n_in);
    act_fast(op, out, inp, n_in, N, C);
    act_fast_back(op, fdinp, g, inp, n_in, N, C);
    EXPECT_CLOSE_ARRAY(out, c.out, n_out, TOL_F32_ELEMENTWISE, what);
    EXPECT_CLOSE_ARRAY(fdinp, dinp, n_in, TOL_F32_ELEMENTWISE, what);
    if (op != 4) {  // in place: out = inp, dinp = dout
        act_fast(op, inp, inp, n_in, N, C);
        EXPECT(memcmp(inp, out, n_in * sizeof *out) == 0, "%s: forward in place", what);
        float *inp2 = to_f32(c.inp, n_in);
        act_fast_back(op, g, g, inp2, n_in, N, C);
        EXPECT(memcmp(g, fdinp, n_in * sizeof *g) == 0, "%s: backward in place", what);
        free(inp2);
    }
    free(c.inp); free(c.out); free(c.g); free(dinp); free(inp); free(g); free(out); free(fdinp);
}

static void check_known_values(void) {
    // From the definitions, evaluated with Python's math module.
    double x[2] = {1.0, -2.0}, y[2];
    const double want[4][2] = {{0.7310585786300049, -0.2384058440442351},
                               {0.8413447460685429, -0.04550026389635842},
                               {0.8411919906082768, -0.04540230591222494},
                               {0.8457957659328212, -0.06434137685579186}};
    for (int op = 0; op < 4; op++) {
        if (op == 0) silu_forward_ref(y, x, 2);
        else gelu_forward_ref(y, x, 2, (gelu_kind)(op - 1));
        for (int i = 0; i < 2; i++) EXPECT_NEAR(y[i], want[op][i], 1e-15, 0);
        float xf[2] = {1.0f, -2.0f}, yf[2];
        if (op == 0) silu_forward(yf, xf, 2);
        else gelu_forward(yf, xf, 2, (gelu_kind)(op - 1));
        for (int i = 0; i < 2; i++) EXPECT_NEAR(yf[i], want[op][i], 1e-6, 0);
    }
    // GEGLU row [hidden | gate] = [3, -1 | 1, 5]: out = [3 gelu(1), -gelu(5)]
    double in[4] = {3, -1, 1, 5}, out[2];
    geglu_forward_ref(out, in, 1, 2);
    EXPECT_NEAR(out[0], 3 * want[1][0], 1e-15, 0);
    EXPECT_NEAR(out[1], -5 * 0.5 * (1 + erf(5 / sqrt(2.0))), 1e-15, 0);
}

int main(void) {
    check_known_values();
    static const double tails[] = {0.0, 30.0, -30.0, 100.0, -100.0, 9.5, -9.5, 1e-30};
    for (int op = 0; op < 5; op++) {
        check_op(op, 3, 5, 2.0, NULL, 0, 10 + op, 1);
        check_op(op, 1, 1, 1.0, NULL, 0, 20 + op, 1);
        check_op(op, 2, 4, 4.0, tails, 8, 30 + op, 1);
        check_op(op, 1, 1, 1.0, tails + 2, 1, 40 + op, 0);
        check_op(op, 77, 1280, 3.0, NULL, 0, 50 + op, 0);
        check_op(op, 7, 33, 1.0, NULL, 0, 60 + op, 0);
    }
    return check_report("test_activation");
}
