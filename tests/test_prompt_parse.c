// The prompt language (data/prompt_parse.h): hand-written cases for every construct,
// unparsed-word reporting, the canonical writer, graph equality, and ROUGE-L on
// hand-computed examples (data/rouge.h).
#include "tests/check.h"

#include "data/prompt_parse.h"
#include "data/rouge.h"

static scene_graph g;
static parse_info info;

static int parse(const char *text) { return prompt_parse(text, &g, &info); }

static int entity_is(int e, int shape, int color, int size, int fill, int count, int stated) {
    const entity *x = &g.entities[e];
    return x->shape == shape && x->color == color && x->size == size && x->fill == fill &&
           x->count == count && x->count_stated == stated;
}

static int has_relation(int a, int b, int kind) {
    for (int r = 0; r < g.n_relations; r++)
        if (g.relations[r].a == a && g.relations[r].b == b && g.relations[r].kind == kind) return 1;
    return 0;
}

static void test_counts(void) {
    const int U = ATTR_UNSET;
    EXPECT(parse("three yellow triangles") == 0 && g.n_entities == 1, "%s", info.unparsed);
    EXPECT_TRUE(entity_is(0, SHAPE_TRIANGLE, COLOR_YELLOW, U, U, 3, 1));
    EXPECT(parse("4 red squares") == 0 && entity_is(0, SHAPE_SQUARE, COLOR_RED, U, U, 4, 1), "digits");
    EXPECT(parse("one circle") == 0 && entity_is(0, SHAPE_CIRCLE, U, U, U, 1, 1), "'one' states the count");
    EXPECT(parse("a circle") == 0 && entity_is(0, SHAPE_CIRCLE, U, U, U, 1, 0), "'a' does not");
    EXPECT(parse("an outlined square") == 0 && entity_is(0, SHAPE_SQUARE, U, U, FILL_OUTLINED, 1, 0), "an");
    EXPECT(parse("blue circles") == 0 && entity_is(0, SHAPE_CIRCLE, COLOR_BLUE, U, U, 2, 0),
           "a bare plural is 'at least two'");
    EXPECT(parse("2 circles and 1 square") == 0 && g.n_entities == 2 &&
           entity_is(1, SHAPE_SQUARE, U, U, U, 1, 1), "%s", info.unparsed);
    EXPECT(parse("five circles") == 1 && !strcmp(info.unparsed, "five") && g.n_entities == 1,
           "counts above four are not in the language: '%s'", info.unparsed);
}

static void test_attributes(void) {
    const int U = ATTR_UNSET;
    EXPECT(parse("a big red circle") == 0 && entity_is(0, SHAPE_CIRCLE, COLOR_RED, SIZE_LARGE, U, 1, 0), "big");
    EXPECT(parse("a tiny hollow green square") == 0 &&
           entity_is(0, SHAPE_SQUARE, COLOR_GREEN, SIZE_SMALL, FILL_OUTLINED, 1, 0), "tiny hollow");
    EXPECT(parse("a solid large white triangle") == 0 &&
           entity_is(0, SHAPE_TRIANGLE, COLOR_WHITE, SIZE_LARGE, FILL_FILLED, 1, 0), "any adjective order");
    EXPECT(parse("a red blue circle") == 1 && !strcmp(info.unparsed, "blue") &&
           entity_is(0, SHAPE_CIRCLE, COLOR_RED, U, U, 1, 0), "a second colour is unparsed: '%s'", info.unparsed);
    EXPECT(parse("a black circle") == 1 && g.entities[0].color == U, "black is a background colour only");
}

