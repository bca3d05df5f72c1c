#include "kernels/moe_lora.h"

#include <cblas.h>
#include <stdlib.h>

#include "kernels/linear.h"
#include "kernels/softmax.h"
#include "runtime/error.h"

size_t moe_lora_scratch_floats(int N, int R, int E) { return (size_t)N * ((size_t)R + E); }

void moe_lora_forward_ref(double *out, double *h, double *g, const double *inp,
                          const double *w, const double *b, const double *a, const double *bb,
                          const double *wr, const double *br, const double *scale,
                          const int *roff, double temperature, int N, int C, int OC, int E) {
    int R = roff[E];
    linear_forward_ref(g, inp, wr, br, N, C, E);
    for (size_t i = 0; i < (size_t)N * E; i++) g[i] /= temperature;
    softmax_forward_ref(g, g, N, E);
    linear_forward_ref(h, inp, a, NULL, N, C, R);
    linear_forward_ref(out, inp, w, b, N, C, OC);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int e = 0; e < E; e++) {
                double low = 0;
                for (int r = roff[e]; r < roff[e + 1]; r++)
                    low += h[(size_t)n * R + r] * bb[(size_t)o * R + r];
                s += g[(size_t)n * E + e] * scale[e] * low;
            }
            out[(size_t)n * OC + o] += s;
        }
}

void moe_lora_backward_ref(double *dinp, double *dwr, double *dbr, const double *dout,
                           const double *inp, const double *h, const double *g,
                           const double *w, const double *a, const double *bb,
                           const double *wr, const double *scale, const int *roff,
                           double temperature, int N, int C, int OC, int E) {
    int R = roff[E];
    double *dhg = malloc(sizeof(double) * (size_t)(R + 2 * E + 1));
    CHECK(dhg != NULL);
    double *dg = dhg + R, *dz = dg + E;
    for (int n = 0; n < N; n++) {
        const double *go = dout + (size_t)n * OC, *hn = h + (size_t)n * R, *gn = g + (size_t)n * E;
        // dhg: the gradient of the gated, scaled h that multiplies bb
        for (int r = 0; r < R; r++) {
            double s = 0;
            for (int o = 0; o < OC; o++) s += go[o] * bb[(size_t)o * R + r];
            dhg[r] = s;
        }
        double dot = 0;
        for (int e = 0; e < E; e++) {
            double s = 0;
            for (int r = roff[e]; r < roff[e + 1]; r++) s += dhg[r] * hn[r];
            dg[e] = scale[e] * s;
            dot += dg[e] * gn[e];
        }
        for (int e = 0; e < E; e++) dz[e] = gn[e] * (dg[e] - dot) / temperature;
        for (int e = 0; e < E; e++) {
            if (dbr) dbr[e] += dz[e];
            if (dwr)
                for (int c = 0; c < C; c++) dwr[(size_t)e * C + c] += dz[e] * inp[(size_t)n * C + c];
        }
        if (!dinp) continue;
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int o = 0; o < OC; o++) s += go[o] * w[(size_t)o * C + c];
            for (int e = 0; e < E; e++) {
                s += dz[e] * wr[(size_t)e * C + c];
                for (int r = roff[e]; r < roff[e + 1]; r++)
                    s += gn[e] * scale[e] * dhg[r] * a[(size_t)r * C + c];
            }
            dinp[(size_t)n * C + c] = s;
        }
    }
    free(dhg);
}

void moe_lora_forward(float *out, float *h, float *g, float *ws, const float *inp,
                      const float *w, const float *b, const float *a, const float *bb,
                      const float *wr, const float *br, const float *scale, const int *roff,
                      float temperature, int N, int C, int OC, int E) {
    int R = roff[E];
    linear_forward(g, inp, wr, br, N, C, E);
    float inv_t = 1.0f / temperature;
    if (inv_t != 1.0f)
        for (size_t i = 0; i < (size_t)N * E; i++) g[i] *= inv_t;
    softmax_forward(g, g, N, E);
    linear_forward(h, inp, a, NULL, N, C, R);
    linear_forward(out, inp, w, b, N, C, OC);
    // hg (N, R) = h with each expert's columns times g_e * scale_e; then one GEMM for
    // every expert at once: out += hg @ bb^T.
    float *hg = ws;
    for (int n = 0; n < N; n++)
        for (int e = 0; e < E; e++) {
            float k = g[(size_t)n * E + e] * scale[e];
            for (int r = roff[e]; r < roff[e + 1]; r++) hg[(size_t)n * R + r] = k * h[(size_t)n * R + r];
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, R, 1.0f, hg, R, bb, R, 1.0f,
                out, OC);
}

void moe_lora_backward(float *dinp, float *dwr, float *dbr, float *ws, const float *dout,
                       const float *inp, const float *h, const float *g, const float *w,
                       const float *a, const float *bb, const float *wr, const float *scale,
                       const int *roff, float temperature, int N, int C, int OC, int E) {
    int R = roff[E];
    float *dhg = ws, *dz = ws + (size_t)N * R;  // (N, R), (N, E)
    // dhg (N, R) = dout (N, OC) @ bb (OC, R)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, R, OC, 1.0f, dout, OC, bb, R,
                0.0f, dhg, R);
    // dL/dg_e = scale_e * <dhg_e, h_e> per token, then through the softmax and 1/T.
    for (int n = 0; n < N; n++)
        for (int e = 0; e < E; e++) {
            double s = 0;
            for (int r = roff[e]; r < roff[e + 1]; r++)
                s += (double)dhg[(size_t)n * R + r] * h[(size_t)n * R + r];
            dz[(size_t)n * E + e] = (float)(scale[e] * s);
        }
    softmax_backward(dz, dz, g, N, E);
    float inv_t = 1.0f / temperature;
    if (inv_t != 1.0f)
        for (size_t i = 0; i < (size_t)N * E; i++) dz[i] *= inv_t;
    if (dwr || dbr) linear_backward(NULL, dwr, dbr, dz, inp, wr, N, C, E);
    if (!dinp) return;
    // dh = g_e * scale_e * dhg, in place; dinp = dout @ w + dh @ a + dz @ wr
    for (int n = 0; n < N; n++)
        for (int e = 0; e < E; e++) {
            float k = g[(size_t)n * E + e] * scale[e];
            for (int r = roff[e]; r < roff[e + 1]; r++) dhg[(size_t)n * R + r] *= k;
        }
    linear_backward(dinp, NULL, NULL, dout, inp, w, N, C, OC);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, R, 1.0f, dhg, R, a, C, 1.0f,
                dinp, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, E, 1.0f, dz, E, wr, C, 1.0f,
                dinp, C);
}
