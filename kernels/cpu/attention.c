#include "kernels/attention.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/vec_math.h"
#include "runtime/error.h"

// Query rows per block in the fast version: large enough that each sgemm has work,
// small enough that two (rows x M) score blocks stay in L2 for M up to a few
// thousand (64x64 latents give M = 4096).
#define ATTENTION_BLOCK_ROWS 128

static double scale_or_default_d(double scale, int D) { return scale > 0 ? scale : 1.0 / sqrt(D); }

// ---- float64 reference ------------------------------------------------------------

// Score of query i against key j for head h of batch b, already scaled.
static double score_d(const double *q, const double *k, int b, int i, int j, int h, int N,
                      int M, int H, int D, double scale) {
    const double *qi = q + ((size_t)b * N + i) * H * D + (size_t)h * D;
    const double *kj = k + ((size_t)b * M + j) * H * D + (size_t)h * D;
    double s = 0;
    for (int d = 0; d < D; d++) s += qi[d] * kj[d];
    return s * scale;
}

void attention_forward_ref(double *out, double *lse, const double *q, const double *k,
                           const double *v, int B, int N, int M, int H, int D,
                           double scale, int causal) {
    CHECK(!causal || M == N);
    scale = scale_or_default_d(scale, D);
    size_t HD = (size_t)H * D;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < N; i++) {
                int nk = causal ? i + 1 : M;  // keys this query sees
                double mx = -INFINITY, s = 0;
                for (int j = 0; j < nk; j++) mx = fmax(mx, score_d(q, k, b, i, j, h, N, M, H, D, scale));
                for (int j = 0; j < nk; j++) s += exp(score_d(q, k, b, i, j, h, N, M, H, D, scale) - mx);
                double l = mx + log(s);
                double *o = out + ((size_t)b * N + i) * HD + (size_t)h * D;
                for (int d = 0; d < D; d++) o[d] = 0;
                for (int j = 0; j < nk; j++) {
                    double p = exp(score_d(q, k, b, i, j, h, N, M, H, D, scale) - l);
                    const double *vj = v + ((size_t)b * M + j) * HD + (size_t)h * D;
                    for (int d = 0; d < D; d++) o[d] += p * vj[d];
                }
                if (lse) lse[((size_t)b * H + h) * N + i] = l;
            }
}

// With P the probabilities and dP[i,j] = dout_i . v_j:
//   dv_j = sum_i P_ij dout_i
//   dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij')
//   dq_i = scale sum_j dS_ij k_j,  dk_j = scale sum_i dS_ij q_i
void attention_backward_ref(double *dq, double *dk, double *dv, const double *dout,
                            const double *q, const double *k, const double *v,
                            const double *lse, int B, int N, int M, int H, int D,
                            double scale, int causal) {
    CHECK(!causal || M == N);
    scale = scale_or_default_d(scale, D);
    size_t HD = (size_t)H * D;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            for (int j = 0; j < M; j++)
                for (int d = 0; d < D; d++) {
                    if (dk) dk[((size_t)b * M + j) * HD + (size_t)h * D + d] = 0;
                    if (dv) dv[((size_t)b * M + j) * HD + (size_t)h * D + d] = 0;
                }
            for (int i = 0; i < N; i++) {
                int nk = causal ? i + 1 : M;
                double l = lse[((size_t)b * H + h) * N + i];
                const double *doi = dout + ((size_t)b * N + i) * HD + (size_t)h * D;
                const double *qi = q + ((size_t)b * N + i) * HD + (size_t)h * D;
                double rowterm = 0;
                for (int j = 0; j < nk; j++) {
                    double p = exp(score_d(q, k, b, i, j, h, N, M, H, D, scale) - l);
                    const double *vj = v + ((size_t)b * M + j) * HD + (size_t)h * D;
                    double dp = 0;
                    for (int d = 0; d < D; d++) dp += doi[d] * vj[d];
                    rowterm += p * dp;
                }
                double *dqi = dq ? dq + ((size_t)b * N + i) * HD + (size_t)h * D : NULL;
                if (dqi)
                    for (int d = 0; d < D; d++) dqi[d] = 0;
                for (int j = 0; j < nk; j++) {
                    double p = exp(score_d(q, k, b, i, j, h, N, M, H, D, scale) - l);
                    size_t jo = ((size_t)b * M + j) * HD + (size_t)h * D;
                    double dp = 0;
                    for (int d = 0; d < D; d++) dp += doi[d] * v[jo + d];
                    double ds = p * (dp - rowterm);
                    for (int d = 0; d < D; d++) {
                        if (dv) dv[jo + d] += p * doi[d];
                        if (dqi) dqi[d] += scale * ds * k[jo + d];
                        if (dk) dk[jo + d] += scale * ds * qi[d];
                    }
                }
            }
        }
}

// ---- float32 ----------------------------------------------------------------------

size_t attention_scratch_floats(int N, int M) {
    int rows = N < ATTENTION_BLOCK_ROWS ? N : ATTENTION_BLOCK_ROWS;
    return 2 * (size_t)rows * (size_t)M;
}


// Row maximum and sum over eight independent lanes: without -ffast-math the
// compiler vectorizes only reductions written this way.
static float row_max(const float *x, int n) {
    float m[8];
    for (int l = 0; l < 8; l++) m[l] = -INFINITY;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    for (; j < n; j++) m[0] = x[j] > m[0] ? x[j] : m[0];
    for (int l = 1; l < 8; l++) m[0] = m[l] > m[0] ? m[l] : m[0];
    return m[0];
}

static float row_sum(const float *x, int n) {
    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) a[l] += x[j + l];
    for (; j < n; j++) a[0] += x[j];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// x[j] = exp(x[j] - shift) for j < n
