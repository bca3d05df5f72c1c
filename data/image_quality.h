// An image-quality figure for generated images: a KID-style distance (Binkowski et
// al. 2018, "Demystifying MMD GANs") between a set of generated images and a set of
// ground-truth renders. It stands in for the paper's human-preference metrics, so
// that a faithfulness gain bought with worse-looking images shows up in the report.
// Lower is better; 0 means the two sets look alike in the features below (the
// unbiased estimate is slightly negative about as often as positive when they do).
//
// KID: the unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
//   MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(y_i, y_j) / (n (n-1))
//             - 2 sum_{i,j} k(x_i, y_j) / (m n).
// Instead of Inception features it uses a small hand-made feature vector aimed at how
// images of the shapes world go wrong (colours that are no palette colour or mixes of
// two, soft or smeared edges, residual noise or a tinted background, blobs the
// detector cannot explain, objects missing or too many). Per image, all in units of
// about [0, 1] (intensities / 255, fractions of the canvas), any image size:
//
//   palette (10)  fraction of pixels within 40 (RGB, 0..255) of each of the 8 palette
//                 colours (color_rgb); "blend": pixels on the line between the
//                 background and one object colour (anti-aliasing, soft edges:
//                 bg + a (c - bg), 0 < a < 1, off the line by < 30); "off-palette":
//                 the rest (mixtures of two object colours, tints, noise).
//   background (3) robust noise sd of the border ring (1.4826 x median absolute
//                 deviation from the per-channel median, mean over channels); noise sd
//                 of the whole image by Immerkaer's Laplacian-difference estimator on
//                 luminance (Immerkaer 1996); tint: distance of the border median from
//                 the nearest palette colour / 255.
//   edges (8)     colour gradient magnitude (forward differences, RGB Euclidean, 0..255
//                 units): the fraction of pixels at or above 32, 64, 96, 128, 160, 192,
//                 224 (a survival function: each entry moves one way as edges soften,
//                 unlike histogram bins), and the mean of the top 3% / 255. Sharp
//                 anti-aliased edges reach the high thresholds; blur pulls them down.
//                 The thresholds sit above weak noise, which the background group reads.
//   layout (64)   8x8 luminance (Rec. 601) area means / 255 (exact area weights, so
//                 any size maps to 8x8, 1x1 included).
//   objects (6)   from detect_objects: detections / 4, detected area / canvas,
//                 unexplained foreground (pixels farther than 60 from the background
//                 colour that no detection accounts for) / canvas, mean detection area
//                 / canvas, share of outlined and share of small detections.
//
// Each feature is standardized with the reference (ground-truth) set's mean and
// standard deviation, the deviation floored at 0.05 (5% of the unit range: a feature
// constant on clean renders, like border noise, which is exactly 0, must not turn a
// faint difference into hundreds of sds); then compressed, z -> asinh(z), linear
// within about one sd and logarithmic beyond, so that one far-off feature cannot make
// the cubic kernel explode and drown the others (noise 0.15 is worse than noise 0.05,
// but not a thousand times); each of the five groups is then scaled so that it carries
// the same weight in x.y whatever its number of dimensions (the 64 layout cells do not
// outvote the 3 background statistics).
// KID is reported on all samples and, as usual, as mean and sd over random subsets
// drawn without replacement (seeded).
#ifndef SELMA_DATA_IMAGE_QUALITY_H
#define SELMA_DATA_IMAGE_QUALITY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    IQ_PALETTE = 10, IQ_BACKGROUND = 3, IQ_EDGES = 8, IQ_LAYOUT = 64, IQ_OBJECTS = 6,
    IQ_GROUPS = 5,
    IQ_DIM = IQ_PALETTE + IQ_BACKGROUND + IQ_EDGES + IQ_LAYOUT + IQ_OBJECTS,
};

// One line for reports (run_results.quality_metric).
#define IMAGE_QUALITY_DESCRIPTION                                                      \
    "KID (unbiased MMD^2, cubic kernel) to ground-truth renders on 91 shapes-world "  \
    "features: palette/blend/off-palette mass, border and Laplacian noise, tint, "   \
    "edge-gradient levels, 8x8 luminance layout, detector object statistics; "        \
    "standardized on ground truth, groups weighted equally; lower is better"

// The feature vector of one image (rgb: height*width*3 uint8 HWC) into out[IQ_DIM].
// -1 with a message for an empty or oversized image.
int image_quality_features(const uint8_t *rgb, int width, int height, float *out);

typedef struct image_quality_opts {
    int n_subsets;    // random subsets for the subset mean (20); 0: none
    int subset_size;  // per set and subset (0: half the smaller set, at least 2)
    uint64_t seed;    // of the subset draws (0)
} image_quality_opts;

void image_quality_defaults(image_quality_opts *o);

typedef struct image_quality_result {
    double kid;                      // unbiased MMD^2 on all samples
    double subset_mean, subset_sd;   // over the random subsets (= kid, 0 without subsets)
    int n_subsets, subset_size;
    int n_gen, n_ref;
} image_quality_result;

// KID between feature sets gen (n_gen x IQ_DIM) and ref (n_ref x IQ_DIM), raw features
// as image_quality_features writes them; standardization uses ref. Needs n_gen and
// n_ref >= 2; -1 with a message otherwise.
int image_quality_kid(const float *gen, int n_gen, const float *ref, int n_ref,
                      const image_quality_opts *o, image_quality_result *out);

// The same from images: n_gen images of gw x gh and n_ref of rw x rh (the two sizes
// may differ), each set contiguous HWC uint8.
int image_quality_images(const uint8_t *gen, int n_gen, int gw, int gh,
                         const uint8_t *ref, int n_ref, int rw, int rh,
                         const image_quality_opts *o, image_quality_result *out);

#ifdef __cplusplus
}
#endif
#endif
