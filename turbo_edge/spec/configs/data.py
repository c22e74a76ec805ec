"""The data commands' configs: ``data prepare`` (videos -> shards of latents + text embeddings) and ``world export``
(the synthetic world as mp4 files). Torch-free."""

from __future__ import annotations

import dataclasses
import shlex

from turbo_edge.spec.config import StageConfig, opt

LATENT_DTYPES = ("float16", "float32")
WORLD_SPLITS = ("train", "val", "heldout", "evaluator")

# What ``data prepare`` reads from one source, whatever the source: memory stays bounded by a shard. A sample over a
# per-item limit is skipped and counted (``too_large`` / ``caption_too_long``); a pattern over ``brace_shards`` is
# refused before anything is expanded. Each message names the limit.
LIMITS = {
    "member_bytes": 256 << 20,  # a WebDataset video member (checked in its tar header, before a byte is read)
    "text_member_bytes": 1 << 20,  # a WebDataset caption / .json member
    "frame_pixels": 7680 * 4320,  # width x height of a video's frames (8K UHD), checked before the first frame decodes
    "caption_bytes": 4096,  # one caption in UTF-8: captions live in a shard's safetensors header (100 MB at most)
    "brace_shards": 100_000,  # the shards one --source pattern may expand to, counted before expanding
    "table_line_bytes": 1 << 20,  # one line of metadata.jsonl / one CSV field
}
# 8192 captions and sources of caption_bytes each: 64 MiB, under safetensors' 100 MB header limit.
MAX_SHARD_SIZE = 8192


@dataclasses.dataclass
class DataPrepareConfig(StageConfig):
    """Decode, sample, resize and encode a video source into a prepared dataset directory (resumable)."""

    KIND = "data_prepare"

    source: str = opt("", help="a folder of videos with metadata.jsonl / metadata.csv, a CSV file, or WebDataset *.tar shards "
                               "(a folder of them, one .tar, or a brace pattern like 'shards/train-{000..009}.tar')")
    model: str = opt("builtin", help="the model whose VAE and text encoder encode the data: builtin or a diffusers text-to-video directory")
    out: str = opt("", help="the dataset directory (shard-NNNNN.safetensors + index.json); a killed run resumes in it")
    frames: int | None = opt(None, help="frames per clip (default: the model card's, else 16)")
    height: int | None = opt(None, help="pixels (default: the model card's, else the VAE's sample_size)")
    width: int | None = opt(None, help="pixels (default: the model card's, else the height)")
    fps: float | None = opt(None, help="resample each video to this frame rate by timestamps (exclusive with --stride)")
    stride: int | None = opt(None, help="take every STRIDE-th decoded frame (default 1 when --fps is not given)")
    shard_size: int = opt(256, help="clips per shard (memory holds one shard)")
    batch: int = opt(8, help="clips per VAE / text-encoder call")
    video_column: str | None = opt(None, help="table column naming the video file (default: file_name, path or video); "
                                              "WebDataset: the video member's extension (default: mp4, webm, mkv, avi or mov)")
    caption_column: str | None = opt(None, help="table column holding the caption (default: text, caption or name); "
                                                "WebDataset: the caption member's extension, or the field of its .json")
    dtype: str = opt("float16", choices=LATENT_DTYPES, help="storage dtype of latents and text embeddings")
    threads: int = opt(0, help="torch threads (0: torch's default)")
    overwrite: bool = opt(False, help="start over when --out holds a dataset made with other arguments or another model")

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("give --source: a video folder with metadata.jsonl / metadata.csv, a CSV file or WebDataset .tar shards")
        if not self.out:
            raise ValueError("give --out: the directory the prepared dataset is written to")
        for name in ("frames", "height", "width"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if self.fps is not None and self.stride is not None:
            raise ValueError("--fps and --stride both choose which frames are kept: give one of them")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"--fps must be > 0, got {self.fps}")
        if self.fps is not None:
            self.fps = float(self.fps)  # 8 and 8.0 are one setting (a resumed run compares them)
        elif self.stride is None:
            self.stride = 1  # no flag and --stride 1 are one setting too
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"--stride must be >= 1, got {self.stride}")
        if self.shard_size < 1 or self.batch < 1:
            raise ValueError(f"--shard-size and --batch must be >= 1, got {self.shard_size} and {self.batch}")
        if self.shard_size > MAX_SHARD_SIZE:
            raise ValueError(f"--shard-size must be at most {MAX_SHARD_SIZE} (a shard's captions live in its header, and memory holds "
                             f"one shard), got {self.shard_size}")
        if self.dtype not in LATENT_DTYPES:
            raise ValueError(f"--dtype must be one of {LATENT_DTYPES}, got {self.dtype!r}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {self.threads}")

    def sampling(self) -> dict[str, float | int | None]:
        """How frames are chosen: by timestamps at ``fps``, else every ``stride``-th frame."""
        return {"fps": self.fps, "stride": self.stride}


