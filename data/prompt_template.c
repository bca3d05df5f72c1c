#include "data/prompt_template.h"

#include <stdio.h>
#include <string.h>

#include "runtime/error.h"

static int is_np_role(int role) {
    return role == TOKEN_ARTICLE || role == TOKEN_DEFINITE || role == TOKEN_COUNT ||
           role == TOKEN_SIZE || role == TOKEN_FILL || role == TOKEN_COLOR || role == TOKEN_SHAPE;
}
static int is_attr_role(int role) { return role == TOKEN_SIZE || role == TOKEN_FILL || role == TOKEN_COLOR; }
static int is_sentence_end(const prompt_token *x) {
    return x->role == TOKEN_PUNCT && x->text[0] != ',';
}
static int is_clause_sep(const prompt_token *x) {
    return x->role == TOKEN_AND || (x->role == TOKEN_PUNCT && x->text[0] == ',');
}

static prompt_token word_token(int role, const char *text) {
    prompt_token x = {{0}, role, -1, -1, 0, 0};
    snprintf(x.text, sizeof x.text, "%s", text);
    return x;
}

static int tok_insert(prompt_template *t, int pos, prompt_token x) {
    if (t->n == PROMPT_MAX_TOKENS) return -1;
    memmove(&t->t[pos + 1], &t->t[pos], sizeof(prompt_token) * (size_t)(t->n - pos));
    t->t[pos] = x;
    t->n++;
    return 0;
}

static void tok_delete(prompt_template *t, int pos) {
    memmove(&t->t[pos], &t->t[pos + 1], sizeof(prompt_token) * (size_t)(t->n - pos - 1));
    t->n--;
}

// Entity ids in order of first mention in a noun phrase (what the parser produces);
// links of verbs and predicates to entities that no longer occur become -1.
static int renumber(prompt_template *t) {
    int map[64], n = 0;
    for (int i = 0; i < 64; i++) map[i] = -1;
    for (int i = 0; i < t->n; i++) {
        int e = t->t[i].entity;
        if (e >= 0 && e < 64 && is_np_role(t->t[i].role) && !t->t[i].predicate && map[e] < 0) map[e] = n++;
    }
    for (int i = 0; i < t->n; i++) {
        int e = t->t[i].entity;
        if (e >= 0) t->t[i].entity = e < 64 ? map[e] : -1;
    }
    return n;
}

static int n_entities(const prompt_template *t) {
    int n = 0;
    for (int i = 0; i < t->n; i++)
        if (t->t[i].entity >= n && is_np_role(t->t[i].role)) n = t->t[i].entity + 1;
    return n;
}

int template_from_text(const char *text, prompt_template *t) {
    static __thread parse_info info;
    scene_graph g;
    if (prompt_parse(text, &g, &info) > 0) return err_set("'%s': unparsed words '%s'", text, info.unparsed);
    t->n = info.n_tokens;
    memcpy(t->t, info.tokens, sizeof(prompt_token) * (size_t)t->n);
    return 0;
}

int template_skeleton(const prompt_template *t, scene_graph *g, int *rel_of_token) {
    int first_plural[MAX_ENTITIES], has_shape[MAX_ENTITIES] = {0};
    memset(g, 0, sizeof *g);
    g->background = ATTR_UNSET;
    g->n_entities = n_entities(t);
    if (g->n_entities > MAX_ENTITIES) return -1;
    for (int e = 0; e < g->n_entities; e++) {
        entity *x = &g->entities[e];
        x->color = x->size = x->fill = ATTR_UNSET;
        x->count = 1;
    }
    for (int i = 0; i < t->n; i++) {
        const prompt_token *x = &t->t[i];
        rel_of_token[i] = -1;
        if (x->role == TOKEN_BACKGROUND) g->background = x->value;
        if (x->entity < 0 || x->entity >= g->n_entities) continue;
        entity *e = &g->entities[x->entity];
        switch (x->role) {
        case TOKEN_SHAPE:
            if (!has_shape[x->entity]) first_plural[x->entity] = x->style;
            has_shape[x->entity] = 1;
            e->shape = x->value;
            break;
        case TOKEN_COUNT: e->count_stated = 1; e->count = x->value; break;
        case TOKEN_SIZE: e->size = x->value; break;
        case TOKEN_FILL: e->fill = x->value; break;
        case TOKEN_COLOR: e->color = x->value; break;
        default: break;
        }
    }
    for (int e = 0; e < g->n_entities; e++) {
        if (!has_shape[e]) return -1;
        if (!g->entities[e].count_stated) g->entities[e].count = first_plural[e] ? 2 : 1;
    }
    for (int i = 0; i < t->n; i++) {
        if (t->t[i].role != TOKEN_RELATION) continue;
        int a = -1, b = -1;
        for (int j = i - 1; j >= 0 && a < 0 && !is_sentence_end(&t->t[j]); j--)
            if (t->t[j].role == TOKEN_SHAPE) a = t->t[j].entity;
        for (int j = i + 1; j < t->n && b < 0 && !is_sentence_end(&t->t[j]); j++) {
            if (t->t[j].role == TOKEN_RELATION) break;
            if (t->t[j].role == TOKEN_SHAPE) b = t->t[j].entity;
        }
        if (a < 0 || b < 0 || a == b || g->n_relations == MAX_RELATIONS) return -1;
        rel_of_token[i] = g->n_relations;
        g->relations[g->n_relations++] = (relation){a, b, t->t[i].value};
    }
    return 0;
}

