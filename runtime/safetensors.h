// safetensors I/O (huggingface/safetensors format): 8-byte little-endian header
// length N, N bytes of UTF-8 JSON, then the data section. The reader validates as
// strictly as the reference reader (safetensors/src/tensor.rs) and a little more:
// header length capped at 100,000,000 bytes and inside the file; header starting
// with '{', strict UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF), strict JSON numbers (plain non-negative integers only); every entry is
// exactly {"dtype", "shape", "data_offsets"}; "__metadata__" maps strings to
// strings; no duplicate keys anywhere; sizes overflow-checked; tensors sorted by
// offset start at 0, touch each other and end exactly at the end of the file.
// Stricter than the reference: at most ST_MAX_DIMS dimensions, and shape entries and
// offsets of 2^53 or more are refused (cJSON holds numbers as doubles; no real file has
// them). Every error names the file and, where one applies, the tensor.
#ifndef SELMA_RUNTIME_SAFETENSORS_H
#define SELMA_RUNTIME_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// In increasing element size, as the reference orders them.
typedef enum st_dtype {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_DTYPE_COUNT
} st_dtype;

size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);                 // "F32", "BF16", ...
int st_dtype_from_name(const char *s, st_dtype *out);  // -1 (no message) if unknown
// The runtime dtype for a safetensors dtype; -1 (no message) if the runtime has none.
int st_dtype_to_runtime(st_dtype t, dtype *out);
st_dtype st_dtype_from_runtime(dtype t);

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER 100000000ull  // the reference reader's cap

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;                     // 0 for a scalar
    int64_t shape[ST_MAX_DIMS];   // entries past ndim are 0
    uint64_t offset;              // from the start of the data section
    uint64_t nbytes;
    const void *data;             // into the mapped file or the caller's buffer
} st_tensor;

typedef struct st_meta {
    char *key, *value;
} st_meta;

typedef struct st_file {
    char *name;              // the file name used in messages
    st_tensor *tensors;      // sorted by offset, i.e. in file order
    size_t n_tensors;
    st_tensor **by_name;     // the tensors sorted by name, for st_find
    st_meta *meta;           // "__metadata__", in file order
    size_t n_meta;
    uint64_t header_len;     // N
    const uint8_t *data;     // the data section
    uint64_t data_len;
    void *map;               // set by st_open: the whole file, mapped read-only
    size_t map_len;
} st_file;

// Maps the file read-only and validates it. A file changed by another process while
// mapped can still fault on access (SIGBUS): safetensors files are write-once here.
int st_open(const char *path, st_file *f);
// Validates an in-memory file; tensors point into buf, which must outlive f.
// name is used in messages only.
int st_parse(const void *buf, size_t len, const char *name, st_file *f);
void st_close(st_file *f);  // safe on a zeroed or failed st_file

const st_tensor *st_find(const st_file *f, const char *name);  // NULL if absent
const char *st_meta_get(const st_file *f, const char *key);     // NULL if absent
int64_t st_tensor_numel(const st_tensor *t);

// A runtime tensor viewing the data in place (no copy). -1 with a message naming the
// file and tensor if the dtype is not one of the runtime's (F32, BF16, F16, I32, U8),
// if it has more than TENSOR_MAX_DIMS dimensions, or if the data is not aligned to
// its element size (files from the reference writer and st_writer always are).
int st_tensor_view(const st_file *f, const st_tensor *t, tensor *out);
// Converts any numeric dtype (all of them, BOOL as 0/1, F8 variants as in the OCP
// spec: E4M3 without infinities) to float32; n must equal the element count. Reads
// unaligned data safely.
int st_tensor_to_f32(const st_file *f, const st_tensor *t, float *dst, size_t n);

// Writer. Tensor data is *referenced*, not copied: it must stay valid until
// st_writer_save. Names and metadata strings are copied. The file holds the tensors
// sorted by element size (largest first), then by name -- the reference writer's
// order -- so that every tensor is aligned to its element size when mapped; the
// header is padded with spaces to a multiple of 8 bytes as the reference pads it.
typedef struct st_writer_entry {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
} st_writer_entry;

typedef struct st_writer {
    st_writer_entry *entries;
    size_t n, cap;
    size_t *slots;     // open-addressing table of entry index + 1, for duplicate names
    size_t n_slots;
    st_meta *meta;
    size_t n_meta, cap_meta;
} st_writer;

void st_writer_init(st_writer *w);
// -1 with a message on a duplicate or invalid (empty, non-UTF-8, "__metadata__") name,
// a bad shape, or a size that overflows.
int st_writer_add(st_writer *w, const char *name, st_dtype dt, int ndim,
                  const int64_t *shape, const void *data);
int st_writer_add_tensor(st_writer *w, const char *name, const tensor *t);  // CPU tensors
int st_writer_set_meta(st_writer *w, const char *key, const char *value);  // -1 on a duplicate key
int st_writer_save(const st_writer *w, const char *path);  // atomic (afile_*)
void st_writer_free(st_writer *w);

// Strict UTF-8 check (RFC 3629): 1 if valid.
int utf8_valid(const void *s, size_t n, size_t *bad_at);

#ifdef __cplusplus
}
#endif
#endif
