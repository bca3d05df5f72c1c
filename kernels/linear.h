// Fully connected layer: out (N, OC) = inp (N, C) @ w^T + b, PyTorch's nn.Linear
// layout (weight (OC, C), bias (OC)). N is every leading dimension flattened
// (batch x tokens).
//
// Gradient rule: dinp is assigned (=); dw and db accumulate (+=) so that several
// uses of one weight (and several micro-batches) add up. Any gradient pointer may be
// NULL to skip that gradient; b may be NULL for a layer without bias.
#ifndef SELMA_KERNELS_LINEAR_H
#define SELMA_KERNELS_LINEAR_H

#ifdef __cplusplus
extern "C" {
#endif

// Float64 reference: plain loops.
void linear_forward_ref(double *out, const double *inp, const double *w, const double *b,
                        int N, int C, int OC);
void linear_backward_ref(double *dinp, double *dw, double *db, const double *dout,
                         const double *inp, const double *w, int N, int C, int OC);

// Float32, OpenBLAS sgemm.
void linear_forward(float *out, const float *inp, const float *w, const float *b,
                    int N, int C, int OC);
void linear_backward(float *dinp, float *dw, float *db, const float *dout,
                     const float *inp, const float *w, int N, int C, int OC);

// CUDA (kernels/cuda/linear.cu; CUDA builds only): cuBLAS cublasGemmEx on float32
// storage with TF32 tensor-core compute (CUBLAS_COMPUTE_32F_FAST_TF32: operands
// rounded to TF32, float accumulation; relative error near 1e-4..1e-3). Device
// pointers, launched on selma_cuda_stream(); the bias is a broadcast before the GEMM
// (beta = 1), db a column-sum kernel. Same gradient rule as above.
void linear_forward_cuda(float *out, const float *inp, const float *w, const float *b,
                         int N, int C, int OC);
void linear_backward_cuda(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, int N, int C, int OC);

#ifdef __cplusplus
}
#endif
#endif
