// The prompt parser: a lexer into word classes, then one left-to-right pass that
// keeps a pending noun phrase, the last entity mentioned and a pending relation.
#include "data/prompt_parse.h"

#include <stdio.h>
#include <string.h>

const char *const size_words[SIZE_STYLES][SIZE_COUNT] = {
    {"small", "large"}, {"tiny", "big"}, {"little", "huge"}};
const char *const fill_words[FILL_STYLES][FILL_COUNT] = {{"filled", "outlined"},
                                                         {"solid", "hollow"}};
const char *const relation_words[REL_STYLES][REL_COUNT] = {
    {"left of", "right of", "above", "below"},
    {"to the left of", "to the right of", "over", "under"},
    {"on the left of", "on the right of", "above", "beneath"}};
const char *const count_words[5] = {"", "one", "two", "three", "four"};

static const char *const filler_words[] = {
    "there", "with", "of", "in", "on", "against", "which", "that", "shows", "showing",
    "contains", "containing", "has", "some", "also", "plus", "while", "sits", "placed",
    "located", "this"};
// Nouns for the picture itself: they take their own article ("a picture of").
static const char *const filler_nouns[] = {"image", "picture", "photo", "drawing", "scene"};

typedef enum word_class {
    W_UNKNOWN, W_FILLER, W_FILLER_NOUN, W_PUNCT_CLAUSE, W_PUNCT_SENTENCE, W_AND,
    W_ARTICLE, W_DEFINITE, W_NUMBER, W_SIZE, W_FILL, W_COLOR, W_SHAPE, W_RELATION,
    W_VERB, W_BG_NOUN,
} word_class;

typedef struct lexeme {
    char text[24];
    int cls, value, style;
} lexeme;

static int word_eq(const char *w, const char *s) { return !strcmp(w, s); }

// Classifies one lower-cased word (relations are matched on the sequence later).
static void classify(lexeme *x) {
    const char *w = x->text;
    x->cls = W_UNKNOWN;
    x->value = -1;
    x->style = 0;
    if (word_eq(w, ",")) { x->cls = W_PUNCT_CLAUSE; return; }
    if (strchr(".;!?:", w[0]) && !w[1]) { x->cls = W_PUNCT_SENTENCE; return; }
    if (word_eq(w, "and")) { x->cls = W_AND; return; }
    if (word_eq(w, "a") || word_eq(w, "an")) { x->cls = W_ARTICLE; return; }
    if (word_eq(w, "the")) { x->cls = W_DEFINITE; return; }
    if (word_eq(w, "is") || word_eq(w, "are")) { x->cls = W_VERB; return; }
    if (word_eq(w, "background")) { x->cls = W_BG_NOUN; return; }
    for (int k = 1; k <= 4; k++) {
        char digit[2] = {(char)('0' + k), 0};
        if (word_eq(w, count_words[k]) || word_eq(w, digit)) {
            x->cls = W_NUMBER; x->value = k; x->style = w[0] == digit[0];
            return;
        }
    }
    for (int s = 0; s < SIZE_STYLES; s++)
        for (int v = 0; v < SIZE_COUNT; v++)
            if (word_eq(w, size_words[s][v])) { x->cls = W_SIZE; x->value = v; x->style = s; return; }
    for (int s = 0; s < FILL_STYLES; s++)
        for (int v = 0; v < FILL_COUNT; v++)
            if (word_eq(w, fill_words[s][v])) { x->cls = W_FILL; x->value = v; x->style = s; return; }
    for (int c = 0; c < COLOR_COUNT; c++)
        if (word_eq(w, color_names[c])) { x->cls = W_COLOR; x->value = c; return; }
    if (word_eq(w, "grey")) { x->cls = W_COLOR; x->value = COLOR_GRAY; x->style = 1; return; }
    if (word_eq(w, "dark")) { x->cls = W_COLOR; x->value = COLOR_BLACK; x->style = 1; return; }
    for (int s = 0; s < SHAPE_COUNT; s++) {
        if (word_eq(w, shape_names[s])) { x->cls = W_SHAPE; x->value = s; return; }
        if (word_eq(w, shape_plurals[s])) { x->cls = W_SHAPE; x->value = s; x->style = 1; return; }
    }
    for (size_t i = 0; i < sizeof filler_words / sizeof *filler_words; i++)
        if (word_eq(w, filler_words[i])) { x->cls = W_FILLER; return; }
    for (size_t i = 0; i < sizeof filler_nouns / sizeof *filler_nouns; i++)
        if (word_eq(w, filler_nouns[i])) { x->cls = W_FILLER_NOUN; return; }
}

