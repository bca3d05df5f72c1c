#include "runtime/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.h"

void atomic_tmp_name(const char *path, char *buf, size_t n) {
    snprintf(buf, n, "%s.tmp.%ld", path, (long)getpid());
}

static int fsync_dir_of(const char *path) {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return 0;  // best effort: some filesystems refuse directory fds
    fsync(fd);
    close(fd);
    return 0;
}

int atomic_publish(const char *tmp, const char *path) {
    int fd = open(tmp, O_RDONLY);
    IO_TRY(fd >= 0, tmp);
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) { int e = errno; unlink(tmp); errno = e; IO_TRY(0, tmp); }
    if (rename(tmp, path) != 0) { int e = errno; unlink(tmp); errno = e; IO_TRY(0, path); }
    return fsync_dir_of(path);
}

int afile_open(afile *a, const char *path) {
    memset(a, 0, sizeof *a);
    if (strlen(path) >= sizeof a->path) return err_set("%s: path too long", path);
    snprintf(a->path, sizeof a->path, "%s", path);
    atomic_tmp_name(path, a->tmp, sizeof a->tmp);
    a->f = fopen(a->tmp, "wb");
    IO_TRY(a->f, a->tmp);
    return 0;
}

int afile_commit(afile *a) {
    CHECK(a->f);
    int bad = ferror(a->f) || fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    int e = errno;
    bad |= fclose(a->f) != 0;
    a->f = NULL;
    if (bad) { unlink(a->tmp); errno = e; IO_TRY(0, a->path); }
    if (rename(a->tmp, a->path) != 0) { e = errno; unlink(a->tmp); errno = e; IO_TRY(0, a->path); }
    return fsync_dir_of(a->path);
}

void afile_abort(afile *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    if (a->tmp[0]) unlink(a->tmp);
}

int atomic_write(const char *path, const void *data, size_t n) {
    afile a;
    if (afile_open(&a, path) != 0) return -1;
    if (n && fwrite(data, 1, n, a.f) != n) { afile_abort(&a); IO_TRY(0, path); }
    return afile_commit(&a);
}

int file_read_all(const char *path, char **data, size_t *n) {
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    IO_TRY(f, path);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    CHECK(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) { cap *= 2; buf = realloc(buf, cap + 1); CHECK(buf); }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return err_set("%s: read error", path); }
    buf[len] = 0;
    *data = buf;
    *n = len;
    return 0;
}

int mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return err_set("%s: path too long", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) IO_TRY(0, buf);
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}
