"""The results page's sections: one renderer per result family, and ``FAMILIES``, the page's sections in order with the
file stems each takes. A renderer turns one result file (its name and its results dict) into Markdown lines. Stdlib only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from turbo_edge.report.results_format import (
    DASH,
    FALLBACK_COMMAND,
    QUALITY,
    _num,
    acc,
    fd,
    file_block,
    fmt,
    kb_to_mb,
    machine_desc,
    ms,
    pct,
    quality_cells,
    ratio,
    seconds_to_ms,
    sig,
    table,
)


def _demo(name: str, data: dict[str, Any]) -> list[str]:
    rows = [[str(r.get("row", "")), str(r.get("backend", "")), str(r.get("precision", "")), fmt(r.get("steps")),
             ms(r.get("latency_ms")), ratio(r.get("speedup")), *quality_cells(r), fmt(r.get("n_videos"))]
            for r in data["rows"]]
    body = table(["row", "backend", "precision", "steps", "median ms / video", "speedup vs teacher", *QUALITY, "videos"],
                 rows, numeric_from=3)
    stages = data.get("stage_latency") or []
    if stages:
        body += ["", "Per stage, runtime rows (median ms):", ""]
        body += table(["row", "text encoder", "UNet, one step", "VAE decode"],
                      [[str(s.get("row", "")), ms(s.get("text_encoder_ms")), ms(s.get("unet_step_ms")), ms(s.get("vae_ms"))]
                       for s in stages])
    extra = []
    if isinstance(data.get("stage_seconds"), dict):
        parts = ", ".join(f"{k} {fmt(v, 0)} s" for k, v in data["stage_seconds"].items())
        extra.append(f"Wall time {fmt(data.get('seconds'), 0)} s in all ({parts}).")
    return file_block(name, data, body, extra) + [""]


def _teacher(name: str, data: dict[str, Any]) -> list[str]:
    if "identical_fraction" in data:  # the UNet phase's world DATA against the in-memory encode it replaced
        body = table(["clips", "latent values bit-equal", "largest difference", "captions equal", "world -> DATA s", "in-memory encode s"],
                     [[fmt(data.get("clips")), share(data.get("identical_fraction")), fmt(data.get("max_abs")), fmt(data.get("captions_equal")),
                       fmt(data.get("world_data_s"), 1), fmt(data.get("in_memory_encode_s"), 1)]], numeric_from=0)
        return file_block(name, data, body, [f"Note recorded in the file: {data.get('note', '')}"]) + [""]
    rows = data["rows"]
    if rows and all("t" in r for r in rows):  # the denoising-loss probe
        body = table(["t", "SNR", "x0 MSE, true prompt", "wrong direction", "wrong colour", "no text", "direction read-out"],
                     [[fmt(r.get("t")), sig(r.get("snr")), sig(r.get("mse_true_prompt")), pct(r.get("gap_direction")),
                       pct(r.get("gap_colour")), pct(r.get("gap_uncond")), acc(r.get("direction_acc"))] for r in rows])
        extra = [f"{fmt(data.get('num'))} moving validation clips noised at each t; the wrong-prompt columns are the x0 "
                 "loss's increase over the true prompt's; the read-out picks the direction whose prompt has the lowest "
                 "loss (chance 0.25)."]
    else:
        body = table(["model", "prompts", "steps", *QUALITY, "direction", "s / video"],
                     [[str(r.get("model", "")), str(r.get("prompts", "")), fmt(r.get("steps")), *quality_cells(r),
                       acc(r.get("direction_acc")), fmt(r.get("seconds_per_video"), 2)] for r in rows], numeric_from=2)
        extra = ["`groundtruth` and `noise` are the evaluator's anchors (real clips; pure noise, chance 0.04 content / 0.20 motion)."]
    return file_block(name, data, body, extra) + [""]


def _distill(name: str, data: dict[str, Any]) -> list[str]:
    return _distill_ablation(name, data) if isinstance(data.get("arms"), dict) else _quality_rows(name, data)


def _distill_ablation(name: str, data: dict[str, Any]) -> list[str]:
    step_counts = sorted({int(s) for arm in data["arms"].values() for s in arm.get("steps", {})})
    columns = ["arm", *[f"content @{s}" for s in step_counts], "motion @4", "FD @4", "diversity @1", "s / video @4",
               "teacher ÷ 4-step"]
    rows = []
    for arm_name, arm in data["arms"].items():
        steps = {int(k): v for k, v in arm.get("steps", {}).items()}
        four = steps.get(4, {})
        rows.append([arm_name, *[acc(steps.get(s, {}).get("content_acc")) for s in step_counts], acc(four.get("motion_acc")),
                     fd(four.get("fd")), fmt((arm.get("diversity") or {}).get("1"), 1), fmt(four.get("latency_s_median"), 2),
                     ratio(arm.get("speedup_teacher_over_4_step"))])
    body = table(columns, rows)
    teacher = data.get("teacher") or {}
    if teacher:
        body += ["", f"The {fmt(teacher.get('steps'))}-step CFG teacher in the same run: content {acc(teacher.get('content_acc'))}, "
                     f"motion {acc(teacher.get('motion_acc'))}, FD {fd(teacher.get('fd'))}, "
                     f"{fmt(teacher.get('latency_s_median'), 2)} s / video."]
    calls = data.get("unet_calls") or {}
    if calls:
        body += ["", "UNet calls (median ms):", ""]
        body += table(["teacher CFG call (batch 2)", "student call (batch 1)", "ratio", "UNet-only ceiling, 50 CFG ÷ 4 steps"],
                      [[ms(calls.get("teacher_cfg_batch2_ms")), ms(calls.get("student_batch1_ms")),
                        ratio(calls.get("batch2_over_batch1")), ratio(calls.get("unet_only_ceiling_50_over_4"))]], numeric_from=0)
    latent = [(k, a["latent_reward"]) for k, a in data["arms"].items() if isinstance(a.get("latent_reward"), dict)]
    if latent:
        body += ["", "Latent reward predictors of the latent arms:", ""]
        body += table(["arm", "x0_fraction", "fit steps", "samples", "held-back Pearson", "held-back MSE"],
                      [[k, fmt(r.get("x0_fraction"), 1), fmt(r.get("steps")), fmt(r.get("samples")), acc(r.get("heldback_pearson")),
                        acc(r.get("heldback_mse"))] for k, r in latent])
    merged = [m for m in data.get("merged_runs") or [] if isinstance(m, dict)]
    if merged:
        body += ["", "Arms merged in from later runs (`--merge`):", ""]
        for m in merged:
            arms = ", ".join(f"`{a}`" for a in m.get("arms") or [])
            body.append(f"- {arms}: `{m.get('command', FALLBACK_COMMAND)}`; machine: {machine_desc(m) or 'not recorded'}; "
                        f"teacher {fmt(m.get('teacher_latency_s_median_this_run'), 2)} s / video in that run")
    budget, prompts = data.get("budget") or {}, data.get("prompts") or {}
    extra = [f"Every arm: {fmt(budget.get('steps'))} training steps at batch {fmt(budget.get('batch'))}; "
             f"{fmt(prompts.get('num'))} `{prompts.get('split', '?')}` prompts. Diversity: spread of evaluator features over seeds."]
    return file_block(name, data, body, extra) + [""]


def _quality_rows(name: str, data: dict[str, Any]) -> list[str]:
    """A file of named evaluator results (``{"<name>": {content_acc, motion_acc, fd, ...}}``)."""
    rows = [[k, *quality_cells(v), acc(v.get("direction_acc")), fmt(v.get("n_videos"))]
            for k, v in data.items() if isinstance(v, dict) and _num(v.get("content_acc")) is not None]
    if not rows:
        raise ValueError("no evaluator results")
    extra = [f"Note recorded in the file: {data['note']}"] if isinstance(data.get("note"), str) else []
    return file_block(name, data, table(["run", *QUALITY, "direction", "videos"], rows), extra) + [""]


def _prune(name: str, data: dict[str, Any]) -> list[str]:
    if isinstance(data.get("student"), dict) and isinstance(data.get("pruned"), dict):
        rows = [["PyTorch eager", ms(data["student"].get("median_ms")), ms(data["pruned"].get("median_ms")),
                 ratio(data.get("latency_speedup"))]]
        for backend, label in (("onnxruntime", "ONNX Runtime fp32"), ("openvino", "OpenVINO fp32")):
            r = (data.get("fp32_onnx_same_inputs") or {}).get(backend)
            if isinstance(r, dict):
                rows.append([label, ms(r.get("student_median_ms")), ms(r.get("pruned_median_ms")), ratio(r.get("latency_speedup"))])
        body = table(["runtime", "unpruned UNet ms", "pruned UNet ms", "unpruned ÷ pruned"], rows)
        extra = [f"{data.get('models', 'unpruned vs pruned')}; parameters kept {ratio(data.get('params_ratio'))}, "
                 f"FLOPs kept {ratio(data.get('flops_ratio'))}; {fmt(data.get('threads'))} threads, {fmt(data.get('runs'))} runs, "
                 + (f"`--block {data['block']}`." if "block" in data else "block: not recorded.")]
        return file_block(name, data, body, extra) + [""]
    return _quality_rows(name, data)


def _export(name: str, data: dict[str, Any]) -> list[str]:
    body = table(["backend", "precision", "median ms", "p90 ms", "min ms"],
                 [[str(r.get("backend", "")), str(r.get("precision", "")), ms(r.get("median_ms")), ms(r.get("p90_ms")),
                   ms(r.get("min_ms"))] for r in data["unet_latency"]], numeric_from=2)
    if isinstance(data.get("speedups"), dict):
        body += ["", "Ratios (same run):", ""]
        body += table(["ratio", "value"], [[k, ratio(v)] for k, v in data["speedups"].items()])
    parity = []
    for key, label in (("parity", "ONNX Runtime"), ("parity_openvino", "OpenVINO")):
        for module, per_precision in (data.get(key) or {}).items():
            for precision, r in (per_precision or {}).items():
                if isinstance(r, dict):
                    parity.append([label, module, precision, sig(r.get("max_abs")), sig(r.get("mean_rel")),
                                   f"{r.get('metric', '?')} ≤ {sig(r.get('tolerance'))}", fmt(r.get("passed"))])
    if parity:
        body += ["", "Parity against PyTorch:", ""]
        body += table(["runtime", "graph", "precision", "max abs error", "mean rel error", "gate", "passed"], parity, numeric_from=3)
    shapes = data.get("unet_input_shapes") or {}
    sample = shapes.get("sample") if isinstance(shapes, dict) else None
    extra = [f"Model `{data.get('model', '?')}`, UNet input {'x'.join(map(str, sample)) if isinstance(sample, list) else '?'}; "
             f"{fmt(data.get('threads'))} threads, {fmt(data.get('runs'))} runs after {fmt(data.get('warmup'))} warm-up."]
    return file_block(name, data, body, extra) + [""]


def _int8_scale(name: str, data: dict[str, Any]) -> list[str]:
    body = table(["width", "batch", "GFLOP / call", "fp32 ms", "bf16 ms", "int8 ms", "fp32 ÷ int8", "fp32 ÷ bf16",
                  "int8 mean rel error"],
                 [[fmt(r.get("width")), fmt(r.get("batch")), fmt(r.get("gflops_per_call"), 1), ms(r.get("openvino_fp32_ms")),
                   ms(r.get("openvino_bf16_ms")), ms(r.get("openvino_int8_ms")), ratio(r.get("fp32_over_int8")),
                   ratio(r.get("fp32_over_bf16")), acc(r.get("int8_mean_rel_error_random_weights"))] for r in data["rows"]],
                 numeric_from=0)
    extra = [f"OpenVINO CPU, random weights at the builtin architecture with widths multiplied; NNCF preset "
             f"`{data.get('int8_model_type', '?')}`; {fmt(data.get('threads'))} threads, {fmt(data.get('runs'))} runs."]
    return file_block(name, data, body, extra) + [""]


def _int8_scope(name: str, data: dict[str, Any]) -> list[str]:
    rows = []
    for model, m in data["models"].items():
        latency, quality = m.get("unet_median_ms") or {}, m.get("quality_openvino") or {}
        for arm in ("fp32", *sorted(k for k in quality if k != "fp32")):
            ov, ort = latency.get(f"openvino {arm}"), latency.get(f"onnxruntime {arm}")
            ov_fp32, ort_fp32 = _num(latency.get("openvino fp32")), _num(latency.get("onnxruntime fp32"))
            ov_x = ov_fp32 / ov if arm != "fp32" and ov_fp32 and _num(ov) else None
            ort_x = ort_fp32 / ort if arm != "fp32" and ort_fp32 and _num(ort) else None
            rows.append([model, arm, ms(ov), ratio(ov_x) if ov_x else DASH, ms(ort), ratio(ort_x) if ort_x else DASH,
                         *quality_cells(quality.get(arm) or {})])
    body = table(["model", "graph", "OpenVINO UNet ms", "OpenVINO fp32 ÷ this", "ORT UNet ms", "ORT fp32 ÷ this", *QUALITY],
                 rows, numeric_from=2)
    prompts = data.get("prompts") or {}
    extra = [f"Batch-1 UNet medians over {fmt(data.get('runs'))} interleaved runs, "
             + (f"`--block {data['block']}`" if "block" in data else "block: not recorded")
             + "; NNCF preset " + (f"`{data['int8_model_type']}`" if "int8_model_type" in data else "not recorded") + ". Quality: the runtime on OpenVINO, "
             f"{fmt(data.get('steps'))} steps, {fmt(prompts.get('num'))} `{prompts.get('split', '?')}` prompts. "
             "`int8_all`: every op the preset picks is quantized; `int8_conv`: convolutions only."]
    return file_block(name, data, body, extra) + [""]


def _runtime(name: str, data: dict[str, Any]) -> list[str]:
    runs = [r for r in data["rows"] if "median_seconds" in r]
    body = table(["pipeline", "median ms / video", "model-session ms", "end to end ÷ session", "peak RSS MB"],
                 [[str(r.get("name", "")), ms(seconds_to_ms(r.get("median_seconds"))), ms(seconds_to_ms(r.get("median_session_seconds"))),
                   fmt(r.get("overhead_ratio"), 3), fmt(kb_to_mb(r.get("peak_rss_kb")), 0)] for r in runs])
    summary = data.get("summary") or {}
    if summary:
        body += ["", "Ratios:", ""] + table(["ratio", "value"], [[k, fmt(v, 3)] for k, v in summary.items()])
    for r in data["rows"]:
        if "growth_kb" in r:
            body += ["", f"{r.get('name', 'repeated calls')}: RSS {fmt(kb_to_mb(r.get('rss_before_kb')), 0)} MB before, "
                         f"+{fmt(r.get('growth_kb'))} KB after."]
    source = data.get("bundle_source") or {}
    toolchain = source.get("toolchain") or {}
    extra = [f"Bundle of the {source.get('kind', '?')} `{source.get('model', '?')}`, {fmt(data.get('steps'))} steps, "
             f"threads: {fmt(data.get('threads'))}"
             + ("; toolchain " + ", ".join(f"{k} {v}" for k, v in toolchain.items()) if toolchain else "") + "."]
    return file_block(name, data, body, extra) + [""]


def _serve(name: str, data: dict[str, Any]) -> list[str]:
    lat, load, server = data["latency_ms"], data["load"], data["server"]
    serial, serial_all = data["direct_serial"], data.get("direct_serial_all_cores") or {}
    body = table(["pipeline", "requests / s", "p50 ms", "p99 ms"],
                 [[f"tritonserver, {fmt(server.get('instances'))} instance(s) x {fmt(server.get('threads_per_instance'))} thread(s), "
                   f"{fmt(load.get('concurrency'))} in flight", fmt(data.get("throughput_rps"), 2), ms(lat.get("p50")), ms(lat.get("p99"))],
                  [f"direct runtime, serial, {fmt(serial.get('threads'))} thread(s)", fmt(serial.get("throughput_rps"), 2),
                   ms(serial.get("p50_ms")), ms(serial.get("p99_ms"))],
                  [f"direct runtime, serial, {fmt(serial_all.get('threads'))} thread(s)", fmt(serial_all.get("throughput_rps"), 2),
                   ms(serial_all.get("p50_ms")), ms(serial_all.get("p99_ms"))]])
    bundle = data.get("bundle") or {}
    source = bundle.get("source") or {}
    extra = [f"{fmt(load.get('requests'))} requests, {fmt(data.get('failed_requests'))} failed, "
             f"{fmt(data.get('clips_differing_from_direct'))} clips differing from the direct runtime's; throughput "
             f"{ratio(data.get('throughput_over_direct_serial'))}x the serial runtime's "
             f"({ratio(data.get('throughput_over_direct_serial_all_cores'))}x the all-cores one). Bundle of the "
             f"{source.get('kind', '?')} `{source.get('model', '?')}` ({server.get('backend', '?')} {server.get('precision', '?')}), "
             f"tritonserver {server.get('tritonserver', '?')}."]
    return file_block(name, data, body, extra) + [""]


def _merged_groups(groups: dict[str, dict[str, float]]) -> dict[str, float]:
    """One backend's calls from its interleaved groups; a call timed in several (the unpruned reference) keeps the
    value of its first group (``all`` or ``cfg``, the teacher-and-student group)."""
    merged: dict[str, float] = {}
    for key in sorted(groups, key=lambda g: (g not in ("all", "cfg"), g)):
        for call, value in groups[key].items():
            merged.setdefault(call, value)
    return merged


def share(value: Any) -> str:
    """A fraction of a whole as a percentage: 0.165 -> 16.5 %."""
    number = _num(value)
    return fmt(value) if number is None else f"{number * 100:.1f} %"


def real_shape_where(data: dict[str, Any]) -> str:
    """The shape behind a ``real_shape_*.json``: ModelScope T2V's UNet3D, or (``family`` "wan") Wan2.1-T2V-1.3B's DiT."""
    shape = data.get("shape") or {}
    clip = f"{fmt(shape.get('frames'))} frames at {'x'.join(map(str, shape.get('pixels', [])))} pixels"
    if data.get("family") == "wan":
        t = shape.get("transformer") or {}
        who = "Wan2.1-T2V-1.3B shape" if shape.get("name") == "wan2.1-t2v-1.3b" else f"Wan2.1 architecture, shape {shape.get('name', '?')}"
        return (f"{who}: DiT {fmt(t.get('num_layers'))} blocks, {fmt(t.get('num_attention_heads'))} heads x "
                f"{fmt(t.get('attention_head_dim'))}, FFN {fmt(t.get('ffn_dim'))}, {clip} ({fmt(shape.get('tokens'))} tokens)")
    unet = shape.get("unet") or {}
    return f"ModelScope T2V shape: UNet3D {tuple(unet.get('block_out_channels', ()))}, {fmt(unet.get('layers_per_block'))} layers per block, {clip}"


def _widths(w: dict[str, Any]) -> str:
    return f"{fmt(w.get('attn1_heads'))} self- and {fmt(w.get('attn2_heads'))} cross-attention heads, FFN {fmt(w.get('ffn_dim'))}"


def real_shape_denoiser(data: dict[str, Any]) -> str:
    """What a ``real_shape_*.json`` times per call: the UNet, or a DiT's transformer."""
    return "transformer" if data.get("family") == "wan" else "UNet"


