// Writing a scene graph back to text (the canonical phrasing) and comparing graphs.
#include <stdio.h>
#include <string.h>

#include "data/prompt_parse.h"
#include "runtime/error.h"

typedef struct strbuf {
    char *s;
    size_t n, len;
    int overflow;
} strbuf;

static void sb_put(strbuf *b, const char *w) {
    int k = snprintf(b->s + b->len, b->n - b->len, "%s", w);
    if (k < 0 || b->len + (size_t)k >= b->n) { b->overflow = 1; return; }
    b->len += (size_t)k;
}

// A noun phrase for e: introduction ("two small red circles", "an outlined square",
// "circles") or a reference stating everything the entity states ("the red circles").
static void sb_entity(strbuf *b, const entity *e, int definite) {
    char words[6][16];
    int n = 0;
    if (definite) snprintf(words[n++], 16, "the");
    if (e->count_stated) snprintf(words[n++], 16, "%s", count_words[e->count]);
    else if (!definite && e->count == 1) snprintf(words[n++], 16, "a");
    if (e->size != ATTR_UNSET) snprintf(words[n++], 16, "%s", size_names[e->size]);
    if (e->fill != ATTR_UNSET) snprintf(words[n++], 16, "%s", fill_names[e->fill]);
    if (e->color != ATTR_UNSET) snprintf(words[n++], 16, "%s", color_names[e->color]);
    snprintf(words[n++], 16, "%s", e->count > 1 ? shape_plurals[e->shape] : shape_names[e->shape]);
    for (int i = 0; i < n; i++) {
        if (i) sb_put(b, " ");
        if (!strcmp(words[i], "a") && strchr("aeiou", words[i + 1][0])) sb_put(b, "an");
        else sb_put(b, words[i]);
    }
}

static int same_description(const entity *x, const entity *y) {
    return x->shape == y->shape && x->color == y->color && x->size == y->size &&
           x->fill == y->fill && x->count_stated == y->count_stated &&
           (x->count_stated ? x->count == y->count : (x->count > 1) == (y->count > 1));
}

int prompt_write(const scene_graph *g, char *out, size_t n) {
    strbuf b = {out, n, 0, 0};
    if (n == 0) return err_set("prompt_write: empty buffer");
    out[0] = 0;
    for (int r = 0; r < g->n_relations; r++)
        for (int side = 0; side < 2; side++) {
            int e = side ? g->relations[r].b : g->relations[r].a;
            for (int j = 0; j < g->n_entities; j++)
                if (j != e && same_description(&g->entities[j], &g->entities[e]))
                    return err_set("prompt_write: entities %d and %d have the same description; "
                                   "a relation cannot refer to one of them", e, j);
        }
    size_t start = b.len;
    for (int e = 0; e < g->n_entities; e++) {
        if (e) sb_put(&b, e == g->n_entities - 1 ? " and " : ", ");
        sb_entity(&b, &g->entities[e], 0);
    }
    if (g->background != ATTR_UNSET) {
        if (g->n_entities) sb_put(&b, " on ");
        sb_put(&b, strchr("aeiou", color_names[g->background][0]) ? "an " : "a ");
        sb_put(&b, color_names[g->background]);
        sb_put(&b, " background");
    }
    if (b.len > start) sb_put(&b, ".");
    for (int r = 0; r < g->n_relations; r++) {
        const relation *rel = &g->relations[r];
        if (b.len) sb_put(&b, " ");
        size_t s0 = b.len;
        sb_entity(&b, &g->entities[rel->a], 1);
        if (!b.overflow) out[s0] = (char)(out[s0] - 32);  // "The"
        sb_put(&b, g->entities[rel->a].count > 1 ? " are " : " is ");
        sb_put(&b, relation_words[0][rel->kind]);
        sb_put(&b, " ");
        sb_entity(&b, &g->entities[rel->b], 1);
        sb_put(&b, ".");
    }
    if (b.overflow) return err_set("prompt_write: the prompt does not fit in %zu bytes", n);
    if (b.len > start) out[start] = (char)(out[start] >= 'a' && out[start] <= 'z' ? out[start] - 32 : out[start]);
    return (int)b.len;
}

// ---- equality up to entity order ----

static int entity_equal(const entity *x, const entity *y) {
    return x->shape == y->shape && x->color == y->color && x->size == y->size &&
           x->fill == y->fill && x->count == y->count && x->count_stated == y->count_stated;
}

static int relations_map(const scene_graph *a, const scene_graph *b, const int *map) {
    for (int r = 0; r < a->n_relations; r++) {
        const relation *x = &a->relations[r];
        int found = 0;
        for (int s = 0; s < b->n_relations && !found; s++)
            found = b->relations[s].a == map[x->a] && b->relations[s].b == map[x->b] &&
                    b->relations[s].kind == x->kind;
        if (!found) return 0;
    }
    return 1;
}

static int match_from(const scene_graph *a, const scene_graph *b, int i, int *map, int used) {
    if (i == a->n_entities) return relations_map(a, b, map);
    for (int j = 0; j < b->n_entities; j++) {
        if ((used >> j & 1) || !entity_equal(&a->entities[i], &b->entities[j])) continue;
        map[i] = j;
        if (match_from(a, b, i + 1, map, used | 1 << j)) return 1;
    }
    return 0;
}

static int relations_distinct(const scene_graph *g) {
    for (int r = 0; r < g->n_relations; r++)
        for (int s = 0; s < r; s++)
            if (!memcmp(&g->relations[r], &g->relations[s], sizeof(relation))) return 0;
    return 1;
}

int scene_graph_equal(const scene_graph *a, const scene_graph *b) {
    if (a->background != b->background || a->n_entities != b->n_entities ||
        a->n_relations != b->n_relations)
        return 0;
    // with duplicates, equal counts would not make the mapped sets equal
    if (!relations_distinct(a) || !relations_distinct(b)) return 0;
    int map[MAX_ENTITIES];
    return match_from(a, b, 0, map, 0);
}
