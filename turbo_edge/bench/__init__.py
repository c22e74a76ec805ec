"""``turbo-edge bench``: per-stage and end-to-end latency, FLOPs against the host's peak, and memory, for a bundle
(the torch-free runtime's backends: ``bench.bundle``, imports no torch) or a model directory (PyTorch eager:
``bench.model``). The record is a results file the report reads (``benchmarks/results/bench_*.json``)."""

from __future__ import annotations

import warnings
from typing import Any

from turbo_edge.bench.common import format_table, machine_info
from turbo_edge.spec import host
from turbo_edge.spec.configs import BenchConfig
from turbo_edge.spec.outputs import check_json_output, write_json_output

SCHEMA_VERSION = 1


def run_bench(cfg: BenchConfig, command: str | None = None) -> dict[str, Any]:
    """Bench every backend x precision of ``cfg`` (one row each); write ``cfg.json`` when given; return the record."""
    if cfg.json:
        check_json_output(cfg.json, cfg.overwrite)  # before the benchmark runs, not after
    threads = cfg.threads or host.available_cores()
    machine = machine_info(threads)  # before the runs: the load average the figures were taken under
    rows = []
    if cfg.bundle:
        from turbo_edge.bench.bundle import bench_bundle, check_profile, video_geometry
        from turbo_edge.spec.bundle import load_bundle
        from turbo_edge.spec.errors import UnverifiedBundleWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnverifiedBundleWarning)
            bundle = load_bundle(cfg.bundle, verify=cfg.verify)
        frames, height, width = video_geometry(bundle, cfg.frames, cfg.height, cfg.width)
        check_profile(bundle, frames, height, width, cfg.batch)  # before any backend loads
        for precision in cfg.precisions:
            bundle.model_path("unet", precision)  # a missing variant: one line naming the ones there, before any timing
        decoders = cfg.decoders or (None,)
        for decoder in decoders:
            bundle.decoder(decoder)  # likewise a missing decoder
        for backend in cfg.backends:
            for precision in cfg.precisions:
                for decoder in decoders:
                    rows.append(bench_bundle(cfg, bundle, backend, precision, threads, decoder))
    else:
        from turbo_edge.bench.model import bench_model
        from turbo_edge.core.pipeline_io import load_teacher

        model = load_teacher(cfg.model)
        for precision in cfg.precisions:
            rows.append(bench_model(cfg, precision, threads, model=model))
        video = rows[0]["video"]
        frames, height, width = video["frames"], video["height"], video["width"]
    record = {
        "command": command or cfg.command_line("bench"),
        "kind": "bench", "schema_version": SCHEMA_VERSION,
        "machine": machine,
        "shapes": {"batch": cfg.batch, "frames": frames, "height": height, "width": width},
        "warmup": cfg.warmup, "runs": cfg.runs,
        "rows": rows,
        "config": cfg.to_dict(),
    }
    if cfg.bundle:
        record["bundle_source"] = bundle.manifest.get("source")  # which model, config hash and toolchain made the graphs
    if cfg.json:
        record = write_json_output(cfg.json, record, "bench", cfg.overwrite)
    return record


__all__ = ["SCHEMA_VERSION", "format_table", "run_bench"]