_WAN_CALL_LABELS = {"vdmini_ch_b1": "transformer, VDMini plan + heads / FFN", "text_b1": "text encoder (scaled to 24 layers), 1 prompt",
                    "text_b2": "text encoder (scaled to 24 layers), prompt + empty", "decode": "causal VAE decoder, whole clip"}
_REAL_SHAPE_CALLS = [("teacher_cfg_b2", "UNet, teacher CFG call (batch 2)"), ("student_b1", "UNet, student call (batch 1, w embedding)"),
                     ("unpruned_b1", "UNet, batch 1 (no w embedding)"), ("vdmini_b1", "UNet, VDMini block plan"),
                     ("vdmini_ch_b1", "UNet, VDMini plan + channels"), ("bf16_b1", "UNet, bf16 (plugin hint)"), ("int8_b1", "UNet, int8 (NNCF, OpenVINO IR)"),
                     ("text_b1", "text encoder, 1 prompt"), ("text_b2", "text encoder, prompt + empty"), ("decode", "VAE decoder, all frames"),
                     ("decode_tiny", "tiny decoder, whole clip (random weights)")]


def _real_shape(name: str, data: dict[str, Any]) -> list[str]:
    med = {kind: _merged_groups(groups) for kind, groups in (data.get("medians_ms") or {}).items()}
    kinds = [k for k in ("pytorch", "ort", "openvino") if k in med]
    wan = data.get("family") == "wan"
    calls = [(key, _WAN_CALL_LABELS.get(key, label.replace("UNet", "transformer")) if wan else label) for key, label in _REAL_SHAPE_CALLS]
    if wan:  # int8 measured on the first blocks, against their own fp32 graph
        n = fmt((data.get("int8") or {}).get("blocks"))
        calls[calls.index(("int8_b1", "transformer, int8 (NNCF, OpenVINO IR)")) + 1:0] = [
            ("depth_b1", f"transformer, first {n} blocks, fp32 (int8's reference)"), ("int8_depth_b1", f"transformer, first {n} blocks, int8 (NNCF, OpenVINO IR)")]
    body = table(["call", *[{"pytorch": "PyTorch eager", "ort": "ONNX Runtime", "openvino": "OpenVINO"}[k] + " ms" for k in kinds]],
                 [[label, *[ms(med[k].get(key)) for k in kinds]] for key, label in calls if any(key in med[k] for k in kinds)])
    r = data.get("ratios") or {}
    goals = r.get("goals") or {}
    body += ["", "Goals:", ""] + table(["ratio", "value", "goal", "met"],
                                      [[k, fmt(g.get("value"), 3), fmt(g.get("goal")), "yes" if g.get("met") else "**no**"] for k, g in goals.items()])
    video = r.get("video") or {}
    if video:
        body += ["", f"Per video (composed from the stage medians: text encoder + steps x {real_shape_denoiser(data)} call + VAE decode):", ""]
        body += table(["backend", "teacher 50-step CFG ms", "student 4-step ms", "student 1-step ms", "4-step ratio", "1-step ratio",
                       "decode share, 4-step", "ratio bound by text + decode"],
                      [[k, ms(v.get("teacher_ms")), ms(v.get("student_4_step_ms")), ms(v.get("student_1_step_ms")), ratio(v.get("ratio_4_step")),
                        ratio(v.get("ratio_1_step")), share((v.get("student_4_step_share") or {}).get("decode")), ratio(v.get("bound_4_step"))]
                       for k, v in video.items()])
        tiny = {k: v for k, v in video.items() if "decoder_full_over_tiny" in v}
        if tiny:  # the decoder issue's figures: the student with the tiny decoder, timed in the full decoder's group
            dec = (data.get("decoders") or {}).get("tiny") or {}
            body += ["", f"Per video with the student's tiny decoder (width {fmt(dec.get('width'))}, {fmt(dec.get('parameters'))} parameters, "
                     "random weights; the teacher keeps the full decoder):", ""]
            body += table(["backend", "decoder call full ÷ tiny", "student 4-step ms", "student 1-step ms", "4-step ratio", "1-step ratio",
                           "decode share, 4-step", "int8 student: 4-step ratio", "int8 student: 1-step ratio"],
                          [[k, ratio(v.get("decoder_full_over_tiny")), ms(v.get("student_4_step_tiny_ms")), ms(v.get("student_1_step_tiny_ms")),
                            ratio(v.get("ratio_4_step_tiny")), ratio(v.get("ratio_1_step_tiny")),
                            share((v.get("student_4_step_tiny_share") or {}).get("decode")), ratio(v.get("ratio_4_step_int8_tiny")),
                            ratio(v.get("ratio_1_step_int8_tiny"))] for k, v in tiny.items()])
            if any("ratio_4_step_int8_tiny" in v for v in tiny.values()):
                body += ["", ("The int8 student's figures compose the int8 transformer's whole-call time (the whole fp32 call over the "
                              "int8 / fp32 ratio measured on the first blocks)" if wan else
                              "The int8 student's figures compose the int8 UNet's call (the fp32 call times its own group's int8 / fp32 "
                              "ratio)") + " with the fp32 text encoder and the tiny decoder."]
    flops = data.get("flops") or {}
    peak = r.get("peak") or {}
    shape = data.get("shape") or {}
    unet = shape.get("unet") or {}
    variants = data.get("variants") or {}
    params = ", ".join(f"{k} {fmt((v.get('parameters') or 0) / 1e9, 3)} B" for k, v in variants.items())
    if wan:
        t, text = shape.get("transformer") or {}, data.get("text_encoder") or {}
        extra = [f"Shape `{shape.get('name', '?')}`: {real_shape_where(data)}, latent {'x'.join(map(str, shape.get('latent', [])))}, "
                 f"{fmt(shape.get('text_len'))} text tokens; random weights. Parameters: {params}. Plans: VDMini removes "
                 f"{fmt(len((variants.get('vdmini') or {}).get('removed') or []))} of {fmt(t.get('num_layers'))} blocks; the head / FFN plan "
                 f"keeps {'; '.join(_widths(w) for w in (variants.get('vdmini_ch') or {}).get('widths') or []) or '?'} per kept block. "
                 f"{fmt((flops.get('unpruned_b1') or 0) / 1e9, 1)} GFLOP per batch-1 transformer call; fastest fp32 backend "
                 f"{peak.get('backend', '?')} at {fmt(peak.get('achieved_gflops'), 1)} GFLOP/s = {share(peak.get('fraction'))} of "
                 f"{fmt(peak.get('peak_gflops'), 0)} GFLOP/s ({peak.get('peak_basis', '?')}). UMT5 built with "
                 f"{fmt((text.get('built') or {}).get('num_layers'))} of its {fmt((text.get('real') or {}).get('num_layers'))} layers, times x "
                 f"{fmt(text.get('scale'))}: {text.get('why', '?')}. "
                 + (f"int8 measured on the first {fmt(data['int8'].get('blocks'))} blocks: {data['int8']['why_blocks']}. "
                    if (data.get("int8") or {}).get("why_blocks") else "") +
                 f"Medians of {fmt(data.get('runs'))} interleaved runs after "
                 f"{fmt(data.get('warmup'))} warm-up, {fmt(data.get('threads'))} threads; peak RSS {fmt(data.get('peak_rss_gib'))} GiB."]
    else:
        extra = [f"Shape `{shape.get('name', '?')}`: UNet3D {tuple(unet.get('block_out_channels', ()))}, {fmt(unet.get('layers_per_block'))} layers per block, "
                 f"cross-attention {fmt(unet.get('cross_attention_dim'))}; {fmt(shape.get('frames'))} frames at "
                 f"{'x'.join(map(str, shape.get('pixels', [])))} pixels (latent {'x'.join(map(str, shape.get('latent', [])))}), "
                 f"{fmt(shape.get('text_len'))} text tokens; random weights. Parameters: {params}. "
                 f"{fmt((flops.get('unpruned_b1') or 0) / 1e9, 1)} GFLOP per batch-1 UNet call; fastest fp32 backend "
                 f"{peak.get('backend', '?')} at {fmt(peak.get('achieved_gflops'), 1)} GFLOP/s = {share(peak.get('fraction'))} of "
                 f"{fmt(peak.get('peak_gflops'), 0)} GFLOP/s ({peak.get('peak_basis', '?')}). Medians of {fmt(data.get('runs'))} interleaved runs "
                 f"after {fmt(data.get('warmup'))} warm-up, {fmt(data.get('threads'))} threads."]
    for key, prof in (data.get("profiles") or {}).items():
        ops = ", ".join(f"{o['op']} {share(o['share'])}" for o in prof.get("ops", [])[:6])
        extra.append(f"Profile `{key}` ({ms(prof.get('total_ms'))} ms): {ops}.")
    return file_block(name, data, body, extra) + [""]


