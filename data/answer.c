// Answering question sets from detections: the entity-to-detection matching and the
// per-question rules documented in questions.h.
#include <limits.h>
#include <string.h>

#include "data/questions.h"
#include "runtime/error.h"

#define MAX_SLOTS (MAX_ENTITIES * 4)
#define FORBIDDEN 1000000  // cost of a slot-detection pair of different shapes

static int slot_score(const entity *e, const detection *x) {
    if (e->shape != x->shape) return -1;
    return 4 + (e->color != ATTR_UNSET && e->color == x->color) +
           (e->size != ATTR_UNSET && e->size == x->size) + (e->fill != ATTR_UNSET && e->fill == x->fill);
}

static int fits_fully(const entity *e, const detection *x) {
    return e->shape == x->shape && (e->color == ATTR_UNSET || e->color == x->color) &&
           (e->size == ATTR_UNSET || e->size == x->size) && (e->fill == ATTR_UNSET || e->fill == x->fill);
}

// Minimum-cost assignment of n rows to distinct columns of an n x m cost matrix
// (n <= m), the O(n^2 m) Hungarian algorithm with potentials. row_col[i] = column.
static void hungarian(int n, int m, const int *cost, int *row_col) {
    int u[MAX_SLOTS + 1] = {0}, v[MAX_SLOTS + MAX_DETECTIONS + 1] = {0};
    int p[MAX_SLOTS + MAX_DETECTIONS + 1] = {0}, way[MAX_SLOTS + MAX_DETECTIONS + 1] = {0};
    for (int i = 1; i <= n; i++) {
        int minv[MAX_SLOTS + MAX_DETECTIONS + 1], used[MAX_SLOTS + MAX_DETECTIONS + 1] = {0};
        for (int j = 0; j <= m; j++) minv[j] = INT_MAX;
        p[0] = i;
        int j0 = 0;
        do {
            used[j0] = 1;
            int i0 = p[j0], delta = INT_MAX, j1 = 0;
            for (int j = 1; j <= m; j++) {
                if (used[j]) continue;
                int cur = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
                if (minv[j] < delta) { delta = minv[j]; j1 = j; }
            }
            for (int j = 0; j <= m; j++) {
                if (used[j]) { u[p[j]] += delta; v[j] -= delta; }
                else minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    for (int j = 1; j <= m; j++)
        if (p[j]) row_col[p[j] - 1] = j - 1;
}

static int pair_holds(int kind, const detection *a, const detection *b) {
    switch (kind) {
    case REL_LEFT_OF: return a->cx < b->cx;
    case REL_RIGHT_OF: return a->cx > b->cx;
    case REL_ABOVE: return a->cy < b->cy;
    default: return a->cy > b->cy;
    }
}

static int relation_holds(const relation *r, const detections *d, const entity_match *m) {
    if (!m->n[r->a] || !m->n[r->b]) return 0;
    for (int i = 0; i < m->n[r->a]; i++)
        for (int j = 0; j < m->n[r->b]; j++)
            if (!pair_holds(r->kind, &d->d[m->det[r->a][i]], &d->d[m->det[r->b][j]])) return 0;
    return 1;
}

static int relations_held(const scene_graph *g, const detections *d, const int *slot_ent,
                          const int *slot_det, int n_slots) {
    entity_match m;
    memset(m.n, 0, sizeof m.n);
    for (int s = 0; s < n_slots; s++)
        if (slot_det[s] >= 0) m.det[slot_ent[s]][m.n[slot_ent[s]]++] = slot_det[s];
    int k = 0;
    for (int r = 0; r < g->n_relations; r++) k += relation_holds(&g->relations[r], d, &m);
    return k;
}

void entities_match(const scene_graph *g, const detections *d, entity_match *m) {
    int slot_ent[MAX_SLOTS], slot_det[MAX_SLOTS], n_slots = 0;
    for (int e = 0; e < g->n_entities; e++)
        for (int k = 0; k < g->entities[e].count && n_slots < MAX_SLOTS; k++) slot_ent[n_slots++] = e;
    // columns: the detections, then one "unmatched" column per slot at cost 0
    int m_cols = d->n + n_slots;
    int cost[MAX_SLOTS * (MAX_SLOTS + MAX_DETECTIONS)];
    for (int s = 0; s < n_slots; s++)
        for (int j = 0; j < m_cols; j++) {
            int sc = j < d->n ? slot_score(&g->entities[slot_ent[s]], &d->d[j]) : 0;
            cost[s * m_cols + j] = sc < 0 ? FORBIDDEN : -sc;
        }
    int col[MAX_SLOTS];
    if (n_slots) hungarian(n_slots, m_cols, cost, col);
    int taken[MAX_DETECTIONS] = {0};
    for (int s = 0; s < n_slots; s++) {
        slot_det[s] = col[s] < d->n && cost[s * m_cols + col[s]] != FORBIDDEN ? col[s] : -1;
        if (slot_det[s] >= 0) taken[slot_det[s]] = 1;
    }
    // Among assignments of the same total score, prefer one where more relations hold:
    // swap detections between slots, or with unmatched detections, when the score
    // stays the same and more relations hold. Each swap raises the count, so it ends.
    int held = relations_held(g, d, slot_ent, slot_det, n_slots);
    for (int improved = g->n_relations > 0; improved;) {
        improved = 0;
        for (int s = 0; s < n_slots && !improved; s++) {
            if (slot_det[s] < 0) continue;
            const entity *es = &g->entities[slot_ent[s]];
            int base = slot_score(es, &d->d[slot_det[s]]);
            for (int t = 0; t < n_slots + d->n && !improved; t++) {
                int other_slot = t < n_slots, x = other_slot ? slot_det[t] : t - n_slots;
                if (x < 0 || x == slot_det[s] || (!other_slot && taken[x])) continue;
                if (other_slot && slot_ent[t] == slot_ent[s]) continue;
                int before = base, after = slot_score(es, &d->d[x]);
                if (other_slot) {
                    const entity *et = &g->entities[slot_ent[t]];
                    before += slot_score(et, &d->d[x]);
                    after += slot_score(et, &d->d[slot_det[s]]);
                }
                if (after != before) continue;
                int old = slot_det[s];
                slot_det[s] = x;
                if (other_slot) slot_det[t] = old;
                int h = relations_held(g, d, slot_ent, slot_det, n_slots);
                if (h > held) {
                    held = h;
                    improved = 1;
                    if (!other_slot) { taken[old] = 0; taken[x] = 1; }
                } else {
                    slot_det[s] = old;
                    if (other_slot) slot_det[t] = x;
                }
            }
        }
    }
    memset(m->n, 0, sizeof m->n);
    for (int s = 0; s < n_slots; s++)
        if (slot_det[s] >= 0) m->det[slot_ent[s]][m->n[slot_ent[s]]++] = slot_det[s];
}

static int det_attr(const detection *x, int kind) {
    return kind == QUESTION_COLOR ? x->color : kind == QUESTION_SIZE ? x->size : x->fill;
}

// The value most of S_e has for an attribute, -1 if S_e is empty; ties go to the
// lowest value, so a split group rarely matches a stated value by luck.
static int majority(const detections *d, const entity_match *m, int e, int kind, int n_values) {
    int votes[COLOR_COUNT] = {0}, best = -1;
    for (int i = 0; i < m->n[e]; i++) votes[det_attr(&d->d[m->det[e][i]], kind)]++;
    for (int v = 0; v < n_values; v++)
        if (votes[v] && (best < 0 || votes[v] > votes[best])) best = v;
    return best;
}

// Detections that fit e's whole description and belong to no other entity.
static int count_fitting(const scene_graph *g, const detections *d, const entity_match *m, int e) {
    int owner[MAX_DETECTIONS];
    for (int j = 0; j < d->n; j++) owner[j] = -1;
    for (int f = 0; f < g->n_entities; f++)
        for (int i = 0; i < m->n[f]; i++) owner[m->det[f][i]] = f;
    int k = 0;
    for (int j = 0; j < d->n; j++)
        k += fits_fully(&g->entities[e], &d->d[j]) && (owner[j] < 0 || owner[j] == e);
    return k;
}

void questions_answer_dsg(const question_set *qs, const scene_graph *g, const detections *d,
                          const entity_match *m, int *yes) {
    for (int i = 0; i < qs->n; i++) {
        const question *q = &qs->q[i];
        int e = q->entity;
        switch (q->kind) {
        case QUESTION_EXIST: yes[i] = m->n[e] > 0; break;
        case QUESTION_COLOR:
        case QUESTION_SIZE:
        case QUESTION_FILL: {
            int agree = 0;
            for (int k = 0; k < m->n[e]; k++) agree += det_attr(&d->d[m->det[e][k]], q->kind) == q->value;
            yes[i] = 2 * agree > m->n[e];
            break;
        }
        case QUESTION_COUNT: {
            int k = count_fitting(g, d, m, e);
            yes[i] = q->at_least ? k >= q->value : k == q->value;
            break;
        }
        case QUESTION_RELATION: {
            relation r = {q->entity, q->other, q->value};
            yes[i] = relation_holds(&r, d, m);
            break;
        }
        default: yes[i] = d->background == q->value; break;
        }
    }
}

// TIFA has no dependencies: a VQA model asked "what colour is the circle?" of an image
// with no circle still answers, about whatever looks most like the object meant. So an
// entity with no match is answered about the detection that agrees with most of its
// stated attributes, shape aside (ties: the first detection).
static void tifa_fallback(const scene_graph *g, const detections *d, entity_match *m) {
    for (int e = 0; e < g->n_entities; e++) {
        if (m->n[e] || !d->n) continue;
        const entity *x = &g->entities[e];
        int best = 0, best_score = -1;
        for (int j = 0; j < d->n; j++) {
            const detection *y = &d->d[j];
            int sc = (x->color != ATTR_UNSET && x->color == y->color) +
                     (x->size != ATTR_UNSET && x->size == y->size) + (x->fill != ATTR_UNSET && x->fill == y->fill);
            if (sc > best_score) { best = j; best_score = sc; }
        }
        m->det[e][m->n[e]++] = best;
    }
}

void questions_answer_tifa(const question_set *qs, const scene_graph *g, const detections *d,
                           const entity_match *matched, int *chosen) {
    entity_match fm = *matched, *m = &fm;
    tifa_fallback(g, d, m);
    for (int i = 0; i < qs->n; i++) {
        const question *q = &qs->q[i];
        int e = q->entity;
        switch (q->kind) {
        case QUESTION_EXIST: chosen[i] = matched->n[e] > 0 ? 0 : 1; break;
        case QUESTION_COLOR: chosen[i] = majority(d, m, e, q->kind, COLOR_OBJECT_COUNT); break;
        case QUESTION_SIZE: chosen[i] = majority(d, m, e, q->kind, SIZE_COUNT); break;
        case QUESTION_FILL: chosen[i] = majority(d, m, e, q->kind, FILL_COUNT); break;
        case QUESTION_COUNT: {
            int k = count_fitting(g, d, matched, e);
            if (q->at_least) chosen[i] = k >= q->value ? 0 : 1;
            else chosen[i] = k >= 1 && k <= 4 ? k - 1 : -1;
            break;
        }
        case QUESTION_RELATION: {
            // the expected relation if it holds, else the first one that does
            chosen[i] = -1;
            for (int k = -1; k < REL_COUNT && chosen[i] < 0; k++) {
                relation r = {q->entity, q->other, k < 0 ? q->value : k};
                if (relation_holds(&r, d, m)) chosen[i] = r.kind;
            }
            break;
        }
        default: chosen[i] = d->background; break;
        }
    }
}

void prompt_score(const scene_graph *g, const detections *d, prompt_scores *out) {
    static __thread question_set qs;  // a few KB: keep it off small thread stacks
    int yes[MAX_QUESTIONS], chosen[MAX_QUESTIONS];
    entity_match m;
    memset(out, 0, sizeof *out);
    entities_match(g, d, &m);

    questions_dsg(g, &qs);
    questions_answer_dsg(&qs, g, d, &m, yes);
    for (int i = 0; i < qs.n; i++) {
        const question *q = &qs.q[i];
        int ok = yes[i], depth = 1;
        for (int k = 0; k < q->n_parents; k++) {
            const question *p = &qs.q[q->parents[k]];
            ok &= yes[q->parents[k]];
            depth++;
            CHECK(p->n_parents == 0);  // the graphs are two levels deep
        }
        out->dsg += ok;
        out->chance_dsg += 1.0 / (1 << depth);
        out->asked[q->kind]++;
        out->yes[q->kind] += yes[i];
    }
    out->n_dsg = qs.n;
    if (qs.n) { out->dsg /= qs.n; out->chance_dsg /= qs.n; }

    questions_tifa(g, &qs);
    questions_answer_tifa(&qs, g, d, &m, chosen);
    for (int i = 0; i < qs.n; i++) {
        out->tifa += chosen[i] == qs.q[i].answer;
        out->chance_tifa += 1.0 / qs.q[i].n_choices;
    }
    out->n_tifa = qs.n;
    if (qs.n) { out->tifa /= qs.n; out->chance_tifa /= qs.n; }
}
