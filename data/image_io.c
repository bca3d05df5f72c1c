#include "data/image_io.h"

#ifdef SELMA_PNG
#include <png.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/error.h"
#include "runtime/fileio.h"

// Largest side read or written: bounds the allocation a hostile header can ask for
// (and is below libpng's own default limit of 1,000,000).
#define PNG_MAX_SIDE 65535

#ifdef SELMA_PNG
int png_write(const char *path, const uint8_t *rgb, int w, int h) {
    if (w < 1 || h < 1 || w > PNG_MAX_SIDE || h > PNG_MAX_SIDE)
        return err_set("%s: bad image size %dx%d (sides 1..%d)", path, w, h, PNG_MAX_SIDE);
    char tmp[4096 + 32];
    atomic_tmp_name(path, tmp, sizeof tmp);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&img, tmp, 0, rgb, 0, NULL)) {
        err_set("%s: libpng: %s", path, img.message);
        png_image_free(&img);
        unlink(tmp);
        return -1;
    }
    return atomic_publish(tmp, path);
}

int png_read(const char *path, uint8_t **rgb, int *w, int *h) {
    *rgb = NULL;
    *w = *h = 0;
    FILE *f = fopen(path, "rb");
    IO_TRY(f, path);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_stdio(&img, f)) {
        err_set("%s: not a readable PNG file (libpng: %s)", path, img.message);
        png_image_free(&img);
        fclose(f);
        return -1;
    }
    if (img.width > PNG_MAX_SIDE || img.height > PNG_MAX_SIDE) {
        err_set("%s: image of %ux%u is too large (sides up to %d)", path, img.width, img.height, PNG_MAX_SIDE);
        png_image_free(&img);
        fclose(f);
        return -1;
    }
    img.format = PNG_FORMAT_RGB;
    img.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;  // most 16-bit PNGs without gAMA are sRGB, not linear
    size_t bytes = PNG_IMAGE_SIZE(img);
    uint8_t *buf = malloc(bytes);
    if (!buf) {
        png_image_free(&img);
        fclose(f);
        return err_set("%s: out of memory for a %ux%u image", path, img.width, img.height);
    }
    png_color black = {0, 0, 0};
    int ok = png_image_finish_read(&img, &black, buf, 0, NULL);
    fclose(f);
    if (!ok) {
        err_set("%s: cannot decode the PNG (truncated or corrupt? libpng: %s)", path, img.message);
        png_image_free(&img);
        free(buf);
        return -1;
    }
    *rgb = buf;
    *w = (int)img.width;
    *h = (int)img.height;
    return 0;
}
#else  // no libpng (meson -Dpng=disabled, or none found)
int png_write(const char *path, const uint8_t *rgb, int w, int h) {
    (void)rgb, (void)w, (void)h;
    return err_set("%s: this build has no libpng (libpng-dev; meson -Dpng=enabled)", path);
}

int png_read(const char *path, uint8_t **rgb, int *w, int *h) {
    (void)rgb, (void)w, (void)h;
    return err_set("%s: this build has no libpng (libpng-dev; meson -Dpng=enabled)", path);
}
#endif

// ---------------------------------------------------------------------------------
// Grids

// The classic 5x7 LCD font for ASCII 32..126: five column bytes per glyph, bit 0 is
// the top row.
static const uint8_t font5x7[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},
    {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},
    {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x08, 0x2A, 0x1C, 0x2A, 0x08}, {0x08, 0x08, 0x3E, 0x08, 0x08},
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},
    {0x20, 0x10, 0x08, 0x04, 0x02},  // '/'
    {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00}, {0x42, 0x61, 0x51, 0x49, 0x46},
    {0x21, 0x41, 0x45, 0x4B, 0x31}, {0x18, 0x14, 0x12, 0x7F, 0x10}, {0x27, 0x45, 0x45, 0x45, 0x39},
    {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03}, {0x36, 0x49, 0x49, 0x49, 0x36},
    {0x06, 0x49, 0x49, 0x29, 0x1E},  // '9'
    {0x00, 0x36, 0x36, 0x00, 0x00}, {0x00, 0x56, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00},
    {0x14, 0x14, 0x14, 0x14, 0x14}, {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06},
    {0x32, 0x49, 0x79, 0x41, 0x3E},  // '@'
    {0x7E, 0x11, 0x11, 0x11, 0x7E}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},
    {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x01, 0x01},
    {0x3E, 0x41, 0x41, 0x51, 0x32}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},
    {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},
    {0x7F, 0x02, 0x04, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},
    {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},
    {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F},
    {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x7F, 0x20, 0x18, 0x20, 0x7F}, {0x63, 0x14, 0x08, 0x14, 0x63},
    {0x03, 0x04, 0x78, 0x04, 0x03}, {0x61, 0x51, 0x49, 0x45, 0x43},  // 'Z'
    {0x00, 0x7F, 0x41, 0x41, 0x00}, {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00},
    {0x04, 0x02, 0x01, 0x02, 0x04}, {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00},
    {0x20, 0x54, 0x54, 0x54, 0x78}, {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20},
    {0x38, 0x44, 0x44, 0x48, 0x7F}, {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7E, 0x09, 0x01, 0x02},
    {0x08, 0x14, 0x54, 0x54, 0x3C}, {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00},
    {0x20, 0x40, 0x44, 0x3D, 0x00}, {0x00, 0x7F, 0x10, 0x28, 0x44}, {0x00, 0x41, 0x7F, 0x40, 0x00},
    {0x7C, 0x04, 0x18, 0x04, 0x78}, {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38},
    {0x7C, 0x14, 0x14, 0x14, 0x08}, {0x08, 0x14, 0x14, 0x18, 0x7C}, {0x7C, 0x08, 0x04, 0x04, 0x08},
    {0x48, 0x54, 0x54, 0x54, 0x20}, {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C},
    {0x1C, 0x20, 0x40, 0x20, 0x1C}, {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44},
    {0x0C, 0x50, 0x50, 0x50, 0x3C}, {0x44, 0x64, 0x54, 0x4C, 0x44},  // 'z'
    {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7F, 0x00, 0x00}, {0x00, 0x41, 0x36, 0x08, 0x00},
    {0x08, 0x04, 0x08, 0x10, 0x08},  // '~'
};

