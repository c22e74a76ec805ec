"""Case table: every output writer against a user's files. A writer either writes where nothing is, replaces (with
--overwrite) only what turbo-edge recorded writing, or refuses in one line before any work with the user's files
byte for byte as they were ("kept"). Ownership is a record with a run id and the files written (a bundle's manifest
lists and hashes its files), never a marker's mere existence.

Writers: ``bench --json``, ``eval --json``, ``world export``, ``generate --prompts``, ``serve --write-only`` (the
Triton model directory), the C++ host's frames (``turbo_edge_generate --out``; skipped where it is not built), and
``data prepare``'s run directory. The refusals come before any model or bundle loads, so the table runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from hostile import Case, params, run

from turbo_edge import cli
from turbo_edge.serve import repository
from turbo_edge.spec.configs import ServeConfig
from turbo_edge.spec.outputs import OWNER_KEY, RECORD, write_json_output, write_record

ROOT = Path(__file__).resolve().parents[2]
HOST = Path(os.environ.get("TURBO_EDGE_CPP_BUILD", ROOT / "build" / "runtime_cpp")) / "turbo_edge_generate"
USER = b"years of work\n"


def _snapshot(root: Path) -> dict[str, str]:
    if root.is_file():
        return {"": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(args: list[str]) -> str:
    """Run the CLI; "refused: LINE" on a one-line error (rc 2), "accepted" on rc 0."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(args)
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("turbo-edge")]
    if rc == 2:
        assert len(lines) == 1, err.getvalue()
        return "refused: " + lines[0]
    assert rc == 0, err.getvalue()
    return "accepted"


def kept(setup, args):
    """The user's things (``setup(tmp)`` makes them, returns the path the writer is pointed at) survive the writer."""
    def act(tmp: Path) -> str:
        target = setup(tmp)
        before = _snapshot(tmp)
        result = _cli([a.replace("TARGET", str(target)).replace("TMP", str(tmp)) for a in args])
        assert result.startswith("refused: "), result
        assert _snapshot(tmp) == before, "a user's file changed"
        return "kept"
    return act


# ------------------------------------------------------------------ what the user has where the output goes


def notes(tmp: Path) -> Path:
    (tmp / "notes.txt").write_bytes(USER)
    return tmp / "notes.txt"


def user_json(tmp: Path) -> Path:  # looks like a results file, but turbo-edge did not write it
    (tmp / "r.json").write_text(json.dumps({"kind": "bench", "rows": [], OWNER_KEY: "mine"}))
    return tmp / "r.json"


def a_directory(tmp: Path) -> Path:
    (tmp / "d").mkdir()
    (tmp / "d" / "keep.txt").write_bytes(USER)
    return tmp / "d"


def marker_beside(marker: str, content: str = "{}"):
    def setup(tmp: Path) -> Path:  # a marker file that merely exists, beside the user's file
        out = tmp / "out"
        out.mkdir()
        (out / marker).write_text(content)
        (out / "mine.txt").write_bytes(USER)
        return out
    return setup


def own_with_user_file(marker: str):
    def setup(tmp: Path) -> Path:  # turbo-edge's own output, then the user put a file in it
        out = tmp / "out"
        out.mkdir()
        (out / marker).write_text("{}")
        write_record(out, "test")
        (out / "mine.txt").write_bytes(USER)
        return out
    return setup


def forged_record(marker: str):
    def setup(tmp: Path) -> Path:  # a record without a run id is no proof
        out = tmp / "out"
        out.mkdir()
        (out / marker).write_text("{}")
        (out / RECORD).write_text(json.dumps({"format": "turbo-edge-output", "files": [marker]}))
        return out
    return setup


def prompts_file(tmp: Path) -> Path:
    (tmp / "p.txt").write_text("a red circle moving left\n")
    return tmp / "p.txt"


def json_case(command: list[str], setup, overwrite: bool):
    return kept(setup, [*command, "--json", "TARGET", *(["--overwrite"] if overwrite else [])])


BENCH = ["bench", "--bundle", "TMP/no-bundle"]
EVAL = ["eval", "--model", "noise", "--num", "2"]


def own_json_replaced(command: str, overwrite: bool):
    def act(tmp: Path) -> str:
        target = tmp / "r.json"
        first = write_json_output(target, {"rows": []}, command)[OWNER_KEY]["run_id"]  # an earlier run's results
        args = (BENCH if command == "bench" else EVAL) + ["--json", str(target)] + (["--overwrite"] if overwrite else [])
        result = _cli([a.replace("TMP", str(tmp)) for a in args])
        if command == "bench" and "no-bundle" in result:  # past the output check: then the missing bundle is refused
            return "accepted"
        if result == "accepted":
            assert json.loads(target.read_text())[OWNER_KEY]["run_id"] != first  # replaced by this run's results
        return result
    return act


