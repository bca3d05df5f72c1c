// Prompt templates: a parsed prompt whose content words (shapes, colours, sizes,
// fills, counts, relations, background) become slots linked to entities, keeping
// everything else (fillers, word order, synonyms, punctuation, references). The
// built-in prompt writer (prompt_gen.c) mutates templates and fills them with new
// content. Internal to data/.
#ifndef SELMA_DATA_PROMPT_TEMPLATE_H
#define SELMA_DATA_PROMPT_TEMPLATE_H

#include <stddef.h>

#include "data/prompt_parse.h"
#include "runtime/rng.h"

typedef struct prompt_template {
    int n;
    prompt_token t[PROMPT_MAX_TOKENS];
} prompt_template;

// -1 if the text has unparsed words (a template must be understood completely).
int template_from_text(const char *text, prompt_template *t);

// The graph structure a template states: entities in order of first mention with
// the attributes they state (values from the template's own words), counts (stated,
// bare plural = 2, else 1), one relation per relation phrase (subject: the entity of
// the nearest noun before it in its sentence; object: the next noun), background.
// rel_of_token[i] = relation index of token i (-1 if none). -1 if the structure is
// broken (a relation with no subject or object in its sentence, too many entities or
// relations).
int template_skeleton(const prompt_template *t, scene_graph *g, int *rel_of_token);

// Writes the template with g's content (g has the skeleton's structure). Articles
// agree with the next word, nouns and is/are with counts; sentences are capitalised.
// -1 with a message if the text does not fit in n.
int template_render(const prompt_template *t, const scene_graph *g, const int *rel_of_token,
                    char *out, size_t n);

// Applies random edits in the manner of an LLM imitating examples: synonyms and the
// opening words borrowed from `other`, an attribute added or dropped, a clause or
// sentence of `other` appended (allow_grow), a clause dropped (allow_shrink).
void template_mutate(prompt_template *t, const prompt_template *other, int allow_grow,
                     int allow_shrink, rng *r);

#endif
