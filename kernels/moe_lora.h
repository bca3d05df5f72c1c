// A mixture of frozen LoRA experts on a frozen linear layer, with a trained per-token
// router (MoLE / X-LoRA style; SELMA's comparison with merging):
//   z    (N, E)  = (inp (N, C) @ wr^T + br) / temperature   wr (E, C), br (E): the router
//   g    (N, E)  = softmax(z)                                per-token gates
//   h    (N, R)  = inp @ a^T                                 a (R, C): every expert's lora_A
//   out  (N, OC) = inp @ w^T + b + sum_e g_e * scale_e * h_e @ b_e^T
// The experts are packed: expert e owns rows roff[e] .. roff[e+1]-1 of a (its
// lora_A, (R_e, C)) and the same columns of bb (OC, R), where its lora_B (OC, R_e)
// sits; R = roff[E]. Ranks may differ between experts; scale_e = alpha_e / R_e.
// With zero router weights every gate is 1/E: the experts' uniform merge.
//
// The forward writes h and g for the backward. Gradient rule: dinp is assigned (=)
// and includes the paths through w, the experts and the router; dwr and dbr
// accumulate (+=). Experts and base are frozen: no gradient is ever computed for w,
// b, a or bb. Any gradient pointer may be NULL to skip it.
//
// The float32 versions take a scratch ws of moe_lora_scratch_floats(N, R, E) floats
// (the gated h in the forward; dL/dh and dL/dz in the backward).
#ifndef SELMA_KERNELS_MOE_LORA_H
#define SELMA_KERNELS_MOE_LORA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

size_t moe_lora_scratch_floats(int N, int R, int E);

// Float64 reference: plain loops. scale (E), roff (E + 1).
void moe_lora_forward_ref(double *out, double *h, double *g, const double *inp,
                          const double *w, const double *b, const double *a, const double *bb,
                          const double *wr, const double *br, const double *scale,
                          const int *roff, double temperature, int N, int C, int OC, int E);
void moe_lora_backward_ref(double *dinp, double *dwr, double *dbr, const double *dout,
                           const double *inp, const double *h, const double *g,
                           const double *w, const double *a, const double *bb,
                           const double *wr, const double *scale, const int *roff,
                           double temperature, int N, int C, int OC, int E);

// Float32, OpenBLAS sgemm.
void moe_lora_forward(float *out, float *h, float *g, float *ws, const float *inp,
                      const float *w, const float *b, const float *a, const float *bb,
                      const float *wr, const float *br, const float *scale, const int *roff,
                      float temperature, int N, int C, int OC, int E);
void moe_lora_backward(float *dinp, float *dwr, float *dbr, float *ws, const float *dout,
                       const float *inp, const float *h, const float *g, const float *w,
                       const float *a, const float *bb, const float *wr, const float *scale,
                       const int *roff, float temperature, int N, int C, int OC, int E);

#ifdef __cplusplus
}
#endif
#endif
