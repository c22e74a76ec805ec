"""``eval`` beyond the world: prompt files, CLIP text-frame similarity and frame consistency with a user's CLIP model,
a Fréchet distance over a user-named feature model against a prepared dataset or a folder of videos. The models are
tiny random CLIPs (hidden 32, 2 layers, 32x32 images, patch 8) saved with ``save_pretrained`` and the builtin
teacher's CLIP BPE tokenizer; the numbers are checked against CLIPModel's own forward and closed forms."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from turbo_edge import cli
from turbo_edge.core import world
from turbo_edge.core.clip_eval import (
    ClipModel,
    FeatureModel,
    clip_scores,
    config_sha256,
    fd_score,
    frame_consistency,
    frechet_distance,
    gaussian_stats,
    ledoit_wolf,
)
from turbo_edge.core.reference_clips import load_reference
from turbo_edge.core.video_io import write_mp4
from turbo_edge.evaluate import run_eval, world_attributes
from turbo_edge.spec.configs import EvalConfig
from turbo_edge.spec.configs.apps import SPLITS
from turbo_edge.spec.prompt_file import is_prompt_file, read_prompt_file

TOKENIZER = Path(__file__).resolve().parents[2] / "turbo_edge" / "assets" / "teacher" / "tokenizer"
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8}


def _image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    tokenizer = CLIPTokenizerFast.from_pretrained(str(TOKENIZER))
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": tokenizer.model_max_length, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16))
    out = tmp_path_factory.mktemp("models") / "tiny-clip"
    model.save_pretrained(out)
    CLIPProcessor(image_processor=_image_processor(), tokenizer=tokenizer).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("models") / "tiny-vision"
    CLIPVisionModel(CLIPVisionConfig(**VISION)).save_pretrained(out)
    _image_processor().save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def clip(clip_dir: Path) -> ClipModel:
    return ClipModel.load(clip_dir)


def _world_clips(prompts: list[str], seed: int = 0) -> np.ndarray:
    return np.stack([world.render_clip(world.parse_prompt(p), np.random.default_rng([seed, i])) for i, p in enumerate(prompts)])


PROMPTS = ["a red circle moving left", "a blue square staying still", "a yellow triangle moving up"]


# ------------------------------------------------------------------ prompt files


def test_prompt_file_skips_blanks_and_comments_and_hashes_the_bytes(tmp_path):
    file = tmp_path / "prompts.txt"
    file.write_text("# my prompts\n\na red circle moving left\n   \n  a cat on a skateboard  \n# done\n")
    prompts, sha = read_prompt_file(file)
    assert prompts == ["a red circle moving left", "a cat on a skateboard"]
    assert sha == hashlib.sha256(file.read_bytes()).hexdigest()


def test_empty_prompt_file_is_one_line_error(tmp_path, capsys):
    file = tmp_path / "empty.txt"
    file.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="has no prompts"):
        read_prompt_file(file)
    assert cli.main(["eval", "--model", "noise", "--prompts", str(file)]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no prompts" in err and len(err.splitlines()) == 1


def test_split_names_stay_splits_and_paths_are_files(tmp_path):
    assert not any(is_prompt_file(s, SPLITS) for s in SPLITS)
    assert is_prompt_file("mine.txt", SPLITS) and is_prompt_file("dir/prompts", SPLITS)
    named = tmp_path / "val"  # a file called like a split still means the split
    named.write_text("a red circle moving left\n")
    assert EvalConfig(prompts="val").is_prompt_file() is False
    assert EvalConfig(prompts=str(named)).is_prompt_file() is True
    with pytest.raises(ValueError, match="a split .* or a prompt file"):
        EvalConfig(prompts="validation")
    with pytest.raises(FileNotFoundError, match="not found"):
        run_eval(EvalConfig(model="noise", prompts=str(tmp_path / "missing.txt")))
    with pytest.raises(ValueError, match="--fd-features and --reference go together"):
        EvalConfig(fd_features=str(tmp_path))


def test_world_prompts_are_recognised_and_others_are_not():
    attrs, note = world_attributes(PROMPTS)
    assert note["ran"] and note["split"] == "val" and [a.prompt for a in attrs] == PROMPTS
    attrs, note = world_attributes([PROMPTS[0], "a cat on a skateboard"])
    assert attrs is None and not note["ran"] and "prompt 2 is not a world prompt" in note["reason"]


def test_split_result_is_unchanged():
    result = run_eval(EvalConfig(model="groundtruth", num=4))
    assert "world_evaluator" not in result and "clip" not in result and "prompts_sha256" not in result
    assert result["n_videos"] == 4 and result["prompts"] == "val" and result["content_acc"] > 0.9


# ------------------------------------------------------------------ CLIP scores


def test_text_frame_similarity_matches_clip_forward_and_is_deterministic(clip):
    clips = _world_clips(PROMPTS)
    first, second = clip_scores(clip, clips, PROMPTS), clip_scores(clip, clips, PROMPTS)
    assert first == second
    per = np.array([p["text_frame_similarity"] for p in first["per_prompt"]])
    assert np.all(np.abs(per) <= 1.0) and first["text_frame_similarity"] == pytest.approx(per.mean())
    # CLIPModel's own forward: logits_per_text = exp(logit_scale) * cosine(text, image).
    tokens = clip.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    pixels = clip.processor(images=list(clips.reshape(-1, 32, 32, 3)), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = clip.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels)
        cosine = (out.logits_per_text / clip.model.logit_scale.exp()).double().numpy().reshape(3, 3, 8)
    expected = np.array([cosine[i, i].mean() for i in range(3)])
    np.testing.assert_allclose(per, expected, atol=1e-5)
    assert first["config_sha256"] == config_sha256(clip.path) and first["name"] == "tiny-clip"


def test_frame_consistency_constant_clip_is_one_and_shuffled_noise_lower(clip):
    constant = np.repeat(_world_clips(["a white diamond staying still"])[:, :1], 8, axis=1)
    noise = np.random.default_rng(5).integers(0, 256, size=(1, 8, 32, 32, 3), dtype=np.uint8)
    shuffled = noise[:, np.random.default_rng(6).permutation(8)]
    scores = clip_scores(clip, np.concatenate([constant, shuffled]), ["a white diamond staying still", "noise"])
    per = [p["frame_consistency"] for p in scores["per_prompt"]]
    assert per[0] == pytest.approx(1.0, abs=1e-5)
    assert per[1] < per[0] - 1e-4
    unit = np.eye(3)[None]  # three orthogonal frames: consecutive cosines 0
    assert frame_consistency(unit)[0] == pytest.approx(0.0)


def test_clip_dir_checks(tmp_path, clip_dir, vision_dir):
    from transformers import CLIPModel

    half = tmp_path / "half"
    CLIPModel.from_pretrained(str(clip_dir), dtype=torch.float16).save_pretrained(half)
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json"):
        shutil.copy(clip_dir / name, half / name)
    loaded = ClipModel.load(half)  # saved in float16, scored in float32
    assert loaded.model.dtype == torch.float32
    assert abs(clip_scores(loaded, _world_clips(PROMPTS[:1]), PROMPTS[:1])["text_frame_similarity"]) <= 1
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ClipModel.load(tmp_path)
    with pytest.raises(ValueError, match="not a CLIP model"):
        ClipModel.load(vision_dir)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text('{"model_type": "clip"}')
    (pickled / "pytorch_model.bin").write_bytes(b"\x80")
    with pytest.raises(ValueError, match="only pickle weights"):
        ClipModel.load(pickled)


# ------------------------------------------------------------------ Fréchet distance


def test_frechet_distance_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    var_a, var_b = rng.uniform(0.5, 2.0, 5), rng.uniform(0.5, 2.0, 5)
    # Commuting (diagonal) covariances: tr(A + B - 2 (AB)^1/2) = sum (sqrt a - sqrt b)^2.
    closed = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    assert frechet_distance(mu_a, np.diag(var_a), mu_b, np.diag(var_b)) == pytest.approx(closed, rel=1e-9)
    # A rotated pair: the distance does not depend on the basis.
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    rotated = frechet_distance(q @ mu_a, q @ np.diag(var_a) @ q.T, q @ mu_b, q @ np.diag(var_b) @ q.T)
    assert rotated == pytest.approx(closed, rel=1e-6)
    # Samples: a set against itself is 0; shifted by s it is |s|^2; fitted to draws it approaches the closed form.
    x = rng.normal(size=(4000, 5)) * np.sqrt(var_a) + mu_a
    a = gaussian_stats(x, "a")
    assert frechet_distance(a.mean, a.cov, a.mean, a.cov) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([0.5, -1.0, 0.0, 2.0, 0.25])
    b = gaussian_stats(x + shift, "b")
    assert frechet_distance(a.mean, a.cov, b.mean, b.cov) == pytest.approx((shift ** 2).sum(), rel=1e-6)
    y = rng.normal(size=(4000, 5)) * np.sqrt(var_b) + mu_b
    c = gaussian_stats(y, "c")
    assert frechet_distance(a.mean, a.cov, c.mean, c.cov) == pytest.approx(closed, rel=0.1)


def test_few_samples_warn_once_and_use_ledoit_wolf(caplog):
    x = np.random.default_rng(1).normal(size=(6, 20))
    with caplog.at_level(logging.WARNING, logger="turbo_edge.core.clip_eval"):
        stats = gaussian_stats(x, "generated")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "6 generated frames for 20 feature dims" in warnings[0].getMessage()
    assert stats.shrinkage is not None and 0 < stats.shrinkage <= 1
    assert np.linalg.eigvalsh(stats.cov).min() > 0  # invertible, unlike the sample covariance of rank 5
    cov, shrinkage = ledoit_wolf(x)
    sklearn = pytest.importorskip("sklearn.covariance")
    expected_cov, expected_shrinkage = sklearn.ledoit_wolf(x)
    np.testing.assert_allclose(cov, expected_cov, atol=1e-10)
    assert shrinkage == pytest.approx(expected_shrinkage)


def test_fd_score_with_a_vision_tower(vision_dir):
    features = FeatureModel.load(vision_dir)
    clips = _world_clips(PROMPTS * 4)
    same = fd_score(features, clips, clips)
    assert same["fd"] == pytest.approx(0.0, abs=1e-6)
    assert same["generated_frames"] == 96 and same["feature_dims"] == 32 and same["covariance"]["generated"] == "sample"
    brighter = np.clip(clips.astype(np.int16) + 80, 0, 255).astype(np.uint8)
    assert fd_score(features, clips, brighter)["fd"] > 1e-3


# ------------------------------------------------------------------ references


def test_reference_from_a_video_folder_and_a_prepared_dataset(tmp_path):
    from turbo_edge.core.dataset import prepare
    from turbo_edge.spec.configs import DataPrepareConfig

    clips = _world_clips(PROMPTS)
    folder = tmp_path / "videos"
    folder.mkdir()
    for i, c in enumerate(clips):
        write_mp4(c, folder / f"{i:02d}.mp4")
    (folder / "notes.txt").write_text("not a video")
    ref, where = load_reference(folder, 8, 32, 32, limit=2)
    assert ref.shape == (2, 8, 32, 32, 3) and where["videos"] == 2 and where["kind"].startswith("video folder")
    assert np.abs(ref.astype(int) - clips[:2].astype(int)).mean() < 6  # H.264 at crf 10 loses little
    (folder / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f"{i:02d}.mp4", "text": p}) + "\n" for i, p in enumerate(PROMPTS)))
    data = tmp_path / "data"
    prepare(DataPrepareConfig(source=str(folder), out=str(data), shard_size=2, batch=3))
    ref, where = load_reference(data, 4, 16, 16, limit=512)  # a dataset's own geometry wins over the generated clips'
    assert ref.shape == (3, 8, 32, 32, 3) and where["kind"].startswith("prepared data") and where["source"] == str(folder)
    folder.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match="which is not there now"):
        load_reference(data, 8, 32, 32, limit=512)


# ------------------------------------------------------------------ end to end


def test_eval_cli_prompt_file_with_clip_and_fd(tmp_path, clip_dir, vision_dir, capsys):
    file = tmp_path / "mine.txt"
    file.write_text("# two of mine\na red circle moving left\n\na blue square\n")
    folder = tmp_path / "reference"
    folder.mkdir()
    for i, c in enumerate(_world_clips(PROMPTS)):
        write_mp4(c, folder / f"{i}.mp4")
    out = tmp_path / "result.json"
    assert cli.main(["eval", "--model", "builtin", "--prompts", str(file), "--clip", str(clip_dir), "--fd-features", str(vision_dir),
                     "--reference", str(folder), "--steps", "2", "--json", str(out), "--save-clips", str(tmp_path / "gifs")]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out)["clip"] == result["clip"]
    assert result["n_videos"] == result["n_prompts"] == 2 and result["prompts_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert result["world_evaluator"]["ran"] is False and "content_acc" not in result
    scores = result["clip"]
    assert [p["prompt"] for p in scores["per_prompt"]] == ["a red circle moving left", "a blue square"]
    assert -1 <= scores["text_frame_similarity"] <= 1 and 0 < scores["frame_consistency"] <= 1 + 1e-6
    assert scores["path"] == str(clip_dir.resolve()) and scores["config_sha256"] == config_sha256(clip_dir)
    fd = result["fd_features"]
    assert fd["fd"] >= 0 and fd["generated_frames"] == 16 and fd["reference_frames"] == 24 and fd["reference"]["videos"] == 3
    assert fd["covariance"]["generated"].startswith("ledoit-wolf")  # 16 frames for 32 dims
    assert sorted(p.name for p in (tmp_path / "gifs").iterdir()) == ["000_a_red_circle_moving_left.gif", "001_a_blue_square.gif"]


def test_eval_prompt_file_of_world_prompts_runs_the_world_evaluator(tmp_path, clip_dir):
    file = tmp_path / "world.txt"
    file.write_text("\n".join(PROMPTS) + "\n")
    result = run_eval(EvalConfig(model="groundtruth", prompts=str(file), clip=str(clip_dir)))
    assert result["world_evaluator"]["ran"] is True and result["n_videos"] == 3
    assert result["content_acc"] > 0.9 and len(result["clip"]["per_prompt"]) == 3
    split = run_eval(EvalConfig(model="groundtruth", prompts="val", num=4, clip=str(clip_dir)))  # a split may add CLIP scores too
    assert split["n_videos"] == 4 and "world_evaluator" not in split and len(split["clip"]["per_prompt"]) == 4
    other = tmp_path / "other.txt"
    other.write_text("a cat on a skateboard\n")
    with pytest.raises(ValueError, match="nothing scores the prompts"):
        run_eval(EvalConfig(model="noise", prompts=str(other)))
    with pytest.raises(ValueError, match="groundtruth renders world clips"):
        run_eval(EvalConfig(model="groundtruth", prompts=str(other), clip=str(clip_dir)))
