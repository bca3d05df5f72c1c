// Direct 3x3, stride-1, pad-1 convolution with AVX-512 (the UNet's ResNet convolutions).
//
// Why: im2col + sgemm writes a 9x copy of every input, which OpenBLAS then packs
// again; at the shapes UNet's 32 channels that copying costs as much as the FLOPs
// (30-46 GFLOP/s against 95 for a square sgemm). Here the input is copied once, with
// its zero border, and the kernel reads the nine taps straight from it.
//
// Layout: each channel of an image becomes a zero-padded plane of (H+2) x (W+2),
// stored flat. Output pixel (oh, ow) sits at flat index p = oh*(W+2) + ow, and tap
// (ki, kj) of it reads plane[p + ki*(W+2) + kj]: for 16 consecutive p that is one
// unaligned vector load, whatever W is. The two right-hand columns of each padded
// row (ow = W, W+1) are computed and thrown away (2/W extra work), so no masks
// are needed; every plane has `slack` zero floats after it so the last vectors read
// memory that exists.
//
// Forward: tiles of 8 output channels x 32 flat pixels (16 accumulators); per tap 2
// loads and 8 broadcasts of packed weights feed 16 FMAs. Backward data = forward of
// dout with the weights flipped and C/OC swapped (conv2d.c). Backward weight: dout is
// transposed to (pixel, output channel); per input channel and block of 32 output
// channels, 18 accumulators (9 taps x 2 vectors of output channels) sum over the
// pixels: per pixel 2 vector loads and 9 broadcasts of input values feed 18 FMAs.
#include "kernels/cpu/conv2d_direct.h"

#include <string.h>

#ifdef __AVX512F__
#include <immintrin.h>

enum { OT = 8, PT = 32 };

typedef struct {
    int Wp, L, Lp, slack;  // padded width, flat output length H*Wp, rounded up to PT
    size_t plane;          // floats per padded plane incl. slack
} geom;

static geom geom_of(const conv2d_shape *s) {
    geom g = {.Wp = s->W + 2};
    g.L = s->H * g.Wp;
    g.Lp = (g.L + PT - 1) / PT * PT;
    g.slack = g.Lp - g.L + 2 * g.Wp + 2 + 16;
    g.plane = (size_t)(s->H + 2) * g.Wp + g.slack;
    return g;
}

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

int conv2d_direct_ok(const conv2d_shape *s) { return s->K == 3 && s->stride == 1 && s->pad == 1; }

// Scratch: planes (max(C, OC) of them), the wide output of a tile or the transposed
// dout (Lp x OC rounded up to 32), packed weights, dw partials (C, 9, OC rounded up).
typedef struct { float *planes, *wide, *wp, *part; } direct_scratch;

// Offsets of the four parts; off[4] is the total.
static void offsets(const conv2d_shape *s, size_t off[5]) {
    geom g = geom_of(s);
    size_t cm = (size_t)(s->C > s->OC ? s->C : s->OC), cmr = round_up(cm, OT);
    off[0] = 0;
    off[1] = off[0] + cm * g.plane;
    off[2] = off[1] + (cmr > round_up((size_t)s->OC, 32) ? cmr : round_up((size_t)s->OC, 32)) * g.Lp;
    off[3] = off[2] + cmr * cm * 9;
    off[4] = off[3] + (size_t)s->C * 9 * round_up((size_t)s->OC, 32);
}

static direct_scratch split(const conv2d_shape *s, float *base) {
    size_t off[5];
    offsets(s, off);
    return (direct_scratch){base + off[0], base + off[1], base + off[2], base + off[3]};
}

size_t conv2d_direct_scratch_floats(const conv2d_shape *s) {
    size_t off[5];
    offsets(s, off);
    return off[4];
}

// x (C, H, W) -> planes (C, plane): zero border and slack.
static void pad_planes(float *planes, const float *x, int C, int H, int W, const geom *g) {
    for (int c = 0; c < C; c++) {
        float *p = planes + (size_t)c * g->plane;
        memset(p, 0, (size_t)g->Wp * sizeof *p);
        for (int h = 0; h < H; h++) {
            float *r = p + (size_t)(h + 1) * g->Wp;
            r[0] = 0;
            memcpy(r + 1, x + ((size_t)c * H + h) * W, (size_t)W * sizeof *r);
            r[W + 1] = 0;
        }
        memset(p + (size_t)(H + 1) * g->Wp, 0, (size_t)(g->Wp + g->slack) * sizeof *p);
    }
}

// w (OC, C, 3, 3) -> wp[ot][c][tap][8], output channels past OC zero.
static void pack_weights(float *wp, const float *w, int OC, int C) {
    for (int o0 = 0; o0 < OC; o0 += OT)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < 9; t++)
                for (int j = 0; j < OT; j++)
                    wp[(((size_t)(o0 / OT) * C + c) * 9 + t) * OT + j] =
                        o0 + j < OC ? w[((size_t)(o0 + j) * C + c) * 9 + t] : 0.0f;
}

