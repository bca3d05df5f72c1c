"""Makes tests/fixtures/clip_tokenizer_sd1/, clip_tokenizer_sd2/ and
clip_tokenizer_ids.json for tests/test_clip_tokenizer.c: two tiny CLIP tokenizer
folders in diffusers' tokenizer/ layout and transformers' CLIPTokenizer ids for a list
of awkward strings. Nothing is downloaded: the vocabulary and merges are built here.

Made with: Python 3.11.7, transformers 5.24.0, tokenizers 0.23.3 (no ftfy)
  python3 -m venv /tmp/tok-venv && /tmp/tok-venv/bin/pip install transformers==5.24.0 tokenizers==0.23.3
  /tmp/tok-venv/bin/python tools/make_clip_tokenizer_fixture.py

transformers 5's CLIPTokenizer is the `tokenizers`-backed one whatever ftfy says:
NFC, whitespace runs -> " ", lower-case; CLIP's split pattern, then ByteLevel's; BPE
with "</w>". models/clip_tokenizer.h describes what selma matches.

The vocabulary is laid out as CLIP's: the 256 byte symbols of GPT-2's byte-to-unicode
map, the same with "</w>", one entry per merge, then <|startoftext|> and
<|endoftext|>. The merges are learned here by plain BPE (most frequent pair first,
ties broken by the pair itself) over the words of a few sentences, so that merges
cover ASCII, accents, CJK and emoji bytes. The two folders differ only in the pad
token: SD 1.x pads with <|endoftext|>, SD 2.x with "!" (a plain string in its
configs, so "!" in a prompt is split out as that special token, as transformers does).
"""
import collections
import json
import os
import re

from transformers import CLIPTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
N_MERGES = 300

CORPUS = """
a photo of a cat sitting on the red sofa, the cat's tail is long and fluffy.
three yellow triangles to the left of two blue circles; it's a painting.
they'll say that we've been there and I'm sure you'd agree: they're right!
an astronaut riding a horse on the moon, highly detailed, 4k, trending.
café Ñandú crème brûlée über naïve jalapeño façade
東京の夜景 中文 字符 猫 🐱 🚀 emoji 😀 rocket
the quick brown fox jumps over the lazy dog 123 456 7890 !!! ??? ...
"""

SENTENCES = [
    "",
    "a photo of a cat",
    "A Photo Of A CAT, Sitting On The RED sofa!!!",
    "three yellow triangles to the left of two blue circles.",
    "it's they'll we've I'm you'd they're don't can't",
    "IT'S THEY'LL 'S 'sa ''s '' rock'n'roll",
    "123 4567 3.14159 1,000,000 2nd 10x",
    "café Ñandú crème brûlée über naïve jalapeño",
    "cafe\u0301 decomposed e\u0301 and q\u0301 (no precomposed q-acute)",
    "ΟΔΟΣ Σίσυφος İstanbul ǅ ß ﬁ",
    "emoji 🐱🚀 😀😀 👩\u200d🚀 🇫🇷",
    "東京の夜景 中文字符 猫 한국어",
    "  many   spaces\tand\ttabs\nand\n\nnewlines \r\n end  ",
    "nbsp\u00a0ideographic\u3000space\u2003em zero\u200bwidth",
    "punctuation: @#$%^&*()_+-=[]{}|;':\",./<>?`~ «quotes» — dash…",
    "<|startoftext|>",
    "a <|startoftext|> b <|endoftext|> c",
    "<|StartOfText|> and <|EndOfText|> in other case",
    "<|endoftext|><|endoftext|>x<|startoftext|>",
    "hello! hi!! wow!!! ! !?",
    "x\x1cy\x85z unit\x1fseparator",
    "replacement \ufffd char and private \ue000 use",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    " ".join(["over-long prompt with many words"] * 20),
    "a, " * 60,
    "".join(chr(c) for c in range(0x21, 0x7f)),
]


def bytes_to_unicode():
    """GPT-2's map of bytes to printable code points (the printable Latin-1 bytes map
    to themselves, the rest to 256 + n), in the order of CLIP's vocabulary: the
    printable bytes first ("!" is id 0), then the others."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    rest = [b for b in range(256) if b not in keep]
    return {b: chr(b) for b in keep} | {b: chr(256 + n) for n, b in enumerate(rest)}


def learn_merges(text, byte_sym, n_merges):
    words = collections.Counter(re.findall(r"\S+", text.lower()))
    seqs = {}
    for w, c in words.items():
        syms = [byte_sym[b] for b in w.encode("utf-8")]
        syms[-1] += "</w>"
        seqs[tuple(syms)] = c
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for s, c in seqs.items():
            for p in zip(s, s[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = {}
        for s, c in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + c
        seqs = merged
    return merges


def added_token(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def write_folder(name, vocab, merges, pad):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    # As SD checkpoints ship them: AddedToken dicts for bos/eos/unk, pad a string.
    specials = {"bos_token": added_token("<|startoftext|>"),
                "eos_token": added_token("<|endoftext|>"),
                "unk_token": added_token("<|endoftext|>"), "pad_token": pad}
    config = {"add_prefix_space": False, "do_lower_case": True, "errors": "replace",
              "model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}
    for k, v in specials.items():
        config[k] = dict(v, __type="AddedToken") if isinstance(v, dict) else v
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(d, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(specials, f, indent=2)
    return CLIPTokenizer.from_pretrained(d)


def main():
    byte_sym = bytes_to_unicode()
    symbols = list(byte_sym.values())
    merges = learn_merges(CORPUS, byte_sym, N_MERGES)
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "a merge repeats a token"

    out = {"made_by": "tools/make_clip_tokenizer_fixture.py (transformers 5.24.0, tokenizers 0.23.3)",
           "max_length": 77, "strings": SENTENCES}
    for name, pad in (("sd1", "<|endoftext|>"), ("sd2", "!")):
        tok = write_folder(f"clip_tokenizer_{name}", vocab, merges, pad)
        enc = tok(SENTENCES, padding="max_length", max_length=77, truncation=True)
        out[name] = enc["input_ids"]
        print(name, "pad", tok.pad_token_id, "bos", tok.bos_token_id, "eos", tok.eos_token_id,
              "vocab", len(vocab), "merges", len(merges))
    with open(os.path.join(ROOT, "clip_tokenizer_ids.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