def world_own_replaced(tmp: Path) -> str:
    out = tmp / "w"
    args = ["world", "export", "--num", "1", "--out", str(out)]
    assert _cli(args) == "accepted"
    first = json.loads((out / RECORD).read_text())["run_id"]
    result = _cli([*args, "--overwrite"])
    assert json.loads((out / RECORD).read_text())["run_id"] != first and sorted(p.name for p in out.iterdir()) == sorted(
        [RECORD, "000000.mp4", "metadata.jsonl", "world.json"])
    return result


def serve_write(setup):
    def act(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        monkeypatch.setattr(repository, "load_bundle", lambda *a, **k: object())  # the bundle is not what this table tests
        monkeypatch.setattr(repository, "config_pbtxt", lambda cfg, bundle: 'name: "m"\n')
        repo = tmp / "repo"
        repo.mkdir()
        setup(repo / "m")
        before = _snapshot(tmp)
        cfg = ServeConfig.make(bundle=str(tmp), repository=str(repo), model_name="m", write_only=True)
        try:
            repository.write_repository(cfg)
        except FileExistsError:
            assert _snapshot(tmp) == before
            raise
        assert sorted(json.loads((repo / "m" / RECORD).read_text())["files"]) == ["1/model.py", "config.pbtxt"]
        return "accepted"
    return act


def serve_own(path: Path) -> None:
    path.mkdir()
    (path / "1").mkdir()
    (path / "config.pbtxt").write_text("x")
    (path / "1" / "model.py").write_text("x")
    write_record(path, "Triton model (turbo-edge serve)")


def serve_user(path: Path) -> None:
    path.mkdir()
    (path / "config.pbtxt").write_text("the user's own model")


def serve_own_plus_user(path: Path) -> None:
    serve_own(path)
    (path / "notes.txt").write_bytes(USER)


def host_case(setup, *extra: str):
    def act(tmp: Path) -> str:
        if not HOST.is_file():
            pytest.skip(f"the C++ host is not built ({HOST}); runtime/cpp/build.sh builds it")
        out = setup(tmp)
        before = _snapshot(tmp)
        proc = subprocess.run([str(HOST), "--bundle", str(tmp / "no-bundle"), "--prompt", "a red circle moving left", "--out", str(out),
                               *extra], capture_output=True, text=True)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        if "no-bundle" in lines[0]:  # past the output check: the host then refuses the missing bundle
            return "accepted"
        assert _snapshot(tmp) == before
        return "kept"
    return act


def host_own(tmp: Path) -> Path:
    out = tmp / "frames"
    out.mkdir()
    (out / "frames.rgb").write_bytes(b"\0" * 12)
    (out / "frame_000.ppm").write_bytes(b"P6\n")
    (out / RECORD).write_text(json.dumps({"format": "turbo-edge-output", "run_id": "r1", "files": ["frames.rgb", "frame_000.ppm"]}))
    return out


def host_own_plus_user(tmp: Path) -> Path:
    out = host_own(tmp)
    (out / "frame_001.ppm").write_bytes(USER)  # the user's, named like a frame
    return out


def host_user_frames(tmp: Path) -> Path:
    out = tmp / "frames"
    out.mkdir()
    (out / "frame_000.ppm").write_bytes(USER)
    return out


def host_empty(tmp: Path) -> Path:
    (tmp / "frames").mkdir()
    return tmp / "frames"


def run_dir_artifact(with_record: bool, user_file: bool):
    """A stage rewriting the model inside its own run directory (``in_run_dir``): an earlier build's model there (no
    record) is the run's own; a user's file in a recorded one is still never lost."""
    def act(tmp: Path) -> str:
        from turbo_edge.spec.outputs import staged_dir

        out = tmp / "run" / "student"
        out.mkdir(parents=True)
        (out / "model_index.json").write_text("{}")
        if with_record:
            write_record(out, "model directory")
        if user_file:
            (out / "mine.txt").write_bytes(USER)
        before = _snapshot(tmp)
        try:
            with staged_dir(out, "model_index.json", overwrite=True, in_run_dir=True) as stage:
                (stage / "model_index.json").write_text('{"new": 1}')
        except FileExistsError:
            assert _snapshot(tmp) == before
            return "kept"
        return "accepted"
    return act


def data_prepare_into(setup):
    return kept(setup, ["data", "prepare", "--source", "TMP", "--out", "TARGET"])


CASES = [
    Case("writers", "bench_json_onto_notes", json_case(BENCH, notes, False), "kept"),
    Case("writers", "bench_json_onto_notes_overwrite", json_case(BENCH, notes, True), "kept"),
    Case("writers", "bench_json_onto_user_json_overwrite", json_case(BENCH, user_json, True), "kept"),
    Case("writers", "bench_json_onto_directory", json_case(BENCH, a_directory, True), "kept"),
    Case("writers", "bench_json_own_without_overwrite", own_json_replaced("bench", False), "refused: exists; pass --overwrite"),
    Case("writers", "bench_json_own_overwrite", own_json_replaced("bench", True), "accepted"),
    Case("writers", "eval_json_onto_notes", json_case(EVAL, notes, False), "kept"),
    Case("writers", "eval_json_onto_notes_overwrite", json_case(EVAL, notes, True), "kept"),
    Case("writers", "eval_json_onto_directory", json_case(EVAL, a_directory, False), "kept"),
    Case("writers", "eval_json_own_overwrite", own_json_replaced("eval", True), "accepted"),
    Case("writers", "world_export_marker_beside_user_file", kept(marker_beside("world.json"),
                                                                 ["world", "export", "--num", "1", "--out", "TARGET", "--overwrite"]), "kept"),
    Case("writers", "world_export_own_plus_user_file", kept(own_with_user_file("world.json"),
                                                            ["world", "export", "--num", "1", "--out", "TARGET", "--overwrite"]), "kept"),
    Case("writers", "world_export_forged_record", kept(forged_record("world.json"),
                                                       ["world", "export", "--num", "1", "--out", "TARGET", "--overwrite"]), "kept"),
    Case("writers", "world_export_user_dir", kept(a_directory, ["world", "export", "--num", "1", "--out", "TARGET", "--overwrite"]), "kept"),
    Case("writers", "world_export_own_overwrite", world_own_replaced, "accepted"),
    Case("writers", "generate_prompts_marker_beside_user_file",
         kept(marker_beside("clips.json"), ["generate", "--prompts", "TMP/p.txt", "--out", "TARGET", "--overwrite"]), "kept"),
    Case("writers", "generate_prompts_own_plus_user_file",
         kept(own_with_user_file("clips.json"), ["generate", "--prompts", "TMP/p.txt", "--out", "TARGET", "--overwrite"]), "kept"),
    Case("writers", "serve_repository_user_model", serve_write(serve_user), "refused: holds a model turbo-edge did not write"),
    Case("writers", "serve_repository_own_plus_user_file", serve_write(serve_own_plus_user),
         "refused: holds files turbo-edge did not write (notes.txt)"),
    Case("writers", "serve_repository_own_model", serve_write(serve_own), "accepted"),
    Case("writers", "serve_repository_new", serve_write(lambda p: None), "accepted"),
    Case("writers", "host_frames_user_files", host_case(host_user_frames), "kept"),
    Case("writers", "host_frames_user_files_overwrite", host_case(host_user_frames, "--overwrite"), "kept"),
    Case("writers", "host_frames_own_plus_user_file", host_case(host_own_plus_user, "--overwrite"), "kept"),
    Case("writers", "host_frames_own_without_overwrite", host_case(host_own), "kept"),
    Case("writers", "host_frames_own_overwrite", host_case(host_own, "--overwrite"), "accepted"),
    Case("writers", "host_frames_empty_dir", host_case(host_empty), "accepted"),
    Case("writers", "run_dir_model_of_an_earlier_build", run_dir_artifact(False, False), "accepted"),
    Case("writers", "run_dir_model_recorded", run_dir_artifact(True, False), "accepted"),
    Case("writers", "run_dir_model_recorded_plus_user_file", run_dir_artifact(True, True), "kept"),
    Case("writers", "data_prepare_into_user_dir", data_prepare_into(a_directory), "kept"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_writer_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.txt").write_text("a red circle moving left\n")
    args = (tmp_path, monkeypatch) if case.act.__code__.co_argcount == 2 else (tmp_path,)
    run(case, *args)


def test_json_results_carry_their_ownership_record(tmp_path: Path):
    data = write_json_output(tmp_path / "r.json", {"rows": [1]}, "bench")
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk == data and on_disk[OWNER_KEY]["files"] == ["r.json"] and on_disk[OWNER_KEY]["kind"] == "bench"
    again = write_json_output(tmp_path / "r.json", {"rows": [2]}, "bench", overwrite=True)
    assert again[OWNER_KEY]["run_id"] != data[OWNER_KEY]["run_id"]