// Splits into lower-cased words and punctuation marks; other characters separate.
// Returns the number of lexemes; *dropped counts words beyond max.
static int lex_words(const char *text, lexeme *out, int max, int *dropped) {
    int n = 0;
    *dropped = 0;
    for (const char *s = text; *s;) {
        unsigned char c = (unsigned char)*s;
        int word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '\'' || c == '-' || c >= 0x80;
        if (!word && !strchr(",.;!?:", c)) { s++; continue; }
        char buf[24];
        int len = 0;
        if (word) {
            for (; *s; s++) {
                c = (unsigned char)*s;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '\'' || c == '-' || c >= 0x80))
                    break;
                if (len < (int)sizeof buf - 1) buf[len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
        } else {
            buf[len++] = (char)c;
            s++;
        }
        buf[len] = 0;
        if (n == max) { (*dropped)++; continue; }
        memcpy(out[n].text, buf, (size_t)len + 1);
        classify(&out[n++]);
    }
    return n;
}

// Joins relation phrases ("to the left of") into one lexeme, longest first.
static int join_relations(lexeme *x, int n) {
    int m = 0;
    for (int i = 0; i < n;) {
        int best_len = 0, best_kind = -1, best_style = 0;
        for (int s = 0; s < REL_STYLES; s++)
            for (int k = 0; k < REL_COUNT; k++) {
                char phrase[32];
                snprintf(phrase, sizeof phrase, "%s", relation_words[s][k]);
                int len = 0, ok = 1;
                for (char *w = strtok(phrase, " "); w; w = strtok(NULL, " "), len++)
                    if (i + len >= n || strcmp(x[i + len].text, w)) { ok = 0; break; }
                if (ok && len > best_len) { best_len = len; best_kind = k; best_style = s; }
            }
        if (best_len) {
            lexeme r = {{0}, W_RELATION, best_kind, best_style};
            snprintf(r.text, sizeof r.text, "%s", relation_words[best_style][best_kind]);
            x[m++] = r;
            i += best_len;
        } else {
            x[m++] = x[i++];
        }
    }
    return m;
}

// The noun phrase being read: determiner, count and adjectives with their tokens.
typedef struct pending_np {
    int active;
    int article, definite, count;  // count 0 = not stated
    int attr[3];                   // size, fill, colour (colour may be a background colour)
    int tok[8], n_tok;             // tokens of the phrase so far
    int attr_tok[3];
} pending_np;

typedef struct parser {
    scene_graph *g;
    prompt_token *t;
    int n;
    pending_np np;
    int last;                 // last entity mentioned in this sentence, -1 if none
    int after_verb;           // a verb was read and no noun since: bare adjectives are predicates
    int rel_kind, rel_tok, rel_subject;  // pending relation (rel_kind -1 if none)
    int verb_wants_next;      // token of a "there is" verb whose subject comes next, or -1
    int mention[MAX_ENTITIES];  // sequence number of each entity's latest mention
    int seq;
} parser;

static void np_reset(pending_np *np) {
    memset(np, 0, sizeof *np);
    np->attr[0] = np->attr[1] = np->attr[2] = ATTR_UNSET;
}

static void np_add_tok(parser *p, int i) {
    p->np.active = 1;
    if (p->np.n_tok < 8) p->np.tok[p->np.n_tok++] = i;
    else p->t[i].role = TOKEN_UNPARSED;
}

static void unparse_np(parser *p) {
    for (int k = 0; k < p->np.n_tok; k++) p->t[p->np.tok[k]].role = TOKEN_UNPARSED;
    np_reset(&p->np);
}

static int *entity_attr(entity *e, int k) { return k == 0 ? &e->size : k == 1 ? &e->fill : &e->color; }

// A noun phrase ended without a noun: after is/are and without a determiner its
// adjectives describe the last entity; otherwise nothing can be made of it.
static void np_flush(parser *p) {
    if (!p->np.active) return;
    pending_np *np = &p->np;
    if (p->after_verb && p->last >= 0 && !np->article && !np->definite && !np->count) {
        entity *e = &p->g->entities[p->last];
        for (int k = 0; k < 3; k++) {
            if (np->attr[k] == ATTR_UNSET) continue;
            prompt_token *tk = &p->t[np->attr_tok[k]];
            int *a = entity_attr(e, k);
            if ((k == 2 && np->attr[k] >= COLOR_OBJECT_COUNT) || (*a != ATTR_UNSET && *a != np->attr[k])) {
                tk->role = TOKEN_UNPARSED;
                continue;
            }
            *a = np->attr[k];
            tk->entity = p->last;
            tk->predicate = 1;
        }
        np_reset(np);
        return;
    }
    unparse_np(p);
}

