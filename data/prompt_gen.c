// The generation loop, the skills' seeds and checks, and the built-in writer that
// imitates its in-context examples through templates (prompt_template.h).
#include "data/prompt_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/prompt_parse.h"
#include "data/prompt_template.h"
#include "data/render.h"
#include "data/rouge.h"
#include "runtime/error.h"

static const char *const seeds[SKILL_PRETRAIN][PROMPT_SEEDS] = {
    [SKILL_COUNT] = {"three yellow triangles", "There are 2 large red circles.",
                     "A picture of four small outlined blue squares."},
    [SKILL_SPATIAL] = {"a red circle to the left of a blue square",
                       "Two green triangles are above a yellow circle.",
                       "A small purple square below a large white triangle."},
    [SKILL_BINDING] = {"a red circle and a blue square",
                       "A large green triangle, a small yellow circle and an outlined purple square.",
                       "There is a hollow white square with a big red triangle."},
    [SKILL_DENSE] = {"A large red circle is to the left of a small blue square. The blue square is "
                     "above a green triangle. The triangle is outlined.",
                     "The image shows two yellow circles above a white square, and a small purple "
                     "triangle to the right of the square. The circles are filled.",
                     "There is a big green square on the left of an outlined red triangle. A small "
                     "blue circle is below the triangle, and the square is hollow."},
    [SKILL_STYLE] = {"an outlined red circle on a white background",
                     "A large hollow yellow square and a solid green triangle on a grey background.",
                     "Two outlined blue triangles against a purple background."},
};

// Per skill: most entities, largest count a number may state.
static const int max_entities[SKILL_PRETRAIN] = {2, 2, 4, 4, 3};
static const int max_count[SKILL_PRETRAIN] = {4, 2, 2, 2, 2};

const char *const *prompt_seeds(int skill) {
    return skill >= 0 && skill < SKILL_PRETRAIN ? seeds[skill] : NULL;
}

static int why_not(char *why, size_t n, const char *msg) {
    if (why && n) snprintf(why, n, "%s", msg);
    return 0;
}

int prompt_fits_skill(const scene_graph *g, int skill, char *why, size_t n) {
    int stated_fill = 0, stated_size_fill = 0, counted = 1, attrs_each = 1;
    for (int e = 0; e < g->n_entities; e++) {
        const entity *x = &g->entities[e];
        stated_fill |= x->fill != ATTR_UNSET;
        stated_size_fill |= x->size != ATTR_UNSET || x->fill != ATTR_UNSET;
        counted &= x->count_stated;
        attrs_each &= x->color != ATTR_UNSET || x->size != ATTR_UNSET || x->fill != ATTR_UNSET;
    }
    int ne = g->n_entities, nr = g->n_relations, bg = g->background != ATTR_UNSET;
    switch (skill) {
    case SKILL_COUNT:
        if (ne < 1 || ne > 2) return why_not(why, n, "count: needs 1-2 entities");
        if (!counted) return why_not(why, n, "count: every entity needs a stated number");
        if (nr || bg) return why_not(why, n, "count: no relations or background");
        return 1;
    case SKILL_SPATIAL:
        if (ne != 2 || nr != 1) return why_not(why, n, "spatial: needs 2 entities and 1 relation");
        if (bg) return why_not(why, n, "spatial: no background");
        return 1;
    case SKILL_BINDING:
        if (ne < 2 || ne > 4) return why_not(why, n, "binding: needs 2-4 entities");
        if (!attrs_each) return why_not(why, n, "binding: every entity needs an attribute");
        if (nr) return why_not(why, n, "binding: no relations");
        return 1;
    case SKILL_DENSE:
        if (ne < 3 || ne > 4) return why_not(why, n, "dense: needs 3-4 entities");
        if (nr < 2) return why_not(why, n, "dense: needs 2 or more relations");
        if (!stated_size_fill) return why_not(why, n, "dense: needs a size or fill");
        return 1;
    case SKILL_STYLE:
        if (ne < 1 || ne > 3) return why_not(why, n, "style: needs 1-3 entities");
        if (!bg && !stated_fill) return why_not(why, n, "style: needs a background or a fill");
        return 1;
    case SKILL_PRETRAIN:
        if (ne < 1 || ne > 2) return why_not(why, n, "pretrain: needs 1-2 entities");
        return 1;
    default: return why_not(why, n, "no such skill");
    }
}

// Whether each axis's order (a before b) has no cycle: "a left of b" and "b left of
// a" (or a longer loop) cannot be drawn.
static int relations_consistent(const scene_graph *g) {
    int before[2][MAX_ENTITIES][MAX_ENTITIES] = {{{0}}}, n = g->n_entities;
    for (int k = 0; k < g->n_relations; k++) {
        const relation *r = &g->relations[k];
        int axis = r->kind == REL_ABOVE || r->kind == REL_BELOW;
        int first = r->kind == REL_LEFT_OF || r->kind == REL_ABOVE;
        before[axis][first ? r->a : r->b][first ? r->b : r->a] = 1;
    }
    for (int ax = 0; ax < 2; ax++) {
        for (int m = 0; m < n; m++)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) before[ax][i][j] |= before[ax][i][m] && before[ax][m][j];
        for (int i = 0; i < n; i++)
            if (before[ax][i][i]) return 0;
    }
    return 1;
}

