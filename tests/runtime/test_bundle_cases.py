"""One table of bundle cases (``bundle_cases.json``), one verdict from every reader: ``turbo-edge verify``, the
Python runtime and the C++ host, each with and without ``--no-verify`` where it has one. A case edits a fresh
synthetic bundle; a reader either refuses it with a one-line error holding the case's message, or accepts it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from cpp_host import run_host
from synthetic_bundles import make_synthetic_bundle

from turbo_edge import cli

PROMPT = "a red circle moving left"
TABLE = json.loads((Path(__file__).with_name("bundle_cases.json")).read_text())
CASES = {c["name"]: c for c in TABLE["cases"]}
READERS = TABLE["readers"]


def expected(case: dict[str, Any], reader: str) -> str | None:
    expect = case["expect"]
    return expect[reader] if reader in expect else expect.get("all")


def _manifest(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())


def _write(bundle: Path, manifest: dict[str, Any]) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _at(obj: Any, path: list[str]) -> tuple[Any, str]:
    for key in path[:-1]:
        obj = obj[key]
    return obj, path[-1]


def apply(bundle: Path, outside: Path, steps: list[dict[str, Any]]) -> None:
    """Run a case's steps on ``bundle``; ``{outside}`` in a path or value names a directory beside it."""
    def p(text: str) -> Path:
        text = text.replace("{outside}", str(outside))
        return Path(text) if os.path.isabs(text) else bundle / text

    for step in steps:
        op = step["op"]
        if op in ("copy", "move"):
            p(step["to"]).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copy if op == "copy" else shutil.move)(p(step["from"]), p(step["to"]))
        elif op in ("set", "del"):
            manifest = _manifest(bundle)
            parent, key = _at(manifest, step["path"])
            if op == "set":
                parent[key] = json.loads(json.dumps(step["value"]).replace("{outside}", str(outside)))
            else:
                del parent[key]
            _write(bundle, manifest)
        elif op == "hash_entry":
            source = Path(step["of"])
            manifest = _manifest(bundle)
            manifest["files"][step["key"]] = hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else "0" * 64
            _write(bundle, manifest)
        elif op == "append":
            with open(p(step["file"]), "ab") as fh:
                fh.write(bytes.fromhex(step["hex"]))
        elif op == "truncate":
            data = p(step["file"]).read_bytes()
            p(step["file"]).write_bytes(data[: len(data) // 2])
        elif op == "remove":
            p(step["file"]).unlink()
        elif op == "write":
            p(step["file"]).write_text(step["text"])
        elif op == "symlink":
            os.symlink(p(step["target"]), p(step["file"]))
        elif op == "manifest_text":
            (bundle / "manifest.json").write_text(step["text"])
        else:
            raise AssertionError(f"unknown op {op!r} in bundle_cases.json")


@pytest.fixture()
def case_bundle(tmp_path: Path, request) -> tuple[Path, dict[str, Any]]:  # noqa: ANN001
    case = CASES[request.param]
    bundle = make_synthetic_bundle(tmp_path / "b", "consistency")
    (tmp_path / "outside").mkdir()
    apply(bundle, tmp_path / "outside", case["steps"])
    return bundle, case


def _one_line_verdict(rc: int, err: str) -> str | None:
    assert "Traceback" not in err, err
    if rc == 0:
        return None
    assert rc == 2, (rc, err)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


def python_verdict(reader: str, bundle: Path, out: Path, capsys) -> str | None:  # noqa: ANN001
    if reader == "verify":
        rc = cli.main(["verify", str(bundle)])
    else:
        extra = ["--no-verify"] if reader == "python_no_verify" else []
        rc = cli.main(["generate", PROMPT, "--bundle", str(bundle), "--out", str(out), "--steps", "1", *extra])
    return _one_line_verdict(rc, capsys.readouterr().err)


@pytest.mark.parametrize("case_bundle", sorted(CASES), indirect=True)
def test_python_readers_give_the_table_s_verdict(case_bundle, tmp_path: Path, capsys):
    bundle, case = case_bundle
    for reader in ("verify", "python", "python_no_verify"):
        got = python_verdict(reader, bundle, tmp_path / f"{reader}.gif", capsys)
        want = expected(case, reader)
        assert (got is None) == (want is None) and (want is None or want in got), (reader, want, got)


@pytest.mark.parametrize("case_bundle", sorted(CASES), indirect=True)
def test_cpp_host_gives_the_table_s_verdict(host, case_bundle, tmp_path: Path):
    bundle, case = case_bundle
    for reader in ("cpp", "cpp_no_verify"):
        extra = ("--no-verify",) if reader == "cpp_no_verify" else ()
        proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--steps", "1", "--out", str(tmp_path / reader), *extra)
        got = _one_line_verdict(proc.returncode, proc.stderr)
        want = expected(case, reader)
        assert (got is None) == (want is None) and (want is None or want in got), (reader, want, got)
        assert (tmp_path / reader).exists() == (want is None)


def test_the_table_covers_every_reader():
    for case in TABLE["cases"]:
        assert set(case["expect"]) <= {"all", *READERS}, case["name"]
        assert "all" in case["expect"] or set(READERS) <= set(case["expect"]), case["name"]
