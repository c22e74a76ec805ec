"""The export stage's CLI subcommands, registered into ``turbo_edge.cli`` by ``add_cli`` (called from cli.py).

``turbo-edge export --model MODEL --out BUNDLE [--precision fp32,fp16,int8] [--frames F --height H --width W] [--dry-run]``
``turbo-edge engine --bundle BUNDLE [--precision fp16] [--dry-run]``
``turbo-edge verify BUNDLE``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from turbo_edge.core.config import StageConfig


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="builtin, builtin-student, builtin-pruned or a diffusers text-to-video directory")
    p.add_argument("--out", help="bundle directory to write (atomically replaced)")
    p.add_argument("--precision", dest="precisions", type=_csv, help="comma-separated subset of fp32,fp16,int8 (fp32 always)")
    p.add_argument("--frames", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--max-batch", dest="max_batch", type=int, help="prompts per call the bundle's profile allows")
    p.add_argument("--static", action="store_true", default=None, help="fix every axis at its opt value")
    p.add_argument("--opset", type=int)
    p.add_argument("--threads", type=int, help="threads for the parity checks")
    p.add_argument("--int8-model-type", dest="int8_model_type", choices=["transformer", "default"],
                   help="NNCF preset: transformer (default: matmuls only, accurate) or default (also convolutions: faster on "
                        "wide UNets, see benchmarks/results/int8_scale*.json)")
    p.add_argument("--int8-scope", dest="int8_scope", choices=["auto", "all", "conv"],
                   help="int8 quantizes every op the preset picks (all) or convolutions only (conv: matmuls stay fp32, faster "
                        "on CPUs without VNNI, see benchmarks/results/int8_scope_*.json); auto (default): conv on an exporting "
                        "CPU without VNNI / AMX int8, else all")


@dataclasses.dataclass
class VerifyConfig(StageConfig):
    KIND = "verify"

    bundle: str = ""

    def __post_init__(self) -> None:
        if not self.bundle:
            raise ValueError("give the bundle directory to verify")


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=False, help="a bundle directory written by `turbo-edge export`")
    p.add_argument("--precision", dest="precisions", type=_csv, help="graphs to build engines from: fp16 (default), int8, fp32")
    p.add_argument("--workspace-gb", dest="workspace_gb", type=float)


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="a bundle directory")


def add_cli(command: Callable[..., Any], from_args: Callable[..., StageConfig]) -> None:
    """Register ``export``, ``engine`` and ``verify``; ``command`` / ``from_args`` are cli.py's own helpers."""
    from turbo_edge.export.config import ExportConfig
    from turbo_edge.export.tensorrt_build import EngineConfig

    @command("export", _export_args, lambda a: from_args(ExportConfig, a))
    def _export(cfg: ExportConfig) -> None:
        from turbo_edge.export import export_bundle, verify_bundle

        path = export_bundle(cfg.model, cfg.out, cfg)
        m = verify_bundle(path)
        print(f"wrote {path}")
        print(json.dumps(m["parity"], indent=1))

    @command("engine", _engine_args, lambda a: from_args(EngineConfig, a))
    def _engine(cfg: EngineConfig) -> None:
        from turbo_edge.export.tensorrt_build import TensorRTUnavailable, build_engines

        try:
            paths = build_engines(cfg.bundle, cfg)
        except TensorRTUnavailable as exc:
            raise ValueError(str(exc)) from exc  # cli.main prints ValueErrors as one line
        for p in paths:
            print(f"wrote {p}")

    @command("verify", _verify_args, lambda a: from_args(VerifyConfig, a))
    def _verify(cfg: VerifyConfig) -> None:
        from turbo_edge.export import verify_bundle

        m = verify_bundle(cfg.bundle)
        print(f"{cfg.bundle}: ok ({len(m['files'])} files, schema {m['schema_version']}, "
              f"{m['source']['kind']} {m['source']['model']}, sampler {m['sampler']['kind']})")
