"""`turbo-edge report`: results JSON in, report.md + index.html + PNG plots (+ copied GIFs) out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageStat

from turbo_edge import cli
from turbo_edge.report import ReportError, render_report
from turbo_edge.report.render import format_value

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")

# Shaped like `turbo-edge demo`'s demo.json, extra per-row keys included; numbers chosen so that their rounded form
# (four significant digits, whole numbers from 1000 up) is exactly the string the tests look for.
DEMO_ROWS = [
    {"row": "teacher 50-step CFG", "stage": "teacher", "backend": "pytorch", "precision": "fp32", "steps": 50,
     "latency_ms": 9364.2, "speedup": 1.0, "content_acc": 0.4583, "motion_acc": 0.125, "fd": 311.7, "peak_rss_mb": 524.3},
    {"row": "student 4-step", "stage": "student", "backend": "pytorch", "precision": "fp32", "steps": 4,
     "latency_ms": 412.7, "speedup": 22.69, "content_acc": 0.3958, "motion_acc": 0.2917, "fd": 402.5, "peak_rss_mb": 498.1},
    {"row": "student 4-step", "stage": "student", "backend": "onnxruntime", "precision": "fp16", "steps": 4,
     "latency_ms": 233.9, "speedup": 40.03, "content_acc": 0.3542, "motion_acc": 0.2708, "fd": 415.2, "peak_rss_mb": 371.6},
    {"row": "pruned 4-step", "stage": "pruned", "backend": "openvino", "precision": "int8", "steps": 4,
     "latency_ms": 98.41, "speedup": 95.15, "content_acc": 0.3125, "motion_acc": 0.2292, "fd": 455.8, "peak_rss_mb": 322.4},
    {"row": "pruned 4-step", "stage": "pruned", "backend": "cpp-openvino", "precision": "int8", "steps": 4,
     "latency_ms": 95.37, "speedup": 98.19, "content_acc": None, "motion_acc": None, "fd": None, "peak_rss_mb": 280.9},
]
EXPECTED_CELLS = [
    ["teacher 50-step CFG", "teacher", "pytorch", "fp32", "50", "9364", "1", "0.4583", "0.125", "311.7", "524.3"],
    ["student 4-step", "student", "pytorch", "fp32", "4", "412.7", "22.69", "0.3958", "0.2917", "402.5", "498.1"],
    ["student 4-step", "student", "onnxruntime", "fp16", "4", "233.9", "40.03", "0.3542", "0.2708", "415.2", "371.6"],
    ["pruned 4-step", "pruned", "openvino", "int8", "4", "98.41", "95.15", "0.3125", "0.2292", "455.8", "322.4"],
    ["pruned 4-step", "pruned", "cpp-openvino", "int8", "4", "95.37", "98.19", "—", "—", "—", "280.9"],
]


def _demo_json() -> dict:
    rows = [dict(r, n_videos=8, achieved_gflops=1.5 + i, source=f"/models/{r['stage']}",
                 clips={"a red circle moving left": f"/tmp/x/{i}.gif"}, stage_latency_ms={"unet": 10.0} if i else None)
            for i, r in enumerate(DEMO_ROWS)]  # the demo writes stage_latency_ms null for PyTorch rows
    stages = [{"row": f"{r['row']} {r['backend']} {r['precision']}", "text_encoder_ms": 3.1 + i, "unet_step_ms": 180.0 / (i + 1),
               "vae_ms": 12.5} for i, r in enumerate(DEMO_ROWS)]
    return {"command": "turbo-edge demo --preset quick", "machine": {"platform": "Linux-test", "cpus": 2, "threads": 2},
            "seconds": 612.4, "rows": rows, "stage_latency": stages, "config": {"kind": "demo", "preset": "quick"}}


def _export_json() -> dict:
    """The structure of benchmarks/results/export.json, with fewer entries."""
    parity = {"unet": {"fp32": {"max_abs": 1.49e-06, "mean_rel": 8.05e-07, "tolerance": 0.001, "passed": True, "metric": "max_abs"},
                       "int8": {"max_abs": 0.08394, "mean_rel": 0.03744, "tolerance": 0.25, "passed": True, "metric": "mean_rel"}}}
    parity_ov = {"unet": {"bf16": {"max_abs": 0.05776, "mean_rel": 0.02607, "tolerance": 0.05, "passed": False, "metric": "max_abs",
                                   "points": {"min": {"max_abs": 0.0181}}}}}
    return {
        "command": "python benchmarks/bench_export.py --model builtin --threads 2 --runs 20", "model": "builtin", "threads": 2,
        "machine": {"platform": "Linux-test", "cpus": 2, "loadavg_at_start": [1.37, 1.76, 2.64]},
        "unet_latency": [
            {"backend": "pytorch_eager", "precision": "fp32", "median_ms": 202.3, "p90_ms": 207.5, "min_ms": 127.4},
            {"backend": "onnxruntime", "precision": "fp32", "median_ms": 115.0, "p90_ms": 122.9, "min_ms": 107.4},
            {"backend": "openvino", "precision": "int8", "median_ms": 97.94, "p90_ms": 101.3, "min_ms": 88.11},
        ],
        "speedups": {"pytorch_eager / onnxruntime_fp32": 1.759, "openvino_fp32 / openvino_int8": 0.7035},
        "parity": parity, "parity_openvino": parity_ov,
    }


CONFUSION = [[1, 2, 0, 0, 0], [3, 1, 0, 0, 0], [0, 0, 2, 2, 0], [0, 0, 1, 3, 0], [0, 0, 0, 0, 7]]


def _teacher_json() -> dict:
    """The structure of benchmarks/results/teacher.json (bench_teacher.py), two rows."""
    row = {"content_acc": 0.9792, "colour_acc": 1.0, "shape_acc": 0.9583, "motion_acc": 0.3333, "direction_acc": 0.2381,
           "consistency": 0.9512, "fd": 275.3, "n_videos": 24, "steps": 50, "guidance": 3.0, "model": "builtin",
           "prompts": "val", "seconds_per_video": 5.312, "motion_confusion": CONFUSION}
    truth = dict(row, model="groundtruth", guidance=None, motion_acc=1.0, direction_acc=1.0, motion_confusion=[[1] * 5] * 5)
    return {"command": "python benchmarks/bench_teacher.py --model builtin --num 24", "threads": 2, "rows": [truth, row]}


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    (d / "demo.json").write_text(json.dumps(_demo_json()))
    (d / "export.json").write_text(json.dumps(_export_json()))
    (d / "teacher.json").write_text(json.dumps(_teacher_json()))
    (d / "misc.json").write_text(json.dumps({"command": "turbo-edge eval --model builtin", "content_acc": 0.4583,
                                             "n_videos": 48, "per_prompt": [{"p": 1}]}))
    (d / "demo_config.json").write_text(json.dumps({"kind": "demo", "version": 1}))  # not a results file: no command
    return d


@pytest.fixture()
def clips_dir(tmp_path: Path) -> Path:
    """index.json in the demo's layout, two rows x two prompts, one GIF missing."""
    d = tmp_path / "demo_out"
    prompts = ["a red circle moving left", "a white square staying still"]
    rows: dict[str, dict[str, str]] = {}
    for r, row in enumerate(["teacher 50-step CFG pytorch fp32", "pruned 4-step openvino int8"]):
        rows[row] = {}
        for p, prompt in enumerate(prompts):
            rel = f"clips/h{r}/{p:02d}.gif"
            rows[row][prompt] = rel
            if (r, p) == (1, 1):
                continue  # listed in the index, never written
            frames = [Image.fromarray(np.full((32, 32, 3), (40 * r + 10 * f, 200 - 60 * p, 90), np.uint8)) for f in range(4)]
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            frames[0].save(d / rel, save_all=True, append_images=frames[1:], duration=125, loop=0)
    (d / "index.json").write_text(json.dumps({"prompts": prompts, "rows": rows}))
    return d


