"""One table of input rules for a generation request, checked the same way by the CLI, the Python API and (with
the same messages) the C++ host: each rule is a small function that returns the value or raises ``ValueError``
naming the input, the value as the user gave it (shortened), and what is allowed."""

from __future__ import annotations

import math
import numbers
import os
import unicodedata
from collections.abc import Sequence
from typing import Any

MAX_SEED = 2**63  # the counter-based noise generator's key space (spec.noise)
MAX_GUIDANCE = 100.0  # classifier-free guidance beyond this is a typo, not a setting
MAX_SCALE = 16  # nearest-neighbour upscaling of the written video
MAX_OUTPUT_PIXELS = 4096 * 4096  # per frame, after upscaling
MAX_PROMPT_CHARS = 2000
MAX_WORD_CHARS = 40  # an unknown word is cut to this many characters in a message
MAX_WORDS_SHOWN = 8  # unknown words named in a message (then "and N more")
MAX_VOCAB_SHOWN = 30  # closed-vocabulary words named in a message (then "... (N in all)")


def shown(value: Any, limit: int = 60) -> str:
    """``value`` as the user typed it, cut to ``limit`` characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def thread_cap() -> int:
    """More threads than 4x the cores only oversubscribe (and 1000 hung the runtime)."""
    return 4 * (os.cpu_count() or 1)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {shown(seed)}")
    return int(seed)


def seed_arg(text: str) -> int:
    """``--seed TEXT`` -> an int, with the rule's message for anything that is not one (``1.5``, ``abc``)."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {shown(text)}") from None


def check_guidance(guidance: Any) -> float | None:
    if guidance is None:
        return None
    if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not math.isfinite(float(guidance)):
        raise ValueError(f"guidance must be a finite number, got {shown(guidance)}")
    if not 0.0 <= float(guidance) <= MAX_GUIDANCE:
        raise ValueError(f"guidance must be in [0, {MAX_GUIDANCE:g}], got {shown(guidance)}")
    return float(guidance)


def check_threads(threads: Any) -> int:
    cap = thread_cap()
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or not 1 <= int(threads) <= cap:
        raise ValueError(f"threads must be an integer in [1, {cap}] (4x this machine's cores), got {shown(threads)}")
    return int(threads)


def check_scale(scale: Any, height: int | None = None, width: int | None = None) -> int:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or not 1 <= int(scale) <= MAX_SCALE:
        raise ValueError(f"scale must be an integer in [1, {MAX_SCALE}], got {shown(scale)}")
    if height and width and height * width * int(scale) ** 2 > MAX_OUTPUT_PIXELS:
        raise ValueError(f"scale {scale} makes {height * scale}x{width * scale} frames, over the {MAX_OUTPUT_PIXELS} pixel limit; use a smaller --scale")
    return int(scale)


def check_prompt_text(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text, got {type(prompt).__name__}")
    if "\x00" in prompt:
        raise ValueError("prompt contains a NUL character; remove it")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is {len(prompt)} characters, over the limit of {MAX_PROMPT_CHARS}: {shown(prompt)}")
    if not prompt.strip():
        raise ValueError("empty prompt: describe the video, e.g. \"a red circle moving left\"")
    return prompt


def quote_word(word: str) -> str:
    """A word as the user typed it, for a message: in single quotes, control characters as ``\\xNN``, cut to
    ``MAX_WORD_CHARS`` characters. The C++ host's ``quote_word`` writes the same."""
    if len(word) > MAX_WORD_CHARS:
        word = word[: MAX_WORD_CHARS - 4] + "…"
    return "'" + "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in word) + "'"


def check_closed_vocabulary(prompt: str, vocabulary: Sequence[str] | None) -> str:
    """A closed-vocabulary model (the builtin ones) refuses words it never saw, naming them as the user wrote them
    (not in the BPE's byte-level form), each once, in order."""
    if vocabulary is None:
        return prompt
    from turbo_edge.spec.tokenizer import byte_level, words

    known = set(vocabulary)
    unknown = list(dict.fromkeys(w for w in words(prompt) if byte_level(w) not in known))
    if unknown:
        named = ", ".join(quote_word(w) for w in unknown[:MAX_WORDS_SHOWN])
        more = f" and {len(unknown) - MAX_WORDS_SHOWN} more" if len(unknown) > MAX_WORDS_SHOWN else ""
        vocab = ", ".join(list(vocabulary)[:MAX_VOCAB_SHOWN])
        vocab += f", ... ({len(vocabulary)} in all)" if len(vocabulary) > MAX_VOCAB_SHOWN else ""
        raise ValueError(f"prompt uses words this model was never trained on: {named}{more}; use only: {vocab}")
    return prompt



MAX_CLIP_SIDE = 4096  # pixels per frame side: past a 4K frame, nothing this toolchain runs fits a workstation
MAX_CLIP_FRAMES = 1024


def check_clip_size(frames: Any, height: Any, width: Any) -> None:
    """A requested clip geometry (each None: the model's own): positive integers within sane bounds. The model's own
    rules (multiples, 1 + 4k frames) are checked where the model is known (``core.sampling.clip_geometry``)."""
    for name, value, cap in (("frames", frames, MAX_CLIP_FRAMES), ("height", height, MAX_CLIP_SIDE), ("width", width, MAX_CLIP_SIDE)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= int(value) <= cap:
            raise ValueError(f"{name} must be an integer in [1, {cap}], got {shown(value)}")
