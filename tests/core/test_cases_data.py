"""Case table: data sources and prepared DATA against hostile input (paths leaving their root, unbounded inputs,
messages naming the file, locks and resume identity). No model loads: sources are read item by item, DATA is
written with the data layer's own shard writer. Seconds for the whole table."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
import torch
from data_sources import ffmpeg_clip, write_tar
from hostile import Case, params, run

from turbo_edge.core import dataset, sources, video_io
from turbo_edge.core.prepared import INDEX, INDEX_FORMAT, INDEX_VERSION, PreparedData, shard_name
from turbo_edge.spec.configs import DataPrepareConfig
from turbo_edge.spec.configs.data import LIMITS
from turbo_edge.spec.outputs import run_lock

CAPTION = "a red circle moving left"


def _folder(tmp: Path, rows: list[dict], *, video: bool = True) -> Path:
    src = tmp / "src"
    src.mkdir()
    if video:
        (src / "ok.mp4").write_bytes(b"not decoded here")
    (src / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src


def _first(source: Path | str, **kw) -> str:
    item = list(sources.iter_items(str(source), **kw))[0]  # every row read: a bad line anywhere is refused
    return f"counted: {item.bad}" if item.bad else "accepted"


def row(name: str, caption: str = CAPTION):
    def act(tmp: Path) -> str:
        (tmp / "outside").mkdir()
        (tmp / "outside" / "x.mp4").write_bytes(b"secret")
        return _first(_folder(tmp, [{"file_name": name, "text": caption}]))
    return act


def symlinked(target_inside: bool):
    def act(tmp: Path) -> str:
        src = _folder(tmp, [{"file_name": "link.mp4", "text": CAPTION}])
        (tmp / "elsewhere.mp4").write_bytes(b"secret")
        (src / "link.mp4").symlink_to(src / "ok.mp4" if target_inside else tmp / "elsewhere.mp4")
        return _first(src)
    return act


def linked_dir(tmp: Path) -> str:  # a folder inside the source that is a link to one outside
    src = _folder(tmp, [{"file_name": "sub/x.mp4", "text": CAPTION}])
    (tmp / "other").mkdir()
    (tmp / "other" / "x.mp4").write_bytes(b"secret")
    (src / "sub").symlink_to(tmp / "other")
    return _first(src)


def csv_table(header: list[str], name: str, bom: bool = False):
    def act(tmp: Path) -> str:
        (tmp / "ok.mp4").write_bytes(b"x")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerow([name, CAPTION])
        (tmp / "t.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode())
        return _first(tmp / "t.csv")
    return act


def csv_raw(data: bytes):
    def act(tmp: Path) -> str:
        (tmp / "t.csv").write_bytes(data)
        return _first(tmp / "t.csv")
    return act


def jsonl_bytes(data: bytes):
    def act(tmp: Path) -> str:
        src = tmp / "src"
        src.mkdir()
        (src / "metadata.jsonl").write_bytes(data)
        return _first(src)
    return act


def tar_member(members: dict[str, bytes], **limits: int):
    def act(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        for k, v in limits.items():
            monkeypatch.setitem(LIMITS, k, v)
        return _first(write_tar(tmp / "w.tar", members))
    return act


def pattern(text: str):
    def act(tmp: Path) -> str:
        sources.describe(str(tmp / text))
        return "accepted"
    return act


def big_frames(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(LIMITS, "frame_pixels", 32 * 32)  # the limit scaled down with the clip: 64x48 > 32x32
    clip = ffmpeg_clip(tmp / "big.mp4", "testsrc", "64x48", 10, None, ["-c:v", "libx264", "-pix_fmt", "yuv420p"], 2)
    try:
        video_io.read_clip(clip, 2, 16, 16)
    except video_io.BadSample as exc:
        assert "frame_pixels" not in str(exc) and "1,024 pixels" in str(exc)  # the limit named in words a user reads
        return f"counted: {exc.reason}"
    return "accepted"


# ------------------------------------------------------------------ DATA (prepared datasets)


def make_data(tmp: Path, frames: int = 2) -> Path:
    out = tmp / "data"
    out.mkdir()
    shards = []
    for k in range(2):
        lat, txt = torch.zeros(3, frames, 4, 4, 4), torch.zeros(3, 5, 8)
        shards.append(dataset.write_shard(out, k, [lat], [txt], [CAPTION] * 3, [f"s{k}{i}" for i in range(3)], 3 * (k + 1),
                                           {}, "run", "float16"))
    index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "complete": True, "shards": shards,
             "geometry": {"frames": frames, "height": 32, "width": 32}, "model": {"fingerprint": "f" * 64, "path": "m"}}
    (out / INDEX).write_text(json.dumps(index))
    return out


def edit_index(change):
    def act(tmp: Path) -> str:
        out = make_data(tmp)
        index = json.loads((out / INDEX).read_text())
        change(index, out, tmp)
        (out / INDEX).write_text(json.dumps(index))
        data = PreparedData(out)
        data.verify()
        return "accepted"
    return act


def shard_file(name: str):
    def change(index: dict, out: Path, tmp: Path) -> None:
        (tmp / "other").mkdir()
        (tmp / "other" / "shard-00000.safetensors").write_bytes((out / shard_name(0)).read_bytes())
        index["shards"][0]["file"] = name.replace("TMP", str(tmp))
    return change


def shard_linked_outside(index: dict, out: Path, tmp: Path) -> None:
    (tmp / "other").mkdir()
    os.replace(out / shard_name(0), tmp / "other" / shard_name(0))
    (out / shard_name(0)).symlink_to(tmp / "other" / shard_name(0))


def frames_edited(index: dict, out: Path, tmp: Path) -> None:
    index["geometry"]["frames"] = 4  # prepared with --frames 2


def samples_edited(index: dict, out: Path, tmp: Path) -> None:
    index["shards"][1]["samples"] = 5


def raw_index(data: bytes):
    def act(tmp: Path) -> str:
        out = make_data(tmp)
        (out / INDEX).write_bytes(data)
        PreparedData(out)
        return "accepted"
    return act


def tampered_shard(tmp: Path) -> str:
    out = make_data(tmp)
    raw = bytearray((out / shard_name(1)).read_bytes())
    raw[-2] ^= 0xFF
    (out / shard_name(1)).write_bytes(bytes(raw))
    PreparedData(out).verify()
    return "accepted"


def tampered_shard_captions(tmp: Path) -> str:
    """`decoder samples --captions DATA` reads only the shards' headers; the sha256 is checked all the same."""
    out = make_data(tmp)
    raw = bytearray((out / shard_name(1)).read_bytes())
    raw[-2] ^= 0xFF
    (out / shard_name(1)).write_bytes(bytes(raw))
    PreparedData(out).shard_captions(1)
    return "accepted"