def _md_table_row(markdown: str, first_cells: list[str]) -> list[str]:
    prefix = "| " + " | ".join(first_cells) + " |"
    lines = [line for line in markdown.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"expected one table line starting {prefix!r}, found {lines}"
    return [c.strip() for c in lines[0].strip("|").split(" | ")]


def test_format_value_rounding():
    assert [format_value(v) for v in (9364.2, 202.27, 1.75855, 0.70347, 1.1921e-06, 0, 3549860, True, None, [2, 16])] == \
        ["9364", "202.3", "1.759", "0.7035", "1.19e-06", "0", "3549860", "yes", "—", "2, 16"]


def test_demo_table_has_every_row_and_its_numbers(results_dir, tmp_path):
    summary = render_report(results_dir, tmp_path / "out")
    markdown = Path(summary["report_md"]).read_text()
    page = Path(summary["index_html"]).read_text()
    for expected in EXPECTED_CELLS:
        assert _md_table_row(markdown, expected[:4]) == expected
        assert "".join(f"<td{' class=num' if i >= 4 else ''}>{c}</td>" for i, c in enumerate(expected)) in page
    assert summary["demo_rows"] == 5
    # extra scalar per-row figures land in their own table; dicts (clips, stage_latency_ms) are not dumped into it
    assert _md_table_row(markdown, ["pruned 4-step", "8", "5.5"])[-1] == "/models/pruned"
    assert "stage_latency_ms" not in markdown and "/tmp/x/0.gif" not in markdown
    # stage latency table, machine figures, the demo's command
    assert _md_table_row(markdown, ["student 4-step onnxruntime fp16"]) == ["student 4-step onnxruntime fp16", "5.1", "60", "12.5"]
    assert "| platform | Linux-test |" in markdown and "`turbo-edge demo --preset quick`" in markdown


def test_export_unet_latency_speedups_parity(results_dir, tmp_path):
    markdown = Path(render_report(results_dir, tmp_path / "out")["report_md"]).read_text()
    assert _md_table_row(markdown, ["onnxruntime", "fp32"]) == ["onnxruntime", "fp32", "115", "122.9", "107.4"]
    assert _md_table_row(markdown, ["openvino", "int8"]) == ["openvino", "int8", "97.94", "101.3", "88.11"]
    assert "| pytorch_eager / onnxruntime_fp32 | 1.759 |" in markdown
    assert _md_table_row(markdown, ["unet", "int8"]) == ["unet", "int8", "0.08394", "0.03744", "0.25", "yes", "mean_rel"]
    assert _md_table_row(markdown, ["unet", "bf16"]) == ["unet", "bf16", "0.05776", "0.02607", "0.05", "no", "max_abs"]
    assert "| loadavg_at_start | 1.37, 1.76, 2.64 |" in markdown


def test_unknown_and_non_results_files(results_dir, tmp_path):
    summary = render_report(results_dir, tmp_path / "out")
    markdown = Path(summary["report_md"]).read_text()
    assert summary["sources"] == ["demo.json", "teacher.json", "export.json", "misc.json"]  # demo first, then by family
    assert summary["skipped"] == ["demo_config.json"] and "skipped: `demo_config.json`" in markdown
    misc = markdown[markdown.index("## misc"):]
    assert "`turbo-edge eval --model builtin`" in misc
    assert "| content_acc | 0.4583 |" in misc and "| n_videos | 48 |" in misc
    assert "not shown: `per_prompt`" in misc


def test_teacher_rows_and_motion_confusion(results_dir, tmp_path):
    markdown = Path(render_report(results_dir, tmp_path / "out")["report_md"]).read_text()
    teacher = markdown[markdown.index("## teacher: held-out evaluator"):markdown.index("## export")]
    assert _md_table_row(teacher, ["builtin", "val"]) == ["builtin", "val", "50", "3", "0.9792", "1", "0.9583", "0.3333", "0.2381",
                                                          "0.9512", "275.3", "5.312"]
    assert "motion confusion: builtin on val prompts" in teacher
    assert "motion confusion: groundtruth" not in teacher  # the anchors' matrices are diagonal by construction
    assert _md_table_row(teacher, ["left"]) == ["left", "1", "2", "0", "0", "0"]
    assert _md_table_row(teacher, ["still"]) == ["still", "0", "0", "0", "0", "7"]


def test_teacher_probe_rows(tmp_path):
    d = tmp_path / "results"
    d.mkdir()
    rows = [{"t": 925, "snr": 0.01342, "mse_true_prompt": 0.2511, "gap_direction": 0.02214, "gap_colour": 1.321,
             "gap_uncond": 0.4603, "direction_acc": 0.4062}]
    (d / "teacher_probe.json").write_text(json.dumps({"command": "turbo-edge teacher probe --model builtin", "num": 32, "rows": rows}))
    markdown = Path(render_report(d, tmp_path / "out")["report_md"]).read_text()
    assert "## teacher: denoising-loss probe" in markdown
    assert _md_table_row(markdown, ["925"]) == ["925", "0.01342", "0.2511", "0.02214", "1.321", "0.4603", "0.4062"]
    (d / "teacher_probe.json").write_text(json.dumps({"command": "x", "rows": [dict(rows[0], gap_direction="big")]}))
    with pytest.raises(ReportError, match="gap_direction"):
        render_report(d, tmp_path / "out2")


def test_plots_are_real_pngs(results_dir, tmp_path):
    summary = render_report(results_dir, tmp_path / "out")
    names = sorted(Path(p).name for p in summary["plots"])
    assert names == ["demo_latency_quality.png", "demo_stage_latency.png", "export_unet_latency.png"]
    markdown = Path(summary["report_md"]).read_text()
    page = Path(summary["index_html"]).read_text()
    for path in map(Path, summary["plots"]):
        assert path.parent == tmp_path / "out" / "plots"
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
        with Image.open(path) as img:
            assert img.width >= 600 and img.height >= 200
            assert max(ImageStat.Stat(img.convert("L")).stddev) > 10  # drawn on, not one flat colour
        assert f"](plots/{path.name})" in markdown and f'src="plots/{path.name}"' in page


def test_missing_optional_files_and_empty_dir(tmp_path):
    only_prune = tmp_path / "r1"
    only_prune.mkdir()
    shutil.copy(Path(__file__).parents[2] / "benchmarks" / "results" / "prune.json", only_prune)
    summary = render_report(only_prune, tmp_path / "o1")
    markdown = Path(summary["report_md"]).read_text()
    assert summary["plots"] == [] and summary["sources"] == ["prune.json"]
    prune = json.loads((only_prune / "prune.json").read_text())
    assert _md_table_row(markdown, ["student"])[1] == format_value(prune["student"]["median_ms"])
    empty = tmp_path / "r2"
    empty.mkdir()
    summary = render_report(empty, tmp_path / "o2")
    assert "no results file" in Path(summary["report_md"]).read_text() and summary["rows"] == 0


def test_malformed_json_names_the_file(results_dir, tmp_path):
    (results_dir / "distill.json").write_text('{"command": "turbo-edge distill", "loss": 0.5,\n')
    with pytest.raises(ReportError, match=r"distill\.json: not valid JSON: .* line 2"):
        render_report(results_dir, tmp_path / "out")
    assert not (tmp_path / "out" / "report.md").exists()
    (results_dir / "distill.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match=r"distill\.json: expected a JSON object"):
        render_report(results_dir, tmp_path / "out")


def test_demo_row_with_a_non_number_is_refused(tmp_path):
    demo = _demo_json()
    demo["rows"][2]["latency_ms"] = "fast"
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    with pytest.raises(ReportError, match=r"demo\.json: rows\[2\] \(student 4-step\): `latency_ms` must be a number"):
        render_report(tmp_path, tmp_path / "out")


def test_clips_are_copied_and_shown_side_by_side(results_dir, clips_dir, tmp_path):
    out = tmp_path / "out"
    summary = render_report(results_dir, out, clips_dir=clips_dir)
    assert len(summary["clips"]) == 3
    page = (out / "index.html").read_text()
    markdown = (out / "report.md").read_text()
    index = json.loads((clips_dir / "index.json").read_text())
    for copied in map(Path, summary["clips"]):
        assert copied.parent == out / "clips" and copied.read_bytes()[:6] == b"GIF89a"
        assert f'src="clips/{copied.name}"' in page and f"](clips/{copied.name})" in markdown
    sources = [clips_dir / rel for by_prompt in index["rows"].values() for rel in by_prompt.values() if (clips_dir / rel).exists()]
    assert sorted(p.read_bytes() for p in sources) == sorted(Path(p).read_bytes() for p in summary["clips"])
    # per prompt, one table: the row names as headers, every row's GIF (or "(missing)") side by side
    still = page[page.index("<caption>a white square staying still</caption>"):]
    still = still[:still.index("</table>")]
    assert "<th>teacher 50-step CFG pytorch fp32</th><th>pruned 4-step openvino int8</th>" in still
    assert still.count("<img ") == 1 and "(missing)" in still
    assert page.index('id="clips"') < page.index('id="teacher-held-out-evaluator"')  # the videos follow the demo table


def test_cli_dry_run_prints_config_and_writes_nothing(capsys, results_dir, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["report", "--results", str(results_dir), "--out", str(out), "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg == {"kind": "report", "version": 1, "results": str(results_dir), "clips": None, "out": str(out), "page": None}
    assert not out.exists()


def test_cli_writes_the_report(capsys, results_dir, clips_dir, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["report", "--results", str(results_dir), "--clips", str(clips_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == [f"wrote {out / 'report.md'}", f"wrote {out / 'index.html'}"]
    assert f"wrote {out / 'plots' / 'demo_latency_quality.png'}" in printed
    assert printed[-1] == f"copied 3 clips to {out}/clips"
    assert (out / "report.md").is_file() and (out / "index.html").is_file()
    (results_dir / "prune.json").write_text("{oops")
    assert cli.main(["report", "--results", str(results_dir), "--out", str(out)]) == 2
    assert "prune.json: not valid JSON" in capsys.readouterr().err


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser check needs /usr/bin/chromium (Debian: apt-get install chromium)")
def test_page_renders_in_headless_chromium(results_dir, clips_dir, tmp_path):
    out = tmp_path / "out"
    render_report(results_dir, out, clips_dir=clips_dir)
    url = (out / "index.html").resolve().as_uri()
    shot = tmp_path / "page.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", url)
    assert shot.is_file() and shot.read_bytes()[:8] == PNG_MAGIC
    with Image.open(shot) as img:
        assert img.size == (1200, 1600)
        assert max(ImageStat.Stat(img.convert("L")).stddev) > 20  # text, tables and plots, not a blank page
    dom = _chromium(tmp_path, "--dump-dom", url).stdout
    assert "<td>teacher 50-step CFG</td>" in dom and "<td class=\"num\">9364</td>" in dom
    assert "<td>onnxruntime</td><td>fp16</td>" in dom


def test_cli_writes_the_results_page(capsys, results_dir, tmp_path):
    page = tmp_path / "docs" / "results.md"
    assert cli.main(["report", "--results", str(results_dir), "--out", str(tmp_path / "out"), "--page", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    assert page.read_text().startswith("# ") and "do not edit by hand" in page.read_text()
