"""The bundle's trust boundary, one rule for ``turbo-edge verify`` and the runtime (``spec.bundle.load_bundle``):
every file a reader opens is a hashed member of the bundle, inside its directory, unchanged since export."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from cpp_host import run_host
from synthetic_bundles import make_synthetic_bundle

from turbo_edge import cli
from turbo_edge.runtime import Pipeline
from turbo_edge.spec.bundle import load_bundle, verify_bundle
from turbo_edge.spec.errors import BundleError

PROMPT = "a red circle moving left"


def _edit(bundle: Path, change) -> None:  # noqa: ANN001
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    return make_synthetic_bundle(tmp_path / "b", "consistency")


def _outside_component(where: str):
    def mutate(bundle: Path) -> None:
        evil = bundle.parent / "outside" / "evil.onnx"
        evil.parent.mkdir(exist_ok=True)
        shutil.copy(bundle / "unet.onnx", evil)
        rel = str(evil) if where == "absolute" else "../outside/evil.onnx"
        _edit(bundle, lambda m: m["components"]["unet"]["files"].__setitem__("fp32", rel))
    return mutate


def _system_file(bundle: Path) -> None:
    passwd = Path("/etc/passwd")
    digest = hashlib.sha256(passwd.read_bytes()).hexdigest() if passwd.is_file() else "0" * 64
    _edit(bundle, lambda m: m["files"].update({"/etc/passwd": digest, "../../../etc/shadow": "f" * 64}))


def _unhashed_component(bundle: Path) -> None:
    shutil.copy(bundle / "unet.onnx", bundle / "unet2.onnx")
    _edit(bundle, lambda m: m["components"]["unet"]["files"].__setitem__("fp32", "unet2.onnx"))


# One table of cases, run against verify, the Python runtime (with and without --no-verify) and the C++ host.
CASES = {
    "component_absolute_path": (_outside_component("absolute"), "outside the bundle"),
    "component_dotdot_path": (_outside_component("dotdot"), "outside the bundle"),
    "files_entry_system_file": (_system_file, "outside the bundle"),
    "component_not_hashed": (_unhashed_component, "not in the hashed file list"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_python_readers_refuse(bundle: Path, case: str, capsys):
    mutate, message = CASES[case]
    mutate(bundle)
    for verify in (True, False):  # --no-verify skips the hashes, never the boundary
        with pytest.raises(BundleError, match=message):
            Pipeline.from_bundle(bundle, verify=verify)
    with pytest.raises(BundleError, match=message):
        verify_bundle(bundle)
    assert cli.main(["verify", str(bundle)]) == 2
    assert cli.main(["generate", PROMPT, "--bundle", str(bundle), "--out", str(bundle.parent / "x.gif")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 2 and message in err


@pytest.mark.parametrize("case", sorted(CASES))
def test_cpp_host_refuses(host, bundle: Path, case: str, tmp_path: Path):
    mutate, message = CASES[case]
    mutate(bundle)
    for extra in ((), ("--no-verify",)):
        proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--out", str(tmp_path / "o"), *extra)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_changed_file_error_does_not_reveal_its_hash(bundle: Path):
    (bundle / "unet.onnx").write_bytes((bundle / "unet.onnx").read_bytes() + b"x")
    actual = hashlib.sha256((bundle / "unet.onnx").read_bytes()).hexdigest()
    with pytest.raises(BundleError, match="changed after export") as info:
        verify_bundle(bundle)
    assert actual[:8] not in str(info.value)


def test_a_symlink_leaving_the_bundle_is_refused(bundle: Path, tmp_path: Path):
    outside = tmp_path / "copy.onnx"
    shutil.copy(bundle / "vae_decoder.onnx", outside)
    (bundle / "vae_decoder.onnx").unlink()
    os.symlink(outside, bundle / "vae_decoder.onnx")  # same bytes, same hash: only the location is wrong
    with pytest.raises(BundleError, match="link to a file outside the bundle"):
        load_bundle(bundle)


def test_verify_and_runtime_agree_on_an_unlisted_file(bundle: Path):
    (bundle / "notes.txt").write_text("extra")
    for read in (verify_bundle, Pipeline.from_bundle):
        with pytest.raises(BundleError, match="not in its manifest"):
            read(bundle)


@pytest.mark.parametrize("text,message", [("[1, 2]", "not an object"), ("{", "not valid JSON")])
def test_a_malformed_manifest_is_one_line(bundle: Path, text: str, message: str, capsys):
    (bundle / "manifest.json").write_text(text)
    assert cli.main(["verify", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_verify_says_that_it_runs_unchecked_graphs(host, bundle: Path, tmp_path: Path, capsys):
    from turbo_edge.spec.errors import UnverifiedBundleWarning

    with open(bundle / "vae_decoder.onnx", "ab") as fh:
        fh.write(b"\xa0\x01\x00")  # an unknown protobuf field: a changed graph that still parses; --no-verify runs it, and says so
    with pytest.warns(UnverifiedBundleWarning, match="not hash-checked"):
        Pipeline.from_bundle(bundle, verify=False)
    assert cli.main(["generate", PROMPT, "--bundle", str(bundle), "--out", str(tmp_path / "x.gif"), "--no-verify"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: --no-verify: the bundle's files are not hash-checked") == 1 and "UnverifiedBundleWarning" not in err
    proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--out", str(tmp_path / "o"), "--no-verify")
    assert proc.returncode == 0 and "warning: --no-verify: the bundle's files are not hash-checked" in proc.stderr
    proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--out", str(tmp_path / "o2"))
    assert proc.returncode == 2 and "changed after export" in proc.stderr and "warning" not in proc.stderr


@pytest.mark.parametrize("damage", ["truncated", "not_onnx"])
def test_no_verify_on_a_broken_graph_is_one_line(host, bundle: Path, tmp_path: Path, capsys, damage: str):
    graph = bundle / "vae_decoder.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2] if damage == "truncated" else b"GIF89a not a graph")
    assert cli.main(["generate", PROMPT, "--bundle", str(bundle), "--out", str(tmp_path / "x.gif"), "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "vae_decoder.onnx: the ort-cpu backend cannot load this vae_decoder graph" in err
    assert len(err.strip().splitlines()) == 2  # the --no-verify warning and the error
    proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--out", str(tmp_path / "o"), "--no-verify")
    assert proc.returncode == 2 and "vae_decoder.onnx" in proc.stderr and len(proc.stderr.strip().splitlines()) == 2, proc.stderr


def test_a_deeply_nested_manifest_is_one_line_for_every_reader(bundle: Path, host: Path, tmp_path: Path, capsys):
    (bundle / "manifest.json").write_text("[" * 100_000)  # a recursive reader would overflow its stack
    with pytest.raises(BundleError, match="nests JSON too deeply"):
        load_bundle(bundle)
    assert cli.main(["verify", str(bundle)]) == 2
    assert "nests JSON too deeply" in capsys.readouterr().err
    proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--out", str(tmp_path / "o"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "nested deeper than 512 levels" in lines[0], proc.stderr
