// The shapes world's prompt language, read back into a scene_graph: the part of DSG
// that an LLM does for real prompts (decomposing the text into entities, attributes
// and relations), done exactly here because the language is closed.
//
// The language, informally:
//   noun phrase  [a|an|the|one..four|1..4] {size} {fill} {colour} shape[s]
//                size: small tiny little | large big huge; fill: filled solid |
//                outlined hollow; colour: red green blue yellow purple white.
//                "a"/"an" means at least one (count 1, not stated); a number states
//                the count exactly (1-4); a plural with no number means at least two.
//   relation     <entity> [is|are] (left of | to the left of | on the left of |
//                right of ... | above | over | below | under | beneath) <entity>:
//                its subject is the last entity mentioned before it, its object the
//                next noun phrase ("a red circle left of a blue square").
//   reference    "the" + a description names an entity already introduced when one
//                fits: all attributes the description states equal the entity's
//                (a count stated in it must be the entity's stated count; plural
//                must match); an entity stating exactly those attributes wins, then
//                the most recently mentioned. If none fits, the phrase introduces a
//                new entity.
//   predicate    "<entity> is|are red and outlined": attributes after the verb with
//                no noun belong to the last entity mentioned.
//   background   [on|against|with] a <colour> background (any colour, also black,
//                gray/grey, dark = black).
//   fillers      there, with, and, of, in, on, against, which, that, shows, showing,
//                contains, containing, has, some, also, plus, while, sits, placed,
//                located, this, "image", "picture", "photo", "drawing", "scene".
//   separators   "," "and" (clauses), "." ";" "!" "?" ":" (sentences; a relation does
//                not reach across them).
// Everything else ("next to", "five", "orange", a second colour on one noun) is
// unparsed: the rest of the prompt still parses, and the unparsed words are reported.
#ifndef SELMA_DATA_PROMPT_PARSE_H
#define SELMA_DATA_PROMPT_PARSE_H

#include <stddef.h>

#include "data/shapes.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PROMPT_MAX_TOKENS 128
#define PROMPT_MAX_LEN 1024  // longest prompt the generators write, bytes incl. NUL

// Synonyms, one row per style, one column per value; row 0 is the canonical word.
// Generators keep a prompt's style (the row) when they change its content.
#define SIZE_STYLES 3
#define FILL_STYLES 2
#define REL_STYLES 3
extern const char *const size_words[SIZE_STYLES][SIZE_COUNT];
extern const char *const fill_words[FILL_STYLES][FILL_COUNT];
extern const char *const relation_words[REL_STYLES][REL_COUNT];
extern const char *const count_words[5];  // "", "one", .., "four"

typedef enum token_role {
    TOKEN_FILLER,      // a filler word, or an article of a filler noun ("a picture of")
    TOKEN_PUNCT,       // , . ; ! ? :
    TOKEN_AND,         // "and"
    TOKEN_ARTICLE,     // a / an of an entity (count 1, not stated)
    TOKEN_DEFINITE,    // the, of an entity
    TOKEN_COUNT,       // one..four / 1..4 of an entity; style 1 = digits
    TOKEN_SIZE,        // value size_kind, style = synonym row
    TOKEN_FILL,        // value fill_kind, style = synonym row
    TOKEN_COLOR,       // value color
    TOKEN_SHAPE,       // value shape_kind, style 1 = plural
    TOKEN_RELATION,    // value relation_kind, style = synonym row; a phrase
    TOKEN_VERB,        // is / are; entity = its subject (for agreement)
    TOKEN_BACKGROUND,  // the background's colour word; value color
    TOKEN_BG_NOUN,     // "background"
    TOKEN_UNPARSED,
} token_role;

typedef struct prompt_token {
    char text[24];   // lower-cased as written ("to the left of" for a phrase)
    int role;        // token_role
    int entity;      // entity the word belongs to, -1 if none
    int value;       // count, size, fill, colour, shape or relation kind; else -1
    int style;       // see token_role
    int predicate;   // 1 for an attribute stated after is/are
} prompt_token;

typedef struct parse_info {
    int n_unparsed;
    char unparsed[256];  // the unparsed words, space separated (cut to fit)
    int n_tokens;
    prompt_token tokens[PROMPT_MAX_TOKENS];
} parse_info;

// Parses text into g. Never fails: returns the number of unparsed words (0 when the
// whole prompt was understood). info, when non-NULL, gets the unparsed words and the
// role of every token (the generators' templates are made from it). Words past
// PROMPT_MAX_TOKENS count as unparsed.
int prompt_parse(const char *text, scene_graph *g, parse_info *info);

// Writes g in the canonical phrasing: introductions first ("two small red circles, a
// blue square and a triangle on a white background."), then one sentence per relation
// with references that state every attribute ("The red circles are left of the blue
// square."). Returns the length, or -1 with a message when it does not fit in n or
// when two entities the relations need cannot be told apart by their descriptions.
int prompt_write(const scene_graph *g, char *out, size_t n);

// Equality of what two graphs state, up to the order of entities.
int scene_graph_equal(const scene_graph *a, const scene_graph *b);

#ifdef __cplusplus
}
#endif
#endif
