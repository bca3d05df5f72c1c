// CLIP's byte-level BPE tokenizer (the sd world's), loaded from a diffusers
// `tokenizer/` folder and matching transformers 5's CLIPTokenizer (the `tokenizers`-
// backed one; tests/test_clip_tokenizer.c compares ids with it on awkward strings).
//
// Files:
//   vocab.json              {"token": id, ...}
//   merges.txt              "#version..." lines skipped; then one merge "a b" a line,
//                           rank = order; a, b and ab must be in the vocabulary
//   tokenizer_config.json   model_max_length, bos/eos/unk/pad_token (a string or an
//                           AddedToken object: "content", "normalized"),
//                           added_tokens_decoder
//   special_tokens_map.json optional; its tokens override the config's (transformers)
// Missing special tokens take CLIPTokenizer's defaults (<|startoftext|>, and
// <|endoftext|> for eos, unk and pad); a missing model_max_length is CLIP's 77.
//
// Encoding, as CLIPTokenizer(padding="max_length", truncation=True):
//  1. special tokens are split out of the raw text first (leftmost-longest), those
//     marked "normalized" after step 2 instead. Strings register with normalized
//     false; a token registered twice (SD 1.x's eos and pad) keeps the last flag,
//     except that added_tokens_decoder entries are final. So SD 1.x matches
//     "<|StartOfText|>" as bos but not "<|EndOfText|>" as eos, and SD 2.x, whose pad
//     is the plain string "!", turns every "!" in a prompt into pad's id 0;
//  2. NFC, runs of Unicode White_Space -> " ", per-code-point full lower-case
//     (İ -> i + U+0307, Σ -> σ even word-finally: tokenizers has no context rule);
//  3. split: <|startoftext|> | <|endoftext|> | 's 't 're 've 'm 'll 'd | letters+
//     | one number | (not space, letter, number)+ ; spaces dropped. Then ByteLevel's
//     GPT-2 split inside each piece, which only changes the special-string pieces
//     ("<|startoftext|>" not matched as a token becomes "<|", "startoftext", "|>");
//  4. each piece's UTF-8 bytes -> GPT-2's byte-to-unicode symbols, "</w>" on the
//     last; BPE as tokenizers does it (lowest rank first, leftmost on ties, via a
//     heap); a symbol missing from the vocabulary is unk;
//  5. bos + the first max_len - 2 ids + eos, padded with pad to max_len.
// ftfy plays no part: transformers 5 has no other CLIPTokenizer. (transformers 4's
// slow one without ftfy cleaned with BasicTokenizer instead: control characters
// dropped, every CJK ideograph a word of its own; selma does not follow that.)
// Letter/number classes, White_Space, NFC and lower-casing come from ICU (the
// Unicode version of the system's ICU; tokenizers may be one version apart).
//
// Input is NUL-terminated UTF-8. Invalid UTF-8 does not fail: each maximal invalid
// subpart (a bad byte, a truncated or overlong sequence, a surrogate) becomes U+FFFD,
// as Python's bytes.decode(errors="replace") does, and is then tokenized as a
// symbol (bytes EF BF BD).
#ifndef SELMA_MODELS_CLIP_TOKENIZER_H
#define SELMA_MODELS_CLIP_TOKENIZER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLIP_MAX_SPECIAL 16
#define CLIP_DEFAULT_MAX_LENGTH 77

typedef struct clip_special {
    int32_t *cps;      // (n) the token's code points
    int n;
    int id;
    int normalized;    // matched after normalization (step 2) rather than before
    int final;         // from added_tokens_decoder: later registrations keep its flag
} clip_special;

typedef struct clip_tokenizer {
    int n_tokens;             // entries in vocab.json
    int id_bound;             // largest id + 1
    char **token;             // (id_bound) id -> token text, NULL for unused ids
    int *vocab_slot;          // (vocab_cap) open addressing: id or -1
    int vocab_cap;            // power of two
    uint64_t *merge_key;      // (merge_cap) left id << 32 | right id; UINT64_MAX empty
    int *merge_rank;          // (merge_cap)
    int *merge_id;            // (merge_cap) id of the merged token
    int merge_cap, n_merges;
    int byte_id[256];         // the byte's symbol, -1 if missing (then unk)
    int byte_end_id[256];     // the same with "</w>"
    clip_special special[CLIP_MAX_SPECIAL];
    int n_special;
    int bos_id, eos_id, unk_id, pad_id;
    int model_max_length;
} clip_tokenizer;

// Loads DIR/vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json
// (if present). -1 with a message naming the file and the line (merges.txt, JSON
// syntax) or key; t is then empty (clip_tokenizer_free is still safe).
int clip_tokenizer_load(clip_tokenizer *t, const char *dir);
void clip_tokenizer_free(clip_tokenizer *t);

// Writes exactly max_len ids (max_len <= 0: model_max_length). Returns the count
// before padding (bos and eos included), or -1 with a message (max_len < 2, NULL
// argument). n_dropped (may be NULL): tokens cut by truncation.
int clip_tokenizer_encode(const clip_tokenizer *t, const char *text, int max_len, int *ids,
                          int *n_dropped);

int clip_tokenizer_id(const clip_tokenizer *t, const char *token);   // -1 if absent
const char *clip_tokenizer_token(const clip_tokenizer *t, int id);   // NULL if absent

#ifdef __cplusplus
}
#endif
#endif