// wide (OT, Lp) for the output channels of tile `ot`: sum over c and taps.
static void forward_tile(float *wide, const float *planes, const float *wp, int C, const geom *g) {
    const int Wp = g->Wp;
    const int offs[9] = {0, 1, 2, Wp, Wp + 1, Wp + 2, 2 * Wp, 2 * Wp + 1, 2 * Wp + 2};
    for (int p0 = 0; p0 < g->Lp; p0 += PT) {
        __m512 a[OT][2];
        for (int j = 0; j < OT; j++) a[j][0] = a[j][1] = _mm512_setzero_ps();
        for (int c = 0; c < C; c++) {
            const float *x = planes + (size_t)c * g->plane + p0;
            const float *wc = wp + (size_t)c * 9 * OT;
            for (int t = 0; t < 9; t++) {
                __m512 v0 = _mm512_loadu_ps(x + offs[t]), v1 = _mm512_loadu_ps(x + offs[t] + 16);
                for (int j = 0; j < OT; j++) {
                    __m512 wv = _mm512_set1_ps(wc[t * OT + j]);
                    a[j][0] = _mm512_fmadd_ps(wv, v0, a[j][0]);
                    a[j][1] = _mm512_fmadd_ps(wv, v1, a[j][1]);
                }
            }
        }
        for (int j = 0; j < OT; j++) {
            _mm512_storeu_ps(wide + (size_t)j * g->Lp + p0, a[j][0]);
            _mm512_storeu_ps(wide + (size_t)j * g->Lp + p0 + 16, a[j][1]);
        }
    }
}

void conv2d_direct_forward(float *out, const float *inp, const float *w, const float *b,
                           const conv2d_shape *s, float *scratch) {
    const geom g = geom_of(s);
    const int C = s->C, OC = s->OC, H = s->H, W = s->W;
    direct_scratch d = split(s, scratch);
    float *planes = d.planes, *wide = d.wide, *wp = d.wp;
    pack_weights(wp, w, OC, C);
    for (int n = 0; n < s->B; n++) {
        pad_planes(planes, inp + (size_t)n * C * H * W, C, H, W, &g);
        for (int o0 = 0; o0 < OC; o0 += OT) {
            forward_tile(wide, planes, wp + (size_t)(o0 / OT) * C * 9 * OT, C, &g);
            for (int j = 0; j < OT && o0 + j < OC; j++) {
                const float bias = b ? b[o0 + j] : 0.0f;
                float *y = out + ((size_t)n * OC + o0 + j) * H * W;
                const float *src = wide + (size_t)j * g.Lp;
                for (int h = 0; h < H; h++)
                    for (int x = 0; x < W; x++) y[h * W + x] = src[h * g.Wp + x] + bias;
            }
        }
    }
}

void conv2d_direct_backward_weight(float *dw, const float *dout, const float *inp,
                                   const conv2d_shape *s, float *scratch) {
    const geom g = geom_of(s);
    const int C = s->C, OC = s->OC, H = s->H, W = s->W, Wp = g.Wp, OCp = (int)round_up((size_t)OC, 32);
    direct_scratch d = split(s, scratch);
    float *planes = d.planes, *gT = d.wide, *dwT = d.part;  // gT (Lp, OCp), dwT (C, 9, OCp)
    const int offs[9] = {0, 1, 2, Wp, Wp + 1, Wp + 2, 2 * Wp, 2 * Wp + 1, 2 * Wp + 2};
    memset(dwT, 0, (size_t)C * 9 * OCp * sizeof *dwT);
    memset(gT, 0, (size_t)g.Lp * OCp * sizeof *gT);  // the padding channels stay zero
    for (int n = 0; n < s->B; n++) {
        pad_planes(planes, inp + (size_t)n * C * H * W, C, H, W, &g);
        for (int o = 0; o < OC; o++) {
            const float *src = dout + ((size_t)n * OC + o) * H * W;
            for (int h = 0; h < H; h++)
                for (int x = 0; x < W; x++) gT[(size_t)(h * Wp + x) * OCp + o] = src[h * W + x];
        }
        for (int c = 0; c < C; c++) {
            const float *x = planes + (size_t)c * g.plane;
            for (int ob = 0; ob < OCp; ob += 32) {
                __m512 a[9][2];
                for (int t = 0; t < 9; t++) a[t][0] = a[t][1] = _mm512_setzero_ps();
                for (int h = 0; h < H; h++)
                    for (int p = h * Wp; p < h * Wp + W; p++) {
                        __m512 u0 = _mm512_loadu_ps(gT + (size_t)p * OCp + ob);
                        __m512 u1 = _mm512_loadu_ps(gT + (size_t)p * OCp + ob + 16);
                        for (int t = 0; t < 9; t++) {
                            __m512 v = _mm512_set1_ps(x[p + offs[t]]);
                            a[t][0] = _mm512_fmadd_ps(u0, v, a[t][0]);
                            a[t][1] = _mm512_fmadd_ps(u1, v, a[t][1]);
                        }
                    }
                float *acc = dwT + (size_t)c * 9 * OCp + ob;
                for (int t = 0; t < 9; t++) {
                    float *r = acc + (size_t)t * OCp;
                    _mm512_storeu_ps(r, _mm512_add_ps(_mm512_loadu_ps(r), a[t][0]));
                    _mm512_storeu_ps(r + 16, _mm512_add_ps(_mm512_loadu_ps(r + 16), a[t][1]));
                }
            }
        }
    }
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < 9; t++) dw[((size_t)o * C + c) * 9 + t] += dwT[((size_t)c * 9 + t) * OCp + o];
}

#else  // no AVX-512: conv2d.c keeps its im2col path

int conv2d_direct_ok(const conv2d_shape *s) { (void)s; return 0; }
size_t conv2d_direct_scratch_floats(const conv2d_shape *s) { (void)s; return 0; }
void conv2d_direct_forward(float *out, const float *inp, const float *w, const float *b,
                           const conv2d_shape *s, float *scratch) {
    (void)out, (void)inp, (void)w, (void)b, (void)s, (void)scratch;
}
void conv2d_direct_backward_weight(float *dw, const float *dout, const float *inp,
                                   const conv2d_shape *s, float *scratch) {
    (void)dw, (void)dout, (void)inp, (void)s, (void)scratch;
}

#endif
