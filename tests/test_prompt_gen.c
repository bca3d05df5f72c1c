// Prompt generation (data/prompt_gen.h): 500 prompts per skill parse back to the graph
// they were written from and fit their skill; no kept pair scores above the ROUGE-L
// threshold (checked with an independent ROUGE-L written here); templates drift away
// from the seeds; pretraining captions are incomplete and parse back; the external
// generator command's success, failures, timeout and invalid prompts.
#include "tests/check.h"

#include <ctype.h>
#include <time.h>

#include "data/prompt_gen.h"
#include "data/prompt_parse.h"
#include "runtime/error.h"

// ROUGE-L F as rouge_score computes it, written independently of data/rouge.c:
// words = maximal runs of [a-z0-9] after lower-casing, LCS by the textbook table.
static int words_of(const char *s, char w[][24], int max) {
    int n = 0;
    while (*s && n < max) {
        while (*s && !isalnum((unsigned char)*s)) s++;
        int k = 0;
        while (*s && isalnum((unsigned char)*s)) {
            if (k < 23) w[n][k++] = (char)tolower((unsigned char)*s);
            s++;
        }
        if (k) w[n++][k] = 0;
    }
    return n;
}

typedef struct words {
    int n;
    char w[128][24];
} words;

static double ref_rouge_words(const words *a, const words *b) {
    static int t[129][129];
    int na = a->n, nb = b->n;
    const char (*wa)[24] = a->w, (*wb)[24] = b->w;
    if (!na || !nb) return 0;
    for (int i = 0; i <= na; i++)
        for (int j = 0; j <= nb; j++)
            t[i][j] = !i || !j ? 0
                      : !strcmp(wa[i - 1], wb[j - 1]) ? t[i - 1][j - 1] + 1
                      : t[i - 1][j] > t[i][j - 1] ? t[i - 1][j] : t[i][j - 1];
    double l = t[na][nb], p = l / nb, r = l / na;
    return l ? 2 * p * r / (p + r) : 0;
}

static double ref_rouge_l(const char *a, const char *b) {
    static words wa, wb;
    wa.n = words_of(a, wa.w, 128);
    wb.n = words_of(b, wb.w, 128);
    return ref_rouge_words(&wa, &wb);
}

// The sequence of token roles (with styles) of a prompt: its template's signature.
static unsigned long signature(const char *text) {
    static parse_info info;
    scene_graph g;
    prompt_parse(text, &g, &info);
    unsigned long h = 5381;
    for (int i = 0; i < info.n_tokens; i++) {
        const prompt_token *x = &info.tokens[i];
        int role_word = x->role == TOKEN_FILLER || x->role == TOKEN_PUNCT || x->role == TOKEN_AND;
        h = h * 33 + (unsigned long)x->role * 7 + (unsigned long)x->style;
        if (role_word) for (const char *c = x->text; *c; c++) h = h * 33 + (unsigned char)*c;
    }
    return h;
}

static void test_seeds(void) {
    for (int s = 0; s < SKILL_PRETRAIN; s++) {
        const char *const *seeds = prompt_seeds(s);
        for (int i = 0; i < PROMPT_SEEDS; i++) {
            scene_graph g;
            char why[128] = "";
            EXPECT(prompt_parse(seeds[i], &g, NULL) == 0, "seed '%s' parses", seeds[i]);
            EXPECT(prompt_fits_skill(&g, s, why, sizeof why), "seed '%s': %s", seeds[i], why);
        }
    }
    EXPECT(prompt_seeds(SKILL_PRETRAIN) == NULL, "pretrain has no seeds");
}

