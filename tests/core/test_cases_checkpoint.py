"""Case table: a training checkpoint damaged or edited on disk, then resumed. Every file's sha256 is in state.json,
checked before a tensor loads; state.json itself is refused in one line naming it when it is not what a save
writes. Each case saves a fresh checkpoint of a tiny model, edits it, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hostile import Case, params, run

from turbo_edge.core import checkpoint as ckpt


def _saved(tmp: Path) -> Path:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return ckpt.save_checkpoint(tmp / "ckpt", {"model": model}, opt, {"step": 2, "config_hash": "abc"})


def _resume(path: Path, config_hash: str = "abc") -> str:
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    meta = ckpt.load_checkpoint(path, {"model": model}, opt, expected_config_hash=config_hash)
    assert meta["step"] == 2
    return "accepted"


def edit_file(name: str, how):
    def act(tmp: Path) -> str:
        path = _saved(tmp)
        file = path / name
        file.write_bytes(how(file.read_bytes()))
        return _resume(path)
    return act


def edit_state(change):
    def act(tmp: Path) -> str:
        path = _saved(tmp)
        state = json.loads((path / "state.json").read_text())
        change(state, path)
        (path / "state.json").write_text(json.dumps(state))
        return _resume(path)
    return act


def zero64(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + b"\0" * 64 + data[mid + 64:]


def legacy_truncated(tmp: Path) -> str:  # saved before hashes were recorded, then cut short
    path = _saved(tmp)
    state = json.loads((path / "state.json").read_text())
    del state["files"]
    (path / "state.json").write_text(json.dumps(state))
    (path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes()[:40])
    return _resume(path)


def removed(name: str):
    def act(tmp: Path) -> str:
        path = _saved(tmp)
        (path / name).unlink()
        return _resume(path)
    return act


def other_model(tmp: Path) -> str:
    path = _saved(tmp)
    model = torch.nn.Linear(4, 8)  # another run's shapes
    ckpt.load_checkpoint(path, {"model": model}, None, expected_config_hash="abc")
    return "accepted"


def teacher_style(tmp: Path) -> str:  # the teacher's export reads one module's tensors directly
    path = _saved(tmp)
    (path / "model.safetensors").write_bytes(zero64((path / "model.safetensors").read_bytes()))
    ckpt.load_tensors(path, "model")
    return "accepted"


def files_entry(state: dict, path: Path) -> None:
    state["files"]["../../etc/passwd"] = "0" * 64


CASES = [
    Case("checkpoint", "untouched", edit_file("model.safetensors", lambda d: d), "accepted"),
    Case("checkpoint", "model_64_zeroed_bytes", edit_file("model.safetensors", zero64), "refused: model.safetensors does not match its sha256"),
    Case("checkpoint", "model_truncated", edit_file("model.safetensors", lambda d: d[:len(d) // 2]), "refused: does not match its sha256"),
    Case("checkpoint", "model_emptied", edit_file("model.safetensors", lambda d: b""), "refused: does not match its sha256"),
    Case("checkpoint", "optimizer_zeroed", edit_file("optimizer.safetensors", zero64), "refused: optimizer.safetensors does not match"),
    Case("checkpoint", "model_missing", removed("model.safetensors"), "refused: model.safetensors is missing"),
    Case("checkpoint", "state_missing", removed("state.json"), "refused: has no state.json"),
    Case("checkpoint", "state_truncated", edit_file("state.json", lambda d: d[:len(d) // 2]), "refused: state.json is not valid JSON"),
    Case("checkpoint", "state_not_utf8", edit_file("state.json", lambda d: b"\xff" + d), "refused: state.json is not UTF-8"),
    Case("checkpoint", "state_deep_nesting", edit_file("state.json", lambda d: b"[" * 100_000), "refused: state.json is not valid JSON"),
    Case("checkpoint", "state_a_list", edit_file("state.json", lambda d: b"[1, 2]"), "refused: is not a checkpoint's state"),
    Case("checkpoint", "state_step_string", edit_state(lambda s, p: s.update(step="two")), "refused: is not a checkpoint's state"),
    Case("checkpoint", "state_step_bool", edit_state(lambda s, p: s.update(step=True)), "refused: is not a checkpoint's state"),
    Case("checkpoint", "state_files_not_a_table", edit_state(lambda s, p: s.update(files=[1])), "refused: files is not a table"),
    Case("checkpoint", "state_files_outside", edit_state(files_entry), "refused: points outside"),
    Case("checkpoint", "state_files_entry_removed", edit_state(lambda s, p: s["files"].pop("model.safetensors")),
         "refused: lists no model.safetensors"),
    Case("checkpoint", "state_other_config", edit_state(lambda s, p: s.update(config_hash="zzz")), "refused: config hash zzz"),
    Case("checkpoint", "legacy_no_hashes_truncated", legacy_truncated, "refused: is not a readable safetensors file"),
    Case("checkpoint", "another_models_shapes", other_model, "refused: does not fit this run's model"),
    Case("checkpoint", "teacher_export_zeroed", teacher_style, "refused: does not match its sha256"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_checkpoint_case(case: Case, tmp_path: Path) -> None:
    run(case, tmp_path)


def test_every_saved_file_is_hashed(tmp_path: Path):
    path = _saved(tmp_path)
    state = json.loads((path / "state.json").read_text())
    assert sorted(state["files"]) == ["model.safetensors", "optimizer.safetensors"]
    assert ckpt.verify_checkpoint(path)["step"] == 2