// What any prompt must satisfy to be drawn and scored unambiguously: objects not in
// the background's colour, entities of one shape told apart by an attribute both
// state, drawable relations, and a crowd that fits a 32x32 canvas.
static int graph_drawable(const scene_graph *g, char *why, size_t n) {
    int units = 0;
    for (int e = 0; e < g->n_entities; e++) {
        const entity *x = &g->entities[e];
        int bg = g->background == ATTR_UNSET ? COLOR_BLACK : g->background;
        if (x->color == bg) return why_not(why, n, "an object has the background's colour");
        for (int f = 0; f < e; f++) {
            const entity *y = &g->entities[f];
            if (x->shape != y->shape) continue;
            int apart = (x->color != ATTR_UNSET && y->color != ATTR_UNSET && x->color != y->color) ||
                        (x->size != ATTR_UNSET && y->size != ATTR_UNSET && x->size != y->size) ||
                        (x->fill != ATTR_UNSET && y->fill != ATTR_UNSET && x->fill != y->fill);
            if (!apart) return why_not(why, n, "two entities of one shape are not told apart");
        }
        units += x->count * (x->size == SIZE_SMALL ? 2 : x->size == SIZE_LARGE ? 4 : 3);
    }
    if (!relations_consistent(g)) return why_not(why, n, "contradictory relations");
    if (units > 16) return why_not(why, n, "too many or too large objects for the canvas");
    scene s;
    if (scene_place(g, 32, 32, 0, 1, &s) != 0) return why_not(why, n, "does not fit a 32x32 canvas");
    return 1;
}

// New content for a skeleton: every stated attribute, count, relation kind and the
// background drawn again; retried until the graph is drawable.
static int content_fill(int skill, const scene_graph *skel, rng *r, scene_graph *g) {
    for (int attempt = 0; attempt < 30; attempt++) {
        *g = *skel;
        if (g->background != ATTR_UNSET) g->background = (int)rng_below(r, COLOR_COUNT);
        for (int e = 0; e < g->n_entities; e++) {
            entity *x = &g->entities[e];
            x->shape = (int)rng_below(r, SHAPE_COUNT);
            if (x->color != ATTR_UNSET) x->color = (int)rng_below(r, COLOR_OBJECT_COUNT);
            if (x->size != ATTR_UNSET) x->size = (int)rng_below(r, SIZE_COUNT);
            if (x->fill != ATTR_UNSET) x->fill = (int)rng_below(r, FILL_COUNT);
            if (x->count_stated) x->count = 1 + (int)rng_below(r, (uint32_t)max_count[skill]);
        }
        for (int k = 0; k < g->n_relations; k++) g->relations[k].kind = (int)rng_below(r, REL_COUNT);
        if (prompt_fits_skill(g, skill, NULL, 0) && graph_drawable(g, NULL, 0)) return 0;
    }
    return -1;
}

// One prompt in the manner of the examples: one is the template, another lends words
// and clauses, the content is new. -1 when this combination gives nothing valid.
static int write_candidate(int skill, const char *const *ex, rng *r, char *out, scene_graph *g) {
    static __thread prompt_template t, o;
    int main = (int)rng_below(r, 3), other = (main + 1 + (int)rng_below(r, 2)) % 3;
    if (template_from_text(ex[main], &t) || template_from_text(ex[other], &o)) return -1;
    int grow = skill != SKILL_SPATIAL, shrink = skill != SKILL_SPATIAL;
    template_mutate(&t, &o, grow, shrink, r);
    scene_graph skel, back;
    int rel_of[PROMPT_MAX_TOKENS];
    if (template_skeleton(&t, &skel, rel_of) || skel.n_entities > max_entities[skill] ||
        !prompt_fits_skill(&skel, skill, NULL, 0))
        return -1;
    for (int tries = 0; tries < 5; tries++) {
        if (content_fill(skill, &skel, r, g)) return -1;
        if (template_render(&t, g, rel_of, out, PROMPT_MAX_LEN)) return -1;
        // a reference may now fit an entity other than the one meant: read it back
        if (prompt_parse(out, &back, NULL) == 0 && scene_graph_equal(&back, g)) return 0;
    }
    return -1;
}

void prompt_gen_defaults(prompt_gen_opts *o) {
    o->threshold = 0.8;
    o->max_rejects = 2000;
    o->command = NULL;
    o->command_timeout_s = 60;
}

void prompt_list_free(prompt_list *l) {
    for (int i = 0; i < l->n; i++) free(l->text[i]);
    free(l->text);
    free(l->graph);
    memset(l, 0, sizeof *l);
}

