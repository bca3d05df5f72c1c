// The shapes world's deterministic detector: pixels in, `detections` out. It never sees
// a scene; it knows only the palette and the geometry of render.h, which it fits.
//
//  1. background: the palette colour nearest the per-channel median of the border;
//  2. each pixel is unmixed against every object colour c: modelled as the blend
//     bg + a (c - bg) that anti-aliasing and blur make (bg = the measured border
//     colour), it may belong to the colour whose line it lies nearest, with a >= 0.2;
//  3. connected components per colour (8-connectivity) with hysteresis: a component
//     starts at a pixel with a >= 0.45 and grows through pixels with a >= 0.2, so that
//     thin blurred strokes stay whole; components under 0.4% of the canvas are dropped;
//  4. every pixel goes to its nearest component; a component's coverage map (a_c over
//     its pixels, in its box padded by 4 px at 32x32) gives its mass and centroid and
//     is fitted by the ideal templates (3 shapes x filled/outlined) at the radius whose
//     area is the mass (and 5 and 10% either side), centred on the centroid, blurred by
//     a few sigmas; the least squared error gives shape and fill, its radius the size
//     (split at the geometric mean of the small and large radii). Components no
//     template explains (error over 35% of the map's energy: noise, smears) and specks
//     of less mass than a fifth of the smallest object are dropped.
// cx, cy: the coverage-weighted centroid; area: the pixels in the component.
// tests/test_detect.c measures its accuracy, clean and degraded.
#ifndef SELMA_DATA_DETECT_H
#define SELMA_DATA_DETECT_H

#include <stdint.h>

#include "data/shapes.h"

#ifdef __cplusplus
extern "C" {
#endif

// rgb: height*width*3 uint8, HWC. Any size (1x1 included); at most MAX_DETECTIONS
// objects are reported (the largest when there are more).
void detect_objects(const uint8_t *rgb, int width, int height, detections *out);

#ifdef __cplusplus
}
#endif
#endif
