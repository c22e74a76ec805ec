"""Case table: config values and the command line's failure modes. Every scalar field of every stage config is held
to its type (a bool is not a count, a string not a number, floats finite) and the ``RANGES`` its name has, before
any stage code runs, so ``--dry-run`` refuses exactly what a run would. OS errors, Ctrl-C and a damaged safetensors
file end in one line naming the path, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import io
import json
from pathlib import Path

import pytest
from hostile import Case, params, run

from turbo_edge import cli
from turbo_edge.spec.config import check_value
from turbo_edge.spec.configs import DistillConfig


def dry(*args: str):
    """``turbo-edge ARGS --dry-run``: "accepted" on rc 0, else the one error line (as a refusal)."""
    def act(tmp: Path) -> str:
        return _main([a.replace("TMP", str(tmp)) for a in args] + ["--dry-run"])
    return act


def _main(args: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(args)
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("turbo-edge")]  # progress bars aside
    if rc == 0:
        return "accepted"
    assert len(lines) == 1 and "Traceback" not in err.getvalue(), err.getvalue()
    assert rc in (2, 130)
    return "refused: " + lines[0]


def config_file(data: dict):
    def act(tmp: Path) -> str:
        (tmp / "c.json").write_text(json.dumps({"kind": "distill", "version": DistillConfig.VERSION, **data}))
        return _main(["distill", "--config", str(tmp / "c.json"), "--dry-run"])
    return act


def raising(command: list[str], target: str, exc: BaseException):
    """Run ``command`` with ``target`` (module:function) raising ``exc``: what the user sees."""
    def act(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
        module, _, name = target.partition(":")

        def boom(*a, **k):
            raise exc

        monkeypatch.setattr(__import__(module, fromlist=[name]), name, boom)
        return _main([a.replace("TMP", str(tmp)) for a in command])
    return act


def full_disk_mid_write(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The disk fills while world export writes its clips: the message names the output, the old one is kept."""
    from turbo_edge.core import world_export

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it: no file name

    monkeypatch.setattr(world_export, "write_mp4", full)
    result = _main(["world", "export", "--num", "1", "--out", str(tmp / "w")])
    assert not (tmp / "w").exists() and not list(tmp.glob(".w.tmp-*"))
    return result


def read_only_out(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == tmp / "ro" else real(p, mode, **k))  # tests run as root
    (tmp / "ro").mkdir()
    return _main(["bench", "--bundle", str(tmp / "b"), "--json", str(tmp / "ro" / "r.json")])


