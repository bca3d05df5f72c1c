// The shapes world's tokenizer: known sentences to known ids, padding, truncation,
// unknown words, the empty prompt, and coverage: every word of data/'s vocabulary
// tables and of generated prompts (all skills and pretraining captions) is known.
#include <string.h>

#include "data/prompt_gen.h"
#include "data/prompt_parse.h"
#include "data/shapes.h"
#include "models/tokenizer.h"
#include "runtime/error.h"
#include "tests/check.h"

static int id(const char *w) { return tokenizer_id(w); }

static int count_unknown(const char *text) {
    int ids[64];
    token_stats st;
    if (tokenizer_encode(text, 64, TOKEN_END, ids, &st) < 0) return -1;
    if (st.n_unknown) fprintf(stderr, "unknown word in '%s'\n", text);
    return st.n_unknown;
}

static void test_known_sentences(void) {
    int ids[16];
    token_stats st;
    int n = tokenizer_encode("Three yellow triangles.", 16, TOKEN_END, ids, &st);
    int want[] = {TOKEN_START, id("three"), id("yellow"), id("triangles"), id("."), TOKEN_END};
    EXPECT(n == 6, "length %d", n);
    for (int i = 0; i < 6; i++) EXPECT(ids[i] == want[i], "token %d: %d != %d", i, ids[i], want[i]);
    for (int i = 6; i < 16; i++) EXPECT(ids[i] == TOKEN_END, "padding %d: %d", i, ids[i]);
    EXPECT(st.n_words == 4 && st.n_unknown == 0 && st.n_truncated == 0, "stats %d %d %d",
           st.n_words, st.n_unknown, st.n_truncated);

    // Case, runs of spaces, a comma glued to a word, digits; the <pad> padding choice.
    n = tokenizer_encode("  A RED circle,2 Blue squares ", 10, TOKEN_PAD, ids, &st);
    int want2[] = {TOKEN_START, id("a"), id("red"), id("circle"), id(","), id("2"), id("blue"),
                   id("squares"), TOKEN_END, TOKEN_PAD};
    EXPECT(n == 9, "length %d", n);
    for (int i = 0; i < 10; i++) EXPECT(ids[i] == want2[i], "token %d: %d != %d", i, ids[i], want2[i]);
    for (int i = 0; i < 10; i++) EXPECT(!strcmp(tokenizer_word(want2[i]), tokenizer_word(ids[i])), "word %d", i);
    EXPECT(id("<pad>") == TOKEN_PAD && id("<start>") == TOKEN_START && id("<end>") == TOKEN_END &&
               id("<unk>") == TOKEN_UNK, "special tokens");
    // Every id maps back to its word and the vocabulary has no duplicates.
    for (int i = 0; i < tokenizer_vocab_size(); i++)
        EXPECT(tokenizer_id(tokenizer_word(i)) == i, "word %d '%s' is not unique", i, tokenizer_word(i));
    EXPECT(tokenizer_word(tokenizer_vocab_size()) == NULL && tokenizer_word(-1) == NULL, "out of range");
}

