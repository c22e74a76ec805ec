"""Tokenizer directories as transformers 5 writes them, and the prompts every tokenizer reader is compared on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from turbo_edge.core import world
from turbo_edge.spec.tokenizer_files import write_tokenizer

# Punctuation, digits, contractions, an unknown word, whitespace and case, one prompt that truncates, none at all.
TOKENIZER_PROMPTS = [
    "a red circle moving left",
    "A  White DIAMOND, staying still.",
    "a dog jumping!! 12 _x",
    "it's a square that'll move; they're 3",
    "zebra",
    "purple " * 20,
    "",
]


def transformers_json_tokenizer(directory: Path, max_length: int) -> Path:
    """The project's world vocabulary, loaded by transformers' CLIPTokenizer and saved again: tokenizer.json only."""
    from transformers import CLIPTokenizer

    src = write_tokenizer(directory.parent / f".{directory.name}_bpe_pair", world.vocabulary(), max_length)
    CLIPTokenizer.from_pretrained(src).save_pretrained(directory)
    shutil.rmtree(src)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):  # whatever this transformers still writes
        (directory / name).unlink(missing_ok=True)
    assert sorted(p.name for p in directory.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    return directory


def with_string_merges(directory: Path) -> Path:
    """Rewrite tokenizer.json's merges as ``"a b"`` strings (the other form transformers writes)."""
    path = directory / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return directory


# The Unigram (T5 / UMT5) tokenizer's shared cases: punctuation, digits, Unicode outside the vocabulary, words never
# seen (letters then), whitespace of every kind, a prompt longer than the model's length (truncation keeps </s>), none.
UNIGRAM_PROMPTS = [
    "a red circle moving left",
    "A  White DIAMOND, staying still.",
    "a dog jumping!! 12 _x",
    "it's a square that'll move; they're 3",
    "zebra",
    "héllo wörld — 你好 🎉 café",
    "  leading and trailing  ",
    "a\tred\ncircle",
    "12345 67.8 3,000",
    "purple " * 30,
    "",
]
UNIGRAM_LENGTH = 24


def unigram_json_tokenizer(directory: Path, max_length: int = UNIGRAM_LENGTH) -> Path:
    """A T5 Unigram tokenizer over the world's words (plus letters and digits) as transformers 5 writes it, the way
    the Wan test pipeline builds its own (``tests/tiny_models.py``): ``tokenizer.json`` + ``tokenizer_config.json``."""
    from transformers import T5Tokenizer

    from turbo_edge.core.wan import unigram_vocab

    tok = T5Tokenizer(vocab=unigram_vocab(world.vocabulary() + ["cat", "dog", "running"]), extra_ids=0, model_max_length=max_length)
    tok.save_pretrained(directory)
    return directory


# ------------------------------------------------------------ Google's UMT5 form: a SentencePiece precompiled charsmap

# What a real T5 / UMT5 tokenizer.json's Precompiled normaliser (SentencePiece's nmt_nfkc map) rewrites, one pool a
# kind: full-width forms, ligatures, compatibility characters, decomposed accents, emoji (ZWJ sequences, modifiers,
# flags, keycaps), Hangul (syllables, conjoining and compatibility jamo), Unicode white space, zero-width and format
# characters, Indic conjuncts, prepended and spacing marks, controls, CJK, and T5's special tokens inside a prompt.
CHARSMAP_POOLS: list[list[str]] = [
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?;:'\"-_()"),
    [" ", " ", " ", "\t", "\n", "\r", "\r\n", "  ", "   "],
    [chr(c) for c in range(0xFF01, 0xFF5F)] + ["\u3000"],
    [chr(c) for c in range(0xFB00, 0xFB07)],
    [chr(c) for c in range(0x2460, 0x24FF)] + [chr(c) for c in range(0x3380, 0x33FF)] + list("²³¹ⅫⅣ™℃№…½"),
    [chr(c) for c in range(0x300, 0x370)],
    [chr(c) for c in range(0xC0, 0x100)],
    ["🎉", "👩\u200d👩\u200d👧", "👍🏽", "🇫🇷", "🇩🇪🇫", "1\ufe0f\u20e3", "\u2764\ufe0f", "©\u200d©", "\U0001f3f3\ufe0f\u200d\U0001f308"],
    [chr(c) for c in range(0xAC00, 0xAC40)] + [chr(c) for c in range(0x1100, 0x1200, 7)] + [chr(c) for c in range(0x3131, 0x318F, 3)]
    + [chr(c) for c in range(0xFFA0, 0xFFDC, 3)],
    ["\u00a0", "\u2000", "\u2003", "\u200a", "\u1680", "\u202f", "\u205f", "\u0085", "\u2028", "\u3000"],
    ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\ufe0f"],
    ["क्ष", "क", "्", "ष", "\u0600", "\u0600a", "ก", "\u0e33", "\u0903", "\u0915\u093c\u094d\u0937"],
    [chr(c) for c in list(range(1, 0x20)) + list(range(0x7F, 0xA0))],
    list("你好世界日本語テキスト한국어"),
    ["</s>", "<pad>", "<unk>", "<extra_id_0>", "<extra_id_2>", "</s", "<extra_id_"],
]