static void test_fillers_and_unparsed(void) {
    EXPECT(parse("There is a picture of a red circle with a blue square in this image.") == 0 &&
               g.n_entities == 2,
           "fillers ignored: '%s'", info.unparsed);
    EXPECT(parse("The image shows two circles.") == 0 && g.n_entities == 1 && g.entities[0].count == 2,
           "'the image' is a filler, not a reference: '%s'", info.unparsed);
    // "next to" names no direction: reported, the entities still parse
    EXPECT(parse("a red circle next to a shiny blue square") == 3 && g.n_entities == 2 && g.n_relations == 0,
           "unparsed count %d", info.n_unparsed);
    EXPECT(!strcmp(info.unparsed, "next to shiny"), "unparsed words '%s'", info.unparsed);
    EXPECT(parse("a circle and") == 0 && g.n_entities == 1, "a trailing 'and'");
    EXPECT(parse("") == 0 && g.n_entities == 0 && g.background == ATTR_UNSET, "empty");
    EXPECT(parse("a red") == 2 && g.n_entities == 0, "an adjective with no noun is unparsed");
    int roles_ok = parse("A red circle.") == 0 && info.n_tokens == 4 && info.tokens[0].role == TOKEN_ARTICLE &&
                   info.tokens[1].role == TOKEN_COLOR && info.tokens[2].role == TOKEN_SHAPE &&
                   info.tokens[2].entity == 0 && info.tokens[3].role == TOKEN_PUNCT;
    EXPECT(roles_ok, "token roles");
}

static void test_relations(void) {
    EXPECT(parse("a red circle left of a blue square") == 0 && g.n_relations == 1 &&
               has_relation(0, 1, REL_LEFT_OF), "left of");
    EXPECT(parse("a red circle is to the right of a blue square") == 0 && has_relation(0, 1, REL_RIGHT_OF),
           "to the right of");
    EXPECT(parse("two circles are on the left of a square") == 0 && has_relation(0, 1, REL_LEFT_OF), "on the left of");
    EXPECT(parse("a circle under a square above a triangle") == 0 && g.n_relations == 2 &&
               has_relation(0, 1, REL_BELOW) && has_relation(1, 2, REL_ABOVE),
           "relations chain on the nearest entity before them");
    EXPECT(parse("a circle and a square, which is above a triangle") == 0 && has_relation(1, 2, REL_ABOVE),
           "'which is'");
    EXPECT(parse("a circle. above a square") == 1 && g.n_relations == 0 && !strcmp(info.unparsed, "above"),
           "a relation does not reach into the previous sentence");
    EXPECT(parse("a circle left of the circle") == 2 && g.n_relations == 0, "no relation of an entity to itself");
}

static void test_references(void) {
    EXPECT(parse("A large red circle is left of a small blue square. The blue square is above a green "
                 "triangle. The triangle is outlined.") == 0,
           "%s", info.unparsed);
    EXPECT(g.n_entities == 3 && g.n_relations == 2, "%d entities, %d relations", g.n_entities, g.n_relations);
    EXPECT_TRUE(has_relation(0, 1, REL_LEFT_OF) && has_relation(1, 2, REL_ABOVE));
    EXPECT(g.entities[2].fill == FILL_OUTLINED, "a predicate sets the last entity's fill");
    // "the circle" fits both circles; the one stating exactly that description wins
    EXPECT(parse("a circle and a red circle. The circle is above a square.") == 0 && has_relation(0, 2, REL_ABOVE),
           "exact description first");
    EXPECT(parse("a red circle and a blue circle. The circle is above a square.") == 0 &&
               has_relation(1, 2, REL_ABOVE),
           "else the most recently mentioned");
    EXPECT(parse("two red circles and a red circle. The red circles are below the red circle.") == 0 &&
               g.n_entities == 2 && has_relation(0, 1, REL_BELOW),
           "plural picks the plural entity");
    EXPECT(parse("The red circle is left of a square.") == 0 && g.n_entities == 2, "a first 'the' introduces");
    EXPECT(parse("a red circle. The blue circle is above the red circle.") == 0 && g.n_entities == 2 &&
               has_relation(1, 0, REL_ABOVE),
           "a reference that fits nothing is new");
    EXPECT(parse("a square. The square is red and big.") == 0 && g.entities[0].color == COLOR_RED &&
               g.entities[0].size == SIZE_LARGE, "predicates joined by 'and'");
    EXPECT(parse("a blue square. The square is red.") == 1 && g.entities[0].color == COLOR_BLUE,
           "a contradicting predicate is unparsed");
}