static void row_exp(float *x, int n, float shift) {
    for (int j = 0; j < n; j++) x[j] = exp_fast(x[j] - shift);
}

// S (R, Mc) = scale * Q_blk (R, D) @ K (Mc, D)^T on the strided head slices.
static void scores_f(float *S, const float *qb, const float *kh, int R, int Mc, int D,
                     int HD, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, Mc, D, scale, qb, HD, kh, HD,
                0.0f, S, Mc);
}

// Query i sees keys [0, Mc) in the non-causal case and [0, i] in the causal one; the
// masked tail of its row becomes an exact 0 so the following GEMMs ignore it.
static int keys_seen(int i, int Mc, int causal) { return causal && i + 1 < Mc ? i + 1 : Mc; }

void attention_forward(float *out, float *lse, float *scratch, const float *q,
                       const float *k, const float *v, int B, int N, int M, int H, int D,
                       float scale, int causal) {
    CHECK(!causal || M == N);
    scale = (float)scale_or_default_d(scale, D);
    int HD = H * D;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *kh = k + (size_t)b * M * HD + (size_t)h * D;
            const float *vh = v + (size_t)b * M * HD + (size_t)h * D;
            for (int i0 = 0; i0 < N; i0 += ATTENTION_BLOCK_ROWS) {
                int R = N - i0 < ATTENTION_BLOCK_ROWS ? N - i0 : ATTENTION_BLOCK_ROWS;
                int Mc = causal && i0 + R < M ? i0 + R : M;  // keys any row of the block sees
                size_t qo = ((size_t)b * N + i0) * HD + (size_t)h * D;
                float *S = scratch;
                scores_f(S, q + qo, kh, R, Mc, D, HD, scale);
                for (int r = 0; r < R; r++) {
                    float *s = S + (size_t)r * Mc;
                    int nk = keys_seen(i0 + r, Mc, causal);
                    float mx = row_max(s, nk);
                    row_exp(s, nk, mx);
                    float sum = row_sum(s, nk), inv = 1.0f / sum;
                    for (int j = 0; j < nk; j++) s[j] *= inv;
                    for (int j = nk; j < Mc; j++) s[j] = 0;
                    if (lse) lse[((size_t)b * H + h) * N + i0 + r] = mx + logf(sum);
                }
                // out_blk (R, D) = P (R, Mc) @ V (Mc, D)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, Mc, 1.0f, S, Mc,
                            vh, HD, 0.0f, out + qo, HD);
            }
        }
}

// Zeroes a (rows, D) head slice with row stride HD.
static void zero_slice(float *x, int rows, int D, int HD) {
    for (int r = 0; r < rows; r++) memset(x + (size_t)r * HD, 0, (size_t)D * sizeof *x);
}

// Per query block, with P recomputed from lse and dS = P * (dP - rowterm), where
// rowterm_i = sum_j P_ij dP_ij = dout_i . out_i (FlashAttention's D_i):
//   dv += P^T dout_blk,  dq_blk = scale dS K,  dk += scale dS^T q_blk
// dk and dv are summed over the blocks, so they are zeroed per head first.
void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                        const float *q, const float *k, const float *v, const float *out,
                        const float *lse, int B, int N, int M, int H, int D, float scale,
                        int causal) {
    CHECK(!causal || M == N);
    scale = (float)scale_or_default_d(scale, D);
    int HD = H * D;
    int rows = N < ATTENTION_BLOCK_ROWS ? N : ATTENTION_BLOCK_ROWS;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t ko = (size_t)b * M * HD + (size_t)h * D;
            if (dk) zero_slice(dk + ko, M, D, HD);
            if (dv) zero_slice(dv + ko, M, D, HD);
            for (int i0 = 0; i0 < N; i0 += ATTENTION_BLOCK_ROWS) {
                int R = N - i0 < ATTENTION_BLOCK_ROWS ? N - i0 : ATTENTION_BLOCK_ROWS;
                int Mc = causal && i0 + R < M ? i0 + R : M;
                size_t qo = ((size_t)b * N + i0) * HD + (size_t)h * D;
                const float *l = lse + ((size_t)b * H + h) * N + i0;
                float *P = scratch, *dS = scratch + (size_t)rows * M;
                scores_f(P, q + qo, k + ko, R, Mc, D, HD, scale);
                for (int r = 0; r < R; r++) {
                    float *p = P + (size_t)r * Mc;
                    int nk = keys_seen(i0 + r, Mc, causal);
                    row_exp(p, nk, l[r]);
                    for (int j = nk; j < Mc; j++) p[j] = 0;
                }
                if (dv)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Mc, D, R, 1.0f, P, Mc,
                                dout + qo, HD, 1.0f, dv + ko, HD);
                if (!dq && !dk) continue;
                // dP (R, Mc) = dout_blk (R, D) @ V (Mc, D)^T
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, Mc, D, 1.0f, dout + qo,
                            HD, v + ko, HD, 0.0f, dS, Mc);
                for (int r = 0; r < R; r++) {
                    const float *o = out + qo + (size_t)r * HD, *g = dout + qo + (size_t)r * HD;
                    double rowterm = 0;
                    for (int d = 0; d < D; d++) rowterm += (double)o[d] * g[d];
                    float rt = (float)rowterm, *p = P + (size_t)r * Mc, *ds = dS + (size_t)r * Mc;
                    for (int j = 0; j < Mc; j++) ds[j] = p[j] * (ds[j] - rt);
                }
                if (dq)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, Mc, scale, dS, Mc,
                                k + ko, HD, 0.0f, dq + qo, HD);
                if (dk)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Mc, D, R, scale, dS, Mc,
                                q + qo, HD, 1.0f, dk + ko, HD);
            }
        }
}