void prompt_list_add(prompt_list *l, const char *text, const scene_graph *g) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->text = realloc(l->text, sizeof(char *) * (size_t)l->cap);
        l->graph = realloc(l->graph, sizeof(scene_graph) * (size_t)l->cap);
        CHECK(l->text && l->graph);
    }
    l->text[l->n] = strdup(text);
    CHECK(l->text[l->n]);
    l->graph[l->n++] = *g;
}

static void note_invalid(prompt_gen_stats *st, const char *line, const char *why) {
    st->rejected_invalid++;
    if (st->n_examples < 4)
        snprintf(st->examples[st->n_examples++], sizeof st->examples[0], "%s: '%.150s'", why, line);
}

// A prompt from the external command: kept only if it is understood completely, fits
// the skill and can be drawn.
static int command_prompt_ok(const char *line, int skill, scene_graph *g, prompt_gen_stats *st) {
    static __thread parse_info info;
    char why[160];
    if (prompt_parse(line, g, &info) > 0) {
        snprintf(why, sizeof why, "unparsed words '%.100s'", info.unparsed);
        note_invalid(st, line, why);
        return 0;
    }
    if (!prompt_fits_skill(g, skill, why, sizeof why) || !graph_drawable(g, why, sizeof why)) {
        note_invalid(st, line, why);
        return 0;
    }
    return 1;
}

int prompt_generate(int skill, int n, uint64_t seed, const prompt_gen_opts *opts,
                    prompt_list *out, prompt_gen_stats *stats) {
    memset(stats, 0, sizeof *stats);
    if (skill == SKILL_PRETRAIN) {
        char text[PROMPT_MAX_LEN];
        scene_graph full, stated;
        for (int i = 0; i < n; i++) {
            if (prompt_pretrain_item(seed, i, &full, text, sizeof text, &stated)) return -1;
            prompt_list_add(out, text, &stated);
            stats->candidates++;
        }
        return 0;
    }
    if (skill < 0 || skill >= SKILL_PRETRAIN) return err_set("prompt_generate: skill %d has no prompts", skill);

    int pool_n = 0, pool_cap = PROMPT_SEEDS + n;
    const char **pool = malloc(sizeof(char *) * (size_t)pool_cap);
    CHECK(pool);
    rouge_pool kept;
    rouge_pool_init(&kept);
    for (int i = 0; i < PROMPT_SEEDS; i++) {
        pool[pool_n++] = seeds[skill][i];
        rouge_pool_add(&kept, seeds[skill][i]);
    }
    rng r = rng_make(seed, 0x70726f6d707400ULL + (uint64_t)skill);  // "prompt" + skill
    int start = out->n, in_row = 0, rc = 0;
    long similar_at_start = 0;  // rejected_similar when the current run of rejections began
    char text[PROMPT_MAX_LEN];
    scene_graph g;
    while (out->n - start < n) {
        int pick[3];
        for (int k = 0; k < 3; k++) {
            int dup;
            do {
                pick[k] = (int)rng_below(&r, (uint32_t)pool_n);
                dup = 0;
                for (int j = 0; j < k; j++) dup |= pick[j] == pick[k];
            } while (dup);
        }
        const char *ex[3] = {pool[pick[0]], pool[pick[1]], pool[pick[2]]};
        char **lines = NULL;
        int n_lines = 0;
        if (opts->command) {
            if (prompt_command_run(opts->command, ex, 3, opts->command_timeout_s, &lines, &n_lines)) {
                rc = -1;
                break;
            }
        } else {
            lines = malloc(sizeof(char *));
            CHECK(lines);
            if (write_candidate(skill, ex, &r, text, &g) == 0) {
                lines[n_lines++] = strdup(text);
            } else {
                stats->rejected_invalid++;
            }
        }
        int accepted = 0;
        for (int i = 0; i < n_lines; i++) {
            stats->candidates++;
            if (out->n - start >= n) { free(lines[i]); continue; }
            if (opts->command && !command_prompt_ok(lines[i], skill, &g, stats)) {
                free(lines[i]);
                continue;
            }
            if (rouge_pool_max(&kept, lines[i], NULL) > opts->threshold) {
                stats->rejected_similar++;
                free(lines[i]);
                continue;
            }
            rouge_pool_add(&kept, lines[i]);
            prompt_list_add(out, lines[i], &g);
            pool[pool_n++] = out->text[out->n - 1];
            accepted++;
            free(lines[i]);
        }
        free(lines);
        if (accepted) {
            in_row = 0;
            similar_at_start = stats->rejected_similar;
        } else {
            in_row += n_lines ? n_lines : 1;
        }
        if (in_row >= opts->max_rejects) {
            long similar = stats->rejected_similar - similar_at_start;
            rc = err_set("%s: %d candidates in a row rejected (%ld with ROUGE-L above %.2f, %ld invalid); "
                         "kept %d of %d prompts -- %s", skill_names[skill], in_row, similar, opts->threshold,
                         in_row - similar, out->n - start, n,
                         2 * similar >= in_row ? "the skill's space is exhausted at this threshold"
                                               : "the generator writes prompts the skill cannot use");
            break;
        }
    }
    free(pool);
    rouge_pool_free(&kept);
    return rc;
}
