"""The synthetic text-video world: seeded (prompt, clip) pairs of simple moving shapes.

A clip is ``uint8[F, H, W, 3]``: one shape of a named colour on a plain dark background, moving in a
named direction. Everything is a pure function of ``(split, seed, index)`` so any clip can be rebuilt
without storing it, in any order, on any process (exact resume and data-parallel sharding rely on this).

Prompt grammar: ``"a {colour} {shape} {motion phrase}"``, e.g. ``"a red circle moving left"``.
Some colour-shape-motion combinations are held out of training to measure compositional generalisation;
every pair of attributes in a held-out triple still appears in training.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 45, 45),
    "green": (45, 200, 70),
    "blue": (60, 100, 255),
    "yellow": (240, 220, 50),
    "purple": (170, 70, 220),
    "white": (240, 240, 240),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")
MOTION_PHRASES: dict[str, str] = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "still": "staying still",
}
# Direction of travel in image coordinates (x to the right, y downwards).
MOTION_VECTORS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "still": (0.0, 0.0),
}
# Dark, unnamed backgrounds: a nuisance variable, never in the prompt, each contrasting every colour.
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((10, 10, 12), (48, 48, 52), (20, 28, 60), (55, 35, 25))

SPLITS = ("train", "val", "heldout", "evaluator")
# Distinct seed streams per split so val clips never coincide with train clips. "evaluator" covers all 120
# triples: the held-out evaluator must recognise every attribute, held-out combinations included.
_SPLIT_STREAM = {"train": 101, "val": 202, "heldout": 303, "evaluator": 404}


@dataclass(frozen=True)
class Attributes:
    """What a prompt names: one colour, one shape, one motion."""

    colour: str
    shape: str
    motion: str

    @property
    def prompt(self) -> str:
        return f"a {self.colour} {self.shape} {MOTION_PHRASES[self.motion]}"

    @property
    def labels(self) -> tuple[int, int, int]:
        return (list(COLOURS).index(self.colour), SHAPES.index(self.shape), MOTIONS.index(self.motion))


def all_combinations() -> list[Attributes]:
    return [Attributes(c, s, m) for c, s, m in itertools.product(COLOURS, SHAPES, MOTIONS)]


def is_heldout(attrs: Attributes) -> bool:
    """12 of 120 triples, chosen so each (colour, shape), (colour, motion), (shape, motion) pair still trains.

    For a fixed pair the congruence below has at most one solution in the third attribute's range.
    """
    c, s, m = attrs.labels
    return (c + 2 * s + m) % 10 == 0


def combinations(split: str) -> list[Attributes]:
    """Train and val share the in-distribution triples (val uses other seeds); heldout has the rest."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    combos = all_combinations()
    if split == "evaluator":
        return combos
    if split == "heldout":
        return [a for a in combos if is_heldout(a)]
    return [a for a in combos if not is_heldout(a)]


def vocabulary() -> list[str]:
    """Every word the grammar can produce, in a fixed order."""
    words: list[str] = ["a", *COLOURS, *SHAPES]
    for phrase in MOTION_PHRASES.values():
        words.extend(w for w in phrase.split() if w not in words)
    return words


