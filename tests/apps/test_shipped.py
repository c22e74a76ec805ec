"""The shipped students: what they are, that they load from float16 safetensors, and that they still work.

The quality check is a small regression guard (8 validation prompts, 4 steps, a few seconds each), not the
result: the figures are in benchmarks/results (48 prompts). A broken load or a lost plan scores near chance
(content 0.04, motion 0.20).
"""

from __future__ import annotations

import json

import pytest
import torch

from turbo_edge.core import replay, world
from turbo_edge.core.evaluator import Evaluator
from turbo_edge.core.pipeline_io import ALIASES, load_teacher
from turbo_edge.core.student_sampling import generate_student
from turbo_edge.spec import plan as plans


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(2)
    return {name: load_teacher(name) for name in ("builtin-student", "builtin-pruned")}


def test_shipped_students_are_float16_consistency_students_of_the_builtin_chain(models):
    student, pruned = models["builtin-student"], models["builtin-pruned"]
    assert student.card.kind == "student" and student.card.parent == "builtin"
    assert pruned.card.kind == "pruned" and pruned.card.parent == "builtin-student"
    for m in (student, pruned):
        assert m.card.weights_dtype == "float16" and m.card.sampler.kind == "consistency"
        assert m.unet.dtype == torch.float32  # read back as float32
        # The tiny decoder continued on the student's own samples (decisions), shipped into both with convert
        # --replace-decoders: one file, made for their VAE.
        variant = m.card.decoders["tiny"]
        assert variant.folder == "tiny_vae" and variant.cls == "TinyDecoder" and variant.quality["psnr_db"] > 32
        assert "turbo-edge decoder samples" in variant.lineage.details["reproduce"]
        # VDMini on the decoder (decoder train --variant pruned), on the same samples: layers removed, widths halved
        variant = m.card.decoders["pruned"]
        assert variant.folder == "pruned_vae" and variant.cls == "PrunedDecoder" and variant.quality["psnr_db"] > 35
        assert variant.lineage.details["params_decoder"] < 0.5 * variant.lineage.details["params_full_decoder"]
    assert pruned.card.sampler == student.card.sampler
    for folder in ("tiny_vae", "pruned_vae"):
        student_file, pruned_file = (ALIASES[n] / folder / "diffusion_pytorch_model.safetensors" for n in ("builtin-student", "builtin-pruned"))
        assert student_file.read_bytes() == pruned_file.read_bytes()


def test_builtin_pruned_rebuilds_from_its_plan(models):
    student, pruned = models["builtin-student"], models["builtin-pruned"]
    plan = json.loads((ALIASES["builtin-pruned"] / plans.PLAN_FILE).read_text())
    assert plan["rule"] == "vdmini" and plan["removed"] == pruned.card.lineage.details["removed"]
    assert plan["architecture_hash"] == plans.architecture_hash(replay.base_config(student.unet))
    n_student = sum(p.numel() for p in student.unet.parameters())
    n_pruned = sum(p.numel() for p in pruned.unet.parameters())
    assert n_pruned == pruned.card.lineage.details["params_pruned"] < 0.7 * n_student
    assert len(pruned.unet.down_blocks[0].resnets) == 1 and pruned.unet.mid_block is None


@pytest.mark.parametrize("name", ["builtin-student", "builtin-pruned"])
def test_shipped_student_still_draws_the_prompt_in_4_steps(models, name):
    attrs = world.prompt_set("val", 8, seed=3)
    clips = generate_student(models[name], [a.prompt for a in attrs], steps=4, seed=0)
    score = Evaluator().score(clips, attrs, split="val")
    assert score.content_acc >= 0.75 and score.motion_acc >= 0.75, score.to_dict()


# ------------------------------------------------------------------ the DiT family's shipped student and pruned student


@pytest.fixture(scope="module")
def dit_models():
    torch.set_num_threads(2)
    return {name: load_teacher(name) for name in ("builtin-dit", "builtin-dit-student", "builtin-dit-pruned")}


def test_shipped_dit_students_are_float16_flow_consistency_students_of_builtin_dit(dit_models):
    from turbo_edge.core.prepared import model_fingerprint

    teacher, student, pruned = dit_models["builtin-dit"], dit_models["builtin-dit-student"], dit_models["builtin-dit-pruned"]
    assert student.card.kind == "student" and student.card.parent == "builtin-dit"
    assert pruned.card.kind == "pruned" and pruned.card.parent in ("builtin-dit-student", str(ALIASES["builtin-dit-student"]))
    for m in (student, pruned):
        assert m.components.name == "wan" and m.card.weights_dtype == "float16" and m.card.sampler.kind == "consistency"
        assert m.card.sampler.prediction_type == "flow_prediction" and m.card.lead_in_frames == teacher.card.lead_in_frames == 1
    for name in ("builtin-dit-student", "builtin-dit-pruned"):  # the teacher's VAE / text encoder bytes: its DATA fits them
        assert model_fingerprint(ALIASES[name])[0] == model_fingerprint(ALIASES["builtin-dit"])[0]
        # The DiT tiny decoder, trained on the student's own samples (decisions): one file in both, made for their VAE.
        variant = dit_models[name].card.decoders["tiny"]
        assert variant.folder == "tiny_vae" and variant.cls == "TinyDecoder" and variant.quality["psnr_db"] > 34
        assert "turbo-edge decoder samples" in variant.lineage.details["reproduce"]
        # The causal Wan decoder pruned (PrunedWanDecoder), fine-tuned on the same samples
        variant = dit_models[name].card.decoders["pruned"]
        assert variant.folder == "pruned_vae" and variant.cls == "PrunedWanDecoder" and variant.quality["psnr_db"] > 38
        assert variant.lineage.details["params_decoder"] < 0.6 * variant.lineage.details["params_full_decoder"]
    for folder in ("tiny_vae", "pruned_vae"):
        student_file, pruned_file = (ALIASES[n] / folder / "diffusion_pytorch_model.safetensors" for n in ("builtin-dit-student", "builtin-dit-pruned"))
        assert student_file.read_bytes() == pruned_file.read_bytes()
    assert pruned.card.sampler == student.card.sampler
    n_student = sum(p.numel() for p in student.denoiser.parameters())
    n_pruned = sum(p.numel() for p in pruned.denoiser.parameters())
    assert n_pruned == pruned.card.lineage.details["params_pruned"] < n_student
    assert len(pruned.denoiser.blocks) == len(student.denoiser.blocks) - len(pruned.card.lineage.details["removed"])


@pytest.mark.parametrize("name", ["builtin-dit-student", "builtin-dit-pruned"])
def test_shipped_dit_student_still_draws_the_prompt_in_4_steps(dit_models, name):
    attrs = world.prompt_set("val", 8, seed=3)
    clips = generate_student(dit_models[name], [a.prompt for a in attrs], steps=4, seed=0)
    score = Evaluator().score(clips[:, dit_models[name].card.lead_in_frames:], attrs, split="val")
    assert score.content_acc >= 0.75 and score.motion_acc >= 0.75, score.to_dict()
