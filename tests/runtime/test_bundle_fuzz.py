"""Fuzzing the bundle's trust boundary: seeded random edits of a manifest's paths, hashes and section types.

Every reader (``turbo-edge verify``, the Python runtime's ``generate``, the C++ host) either accepts the bundle or
refuses it with one ``error:`` line (never a traceback, never a crash), and they agree: what verify refuses, both
runtimes refuse, and the two runtimes give the same verdict. 300 examples by default, 2000 with ``-m slow``. Edits reach the paths,
hashes and types of the manifest, its nesting and schema version, and the bundle's files (extra, missing, symlinked).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cpp_host import run_host
from synthetic_bundles import make_synthetic_bundle

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from turbo_edge import cli  # noqa: E402

PROMPT = "a red circle moving left"
FILES = ("text_encoder.onnx", "unet.onnx", "vae_decoder.onnx", "tokenizer/vocab.json", "tokenizer/merges.txt")
COMPONENTS = ("text_encoder", "unet", "vae_decoder")
PATHS = st.one_of(
    st.sampled_from(FILES),
    st.sampled_from(["", ".", "..", "/", "/etc/passwd", "../../../etc/passwd", "./unet.onnx", "tokenizer/../unet.onnx",
                     "tokenizer", "unet.onnx/", "UNET.ONNX", "unet.onnx\x00.txt", "a\\b.onnx", "//unet.onnx", "~/unet.onnx",
                     "manifest.json", "missing.onnx", "outside/../../b/unet.onnx"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz./-_~\\é", max_size=24),
)
HASHES = st.one_of(st.just("keep"), st.sampled_from(["", "0" * 64, "f" * 64, "not-a-hash", "F" * 64]), st.text(max_size=70))
JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=8),
                        st.lists(st.integers(0, 2), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(0, 2), max_size=2))
EDIT = st.one_of(
    st.tuples(st.just("files_key"), st.sampled_from(FILES), PATHS),  # rename a files entry (hash kept)
    st.tuples(st.just("files_hash"), st.sampled_from(FILES), HASHES),  # change an entry's hash
    st.tuples(st.just("files_add"), PATHS, HASHES),  # add an entry
    st.tuples(st.just("files_del"), st.sampled_from(FILES), st.none()),
    st.tuples(st.just("component_path"), st.sampled_from(COMPONENTS), st.one_of(PATHS, JSON_VALUES)),
    st.tuples(st.just("section"), st.sampled_from(["files", "components", "sampler", "text", "latent", "video"]), JSON_VALUES),
    st.tuples(st.just("nest"), st.sampled_from(["files", "components", "text", "latent"]), st.sampled_from(["list", "dict"])),
    st.tuples(st.just("schema"), st.just("schema_version"), st.one_of(JSON_VALUES, st.sampled_from([0, 1, 2, 1.0, "1", True]))),
)
# Edits of the bundle's files rather than its manifest: an extra file, a missing one, a symlink (to an identical
# copy outside the bundle, or to another member inside it).
FILE_EDIT = st.tuples(st.sampled_from(["extra", "missing", "link_outside", "link_inside"]), st.sampled_from(FILES))


def mutate(manifest: dict, edit: tuple) -> None:  # noqa: C901
    kind, target, value = edit
    files = manifest["files"] if isinstance(manifest.get("files"), dict) else {}
    components = manifest["components"] if isinstance(manifest.get("components"), dict) else {}
    if kind == "files_key" and target in files:
        files[value] = files.pop(target)
    elif kind == "files_hash" and target in files and value != "keep":
        files[target] = value
    elif kind == "files_add":
        files[target] = files.get("unet.onnx", "0" * 64) if value == "keep" else value
    elif kind == "files_del":
        files.pop(target, None)
    elif kind == "component_path" and isinstance(components.get(target), dict) and isinstance(components[target].get("files"), dict):
        components[target]["files"]["fp32"] = value
    elif kind == "section":
        manifest[target] = value
    elif kind == "nest" and target in manifest:
        manifest[target] = [manifest[target]] if value == "list" else {"nested": manifest[target]}
    elif kind == "schema":
        manifest[target] = value


def edit_files(bundle: Path, edit: tuple) -> bool:
    """Apply one file edit; True when it changed the bundle (each such change puts it outside the rules)."""
    kind, name = edit
    path = bundle / name
    if kind == "extra":
        (bundle / (name + ".extra")).write_bytes(b"extra")
    elif kind == "missing":
        if not path.is_file():
            return False
        path.unlink()
    elif path.is_file() and not path.is_symlink():
        if kind == "link_outside":
            outside = bundle.parent / "outside" / name.replace("/", "_")
            outside.parent.mkdir(exist_ok=True)
            shutil.move(path, outside)
            path.symlink_to(outside)
        else:
            other = bundle / ("unet.onnx" if name != "unet.onnx" else "vae_decoder.onnx")
            path.unlink()
            path.symlink_to(other)
    else:
        return False
    return True


def _verdict(rc: int, err: str) -> bool:
    """True when accepted; a refusal must be exit status 2 with exactly one error line and no traceback."""
    assert "Traceback" not in err and rc in (0, 2), (rc, err[-2000:])
    if rc == 2:
        assert sum("error:" in line for line in err.splitlines()) == 1, err[-2000:]
    return rc == 0


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_bundle(tmp_path_factory.mktemp("fuzz") / "base", "consistency")


def check(host: Path, base: Path, work: Path, edits: list[tuple], capsys, file_edits: list[tuple] = ()) -> None:  # noqa: ANN001
    bundle = work / "b"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, bundle)
    changed = [edit for edit in file_edits if edit_files(bundle, edit)]
    manifest = json.loads((bundle / "manifest.json").read_text())
    for edit in edits:
        mutate(manifest, edit)
    listed = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    # Outside the rules whatever else changed: an unlisted extra file, a listed file missing or now a symlink.
    broken = [(k, n) for k, n in changed if (n + ".extra" not in listed if k == "extra" else n in listed)]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    verified = _verdict(cli.main(["verify", str(bundle)]), capsys.readouterr().err)
    py = _verdict(cli.main(["generate", PROMPT, "--bundle", str(bundle), "--steps", "1", "--out", str(work / "x.gif")]), capsys.readouterr().err)
    proc = run_host(host, "--bundle", str(bundle), "--prompt", PROMPT, "--steps", "1", "--out", str(work / "o"))
    cpp = _verdict(proc.returncode, proc.stderr)
    assert py == cpp, (edits, file_edits, py, cpp, proc.stderr[-500:])
    assert verified or not py, (edits, file_edits)  # what verify refuses, no runtime runs
    if broken:  # an extra, missing or symlinked file: no reader accepts the bundle, whatever the manifest says
        assert not (verified or py or cpp), (edits, broken)


def _fuzz(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_fuzz(300)
@given(edits=st.lists(EDIT, max_size=3), file_edits=st.lists(FILE_EDIT, max_size=2))
def test_readers_agree_on_fuzzed_manifests(host, base, tmp_path, capsys, edits, file_edits):
    check(host, base, tmp_path / "case", edits, capsys, file_edits)


@pytest.mark.slow
@_fuzz(2000)
@given(edits=st.lists(EDIT, max_size=4), file_edits=st.lists(FILE_EDIT, max_size=3))
def test_readers_agree_on_many_fuzzed_manifests(host, base, tmp_path, capsys, edits, file_edits):
    check(host, base, tmp_path / "case", edits, capsys, file_edits)
