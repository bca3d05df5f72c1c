// Errors. Two rules (DESIGN.md): bad *input* is reported, never fatal in library
// code -- the function sets a message with err_set() and returns -1 so that main()
// can print it and exit non-zero; a broken *invariant* (a library call that must not
// fail, a bug) aborts at once with the call, function, file and line.
#ifndef SELMA_RUNTIME_ERROR_H
#define SELMA_RUNTIME_ERROR_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

// Formats the message of the current thread's last error. Always returns -1 so that
// a caller can write `return err_set("%s: bad magic", path);`.
int err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prepends context to the current message: "ctx: <old message>". Returns -1.
int err_wrap(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *err_msg(void);
void err_clear(void);

// Prints "selma: <where>: <call> failed: <msg>" and aborts. For invariants only.
void err_fatal(const char *call, const char *func, const char *file, int line,
               const char *msg) __attribute__((noreturn));

#ifdef __cplusplus
}
#define SELMA_AUTO auto
#else
#define SELMA_AUTO __auto_type
#endif

// One generic check in the style of ggml's CUDA_CHECK_GEN: evaluate, compare with
// the library's success value, abort with the library's own message otherwise.
#define CHECK_GEN(call, success, strfn)                                        \
    do {                                                                       \
        SELMA_AUTO check_status_ = (call);                                     \
        if (check_status_ != (success))                                        \
            err_fatal(#call, __func__, __FILE__, __LINE__, strfn(check_status_)); \
    } while (0)

// For invariants with no library status: CHECK(ptr != NULL).
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) err_fatal(#cond, __func__, __FILE__, __LINE__, "assertion failed"); \
    } while (0)

#define CUDA_CHECK(x)   CHECK_GEN(x, cudaSuccess, cudaGetErrorString)
#define CUBLAS_CHECK(x) CHECK_GEN(x, CUBLAS_STATUS_SUCCESS, cublasGetStatusString)
#define CUDNN_CHECK(x)  CHECK_GEN(x, CUDNN_STATUS_SUCCESS, cudnnGetErrorString)
#define NCCL_CHECK(x)   CHECK_GEN(x, ncclSuccess, ncclGetErrorString)
#define MPI_CHECK(x)    CHECK_GEN(x, MPI_SUCCESS, err_mpi_string)
// HDF5 and libpng do not have a status -> string function; HDF5 returns negative
// values on failure and prints its own error stack (which selma silences and
// replaces with a message naming the file).
#define HDF5_CHECK(x)                                                          \
    do {                                                                       \
        if ((long long)(x) < 0)                                                \
            err_fatal(#x, __func__, __FILE__, __LINE__, "HDF5 call failed");    \
    } while (0)
#define IO_CHECK(x)                                                            \
    do {                                                                       \
        if (!(x)) err_fatal(#x, __func__, __FILE__, __LINE__, err_errno_string()); \
    } while (0)

// Recoverable variants for user input: set the message (naming `what`, usually
// the file) and return -1 from the enclosing function.
#define IO_TRY(x, what)                                                        \
    do {                                                                       \
        if (!(x)) return err_set("%s: %s", (what), err_errno_string());        \
    } while (0)
#define HDF5_TRY(x, what)                                                      \
    do {                                                                       \
        if ((long long)(x) < 0) return err_set("%s: HDF5 error in %s", (what), #x); \
    } while (0)

#ifdef __cplusplus
extern "C" {
#endif
const char *err_errno_string(void);
const char *err_mpi_string(int code);
#ifdef __cplusplus
}
#endif
#endif