@dataclasses.dataclass
class WorldExportConfig(StageConfig):
    """The synthetic world's clips as mp4 files plus metadata.jsonl (Hugging Face videofolder): a ``data prepare`` source."""

    KIND = "world_export"

    split: str = opt("train", choices=WORLD_SPLITS)
    num: int = opt(64, help="clips to write")
    out: str = opt("", help="the folder to write (NNNNNN.mp4, metadata.jsonl, world.json)")
    seed: int = opt(0, help="world seed: clip i is a pure function of (split, seed, i)")
    fps: int = opt(8, help="frame rate written into the mp4s")
    # Lossless by default: libx264rgb codes the RGB planes at crf 0, so a world DATA holds exactly the latents of the
    # rendered clips (bit-equal to encoding them directly), for 17 % more bytes than yuv444p at crf 10 (docs/decisions.md).
    crf: int = opt(0, help="libx264 quality (0 lossless, 51 worst)")
    pix_fmt: str = opt("rgb24", choices=("yuv420p", "yuv444p", "rgb24"), help="rgb24 (libx264rgb, H.264 High 4:4:4 Predictive in RGB: no colour conversion, with --crf 0 lossless), yuv444p (full-resolution chroma) or yuv420p (half-resolution chroma, what every player reads)")
    overwrite: bool = opt(False, help="replace an existing world export")
    # 1 for a causal video autoencoder (Wan's takes 1 + 4k frames): 9-frame clips whose last 8 are the world's clip.
    lead_in: int = opt(0, help="frames rendered before each clip, continuing its motion backwards (1: 9-frame clips for a causal autoencoder)")

    def __post_init__(self) -> None:
        if isinstance(self.lead_in, bool) or not isinstance(self.lead_in, int) or not 0 <= self.lead_in <= 8:
            raise ValueError(f"--lead-in must be an integer in [0, 8], got {self.lead_in!r}")
        if self.split not in WORLD_SPLITS:
            raise ValueError(f"--split must be one of {WORLD_SPLITS}, got {self.split!r}")
        if self.num < 1:
            raise ValueError(f"--num must be >= 1, got {self.num}")
        if not self.out:
            raise ValueError("give --out: the folder the mp4 files and metadata.jsonl are written to")
        if self.fps < 1:
            raise ValueError(f"--fps must be >= 1, got {self.fps}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"--crf must be in [0, 51], got {self.crf}")


def flag_command(cfg: StageConfig, command: str) -> str:
    """``turbo-edge COMMAND --flag value ...`` for the fields that differ from their defaults (``overwrite`` left out):
    the command line that makes ``cfg``, readable where ``--set`` pairs are not."""
    parts = ["turbo-edge", *command.split()]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "overwrite" or value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        parts += [flag] if value is True else [f"--no-{f.name.replace('_', '-')}"] if value is False else [flag, str(value)]
    return shlex.join(parts)