static void test_background(void) {
    EXPECT(parse("an outlined red circle on a white background") == 0 && g.background == COLOR_WHITE &&
               g.n_entities == 1, "on a white background");
    EXPECT(parse("two squares against a grey background") == 0 && g.background == COLOR_GRAY, "grey");
    EXPECT(parse("a circle on a dark background") == 0 && g.background == COLOR_BLACK, "dark");
    EXPECT(parse("a circle on a large background") == 3 && g.background == ATTR_UNSET, "no colour: unparsed");
}

static void test_write(void) {
    const char *cases[] = {
        "three yellow triangles", "a big outlined red circle to the left of 2 blue squares",
        "A large red circle is left of a small blue square. The blue square is above a green triangle.",
        "circles and a hollow square on a purple background", "a white background",
    };
    char buf[PROMPT_MAX_LEN];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        scene_graph a, b;
        prompt_parse(cases[i], &a, NULL);
        EXPECT(prompt_write(&a, buf, sizeof buf) > 0, "%s", cases[i]);
        EXPECT(prompt_parse(buf, &b, &info) == 0 && scene_graph_equal(&a, &b), "'%s' -> '%s'", cases[i], buf);
    }
    scene_graph a;
    prompt_parse("three yellow triangles", &a, NULL);
    prompt_write(&a, buf, sizeof buf);
    EXPECT(!strcmp(buf, "Three yellow triangles."), "'%s'", buf);
    prompt_parse("a circle and a circle. The circle is above the circle.", &a, NULL);
    a.n_relations = 1;
    a.relations[0] = (relation){0, 1, REL_ABOVE};
    EXPECT(prompt_write(&a, buf, sizeof buf) == -1, "two identical entities cannot be referred to");
    prompt_parse("a red circle left of a blue square", &a, NULL);
    EXPECT(prompt_write(&a, buf, 10) == -1, "too small a buffer");
}

static void test_equal(void) {
    scene_graph a, b;
    prompt_parse("a red circle left of a blue square", &a, NULL);
    prompt_parse("a blue square. A red circle is left of the square.", &b, NULL);
    EXPECT(scene_graph_equal(&a, &b), "equal up to entity order");
    prompt_parse("a blue square. A red circle is right of the square.", &b, NULL);
    EXPECT(!scene_graph_equal(&a, &b), "relation kind differs");
    prompt_parse("a red circle left of two blue squares", &b, NULL);
    EXPECT(!scene_graph_equal(&a, &b), "count differs");
    prompt_parse("a red circle left of a blue square on a white background", &b, NULL);
    EXPECT(!scene_graph_equal(&a, &b), "background differs");
}

static void test_rouge(void) {
    // LCS("the red circle is left", "a red circle left of") = "red circle left" = 3;
    // P = 3/5, R = 3/5, F = 0.6
    EXPECT_NEAR(rouge_l("the red circle is left", "a red circle left of"), 0.6, 1e-12, 0);
    // tokens: lower case, punctuation splits: [two, red, circles] vs [two, red, squares, and, circles]:
    // LCS 3, P = 3/3, R = 3/5 -> F = 2 * 1 * 0.6 / 1.6 = 0.75
    EXPECT_NEAR(rouge_l("Two RED, circles!", "two red squares and circles"), 0.75, 1e-12, 0);
    EXPECT_NEAR(rouge_l("a b c d", "d c b a"), 0.25, 1e-12, 0);   // LCS 1 of 4 each
    EXPECT_NEAR(rouge_l("same words", "same words"), 1.0, 1e-12, 0);
    EXPECT_NEAR(rouge_l("", "anything"), 0.0, 0, 0);
    EXPECT_NEAR(rouge_l("x-y z", "x y z"), 1.0, 1e-12, 0);  // '-' separates tokens as in rouge_score
    rouge_pool p;
    rouge_pool_init(&p);
    rouge_pool_add(&p, "a red circle");
    rouge_pool_add(&p, "three blue squares above a triangle");
    int which;
    EXPECT_NEAR(rouge_pool_max(&p, "a red square", &which), 2.0 / 3, 1e-12, 0);
    EXPECT(which == 0, "best match %d", which);
    rouge_pool_free(&p);
}

int main(void) {
    test_counts();
    test_attributes();
    test_fillers_and_unparsed();
    test_relations();
    test_references();
    test_background();
    test_write();
    test_equal();
    test_rouge();
    return check_report("test_prompt_parse");
}
