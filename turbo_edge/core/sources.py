"""Where ``data prepare`` reads (video, caption) pairs from, in one fixed order (resume counts items in it).

- a **video folder** (Hugging Face videofolder): ``metadata.jsonl`` or ``metadata.csv`` beside the videos, with a
  ``file_name`` column (relative to the folder) and a caption column (``text`` or ``caption``);
- a **CSV file** (WebVid style): one row per clip, ``--video-column`` (a path relative to the CSV's folder) and
  ``--caption-column``;
- **WebDataset** shards: ``.tar`` files whose members sharing a key form a sample (``KEY.mp4`` + ``KEY.txt`` or
  ``KEY.json``), given as a folder of ``*.tar``, one ``.tar`` or a brace pattern (``train-{000..009}.tar``).

Each yields ``Item``s; an item that is already known to be unusable (its file is missing, its caption empty) carries
the reason, and ``data prepare`` counts it instead of decoding it.
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VIDEO_COLUMNS = ("file_name", "path", "video")
CAPTION_COLUMNS = ("text", "caption", "name")
VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "avi", "mov")
CAPTION_EXTENSIONS = ("txt", "caption", "text")


@dataclass(frozen=True)
class Item:
    """One (video, caption) entry of a source. ``video`` is a path or the bytes of a tar member; ``bad`` a reason
    from ``video_io.REASONS`` when the entry cannot be used whatever its frames."""

    source: str  # how the index and the shards name it: a path relative to the source, or TAR:KEY
    caption: str
    video: Path | bytes | None
    bad: str | None = None


def describe(source: str) -> str:
    """The kind of source ``source`` names: videofolder, csv or webdataset; ``ValueError`` if none."""
    path = Path(source)
    if "{" in source or path.suffix == ".tar":
        return "webdataset"
    if path.is_file() and path.suffix.lower() == ".csv":
        return "csv"
    if path.is_dir():
        if (path / "metadata.jsonl").is_file() or (path / "metadata.csv").is_file():
            return "videofolder"
        if any(path.glob("*.tar")):
            return "webdataset"
        raise ValueError(f"--source {source} is a folder with neither metadata.jsonl / metadata.csv nor *.tar shards; "
                         "add a caption table (file_name + text columns) or point --source at the shards")
    if not path.exists():
        raise FileNotFoundError(f"--source {source} does not exist; give a video folder, a CSV file or WebDataset .tar shards")
    raise ValueError(f"--source {source} is neither a folder, a .csv file nor .tar shards")


def iter_items(source: str, video_column: str | None = None, caption_column: str | None = None) -> Iterator[Item]:
    kind = describe(source)
    if kind == "webdataset":
        return _webdataset(source, video_column, caption_column)
    path = Path(source)
    if kind == "csv":
        return _table(path, _csv_rows(path), path.parent, video_column, caption_column)
    table = path / "metadata.jsonl" if (path / "metadata.jsonl").is_file() else path / "metadata.csv"
    rows = _jsonl_rows(table) if table.suffix == ".jsonl" else _csv_rows(table)
    return _table(table, rows, path, video_column, caption_column)


def _jsonl_rows(table: Path) -> Iterator[dict[str, object]]:
    with open(table, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{table} line {number} is not JSON ({exc.msg}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise ValueError(f"{table} line {number} is not a JSON object; each line is one clip's {{\"file_name\": ..., \"text\": ...}}")
            yield row


def _csv_rows(table: Path) -> Iterator[dict[str, object]]:
    with open(table, encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _column(table: Path, row: dict[str, object], given: str | None, candidates: tuple[str, ...], what: str, flag: str) -> str:
    if given is not None:
        if given not in row:
            raise ValueError(f"{table} has no column {given!r} (its columns: {sorted(row)}); fix {flag}")
        return given
    for name in candidates:
        if name in row:
            return name
    raise ValueError(f"{table} has no {what} column (looked for {', '.join(candidates)}; its columns: {sorted(row)}); name it with {flag}")


def _table(table: Path, rows: Iterator[dict[str, object]], root: Path, video_column: str | None, caption_column: str | None) -> Iterator[Item]:
    video_key = caption_key = None
    for row in rows:
        if video_key is None:
            video_key = _column(table, row, video_column, VIDEO_COLUMNS, "video", "--video-column")
            caption_key = _column(table, row, caption_column, CAPTION_COLUMNS, "caption", "--caption-column")
        name = str(row.get(video_key) or "").strip()
        caption = str(row.get(caption_key) or "").strip()
        file = root / name
        if not name or "://" in name or not file.is_file():  # a URL is not fetched: download the videos first
            yield Item(name, caption, None, bad="missing")
        elif not caption:
            yield Item(name, caption, None, bad="empty_caption")
        else:
            yield Item(name, caption, file)


def shard_paths(source: str) -> list[Path]:
    """The tar files of a WebDataset source, in order (a folder's sorted by name, a pattern's as it expands)."""
    from webdataset.shardlists import expand_urls  # webdataset's own pattern rules: braces, '::'-joined lists

    path = Path(source)
    if path.is_dir():
        paths = sorted(path.glob("*.tar"))
    else:
        paths = [Path(p) for p in expand_urls(source)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"WebDataset shard(s) {missing[:3]} of --source {source} do not exist; check the pattern")
    if not paths:
        raise FileNotFoundError(f"--source {source} names no .tar shards")
    return paths


def _webdataset(source: str, video_ext: str | None, caption_key: str | None) -> Iterator[Item]:
    from webdataset.tariterators import group_by_keys

    for tar in shard_paths(source):
        samples = group_by_keys(_members(tar))  # webdataset's grouping: members sharing the name before the first dot
        while True:
            try:
                sample = next(samples)
            except StopIteration:
                break
            except (tarfile.TarError, OSError, EOFError):
                yield Item(tar.name, "", None, bad="unreadable")  # a damaged shard counts once; the samples before the damage count
                break
            yield _tar_item(tar, sample, video_ext, caption_key)


def _members(tar: Path) -> Iterator[dict[str, object]]:
    """The tar's regular files one at a time (a shard is never held whole in memory), in webdataset's sample-file form.
    A damaged or cut-short tar raises ``tarfile.ReadError`` at the member it reaches."""
    try:
        with tarfile.open(tar, mode="r|*") as stream:
            for info in stream:
                if info.isreg() and not info.name.split("/")[-1].startswith("__"):  # webdataset's __key__-style meta files
                    yield {"fname": info.name, "data": stream.extractfile(info).read(), "__url__": str(tar)}
                stream.members = []  # stream mode would keep every header otherwise
    except (tarfile.TarError, OSError, EOFError):
        yield {}  # group_by_keys hands over the sample it holds: the members before the damage still count
        raise


def _tar_item(tar: Path, sample: dict[str, object], video_ext: str | None, caption_key: str | None) -> Item:
    name = f"{tar.name}:{sample['__key__']}"
    exts = (video_ext,) if video_ext else VIDEO_EXTENSIONS
    video = next((sample[e] for e in exts if e in sample), None)
    caption = _tar_caption(sample, caption_key)
    if not isinstance(video, bytes):
        return Item(name, caption, None, bad="missing")
    if not caption:
        return Item(name, caption, None, bad="empty_caption")
    return Item(name, caption, video)


def _tar_caption(sample: dict[str, object], key: str | None) -> str:
    for ext in ((key,) if key else CAPTION_EXTENSIONS):
        if isinstance(sample.get(ext), bytes):
            return sample[ext].decode("utf-8", errors="replace").strip()
    if isinstance(sample.get("json"), bytes):
        try:
            meta = json.loads(sample["json"])
        except (json.JSONDecodeError, UnicodeDecodeError):
            return ""
        if isinstance(meta, dict):
            for field in ((key,) if key else CAPTION_COLUMNS):
                if isinstance(meta.get(field), str):
                    return meta[field].strip()
    return ""
