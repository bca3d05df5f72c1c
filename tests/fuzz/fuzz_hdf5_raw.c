// libFuzzer target: the HDF5 dataset reader (dataset_read) on arbitrary file
// contents -- mostly a fuzzer of libhdf5's own parser, which it crashes within seconds
// (README.md, hdf5-known/); run by hand, not in the slow suite. The reader opens by path, so each input goes to a temporary file. HDF5's
// error printing is off (dataset_read turns it off; Initialize does too, before the
// library prints anything) and file locking is off, so that a failed open never
// leaves a lock behind for the next input.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "data/dataset.h"

static char path[64];

// On corrupt metadata libhdf5 asks malloc for absurd sizes (terabytes, README.md).
// On a real machine such a call returns NULL and libhdf5 reports an error; ASan would
// stop instead, so here it returns NULL too, for anything past 2000 MB.
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1:max_allocation_size_mb=2000"; }
// After such a failure libhdf5 leaks its own bookkeeping; leaks allocated inside
// libhdf5 are not selma's to fix (selma's own are still reported).
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\n"; }

static void cleanup(void) { unlink(path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    snprintf(path, sizeof path, "/tmp/selma-fuzz-hdf5-raw-%ld.h5", (long)getpid());
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *fp = fopen(path, "wb");
    if (!fp) abort();
    if (size && fwrite(data, 1, size, fp) != size) abort();
    fclose(fp);
    dataset d;
    if (dataset_read(path, &d) == 0) {
        // A file that reads is whole: n items, every prompt a string.
        if (d.n < 0 || d.height < 1 || d.width < 1) abort();
        for (int i = 0; i < d.n; i++)
            if (!d.prompt[i]) abort();
        dataset_free(&d);
    }
    return 0;
}
