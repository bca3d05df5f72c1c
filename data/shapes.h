// The shapes world's vocabulary and its two structures:
//   scene_graph -- what a prompt *states* (entities with the attributes it names,
//                  relations between entities, maybe a background); the parser
//                  makes one from text, the generators write text from one;
//   scene       -- one concrete image's content: every object with every attribute
//                  and a position; the renderer draws it, placement makes it from a
//                  scene_graph and a seed;
// and the detector's output, `detections`, which the question answerer reads.
// Coordinates are in pixels, origin top-left, y down; "above" means smaller y.
#ifndef SELMA_DATA_SHAPES_H
#define SELMA_DATA_SHAPES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum shape_kind { SHAPE_CIRCLE, SHAPE_SQUARE, SHAPE_TRIANGLE, SHAPE_COUNT } shape_kind;

// Object colours: well separated in RGB so that a palette classifier is exact on
// clean renders. Backgrounds may also be BLACK (the default "dark" canvas) or GRAY.
typedef enum color {
    COLOR_RED, COLOR_GREEN, COLOR_BLUE, COLOR_YELLOW, COLOR_PURPLE, COLOR_WHITE,
    COLOR_OBJECT_COUNT,                  // colours an object may have end here
    COLOR_BLACK = COLOR_OBJECT_COUNT, COLOR_GRAY,
    COLOR_COUNT
} color;

typedef enum size_kind { SIZE_SMALL, SIZE_LARGE, SIZE_COUNT } size_kind;
typedef enum fill_kind { FILL_FILLED, FILL_OUTLINED, FILL_COUNT } fill_kind;
// a REL b: "a is left of b" means a's centre x < b's centre x (and so on).
typedef enum relation_kind { REL_LEFT_OF, REL_RIGHT_OF, REL_ABOVE, REL_BELOW, REL_COUNT } relation_kind;

typedef enum skill {
    SKILL_COUNT, SKILL_SPATIAL, SKILL_BINDING, SKILL_DENSE, SKILL_STYLE,
    SKILL_PRETRAIN,  // the incomplete captions the base model learns from
    SKILL_UNKNOWN,   // a dataset without /skill
    SKILL_KINDS
} skill;

#define ATTR_UNSET (-1)   // the prompt does not say
#define MAX_ENTITIES 6
#define MAX_RELATIONS 6
#define MAX_OBJECTS 10
#define MAX_DETECTIONS 16

// RGB of every colour (0..255), the one palette renderer and detector share.
extern const uint8_t color_rgb[COLOR_COUNT][3];
extern const char *const shape_names[SHAPE_COUNT];           // "circle"
extern const char *const shape_plurals[SHAPE_COUNT];         // "circles"
extern const char *const color_names[COLOR_COUNT];           // "red", ..., "black", "gray"
extern const char *const size_names[SIZE_COUNT];             // "small", "large"
extern const char *const fill_names[FILL_COUNT];             // "filled", "outlined"
extern const char *const relation_names[REL_COUNT];          // "left of", "right of", "above", "below"
extern const char *const skill_names[SKILL_KINDS];           // "count", ..., "pretrain", "unknown"
int skill_from_name(const char *name);                      // -1 if unknown

// One group of objects a prompt names: "three small red circles" is one entity with
// count 3. Unstated attributes are ATTR_UNSET. The shape is always stated.
typedef struct entity {
    int shape;   // shape_kind
    int color;   // color (< COLOR_OBJECT_COUNT) or ATTR_UNSET
    int size;    // size_kind or ATTR_UNSET
    int fill;    // fill_kind or ATTR_UNSET
    int count;   // 1..4
    int count_stated;  // 1 if the prompt states the number ("two", "3"); "a" is not a count
} entity;

typedef struct relation {
    int a, b;    // entity indices
    int kind;    // relation_kind
} relation;

typedef struct scene_graph {
    int n_entities;
    entity entities[MAX_ENTITIES];
    int n_relations;
    relation relations[MAX_RELATIONS];
    int background;  // color or ATTR_UNSET (then the canvas is dark)
} scene_graph;

// One drawn object; every attribute is concrete.
typedef struct object {
    int shape, color, size, fill;
    float cx, cy;   // centre, pixels
    float radius;   // half the bounding box side, pixels
    int entity;     // index of the scene_graph entity it realises, or -1 (a distractor)
} object;

typedef struct scene {
    int width, height;
    int background;  // color
    int n_objects;
    object objects[MAX_OBJECTS];
} scene;

// What the detector sees in an image: one record per connected component of a
// non-background colour, plus the background. Never derived from a stored scene.
typedef struct detection {
    int color, shape, size, fill;
    float cx, cy;      // centroid, pixels
    int area;          // pixels in the component
} detection;

typedef struct detections {
    int background;    // color
    int n;
    detection d[MAX_DETECTIONS];
} detections;

#ifdef __cplusplus
}
#endif
#endif
