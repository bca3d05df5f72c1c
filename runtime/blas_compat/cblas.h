// The CBLAS subset selma calls, for builds without OpenBLAS (meson -Dblas=disabled, or
// no OpenBLAS found: the GPU machines' image has none). Same names and types as
// OpenBLAS's cblas.h, so sources include <cblas.h> either way; the implementation is
// runtime/blas_fallback.c: correct, threaded, and far slower than OpenBLAS. Only this
// include directory is added to such builds.
#ifndef SELMA_BLAS_COMPAT_CBLAS_H
#define SELMA_BLAS_COMPAT_CBLAS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef int blasint;
typedef enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 } CBLAS_ORDER;
typedef enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 } CBLAS_TRANSPOSE;

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                 blasint N, blasint K, float alpha, const float *A, blasint lda, const float *B, blasint ldb,
                 float beta, float *C, blasint ldc);
void cblas_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, blasint M,
                 blasint N, blasint K, double alpha, const double *A, blasint lda, const double *B,
                 blasint ldb, double beta, double *C, blasint ldc);
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);
char *openblas_get_config(void);

#ifdef __cplusplus
}
#endif
#endif
