#include "data/questions.h"

#include <stdio.h>
#include <string.h>

#include "data/prompt_parse.h"

const char *const question_kind_names[QUESTION_KINDS] = {"exist", "color", "size", "fill",
                                                         "count", "relation", "background"};

static const char *const yes_no[2] = {"yes", "no"};
static const char *const count_choices[4] = {"1", "2", "3", "4"};

static const char *noun(const entity *e) {
    return e->count > 1 ? shape_plurals[e->shape] : shape_names[e->shape];
}

// "the small red circles": every stated attribute, so that texts about entities that
// share a shape can be told apart.
static void describe(const entity *e, char *buf, size_t n) {
    snprintf(buf, n, "%s%s%s%s%s%s%s", e->size != ATTR_UNSET ? size_names[e->size] : "",
             e->size != ATTR_UNSET ? " " : "", e->fill != ATTR_UNSET ? fill_names[e->fill] : "",
             e->fill != ATTR_UNSET ? " " : "", e->color != ATTR_UNSET ? color_names[e->color] : "",
             e->color != ATTR_UNSET ? " " : "", noun(e));
}

static question *q_add(question_set *qs, int kind, int entity, int other, int value) {
    question *q = &qs->q[qs->n++];
    memset(q, 0, sizeof *q);
    q->kind = kind;
    q->entity = entity;
    q->other = other;
    q->value = value;
    q->n_choices = 2;
    return q;
}

static int entity_attr(const entity *e, int kind) {
    return kind == QUESTION_COLOR ? e->color : kind == QUESTION_SIZE ? e->size : e->fill;
}

static const char *attr_name(int kind, int v) {
    return kind == QUESTION_COLOR ? color_names[v] : kind == QUESTION_SIZE ? size_names[v] : fill_names[v];
}

void questions_dsg(const scene_graph *g, question_set *qs) {
    int exist[MAX_ENTITIES];
    char da[48], db[48];
    qs->n = 0;
    if (g->background != ATTR_UNSET) {
        question *q = q_add(qs, QUESTION_BACKGROUND, -1, -1, g->background);
        snprintf(q->text, sizeof q->text, "Is the background %s?", color_names[g->background]);
    }
    for (int i = 0; i < g->n_entities; i++) {
        const entity *e = &g->entities[i];
        exist[i] = qs->n;
        question *q = q_add(qs, QUESTION_EXIST, i, -1, e->shape);
        snprintf(q->text, sizeof q->text, e->count > 1 ? "Are there %s?" : "Is there a %s?", noun(e));
        for (int kind = QUESTION_COLOR; kind <= QUESTION_FILL; kind++) {
            int v = entity_attr(e, kind);
            if (v == ATTR_UNSET) continue;
            q = q_add(qs, kind, i, -1, v);
            q->n_parents = 1;
            q->parents[0] = exist[i];
            snprintf(q->text, sizeof q->text, "%s the %s %s?", e->count > 1 ? "Are" : "Is", noun(e),
                     attr_name(kind, v));
        }
        if (e->count_stated || e->count > 1) {
            q = q_add(qs, QUESTION_COUNT, i, -1, e->count);
            q->at_least = !e->count_stated;
            q->n_parents = 1;
            q->parents[0] = exist[i];
            describe(e, da, sizeof da);
            snprintf(q->text, sizeof q->text, "Are there %s %d %s?", q->at_least ? "at least" : "exactly",
                     e->count, da);
        }
    }
    for (int r = 0; r < g->n_relations; r++) {
        const relation *rl = &g->relations[r];
        question *q = q_add(qs, QUESTION_RELATION, rl->a, rl->b, rl->kind);
        q->n_parents = 2;
        q->parents[0] = exist[rl->a];
        q->parents[1] = exist[rl->b];
        describe(&g->entities[rl->a], da, sizeof da);
        describe(&g->entities[rl->b], db, sizeof db);
        snprintf(q->text, sizeof q->text, "%s the %s %s the %s?", g->entities[rl->a].count > 1 ? "Are" : "Is",
                 da, relation_words[0][rl->kind], db);
    }
}

void questions_tifa(const scene_graph *g, question_set *qs) {
    char da[48], db[48];
    qs->n = 0;
    if (g->background != ATTR_UNSET) {
        question *q = q_add(qs, QUESTION_BACKGROUND, -1, -1, g->background);
        q->n_choices = COLOR_COUNT;
        q->answer = g->background;
        snprintf(q->text, sizeof q->text, "What color is the background?");
    }
    for (int i = 0; i < g->n_entities; i++) {
        const entity *e = &g->entities[i];
        question *q = q_add(qs, QUESTION_EXIST, i, -1, e->shape);
        snprintf(q->text, sizeof q->text, e->count > 1 ? "Are there %s?" : "Is there a %s?", noun(e));
        for (int kind = QUESTION_COLOR; kind <= QUESTION_FILL; kind++) {
            int v = entity_attr(e, kind);
            if (v == ATTR_UNSET) continue;
            q = q_add(qs, kind, i, -1, v);
            q->n_choices = kind == QUESTION_COLOR ? COLOR_OBJECT_COUNT : 2;
            q->answer = v;
            const char *be = e->count > 1 ? "are" : "is";
            if (kind == QUESTION_COLOR) snprintf(q->text, sizeof q->text, "What color %s the %s?", be, noun(e));
            else if (kind == QUESTION_SIZE) snprintf(q->text, sizeof q->text, "What size %s the %s?", be, noun(e));
            else snprintf(q->text, sizeof q->text, "%s the %s filled or outlined?", e->count > 1 ? "Are" : "Is", noun(e));
        }
        if (e->count_stated || e->count > 1) {
            q = q_add(qs, QUESTION_COUNT, i, -1, e->count);
            q->at_least = !e->count_stated;
            describe(e, da, sizeof da);
            if (q->at_least) {
                snprintf(q->text, sizeof q->text, "Are there at least %d %s?", e->count, da);
            } else {
                q->n_choices = 4;
                q->answer = e->count - 1;
                snprintf(q->text, sizeof q->text, "How many %s are there?", da);
            }
        }
    }
    for (int r = 0; r < g->n_relations; r++) {
        const relation *rl = &g->relations[r];
        question *q = q_add(qs, QUESTION_RELATION, rl->a, rl->b, rl->kind);
        q->n_choices = REL_COUNT;
        q->answer = rl->kind;
        describe(&g->entities[rl->a], da, sizeof da);
        describe(&g->entities[rl->b], db, sizeof db);
        snprintf(q->text, sizeof q->text, "Where %s the %s relative to the %s?",
                 g->entities[rl->a].count > 1 ? "are" : "is", da, db);
    }
}

int question_choices(const question *q, const char **choices, int max) {
    int n = q->n_choices < max ? q->n_choices : max;
    for (int i = 0; i < n; i++) {
        switch (q->kind) {
        case QUESTION_COLOR:
        case QUESTION_BACKGROUND: choices[i] = color_names[i]; break;
        case QUESTION_SIZE: choices[i] = size_names[i]; break;
        case QUESTION_FILL: choices[i] = fill_names[i]; break;
        case QUESTION_COUNT: choices[i] = q->at_least ? yes_no[i] : count_choices[i]; break;
        case QUESTION_RELATION: choices[i] = relation_words[0][i]; break;
        default: choices[i] = yes_no[i]; break;
        }
    }
    return n;
}