static const char *render_word(const prompt_token *x, const scene_graph *g, int rel) {
    static const char *const digits[5] = {"", "1", "2", "3", "4"};
    const entity *e = x->entity >= 0 && x->entity < g->n_entities ? &g->entities[x->entity] : NULL;
    switch (x->role) {
    case TOKEN_ARTICLE: return "a";  // a/an fixed once the next word is known
    case TOKEN_DEFINITE: return "the";
    case TOKEN_COUNT: return x->style ? digits[e->count] : count_words[e->count];
    case TOKEN_SIZE: return size_words[x->style % SIZE_STYLES][e->size];
    case TOKEN_FILL: return fill_words[x->style % FILL_STYLES][e->fill];
    case TOKEN_COLOR: return color_names[e->color];
    case TOKEN_SHAPE: return e->count > 1 ? shape_plurals[e->shape] : shape_names[e->shape];
    case TOKEN_RELATION: return relation_words[x->style % REL_STYLES][g->relations[rel].kind];
    case TOKEN_VERB: return e ? (e->count > 1 ? "are" : "is") : x->text;
    case TOKEN_BACKGROUND:
        if (x->style == 1 && g->background == COLOR_GRAY) return "grey";
        if (x->style == 1 && g->background == COLOR_BLACK) return "dark";
        return color_names[g->background];
    default: return x->text;
    }
}

int template_render(const prompt_template *t, const scene_graph *g, const int *rel_of_token,
                    char *out, size_t n) {
    const char *w[PROMPT_MAX_TOKENS];
    for (int i = 0; i < t->n; i++) w[i] = render_word(&t->t[i], g, rel_of_token[i]);
    for (int i = 0; i + 1 < t->n; i++)
        if (!strcmp(w[i], "a") || !strcmp(w[i], "an")) w[i] = strchr("aeiou", w[i + 1][0]) ? "an" : "a";
    size_t len = 0;
    int cap = 1;  // capitalise the next word
    for (int i = 0; i < t->n; i++) {
        int punct = t->t[i].role == TOKEN_PUNCT;
        int k = snprintf(out + len, n - len, "%s%s", len && !punct ? " " : "", w[i]);
        if (k < 0 || len + (size_t)k >= n) return err_set("template_render: prompt longer than %zu bytes", n);
        if (cap && !punct) {
            char *c = out + len + (len ? 1 : 0);
            if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 32);
            cap = 0;
        }
        len += (size_t)k;
        if (is_sentence_end(&t->t[i])) cap = 1;
    }
    return 0;
}

// ---- mutation ----

static int role_style(const prompt_template *t, int role) {
    for (int i = 0; i < t->n; i++)
        if (t->t[i].role == role) return t->t[i].style;
    return -1;
}

static void set_style(prompt_template *t, int role, int style) {
    for (int i = 0; i < t->n; i++)
        if (t->t[i].role == role) t->t[i].style = style;
}

static int entity_has(const prompt_template *t, int e, int role, int *predicate) {
    int has = 0;
    if (predicate) *predicate = 0;
    for (int i = 0; i < t->n; i++)
        if (t->t[i].entity == e && t->t[i].role == role) {
            has = 1;
            if (predicate && t->t[i].predicate) *predicate = 1;
        }
    return has;
}