static void test_skills(void) {
    prompt_gen_opts o;
    prompt_gen_defaults(&o);
    for (int s = 0; s < SKILL_PRETRAIN; s++) {
        prompt_list l = {0}, again = {0};
        prompt_gen_stats st;
        EXPECT(prompt_generate(s, 500, 1, &o, &l, &st) == 0 && l.n == 500, "%s: %s", skill_names[s], err_msg());
        int bad = 0, off = 0, above = 0;
        for (int i = 0; i < l.n; i++) {
            scene_graph g;
            static parse_info info;
            if (prompt_parse(l.text[i], &g, &info) != 0 || !scene_graph_equal(&g, &l.graph[i])) {
                if (bad++ < 3) fprintf(stderr, "%s: '%s' does not parse back (unparsed '%s')\n",
                                       skill_names[s], l.text[i], info.unparsed);
            }
            char why[128];
            if (!prompt_fits_skill(&l.graph[i], s, why, sizeof why) && off++ < 3)
                fprintf(stderr, "%s: '%s': %s\n", skill_names[s], l.text[i], why);
        }
        EXPECT(bad == 0, "%s: %d prompts do not parse back to their graph", skill_names[s], bad);
        EXPECT(off == 0, "%s: %d prompts off-skill", skill_names[s], off);
        // every pair of the kept set, seeds included, with the independent ROUGE-L
        const char *const *seeds = prompt_seeds(s);
        static words tok[500 + PROMPT_SEEDS];
        const char *text[500 + PROMPT_SEEDS];
        for (int i = 0; i < l.n + PROMPT_SEEDS; i++) {
            text[i] = i < PROMPT_SEEDS ? seeds[i] : l.text[i - PROMPT_SEEDS];
            tok[i].n = words_of(text[i], tok[i].w, 128);
        }
        for (int i = 0; i < l.n + PROMPT_SEEDS; i++)
            for (int j = 0; j < i; j++) {
                double f = ref_rouge_words(&tok[i], &tok[j]);
                if (f > o.threshold && above++ < 3)
                    fprintf(stderr, "%s: ROUGE-L %.3f: '%s' / '%s'\n", skill_names[s], f, text[i], text[j]);
            }
        EXPECT(above == 0, "%s: %d kept pairs above %.2f", skill_names[s], above, o.threshold);
        // the filter does reject (near-duplicates are proposed), and templates drift:
        // many phrasings beyond the three seeds'
        EXPECT(st.rejected_similar > 0, "%s: nothing rejected", skill_names[s]);
        unsigned long sig[500];
        int distinct = 0;
        for (int i = 0; i < l.n; i++) {
            unsigned long h = signature(l.text[i]);
            int seen = 0;
            for (int k = 0; k < distinct && !seen; k++) seen = sig[k] == h;
            if (!seen) sig[distinct++] = h;
        }
        EXPECT(distinct >= 20, "%s: only %d distinct templates", skill_names[s], distinct);
        printf("%s: 500 kept, %ld candidates, %ld similar, %ld invalid, %d templates\n", skill_names[s],
               st.candidates, st.rejected_similar, st.rejected_invalid, distinct);
        // deterministic in the seed
        EXPECT(prompt_generate(s, 50, 1, &o, &again, &st) == 0, "%s", err_msg());
        int same = 1;
        for (int i = 0; i < 50; i++) same &= !strcmp(again.text[i], l.text[i]);
        EXPECT(same, "%s: same seed, different prompts", skill_names[s]);
        prompt_list_free(&again);
        EXPECT(prompt_generate(s, 50, 2, &o, &again, &st) == 0, "%s", err_msg());
        same = 1;
        for (int i = 0; i < 50; i++) same &= !strcmp(again.text[i], l.text[i]);
        EXPECT(!same, "%s: another seed, the same prompts", skill_names[s]);
        prompt_list_free(&again);
        prompt_list_free(&l);
    }
    // a strict threshold: still no pair above it
    prompt_list l = {0};
    prompt_gen_stats st;
    o.threshold = 0.5;
    EXPECT(prompt_generate(SKILL_BINDING, 60, 3, &o, &l, &st) == 0, "%s", err_msg());
    int above = 0;
    for (int i = 0; i < l.n; i++)
        for (int j = 0; j < i; j++) above += ref_rouge_l(l.text[i], l.text[j]) > 0.5;
    EXPECT(above == 0 && l.n == 60, "threshold 0.5: %d pairs above", above);
    prompt_list_free(&l);
    // an exhausted space stops with the number kept
    o.threshold = 0.05;
    o.max_rejects = 50;
    EXPECT(prompt_generate(SKILL_COUNT, 100, 1, &o, &l, &st) == -1, "threshold 0.05 cannot be met");
    EXPECT(strstr(err_msg(), "kept") && strstr(err_msg(), "of 100"), "message: %s", err_msg());
    prompt_list_free(&l);
}

