"""The frame-position embedding turbo-edge adds to UNet3DConditionModel's temporal attention (core/models.py)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from tiny_models import SMALL_SPEC

from turbo_edge.core.models import (
    TEMPORAL_POSITION_KEY,
    TinyTeacherSpec,
    attach_temporal_position,
    build_unet,
    unet_from_config,
)
from turbo_edge.core.pipeline_io import load_teacher


def _temporal_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    return [b for m in unet.modules() if isinstance(m, TransformerTemporalModel) for b in m.transformer_blocks]


def _plain_config(spec: TinyTeacherSpec) -> dict:
    config = spec.unet_config()
    config.pop(TEMPORAL_POSITION_KEY)
    return config


def test_every_temporal_block_gets_a_fixed_embedding_that_is_not_a_weight():
    unet = build_unet(SMALL_SPEC)
    blocks = _temporal_blocks(unet)
    # transformer_in + one temporal transformer per cross-attention layer (2 down levels x 2, 2 up x 3, mid 1).
    assert len(blocks) == 1 + 4 + 6 + 1
    assert all(b.pos_embed is not None for b in blocks)
    assert not [k for k in unet.state_dict() if k.endswith("pos_embed.pe")]  # safetensors unchanged
    plain = unet_from_config(_plain_config(SMALL_SPEC))
    assert all(b.pos_embed is None for b in _temporal_blocks(plain))
    assert set(plain.state_dict()) == set(unet.state_dict())  # same weights: either loads the other's checkpoint


def test_the_embedding_breaks_frame_permutation_equivariance():
    """Without it, diffusers' temporal transformer cannot tell frame order: reversing the frames only reverses
    its output. With it, the output depends on each frame's position."""
    torch.manual_seed(0)
    h = torch.randn(4, 16, 2, 2)  # batch 1, 4 frames: [B*F, C, H, W]

    def run(model: TransformerTemporalModel, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x, num_frames=4, return_dict=False)[0]

    model = TransformerTemporalModel(num_attention_heads=2, attention_head_dim=8, in_channels=16, norm_num_groups=8).eval()
    torch.nn.init.normal_(model.proj_out.weight, std=0.2)  # diffusers zero-inits proj_out: make the block do something
    reversed_frames = h.flip(0)
    plain_gap = (run(model, reversed_frames) - run(model, h).flip(0)).abs().max().item()
    for block in model.transformer_blocks:
        block.pos_embed = SinusoidalPositionalEmbedding(16, 64)
    positioned_gap = (run(model, reversed_frames) - run(model, h).flip(0)).abs().max().item()
    assert plain_gap < 1e-5
    assert positioned_gap > 1e-2


def test_the_key_survives_save_and_load(tiny_t2v_dir):
    model = load_teacher(tiny_t2v_dir)
    assert model.unet.config[TEMPORAL_POSITION_KEY] == "sinusoidal"
    assert all(b.pos_embed is not None for b in _temporal_blocks(model.unet))
    fresh = unet_from_config({k: v for k, v in model.unet.config.items() if not k.startswith("_")})
    fresh.load_state_dict(model.unet.state_dict())
    x = torch.randn(1, SMALL_SPEC.latent_channels, SMALL_SPEC.frames, 4, 4)
    text = torch.randn(1, SMALL_SPEC.max_length, SMALL_SPEC.text_hidden)
    with torch.no_grad():
        a = model.unet(x, torch.tensor([500]), encoder_hidden_states=text).sample
        b = fresh.eval()(x, torch.tensor([500]), encoder_hidden_states=text).sample
    assert torch.allclose(a, b, atol=1e-6)


def test_a_student_keeps_the_embedding(tiny_t2v_dir):
    from turbo_edge.distill.student import build_student_unet

    student = build_student_unet(load_teacher(tiny_t2v_dir).unet, w_embedding_dim=8)
    assert student.config[TEMPORAL_POSITION_KEY] == "sinusoidal"
    assert all(b.pos_embed is not None for b in _temporal_blocks(student))


def test_attach_is_idempotent_and_refuses_unknown_kinds():
    unet = build_unet(SMALL_SPEC)
    before = [id(b.pos_embed) for b in _temporal_blocks(unet)]
    attach_temporal_position(unet)
    assert [id(b.pos_embed) for b in _temporal_blocks(unet)] == before
    config = {**_plain_config(SMALL_SPEC), TEMPORAL_POSITION_KEY: "rotary"}
    with pytest.raises(ValueError, match="unknown turbo_edge_temporal_position 'rotary'"):
        unet_from_config(config)


def test_the_builtin_spec_asks_for_it():
    assert TinyTeacherSpec().unet_config()[TEMPORAL_POSITION_KEY] == "sinusoidal"