def safetensor_error(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from safetensors import SafetensorError

    from turbo_edge import evaluate

    def damaged(cfg):
        raise SafetensorError("Error while deserializing header: HeaderTooLarge")

    monkeypatch.setattr(evaluate, "run_eval", damaged)
    return _main(["eval", "--model", "noise", "--num", "2"])


def ctrl_c_eval(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from turbo_edge import evaluate

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "run_eval", interrupted)
    return _main(["eval", "--model", "noise", "--num", "2"])


def prompts_dir(tmp: Path) -> str:
    (tmp / "prompts").mkdir()
    return _main(["eval", "--model", "noise", "--prompts", str(tmp / "prompts") + "/"])


def generate_names_the_prompt(tmp: Path) -> str:
    from turbo_edge.runtime.generate import write_clips
    from turbo_edge.spec.configs import GenerateConfig

    (tmp / "p.txt").write_text("# two prompts\na red circle moving left\na pink elephant dancing\n")
    cfg = GenerateConfig(prompts=str(tmp / "p.txt"), out=str(tmp / "clips"), bundle="b")

    def make_clip(prompt: str):
        if "elephant" in prompt:
            raise ValueError("words this model was never trained on: 'elephant', 'dancing'")
        import numpy as np

        return np.zeros((2, 8, 8, 3), np.uint8)

    write_clips(cfg, [(2, "a red circle moving left"), (3, "a pink elephant dancing")], make_clip, 8, {})
    return "accepted"


def missing_processor(tmp: Path) -> str:
    from turbo_edge.core.clip_eval import _load_image_processor

    (tmp / "clip").mkdir()
    _load_image_processor(tmp / "clip", "--clip")
    return "accepted"


CASES = [
    Case("config", "lr_nan", dry("distill", "--set", "lr=NaN"), "refused: lr must be a finite number, got nan"),
    Case("config", "lr_nan_flag", dry("distill", "--lr", "nan"), "refused: lr must be a finite number"),
    Case("config", "lr_inf", dry("distill", "--set", "lr=Infinity"), "refused: lr must be a finite number"),
    Case("config", "lr_absurd", dry("distill", "--set", "lr=1e308"), "refused: lr must be in (0, 1]"),
    Case("config", "lr_zero", dry("distill", "--set", "lr=0"), "refused: lr must be in (0, 1]"),
    Case("config", "grad_clip_nan_string", dry("distill", "--set", "grad_clip=nan"), "refused: grad_clip must be a number"),
    Case("config", "grad_clip_negative", dry("distill", "--set", "grad_clip=-1"), "refused: grad_clip must be in (0,"),
    Case("config", "steps_true", dry("distill", "--set", "steps=true"), "refused: steps must be an integer, got true"),
    Case("config", "steps_string", dry("distill", "--set", 'steps="two"'), "refused: steps must be an integer, got \"two\""),
    Case("config", "steps_fraction", dry("distill", "--set", "steps=2.5"), "refused: steps must be an integer, got 2.5"),
    Case("config", "steps_huge", dry("distill", "--set", "steps=99999999999999999999999"), "refused: steps must fit in 64 bits"),
    Case("config", "steps_null", dry("distill", "--set", "steps=null"), "refused: steps must be an integer, got null"),
    Case("config", "threads_negative", dry("distill", "--set", "threads=-5"), "refused: threads must be in [0, 4096]"),
    Case("config", "threads_negative_prepare", dry("data", "prepare", "--source", "s", "--out", "o", "--threads", "-5"),
         "refused: threads must be in [0, 4096]"),
    Case("config", "batch_zero", dry("distill", "--set", "batch=0"), "refused: batch must be in [1, 65536]"),
    Case("config", "guidance_string", dry("generate", "x", "--set", 'guidance="high"'), "refused: guidance must be a number"),
    Case("config", "bool_as_int", dry("distill", "--set", "read_log=1"), "refused: read_log must be true or false, got 1"),
    Case("config", "int_for_float_ok", dry("distill", "--set", "lr=1"), "accepted"),
    Case("config", "defaults_ok", dry("distill"), "accepted"),
    Case("config", "config_file_nan", config_file({"loop": {"lr": float("nan")}}), "refused: lr must be a finite number"),
    Case("config", "config_file_string_steps", config_file({"loop": {"steps": "10"}}), "refused: steps must be an integer"),
    Case("config", "serve_max_batch_absurd", dry("serve", "--bundle", "b", "--max-batch", "100000"),
         "refused: --max-batch must be an integer in [1, 64]"),
    Case("config", "prepare_shard_size_absurd", dry("data", "prepare", "--source", "s", "--out", "o", "--shard-size", "1000000"),
         "refused: --shard-size must be at most 8192"),
    Case("os", "full_disk_names_the_output", full_disk_mid_write, "refused: No space left on device; free some space"),
    Case("os", "read_only_json_folder", read_only_out, "refused: cannot write in"),
    Case("os", "permission_error", raising(["eval", "--model", "noise", "--num", "2"], "turbo_edge.evaluate:run_eval",
                                           PermissionError(errno.EACCES, "Permission denied", "/data/x")),
         "refused: /data/x: Permission denied; choose a path you may write"),
    Case("os", "json_is_a_directory", raising(["eval", "--model", "noise", "--num", "2"], "turbo_edge.evaluate:run_eval",
                                              IsADirectoryError(errno.EISDIR, "Is a directory", "/data/r")),
         "refused: /data/r: Is a directory; name a file"),
    Case("messages", "eval_prompts_is_a_folder", prompts_dir, "refused: is a folder; give a text file"),
    Case("messages", "generate_prompts_names_the_refused_prompt", generate_names_the_prompt,
         "refused: line 3 ('a pink elephant dancing'): words this model was never trained on"),
    Case("messages", "missing_processor_says_it_whole", missing_processor,
         "refused: has no usable image processor (Can't load image processor for"),
    Case("os", "ctrl_c_during_eval", ctrl_c_eval, "refused: interrupted (Ctrl-C)"),
    Case("os", "damaged_safetensors", safetensor_error, "refused: a safetensors file is damaged"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_config_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = (tmp_path, monkeypatch) if case.act.__code__.co_argcount == 2 else (tmp_path,)
    run(case, *args)


def test_check_value_direct():
    check_value("lr", 1, float)  # an int is a number
    check_value("seed", None, int | None)
    for name, value, tp in [("lr", True, float), ("steps", 1.0, int), ("name", 3, str), ("flag", "yes", bool), ("lr", None, float)]:
        with pytest.raises(ValueError, match=name):
            check_value(name, value, tp)


def test_a_config_built_in_python_is_checked_too():
    with pytest.raises(ValueError, match="lr must be a finite number"):
        DistillConfig.make(lr=float("nan"))