static void test_pretrain(void) {
    int bad = 0, all_mentioned = 0, numbers_above_two = 0, relations = 0, n = 2000;
    int multi = 0, omitted = 0, complete = 0;
    for (int i = 0; i < n; i++) {
        scene_graph full, stated, back;
        char text[PROMPT_MAX_LEN];
        EXPECT(prompt_pretrain_item(5, i, &full, text, sizeof text, &stated) == 0, "%s", err_msg());
        if (prompt_parse(text, &back, NULL) != 0 || !scene_graph_equal(&back, &stated) ||
            !prompt_fits_skill(&stated, SKILL_PRETRAIN, NULL, 0))
            if (bad++ < 3) fprintf(stderr, "pretrain: '%s' does not parse back\n", text);
        all_mentioned += stated.n_entities == full.n_entities;
        multi += full.n_entities > 1;
        omitted += full.n_entities > 1 && stated.n_entities < full.n_entities;
        complete += scene_graph_equal(&stated, &full);
        for (int e = 0; e < stated.n_entities; e++)
            numbers_above_two += stated.entities[e].count_stated && stated.entities[e].count > 2;
        relations += stated.n_relations;
    }
    EXPECT(bad == 0, "%d captions do not parse back", bad);
    printf("pretrain: %d of %d captions mention every entity (%d of %d scenes of several leave one "
           "out), %d say everything, %d state a number above two, %d a relation\n",
           all_mentioned, n, omitted, multi, complete, numbers_above_two, relations);
    EXPECT(omitted > multi / 2, "scenes of several entities should usually lose one: %d of %d", omitted, multi);
    EXPECT(complete < n / 50, "a caption rarely says everything: %d of %d", complete, n);
    EXPECT(numbers_above_two < n / 20, "numbers above two are rare: %d", numbers_above_two);
    EXPECT(relations > 0 && relations < n / 10, "relations are rare: %d", relations);
}

static void test_command(void) {
    prompt_gen_opts o;
    prompt_gen_defaults(&o);
    prompt_list l = {0};
    prompt_gen_stats st;
    // prints one valid prompt only if it received exactly three examples
    o.command = "awk 'END { print (NR == 3 ? \"four green triangles\" : \"wrong input\"); "
                "print \"a red circle next to a square\"; print \"two blue circles\" }'";
    EXPECT(prompt_generate(SKILL_COUNT, 2, 1, &o, &l, &st) == 0, "%s", err_msg());
    EXPECT(l.n == 2 && !strcmp(l.text[0], "four green triangles") && !strcmp(l.text[1], "two blue circles"),
           "kept %d", l.n);
    EXPECT(st.rejected_invalid >= 1 && st.n_examples >= 1 && strstr(st.examples[0], "unparsed words 'next to'"),
           "dropped: %s", st.n_examples ? st.examples[0] : "(none)");
    prompt_list_free(&l);

    o.command = "cat";  // echoes the examples: everything is a near-duplicate
    o.max_rejects = 9;
    EXPECT(prompt_generate(SKILL_SPATIAL, 5, 1, &o, &l, &st) == -1 && strstr(err_msg(), "kept 0 of 5"),
           "echo: %s", err_msg());
    prompt_list_free(&l);

    char **lines;
    int n;
    const char *ex[3] = {"a", "b", "c"};
    EXPECT(prompt_command_run("exit 3", ex, 3, 10, &lines, &n) == -1 && strstr(err_msg(), "exit status 3") &&
               strstr(err_msg(), "'exit 3'"),
           "failure: %s", err_msg());
    EXPECT(prompt_command_run("/nonexistent/generator 2>/dev/null", ex, 3, 10, &lines, &n) == -1 &&
               strstr(err_msg(), "127"),
           "not found: %s", err_msg());
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    EXPECT(prompt_command_run("sleep 20", ex, 3, 1, &lines, &n) == -1 && strstr(err_msg(), "within 1 s"),
           "timeout: %s", err_msg());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    EXPECT(t1.tv_sec - t0.tv_sec < 5, "the hung command was killed after its timeout");
    EXPECT(prompt_command_run("printf '  x  \\n\\n y\\r\\n'", ex, 3, 10, &lines, &n) == 0 && n == 2 &&
               !strcmp(lines[0], "x") && !strcmp(lines[1], "y"),
           "lines trimmed, empty ones skipped");
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

int main(void) {
    test_seeds();
    test_skills();
    test_pretrain();
    test_command();
    return check_report("test_prompt_gen");
}