def _data(name: str, data: dict[str, Any]) -> list[str]:
    prep, resume, world = data["prepare"], data["resume"], data["world_roundtrip"]
    geometry = prep.get("geometry") or {}
    body = table(["measure", "value"], [
        ["clips / s, whole `prepare` call (median)", fmt(prep.get("clips_per_s"), 1)],
        ["clips / s after model load", fmt(prep.get("clips_per_s_after_model_load"), 1)],
        ["clips / s, decode + resize alone", fmt(prep.get("decode_resize_clips_per_s"), 1)],
        ["bad samples skipped", ", ".join(f"{n} {reason}" for reason, n in sorted((data.get("bad") or {}).items())) or DASH],
        ["resume: shards before the kill / in all / rewritten", f"{fmt(resume.get('shards_before_kill'))} / "
         f"{fmt(resume.get('shards_total'))} / {fmt(resume.get('rewritten_shards'))}"],
        ["resume: equal to an uninterrupted run", fmt(resume.get("equal_to_uninterrupted"))],
        [f"world export ({world.get('pix_fmt', 'yuv420p')}, crf {fmt(world.get('crf'))}) -> prepare: mean abs / relative RMS latent error",
         f"{fmt(world.get('mean_abs_error'))} / "
         f"{fmt(world.get('relative_rms_error'))} (latent std {fmt(world.get('latent_std'), 2)})"],
    ])
    extra = [f"{fmt(prep.get('samples'))} clips of {fmt(geometry.get('frames'))}x{fmt(geometry.get('height'))}x"
             f"{fmt(geometry.get('width'))} for `{prep.get('model', '?')}` in {fmt(prep.get('shards'))} shards; "
             f"CPU {data.get('cpu', '?')}, threads: {fmt(data.get('threads'))}."]
    return file_block(name, data, body, extra) + [""]


