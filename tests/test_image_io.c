// PNG I/O and labelled grids: round trip, other PNG formats converted to RGB8, grid
// geometry and label ink, truncated and non-PNG files rejected with the file named.
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_io.h"
#include "runtime/error.h"
#include "runtime/fileio.h"
#include "tests/check.h"

static char dir[64];

static const char *tmp_path(const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

static void test_round_trip(void) {
    enum { W = 7, H = 5 };
    uint8_t img[W * H * 3], *back;
    fill(img, sizeof img, 1);
    const char *path = tmp_path("rt.png");
    EXPECT(png_write(path, img, W, H) == 0, "%s", err_msg());
    int w, h;
    EXPECT(png_read(path, &back, &w, &h) == 0, "%s", err_msg());
    EXPECT(w == W && h == H && back && !memcmp(back, img, sizeof img), "round trip %dx%d", w, h);
    free(back);
    EXPECT(png_write(path, img, 0, H) == -1 && strstr(err_msg(), "rt.png"), "%s", err_msg());
}

// Writes a 2x1 image in `format` with libpng's simplified API and reads it back.
static void read_format(const char *name, uint32_t format, const void *pixels, const void *colormap,
                        int entries, uint8_t out[6]) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = 2;
    img.height = 1;
    img.format = format;
    img.colormap_entries = (png_uint_32)entries;
    const char *path = tmp_path(name);
    CHECK(png_image_write_to_file(&img, path, 0, pixels, 0, colormap));
    uint8_t *rgb = NULL;
    int w, h;
    EXPECT(png_read(path, &rgb, &w, &h) == 0 && w == 2 && h == 1, "%s: %s", name, err_msg());
    memset(out, 0, 6);
    if (rgb) memcpy(out, rgb, 6);
    free(rgb);
}

static void test_formats(void) {
    uint8_t out[6];
    const uint8_t gray[2] = {10, 200};
    read_format("gray.png", PNG_FORMAT_GRAY, gray, NULL, 0, out);
    EXPECT(out[0] == 10 && out[2] == 10 && out[3] == 200 && out[5] == 200, "gray %d %d", out[0], out[3]);

    const uint8_t rgba[8] = {255, 0, 0, 255, 0, 255, 0, 0};  // opaque red, transparent green
    read_format("rgba.png", PNG_FORMAT_RGBA, rgba, NULL, 0, out);
    EXPECT(out[0] == 255 && out[1] == 0 && out[3] == 0 && out[4] == 0 && out[5] == 0,
           "rgba %d %d %d / %d %d %d", out[0], out[1], out[2], out[3], out[4], out[5]);

    const uint8_t idx[2] = {1, 0}, palette[6] = {0, 0, 255, 250, 240, 10};
    read_format("palette.png", PNG_FORMAT_RGB_COLORMAP, idx, palette, 2, out);
    EXPECT(out[0] == 250 && out[1] == 240 && out[2] == 10 && out[5] == 255, "palette %d %d %d", out[0], out[1], out[2]);

    const uint16_t gray16[2] = {0, 65535};
    read_format("gray16.png", PNG_FORMAT_LINEAR_Y, gray16, NULL, 0, out);
    EXPECT(out[0] == 0 && out[3] == 255 && out[4] == 255, "16-bit gray %d %d", out[0], out[3]);
}

static int ink_in(const uint8_t *img, int gw, int x0, int y0, int x1, int y1) {
    int count = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) count += img[((size_t)y * gw + x) * 3] < 100;
    return count;
}

