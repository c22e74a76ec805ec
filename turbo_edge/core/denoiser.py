"""The denoiser plug point: what the stages need from a video denoiser, behind one small interface.

Two families: diffusers ``UNet3DConditionModel`` (ModelScope T2V, zeroscope, the builtin UNet teacher) and
``WanTransformer3DModel`` (Wan2.1's video DiT, the builtin DiT teacher). The other components' plug points and the
family registry are ``core.autoencoders``, ``core.text_encoders`` and ``core.families`` (``docs/architecture.md``,
"Model families"). A denoiser family provides:

- ``load``: the module from a model directory's ``unet/`` (or ``transformer/``) folder, pruning plans replayed;
- ``forward``: one call in the common signature ``(sample [B, C, F, h, w], timestep [B], text [B, L, D],
  guidance embedding [B, W] or None) -> prediction like sample``: every stage calls through it
  (``call_denoiser``, ``T2VModel.denoise``);
- ``geometry``: latent channels, text width and guidance-embedding width, which the export contract is built from;
- ``removable_units`` / ``apply_plan``: the units a pruning plan may name, and the surgery that removes them;
  ``apply_channel_plan``: the width plan's replay (a UNet's channels, a DiT's heads and FFN channels);
- ``enable_gradient_checkpointing``: recompute activations in the backward pass (a family without it refuses);
- ``attach_guidance_embedding`` / ``build_student``: a distilled student's zero-initialised guidance embedding, in place
  on the teacher's module (LoRA on a shared base) or on a copy; ``lora_targets``: the layers LoRA adapts.

The parameterisation (prediction type, schedule) is the model family's (``core.families``), its maths ``spec.param``.
"""

from __future__ import annotations

import copy
import os
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from turbo_edge.core import replay
from turbo_edge.core.models import attach_temporal_position, own_config_keys_quiet, unet_from_config
from turbo_edge.spec import plan as plans
from turbo_edge.spec.errors import PlanError


@dataclass(frozen=True)
class Geometry:
    """The shapes a denoiser call takes, as the export contract and the runtime need them."""

    latent_channels: int
    out_channels: int
    text_dim: int
    guidance_dim: int | None  # a distilled student's timestep_cond width; None for a teacher