def _ddp(name: str, data: dict[str, Any]) -> list[str]:
    settings, curves, whole = data["settings"], data["curves"], data["whole_run_mean"]
    body = table(["run", "processes", "clips / process / step", "loss window means", "loss mean", "finished epochs", "reads ok", "s"],
                 [[run, fmt(r.get("processes")), fmt(r.get("per_process_batch")), ", ".join(fmt(v, 4) for v in r["window_means"]),
                   fmt(r.get("loss_mean"), 4), fmt(r["reads"].get("finished_epochs")), fmt(data["reads_pass"].get(run)), fmt(r.get("seconds"), 0)]
                  for run, r in data["runs"].items()])
    body += ["", *table(["2 processes ÷ 1 process", "max relative difference", "largest seed-to-seed", "tolerance", "within"],
                        [[label, fmt(c["candidate_max_rel_diff"]), fmt(c["seed_to_seed_max"]), f"{fmt(c['tolerance'])} ({fmt(c['factor'], 1)}x)",
                          fmt(c["pass"])] for label, c in ((f"window means ({fmt(settings.get('window'))} steps)", curves),
                                                           ("mean over all steps", whole))])]
    extra = [f"{fmt(settings.get('clips'))} clips in {fmt(settings.get('shards'))} shards for `{settings.get('teacher', '?')}`, global batch "
             f"{fmt(settings.get('global_batch'))}, {fmt(settings.get('steps'))} steps; no sample read twice in an epoch: "
             f"{fmt((data.get('pass') or {}).get('no_sample_read_twice_in_an_epoch'))}."]
    return file_block(name, data, body, extra) + [""]