# The shared Unigram cases, then one or more a kind of what the charsmap rewrites (and how the normalisers after it,
# the added tokens and truncation meet it).
PRECOMPILED_PROMPTS = UNIGRAM_PROMPTS + [
    "ＡＢＣ ｆｕｌｌ ｗｉｄｔｈ！",
    "ﬁne ﬂow oﬀ",
    "① ② ㎏ ㎞ ™ ½ x² Ⅻ",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
    "ﬁ\u0301 ①\u0301 Ａ\u0308",  # a short cluster is looked up whole: the mark after a mapped character goes
    "👩\u200d👩\u200d👧 👍🏽 🇫🇷 1\ufe0f\u20e3 \u2764\ufe0f",
    "\u1100\u1161\u11a8 한국어 ㄱㅏ ﾡ",
    "a\r\nb\rc\nd\r\n",
    "a   b    c",
    "a\u00a0b\u00a0\u00a0c \u3000wide\u3000space",
    "zero\u200bwidth\u200cnon\u200djoin\ufeff\u2060x\u00adsoft",
    "क्षि ক্ষ \u0600\u0661 ขำ",
    "a\x01b\x7fc\x9fd \r\u0301",
    "a</s>b <extra_id_0> <pad>x</s",
    "ＡＢＣ " * 20,
    "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f1e9\U0001f1ea\U0001f1eb",
]


def spm_nfkc_model(path: Path) -> Path:
    """A tiny SentencePiece Unigram model trained with ``normalization_rule_name="nmt_nfkc"`` (so it embeds the
    precompiled charsmap T5 / UMT5 models carry), T5's ids (<pad> 0, </s> 1, <unk> 2, no <s>), every character of
    ``CHARSMAP_POOLS`` a piece (so a normalisation difference shows as other ids, not one more <unk>)."""
    import io

    import sentencepiece as spm

    lines = [" ".join(world.vocabulary() + ["cat", "dog", "running", "zebra", "purple", "héllo", "café", "naïve"])]
    chars = sorted({c for pool in CHARSMAP_POOLS for item in pool for c in item})
    lines += ["".join(chars[i : i + 40]) for i in range(0, len(chars), 40)] + [" ".join(pool) for pool in CHARSMAP_POOLS]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines * 2), model_writer=model, model_type="unigram", vocab_size=2000,
                                   hard_vocab_limit=False, character_coverage=1.0, normalization_rule_name="nmt_nfkc",
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, minloglevel=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    return path


UMT5_EXTRA_IDS = 3  # sentinel tokens (<extra_id_N>): google/umt5-xxl has 256; a few show the same handling


def umt5_tokenizer(directory: Path, form: str, max_length: int = UNIGRAM_LENGTH) -> Path:
    """A T5 / UMT5 tokenizer.json with the precompiled charsmap of ``spm_nfkc_model``, in one of two forms:

    - ``"saved"``: what transformers 5 writes (``T5Tokenizer.from_pretrained`` on the spiece.model, then
      ``save_pretrained``; what an exported bundle holds): a Precompiled normaliser, WhitespaceSplit + Metaspace;
    - ``"converted"``: what transformers' ``convert_slow_tokenizer.T5Converter`` writes, the form of the files Google's
      UMT5 (Wan2.1's text encoder) ships: Precompiled + Strip(right) + Replace(" {2,}", "▁"), Metaspace alone, the
      special and sentinel tokens added as special tokens, with a tokenizer_config.json naming T5Tokenizer.
    """
    import types

    from transformers import T5Tokenizer
    from transformers.convert_slow_tokenizer import T5Converter

    src = spm_nfkc_model(directory.parent / f".{directory.name}_spm" / "spiece.model")
    if form == "saved":
        T5Tokenizer.from_pretrained(src.parent, extra_ids=UMT5_EXTRA_IDS, model_max_length=max_length).save_pretrained(directory)
    elif form == "converted":
        slow = types.SimpleNamespace(vocab_file=str(src), _extra_ids=UMT5_EXTRA_IDS, convert_tokens_to_ids=lambda token: 1)  # </s> is 1
        tok = T5Converter(slow).converted()
        tok.add_special_tokens(["<pad>", "</s>", "<unk>"] + [f"<extra_id_{i}>" for i in range(UMT5_EXTRA_IDS)])
        directory.mkdir(parents=True)
        tok.save(str(directory / "tokenizer.json"))
        config = {"tokenizer_class": "T5Tokenizer", "model_max_length": max_length, "extra_ids": UMT5_EXTRA_IDS}
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    else:
        raise ValueError(f"form must be 'saved' or 'converted', got {form!r}")
    shutil.rmtree(src.parent)
    return directory


def random_unicode_prompts(count: int, seed: int) -> list[str]:
    """``count`` prompts of up to 14 draws each from a fixed seed: mostly items of ``CHARSMAP_POOLS``, 1 in 10 any
    code point up to U+2FFFF (no NUL, no surrogate: a prompt is text a command line can carry)."""
    import random

    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        out = []
        for _ in range(rng.randint(0, 14)):
            if rng.random() < 0.1:
                c = rng.randint(1, 0x2FFFF)
                out.append(chr(c) if not 0xD800 <= c < 0xE000 else "x")
            else:
                out.append(rng.choice(rng.choice(CHARSMAP_POOLS)))
        prompts.append("".join(out))
    return prompts
