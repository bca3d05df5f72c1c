// See runtime/cuda_context.h.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "runtime/cuda_context.h"
#include "runtime/error.h"

static cudaStream_t g_stream = NULL;
static cublasHandle_t g_cublas = NULL;
static cublasLtHandle_t g_cublaslt = NULL;
static void *g_work = NULL;
static size_t g_work_bytes = 0;

extern "C" void *selma_cuda_stream(void) { return (void *)g_stream; }

extern "C" void selma_cuda_set_stream(void *stream) {
    g_stream = (cudaStream_t)stream;
    if (g_cublas) CUBLAS_CHECK(cublasSetStream(g_cublas, g_stream));
}

extern "C" void *selma_cublas_handle(void) {
    if (!g_cublas) {
        CUBLAS_CHECK(cublasCreate(&g_cublas));
        CUBLAS_CHECK(cublasSetStream(g_cublas, g_stream));
    }
    return (void *)g_cublas;
}

extern "C" void *selma_cublaslt_handle(void) {
    if (!g_cublaslt) CUBLAS_CHECK(cublasLtCreate(&g_cublaslt));
    return (void *)g_cublaslt;
}

extern "C" void *selma_cuda_workspace(size_t bytes) {
    if (bytes > g_work_bytes) {
        if (g_work) CUDA_CHECK(cudaFree(g_work));
        CUDA_CHECK(cudaMalloc(&g_work, bytes));
        g_work_bytes = bytes;
    }
    return g_work;
}

extern "C" void selma_cuda_context_free(void) {
    if (g_cublas) CUBLAS_CHECK(cublasDestroy(g_cublas));
    if (g_cublaslt) CUBLAS_CHECK(cublasLtDestroy(g_cublaslt));
    if (g_work) CUDA_CHECK(cudaFree(g_work));
    g_cublas = NULL, g_cublaslt = NULL, g_work = NULL, g_work_bytes = 0;
}