def _real_size(name: str, data: dict[str, Any]) -> list[str]:
    stages = data.get("stages") or {}
    goal = data.get("goal_peak_rss_gib")
    body = table(["stage", "wall s", "peak RSS GiB", f"under {fmt(goal, 0)} GiB"],
                 [[f"{stage} (reused)" if r.get("reused") else stage, fmt(r.get("wall_s"), 1), fmt(r.get("peak_rss_gib"), 2),
                   fmt(r.get("passed"))] for stage, r in stages.items()])
    first = data.get("teacher_first_build") or {}
    if first:
        body += ["", f"The teacher built fresh: {fmt(first.get('wall_s'), 1)} s, peak RSS {fmt(first.get('peak_rss_gib'), 2)} GiB "
                     f"({first.get('note', '')})."]
    body += ["", "Each stage's command:", ""] + [f"- {stage}: `{r.get('command', '?')}`" for stage, r in stages.items()]
    shape = data.get("shape") or {}
    unet = shape.get("unet") or {}
    extra = [f"Shape `{shape.get('name', '?')}`: UNet {unet.get('block_out_channels', '?')}, {fmt(unet.get('layers_per_block'))} layers "
             f"per block, {fmt(shape.get('frames'))} frames at {fmt(shape.get('size'))}x{fmt(shape.get('size'))}; int8 format "
             f"`{data.get('int8_format', '?')}`; every stage under the goal: {fmt(data.get('passed'))} (largest "
             f"{fmt(data.get('max_peak_rss_gib'), 2)} GiB); {fmt(data.get('threads'))} threads."]
    gate = data.get("int8_gate") or {}
    if gate:
        extra.append(f"int8 UNet gate at export ({gate.get('backend', '?')}, on the calibration inputs): mean relative error "
                     f"{fmt(gate.get('mean_rel'))}, max abs {fmt(gate.get('max_abs'))} (tolerance {fmt(gate.get('tolerance'))}, loosened "
                     "for random weights).")
    if isinstance(data.get("note"), str):
        extra.append(f"Note recorded in the file: {data['note']}")
    return file_block(name, data, body, extra) + [""]


def _bench(name: str, data: dict[str, Any]) -> list[str]:
    shapes = data["shapes"]
    rows = data["rows"]
    body = table(["row", "steps", "batch", "end to end ms", "end to end is", "videos / min", "composed ÷ measured", "peak RSS MB"],
                 [[str(r["row"]), fmt(r.get("steps")), fmt(r.get("batch")), ms(r.get("end_to_end_ms")), str(r.get("end_to_end_source", "")),
                   ratio(r.get("videos_per_min")), pct(r.get("composition_rel_diff")), fmt(r.get("peak_rss_mb"), 0)] for r in rows])
    body += ["", "Per stage (ms per call; share of end to end; GFLOP per call; achieved GFLOP/s and % of the host's peak):", ""]
    body += table(["row", "stage", "calls", "median", "p90", "min", "share", "GFLOP", "GFLOP/s", "% peak"],
                  [[str(r["row"]), str(s["stage"]), fmt(s.get("calls")), ms(s.get("median_ms")), ms(s.get("p90_ms")), ms(s.get("min_ms")),
                    f"{100 * s['share_of_end_to_end']:.0f} %" if _num(s.get("share_of_end_to_end")) is not None else DASH,
                    fmt(s.get("gflop"), 3), fmt(s.get("achieved_gflops"), 1), fmt(s.get("pct_of_peak"), 1)]
                   for r in rows for s in r["stages"]], numeric_from=2)
    extra = [f"Shapes: batch {fmt(shapes.get('batch'))}, {fmt(shapes.get('frames'))} frames of {fmt(shapes.get('height'))}x"
             f"{fmt(shapes.get('width'))}; {fmt(data.get('warmup'))} warm-up and {fmt(data.get('runs'))} timed calls per stage. "
             "Peak RSS is the process's peak so far (rows run in order in one process)."]
    return file_block(name, data, body, extra) + [""]


