// Row-major GEMM through cuBLAS, shared by linear.cu and lora.cu. Private to
// kernels/cuda/.
//
// cublasGemmEx on float32 storage with TF32 tensor-core compute
// (CUBLAS_COMPUTE_32F_FAST_TF32), on selma_cublas_handle() (selma_cuda_stream()).
// Row-major (PyTorch) operands are handed to column-major cuBLAS as their transposes:
// C = op(A) op(B) row-major is C^T = op(B)^T op(A)^T column-major.
#ifndef SELMA_KERNELS_CUDA_CUBLAS_GEMM_CUH
#define SELMA_KERNELS_CUDA_CUBLAS_GEMM_CUH

#include <cublas_v2.h>

#include "runtime/cuda_context.h"
#include "runtime/error.h"

namespace selma_cublas {

// Row-major C (M, N) = alpha op(A) op(B) + beta C, op(A) (M, K), op(B) (K, N).
inline void gemm_rm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    cublasHandle_t h = (cublasHandle_t)selma_cublas_handle();
    CUBLAS_CHECK(cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                              CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
}

}  // namespace selma_cublas

#endif
