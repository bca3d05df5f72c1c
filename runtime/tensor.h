// Tensors: a dtype, up to 4 dimensions (row-major; NCHW for images on the CPU), a
// device, and a pointer into an arena. A tensor never owns its memory.
#ifndef SELMA_RUNTIME_TENSOR_H
#define SELMA_RUNTIME_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dtype {
    DTYPE_F32,
    DTYPE_BF16,
    DTYPE_F16,
    DTYPE_I32,
    DTYPE_U8,
    DTYPE_COUNT
} dtype;

typedef enum device_kind { DEVICE_CPU, DEVICE_CUDA } device_kind;

#define TENSOR_MAX_DIMS 4

typedef struct tensor {
    dtype dtype;
    device_kind device;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    void *data;
} tensor;

size_t dtype_size(dtype t);
const char *dtype_name(dtype t);      // "f32", "bf16", ...
const char *dtype_st_name(dtype t);   // safetensors spelling: "F32", "BF16", ...
int dtype_from_st_name(const char *s, dtype *out);  // -1 if not a runtime dtype

// Makes a descriptor (no allocation). Dimensions past ndim are 1.
tensor tensor_make(dtype t, device_kind dev, void *data, int ndim, const int64_t *shape);
int64_t tensor_numel(const tensor *t);
size_t tensor_nbytes(const tensor *t);
int tensor_same_shape(const tensor *a, const tensor *b);
// "(2, 3, 4)" into buf; returns buf.
char *tensor_shape_str(const tensor *t, char *buf, size_t n);

// Conversions. bf16 rounds to nearest even; NaN stays NaN.
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t x);
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t x);
// Converts n elements between any two numeric dtypes on the CPU.
void dtype_convert(void *dst, dtype dt, const void *src, dtype st, size_t n);

#ifdef __cplusplus
}
#endif
#endif