def _decoder(name: str, data: dict[str, Any]) -> list[str]:
    body: list[str] = []
    quality = data.get("quality") or {}
    rows = [[variant, what.replace("_", " "), fmt(r.get("psnr_db"), 2), fmt(r.get("ssim"), 3), fmt(r.get("clips"))]
            for variant, sets in quality.items() for what, r in sets.items()]
    if rows:
        body += table(["decoder", "held-out latents", "PSNR vs full (dB)", "SSIM vs full", "clips"], rows, numeric_from=2) + [""]
    evaluator = data.get("evaluator") or {}
    rows = [[decoder, acc(r.get("content_acc")), acc(r.get("motion_acc")), fd(r.get("fd")), fmt(r.get("n_videos")),
             DASH if decoder == "full" else f"{fmt(r.get('content_points_vs_full'), 1)} / {fmt(r.get('motion_points_vs_full'), 1)}"]
            for decoder, r in evaluator.items() if isinstance(r, dict)]
    if rows:
        body += table(["decoder (4-step student videos)", "content", "motion", "FD", "videos", "content / motion points vs full"], rows) + [""]
    rows = []
    for where, row in (data.get("latency") or {}).items():
        if where == "wan":  # the DiT family's causal decoder: its own table below
            continue
        shape = f"{where} (latents {'x'.join(map(str, row.get('latents') or []))})"
        for label, times in ((f"{shape}, PyTorch eager", row), (f"{shape}, OpenVINO fp32 (ONNX)", row.get("openvino_fp32") or {}),
                             (f"{shape}, OpenVINO fp32 and int8 (ONNX; full ÷ this against the full fp32)", row.get("openvino_int8") or {})):
            for decoder, t in times.items():
                if isinstance(t, dict) and "median_ms" in t:
                    rows.append([label, decoder, ms(t["median_ms"]), DASH if decoder == "full" else ratio(t.get("full_over_this")),
                                 fmt((row.get("params") or {}).get(decoder))])
    if rows:
        body += table(["shape", "decoder", "median ms per call", "full ÷ this", "parameters"], rows)
    load = data.get("loadavg_at_start") or [None]
    extra = [f"fp32, {fmt(data.get('threads'))} threads, load average at start {fmt(load[0], 2)}; the "
             f"`{data.get('shape', '?')}` rows use random weights (latency does not depend on them)."] if data.get("shape") else []
    if data.get("goal_note"):
        extra.append(f"Goal: {data['goal_note']}.")
    for variant, card in (data.get("card_decoders") or {}).items():
        made = ((card.get("lineage") or {}).get("details") or {}).get("reproduce")
        if made:
            extra.append(f"The `{variant}` decoder: `{made}`")
    notes = [" ".join(extra)] if extra else []
    wan = (data.get("latency") or {}).get("wan")
    if isinstance(wan, dict):
        body += ["", *_wan_decoder_rows(wan)] if body else _wan_decoder_rows(wan)
        load = wan.get("loadavg_at_start") or [None]
        notes += [""] * bool(notes) + [f"Wan rows: `{wan.get('command', '?')}` on {wan.get('cpu', '?')} ({', '.join(wan.get('cpu_flags') or []) or 'flags not recorded'}), "
                     f"{fmt(wan.get('threads'))} threads, load average at start {fmt(load[0], 2)}"
                     + (f"; {wan['note']}" if wan.get("note") else "") + "; random weights, untrained tiny decoders"
                     + (", the pruned one the ModelScope row's fixed plan." if any("pruned_plan" in r for r in wan.values() if isinstance(r, dict)) else ".")]
    return file_block(name, data, body, notes) + [""]


def _wan_decoder_rows(wan: dict[str, Any]) -> list[str]:
    """``latency.wan``: per shape, the Wan causal decoder (the DiT bundle's ``vae_decoder`` graph) against tiny decoders."""
    rows = []
    for where, row in wan.items():
        if not isinstance(row, dict) or "openvino_fp32" not in row:
            continue
        f, h, w = (list(row.get("frames_px") or []) + ["?"] * 3)[:3]
        shape = f"{where} ({f} frames of {h}x{w}, latents {'x'.join(map(str, row.get('latents') or []))})"
        int8 = row.get("openvino_int8") or {}
        hw = int8.get("calibration_latent_hw")
        for label, times in ((f"{shape}, fp32", row.get("openvino_fp32") or {}),
                             (f"{shape}, fp32 and int8" + (f" (calibrated on {hw[0]}x{hw[1]} latents)" if hw else ""), int8)):
            for decoder, t in times.items():
                if isinstance(t, dict) and "median_ms" in t:
                    base = decoder.removesuffix("_fp32").removesuffix("_int8")
                    err = (t.get("error_vs_torch") or {}).get("mean_rel")
                    rows.append([label, "full (causal VAE)" if decoder == "full" else decoder, ms(t["median_ms"]),
                                 DASH if decoder == "full" else ratio(t.get("full_over_this")), fmt(t.get("gflop"), 3),
                                 fmt((row.get("params") or {}).get(base)), DASH if err is None else fmt(err, 3)])
    return table(["Wan shape, OpenVINO (ONNX)", "decoder", "median ms per call", "full ÷ this", "GFLOP per call", "parameters",
                  "mean rel. error vs PyTorch"], rows)


def _dit(name: str, data: dict[str, Any]) -> list[str]:
    """``bench_dit.py``'s files: the DiT teacher, its student at 1/2/4 steps and the pruned student, each a row of the
    held-out evaluator (``content`` / ``motion`` keys), then the issue's gates as measured (a gate not yet measured is absent)."""
    rows = [[k, str(r.get("sampler", "")), fmt(r.get("steps")), acc(r["content"]), acc(r["motion"]), fd(r.get("fd")),
             acc(r.get("direction_acc")), fmt(r.get("n_videos")), fmt(r.get("seconds_per_video"), 2)] for k, r in data["rows"].items()]
    body = table(["row", "sampler", "steps", *QUALITY, "direction", "videos", "s / video"], rows, numeric_from=2)
    extra = [f"Gates: {', '.join(f'{k} {fmt(v)}' for k, v in data.get('gates', {}).items()) or 'none measured yet'}."]
    lineage = data.get("teacher_lineage") or {}
    if lineage:
        extra.append(f"Teacher `{data.get('teacher', '')}`: {lineage.get('stage', '')}, step {fmt(lineage.get('step'))}.")
    if data.get("complete") is False:
        extra.append("Partial: the rows after the teacher's are still being measured (the file is rewritten as each stage ends).")
    scopes = data.get("scopes") or {}
    if scopes:  # bench_dit_int8.py: what each int8 scope leaves fp32, its parity and the transformer call fp32 / int8
        body += ["", "int8 scopes (the transformer's layers left fp32; parity against PyTorch; one transformer call on OpenVINO CPU):", ""]
        body += table(["scope", "left fp32", "QuantizeLinear", "MatMul / Gemm fp32", "int8 mean rel. error", "fp32 ms", "int8 ms", "fp32 ÷ int8"],
                      [[s, ", ".join(f"`{p}`" for p in e.get("ignored_patterns") or []) or "nothing", fmt(e.get("quantize_linear")),
                        f"{fmt(e.get('matmul_gemm_fp32'))} of {fmt(e.get('matmul_gemm'))}", sig((e.get("parity_int8") or {}).get("mean_rel")),
                        ms(((e.get("transformer_call") or {}).get("fp32") or {}).get("median_ms")),
                        ms(((e.get("transformer_call") or {}).get("int8") or {}).get("median_ms")),
                        ratio((e.get("transformer_call") or {}).get("fp32_over_int8"))] for s, e in scopes.items()], numeric_from=2)
    return file_block(name, data, body, extra) + [""]


