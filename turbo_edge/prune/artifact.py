"""The pruned directory: the student layout + ``pruning_plan.json`` (blocks) and / or ``channel_plan.json``
(widths), written atomically, loaded by plan replay (``core.replay``: blocks first, then widths).

``load_teacher`` replays the plans of any directory that holds them, so the sampler, the evaluator and export
run pruned students unchanged; ``load_pruned`` is the same load that insists the directory is pruned.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from turbo_edge.core.pipeline_io import MODEL_INDEX, T2VModel, check_layout, load_teacher, resolve_model_path, save_model
from turbo_edge.spec.card import ModelCard
from turbo_edge.spec.errors import PlanError
from turbo_edge.spec.outputs import staged_dir
from turbo_edge.spec.plan import CHANNEL_PLAN_FILE, PLAN_FILE, read_plans, write_plan


def save_pruned(model: T2VModel, plan: dict[str, Any] | None, out: str | os.PathLike[str], card: ModelCard,
                channel_plan: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a T2VModel whose UNet went through ``apply_plan`` and / or ``apply_channel_plan``) and its
    plan(s) as one directory.

    ``save_model`` is atomic for the model alone; the plans must land in the same rename, else a crash between
    them would leave weights that nothing can load. So: save to a staging dir, add the plans, then swap.
    """
    if plan is None and channel_plan is None:
        raise PlanError("a pruned directory needs a block plan, a channel plan or both")
    out = Path(out)
    with staged_dir(out, MODEL_INDEX, overwrite=True, in_run_dir=True) as staging:  # inside its own run directory
        save_model(model, staging, card=card, overwrite=True)
        if plan is not None:
            write_plan(plan, staging / PLAN_FILE)
        if channel_plan is not None:
            write_plan(channel_plan, staging / CHANNEL_PLAN_FILE)
    return out


def load_pruned(name_or_path: str | os.PathLike[str], torch_dtype: Any = None) -> T2VModel:
    """Load a pruned directory as a T2VModel (the UNet rebuilt from its plans); refuse an unpruned one."""
    path = resolve_model_path(name_or_path)
    check_layout(path)
    plan, channel_plan = read_plans(path)
    if plan is None and channel_plan is None:
        raise PlanError(f"{path} has neither {PLAN_FILE} nor {CHANNEL_PLAN_FILE}: it is not a pruned model directory")
    return load_teacher(path, torch_dtype)
