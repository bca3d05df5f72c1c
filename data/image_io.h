// PNG files (libpng's simplified API, which reports errors in a message instead of
// longjmp'ing through our frames) and labelled image grids for reports.
// Pixels are RGB8, row-major, HWC: pixel (x, y) channel c is rgb[(y * w + x) * 3 + c].
#ifndef SELMA_DATA_IMAGE_IO_H
#define SELMA_DATA_IMAGE_IO_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Atomic: written to a temporary name, then renamed. -1 with a message naming the file.
int png_write(const char *path, const uint8_t *rgb, int w, int h);
// Any PNG (gray, RGB, alpha, palette, 16-bit) converted to RGB8; alpha is composited
// on black and 16-bit data without gamma information is taken as sRGB. *rgb is
// malloc'd. A truncated or non-PNG file is -1 with a message naming the file.
int png_read(const char *path, uint8_t **rgb, int *w, int *h);

// Tiles n images (each h x w x 3) in `cols` columns on a light background with a gap
// between tiles, each upscaled `scale` times (nearest). With labels (NULL for none;
// an entry may be NULL) two lines of 5x7 text go under each tile, word-wrapped and
// cut with "..." when too long; non-ASCII characters are drawn as '?'.
// *out is malloc'd, *out_w x *out_h RGB8.
int image_grid(const uint8_t *images, int n, int w, int h, int cols, int scale,
               const char *const *labels, uint8_t **out, int *out_w, int *out_h);
int png_write_grid(const char *path, const uint8_t *images, int n, int w, int h, int cols,
                   int scale, const char *const *labels);

// Layout constants, for callers that size grids (and for the tests).
#define GRID_GAP 4          // pixels between tiles and around the edge
#define GRID_LABEL_LINES 2  // text lines under each tile
#define GRID_LINE_H 9       // 7 rows of glyph + 2 of spacing
#define GRID_CHAR_W 6       // 5 columns of glyph + 1 of spacing

#ifdef __cplusplus
}
#endif
#endif