def _hostile(name: str, data: dict[str, Any]) -> list[str]:
    rss, cases = data["rss"], data["cases"]
    body = table(["input", "exit", "peak RSS MB", "s", f"under {fmt(data.get('goal_peak_rss_mb'), 0)} MB or refused", "what it said"],
                 [[row, fmt(r.get("rc")), fmt(r.get("peak_rss_mb"), 0), fmt(r.get("wall_s"), 1), fmt(r.get("under_goal_or_refused")),
                   str(r.get("last_line") or DASH)[:160]] for row, r in rss.items()])
    body += ["", "Each input's command:", ""] + [f"- {row}: `{r.get('command', '?')}`" for row, r in rss.items()]
    body += ["", f"Case tables ({fmt(cases.get('tried'))} cases tried, {fmt(cases.get('clean'))} clean, {fmt(cases.get('failed'))} "
                 f"failed, {fmt(cases.get('skipped'))} skipped, in {fmt(cases.get('seconds'), 1)} s: `{cases.get('command', '?')}`):", ""]
    body += table(["class", "tried", "clean", "failed", "skipped"],
                  [[cls, fmt(c.get("tried")), fmt(c.get("clean")), fmt(c.get("failed")), fmt(c.get("skipped"))]
                   for cls, c in (cases.get("by_class") or {}).items()])
    body += ["", *table(["table", "tried", "clean", "failed", "skipped"],
                        [[f"`{t}`", fmt(c.get("tried")), fmt(c.get("clean")), fmt(c.get("failed")), fmt(c.get("skipped"))]
                         for t, c in (cases.get("by_table") or {}).items()])]
    if cases.get("failed_cases"):
        body += ["", "Failed: " + ", ".join(f"`{c}`" for c in cases["failed_cases"])]
    return file_block(name, data, body) + [""]


def _gib(value: Any) -> str:
    number = _num(value)
    return DASH if number is None else f"{number / 2**30:.2f}"


def _dims(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, list) else DASH


def _gpu(name: str, data: dict[str, Any]) -> list[str]:
    """``benchmarks/gpu_check.sh``'s record: which paths ran on which GPU, every measured case, the teacher ÷ student
    ratios and the TensorRT engines; a dry run or a ``--tiny`` wiring check says so and shows no figures as GPU results."""
    device = data.get("device") or {}
    machine = data.get("machine") or {}
    gpu = device.get("name") or machine.get("gpu_name")
    real = bool(device.get("gpu_results")) if "gpu_results" in device else bool(gpu) and not data.get("dry_run")
    budget = data.get("budget") or {}
    extra = [f"Device: **{gpu or 'no GPU'}**" + (f" ({machine['nvidia_smi']})" if machine.get("nvidia_smi") and gpu else "") +
             f"; budget {fmt(budget.get('spent_s'), 0)} s of {fmt(budget.get('seconds'), 0)} s"
             + (", stopped by it." if budget.get("stopped_by_budget") else ".")]
    if not real:
        why = "a dry run (probe only)" if data.get("dry_run") else "a `--tiny` wiring check" if data.get("tiny") else "no GPU was visible"
        extra.append(f"**Not GPU results**: {why}; its figures are not measurements of a GPU.")
    body = table(["path", "status", "reason", "s"],
                 [[p, str(e.get("status", "")), str(e.get("reason") or ""), fmt(e.get("seconds"), 0)] for p, e in (data.get("paths") or {}).items()],
                 numeric_from=3)
    rows = data.get("rows") or []
    torch_rows = [r for r in rows if "mode" in r and "backend" not in r]
    if torch_rows:
        body += ["", "PyTorch (CUDA-event median per call; max abs diff against fp32 eager; peak allocated GiB since the case began):", ""]
        body += table(["path", "model", "batch", "precision", "mode", "input", "median ms", "p90 ms", "runs", "max abs diff vs fp32", "peak GiB"],
                      [[str(r.get("path", "")), str(r.get("model", "")), fmt(r.get("batch")), str(r.get("precision", "")), str(r.get("mode", "")),
                        _dims(r.get("input_shape") or r.get("latent_shape")), ms(r.get("median_ms")), ms(r.get("p90_ms")), fmt(r.get("runs")),
                        sig(r.get("max_abs_diff_vs_fp32")), _gib(r.get("peak_memory_bytes"))] if "error" not in r else
                       [str(r.get("path", "")), str(r.get("model", "")), fmt(r.get("batch")), str(r.get("precision", "")), str(r.get("mode", "")),
                        _dims(r.get("input_shape") or r.get("latent_shape")), f"error: {str(r['error'])[:120]}", DASH, DASH, DASH, DASH]
                       for r in torch_rows], numeric_from=6)
    backend_rows = [r for r in rows if "backend" in r]
    if backend_rows:
        body += ["", "Runtime backends (host clock per call, copies included; max abs diff against ONNX Runtime CPU fp32 on the same inputs):", ""]
        body += table(["path", "model", "component", "backend", "median ms", "max abs diff"],
                      [[str(r.get("path", "")), str(r.get("model", "")), str(r.get("component", "unet")), str(r.get("backend", "")),
                        ms(r.get("median_ms")) if "error" not in r else f"error: {str(r['error'])[:120]}",
                        sig(r.get("max_abs_diff_vs_ort_cpu_fp32"))] for r in backend_rows], numeric_from=4)
    ratios = data.get("ratios") or []
    if ratios:
        body += ["", "Teacher ÷ student, denoiser calls only (text encoder and decoder excluded):", ""]
        body += table(["teacher", "precision", "mode", "teacher ms / video", "student ms / video", "ratio"],
                      [[f"{r.get('teacher')} ({fmt(r.get('teacher_calls'))} calls at batch {fmt(r.get('teacher_batch'))} ÷ "
                        f"{fmt(r.get('student_calls'))} at batch {fmt(r.get('student_batch'))})", str(r.get("precision", "")), str(r.get("mode", "")),
                        ms(r.get("teacher_unet_ms_per_video")), ms(r.get("student_unet_ms_per_video")), ratio(r.get("teacher_over_student"))]
                       for r in ratios], numeric_from=3)
    engines = [*(data.get("tensorrt_engines") or []), *((data.get("wan_tensorrt") or {}).get("engines") or [])]
    if engines:
        body += ["", "TensorRT engines built:", ""]
        body += table(["component", "precision / engine", "build s"],
                      [[str(e.get("component", "unet")), str(e.get("engine") or e.get("precision") or e.get("error", "")), fmt(e.get("build_s"), 1)]
                       for e in engines], numeric_from=2)
    wan = data.get("wan_transformer") or {}
    if isinstance(wan.get("geometry"), dict):
        geo = wan["geometry"]
        params = _num(wan.get("parameters"))
        extra.append(f"Wan transformer: {DASH if params is None else f'{params / 1e9:.3f} B'} parameters, random weights; {fmt(geo.get('frames'))} frames of "
                     f"{_dims(geo.get('pixels'))}, latents {_dims(geo.get('latent'))}, {fmt(geo.get('tokens'))} tokens and "
                     f"{_dims(geo.get('text'))} text per call.")
    skipped = [s for s in data.get("skipped") or [] if s.get("case")]
    if skipped:
        body += ["", "Cases skipped: " + "; ".join(f"{s.get('path')} {s.get('case')} ({s.get('reason')})" for s in skipped) + "."]
    return file_block(name, data, body, extra) + [""]