class DenoiserFamily(ABC):
    name: ClassVar[str]
    diffusers_class: ClassVar[str]  # the class model_index.json names for the denoiser
    folder: ClassVar[str]  # the component folder in the model directory
    lora_targets: ClassVar[str]  # a regex on full module names: the layers a LoRA student (or VSD's fake score) adapts

    @abstractmethod
    def attach_guidance_embedding(self, module: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
        """In place: the teacher's module gains a zero-initialised guidance embedding (it still computes exactly the
        teacher until trained, and exactly the teacher whenever it is called without one); recorded in its config."""

    def build_student(self, teacher_module: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
        """A separate student: a copy of the teacher's module with the guidance embedding attached."""
        return self.attach_guidance_embedding(copy.deepcopy(teacher_module), w_embedding_dim)

    @abstractmethod
    def load(self, path: str | os.PathLike[str], dtype: torch.dtype, block_plan: dict[str, Any] | None = None,
             channel_plan: dict[str, Any] | None = None) -> torch.nn.Module: ...

    def module_class(self) -> type:
        """The denoiser's class (diffusers' by default): the memory estimate builds it from its config on the meta device."""
        import diffusers

        return getattr(diffusers, self.diffusers_class)

    @abstractmethod
    def forward(self, module: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor: ...

    @abstractmethod
    def geometry(self, module: torch.nn.Module) -> Geometry: ...

    @abstractmethod
    def removable_units(self, config: dict[str, Any]) -> list[str]: ...

    def spatial_patch(self, config: dict[str, Any]) -> int:
        """Latent pixels per token side (a DiT's patch); 1 for a convolutional denoiser."""
        return 1

    def check_latent_size(self, config: dict[str, Any], frames: int, height: int, width: int) -> None:
        """Refuse a latent size the denoiser cannot take (a position table too short), in one line naming the limit.
        A convolutional denoiser takes any size its autoencoder does."""
        return None

    @abstractmethod
    def apply_plan(self, module: torch.nn.Module, plan: dict[str, Any]) -> torch.nn.Module: ...

    @abstractmethod
    def apply_channel_plan(self, module: torch.nn.Module, plan: dict[str, Any], block_plan: dict[str, Any] | None = None) -> torch.nn.Module:
        """Replay a width plan (``channel_plan.json``) in place, after ``block_plan``'s surgery: a UNet's channel plan,
        a DiT's head / FFN plan."""

    def enable_gradient_checkpointing(self, module: torch.nn.Module) -> int:
        """Checkpoint the denoiser's activations; returns how many units recompute. A family that cannot refuses."""
        raise ValueError(f"the {self.name} denoiser family has no gradient checkpointing; train it with gradient_checkpointing false")


def _checkpointed_forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    """A block's own forward, under non-reentrant activation checkpointing while gradients are recorded.

    Bound per instance (``types.MethodType``), so ``copy.deepcopy`` rebinds it to the copy; the class's forward
    runs either way. The RNG state is stashed and replayed (torch's default), so the temporal convs' dropout
    draws the same masks in the recomputation and the global RNG stream is the one an unchecked run sees.
    """
    forward = type(self).forward
    if torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(forward, self, *args, use_reentrant=False, **kwargs)
    return forward(self, *args, **kwargs)


def checkpoint_blocks(blocks: list[torch.nn.Module]) -> int:
    for block in blocks:
        block.forward = types.MethodType(_checkpointed_forward, block)
    return len(blocks)


class UNet3DFamily(DenoiserFamily):
    """diffusers ``UNet3DConditionModel``: epsilon / v-prediction video UNets (ModelScope T2V, zeroscope)."""

    name = "unet3d"
    diffusers_class = "UNet3DConditionModel"
    folder = "unet"

    def load(self, path: str | os.PathLike[str], dtype: torch.dtype, block_plan: dict[str, Any] | None = None,
             channel_plan: dict[str, Any] | None = None) -> torch.nn.Module:
        from diffusers import UNet3DConditionModel

        if block_plan is not None or channel_plan is not None:  # a pruned student: rebuild it from its plan(s)
            return replay.load_pruned_unet(Path(path), block_plan, dtype, channel_plan=channel_plan)
        with own_config_keys_quiet():
            unet = UNet3DConditionModel.from_pretrained(path, use_safetensors=True, torch_dtype=dtype)
        return attach_temporal_position(unet)

    def forward(self, module: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        kw = {"timestep_cond": guidance} if guidance is not None else {}
        return module(sample, timestep, encoder_hidden_states=text, return_dict=False, **kw)[0]

    def geometry(self, module: torch.nn.Module) -> Geometry:
        cfg = module.config
        w_dim = cfg.get("time_cond_proj_dim")
        return Geometry(int(cfg.in_channels), int(cfg.out_channels), int(cfg.cross_attention_dim), int(w_dim) if w_dim else None)

    def removable_units(self, config: dict[str, Any]) -> list[str]:
        return plans.removable_units(config)

    def apply_plan(self, module: torch.nn.Module, plan: dict[str, Any]) -> torch.nn.Module:
        return replay.apply_plan(module, plan)

    def apply_channel_plan(self, module: torch.nn.Module, plan: dict[str, Any], block_plan: dict[str, Any] | None = None) -> torch.nn.Module:
        if plans.is_head_ffn_plan(plan):
            raise PlanError("this is a DiT's head / FFN plan; a UNet3D replays a channel plan (kind channel_pruning_plan)")
        return replay.apply_channel_plan(module, plan, block_plan)

    # T2V-Turbo: every Linear / Conv in attention, resnets and temporal convs; diffusers' LCM script adds
    # time_emb_proj. A regex on full module names, because the temporal convs' ``conv1`` is a Sequential whose Conv3d
    # sits at index 2 (3 for conv2..conv4).
    lora_targets = (
        r".*(\.to_q|\.to_k|\.to_v|\.to_out\.0|\.proj_in|\.proj_out|\.ff\.net\.0\.proj|\.ff\.net\.2"
        r"|resnets\.\d+\.conv1|resnets\.\d+\.conv2|\.time_emb_proj|temp_convs\.\d+\.conv1\.2|temp_convs\.\d+\.conv[234]\.3)$"
    )

    def attach_guidance_embedding(self, module: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
        """The time embedding is rebuilt around the teacher's own ``linear_1`` / ``linear_2`` so ``cond_proj`` sits
        where a UNet built from the student's config has it (after ``linear_1``): parameter order, hence optimizer
        state in checkpoints, is the same as with a separate student (``build_student``). Without ``timestep_cond``
        the layer is never called."""
        from diffusers.models.embeddings import TimestepEmbedding

        unet = base_module(module)
        old = unet.time_embedding
        if getattr(old, "cond_proj", None) is not None:
            raise ValueError("this UNet already has a guidance embedding (time_cond_proj_dim): it is a student, not a teacher")
        new = TimestepEmbedding(old.linear_1.in_features, old.linear_1.out_features, act_fn=unet.config.act_fn, cond_proj_dim=w_embedding_dim)
        new.linear_1, new.linear_2 = old.linear_1, old.linear_2
        if type(new.act) is not type(old.act) or old.post_act is not None:
            raise ValueError("the teacher's time embedding is not the one UNet3DConditionModel builds; use teacher_weights copy")
        ref = old.linear_1.weight
        new.cond_proj = new.cond_proj.to(device=ref.device, dtype=ref.dtype).requires_grad_(ref.requires_grad)
        torch.nn.init.zeros_(new.cond_proj.weight)
        unet.time_embedding = new
        unet.register_to_config(time_cond_proj_dim=w_embedding_dim)
        return module

    def build_student(self, teacher_module: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
        """A UNet3DConditionModel built from the student's config (``time_cond_proj_dim``) with the teacher's weights."""
        # Private keys (``_use_default_values`` among them) would make diffusers ignore the new field.
        config = {k: v for k, v in teacher_module.config.items() if not k.startswith("_")}
        config["time_cond_proj_dim"] = w_embedding_dim
        student = unet_from_config(config)
        missing, unexpected = student.load_state_dict(teacher_module.state_dict(), strict=False)
        if unexpected or any(not k.startswith("time_embedding.cond_proj") for k in missing):
            raise ValueError(f"teacher UNet does not fit the student: missing {missing}, unexpected {unexpected}")
        torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
        return student

    def enable_gradient_checkpointing(self, module: torch.nn.Module) -> int:
        """Every down / mid / up block recomputes in the backward pass. diffusers 0.42.1's UNet3DConditionModel has
        ``_supports_gradient_checkpointing = False`` (its 3D blocks carry the flag but never read it), so its
        ``enable_gradient_checkpointing()`` raises; the blocks are wrapped here instead. ``module`` may be a peft
        model around the UNet."""
        unet = module.get_base_model() if hasattr(module, "get_base_model") else module
        blocks = [*unet.down_blocks, *([unet.mid_block] if unet.mid_block is not None else []), *unet.up_blocks]
        return checkpoint_blocks(blocks)


# A key turbo-edge adds to a WanTransformer3DModel's config.json: the width of a distilled student's guidance embedding.
GUIDANCE_KEY = "turbo_edge_guidance_dim"


def attach_wan_guidance_embedding(module: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
    """Give a Wan transformer a guidance embedding, in place: its time embedder (diffusers' ``TimestepEmbedding``)
    gains ``cond_proj`` (guidance embedding -> the sinusoidal timestep features, added before ``linear_1``),
    zero-initialised, so the transformer still computes exactly the teacher until it is trained. The width is recorded
    in the config (``turbo_edge_guidance_dim``) so ``WanFamily.load`` rebuilds it."""
    from diffusers.models.embeddings import TimestepEmbedding

    base = base_module(module)
    old = base.condition_embedder.time_embedder
    if getattr(old, "cond_proj", None) is not None:
        raise ValueError("this transformer already has a guidance embedding: it is a student, not a teacher")
    new = TimestepEmbedding(old.linear_1.in_features, old.linear_1.out_features, cond_proj_dim=w_embedding_dim)
    new.linear_1, new.linear_2, new.act = old.linear_1, old.linear_2, old.act
    ref = old.linear_1.weight
    new.cond_proj = new.cond_proj.to(device=ref.device, dtype=ref.dtype).requires_grad_(ref.requires_grad)
    torch.nn.init.zeros_(new.cond_proj.weight)
    base.condition_embedder.time_embedder = new
    base.register_to_config(**{GUIDANCE_KEY: int(w_embedding_dim)})
    return module


class WanFamily(DenoiserFamily):
    """diffusers ``WanTransformer3DModel``: Wan2.1's video DiT (patchified tokens, 3D RoPE, adaLN blocks), flow matching.

    Removable units are whole transformer blocks (``blocks.N``): every block maps tokens to tokens of the same width,
    so any subset can go and the rest keep their weights (VDMini's block removal, for a DiT). A head / FFN plan then
    narrows the kept blocks' attention heads and feed-forward widths (``core.dit_replay``); the widths it leaves are a
    config key (``spec.plan.WIDTH_KEY``) this loader builds the blocks from."""

    name = "wan"
    diffusers_class = "WanTransformer3DModel"
    folder = "transformer"
    # Every block's self- and cross-attention projections and its feed-forward (the layers Wan LoRAs adapt: lightx2v's
    # step-distillation LoRA, diffusers' Wan LoRA loader); the adaLN tables and the patch embedding stay frozen.
    lora_targets = r".*blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)$|.*blocks\.\d+\.ffn\.net\.(0\.proj|2)$"

    def attach_guidance_embedding(self, module: torch.nn.Module, w_embedding_dim: int) -> torch.nn.Module:
        return attach_wan_guidance_embedding(module, w_embedding_dim)

    def load(self, path: str | os.PathLike[str], dtype: torch.dtype, block_plan: dict[str, Any] | None = None,
             channel_plan: dict[str, Any] | None = None) -> torch.nn.Module:
        from diffusers import WanTransformer3DModel

        if channel_plan is not None and not plans.is_head_ffn_plan(channel_plan):
            raise ValueError("a channel plan names UNet3D layers; a wan transformer's width plan is a head / FFN plan (kind head_ffn_plan)")
        config = WanTransformer3DModel.load_config(path)
        widths = config.get(plans.WIDTH_KEY)
        if block_plan is None and channel_plan is None and not config.get(GUIDANCE_KEY) and widths is None:
            return WanTransformer3DModel.from_pretrained(path, use_safetensors=True, torch_dtype=dtype)
        # A student (guidance embedding) or a pruned model: the architecture is rebuilt first (its blocks, then their widths:
        # the config's WIDTH_KEY, checked against the head / FFN plan beside it), then every weight loads strictly.
        from safetensors.torch import load_file

        from turbo_edge.core import dit_replay

        base = plans.dit_base_config(dict(config))
        with own_config_keys_quiet():
            module = WanTransformer3DModel.from_config(base)
        if config.get(GUIDANCE_KEY):
            attach_wan_guidance_embedding(module, int(config[GUIDANCE_KEY]))
        if block_plan is not None:
            module = self.apply_plan(module, block_plan)
        if channel_plan is not None:
            plans.validate_head_ffn_plan(channel_plan, dit_replay.base_config(module), block_plan)
            dit_replay.check_plan_widths(widths, channel_plan)
        if widths is not None or channel_plan is not None:
            dit_replay.set_block_widths(module, widths if widths is not None else plans.head_ffn_widths(channel_plan))
        state: dict[str, torch.Tensor] = {}
        for file in sorted(Path(path).glob("*.safetensors")):
            state.update(load_file(str(file)))
        module.load_state_dict(state)  # into the float32 module from_config built: no cast (and no diffusers warning) for float32
        return module if dtype == torch.float32 else module.to(dtype)

    def forward(self, module: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        if guidance is None:
            return module(sample, timestep, encoder_hidden_states=text, return_dict=False)[0]
        embedder = base_module(module).condition_embedder.time_embedder
        if getattr(embedder, "cond_proj", None) is None:
            raise ValueError("this transformer has no guidance embedding (it is a teacher): call it without one")

        # WanTimeTextImageEmbedding calls its time embedder without a condition; the hook hands it this call's.
        def with_guidance(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            return args, {**kwargs, "condition": guidance.to(args[0].dtype)}

        handle = embedder.register_forward_pre_hook(with_guidance, with_kwargs=True)
        try:
            return module(sample, timestep, encoder_hidden_states=text, return_dict=False)[0]
        finally:
            handle.remove()

    def geometry(self, module: torch.nn.Module) -> Geometry:
        cfg = module.config
        w_dim = cfg.get(GUIDANCE_KEY)
        return Geometry(int(cfg.in_channels), int(cfg.out_channels or cfg.in_channels), int(cfg.text_dim), int(w_dim) if w_dim else None)

    def spatial_patch(self, config: dict[str, Any]) -> int:
        return int(config.get("patch_size", (1, 2, 2))[1])

    def check_latent_size(self, config: dict[str, Any], frames: int, height: int, width: int) -> None:
        p_t, p_h, p_w = (int(p) for p in config.get("patch_size", (1, 2, 2)))
        table = int(config.get("rope_max_seq_len", 1024))
        longest = max(frames // p_t, height // p_h, width // p_w)
        if longest > table:
            raise ValueError(f"this transformer's RoPE table covers {table} positions per axis; the clip needs {longest} "
                             f"({frames} x {height} x {width} latents in {p_t}x{p_h}x{p_w} patches): choose fewer frames or a smaller size")

    def removable_units(self, config: dict[str, Any]) -> list[str]:
        return [f"blocks.{i}" for i in range(int(config["num_layers"]))]

    def apply_plan(self, module: torch.nn.Module, plan: dict[str, Any]) -> torch.nn.Module:
        units = self.removable_units(dict(module.config))
        removed = list(plan.get("removed", []))
        unknown = [u for u in removed if u not in units]
        if unknown:
            raise ValueError(f"pruning plan names {unknown}, which this transformer does not have (its units: blocks.0 .. blocks.{len(units) - 1})")
        if len(set(removed)) == len(units):
            raise ValueError("a pruning plan may not remove every transformer block")
        gone = {int(u.split(".")[1]) for u in removed}
        module.blocks = torch.nn.ModuleList([b for i, b in enumerate(module.blocks) if i not in gone])
        return module

    def apply_channel_plan(self, module: torch.nn.Module, plan: dict[str, Any], block_plan: dict[str, Any] | None = None) -> torch.nn.Module:
        from turbo_edge.core import dit_replay

        if not plans.is_head_ffn_plan(plan):
            raise PlanError("a channel plan names UNet3D layers; a wan transformer replays a head / FFN plan (kind head_ffn_plan)")
        return dit_replay.apply_head_ffn_plan(module, plan, block_plan)

    def enable_gradient_checkpointing(self, module: torch.nn.Module) -> int:
        model = module.get_base_model() if hasattr(module, "get_base_model") else module
        return checkpoint_blocks(list(model.blocks))


FAMILIES: dict[str, DenoiserFamily] = {f.diffusers_class: f for f in (UNet3DFamily(), WanFamily())}


def base_module(module: torch.nn.Module) -> torch.nn.Module:
    """The diffusers model inside a peft wrapper (a LoRA student), or the module itself."""
    return module.get_base_model() if hasattr(module, "get_base_model") else module


def family_of(module: torch.nn.Module) -> DenoiserFamily:
    """The family of a loaded denoiser (peft-wrapped or not), from its class."""
    return family_for(type(base_module(module)).__name__)


def call_denoiser(module: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                  guidance: torch.Tensor | None = None) -> torch.Tensor:
    """One call of any family's denoiser in the common signature: what every stage calls (never the module directly)."""
    return family_of(module).forward(module, sample, timestep, text, guidance)


def family_for(class_name: str | None) -> DenoiserFamily:
    """The family of a denoiser class named in ``model_index.json``; ``ValueError`` naming the supported ones."""
    if class_name not in FAMILIES:
        raise ValueError(f"denoiser {class_name!r} is not a supported family; turbo-edge handles {sorted(FAMILIES)}")
    return FAMILIES[class_name]
