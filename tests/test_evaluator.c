// The evaluator (data/questions.h, data/evaluate.h): question graphs, the answering
// rules on hand-made detections (dependencies, fair matching of entities that share a
// shape, counts, relations, background, chance), then its accuracy on rendered
// images: 500 prompts per skill drawn exactly (DSG >= 0.99), blurred and noisy (DSG >=
// 0.95), and paired with another prompt of the same skill (far lower; printed next to
// the random-answer chance level and an empty canvas).
#include "tests/check.h"

#include "data/detect.h"
#include "data/evaluate.h"
#include "data/prompt_gen.h"
#include "data/prompt_parse.h"
#include "data/render.h"
#include "runtime/error.h"

static detection det(int shape, int color, int size, int fill, float cx, float cy) {
    return (detection){color, shape, size, fill, cx, cy, 20};
}

static prompt_scores score(const char *prompt, const detection *ds, int n, int background) {
    scene_graph g;
    detections d = {background, n, {{0}}};
    for (int i = 0; i < n; i++) d.d[i] = ds[i];
    EXPECT(prompt_parse(prompt, &g, NULL) == 0, "'%s' parses", prompt);
    prompt_scores s;
    prompt_score(&g, &d, &s);
    return s;
}

static void test_questions(void) {
    scene_graph g;
    question_set qs;
    prompt_parse("three yellow triangles", &g, NULL);
    questions_dsg(&g, &qs);
    EXPECT(qs.n == 3 && qs.q[0].kind == QUESTION_EXIST && qs.q[1].kind == QUESTION_COLOR &&
               qs.q[2].kind == QUESTION_COUNT && qs.q[1].parents[0] == 0 && qs.q[2].parents[0] == 0,
           "entity, colour, count: %d questions", qs.n);
    EXPECT(!strcmp(qs.q[2].text, "Are there exactly 3 yellow triangles?"), "'%s'", qs.q[2].text);
    prompt_parse("a red circle left of an outlined blue square on a white background", &g, NULL);
    questions_dsg(&g, &qs);
    EXPECT(qs.n == 7, "background, 2 entities, 2 colours, a fill, a relation: %d", qs.n);
    EXPECT(qs.q[0].kind == QUESTION_BACKGROUND && qs.q[0].n_parents == 0, "background is a root");
    const question *rel = &qs.q[qs.n - 1];
    EXPECT(rel->kind == QUESTION_RELATION && rel->n_parents == 2 && qs.q[rel->parents[0]].entity == 0 &&
               qs.q[rel->parents[1]].entity == 1,
           "a relation depends on both entities");
    questions_tifa(&g, &qs);
    const char *choices[8];
    EXPECT(qs.n == 7 && question_choices(&qs.q[0], choices, 8) == COLOR_COUNT, "background: 8 colours");
    int fill_q = -1;
    for (int i = 0; i < qs.n; i++)
        if (qs.q[i].kind == QUESTION_FILL) fill_q = i;
    EXPECT(fill_q >= 0 && question_choices(&qs.q[fill_q], choices, 8) == 2 && !strcmp(choices[qs.q[fill_q].answer], "outlined"),
           "fill: filled/outlined");
    prompt_parse("red circles", &g, NULL);
    questions_dsg(&g, &qs);
    EXPECT(qs.n == 3 && qs.q[2].kind == QUESTION_COUNT && qs.q[2].at_least, "a bare plural asks 'at least two'");
}

static void test_answers(void) {
    const int C = SHAPE_CIRCLE, S = SHAPE_SQUARE, L = SIZE_LARGE, M = SIZE_SMALL, F = FILL_FILLED, O = FILL_OUTLINED;
    detection d[4];
    prompt_scores s;

    d[0] = det(C, COLOR_BLUE, L, F, 10, 10);
    s = score("a red circle", d, 1, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 0.5, 1e-12, 0);  // circle yes, red no
    d[0] = det(S, COLOR_RED, L, F, 10, 10);
    s = score("a red circle", d, 1, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 0.0, 1e-12, 0);   // no circle: its colour question fails with it
    EXPECT_NEAR(s.tifa, 0.5, 1e-12, 0);  // TIFA has no parents: "what colour is the circle?" -> red
    EXPECT_NEAR(s.chance_dsg, (0.5 + 0.25) / 2, 1e-12, 0);
    EXPECT_NEAR(s.chance_tifa, (0.5 + 1.0 / 6) / 2, 1e-12, 0);

    // fair matching: a first-come assignment would give the large red circle to "a red
    // circle" and leave "a large circle" with a small one
    d[0] = det(C, COLOR_RED, L, F, 10, 10);
    d[1] = det(C, COLOR_RED, M, F, 20, 10);
    s = score("a red circle and a large circle", d, 2, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 1.0, 1e-12, 0);

    d[0] = det(C, COLOR_RED, M, F, 5, 5);
    d[1] = det(C, COLOR_RED, M, F, 15, 5);
    d[2] = det(C, COLOR_RED, M, F, 25, 5);
    s = score("two red circles", d, 3, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 2.0 / 3, 1e-12, 0);  // a third red circle: the number is wrong
    d[2] = det(C, COLOR_BLUE, M, F, 25, 5);
    s = score("two red circles", d, 3, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 1.0, 1e-12, 0);
    d[2] = det(C, COLOR_BLUE, M, O, 25, 5);
    s = score("two circles and an outlined circle", d, 3, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 1.0, 1e-12, 0);  // the outlined one belongs to the other entity

    // relations: every member against every member
    d[0] = det(C, COLOR_RED, M, F, 5, 5);
    d[1] = det(C, COLOR_RED, M, F, 25, 5);
    d[2] = det(S, COLOR_BLUE, M, F, 15, 20);
    s = score("two red circles left of a blue square", d, 3, COLOR_BLACK);
    EXPECT(s.dsg < 1 && s.n_dsg == 6, "one circle is right of the square: %g", s.dsg);
    s = score("two red circles above a blue square", d, 3, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 1.0, 1e-12, 0);
    // of two red circles the one that makes the relation true is chosen
    s = score("a red circle right of a blue square", d, 3, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 1.0, 1e-12, 0);
    s = score("a red circle left of a blue square", d, 3, COLOR_BLACK);
    EXPECT_NEAR(s.dsg, 1.0, 1e-12, 0);

    s = score("a circle on a white background", d, 3, COLOR_WHITE);
    EXPECT_NEAR(s.dsg, 1.0, 1e-12, 0);
    s = score("a circle on a white background", d, 3, COLOR_GRAY);
    EXPECT_NEAR(s.dsg, 0.5, 1e-12, 0);
    s = score("", d, 3, COLOR_GRAY);
    EXPECT(s.n_dsg == 0 && s.dsg == 0, "nothing to ask");
}