Section = Callable[[str, dict[str, Any]], list[str]]  # one result file (its name, its JSON) -> its Markdown lines

# (family, title, intro, builder), in page order. A family takes the files named FAMILY.json and FAMILY_*.json.
FAMILIES: list[tuple[str, str, str, Section]] = [
    ("demo", "Demo: teacher vs student vs pruned",
     "`turbo-edge demo` end to end: one row per model / runtime / precision, median latency per video, speedup over "
     "the 50-step CFG teacher and the held-out evaluator's quality (8 prompts per row: a smoke check of quality).", _demo),
    ("teacher", "Teacher",
     "The builtin teacher on the held-out evaluator (50-step DDIM + CFG) and the denoising-loss probe of what it listens to.", _teacher),
    ("distill", "Distillation",
     "The distillation ablation at one training budget (content accuracy per sampler step count) and the shipped "
     "student against the teacher on more prompts.", _distill),
    ("prune", "Pruning",
     "UNet latency of the unpruned student against the VDMini-pruned one, and the pruned student's quality.", _prune),
    ("export", "Export: UNet latency and parity",
     "The builtin teacher's UNet (one CFG call) in PyTorch eager, ONNX Runtime and OpenVINO at each precision, and "
     "every exported graph's error against PyTorch.", _export),
    ("int8_scale", "int8 against UNet width",
     "Where OpenVINO int8 (and bf16) starts to pay over fp32 as the UNet widens.", _int8_scale),
    ("int8_scope", "int8 scope: what to quantize",
     "The shipped students' UNets with every op quantized (`all`) or convolutions only (`conv`), latency and quality.", _int8_scope),
    ("real_shape", "Speed at a real model's shape: ModelScope T2V and Wan2.1",
     "The compression ratios on ModelScope T2V's architecture (UNet3D) and on Wan2.1-T2V-1.3B's (DiT, `real_shape_wan_*.json`), "
     "random weights (latency does not depend on their values), where the denoiser is compute-bound: teacher loop ÷ student "
     "loop, VDMini pruning against its FLOP ratio, int8 and bf16 against fp32, ONNX Runtime against eager, and achieved "
     "FLOP/s against the CPU's peak.", _real_shape),
    ("real_size", "The whole chain at a real model's size",
     "Every stage as a user runs it, `data prepare` to `generate`, on a ModelScope-T2V-shaped teacher with random weights "
     "(`benchmarks/bench_real_size.py`): each stage a child process, its wall time and its own peak RSS against the goal.", _real_size),
    ("gpu", "GPU check: PyTorch CUDA, ONNX Runtime CUDA and TensorRT",
     "`bash benchmarks/gpu_check.sh` on one NVIDIA GPU (its name heads each file): the Wan2.1-1.3B transformer at its 480p clip and "
     "its decoder, a ModelScope-T2V-shaped UNet and the builtin models in PyTorch eager and CUDA graphs, engines built from the "
     "exported graphs; every path that did not run says why.", _gpu),
    ("runtime", "Runtime overhead and memory",
     "The torch-free Python runtime and the C++ host against the PyTorch pipeline on the same bundle.", _runtime),
    ("serve", "Serving on Triton",
     "`turbo-edge serve` (tritonserver, Python backend over the torch-free runtime, loopback HTTP) under a bounded load, "
     "against one runtime process answering the same requests one after another.", _serve),
    ("decoder", "Decoder variants: tiny and pruned against the full VAE decoder",
     "`turbo-edge decoder train`'s decoders on the builtin student: PSNR / SSIM of their frames against the full decoder's on "
     "held-out latents, the held-out evaluator on 4-step videos decoded by each, and decoder-call latency at the model's size "
     "and at ModelScope T2V's shape, and the Wan causal decoder against tiny ones (`benchmarks/bench_decoder.py`).", _decoder),
    ("dit", "The DiT family: Wan-architecture teacher, student and pruned student",
     "`benchmarks/bench_dit.py` on the builtin DiT (`builtin-dit`, Wan2.1's architecture at the world's size, 9-frame clips "
     "with a lead-in frame the evaluator skips): the 50-step flow Euler + CFG teacher, its consistency student at 1, 2 and 4 "
     "steps and the VDMini-pruned student, 192 validation prompts on the held-out evaluator.", _dit),
    ("data", "Data preparation",
     "`turbo-edge data prepare` on FFmpeg test-pattern videos (H.264, MPEG-4, VP8) with one bad sample of each kind: "
     "throughput, the skipped samples, a SIGKILLed run's resume, and the world's mp4 round trip.", _data),
    ("ddp", "Data-parallel distillation: 2 processes against 1",
     "`turbo-edge distill --data` under `accelerate launch --num_processes 2` (gloo on the CPU) against 1 process at the "
     "same global batch: the loss curve's window means against the spread between 1-process runs of other seeds, and "
     "every run's read log audited (no sample read twice in an epoch, processes disjoint).", _ddp),
    ("hostile", "Hostile inputs: memory bounds and the case tables",
     "`data prepare`'s own peak RSS on inputs made to exhaust memory (a tar bomb, an 8000x8000 video, a billion-shard "
     "brace pattern), each under the bound or refused in one line, and the tally of the case tables the default test "
     "suite runs (data sources and DATA, checkpoints, output writers, config values, serving).", _hostile),
    ("bench", "Bench: per-stage latency, FLOPs and memory",
     "`turbo-edge bench`: each stage's median / p90 / min, its FLOPs (from the ONNX graph or PyTorch's FLOP counter) "
     "against the host's theoretical peak, end to end and videos per minute.", _bench),
]


def takes(family: str, stem: str) -> bool:
    """Whether result file ``stem`` belongs to ``family`` (``prune`` takes ``prune`` and ``prune_vnni``)."""
    return stem == family or stem.startswith(f"{family}_")