static int first_np_token(const prompt_template *t) {
    for (int i = 0; i < t->n; i++)
        if (is_np_role(t->t[i].role)) return i;
    return t->n;
}

// The opening words before the first noun phrase ("There are", "A picture of").
static void borrow_lead(prompt_template *t, const prompt_template *o) {
    int ours = first_np_token(t), theirs = first_np_token(o);
    if (ours == t->n || theirs == o->n || t->n - ours + theirs > PROMPT_MAX_TOKENS) return;
    int e0 = t->t[ours].entity;
    prompt_template x;
    x.n = 0;
    for (int i = 0; i < theirs; i++) {
        x.t[x.n] = o->t[i];
        if (x.t[x.n].entity >= 0) x.t[x.n].entity = e0;  // "there are": agrees with our first entity
        x.n++;
    }
    for (int i = ours; i < t->n; i++) x.t[x.n++] = t->t[i];
    *t = x;
}

static void add_attribute(prompt_template *t, int e, int role) {
    int s = -1;
    for (int i = 0; i < t->n && s < 0; i++)
        if (t->t[i].entity == e && t->t[i].role == TOKEN_SHAPE) s = i;
    if (s < 0) return;
    int start = s;
    while (start > 0 && t->t[start - 1].entity == e && is_np_role(t->t[start - 1].role) &&
           !t->t[start - 1].predicate)
        start--;
    int rank = role == TOKEN_SIZE ? 0 : role == TOKEN_FILL ? 1 : 2, pos = s;
    for (int i = start; i < s; i++) {
        int r = t->t[i].role == TOKEN_SIZE ? 0 : t->t[i].role == TOKEN_FILL ? 1 : t->t[i].role == TOKEN_COLOR ? 2 : -1;
        if (r > rank) { pos = i; break; }
    }
    int style = role_style(t, role);
    prompt_token x = {{0}, role, e, 0, style < 0 ? 0 : style, 0};
    tok_insert(t, pos, x);
}

// Segment boundaries: indices of separators of the level (sentence ends, or also
// clause separators). Segment k runs from bound[k] (its separator; 0 for the first,
// which has none) to bound[k + 1].
static int segments(const prompt_template *t, int clause_level, int *bound) {
    int n = 0;
    bound[n++] = 0;
    for (int i = 1; i < t->n; i++)
        if (is_sentence_end(&t->t[i]) || (clause_level && is_clause_sep(&t->t[i]))) bound[n++] = i;
    bound[n] = t->n;
    // a trailing sentence end is not a segment of its own
    if (n > 1 && bound[n - 1] == t->n - 1) { n--; bound[n] = t->n - 1; }
    return n;
}

static int first_shape_of(const prompt_template *t, int e) {
    for (int i = 0; i < t->n; i++)
        if (t->t[i].entity == e && t->t[i].role == TOKEN_SHAPE) return i;
    return -1;
}

