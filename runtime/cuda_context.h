// The CUDA execution context every kernel launches into: one stream and the cuBLAS /
// cuBLASLt handles bound to it, created on first use (runtime/cuda_context.cu). The
// header is plain C (handles as void *), so C code may pass them around; .cu files
// cast them back (cudaStream_t, cublasHandle_t, cublasLtHandle_t). Without a CUDA
// build none of this is linked; call it only where cuda_device_count() > 0.
//
// Every hand-written kernel in kernels/cuda/ launches on selma_cuda_stream() and checks
// the launch with CUDA_CHECK(cudaGetLastError()); nothing synchronizes implicitly
// (device_copy and device_sync do).
#ifndef SELMA_RUNTIME_CUDA_CONTEXT_H
#define SELMA_RUNTIME_CUDA_CONTEXT_H

#ifdef __cplusplus
extern "C" {
#endif

void *selma_cuda_stream(void);          // cudaStream_t; NULL until set = the legacy default stream
void selma_cuda_set_stream(void *stream);  // also rebinds the cuBLAS handle
void *selma_cublas_handle(void);        // cublasHandle_t on selma_cuda_stream()
void *selma_cublaslt_handle(void);      // cublasLtHandle_t
// A workspace for cuBLASLt / cuDNN calls, grown on demand (device memory, never freed
// until selma_cuda_context_free).
void *selma_cuda_workspace(size_t bytes);
void selma_cuda_context_free(void);

#ifdef __cplusplus
}
#endif
#endif
