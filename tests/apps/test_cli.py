import json

import pytest

from turbo_edge import cli
from turbo_edge.spec.card import read_card


def _dry(capsys, argv):
    assert cli.main([*argv, "--dry-run"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "argv,kind",
    [
        (["generate", "a red circle moving left"], "generate"),
        (["eval", "--model", "noise", "--num", "8"], "eval"),
        (["teacher", "train", "--unet-steps", "7"], "teacher_train"),
        (["teacher", "export", "--run", "x"], "teacher_export"),
        (["teacher", "probe", "--timesteps", "850,975"], "teacher_probe"),
        (["convert", "--model", "builtin", "--out", "x"], "convert"),
        (["evaluator", "train", "--steps", "3"], "evaluator_train"),
        (["rewards", "train", "--which", "video"], "reward_train"),
        (["prune", "--student", "x", "--icd-weight", "0"], "prune"),
        (["distill", "--steps", "5", "--reward", "builtin-image:1.0:2"], "distill"),
        (["decoder", "train", "--variant", "pruned", "--channel-ratio", "0.5"], "decoder_train"),
        (["bench", "--bundle", "x", "--backend", "ort,openvino", "--precision", "fp32,int8"], "bench"),
    ],
)
def test_every_subcommand_has_dry_run(capsys, argv, kind):
    cfg = _dry(capsys, argv)
    cls = next(c for c, _run, _help in cli.COMMANDS.values() if c.KIND == kind)
    assert cfg["kind"] == kind and cfg["version"] == cls.VERSION


def test_every_registered_subcommand_is_covered():
    assert set(cli.COMMANDS) >= {"generate", "eval", "teacher train", "teacher export", "evaluator train", "rewards train", "distill",
                                 "decoder train"}


def test_flags_override_config_file(capsys, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"kind": "teacher_train", "version": 1, "batch": 8, "lr": 0.01}))
    cfg = _dry(capsys, ["teacher", "train", "--config", str(path), "--lr", "0.5"])
    assert cfg["batch"] == 8 and cfg["lr"] == 0.5


def test_set_overrides_config_and_flags_override_set(capsys, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"kind": "distill", "version": 1, "w_max": 4.0, "lr": 0.01}))
    cfg = _dry(capsys, ["distill", "--config", str(path), "--set", "w_max=6", "--set", "lr=0.5", "--lr", "0.2",
                        "--set", 'rewards=[{"name": "builtin-image", "weight": 2.0}]', "--set", "teacher=some/dir"])
    assert cfg["w_max"] == 6 and cfg["loop"]["lr"] == 0.2 and cfg["teacher"] == "some/dir"  # a version-1 file's flat lr migrates
    assert cfg["rewards"] == [{"name": "builtin-image", "weight": 2.0}]
    assert _dry(capsys, ["distill", "--set", "out=2026", "--set", "init_student=7"])["out"] == "2026"  # str fields stay str


@pytest.mark.parametrize("arg,message", [("w_maxx=6", "--set w_maxx: not a distill config key"), ("w_max", "--set takes KEY=VALUE"),
                                         ("w_min=9", "need 0 < w_min <= w_max")])
def test_bad_set_is_one_clear_line(capsys, arg, message):
    assert cli.main(["distill", "--set", arg, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("alias,section", [("student", "distill"), ("pruned", "prune")])
def test_shipped_reproduce_line_rebuilds_the_recorded_config(capsys, alias, section):
    """The `reproduce` line of a shipped model runs on a fresh clone (no run-local config file) and
    resolves to exactly the config its turbo_edge.json records."""
    import shlex
    from pathlib import Path

    import turbo_edge

    card = read_card(Path(turbo_edge.__file__).parent / "assets" / alias)
    train_line = card.reproduce.split(" && ")[0]
    argv = shlex.split(train_line)
    assert argv[:2] == ["turbo-edge", section] and "--config" not in argv
    recorded = cli.COMMANDS[section][0].from_dict(card.lineage.config)  # a version-1 config migrates on read
    assert _dry(capsys, argv[1:]) == recorded.to_dict()


def test_generated_command_line_round_trips(capsys):
    import shlex

    from turbo_edge.spec.configs import DistillConfig

    cfg = DistillConfig.make(steps=7, w_max=6.5, rewards=[{"name": "builtin-video", "weight": 0.5, "frames": 4}], out="runs/it's here")
    argv = shlex.split(cfg.command_line("distill", first=("out",)))
    assert argv[2:4] == ["--set", "out=\"runs/it's here\""]
    assert _dry(capsys, argv[1:]) == cfg.to_dict()
    assert DistillConfig().command_line("distill") == "turbo-edge distill"


def test_teacher_train_high_noise_flags(capsys):
    cfg = _dry(capsys, ["teacher", "train", "--high-noise-fraction", "0.5", "--high-noise-min-t", "800"])
    assert cfg["high_noise_fraction"] == 0.5 and cfg["high_noise_min_t"] == 800
    assert cli.main(["teacher", "train", "--high-noise-fraction", "1.5", "--dry-run"]) == 2
    assert "high_noise_fraction must be in [0, 1]" in capsys.readouterr().err


def test_phases_flag(capsys):
    assert _dry(capsys, ["teacher", "train", "--phases", "unet"])["phases"] == ["unet"]
    assert cli.main(["teacher", "train", "--phases", "vae,gan", "--dry-run"]) == 2
    assert "phases must be" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["generate", "   "], "empty prompt"),
        (["generate", "a red circle moving left", "--out", "x.avi"], ".gif or .mp4"),
        (["eval", "--prompts", "val", "--num", "1"], "--num must be >= 2"),
        (["generate", "a red circle moving left", "--model", "/nonexistent/model"], "does not exist"),
        (["bench"], "give exactly one of --model DIR (PyTorch eager) or --bundle DIR"),
        (["bench", "--bundle", "x", "--backend", "cuda"], "unknown --backend ['cuda']"),
        (["bench", "--model", "builtin", "--precision", "int8"], "--precision int8 is a bundle's graph"),
        (["bench", "--model", "builtin", "--backend", "openvino"], "--backend chooses how a bundle runs"),
        (["bench", "--bundle", "x", "--runs", "0"], "--runs must be an integer >= 1"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_config_key_is_named(capsys, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"kind": "eval", "version": 1, "modle": "builtin"}))
    assert cli.main(["eval", "--config", str(path), "--dry-run"]) == 2
    assert "unknown eval config keys ['modle']" in capsys.readouterr().err


def test_generate_writes_gif_from_a_local_model(tiny_t2v_dir, tmp_path, capsys):
    out = tmp_path / "clip.gif"
    assert cli.main(["generate", "a red circle moving left", "--model", str(tiny_t2v_dir), "--steps", "2", "--out", str(out)]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.n_frames == 4 and im.size == (64, 64)  # 4 frames of 16x16, upscaled x4