// Appends a clause or sentence of o that introduces an entity; entities it only
// refers to become random entities of t (keeping only the attributes those state).
static void borrow_segment(prompt_template *t, const prompt_template *o, rng *r) {
    int bound[PROMPT_MAX_TOKENS + 1], cand[PROMPT_MAX_TOKENS], nc = 0;
    int clause = rng_uniform(r) < 0.5f, ns = segments(o, clause, bound);
    for (int k = 0; k < ns; k++)
        for (int i = bound[k]; i < bound[k + 1]; i++)
            if (o->t[i].role == TOKEN_SHAPE && first_shape_of(o, o->t[i].entity) == i) { cand[nc++] = k; break; }
    int ours = n_entities(t);
    if (!nc || !ours) return;
    int k = cand[rng_below(r, (uint32_t)nc)];
    prompt_template seg;
    seg.n = 0;
    if (k == 0) seg.t[seg.n++] = clause ? word_token(TOKEN_AND, "and") : word_token(TOKEN_PUNCT, ".");
    int map[64];
    for (int i = 0; i < 64; i++) map[i] = -2;
    int fresh = ours, from = bound[k], our_bg = 0;
    for (int i = 0; i < t->n; i++) our_bg |= t->t[i].role == TOKEN_BACKGROUND;
    if (k == 0) from = first_np_token(o);  // the opening words stay at the opening
    for (int i = from; i < bound[k + 1]; i++) {
        prompt_token x = o->t[i];
        // one background per prompt: "on a red background" is not repeated
        if (our_bg && (x.role == TOKEN_BACKGROUND || x.role == TOKEN_BG_NOUN)) {
            while (seg.n > 0 && seg.t[seg.n - 1].role == TOKEN_FILLER) seg.n--;
            continue;
        }
        int e = x.entity;
        if (e >= 0 && e < 64) {
            if (map[e] == -2) {
                int f = first_shape_of(o, e);
                map[e] = f >= bound[k] && f < bound[k + 1] ? fresh++ : (int)rng_below(r, (uint32_t)ours);
            }
            x.entity = map[e];
            // a reference to one of ours states only what ours states
            if (x.entity < ours && is_np_role(x.role) && !x.predicate &&
                (is_attr_role(x.role) || x.role == TOKEN_COUNT) && !entity_has(t, x.entity, x.role, NULL))
                continue;
        }
        seg.t[seg.n++] = x;
    }
    if (fresh > MAX_ENTITIES || t->n + seg.n + 1 > PROMPT_MAX_TOKENS) return;
    int had_end = is_sentence_end(&t->t[t->n - 1]), end = had_end ? t->n - 1 : t->n;
    prompt_token last = t->t[t->n - 1];
    if (seg.t[0].role == TOKEN_AND) {  // "a, b and c" + "and d" -> "a, b, c and d"
        for (int i = end - 1; i >= 0 && !is_sentence_end(&t->t[i]); i--)
            if (is_clause_sep(&t->t[i])) {
                if (t->t[i].role == TOKEN_AND) t->t[i] = word_token(TOKEN_PUNCT, ",");
                break;
            }
    }
    t->n = end;
    for (int i = 0; i < seg.n; i++) t->t[t->n++] = seg.t[i];
    if (had_end) t->t[t->n++] = last;
    else if (is_sentence_end(&seg.t[0])) t->t[t->n++] = seg.t[0];  // a sentence appended ends as one
}

static void drop_segment(prompt_template *t, rng *r) {
    int bound[PROMPT_MAX_TOKENS + 1], ns = segments(t, rng_uniform(r) < 0.5f, bound);
    if (ns < 2) return;
    int k = 1 + (int)rng_below(r, (uint32_t)(ns - 1)), len = bound[k + 1] - bound[k];
    memmove(&t->t[bound[k]], &t->t[bound[k + 1]], sizeof(prompt_token) * (size_t)(t->n - bound[k + 1]));
    t->n -= len;
}

void template_mutate(prompt_template *t, const prompt_template *other, int allow_grow,
                     int allow_shrink, rng *r) {
    static const int styled[4] = {TOKEN_SIZE, TOKEN_FILL, TOKEN_RELATION, TOKEN_COUNT};
    static const int n_styles[4] = {SIZE_STYLES, FILL_STYLES, REL_STYLES, 2};
    for (int k = 0; k < 4; k++) {
        int theirs = role_style(other, styled[k]);
        if (theirs >= 0 && rng_uniform(r) < 0.3f) set_style(t, styled[k], theirs);
        else if (rng_uniform(r) < 0.05f) set_style(t, styled[k], (int)rng_below(r, (uint32_t)n_styles[k]));
    }
    if (rng_uniform(r) < 0.25f) borrow_lead(t, other);
    int ne = n_entities(t);
    if (ne && rng_uniform(r) < 0.25f) {
        int e = (int)rng_below(r, (uint32_t)ne), role = TOKEN_SIZE + (int)rng_below(r, 3);
        if (!entity_has(t, e, role, NULL)) add_attribute(t, e, role);
    }
    if (ne && rng_uniform(r) < 0.2f) {
        int e = (int)rng_below(r, (uint32_t)ne), role = TOKEN_SIZE + (int)rng_below(r, 3), pred;
        if (entity_has(t, e, role, &pred) && !pred)
            for (int i = t->n - 1; i >= 0; i--)
                if (t->t[i].entity == e && t->t[i].role == role) tok_delete(t, i);
    }
    if (allow_grow && rng_uniform(r) < 0.35f) borrow_segment(t, other, r);
    if (allow_shrink && rng_uniform(r) < 0.2f) drop_segment(t, r);
    renumber(t);
}