static void test_empty_unknown_truncation(void) {
    int ids[8];
    token_stats st;
    int n = tokenizer_encode("", 8, TOKEN_END, ids, &st);
    EXPECT(n == 2 && ids[0] == TOKEN_START, "empty length %d", n);
    for (int i = 1; i < 8; i++) EXPECT(ids[i] == TOKEN_END, "empty %d: %d", i, ids[i]);
    n = tokenizer_encode(" \t ", 8, TOKEN_PAD, ids, &st);
    EXPECT(n == 2 && ids[1] == TOKEN_END && ids[2] == TOKEN_PAD && st.n_words == 0, "blank %d", n);

    n = tokenizer_encode("a zebra-striped circle & a dodecahedron", 8, TOKEN_END, ids, &st);
    EXPECT(n == 7 && st.n_unknown == 2 && st.n_words == 5, "unknown: n %d unknown %d words %d", n,
           st.n_unknown, st.n_words);
    EXPECT(ids[2] == TOKEN_UNK && ids[5] == TOKEN_UNK && ids[3] == id("circle"), "unk ids");
    char longw[80];
    memset(longw, 'a', sizeof longw - 1);
    longw[sizeof longw - 1] = 0;
    n = tokenizer_encode(longw, 8, TOKEN_END, ids, &st);
    EXPECT(n == 3 && ids[1] == TOKEN_UNK && st.n_unknown == 1, "long word");

    // 8 tokens: start + 6 words + end; the other 3 words are dropped, <end> kept last.
    n = tokenizer_encode("one two three four red green blue yellow purple", 8, TOKEN_END, ids, &st);
    EXPECT(n == 8 && ids[6] == id("green") && ids[7] == TOKEN_END, "truncated: n %d last %d", n, ids[7]);
    EXPECT(st.n_truncated == 3 && st.n_words == 9, "truncated %d", st.n_truncated);
    n = tokenizer_encode("red green", 2, TOKEN_END, ids, &st);
    EXPECT(n == 2 && ids[0] == TOKEN_START && ids[1] == TOKEN_END && st.n_truncated == 2, "max 2");

    EXPECT(tokenizer_encode("red", 1, TOKEN_END, ids, NULL) == -1 && strstr(err_msg(), "max_tokens"),
           "max_tokens 1: %s", err_msg());
    EXPECT(tokenizer_encode("red", 8, TOKEN_UNK, ids, NULL) == -1, "pad id");
    EXPECT(tokenizer_encode(NULL, 8, TOKEN_END, ids, NULL) == -1, "NULL text");
}

// The tokenizer's list is its own (models/ may not include data/): every word that
// data/ writes must be in it.
static void test_coverage(void) {
    for (int i = 0; i < SHAPE_COUNT; i++)
        EXPECT(id(shape_names[i]) >= 0 && id(shape_plurals[i]) >= 0, "shape %s", shape_names[i]);
    for (int i = 0; i < COLOR_COUNT; i++) EXPECT(id(color_names[i]) >= 0, "colour %s", color_names[i]);
    for (int s = 0; s < SIZE_STYLES; s++)
        for (int v = 0; v < SIZE_COUNT; v++) EXPECT(id(size_words[s][v]) >= 0, "size %s", size_words[s][v]);
    for (int s = 0; s < FILL_STYLES; s++)
        for (int v = 0; v < FILL_COUNT; v++) EXPECT(id(fill_words[s][v]) >= 0, "fill %s", fill_words[s][v]);
    for (int s = 0; s < REL_STYLES; s++)
        for (int k = 0; k < REL_COUNT; k++)
            EXPECT(count_unknown(relation_words[s][k]) == 0, "relation '%s'", relation_words[s][k]);
    for (int k = 1; k <= 4; k++) {
        char digit[2] = {(char)('0' + k), 0};
        EXPECT(id(count_words[k]) >= 0 && id(digit) >= 0, "number %d", k);
    }
    EXPECT(id("background") >= 0 && id("big") >= 0 && id("grey") >= 0, "background, big, grey");

    // Generated prompts of every skill and pretraining captions: no unknown word.
    // Also how long they get in tokens (start and end included), against the shapes
    // world's 16.
    prompt_gen_opts opts;
    prompt_gen_defaults(&opts);
    for (int skill = SKILL_COUNT; skill <= SKILL_PRETRAIN; skill++) {
        prompt_list l = {0};
        prompt_gen_stats stats;
        int rc = prompt_generate(skill, skill == SKILL_PRETRAIN ? 200 : 30, 7, &opts, &l, &stats);
        EXPECT(rc == 0, "prompt_generate(%s): %s", skill_names[skill], err_msg());
        int unknown = 0, longest = 0, over = 0;
        for (int i = 0; i < l.n; i++) {
            int ids[64];
            token_stats st;
            int n = tokenizer_encode(l.text[i], 64, TOKEN_END, ids, &st);
            unknown += st.n_unknown;
            longest = n > longest ? n : longest;
            over += n > 16;
        }
        EXPECT(unknown == 0, "%s: %d unknown words", skill_names[skill], unknown);
        printf("%-8s %3d prompts, longest %2d tokens, %3d over 16\n", skill_names[skill], l.n, longest, over);
        prompt_list_free(&l);
    }
}

int main(void) {
    test_known_sentences();
    test_empty_unknown_truncation();
    test_coverage();
    return check_report("test_tokenizer");
}
