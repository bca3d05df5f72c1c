// Prompt generation for the shapes world, in the manner of SELMA's LLM step.
//
// Each skill has three hand-written seed prompts (the in-context examples). For each
// new prompt the generator samples three examples from the pool (seeds + prompts
// accepted so far) and writes a prompt "in their style": it takes one example's
// phrasing as a template (word order, which attributes each entity states, counts as
// words or digits, synonyms, clause and sentence structure, references), may borrow
// from the other two (their synonyms, their opening words, one of their clauses or
// sentences), may add or drop an attribute, and fills the template with new content
// (shapes, colours, sizes, fills, counts, relations, background). Accepted prompts
// join the pool, so the style drifts as an LLM's does. Every candidate is parsed back
// and must give exactly the graph it was written from, fit its skill, and fit on a
// 32x32 canvas; then the ROUGE-L filter (rouge.h) drops it if it scores above the
// threshold against any prompt kept so far (the seeds included).
//
// An external command can replace the built-in writer: it gets the three examples
// on stdin, one per line, and prints new prompts on stdout, one per line. Its
// prompts go through the same checks and filter; those that do not parse fully or
// do not fit the skill are dropped and counted (prompt_gen_stats keeps examples).
//
// Skills (what prompt_fits_skill checks):
//   count    1-2 entities, every count stated (1-4), no relation, no background
//   spatial  exactly 2 entities and 1 relation, no background
//   binding  2-4 entities, each stating colour, size or fill; no relation
//   dense    3-4 entities, 2 or more relations, some size or fill stated
//   style    1-3 entities and a background colour or a stated fill
//   pretrain incomplete captions of random scenes (prompt_caption); no filter
#ifndef SELMA_DATA_PROMPT_GEN_H
#define SELMA_DATA_PROMPT_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "data/shapes.h"
#include "runtime/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PROMPT_SEEDS 3

// The seed prompts of a skill (count..style); NULL for pretrain and unknown.
const char *const *prompt_seeds(int skill);

// Whether g is a prompt of the skill; on 0 `why` (when non-NULL) says what is off.
int prompt_fits_skill(const scene_graph *g, int skill, char *why, size_t n);

typedef struct prompt_gen_opts {
    double threshold;       // ROUGE-L above this against a kept prompt -> rejected (0.8)
    int max_rejects;        // candidates rejected in a row before giving up (2000)
    const char *command;    // external generator (NULL: the built-in one)
    int command_timeout_s;  // per call of the command (60)
} prompt_gen_opts;

void prompt_gen_defaults(prompt_gen_opts *o);

typedef struct prompt_list {
    int n, cap;
    char **text;         // (n) malloc'd
    scene_graph *graph;  // (n) the graph each prompt was written from (parsed, for
                         // prompts of an external command)
} prompt_list;

void prompt_list_free(prompt_list *l);
void prompt_list_add(prompt_list *l, const char *text, const scene_graph *g);

typedef struct prompt_gen_stats {
    long candidates;       // prompts the writer (or command) produced
    long rejected_similar; // dropped by the ROUGE-L filter
    long rejected_invalid; // did not parse fully / off-skill / too crowded / rewritten
    int n_examples;
    char examples[4][320]; // a few invalid ones with the reason (external command)
} prompt_gen_stats;

// Writes n prompts of `skill` (count..style, or pretrain: n captions of random scenes
// via prompt_caption, unfiltered) into out (appended). Deterministic in seed.
// Returns 0, or -1 with a message: a bad skill, the command failing, or the filter
// rejecting opts->max_rejects candidates in a row (the message says how many were
// kept; out holds them).
int prompt_generate(int skill, int n, uint64_t seed, const prompt_gen_opts *opts,
                    prompt_list *out, prompt_gen_stats *stats);

// Pretraining data, which like web captions says less than the picture shows: a
// random full scene graph (1-4 entities with every attribute set, counts 1-3, some
// relations, sometimes a background) ...
void scene_graph_random(rng *r, scene_graph *full);
// ... and an incomplete but true caption of it: one or two of its entities, attributes
// often dropped, counts above two rarely stated (bare plurals instead), relations and
// background rarely. *stated gets the graph the caption states (what the parser
// reads back from it). -1 with a message if it does not fit in n.
int prompt_caption(const scene_graph *full, rng *r, char *out, size_t n, scene_graph *stated);

// Item i of a pretraining set: its full graph (drawn), caption and stated graph, all
// from (seed, i) alone, so any item can be remade without the others.
int prompt_pretrain_item(uint64_t seed, long i, scene_graph *full, char *caption, size_t n,
                         scene_graph *stated);

// Runs the external generator once: examples on its stdin, one per line; its
// non-empty stdout lines (trimmed) returned in *lines (malloc'd, free each and the
// array). -1 with a message naming the command when it cannot start, exits non-zero,
// is killed, or runs past timeout_s (then it is killed).
int prompt_command_run(const char *command, const char *const *examples, int n_examples,
                       int timeout_s, char ***lines, int *n_lines);

#ifdef __cplusplus
}
#endif
#endif
