#include "runtime/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/error.h"

static const struct {
    const char *name, *st_name;
    size_t size;
} dtype_info[DTYPE_COUNT] = {
    [DTYPE_F32] = {"f32", "F32", 4},  [DTYPE_BF16] = {"bf16", "BF16", 2},
    [DTYPE_F16] = {"f16", "F16", 2},  [DTYPE_I32] = {"i32", "I32", 4},
    [DTYPE_U8] = {"u8", "U8", 1},
};

size_t dtype_size(dtype t) { CHECK(t >= 0 && t < DTYPE_COUNT); return dtype_info[t].size; }
const char *dtype_name(dtype t) { CHECK(t >= 0 && t < DTYPE_COUNT); return dtype_info[t].name; }
const char *dtype_st_name(dtype t) { CHECK(t >= 0 && t < DTYPE_COUNT); return dtype_info[t].st_name; }

int dtype_from_st_name(const char *s, dtype *out) {
    for (int i = 0; i < DTYPE_COUNT; i++)
        if (strcmp(s, dtype_info[i].st_name) == 0) { *out = (dtype)i; return 0; }
    return -1;
}

tensor tensor_make(dtype t, device_kind dev, void *data, int ndim, const int64_t *shape) {
    CHECK(ndim >= 0 && ndim <= TENSOR_MAX_DIMS);
    tensor x = {.dtype = t, .device = dev, .ndim = ndim, .data = data};
    for (int i = 0; i < TENSOR_MAX_DIMS; i++) x.shape[i] = i < ndim ? shape[i] : 1;
    return x;
}

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tensor_nbytes(const tensor *t) { return (size_t)tensor_numel(t) * dtype_size(t->dtype); }

int tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++) if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *tensor_shape_str(const tensor *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

uint16_t f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t x) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);            // NaN
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);           // overflow -> inf
    if (a < 0x38800000u) {                                             // subnormal or zero
        if (a < 0x33000000u) return (uint16_t)sign;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(a >> 23);                               // 14..24
        uint32_t h = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((a - 0x38000000u) >> 13);
    uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) {
        if (m == 0) u = sign;
        else {  // normalise the subnormal
            int k = -1;
            do { k++; m <<= 1; } while (!(m & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - k) << 23) | ((m & 0x3ffu) << 13);
        }
    } else if (e == 31) u = sign | 0x7f800000u | (m << 13);
    else u = sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double load_as_double(const void *p, dtype t, size_t i) {
    switch (t) {
    case DTYPE_F32: return ((const float *)p)[i];
    case DTYPE_BF16: return bf16_to_f32(((const uint16_t *)p)[i]);
    case DTYPE_F16: return f16_to_f32(((const uint16_t *)p)[i]);
    case DTYPE_I32: return ((const int32_t *)p)[i];
    case DTYPE_U8: return ((const uint8_t *)p)[i];
    default: CHECK(0); return 0;
    }
}

static void store_double(void *p, dtype t, size_t i, double v) {
    switch (t) {
    case DTYPE_F32: ((float *)p)[i] = (float)v; break;
    case DTYPE_BF16: ((uint16_t *)p)[i] = f32_to_bf16((float)v); break;
    case DTYPE_F16: ((uint16_t *)p)[i] = f32_to_f16((float)v); break;
    case DTYPE_I32: ((int32_t *)p)[i] = (int32_t)lrint(v); break;
    case DTYPE_U8: ((uint8_t *)p)[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v)); break;
    default: CHECK(0);
    }
}

void dtype_convert(void *dst, dtype dt, const void *src, dtype st, size_t n) {
    if (dt == st) { memcpy(dst, src, n * dtype_size(dt)); return; }
    for (size_t i = 0; i < n; i++) store_double(dst, dt, i, load_as_double(src, st, i));
}
