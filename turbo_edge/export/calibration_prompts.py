"""Where int8 calibration's prompts come from: ``--prompts FILE`` (every line) or ``--data DATA`` (its captions, at most
``int8_calibration_prompts`` distinct ones spread over the dataset), resolved once into
``ExportConfig.int8_calibration_prompt_list`` so the config written beside the bundle, and its hash, name them.
Neither: the list stays empty and calibration draws the world's training prompts, as before.
"""

from __future__ import annotations

import logging

import numpy as np

from turbo_edge.core.pipeline_io import resolve_model_path
from turbo_edge.core.prepared import PreparedData
from turbo_edge.spec.card import read_card
from turbo_edge.spec.configs import ExportConfig
from turbo_edge.spec.inputs import check_closed_vocabulary
from turbo_edge.spec.prompt_file import read_prompt_file

log = logging.getLogger(__name__)


def data_captions(data: str, count: int) -> list[str]:
    """``count`` distinct captions of a prepared dataset, evenly spread over them in index order (all when fewer)."""
    try:
        prepared = PreparedData(data)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"--data: {exc}") from None
    captions = list(dict.fromkeys(c for k in range(len(prepared.shards)) for c in prepared.load_shard(k).captions))
    if len(captions) <= count:
        return captions
    return [captions[int(i)] for i in np.linspace(0, len(captions) - 1, count).round().astype(int)]


def resolve(cfg: ExportConfig) -> ExportConfig:
    """``cfg`` with ``int8_calibration_prompt_list`` filled from ``cfg.prompts`` or ``cfg.data``, each prompt checked
    against the model's closed vocabulary (where it has one)."""
    if not (cfg.prompts or cfg.data):
        return cfg
    prompts = read_prompt_file(cfg.prompts)[0] if cfg.prompts else data_captions(cfg.data, cfg.int8_calibration_prompts)
    vocabulary = read_card(resolve_model_path(cfg.model)).closed_vocabulary
    for prompt in prompts:
        try:
            check_closed_vocabulary(prompt, vocabulary)
        except ValueError as exc:
            raise ValueError(f"int8 calibration prompt {prompt!r} from {cfg.prompts or cfg.data}: {exc}") from None
    return cfg.replace(int8_calibration_prompt_list=tuple(prompts))