static int fits(const entity *e, const pending_np *np, int shape, int plural, int exact) {
    if (e->shape != shape) return 0;
    for (int k = 0; k < 3; k++) {
        int v = *entity_attr((entity *)e, k);
        if (np->attr[k] != ATTR_UNSET && np->attr[k] != v) return 0;
        if (exact && (np->attr[k] == ATTR_UNSET) != (v == ATTR_UNSET)) return 0;
    }
    if (np->count) {
        if (!e->count_stated || e->count != np->count) return 0;
    } else {
        if (plural != (e->count > 1)) return 0;
        if (exact && e->count_stated) return 0;
    }
    return 1;
}

static int resolve(parser *p, int shape, int plural) {
    int best = -1, best_exact = 0;
    for (int e = 0; e < p->g->n_entities; e++) {
        if (!fits(&p->g->entities[e], &p->np, shape, plural, 0)) continue;
        int exact = fits(&p->g->entities[e], &p->np, shape, plural, 1);
        if (best < 0 || exact > best_exact ||
            (exact == best_exact && p->mention[e] > p->mention[best])) {
            best = e;
            best_exact = exact;
        }
    }
    return best;
}

static void on_shape(parser *p, int i) {
    pending_np *np = &p->np;
    int shape = p->t[i].value, plural = p->t[i].style;
    np_add_tok(p, i);
    if (np->attr[2] >= COLOR_OBJECT_COUNT) {  // "a black circle": not an object colour
        p->t[np->attr_tok[2]].role = TOKEN_UNPARSED;
        np->attr[2] = ATTR_UNSET;
    }
    int e = np->definite ? resolve(p, shape, plural) : -1;
    if (e < 0) {
        if (p->g->n_entities == MAX_ENTITIES) { unparse_np(p); return; }
        e = p->g->n_entities++;
        entity *x = &p->g->entities[e];
        x->shape = shape;
        x->size = np->attr[0];
        x->fill = np->attr[1];
        x->color = np->attr[2];
        x->count = np->count ? np->count : plural ? 2 : 1;
        x->count_stated = np->count != 0;
    }
    for (int k = 0; k < np->n_tok; k++) p->t[np->tok[k]].entity = e;
    if (p->verb_wants_next >= 0) p->t[p->verb_wants_next].entity = e;
    p->verb_wants_next = -1;
    if (p->rel_kind >= 0) {
        scene_graph *g = p->g;
        int dup = 0;
        for (int r = 0; r < g->n_relations; r++)
            dup |= g->relations[r].a == p->rel_subject && g->relations[r].b == e &&
                   g->relations[r].kind == p->rel_kind;
        if (p->rel_subject == e || (!dup && g->n_relations == MAX_RELATIONS)) {
            p->t[p->rel_tok].role = TOKEN_UNPARSED;
        } else if (!dup) {
            g->relations[g->n_relations++] = (relation){p->rel_subject, e, p->rel_kind};
        }
        p->rel_kind = -1;
    }
    p->last = e;
    p->mention[e] = ++p->seq;
    p->after_verb = 0;
    np_reset(np);
}

static void on_background(parser *p, int i) {
    pending_np *np = &p->np;
    if (np->attr[2] == ATTR_UNSET || np->attr[0] != ATTR_UNSET || np->attr[1] != ATTR_UNSET ||
        np->count || (p->g->background != ATTR_UNSET && p->g->background != np->attr[2])) {
        np_add_tok(p, i);
        unparse_np(p);
        return;
    }
    p->g->background = np->attr[2];
    for (int k = 0; k < np->n_tok; k++) {
        prompt_token *tk = &p->t[np->tok[k]];
        tk->role = tk->role == TOKEN_COLOR ? TOKEN_BACKGROUND : TOKEN_FILLER;
    }
    p->t[i].role = TOKEN_BG_NOUN;
    np_reset(np);
}

static void end_sentence(parser *p) {
    np_flush(p);
    if (p->rel_kind >= 0) p->t[p->rel_tok].role = TOKEN_UNPARSED;
    if (p->verb_wants_next >= 0) p->verb_wants_next = -1;
    p->rel_kind = -1;
    p->last = -1;
    p->after_verb = 0;
}

