#include "runtime/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#ifdef SELMA_MPI
#include <mpi.h>
#endif

static _Thread_local char err_buf[2048];

int err_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int err_wrap(const char *fmt, ...) {
    char ctx[1024], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    // The old message may be cut to fit; the context stays whole.
    snprintf(err_buf, sizeof err_buf, "%s: %.*s", ctx, (int)(sizeof err_buf - 2 - strlen(ctx)), old);
    return -1;
}

const char *err_msg(void) { return err_buf[0] ? err_buf : "unknown error"; }
void err_clear(void) { err_buf[0] = 0; }

const char *err_errno_string(void) { return errno ? strerror(errno) : "I/O error"; }

const char *err_mpi_string(int code) {
#ifdef SELMA_MPI
    static _Thread_local char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, buf, &len) == MPI_SUCCESS) return buf;
#endif
    (void)code;
    return "MPI error";
}

void err_fatal(const char *call, const char *func, const char *file, int line, const char *msg) {
    fflush(stdout);
    fprintf(stderr, "selma: fatal: %s failed in %s (%s:%d): %s\n", call, func, file, line, msg);
    abort();
}
