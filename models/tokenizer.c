#include "models/tokenizer.h"

#include <string.h>

#include "runtime/error.h"

// Ids are positions in this list: never reorder or remove entries (trained token
// embeddings depend on them); append new words at the end.
static const char *const vocab[] = {
    "<pad>", "<start>", "<end>", "<unk>",
    ",", ".", ";", ":", "!", "?",
    "a", "an", "the", "and", "is", "are",
    "one", "two", "three", "four", "1", "2", "3", "4",
    "red", "green", "blue", "yellow", "purple", "white", "black", "gray", "grey", "dark",
    "circle", "square", "triangle", "circles", "squares", "triangles",
    "small", "large", "tiny", "big", "little", "huge",
    "filled", "outlined", "solid", "hollow",
    "left", "right", "of", "to", "on", "above", "below", "over", "under", "beneath",
    "background",
    "there", "with", "in", "against", "which", "that", "shows", "showing", "contains",
    "containing", "has", "some", "also", "plus", "while", "sits", "placed", "located",
    "this", "image", "picture", "photo", "drawing", "scene",
};

#define VOCAB_SIZE ((int)(sizeof vocab / sizeof *vocab))

int tokenizer_vocab_size(void) { return VOCAB_SIZE; }

const char *tokenizer_word(int id) { return id >= 0 && id < VOCAB_SIZE ? vocab[id] : NULL; }

int tokenizer_id(const char *word) {
    for (int i = 0; i < VOCAB_SIZE; i++)
        if (!strcmp(word, vocab[i])) return i;
    return -1;
}

static int is_word_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '\'' || c == '-' || c >= 0x80;
}

int tokenizer_encode(const char *text, int max_tokens, int pad_id, int *ids,
                     token_stats *stats) {
    if (!text || !ids) return err_set("tokenizer_encode: NULL text or ids");
    if (max_tokens < 2) return err_set("tokenizer_encode: max_tokens %d < 2", max_tokens);
    if (pad_id != TOKEN_END && pad_id != TOKEN_PAD)
        return err_set("tokenizer_encode: pad id %d is neither <end> nor <pad>", pad_id);
    token_stats st = {0};
    int n = 0;
    ids[n++] = TOKEN_START;
    for (const char *s = text; *s;) {
        unsigned char c = (unsigned char)*s;
        char w[TOKENIZER_MAX_WORD + 1];
        int len = 0, too_long = 0;
        if (is_word_char(c)) {
            for (; *s && is_word_char((unsigned char)*s); s++) {
                c = (unsigned char)*s;
                if (len < TOKENIZER_MAX_WORD) w[len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                else too_long = 1;
            }
        } else if (strchr(",.;:!?", c)) {
            w[len++] = (char)c;
            s++;
        } else {
            s++;  // spaces and any other mark separate words
            continue;
        }
        w[len] = 0;
        int id = too_long ? -1 : tokenizer_id(w);
        st.n_words++;
        if (id < 0) st.n_unknown++;
        if (n < max_tokens - 1) ids[n++] = id < 0 ? TOKEN_UNK : id;
        else st.n_truncated++;
    }
    ids[n++] = TOKEN_END;
    int length = n;
    while (n < max_tokens) ids[n++] = pad_id;
    if (stats) *stats = st;
    return length;
}
