// Question graphs for a prompt's scene_graph and their answers from the detector.
//
// DSG (Cho et al., "Davidsonian Scene Graph"): yes/no questions with parents.
//   per entity   EXIST "Is there a circle?" (root);
//                COLOR / SIZE / FILL for each stated attribute (parent: EXIST);
//                COUNT when the count is stated ("exactly three") or the entity is
//                plural without a number ("at least two") (parent: EXIST);
//   per relation RELATION (parents: both entities' EXIST);
//   background   BACKGROUND "Is the background white?" (root, an attribute of the
//                picture, no entity).
// A prompt's DSG score is the mean over its questions, a question counting as right
// only if it and every ancestor are answered yes.
//
// TIFA (Hu et al.): multiple-choice questions answered the same way; a prompt's
// score is the fraction answered right. EXIST yes/no, COLOR one of the six object
// colours, SIZE small/large, FILL filled/outlined, COUNT 1-4 when stated (yes/no "at
// least two" for a bare plural), RELATION left/right/above/below, BACKGROUND one of
// all eight colours. Relations are not exclusive (an object can be both left of and
// above another): the detector's answer is right when the expected relation holds.
//
// Answering. Entities are matched to detections first (entities_match): each entity
// of count k gets k slots, a slot takes one detection of the entity's shape, and the
// assignment maximises the summed slot scores (4 for the shape + 1 per stated
// attribute that matches) exactly (Hungarian algorithm), so entities sharing a shape
// get the detections that fit them best; among equally scored assignments a local
// search prefers the one satisfying more relations. Then, for entity e with matched
// set S_e:
//   EXIST      S_e is not empty;
//   attribute  more than half of S_e has the stated value;
//   COUNT      the detections that fit e's whole description and are matched to no
//              other entity number exactly k (stated) or at least k (bare plural);
//   RELATION   every member of S_a against every member of S_b, by centroid (the
//              renderer places every pair with a margin, so this is the natural
//              reading of "two circles left of a square");
//   BACKGROUND the detected background colour.
// TIFA asks the same things without parents, so an entity with no match is answered
// about the detection most like it (most stated attributes in common, shape aside),
// as a VQA model answers "what colour is the circle?" when there is no circle; its
// EXIST and COUNT answers still say no.
#ifndef SELMA_DATA_QUESTIONS_H
#define SELMA_DATA_QUESTIONS_H

#include "data/shapes.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum question_kind {
    QUESTION_EXIST, QUESTION_COLOR, QUESTION_SIZE, QUESTION_FILL, QUESTION_COUNT,
    QUESTION_RELATION, QUESTION_BACKGROUND, QUESTION_KINDS
} question_kind;
extern const char *const question_kind_names[QUESTION_KINDS];  // "exist", "color", ...

#define MAX_QUESTIONS (MAX_ENTITIES * 5 + MAX_RELATIONS + 1)

typedef struct question {
    int kind;          // question_kind
    int entity, other; // the entity (and a relation's second entity), -1 if none
    int value;         // colour, size, fill, count, relation kind or background colour
    int at_least;      // COUNT: 1 for a bare plural ("at least value")
    int n_parents;
    int parents[2];    // indices of parent questions in the same set (DSG)
    int n_choices;     // TIFA: number of choices (2 for yes/no)
    int answer;        // TIFA: index of the right choice
    char text[160];
} question;

typedef struct question_set {
    int n;
    question q[MAX_QUESTIONS];
} question_set;

void questions_dsg(const scene_graph *g, question_set *qs);
void questions_tifa(const scene_graph *g, question_set *qs);
// The TIFA choices of q as text ("red", "green", ...); returns how many.
int question_choices(const question *q, const char **choices, int max);

typedef struct entity_match {
    int n[MAX_ENTITIES];                      // |S_e|
    int det[MAX_ENTITIES][MAX_DETECTIONS];    // indices into detections.d
} entity_match;

void entities_match(const scene_graph *g, const detections *d, entity_match *m);

// DSG: yes[i] = the detector's yes/no for question i (ignoring parents).
void questions_answer_dsg(const question_set *qs, const scene_graph *g, const detections *d,
                          const entity_match *m, int *yes);
// TIFA: chosen[i] = the index of the chosen choice, -1 when the image offers none
// (no matched object to ask about).
void questions_answer_tifa(const question_set *qs, const scene_graph *g, const detections *d,
                           const entity_match *m, int *chosen);

// Per-prompt scores. chance_*: the expected score of a responder that answers every
// question uniformly at random (DSG: yes/no coin flips, so a question with k
// ancestors is right with probability 2^-(k+1); TIFA: 1/choices) -- the floor an
// evaluator that ignores the image would reach.
typedef struct prompt_scores {
    double dsg, tifa, chance_dsg, chance_tifa;
    int n_dsg, n_tifa;  // questions asked
    // DSG questions per kind, and how many the detector answered yes (parents aside):
    // where an evaluator's errors come from
    int asked[QUESTION_KINDS], yes[QUESTION_KINDS];
} prompt_scores;

void prompt_score(const scene_graph *g, const detections *d, prompt_scores *out);

#ifdef __cplusplus
}
#endif
#endif
