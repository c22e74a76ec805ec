"""`turbo-edge bench`: a tiny student's bundle on ort-cpu and openvino (torch-free), the same student and the builtin
teacher in PyTorch eager, the JSON record, the report's rendering of it, the profile error and the lean import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from turbo_edge import cli

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_bundle(tiny_student_dir, tmp_path_factory) -> Path:
    from turbo_edge.export import export_bundle
    from turbo_edge.spec.configs import ExportConfig

    out = tmp_path_factory.mktemp("bench_bundles") / "student"
    export_bundle(tiny_student_dir, out, ExportConfig(model=str(tiny_student_dir), out=str(out), precisions=("fp32",),
                                                      openvino_check=False, threads=1))
    return out


@pytest.fixture(scope="module")
def bundle_record(tiny_bundle, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench_json") / "bench_tiny.json"
    rc = cli.main(["bench", "--bundle", str(tiny_bundle), "--backend", "ort,openvino", "--runs", "5", "--warmup", "2",
                   "--threads", "1", "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text())


def _stages(row: dict) -> dict:
    return {s["stage"]: s for s in row["stages"]}


def test_bundle_record_has_its_fields_and_they_agree(bundle_record):
    rec = bundle_record
    assert rec["command"].startswith("turbo-edge bench --bundle ") and rec["kind"] == "bench"
    assert {"cpu_model", "flags", "cores", "threads", "peak_gflops", "formula"} <= set(rec["machine"])
    assert rec["shapes"] == {"batch": 1, "frames": 4, "height": 16, "width": 16}  # the tiny model's own video
    assert [r["backend"] for r in rec["rows"]] == ["ort-cpu", "openvino"]
    for row in rec["rows"]:
        stages = _stages(row)
        assert list(stages) == ["text_encoder", "unet", "vae_decoder", "end_to_end"]
        assert stages["unet"]["calls"] == row["steps"] == 4 and stages["text_encoder"]["calls"] == 1  # no CFG: one prompt
        for s in stages.values():
            assert s["min_ms"] <= s["median_ms"] <= s["p90_ms"] and s["runs"] == 5
            assert s["gflop"] > 0 and s["achieved_gflops"] == pytest.approx(s["gflop"] / (s["median_ms"] / 1e3))
        for name in ("text_encoder", "unet", "vae_decoder"):
            s = stages[name]
            assert s["pct_of_peak"] == pytest.approx(100 * s["achieved_gflops"] / s["peak_gflops"])
            assert s["share_of_end_to_end"] == pytest.approx(s["median_ms"] * s["calls"] / row["end_to_end_ms"])
        e2e = stages["end_to_end"]
        assert row["end_to_end_source"] == "measured" and row["end_to_end_ms"] == e2e["median_ms"] == row["measured_ms"]
        assert e2e["gflop"] == pytest.approx(sum(stages[n]["gflop"] * stages[n]["calls"] for n in ("text_encoder", "unet", "vae_decoder")))
        assert row["composed_ms"] == pytest.approx(sum(stages[n]["median_ms"] * stages[n]["calls"] for n in ("text_encoder", "unet", "vae_decoder")))
        # composed / measured - 1 as the record defines it; how close the two come is the machine's load, not a behaviour
        # (wall time is a benchmark's to show, not a test's: under two busy workers the gap once passed the 60 % this allowed)
        assert row["composition_rel_diff"] == pytest.approx(row["composed_ms"] / row["measured_ms"] - 1.0)
        assert row["videos_per_min"] == pytest.approx(60_000 / row["end_to_end_ms"]) and row["peak_rss_mb"] > 50
        assert row["input_shapes"]["unet"]["sample"] == [1, 4, 4, 8, 8]
    unet = [_stages(r)["unet"]["gflop"] for r in rec["rows"]]
    assert unet[0] == unet[1]  # FLOPs are the graph's, whichever backend runs it


def test_onnx_flops_equal_the_torch_counter_on_the_same_model(bundle_record, tiny_student_dir):
    from turbo_edge.bench.model import bench_model
    from turbo_edge.spec.configs import BenchConfig

    row = bench_model(BenchConfig(model=str(tiny_student_dir), runs=1, warmup=0, e2e_runs=1, threads=1), "fp32", threads=1)
    torch_stages, onnx_stages = _stages(row), _stages(bundle_record["rows"][0])
    assert row["input_shapes"]["unet"] == bundle_record["rows"][0]["input_shapes"]["unet"]
    for name in ("unet", "vae_decoder", "text_encoder"):
        assert onnx_stages[name]["gflop"] == pytest.approx(torch_stages[name]["gflop"], rel=0.02), name
    assert row["end_to_end_source"] == "measured" and row["backend"] == "pytorch"


def test_teacher_figures_are_composed_and_checked_by_a_real_video(tmp_path):
    out = tmp_path / "teacher.json"
    rc = cli.main(["bench", "--model", "builtin", "--steps", "2", "--frames", "2", "--runs", "2", "--warmup", "1", "--threads", "1",
                   "--json", str(out)])
    assert rc == 0
    row = json.loads(out.read_text())["rows"][0]
    stages = _stages(row)
    assert row["model_kind"] == "teacher" and row["cfg"] and row["unet_rows"] == 2  # one CFG call: batch 2
    assert stages["text_encoder"]["calls"] == 2 and stages["unet"]["calls"] == 2  # prompts + empty prompt; 2 steps
    assert row["end_to_end_source"] == "composed from the stage medians" and row["end_to_end_ms"] == pytest.approx(row["composed_ms"])
    assert row["measured_runs"] == 1 and row["measured_ms"] > 0
    assert row["composition_rel_diff"] == pytest.approx(row["composed_ms"] / row["measured_ms"] - 1)
    assert stages["unet"]["gflop"] > 0 and row["input_shapes"]["unet"]["sample"][2] == 2


def test_shapes_outside_the_profile_are_one_line_naming_the_range(tiny_bundle, capsys):
    assert cli.main(["bench", "--bundle", str(tiny_bundle), "--frames", "40", "--runs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--frames 40 is outside the bundle's profile" in err and "frames 1-4" in err and "batch 1-2" in err
    assert cli.main(["bench", "--bundle", str(tiny_bundle), "--batch", "3", "--runs", "1"]) == 2
    assert "--batch 3 is outside" in capsys.readouterr().err
    assert cli.main(["bench", "--bundle", str(tiny_bundle), "--precision", "int8", "--runs", "1"]) == 2
    assert "no int8 UNet" in capsys.readouterr().err
    assert cli.main(["bench", "--bundle", str(tiny_bundle), "--precision", "bf16"]) == 2
    assert "bf16 is a PyTorch weights dtype" in capsys.readouterr().err


def test_a_gpu_backend_without_its_libraries_is_one_line(tiny_bundle, capsys):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has onnxruntime-gpu: ort-cuda would run")
    assert cli.main(["bench", "--bundle", str(tiny_bundle), "--backend", "ort-cuda", "--runs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ort-cuda needs onnxruntime-gpu" in err and "Traceback" not in err


def test_bench_bundle_imports_no_torch(tiny_bundle, tmp_path):
    out = tmp_path / "lean.json"
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import no_torch; import turbo_edge.cli as cli; "
            f"rc = cli.main(['bench', '--bundle', {str(tiny_bundle)!r}, '--runs', '1', '--warmup', '0', '--threads', '1', '--json', {str(out)!r}]); "
            "print([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules], rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[] 0"
    assert json.loads(out.read_text())["rows"][0]["stages"][1]["gflop"] > 0


def test_report_renders_the_bench_record(bundle_record, tmp_path):
    from turbo_edge.report import render_report
    from turbo_edge.report.results_page import render_results_page

    results = tmp_path / "results"
    results.mkdir()
    (results / "bench_tiny.json").write_text(json.dumps(bundle_record))
    summary = render_report(results, tmp_path / "report")
    md = Path(summary["report_md"]).read_text()
    assert "## bench: per-stage latency, FLOPs and memory" in md and "| bundle student openvino fp32 | unet | 4 |" in md
    plot = tmp_path / "report" / "plots" / "bench_tiny_stages.png"
    assert str(plot) in summary["plots"] and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = render_results_page(results)
    assert "## Bench: per-stage latency, FLOPs and memory" in page and "| bundle student ort-cpu fp32 | unet | 4 |" in page
    assert "Not shown" not in page


def test_bench_gives_one_row_per_decoder(tmp_path, capsys):
    from synthetic_bundles import SYN, make_synthetic_bundle

    bundle = make_synthetic_bundle(tmp_path / "b", "consistency", decoders=("full", "tiny"))
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--bundle", str(bundle), "--decoder", "full,tiny", "--runs", "2", "--warmup", "1", "--threads", "1",
                     "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["decoder"] for r in rows] == ["full", "tiny"] and rows[1]["row"].endswith("tiny decoder")
    f = SYN
    assert rows[1]["input_shapes"]["vae_decoder"]["latent"] == [1, f["channels"], f["frames"], f["lh"], f["lw"]]
    assert rows[0]["input_shapes"]["vae_decoder"]["latent"] == [f["frames"], f["channels"], f["lh"], f["lw"]]
    # FLOPs from each decoder's own graph at its own input: the synthetic variant runs the full one's 1x1 conv on each of
    # the clip's frames (its frame mix is elementwise), so one clip call costs what the per-frame calls cost together
    vae = [next(s for s in r["stages"] if s["stage"] == "vae_decoder") for r in rows]
    assert vae[0]["gflop"] > 0 and vae[1]["gflop"] == pytest.approx(vae[0]["gflop"])
    capsys.readouterr()
    assert cli.main(["bench", "--bundle", str(bundle), "--decoder", "pruned", "--runs", "1"]) == 2
    assert "no 'pruned' decoder; it has ['full', 'tiny']" in capsys.readouterr().err