def locked(tmp: Path) -> str:
    src = _folder(tmp, [{"file_name": "ok.mp4", "text": CAPTION}])
    out = tmp / "out"
    out.mkdir()
    with run_lock(out):  # a live run holds it: a second prepare into the same --out
        dataset.prepare(DataPrepareConfig(source=str(src), out=str(out)))
    return "accepted"


def same_relative_source_elsewhere(tmp: Path) -> str:
    for d in ("a/src", "b/src"):
        (tmp / d).mkdir(parents=True)
    cwd = os.getcwd()
    try:
        os.chdir(tmp / "a")
        first = dataset.source_identity("src")
        os.chdir(tmp / "b")
        second = dataset.source_identity("src")
    finally:
        os.chdir(cwd)
    return "accepted" if first != second and first == str((tmp / "a" / "src").resolve()) else f"same identity {first}"


def only_oversized_members(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(LIMITS, "member_bytes", 1024)
    write_tar(tmp / "w.tar", {"k.mp4": b"\0" * 4096, "k.txt": CAPTION.encode()})
    dataset.prepare(DataPrepareConfig(source=str(tmp / "w.tar"), out=str(tmp / "out")))
    return "accepted"


CASES = [
    Case("paths", "jsonl_dotdot", row("../outside/x.mp4"), "counted: outside_source"),
    Case("paths", "jsonl_absolute", row("/etc/passwd"), "counted: outside_source"),
    Case("paths", "jsonl_dotdot_back_in", row("../src/ok.mp4"), "counted: outside_source"),
    Case("paths", "jsonl_backslash", row("..\\outside\\x.mp4"), "counted: outside_source"),
    Case("paths", "jsonl_nul", row("ok.mp4\x00.txt"), "counted: outside_source"),
    Case("paths", "symlink_outside", symlinked(False), "counted: outside_source"),
    Case("paths", "symlinked_dir_outside", linked_dir, "counted: outside_source"),
    Case("paths", "symlink_inside", symlinked(True), "accepted"),
    Case("paths", "plain_file", row("ok.mp4"), "accepted"),
    Case("paths", "url_not_fetched", row("https://example.com/x.mp4"), "counted: missing"),
    Case("paths", "csv_dotdot", csv_table(["file_name", "text"], "../ok.mp4"), "counted: outside_source"),
    Case("paths", "data_shard_dotdot", edit_index(shard_file("../other/shard-00000.safetensors")), "refused: points outside"),
    Case("paths", "data_shard_absolute", edit_index(shard_file("TMP/other/shard-00000.safetensors")), "refused: points outside"),
    Case("paths", "data_shard_not_a_name", edit_index(shard_file("")), "refused: is not a relative file name"),
    Case("paths", "data_shard_symlink_outside", edit_index(shard_linked_outside), "refused: is a link to a file outside"),
    Case("bounds", "brace_billion", pattern("x-{000000000..999999999}.tar"), "refused: over data prepare's limit of 100,000"),
    Case("bounds", "brace_nested_product", pattern("{a,b}-{0..999}-{0..999}.tar"), "refused: expands to 2,000,000 shards"),
    Case("bounds", "brace_small", pattern("x-{0..3}.tar"), "accepted"),
    Case("bounds", "tar_member_over_limit", tar_member({"k.mp4": b"\0" * 4096, "k.txt": CAPTION.encode()}, member_bytes=1024),
         "counted: too_large"),
    Case("bounds", "tar_caption_member_over_limit", tar_member({"k.mp4": b"\0" * 64, "k.txt": b"a" * 4096}, text_member_bytes=1024),
         "counted: too_large"),
    Case("bounds", "source_of_oversized_members_names_the_limit", only_oversized_members,
         "refused: no usable clips (1 too_large); too_large: a tar member over 1,024 bytes"),
    Case("bounds", "tar_member_under_limit", tar_member({"k.mp4": b"\0" * 64, "k.txt": CAPTION.encode()}), "accepted"),
    Case("bounds", "frames_over_pixel_limit", big_frames, "counted: too_large"),
    Case("bounds", "caption_1mb", row("ok.mp4", "a" * (1 << 20)), "refused: over data prepare's limit of 1,048,576 bytes a line"),
    Case("bounds", "caption_over_limit", row("ok.mp4", "a" * 5000), "counted: caption_too_long"),
    Case("bounds", "file_name_over_limit", row("x" * 5000), "counted: too_large"),
    Case("bounds", "jsonl_deep_nesting", jsonl_bytes(b"[" * 100_000 + b"\n"), "refused: nests JSON too deeply"),
    Case("bounds", "shard_size_absurd", lambda tmp: DataPrepareConfig(source="s", out="o", shard_size=10**9), "refused: at most 8192"),
    Case("messages", "jsonl_not_utf8", jsonl_bytes(b'{"file_name": "ok.mp4", "text": "x"}\n{"text": "caf\xe9"}\n'),
         "refused: metadata.jsonl line 2 is not UTF-8"),
    Case("messages", "jsonl_not_json", jsonl_bytes(b'{"file_name": \n'), "refused: metadata.jsonl line 1 is not JSON"),
    Case("messages", "csv_bom", csv_table(["file_name", "text"], "ok.mp4", bom=True), "accepted"),
    Case("messages", "csv_not_utf8", csv_raw(b"file_name,text\nok.mp4,caf\xe9\n"), "refused: t.csv is not UTF-8"),
    Case("messages", "csv_field_over_limit", csv_raw(b"file_name,text\nok.mp4," + b"a" * (2 << 20) + b"\n"),
         "refused: over data prepare's limit of 1,048,576 bytes"),
    Case("messages", "index_not_utf8", raw_index(b'{"format": "\xff"}'), "refused: index.json is not UTF-8"),
    Case("messages", "index_deep_nesting", raw_index(b"[" * 100_000), "refused: nests JSON too deeply"),
    Case("messages", "index_not_json", raw_index(b"{"), "refused: index.json is not JSON"),
    Case("data", "frames_edited_in_index", edit_index(frames_edited), "refused: holds clips of 2 frames, but index.json says 4"),
    Case("data", "samples_edited_in_index", edit_index(samples_edited), "refused: but index.json says 5 samples"),
    Case("data", "shard_byte_flipped", tampered_shard, "refused: does not match its sha256"),
    Case("data", "shard_byte_flipped_captions_only", tampered_shard_captions, "refused: does not match its sha256"),
    Case("data", "untouched", edit_index(lambda *a: None), "accepted"),
    Case("resume", "second_prepare_same_out", locked, "refused: is being written by another turbo-edge run"),
    Case("resume", "same_relative_source_other_folder", same_relative_source_elsewhere, "accepted"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_data_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = (tmp_path, monkeypatch) if case.act.__code__.co_argcount == 2 else (tmp_path,)
    run(case, *args)


def test_brace_count_agrees_with_expansion():
    from braceexpand import braceexpand

    for text in ["a{0..9}b", "{a,b{1..3},c}", "x{000..099..7}", "{a..e}{1,2}", "plain", "{x}", "{0..3}::{a,b}"]:
        assert sources.brace_count(text) == sum(len(list(braceexpand(p))) for p in text.split("::")), text


def test_tar_member_over_limit_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(LIMITS, "member_bytes", 1024)
    write_tar(tmp_path / "w.tar", {"k.mp4": b"\0" * 8192, "k.txt": b"x"})
    reads = []
    real = tarfile.ExFileObject.read

    def spy(self, *a):
        reads.append(len(a))
        return real(self, *a)

    monkeypatch.setattr(tarfile.ExFileObject, "read", spy)
    assert [i.bad for i in sources.iter_items(str(tmp_path / "w.tar"))] == ["too_large"]
    assert len(reads) == 1  # k.txt's; the oversized video member's data was skipped, not read
