"""The model card: one versioned dataclass; version-1 cards (the shipped models' before the redesign) migrate."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from turbo_edge.spec.card import CARD_VERSION, Lineage, ModelCard, read_card, write_card
from turbo_edge.spec.configs import DistillConfig, PruneConfig, TeacherTrainConfig
from turbo_edge.spec.errors import CardError
from turbo_edge.spec.sampler import SamplerSpec

V1 = Path(__file__).parent / "data" / "cards_v1"
ASSETS = Path(__file__).resolve().parents[2] / "turbo_edge" / "assets"


def _v1(name: str) -> dict:
    return json.loads((V1 / f"{name}.json").read_text())


def test_v1_student_card_migrates_with_its_sampler_and_lineage():
    old = _v1("student")
    card = ModelCard.from_dict(old)
    assert card.kind == "student" and card.parent == "builtin" and card.closed_vocabulary == old["closed_vocabulary"]
    assert card.sampler.kind == "consistency" and card.sampler.w_embedding_dim == 32 and card.sampler.origin_steps == 50
    assert card.sampler.timesteps[4] == (999, 759, 499, 259) and card.sampler.guidance == old["default_guidance"] == 3.0
    assert card.lineage.stage == "distill" and card.lineage.step == old["distill"]["step"] == 200
    assert DistillConfig.from_dict(card.lineage.config).loop.steps == 200  # the recorded v1 config migrates too
    assert card.reproduce == old["reproduce"] and card.weights_dtype == "float16"


def test_v1_pruned_and_teacher_cards_keep_their_stage_records():
    pruned = ModelCard.from_dict(_v1("pruned"))
    assert pruned.kind == "pruned" and pruned.parent == "builtin-student" and pruned.lineage.plans == ("pruning_plan.json",)
    assert pruned.lineage.details["removed"] == ["down_blocks.0.layers.1", "down_blocks.1.layers.1", "mid_block"]
    assert PruneConfig.from_dict(pruned.lineage.config).loop.steps == 2000
    teacher = ModelCard.from_dict(_v1("teacher"))
    assert teacher.kind == "teacher" and teacher.sampler is None and teacher.default_steps == 50
    assert teacher.lineage.step == 750 and teacher.lineage.details["unet_step_total"] == 5250
    assert TeacherTrainConfig.from_dict(teacher.lineage.config).high_noise_fraction == 0.5


@pytest.mark.parametrize("name", ["teacher", "student", "pruned"])
def test_shipped_cards_are_the_migrated_v1_cards(name):
    """The shipped cards were rewritten by the one writer; they say exactly what their v1 form said, plus the decoder
    variants added since (the student's and the pruned student's tiny and pruned decoders, each with its own lineage) and
    the steps that made them, appended to the reproduce line."""
    shipped = read_card(ASSETS / name)
    assert json.loads((ASSETS / name / "turbo_edge.json").read_text())["card_version"] == CARD_VERSION
    assert sorted(shipped.decoders) == ([] if name == "teacher" else ["pruned", "tiny"])
    assert all(v.lineage.stage == "decoder_train" for v in shipped.decoders.values())
    v1 = ModelCard.from_dict(_v1(name))
    assert shipped.reproduce.startswith(v1.reproduce)  # then the steps that made and shipped its decoders
    assert dataclasses.replace(shipped, decoders={}, reproduce=v1.reproduce) == v1


def test_round_trip_and_absent_card(tmp_path):
    sampler = SamplerSpec.consistency({"num_train_timesteps": 1000, "prediction_type": "v_prediction"}, 50, 16, guidance=4.0)
    card = ModelCard(kind="student", frames=4, height=16, width=16, sampler=sampler,
                     lineage=Lineage(stage="distill", parent="t", config={"kind": "distill"}, step=3), reproduce="turbo-edge distill")
    write_card(card, tmp_path)
    assert read_card(tmp_path) == card and read_card(tmp_path).present
    assert not read_card(tmp_path / "nothing").present  # a third-party checkpoint: no card, a teacher by default


@pytest.mark.parametrize("text,message", [
    ("[1, 2]", "is a JSON object"),
    ("{not json", "is not valid JSON"),
    ('{"card_version": 9, "kind": "teacher"}', "version 9 is not supported"),
    ('{"card_version": 2, "kind": "vae"}', "kind 'vae' is not one of"),
    ('{"card_version": 2, "kind": "student"}', "must carry a consistency sampler"),
])
def test_bad_cards_are_one_clear_error(tmp_path, text, message):
    (tmp_path / "turbo_edge.json").write_text(text)
    with pytest.raises(CardError, match=message) as info:
        read_card(tmp_path)
    assert "turbo_edge.json" in str(info.value) and "\n" not in str(info.value)