static void test_grid(void) {
    enum { N = 5, W = 16, H = 8, COLS = 3, S = 2 };
    uint8_t imgs[N * W * H * 3];
    fill(imgs, sizeof imgs, 7);
    for (size_t i = 0; i < sizeof imgs; i++) imgs[i] = (uint8_t)(150 + imgs[i] % 100);  // no "ink" in tiles
    const char *labels[N] = {"three red circles", NULL, "x",
                             "a very long label that cannot possibly fit in two lines of text", "\xC3\xA9t\xC3\xA9"};
    uint8_t *g;
    int gw, gh;
    EXPECT(image_grid(imgs, N, W, H, COLS, S, labels, &g, &gw, &gh) == 0, "%s", err_msg());
    int tile_w = W * S, tile_h = H * S, label_h = 2 + GRID_LABEL_LINES * GRID_LINE_H;
    int cell_h = tile_h + label_h;
    EXPECT(gw == GRID_GAP + COLS * (tile_w + GRID_GAP), "width %d", gw);
    EXPECT(gh == GRID_GAP + 2 * (cell_h + GRID_GAP), "height %d", gh);
    EXPECT(gw == 112 && gh == 84, "grid %dx%d", gw, gh);
    if (!g) return;

    // Tiles hold the nearest-upscaled images; gaps are light.
    int bad = 0;
    for (int k = 0; k < N; k++) {
        int x0 = GRID_GAP + (k % COLS) * (tile_w + GRID_GAP), y0 = GRID_GAP + (k / COLS) * (cell_h + GRID_GAP);
        for (int y = 0; y < tile_h; y++)
            for (int x = 0; x < tile_w; x++)
                bad += memcmp(g + ((size_t)(y0 + y) * gw + x0 + x) * 3,
                              imgs + (size_t)k * W * H * 3 + ((y / S) * W + x / S) * 3, 3) != 0;
    }
    EXPECT(bad == 0, "%d tile pixels differ", bad);
    EXPECT(g[0] > 200 && g[(size_t)(GRID_GAP + tile_w + 1) * 3] > 200, "gap colour %d", g[0]);

    // Label ink: under labelled tiles, none under the unlabelled one, never in the gaps.
    int lx[N], ly[N];
    for (int k = 0; k < N; k++) {
        lx[k] = GRID_GAP + (k % COLS) * (tile_w + GRID_GAP);
        ly[k] = GRID_GAP + (k / COLS) * (cell_h + GRID_GAP) + tile_h;
    }
    int line1 = GRID_LINE_H + 2;
    EXPECT(ink_in(g, gw, lx[0], ly[0], lx[0] + tile_w, ly[0] + line1) > 20, "label 0 line 1");
    EXPECT(ink_in(g, gw, lx[0], ly[0] + line1, lx[0] + tile_w, ly[0] + label_h) > 20, "label 0 wraps");
    EXPECT(ink_in(g, gw, lx[1], ly[1], lx[1] + tile_w, ly[1] + label_h) == 0, "unlabelled tile has ink");
    int x_ink = ink_in(g, gw, lx[2], ly[2], lx[2] + tile_w, ly[2] + label_h);
    EXPECT(x_ink == 9, "'x' has %d ink pixels", x_ink);  // the 5x7 glyph of 'x' sets 9
    EXPECT(ink_in(g, gw, lx[3], ly[3] + line1, lx[3] + tile_w, ly[3] + label_h) > 20, "long label line 2");
    // "..." ends the cut label: three dots, each 2x2 pixels, in the last three cells of line 2.
    int max_chars = (tile_w + 1) / GRID_CHAR_W;
    int dots_x = lx[3] + (max_chars - 3) * GRID_CHAR_W;
    EXPECT(ink_in(g, gw, dots_x, ly[3] + line1, dots_x + 3 * GRID_CHAR_W, ly[3] + label_h) == 12, "ellipsis");
    EXPECT(ink_in(g, gw, lx[4], ly[4], lx[4] + tile_w, ly[4] + label_h) > 10, "UTF-8 label drawn");
    int gap_ink = 0;
    for (int c = 0; c < COLS; c++) gap_ink += ink_in(g, gw, lx[c] + tile_w, 0, lx[c] + tile_w + GRID_GAP, gh);
    EXPECT(gap_ink == 0, "%d ink pixels in the gaps", gap_ink);
    free(g);

    // Without labels the grid is tiles only; cols above n is clamped.
    EXPECT(image_grid(imgs, 2, W, H, 8, 1, NULL, &g, &gw, &gh) == 0, "%s", err_msg());
    EXPECT(gw == GRID_GAP + 2 * (W + GRID_GAP) && gh == GRID_GAP + H + GRID_GAP, "plain grid %dx%d", gw, gh);
    free(g);
    EXPECT(image_grid(imgs, 0, W, H, 3, 1, NULL, &g, &gw, &gh) == -1, "empty grid accepted");

    const char *path = tmp_path("grid.png");
    EXPECT(png_write_grid(path, imgs, N, W, H, COLS, S, labels) == 0, "%s", err_msg());
    uint8_t *back;
    EXPECT(png_read(path, &back, &gw, &gh) == 0 && gw == 112 && gh == 84, "%s", err_msg());
    free(back);
}

static void test_bad_files(void) {
    enum { W = 64, H = 64 };
    static uint8_t img[W * H * 3];
    fill(img, sizeof img, 3);
    const char *good = tmp_path("noise.png");
    CHECK(png_write(good, img, W, H) == 0);
    char *bytes;
    size_t n;
    CHECK(file_read_all(good, &bytes, &n) == 0);
    uint8_t *rgb = (uint8_t *)1;
    int w = 1, h = 1;
    const char *path = tmp_path("truncated.png");
    CHECK(atomic_write(path, bytes, n / 2) == 0);
    EXPECT(png_read(path, &rgb, &w, &h) == -1 && rgb == NULL && w == 0, "truncated PNG read");
    EXPECT(strstr(err_msg(), "truncated.png"), "%s", err_msg());
    free(bytes);

    path = tmp_path("text.png");
    CHECK(atomic_write(path, "hello, not a png\n", 17) == 0);
    EXPECT(png_read(path, &rgb, &w, &h) == -1 && strstr(err_msg(), "text.png: not a readable PNG"), "%s", err_msg());
    path = tmp_path("empty.png");
    CHECK(atomic_write(path, "", 0) == 0);
    EXPECT(png_read(path, &rgb, &w, &h) == -1 && strstr(err_msg(), "empty.png"), "%s", err_msg());
    EXPECT(png_read(tmp_path("absent.png"), &rgb, &w, &h) == -1 && strstr(err_msg(), "No such file"), "%s", err_msg());
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/selma_test_image_io_XXXXXX");
    CHECK(mkdtemp(dir));
    test_round_trip();
    test_formats();
    test_grid();
    test_bad_files();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_image_io");
}
