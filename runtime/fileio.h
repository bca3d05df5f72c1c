// Atomic file output: write to "<path>.tmp.<pid>", fsync, rename over the final name,
// fsync the directory. A reader never sees a half-written file, and a crash leaves at
// most a stray temporary.
#ifndef SELMA_RUNTIME_FILEIO_H
#define SELMA_RUNTIME_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct afile {
    FILE *f;
    char path[4096];
    char tmp[4096 + 32];
} afile;

int afile_open(afile *a, const char *path);  // -1 with a message naming the file
int afile_commit(afile *a);                  // flush, fsync, close, rename; -1 on error
void afile_abort(afile *a);                  // close and remove the temporary

// For libraries that open files by name (HDF5, libpng): a temporary name for `path`,
// then atomic_publish() to fsync it and rename it into place.
void atomic_tmp_name(const char *path, char *buf, size_t n);
int atomic_publish(const char *tmp, const char *path);

int atomic_write(const char *path, const void *data, size_t n);
// Reads a whole file (NUL-terminated for convenience); -1 with a message.
int file_read_all(const char *path, char **data, size_t *n);
int mkdir_p(const char *path);

#ifdef __cplusplus
}
#endif
#endif
