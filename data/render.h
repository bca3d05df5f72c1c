// The pixel side of the shapes world: placing a scene_graph's objects on a canvas
// (place.c), drawing a scene anti-aliased and degrading it (render.c), and the scene's
// JSON form (scene_json.c). The detector (detect.h) reads pixels only; it shares the
// geometry below (radii, stroke, coverage) because it fits these shapes as templates.
//
// Geometry, in pixels, with m = min(width, height):
//   radius    small 0.11 m, large 0.19 m (half the side of the object's square box:
//             3.5 and 6.1 px at 32x32);
//   circle    the disc of that radius;
//   square    axis-aligned, side 2 r;
//   triangle  pointing up, isosceles, base 2 r and height 2 r (so every shape fills the
//             same box and the box's centre is the object's (cx, cy));
//   outlined  a stroke of shape_stroke(r) = 0.7 + 0.2 r pixels inside the outline (1.4 px
//             for a small and 1.9 px for a large object at 32x32); the interior shows
//             the background.
// The centre the detector measures is the centroid of the drawn pixels, which for a
// triangle lies below the box centre (shape_centroid_dy); relations are placed so that
// both the box centres and the centroids are ordered with a margin.
#ifndef SELMA_DATA_RENDER_H
#define SELMA_DATA_RENDER_H

#include <stdint.h>

#include "data/shapes.h"

#ifdef __cplusplus
extern "C" {
#endif

// Places the graph's entities (count objects each) on a width x height canvas,
// deterministically from seed: unset attributes (color/size/fill ATTR_UNSET) drawn at
// random, never equal to the background and, where avoidable, never making an object
// fit another entity's description (so counts stay what the graph says); every
// relation holds for every pair of members, on box centres and on centroids, with a
// margin of max(2 px, m/16); boxes keep a gap of max(2 px, 0.06 m), 1.5 px more
// between objects of one colour (so that blur cannot join them), and stay 1 px inside
// the canvas. Background: the graph's, else COLOR_BLACK. `distractors`: how many extra
// random objects (entity -1, each fitting no entity's description) to add where they
// fit; 0 for skill prompts. Returns -1 with a message on a bad graph (values out of
// range, more than MAX_OBJECTS objects, an entity coloured like the background, a
// canvas under 8x8), contradictory relations (a left of b and b left of a), or when
// the objects do not fit after bounded retries. At 32x32 up to 8 small objects fit
// (9 in a perfect grid), or 4 large ones; two related groups need more room (4 left of
// 4 does not fit).
int scene_place(const scene_graph *g, int width, int height, int distractors, uint64_t seed,
                scene *out);

// Draws the scene into rgb (height*width*3, uint8, HWC) with 4x4 supersampling.
void scene_render(const scene *s, uint8_t *rgb);

// Gaussian blur (blur_sigma pixels, 0 = none, edges clamped) then additive Gaussian
// noise (sd noise_sd as a fraction of 255, 0 = none), rounded and clamped; seeded.
void image_degrade(uint8_t *rgb, int width, int height, float blur_sigma, float noise_sd,
                   uint64_t seed);

// JSON form of a scene (the datasets' /scene field):
//   {"width": 32, "height": 32, "background": "black",
//    "objects": [{"shape": "circle", "color": "red", "size": "small", "fill": "filled",
//                 "cx": 10.5, "cy": 7.25, "radius": 3.52, "entity": 0}, ...]}
// Enumerations are written by name (shape_names, color_names, size_names, fill_names);
// "entity" is the scene_graph entity index or -1 for a distractor.
int scene_to_json(const scene *s, char **out);  // *out malloc'd; free() it
int scene_from_json(const char *text, scene *out);  // -1 with a message on bad JSON or values

// Shared geometry (see the top of this file).
float scene_radius(int size, int width, int height);  // size_kind -> radius in pixels
float shape_stroke(float r);                          // outline width for radius r
// Fraction of the unit pixel [px, px+1) x [py, py+1) (relative to the shape's box
// centre) that the shape covers; 4x4 samples.
float shape_coverage(int shape, int fill, float r, float px, float py);
// Area of the drawn shape (exact, not sampled) and the y offset of its centroid below
// the box centre.
float shape_area(int shape, int fill, float r);
float shape_centroid_dy(int shape, int fill, float r);

#ifdef __cplusplus
}
#endif
#endif