int prompt_parse(const char *text, scene_graph *g, parse_info *info) {
    static __thread parse_info scratch;  // the caller may not want the tokens
    parse_info *pi = info ? info : &scratch;
    lexeme x[PROMPT_MAX_TOKENS];
    int dropped, n = lex_words(text, x, PROMPT_MAX_TOKENS, &dropped);
    n = join_relations(x, n);

    memset(g, 0, sizeof *g);
    g->background = ATTR_UNSET;
    memset(pi, 0, sizeof *pi);
    pi->n_tokens = n;
    parser p = {.g = g, .t = pi->tokens, .n = n, .last = -1, .rel_kind = -1, .verb_wants_next = -1};
    np_reset(&p.np);

    static const int class_role[] = {
        [W_UNKNOWN] = TOKEN_UNPARSED, [W_FILLER] = TOKEN_FILLER, [W_FILLER_NOUN] = TOKEN_FILLER,
        [W_PUNCT_CLAUSE] = TOKEN_PUNCT, [W_PUNCT_SENTENCE] = TOKEN_PUNCT, [W_AND] = TOKEN_AND,
        [W_ARTICLE] = TOKEN_ARTICLE, [W_DEFINITE] = TOKEN_DEFINITE, [W_NUMBER] = TOKEN_COUNT,
        [W_SIZE] = TOKEN_SIZE, [W_FILL] = TOKEN_FILL, [W_COLOR] = TOKEN_COLOR,
        [W_SHAPE] = TOKEN_SHAPE, [W_RELATION] = TOKEN_RELATION, [W_VERB] = TOKEN_VERB,
        [W_BG_NOUN] = TOKEN_BG_NOUN};
    for (int i = 0; i < n; i++) {
        prompt_token *t = &p.t[i];
        memcpy(t->text, x[i].text, sizeof t->text);
        t->role = class_role[x[i].cls];
        t->entity = -1;
        t->value = x[i].value;
        t->style = x[i].style;
    }

    for (int i = 0; i < n; i++) {
        pending_np *np = &p.np;
        switch (x[i].cls) {
        case W_UNKNOWN: break;  // already TOKEN_UNPARSED; the phrase goes on around it
        case W_FILLER: break;
        case W_FILLER_NOUN:  // "a picture of": its article is a filler, adjectives are lost
            for (int k = 0; k < np->n_tok; k++)
                p.t[np->tok[k]].role = p.t[np->tok[k]].role == TOKEN_ARTICLE ||
                                               p.t[np->tok[k]].role == TOKEN_DEFINITE
                                           ? TOKEN_FILLER
                                           : TOKEN_UNPARSED;
            np_reset(np);
            break;
        case W_PUNCT_CLAUSE:
        case W_AND: np_flush(&p); break;
        case W_PUNCT_SENTENCE: end_sentence(&p); break;
        case W_ARTICLE:
        case W_DEFINITE:
            if (np->active) np_flush(&p);
            np_add_tok(&p, i);
            np->article = x[i].cls == W_ARTICLE;
            np->definite = x[i].cls == W_DEFINITE;
            break;
        case W_NUMBER:
            // "the two circles" keeps its article; any other run ends the phrase
            if (np->active && !(np->definite && !np->count && np->n_tok == 1)) np_flush(&p);
            np_add_tok(&p, i);
            np->count = x[i].value;
            break;
        case W_SIZE:
        case W_FILL:
        case W_COLOR: {
            int k = x[i].cls == W_SIZE ? 0 : x[i].cls == W_FILL ? 1 : 2;
            if (np->attr[k] != ATTR_UNSET) { p.t[i].role = TOKEN_UNPARSED; break; }
            np_add_tok(&p, i);
            np->attr[k] = x[i].value;
            np->attr_tok[k] = i;
            break;
        }
        case W_SHAPE: on_shape(&p, i); break;
        case W_BG_NOUN: on_background(&p, i); break;
        case W_RELATION:
            np_flush(&p);
            if (p.rel_kind >= 0) p.t[p.rel_tok].role = TOKEN_UNPARSED;
            p.rel_kind = -1;
            if (p.last < 0) { p.t[i].role = TOKEN_UNPARSED; break; }
            p.rel_kind = x[i].value;
            p.rel_tok = i;
            p.rel_subject = p.last;
            p.t[i].entity = p.last;
            p.after_verb = 0;
            break;
        case W_VERB:
            np_flush(&p);
            p.after_verb = 1;
            if (i > 0 && !strcmp(x[i - 1].text, "there")) p.verb_wants_next = i;
            else if (p.last >= 0) p.t[i].entity = p.last;
            else p.verb_wants_next = i;
            break;
        }
    }
    end_sentence(&p);

    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (p.t[i].role != TOKEN_UNPARSED) continue;
        // a relation phrase counts as its words
        for (const char *c = p.t[i].text; *c; c++) pi->n_unparsed += *c != ' ' && (c == p.t[i].text || c[-1] == ' ');
        int w = snprintf(pi->unparsed + used, sizeof pi->unparsed - used, "%s%s", used ? " " : "", p.t[i].text);
        if (w > 0 && used + (size_t)w < sizeof pi->unparsed) used += (size_t)w;
        else used = sizeof pi->unparsed - 1;
    }
    pi->n_unparsed += dropped;
    return pi->n_unparsed;
}
