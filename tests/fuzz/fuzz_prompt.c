// libFuzzer target: the prompt parser on arbitrary text, then the canonical writer on
// whatever graph it produced. Neither may read or write out of bounds; the writer
// either fits the text in its buffer or returns -1, and what it writes parses back
// to the same graph with nothing unparsed.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/prompt_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4 * PROMPT_MAX_LEN) return 0;  // longer texts only repeat the token cap
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;  // the parser takes C strings; inner NULs just end the text early
    scene_graph g;
    parse_info info;
    prompt_parse(text, &g, &info);
    if (g.n_entities < 0 || g.n_entities > MAX_ENTITIES || g.n_relations < 0 ||
        g.n_relations > MAX_RELATIONS || info.n_tokens > PROMPT_MAX_TOKENS)
        abort();
    char out[PROMPT_MAX_LEN];
    int n = prompt_write(&g, out, sizeof out);
    if (n >= (int)sizeof out || (n >= 0 && strlen(out) != (size_t)n)) abort();
    // The canonical phrasing reads back whole, to the same graph.
    if (n >= 0) {
        scene_graph g2;
        if (prompt_parse(out, &g2, NULL) != 0 || !scene_graph_equal(&g, &g2)) abort();
    }
    free(text);
    return 0;
}
