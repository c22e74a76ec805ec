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
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from turbo_edge.spec.configs.data import LIMITS
from turbo_edge.spec.paths import OutsideRoot, inside

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
    why: str = ""  # for a bad item over a limit: which limit, in words


def describe(source: str) -> str:
    """The kind of source ``source`` names: videofolder, csv or webdataset; ``ValueError`` if none."""
    path = Path(source)
    if "{" in source or path.suffix == ".tar":
        check_pattern(source)  # before anything is expanded, loaded or written
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
    with open(table, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if len(raw) > LIMITS["table_line_bytes"]:
                raise ValueError(f"{table} line {number} is over data prepare's limit of {LIMITS['table_line_bytes']:,} bytes a line; "
                                 "a row is one clip's file name and caption: fix or remove that line")
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{table} line {number} is not UTF-8 (byte {exc.start + 1}); save the file as UTF-8") from None
            if not line.strip():
                continue
            row = parse_json(line, f"{table} line {number}", "fix or remove that line")
            if not isinstance(row, dict):
                raise ValueError(f"{table} line {number} is not a JSON object; each line is one clip's {{\"file_name\": ..., \"text\": ...}}")
            yield row


def parse_json(text: str, where: str, todo: str) -> object:
    """``json.loads``, or ``ValueError`` naming ``where`` (a file and line): text that is not JSON, or nests deeper than
    the decoder's recursion allows (a ``[[[[...`` line is refused, not a ``RecursionError`` traceback)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON ({exc.msg}); {todo}") from None
    except RecursionError:
        raise ValueError(f"{where} nests JSON too deeply to be a caption table's row or an index; {todo}") from None


def _csv_rows(table: Path) -> Iterator[dict[str, object]]:
    csv.field_size_limit(LIMITS["table_line_bytes"])
    try:
        with open(table, encoding="utf-8-sig", newline="") as fh:  # -sig: a byte-order mark is not part of the first column's name
            reader = csv.DictReader(fh)
            yield from reader
    except UnicodeDecodeError as exc:
        raise ValueError(f"{table} is not UTF-8 (byte {exc.start + 1} of a block); save the file as UTF-8") from None
    except csv.Error as exc:
        raise ValueError(f"{table} is not a readable CSV ({exc}); fix the file (a field over data prepare's limit of "
                         f"{LIMITS['table_line_bytes']:,} bytes is refused)") from None


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
        yield _table_item(root, name, caption)


def _table_item(root: Path, name: str, caption: str) -> Item:
    """A caption table's row: its file must resolve inside the table's folder (``spec.paths.inside``, the bundle's rule)."""
    if not name or "://" in name:  # a URL is not fetched: download the videos first
        return Item(name, caption, None, bad="missing")
    if len(name.encode("utf-8", errors="replace")) > LIMITS["caption_bytes"]:  # stored in the shard's header, as captions are
        return Item(name[:80], caption, None, bad="too_large", why=f"a file name over {LIMITS['caption_bytes']:,} bytes")
    try:
        file = inside(root, name)
    except OutsideRoot:
        return Item(name, caption, None, bad="outside_source",  # never opened: not even its existence is reported
                    why="names a file outside the source's folder (an absolute path, '..', or a link out of it)")
    if not file.is_file():
        return Item(name, caption, None, bad="missing")
    return _captioned(name, caption, file)


def _captioned(name: str, caption: str, video: Path | bytes) -> Item:
    if len(name.encode("utf-8", errors="replace")) > LIMITS["caption_bytes"]:  # the name is stored in the shard's header too
        return Item(name[:80], caption, None, bad="too_large", why=f"a name over {LIMITS['caption_bytes']:,} bytes")
    if not caption:
        return Item(name, caption, None, bad="empty_caption")
    if len(caption.encode("utf-8", errors="replace")) > LIMITS["caption_bytes"]:
        return Item(name, caption[:80], None, bad="caption_too_long", why=f"a caption over {LIMITS['caption_bytes']:,} bytes")
    return Item(name, caption, video)


def check_pattern(source: str) -> None:
    """Refuse a brace pattern that expands to more than ``LIMITS["brace_shards"]`` names, counted, not expanded."""
    count = brace_count(source)
    if count > LIMITS["brace_shards"]:
        raise ValueError(f"--source {source} expands to {count:,} shards, over data prepare's limit of {LIMITS['brace_shards']:,}; "
                         "give a narrower pattern, or a folder of the .tar files")


_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$|^([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d+))?$")


def brace_count(pattern: str) -> int:
    """How many names a brace pattern (braceexpand's rules: ``{a,b}``, ``{000..999}``, ``{a..z}``, ``..step``,
    nesting, ``::``-joined lists) expands to, counted without expanding it."""
    return sum(_count_seq(part) for part in pattern.split("::"))


def _count_seq(text: str) -> int:
    total, i = 1, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "{":
            end = _matching(text, i)
            if end is not None:
                total *= _count_group(text[i + 1:end])
                i = end + 1
                continue
        i += 1
    return total


def _matching(text: str, start: int) -> int | None:
    depth, i = 0, start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        depth += text[i] == "{"
        depth -= text[i] == "}"
        if depth == 0:
            return i
        i += 1
    return None


def _count_group(body: str) -> int:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
        i += 1
    parts.append(body[start:])
    if len(parts) > 1:
        return sum(_count_seq(p) for p in parts)
    m = _RANGE.match(body)
    if not m:
        return 1  # a literal {word}
    if m[1] is not None:
        lo, hi, step = int(m[1]), int(m[2]), abs(int(m[3] or 1)) or 1
    else:
        lo, hi, step = ord(m[4]), ord(m[5]), abs(int(m[6] or 1)) or 1
    return abs(hi - lo) // step + 1


def shard_paths(source: str) -> list[Path]:
    """The tar files of a WebDataset source, in order (a folder's sorted by name, a pattern's as it expands)."""
    from webdataset.shardlists import expand_urls  # webdataset's own pattern rules: braces, '::'-joined lists

    path = Path(source)
    if path.is_dir():
        paths = sorted(path.glob("*.tar"))
    else:
        check_pattern(source)
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
    A member over its size limit (``LIMITS``: video and text members apart) is never read: its data is ``TooLarge``.
    A damaged or cut-short tar raises ``tarfile.ReadError`` at the member it reaches."""
    try:
        # Random-access mode, one header at a time: a member left unread is skipped by seeking (zlib's own loop for a
        # gzipped tar), where stream mode ("r|") re-slices its buffer per 10 KiB block and took minutes over a 1.5 GiB
        # member of a 1.5 MB gzip bomb.
        with tarfile.open(tar, mode="r:*") as archive:
            while (info := archive.next()) is not None:
                if info.isreg() and not info.name.split("/")[-1].startswith("__"):  # webdataset's __key__-style meta files
                    ext = info.name.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower()
                    limit = LIMITS["text_member_bytes"] if ext in (*CAPTION_EXTENSIONS, "json") else LIMITS["member_bytes"]
                    data: object = TooLarge(info.size, limit) if info.size > limit else archive.extractfile(info).read()
                    yield {"fname": info.name, "data": data, "__url__": str(tar)}
                archive.members = []  # headers are not kept: a shard of a million members holds one at a time
    except (tarfile.TarError, OSError, EOFError):
        yield {}  # group_by_keys hands over the sample it holds: the members before the damage still count
        raise


@dataclass(frozen=True)
class TooLarge:
    """A tar member left unread because it is over its limit (its data in a sample)."""

    size: int
    limit: int


def _tar_item(tar: Path, sample: dict[str, object], video_ext: str | None, caption_key: str | None) -> Item:
    name = f"{tar.name}:{sample['__key__']}"
    exts = (video_ext,) if video_ext else VIDEO_EXTENSIONS
    video = next((sample[e] for e in exts if e in sample), None)
    big = next((v for v in sample.values() if isinstance(v, TooLarge)), None)
    if big is not None:
        return Item(name, "", None, bad="too_large", why=f"a tar member of {big.size:,} bytes, over the limit of {big.limit:,}")
    caption = _tar_caption(sample, caption_key)
    if not isinstance(video, bytes):
        return Item(name, caption, None, bad="missing")
    return _captioned(name, caption, video)


def _tar_caption(sample: dict[str, object], key: str | None) -> str:
    for ext in ((key,) if key else CAPTION_EXTENSIONS):
        if isinstance(sample.get(ext), bytes):
            return sample[ext].decode("utf-8", errors="replace").strip()
    if isinstance(sample.get("json"), bytes):
        try:
            meta = parse_json(sample["json"].decode("utf-8"), "json", "")
        except (ValueError, UnicodeDecodeError):
            return ""
        if isinstance(meta, dict):
            for field in ((key,) if key else CAPTION_COLUMNS):
                if isinstance(meta.get(field), str):
                    return meta[field].strip()
    return ""