// Renders the prompts of every skill and scores them: clean, degraded, mismatched.
static void test_rendered(void) {
    enum { N = 500, W = 32 };
    static uint8_t img[N * W * W * 3], blank[W * W * 3];
    scene sc = {W, W, COLOR_BLACK, 0, {{0}}};
    scene_render(&sc, blank);
    prompt_gen_opts o;
    prompt_gen_defaults(&o);
    printf("%-9s %8s %8s %10s %10s %8s %8s\n", "skill", "clean", "degraded", "mismatched", "chance", "empty", "TIFA mis");
    for (int s = 0; s <= SKILL_PRETRAIN; s++) {
        prompt_list l = {0};
        prompt_gen_stats st;
        EXPECT(prompt_generate(s, N, 11, &o, &l, &st) == 0, "%s", err_msg());
        for (int i = 0; i < l.n; i++) {
            scene_graph full, stated;
            char text[PROMPT_MAX_LEN];
            const scene_graph *g = &l.graph[i];
            if (s == SKILL_PRETRAIN) {
                prompt_pretrain_item(11, i, &full, text, sizeof text, &stated);
                g = &full;
            }
            EXPECT(scene_place(g, W, W, 0, 100 + (uint64_t)i, &sc) == 0, "'%s': %s", l.text[i], err_msg());
            scene_render(&sc, img + (size_t)i * W * W * 3);
        }
        eval_totals clean, degraded, mismatched, empty;
        eval_init(&clean); eval_init(&degraded); eval_init(&mismatched); eval_init(&empty);
        int shown = 0;
        detections none;
        detect_objects(blank, W, W, &none);
        for (int i = 0; i < l.n; i++) {
            uint8_t *im = img + (size_t)i * W * W * 3;
            prompt_scores ps;
            detections d;
            detect_objects(im, W, W, &d);
            eval_add_detections(&clean, l.text[i], s, &d, &ps);
            if (ps.dsg < 1 && shown++ < 3) {
                fprintf(stderr, "%s: clean DSG %.2f for '%s'; detected:", skill_names[s], ps.dsg, l.text[i]);
                for (int k = 0; k < d.n; k++)
                    fprintf(stderr, " [%s %s %s %s at %.1f,%.1f]", size_names[d.d[k].size], fill_names[d.d[k].fill],
                            color_names[d.d[k].color], shape_names[d.d[k].shape], d.d[k].cx, d.d[k].cy);
                fprintf(stderr, "\n");
            }
            // the next prompt of the same skill: another scene entirely
            eval_add_detections(&mismatched, l.text[(i + 1) % l.n], s, &d, NULL);
            eval_add_detections(&empty, l.text[i], s, &none, NULL);
        }
        for (int i = 0; i < l.n; i++) {
            uint8_t *im = img + (size_t)i * W * W * 3;
            image_degrade(im, W, W, 0.8f, 0.05f, 1000 + (uint64_t)i);
            eval_add(&degraded, l.text[i], s, im, W, W, NULL);
        }
        double c, dg, mm, ch, em, tm;
        eval_mean(&clean, s, &c, NULL, NULL, NULL, NULL);
        eval_mean(&degraded, s, &dg, NULL, NULL, NULL, NULL);
        eval_mean(&mismatched, s, &mm, &tm, &ch, NULL, NULL);
        eval_mean(&empty, s, &em, NULL, NULL, NULL, NULL);
        printf("%-9s %8.4f %8.4f %10.4f %10.4f %8.4f %8.4f\n", skill_names[s], c, dg, mm, ch, em, tm);
        EXPECT(c >= 0.99, "%s: clean DSG %.4f < 0.99", skill_names[s], c);
        EXPECT(dg >= 0.95, "%s: degraded DSG %.4f < 0.95", skill_names[s], dg);
        EXPECT(mm <= 0.5 && mm < c - 0.45, "%s: mismatched DSG %.4f is not far lower", skill_names[s], mm);
        EXPECT(em < 0.1, "%s: an empty canvas scores %.4f", skill_names[s], em);
        prompt_list_free(&l);
    }
}

int main(void) {
    test_questions();
    test_answers();
    test_rendered();
    return check_report("test_evaluator");
}
