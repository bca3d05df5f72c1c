// cblas_sgemm / cblas_dgemm for builds without OpenBLAS (runtime/blas_compat/cblas.h).
// C = alpha op(A) op(B) + beta C, row- or column-major, any transposes. Column-major is
// the row-major problem with the operands swapped (C^T = op(B)^T op(A)^T). Rows of C are
// split over threads (openblas_set_num_threads, default the online processors); each
// row accumulates op(A)[i, k] * op(B)[k, :] in the type's own precision, k in order, so
// results do not depend on the thread count.
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "runtime/blas_compat/cblas.h"

static int g_threads = 0;

void openblas_set_num_threads(int n) { g_threads = n; }
int openblas_get_num_threads(void) {
    if (g_threads > 0) return g_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
char *openblas_get_config(void) { return (char *)"selma's fallback GEMM (no OpenBLAS in this build)"; }

#define GEMM_TASK(T, NAME)                                                                      \
    typedef struct NAME##_task {                                                                \
        int ta, tb, M, N, K, lda, ldb, ldc, i0, i1;                                             \
        T alpha, beta;                                                                          \
        const T *A, *B;                                                                         \
        T *C;                                                                                   \
    } NAME##_task;                                                                              \
    static void *NAME##_rows(void *arg) {                                                       \
        NAME##_task *t = arg;                                                                   \
        for (int i = t->i0; i < t->i1; i++) {                                                   \
            T *c = t->C + (size_t)i * t->ldc;                                                   \
            for (int j = 0; j < t->N; j++) c[j] = t->beta == 0 ? (T)0 : t->beta * c[j];        \
            for (int k = 0; k < t->K; k++) {                                                    \
                T a = t->ta ? t->A[(size_t)k * t->lda + i] : t->A[(size_t)i * t->lda + k];      \
                a *= t->alpha;                                                                  \
                if (t->tb)                                                                      \
                    for (int j = 0; j < t->N; j++) c[j] += a * t->B[(size_t)j * t->ldb + k];    \
                else {                                                                          \
                    const T *b = t->B + (size_t)k * t->ldb;                                     \
                    for (int j = 0; j < t->N; j++) c[j] += a * b[j];                            \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        return NULL;                                                                            \
    }                                                                                           \
    static void NAME##_row_major(int ta, int tb, int M, int N, int K, T alpha, const T *A,      \
                                 int lda, const T *B, int ldb, T beta, T *C, int ldc) {         \
        int nt = openblas_get_num_threads();                                                    \
        double work = (double)M * N * K;                                                        \
        if (work < 1e6) nt = 1;                                                                 \
        if (nt > M) nt = M > 0 ? M : 1;                                                         \
        if (nt > 64) nt = 64;                                                                   \
        NAME##_task t[64];                                                                      \
        pthread_t th[64];                                                                       \
        for (int r = 0; r < nt; r++) {                                                          \
            t[r] = (NAME##_task){ta, tb, M, N, K, lda, ldb, ldc, (int)((long)M * r / nt),       \
                                 (int)((long)M * (r + 1) / nt), alpha, beta, A, B, C};          \
            if (r && pthread_create(&th[r], NULL, NAME##_rows, &t[r])) NAME##_rows(&t[r]), th[r] = 0; \
        }                                                                                       \
        NAME##_rows(&t[0]);                                                                     \
        for (int r = 1; r < nt; r++)                                                            \
            if (th[r]) pthread_join(th[r], NULL);                                               \
    }

GEMM_TASK(float, sgemm)
GEMM_TASK(double, dgemm)

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                 blasint N, blasint K, float alpha, const float *A, blasint lda, const float *B, blasint ldb,
                 float beta, float *C, blasint ldc) {
    if (order == CblasRowMajor)
        sgemm_row_major(ta != CblasNoTrans, tb != CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        sgemm_row_major(tb != CblasNoTrans, ta != CblasNoTrans, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
}

void cblas_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                 blasint N, blasint K, double alpha, const double *A, blasint lda, const double *B,
                 blasint ldb, double beta, double *C, blasint ldc) {
    if (order == CblasRowMajor)
        dgemm_row_major(ta != CblasNoTrans, tb != CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        dgemm_row_major(tb != CblasNoTrans, ta != CblasNoTrans, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
}