static const uint8_t grid_bg[3] = {236, 236, 236}, grid_ink[3] = {20, 20, 20};

static void draw_char(uint8_t *img, int iw, int ih, int x0, int y0, char c) {
    if (c < 32 || c > 126) c = '?';
    const uint8_t *g = font5x7[c - 32];
    for (int col = 0; col < 5; col++)
        for (int row = 0; row < 7; row++) {
            int x = x0 + col, y = y0 + row;
            if (!((g[col] >> row) & 1) || x < 0 || y < 0 || x >= iw || y >= ih) continue;
            memcpy(img + ((size_t)y * iw + x) * 3, grid_ink, 3);
        }
}

// Label text as printable ASCII: a UTF-8 sequence becomes one '?', controls a space.
static void label_ascii(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && k + 1 < n; p++) {
        if (*p >= 0x80 && *p < 0xC0) continue;  // UTF-8 continuation byte
        out[k++] = *p >= 0x80 ? '?' : *p < 32 ? ' ' : (char)*p;
    }
    out[k] = 0;
}

// Greedy word wrap into at most GRID_LABEL_LINES lines of max_chars; what does not
// fit ends the last line with "...". Words longer than a line are broken.
static void label_wrap(const char *text, int max_chars, char lines[GRID_LABEL_LINES][256]) {
    const char *p = text;
    for (int l = 0; l < GRID_LABEL_LINES; l++) {
        lines[l][0] = 0;
        while (*p == ' ') p++;
        int len = (int)strlen(p);
        if (len <= max_chars) { snprintf(lines[l], 256, "%s", p); p += len; continue; }
        int cut = max_chars;
        while (cut > 0 && p[cut] != ' ') cut--;
        if (cut == 0) cut = max_chars;  // one long word
        snprintf(lines[l], 256, "%.*s", cut, p);
        p += cut;
    }
    while (*p == ' ') p++;
    if (*p && max_chars >= 3) {
        char *last = lines[GRID_LABEL_LINES - 1];
        int len = (int)strlen(last);
        if (len > max_chars - 3) len = max_chars - 3;
        snprintf(last + len, 256 - (size_t)len, "...");
    }
}

int image_grid(const uint8_t *images, int n, int w, int h, int cols, int scale,
               const char *const *labels, uint8_t **out, int *out_w, int *out_h) {
    *out = NULL;
    *out_w = *out_h = 0;
    if (n < 1 || w < 1 || h < 1 || cols < 1 || scale < 1)
        return err_set("image grid: bad arguments n=%d w=%d h=%d cols=%d scale=%d", n, w, h, cols, scale);
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    long long tile_w = (long long)w * scale, tile_h = (long long)h * scale;
    long long label_h = labels ? 2 + GRID_LABEL_LINES * GRID_LINE_H : 0;
    long long gw = GRID_GAP + cols * (tile_w + GRID_GAP);
    long long gh = GRID_GAP + rows * (tile_h + label_h + GRID_GAP);
    if (gw > PNG_MAX_SIDE || gh > PNG_MAX_SIDE)
        return err_set("image grid: %lldx%lld pixels is too large (sides up to %d)", gw, gh, PNG_MAX_SIDE);
    uint8_t *img = malloc((size_t)gw * (size_t)gh * 3);
    if (!img) return err_set("image grid: out of memory for %lldx%lld pixels", gw, gh);
    for (size_t i = 0; i < (size_t)gw * (size_t)gh; i++) memcpy(img + 3 * i, grid_bg, 3);
    int max_chars = (int)((tile_w + 1) / GRID_CHAR_W);
    if (max_chars > 255) max_chars = 255;
    for (int k = 0; k < n; k++) {
        int x0 = GRID_GAP + (k % cols) * (int)(tile_w + GRID_GAP);
        int y0 = GRID_GAP + (k / cols) * (int)(tile_h + label_h + GRID_GAP);
        const uint8_t *src = images + (size_t)k * w * h * 3;
        for (int y = 0; y < tile_h; y++)
            for (int x = 0; x < tile_w; x++)
                memcpy(img + ((size_t)(y0 + y) * gw + x0 + x) * 3,
                       src + ((size_t)(y / scale) * w + x / scale) * 3, 3);
        if (!labels || !labels[k]) continue;
        char text[1024], lines[GRID_LABEL_LINES][256];
        label_ascii(labels[k], text, sizeof text);
        label_wrap(text, max_chars, lines);
        for (int l = 0; l < GRID_LABEL_LINES; l++)
            for (int c = 0; lines[l][c]; c++)
                draw_char(img, (int)gw, (int)gh, x0 + c * GRID_CHAR_W,
                          y0 + (int)tile_h + 2 + l * GRID_LINE_H, lines[l][c]);
    }
    *out = img;
    *out_w = (int)gw;
    *out_h = (int)gh;
    return 0;
}

int png_write_grid(const char *path, const uint8_t *images, int n, int w, int h, int cols,
                   int scale, const char *const *labels) {
    uint8_t *img;
    int gw, gh;
    if (image_grid(images, n, w, h, cols, scale, labels, &img, &gw, &gh) != 0) return err_wrap("%s", path);
    int rc = png_write(path, img, gw, gh);
    free(img);
    return rc;
}
