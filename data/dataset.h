// HDF5 datasets in DESIGN.md's layout, one file per skill and stage:
//
//   /prompt  (N)           vlen UTF-8 strings
//   /skill   (N)           enum of uint8 named after skill_names (data/shapes.h)
//   /image   (N, H, W, 3)  uint8 RGB, chunked one image per chunk, gzip level 4
//   /scene   (N)           vlen UTF-8 JSON text (shapes world; may be absent)
//   /seed    (N)           uint64
//   attributes of /: generator, generator_hash, sampler, created (ISO-8601 UTC),
//                    selma_version, world (strings); steps, height, width (int32);
//                    guidance_scale (float32); checksum (string, see below)
//
// @checksum is "fnv1a64:<16 hex digits>": FNV-1a 64 over every item in order, each
// item its prompt's UTF-8 bytes with the terminating NUL, then its H*W*3 pixels. The
// reader recomputes it and refuses a file whose /image or /prompt does not match;
// files without it (h5py's, older selma's) are read unchecked. Files selma writes
// also begin with a 512-byte HDF5 user block, "selma-dataset fnv1a64:<hex> bytes
// <N>", the checksum of the rest of the file, verified before libhdf5 opens it, so a
// flipped byte anywhere, HDF5's own metadata included, is refused.
//
// The reader accepts any file with /prompt and /image (h5py's included): fixed-length
// or vlen strings, /skill absent (every item SKILL_UNKNOWN), /skill as vlen strings
// or a root string attribute "skill", /scene, /seed and attributes absent. It refuses
// external storage, virtual datasets and soft/external links, since a dataset must
// be one self-contained file.
#ifndef SELMA_DATA_DATASET_H
#define SELMA_DATA_DATASET_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dataset {
    int n, height, width;
    char **prompt;      // (n) UTF-8, each malloc'd
    int *skill;         // (n) enum skill
    char **scene;       // (n) JSON text, or NULL when the file has none
    uint64_t *seed;     // (n)
    uint8_t *image;     // (n, height, width, 3)
    char generator[128], generator_hash[80], sampler[32], created[40], version[32], world[16];
    int steps;
    float guidance_scale;
} dataset;

// Zeroes d and allocates every array for n items of h x w: prompts NULL (the caller
// mallocs them; NULL is written as ""), skills SKILL_UNKNOWN, seeds and pixels 0,
// scene NULL (the caller may calloc n pointers). -1 with a message if the sizes are
// out of range or memory runs out.
int dataset_alloc(dataset *d, int n, int h, int w);
void dataset_free(dataset *d);

// Writes atomically (temporary name, then rename). `created` empty means now;
// selma_version is always this build's SELMA_VERSION. Strings NULL are written "".
int dataset_write(const char *path, const dataset *d);
// Reads a whole file; on failure d is left empty and the message names the file and
// the dataset or attribute.
int dataset_read(const char *path, dataset *d);

// Writing in batches (generation): open creates the temporary file with the
// attributes of `meta` (its n and arrays are ignored; meta->scene != NULL asks for a
// /scene dataset), append adds batch->n items, close publishes the file under its
// name, abort removes it. HDF5 ids are kept as int64_t (hid_t) to keep hdf5.h out.
typedef struct dataset_writer {
    int64_t file, prompt, skill, scene, seed, image;
    int n, height, width;
    uint64_t checksum;  // running FNV-1a 64 of the items so far (@checksum)
    char path[4096], tmp[4096 + 32];
} dataset_writer;

int dataset_writer_open(dataset_writer *w, const char *path, const dataset *meta);
int dataset_writer_append(dataset_writer *w, const dataset *batch);
int dataset_writer_close(dataset_writer *w);
void dataset_writer_abort(dataset_writer *w);

#ifdef __cplusplus
}
#endif
#endif
