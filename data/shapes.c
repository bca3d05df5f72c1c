#include "data/shapes.h"

#include <string.h>

const uint8_t color_rgb[COLOR_COUNT][3] = {
    [COLOR_RED] = {230, 40, 40},     [COLOR_GREEN] = {40, 200, 60},
    [COLOR_BLUE] = {50, 80, 235},    [COLOR_YELLOW] = {240, 220, 40},
    [COLOR_PURPLE] = {160, 60, 200}, [COLOR_WHITE] = {245, 245, 245},
    [COLOR_BLACK] = {15, 15, 20},    [COLOR_GRAY] = {128, 128, 128},
};

const char *const shape_names[SHAPE_COUNT] = {"circle", "square", "triangle"};
const char *const shape_plurals[SHAPE_COUNT] = {"circles", "squares", "triangles"};
const char *const color_names[COLOR_COUNT] = {"red", "green", "blue", "yellow",
                                              "purple", "white", "black", "gray"};
const char *const size_names[SIZE_COUNT] = {"small", "large"};
const char *const fill_names[FILL_COUNT] = {"filled", "outlined"};
const char *const relation_names[REL_COUNT] = {"left of", "right of", "above", "below"};
const char *const skill_names[SKILL_KINDS] = {"count", "spatial", "binding", "dense",
                                              "style", "pretrain", "unknown"};

int skill_from_name(const char *name) {
    for (int i = 0; i < SKILL_KINDS; i++)
        if (!strcmp(name, skill_names[i])) return i;
    return -1;
}