def parse_prompt(prompt: str) -> Attributes:
    """Inverse of :attr:`Attributes.prompt`; raises ValueError naming the part it does not understand."""
    words = prompt.strip().lower().split()
    if len(words) < 4 or words[0] != "a":
        raise ValueError(f"prompt {prompt!r} does not follow 'a <colour> <shape> <motion phrase>'")
    colour, shape, phrase = words[1], words[2], " ".join(words[3:])
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r} in {prompt!r}; known: {list(COLOURS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r} in {prompt!r}; known: {list(SHAPES)}")
    motions = {v: k for k, v in MOTION_PHRASES.items()}
    if phrase not in motions:
        raise ValueError(f"unknown motion {phrase!r} in {prompt!r}; known: {list(MOTION_PHRASES.values())}")
    return Attributes(colour, shape, motions[phrase])


@dataclass(frozen=True)
class WorldConfig:
    """Geometry of a clip. Distances are in pixels of the output frame."""

    frames: int = 8
    size: int = 32
    radius_range: tuple[float, float] = (5.0, 7.0)
    travel_range: tuple[float, float] = (12.0, 16.0)  # total displacement over the clip
    supersample: int = 4
    # Frames rendered before the clip, continuing its motion backwards: a causal video autoencoder's clip is 1 + 4k
    # frames, and with one lead-in frame the last ``frames`` of a 9-frame clip are exactly the 8-frame clip (same
    # draws), which is what the held-out evaluator reads. Total frames rendered: ``lead_in + frames``.
    lead_in: int = 0

    def __post_init__(self) -> None:
        if self.frames < 2 or self.size < 16:
            raise ValueError(f"need frames >= 2 and size >= 16, got frames={self.frames} size={self.size}")
        if not 0 <= self.lead_in <= self.frames:
            raise ValueError(f"lead_in must be in [0, frames], got {self.lead_in}")
        if self.travel_range[1] + 2 * self.radius_range[1] > self.size:
            raise ValueError("travel_range plus the shape's diameter must fit inside the frame")


def _shape_mask(shape: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        half = r * 0.85
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r * 1.15
    if shape == "triangle":  # upright isosceles triangle
        top, bottom = cy - r, cy + r * 0.8
        half_width = (ys - top) / (bottom - top) * r * 1.05
        return (ys >= top) & (ys <= bottom) & (np.abs(dx) <= half_width)
    raise ValueError(f"unknown shape {shape!r}")


def render_clip(attrs: Attributes, rng: np.random.Generator, cfg: WorldConfig = WorldConfig()) -> np.ndarray:
    """Draw one clip as uint8[F, H, W, 3] with anti-aliased edges (supersampled coverage)."""
    radius = rng.uniform(*cfg.radius_range)
    travel = rng.uniform(*cfg.travel_range) if attrs.motion != "still" else 0.0
    vx, vy = MOTION_VECTORS[attrs.motion]
    margin = radius + 1.0
    # Choose the start so the whole path stays inside the frame.
    lo_x = margin + max(0.0, -vx * travel)
    hi_x = cfg.size - margin - max(0.0, vx * travel)
    lo_y = margin + max(0.0, -vy * travel)
    hi_y = cfg.size - margin - max(0.0, vy * travel)
    x0, y0 = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    background = np.array(BACKGROUNDS[rng.integers(len(BACKGROUNDS))], dtype=np.float32)
    colour = np.array(COLOURS[attrs.colour], dtype=np.float32)

    ss = cfg.supersample
    grid = (np.arange(cfg.size * ss, dtype=np.float32) + 0.5) / ss
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    clip = np.empty((cfg.lead_in + cfg.frames, cfg.size, cfg.size, 3), dtype=np.uint8)
    for f in range(-cfg.lead_in, cfg.frames):
        frac = f / (cfg.frames - 1)
        cx, cy = x0 + vx * travel * frac, y0 + vy * travel * frac
        mask = _shape_mask(attrs.shape, xs, ys, cx, cy, radius).astype(np.float32)
        coverage = mask.reshape(cfg.size, ss, cfg.size, ss).mean(axis=(1, 3))[..., None]
        frame = background * (1.0 - coverage) + colour * coverage
        clip[cfg.lead_in + f] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return clip


def sample(split: str, seed: int, index: int, cfg: WorldConfig = WorldConfig()) -> tuple[Attributes, np.ndarray]:
    """The ``index``-th (attributes, clip) pair of a split: a pure function of its arguments."""
    combos = combinations(split)
    rng = np.random.default_rng([_SPLIT_STREAM[split], seed, index])
    attrs = combos[int(rng.integers(len(combos)))]
    return attrs, render_clip(attrs, rng, cfg)


def batch(
    split: str, seed: int, indices: list[int] | range, cfg: WorldConfig = WorldConfig()
) -> tuple[list[Attributes], np.ndarray]:
    """Several samples stacked as uint8[B, F, H, W, 3]."""
    pairs = [sample(split, seed, i, cfg) for i in indices]
    return [a for a, _ in pairs], np.stack([c for _, c in pairs])


def prompt_set(split: str, num: int, seed: int = 0) -> list[Attributes]:
    """A balanced list of ``num`` prompts for evaluation: cycles through the split's triples in a seeded order."""
    combos = combinations(split)
    order = np.random.default_rng([_SPLIT_STREAM[split], seed, 7]).permutation(len(combos))
    return [combos[order[i % len(combos)]] for i in range(num)]
