// The shapes world's word-level tokenizer: a fixed vocabulary of the words its
// prompts use (data/shapes.h's names and the prompt language's synonyms, articles,
// relation words and fillers; numbers one..four and 1..4; the marks , . ; : ! ?)
// plus four special tokens. It stands where CLIP's BPE tokenizer stands in the sd
// world: ids go to the text encoder's token embedding.
//
// Encoding, as CLIPTokenizer(padding="max_length", truncation=True) does:
//   lower-case; split on anything that is not a letter, digit, ' or - (as the
//   prompt parser does); each of , . ; : ! ? is a token of its own;
//   ids = <start> w1 .. wk <end> <pad>...  with exactly max_tokens ids;
//   more than max_tokens - 2 words: the rest are dropped (counted), <end> is kept
//   last; a word outside the vocabulary becomes <unk> (counted);
//   the empty prompt (classifier-free guidance's unconditional) is
//   <start> <end> <pad>... .
// Padding: `pad_id` picks it. TOKEN_END pads as SD 1.x's CLIP tokenizer does (its pad
// token is <|endoftext|>); TOKEN_PAD uses a token of its own. The shapes world uses
// TOKEN_END (TOKENIZER_DEFAULT_PAD) so that conditioning looks like SD 1.x's. The
// causal text encoder makes the choice invisible to the tokens before <end> either way.
//
// models/ may not include data/: the vocabulary is listed here, and
// tests/test_tokenizer.c checks that every word of data/'s tables and of generated
// prompts is in it.
#ifndef SELMA_MODELS_TOKENIZER_H
#define SELMA_MODELS_TOKENIZER_H

#ifdef __cplusplus
extern "C" {
#endif

enum { TOKEN_PAD = 0, TOKEN_START = 1, TOKEN_END = 2, TOKEN_UNK = 3 };
#define TOKENIZER_DEFAULT_PAD TOKEN_END
#define TOKENIZER_MAX_WORD 32  // longer words are <unk>

typedef struct token_stats {
    int n_words;      // words and marks in the text
    int n_unknown;    // of those, mapped to <unk> (dropped ones included)
    int n_truncated;  // words past max_tokens - 2, dropped
} token_stats;

int tokenizer_vocab_size(void);
const char *tokenizer_word(int id);      // "<start>", "red", ...; NULL if out of range
int tokenizer_id(const char *word);      // exact, lower-case; -1 if not in the vocabulary

// Writes exactly max_tokens ids. Returns the count before padding (start and end
// included: where <end> sits + 1), or -1 with a message if max_tokens < 2, the pad
// id is not TOKEN_END or TOKEN_PAD, or an argument is NULL. stats may be NULL.
int tokenizer_encode(const char *text, int max_tokens, int pad_id, int *ids,
                     token_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
