"""``turbo-edge serve`` against the real tritonserver over loopback: frames equal the direct runtime's, bad requests get
the runtime's (or Triton's) one-line message and the server keeps serving, the written config matches the
manifest; and the command's own errors (no bundle, port taken, max-batch 0, no tritonserver) are one line each.

The server is the nvidia-pytriton wheel's tritonserver on loopback, started once for the module on free ports;
without ``turbo-edge[serve]`` installed the tests that need it skip."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import synthetic_bundles
from triton_inputs import triton_inputs as _inputs

from turbo_edge import cli
from turbo_edge.runtime import Pipeline
from turbo_edge.serve import ServeError, TritonInstall, TritonServer, config_pbtxt, free_port, write_repository
from turbo_edge.serve.handler import request_rows
from turbo_edge.serve.server import check_port_free
from turbo_edge.spec.bundle import load_bundle
from turbo_edge.spec.configs import ServeConfig

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "a red circle moving left"
SYN = synthetic_bundles.SYN
MAX_BATCH = 3
BATCH_DELAY_US = 20_000  # long enough that concurrent requests meet in one execute()
FRAMES = [SYN["frames"], SYN["lh"] * SYN["factor"], SYN["lw"] * SYN["factor"], 3]


@pytest.fixture(scope="session")
def serve_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic student bundle (consistency sampler, steps 1/2/4, guidance through the w-embedding)."""
    return synthetic_bundles.make_synthetic_bundle(tmp_path_factory.mktemp("bundles") / "serve_student", "consistency")


@pytest.fixture(scope="session")
def triton_install() -> TritonInstall:
    try:
        return TritonInstall.find()
    except ServeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def served(serve_bundle: Path, triton_install: TritonInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, ServeConfig]]:
    """tritonserver serving ``serve_bundle`` with two instances; stopped when the module's tests are done."""
    pytest.importorskip("tritonclient.http", reason="the tests talk to the server with tritonclient: pip install 'turbo-edge[serve]'")
    root = tmp_path_factory.mktemp("serve")
    cfg = ServeConfig(bundle=str(serve_bundle), repository=str(root / "repo"), instances=2, max_batch=MAX_BATCH,
                      batch_delay_us=BATCH_DELAY_US, port=free_port())
    write_repository(cfg)
    with TritonServer(cfg.repository, port=cfg.port, ready_timeout=120) as server:
        yield server, cfg
    assert server.process.returncode == 0, server.log_file.read_text()[-2000:]


@pytest.fixture(scope="module")
def client(served):
    import tritonclient.http as httpclient

    server, _ = served
    c = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), concurrency=4)
    yield c
    c.close()


@pytest.fixture(scope="module")
def direct(serve_bundle):
    pipe = Pipeline.from_bundle(serve_bundle)
    yield pipe
    pipe.close()


def _frames(client, model: str, *args, **kwargs) -> np.ndarray:
    return client.infer(model, _inputs(*args, **kwargs)).as_numpy("frames")


# ------------------------------------------------------------------ the written repository


def test_config_matches_the_manifest(served, client, serve_bundle):
    server, cfg = served
    text = (Path(cfg.repository) / cfg.model_name / "config.pbtxt").read_text()
    manifest = json.loads((serve_bundle / "manifest.json").read_text())
    video = manifest["video"]
    assert f"dims: [ {video['frames']}, {video['height']}, {video['width']}, 3 ]" in text
    assert f"max_batch_size: {MAX_BATCH}" in text and 'backend: "python"' in text and "kind: KIND_CPU" in text
    # What the server parsed from it.
    loaded = client.get_model_config(cfg.model_name)
    assert loaded["max_batch_size"] == MAX_BATCH and loaded["backend"] == "python"
    assert [list(map(int, o["dims"])) for o in loaded["output"]] == [[video["frames"], video["height"], video["width"], 3]] == [FRAMES]
    inputs = {i["name"]: (i["data_type"], list(map(int, i["dims"])), i.get("optional", False)) for i in loaded["input"]}
    assert inputs == {"prompt": ("TYPE_STRING", [1], False), "seed": ("TYPE_INT64", [1], True),
                      "steps": ("TYPE_INT32", [1], True), "guidance": ("TYPE_FP32", [1], True)}
    assert loaded["instance_group"][0]["count"] == 2 and "dynamic_batching" in loaded
    params = {k: v["string_value"] for k, v in loaded["parameters"].items()}
    assert params["bundle"] == str(serve_bundle.resolve()) and params["backend"] == "ort-cpu" and params["precision"] == "fp32"
    assert params["supported_steps"] == ",".join(map(str, manifest["sampler"]["supported_steps"]))
    assert (Path(cfg.repository) / cfg.model_name / "1" / "model.py").read_text() == (ROOT / "turbo_edge" / "serve" / "triton_model.py").read_text()


def test_gpu_backend_is_written_for_a_gpu_host_only(serve_bundle, tmp_path):
    with pytest.raises(ValueError, match="--write-only"):
        ServeConfig(bundle=str(serve_bundle), backend="tensorrt")
    cfg = ServeConfig(bundle=str(serve_bundle), backend="tensorrt", precision="fp16", write_only=True, repository=str(tmp_path))
    text = config_pbtxt(cfg, load_bundle(serve_bundle))
    assert 'key: "backend"\n  value: { string_value: "tensorrt" }' in text and 'string_value: "fp16"' in text


# ------------------------------------------------------------------ requests over loopback


def test_frames_equal_the_direct_runtime(served, client, direct):
    _, cfg = served
    cases = [(PROMPT, 0, None, None), ("a blue square moving up", 7, 2, None), (PROMPT, 123456789, 1, 4.5), ("a white diamond staying still", 2**62, 4, 0.0)]
    for prompt, seed, steps, guidance in cases:
        got = _frames(client, cfg.model_name, [prompt], [seed], None if steps is None else [steps], None if guidance is None else [guidance])
        want = direct.generate(prompt, steps=steps, seed=seed, guidance=guidance)
        assert got.shape == (1, *FRAMES) and got.dtype == np.uint8
        assert np.abs(got[0].astype(int) - want.astype(int)).max() <= 1, (prompt, seed, steps, guidance)
        assert np.array_equal(got[0], want)  # same graphs, same backend, same threads: bit-exact in practice
    # Seed left out: the bundle's default (0); different seeds give different clips.
    assert np.array_equal(client.infer(cfg.model_name, _inputs([PROMPT])).as_numpy("frames")[0], direct.generate(PROMPT, seed=0))
    assert not np.array_equal(_frames(client, cfg.model_name, [PROMPT], [1])[0], _frames(client, cfg.model_name, [PROMPT], [2])[0])


def test_a_batched_request_is_one_clip_per_row(served, client, direct):
    _, cfg = served
    prompts = [PROMPT, "a green triangle moving right", PROMPT]
    got = _frames(client, cfg.model_name, prompts, [5, 6, 7], [4, 2, 1])
    assert got.shape == (3, *FRAMES)
    for row, (prompt, seed, steps) in enumerate(zip(prompts, [5, 6, 7], [4, 2, 1])):
        assert np.array_equal(got[row], direct.generate(prompt, steps=steps, seed=seed))


def test_concurrent_requests_match_serial_ones(served, client, direct):
    _, cfg = served
    seeds = list(range(12))
    pending = [client.async_infer(cfg.model_name, _inputs([PROMPT], [s], [2])) for s in seeds]  # 4 in flight (the client's concurrency)
    for seed, request in zip(seeds, pending):
        assert np.array_equal(request.get_result().as_numpy("frames")[0], direct.generate(PROMPT, steps=2, seed=seed))


@pytest.mark.parametrize("inputs,message", [
    (dict(prompts=[""]), "empty prompt: describe the video"),
    (dict(prompts=["   "]), "empty prompt: describe the video"),
    (dict(prompts=[PROMPT], seeds=[0], steps=[3]), "steps=3 is not supported by this bundle; use one of [1, 2, 4]"),
    (dict(prompts=[PROMPT], seeds=[-1]), "seed must be an integer in [0, 2**63), got -1"),
    (dict(prompts=[PROMPT], seeds=[0], guidance=[float("nan")]), "guidance must be a finite number"),
    (dict(prompts=[PROMPT], seeds=[0], guidance=[101.0]), "guidance must be in [0, 100]"),
    (dict(prompts=["a red elephant dancing"]), "words this model was never trained on: 'elephant', 'dancing'; use only: "),
    (dict(prompts=[PROMPT], seeds=[1.5], seed_type="FP32"), "'seed'"),  # wrong dtype: Triton refuses it
    (dict(prompts=[PROMPT] * (MAX_BATCH + 1)), f"batch-size must be <= {MAX_BATCH}"),
    (dict(prompts=[PROMPT, ""], seeds=[0, 1]), "empty prompt"),  # one bad row fails its request
])
def test_a_bad_request_gets_a_clear_error_and_the_server_keeps_serving(served, client, direct, inputs, message):
    from tritonclient.utils import InferenceServerException

    _, cfg = served
    with pytest.raises(InferenceServerException) as caught:
        client.infer(cfg.model_name, _inputs(**inputs))
    text = caught.value.message()
    assert message in text and "\n" not in text and "Traceback" not in text, text
    assert caught.value.status() == "400", caught.value.status()  # the client's to fix: 4xx, never the server's 500
    if inputs.get("seed_type") == "FP32":
        assert "INT64" in text and "FP32" in text
    assert np.array_equal(_frames(client, cfg.model_name, [PROMPT], [9])[0], direct.generate(PROMPT, seed=9))


def test_bad_and_good_requests_in_one_dynamic_batch(served, client, direct):
    """Requests the batcher merges into one execute(): each gets its own answer."""
    from tritonclient.utils import InferenceServerException

    _, cfg = served

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics(cfg.model_name)["model_stats"][0]
        return int(stats["inference_stats"]["success"]["count"]) + int(stats["inference_stats"]["fail"]["count"]), int(stats["execution_count"])

    before = counts()
    prompts = [PROMPT if i % 3 else "" for i in range(9)]

    def outcome(request):
        try:
            return request.get_result().as_numpy("frames")[0]
        except InferenceServerException as exc:
            return exc.message()

    pending = [client.async_infer(cfg.model_name, _inputs([p], [i])) for i, p in enumerate(prompts)]
    for i, result in enumerate(map(outcome, pending)):
        if prompts[i]:
            assert isinstance(result, np.ndarray) and np.array_equal(result, direct.generate(PROMPT, seed=i))
        else:
            assert isinstance(result, str) and result.startswith("empty prompt")
    # Triton records a request's statistics after it has sent the response: read them once they have all landed
    # (a read right after the last response counted 8 of 9 once, under the full suite's load).
    deadline = time.monotonic() + 10
    while (after := counts())[0] - before[0] < len(prompts) and time.monotonic() < deadline:
        time.sleep(0.05)
    requests, executions = after[0] - before[0], after[1] - before[1]
    print("requests", requests, "executions", executions)
    assert requests == len(prompts) and executions < requests  # some execute() calls held several requests


def test_the_example_client_writes_a_gif(served, tmp_path):
    server, cfg = served
    out = tmp_path / "clip.gif"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "serve_client.py"), PROMPT, "--url", server.url.removeprefix("http://"),
                           "--seed", "3", "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 100 and "3 frames, 8x8" in proc.stdout
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "serve_client.py"), "", "--url", server.url.removeprefix("http://")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("serve_client: error: empty prompt")


def test_openvino_instances_serve_the_direct_runtimes_frames(serve_bundle, triton_install, tmp_path):
    import tritonclient.http as httpclient

    cfg = ServeConfig(bundle=str(serve_bundle), backend="openvino", repository=str(tmp_path / "repo"), port=free_port())
    write_repository(cfg)
    direct = Pipeline.from_bundle(serve_bundle, backend="openvino")
    with TritonServer(cfg.repository, port=cfg.port, ready_timeout=120) as server:
        c = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
        got = _frames(c, cfg.model_name, [PROMPT, PROMPT], [4, 5], [2, 4])
        c.close()
    for row, (seed, steps) in enumerate([(4, 2), (5, 4)]):
        assert np.array_equal(got[row], direct.generate(PROMPT, steps=steps, seed=seed))
    assert server.process.returncode == 0


# ------------------------------------------------------------------ the command's own errors (no server needed)


def _cli(capsys, *argv: str) -> tuple[int, str]:
    rc = cli.main(["serve", *argv])
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return rc, err


def test_missing_bundle_is_one_line(capsys, tmp_path):
    rc, err = _cli(capsys, "--bundle", str(tmp_path / "nope"), "--repository", str(tmp_path / "repo"), "--write-only")
    assert rc == 2 and "does not exist" in err and "turbo-edge export" in err
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("flag,value,message", [("--max-batch", "0", "--max-batch must be an integer in [1, 64], got 0"),
                                                ("--max-batch", "100000", "--max-batch must be an integer in [1, 64], got 100000"),
                                                ("--instances", "0", "--instances must be an integer in [1, 64]"),
                                                ("--port", "65535", "--port must be in [1, 65534]"),
                                                ("--model-name", "a/b", "--model-name must be")])
def test_bad_flags_are_one_line(capsys, serve_bundle, flag, value, message):
    rc, err = _cli(capsys, "--bundle", str(serve_bundle), flag, value, "--write-only")
    assert rc == 2 and message in err


def test_port_in_use_is_one_line(capsys, serve_bundle, triton_install, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, err = _cli(capsys, "--bundle", str(serve_bundle), "--repository", str(tmp_path / "repo"), "--port", str(port))
    assert rc == 2 and f"port {port} (HTTP) on 127.0.0.1 is not free" in err and "--port" in err


def test_tritonserver_not_installed_says_what_to_install(capsys, serve_bundle, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else find_spec(name, *a))
    with pytest.raises(ServeError, match=r"pip install 'turbo-edge\[serve\]'"):
        TritonInstall.find()
    rc, err = _cli(capsys, "--bundle", str(serve_bundle), "--repository", str(tmp_path / "repo"))
    assert rc == 2 and "tritonserver is not installed: pip install 'turbo-edge[serve]'" in err
    rc, err = _cli(capsys, "--bundle", str(serve_bundle), "--repository", str(tmp_path / "repo"), "--write-only")
    assert rc == 0  # writing the repository needs no server


def test_write_only_replaces_the_model_and_keeps_the_others(capsys, serve_bundle, tmp_path):
    repo = tmp_path / "repo"
    (repo / "other" / "1").mkdir(parents=True)
    for max_batch in ("2", "5"):
        rc = cli.main(["serve", "--bundle", str(serve_bundle), "--repository", str(repo), "--max-batch", max_batch, "--write-only"])
        assert rc == 0
    assert "max_batch_size: 5" in (repo / "turbo_edge" / "config.pbtxt").read_text()
    assert sorted(p.name for p in repo.iterdir()) == ["other", "turbo_edge"] and sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert capsys.readouterr().out.count("wrote") == 2


def test_serve_imports_only_spec_and_runtime_and_no_torch():
    import ast

    for file in (ROOT / "turbo_edge" / "serve").glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name.startswith("turbo_edge"):
                    assert name.startswith(("turbo_edge.spec", "turbo_edge.runtime", "turbo_edge.serve")), (file.name, name)
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import no_torch; "
            "import turbo_edge.serve, turbo_edge.serve.handler, turbo_edge.cli; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_a_malformed_request_is_refused_before_the_runtime():
    with pytest.raises(ValueError, match="no 'prompt' input"):
        request_rows({"prompt": None, "seed": np.zeros((1, 1), np.int64)})
    with pytest.raises(ValueError, match=r"input 'seed' has shape \[2, 1\]"):
        request_rows({"prompt": np.array([[b"a"]], dtype=object), "seed": np.zeros((2, 1), np.int64)})
    with pytest.raises(ValueError, match="row 0 is not UTF-8"):
        request_rows({"prompt": np.array([[b"\xff"]], dtype=object)})


# ------------------------------------------------------------------ the foreground command


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited (init reaps it)


def test_sigkilled_serve_takes_tritonserver_with_it(serve_bundle, triton_install, tmp_path):
    """kill -KILL of `turbo-edge serve` runs none of its handlers; the kernel's parent-death signal stops tritonserver."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "turbo_edge.cli", "serve", "--bundle", str(serve_bundle), "--repository", str(tmp_path / "repo"),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving turbo_edge"), line + proc.stderr.read()
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert children, "tritonserver is not running under serve"
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 60
        while any(map(_running, children)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_running, children)), "tritonserver outlived turbo-edge serve"
    finally:
        if proc.poll() is None:
            proc.kill()
    check_port_free("127.0.0.1", port, "HTTP")  # tritonserver let go of its ports: it did not outlive serve
    check_port_free("127.0.0.1", port + 1, "gRPC")


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["sigint_default", "sigint_ignored_by_parent"])
def test_serve_runs_in_the_foreground_until_ctrl_c(serve_bundle, triton_install, tmp_path, sigint_ignored):
    """Ctrl-C stops it, also when started with SIGINT ignored (a non-interactive shell's background job), where
    Python would install no KeyboardInterrupt handler of its own."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    proc = subprocess.Popen([sys.executable, "-m", "turbo_edge.cli", "serve", "--bundle", str(serve_bundle), "--repository", str(tmp_path / "repo"),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ignore)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving turbo_edge") and f"http://127.0.0.1:{port}/v2/models/turbo_edge/infer" in line, line + proc.stderr.read()
        assert "log:" in line and (tmp_path / "repo.tritonserver.log").is_file()  # quiet: the server's log went to the file
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.strip().splitlines()[-1] == "stopped" and err == "", err
    check_port_free("127.0.0.1", port, "HTTP")  # the server let go of its ports
    check_port_free("127.0.0.1", port + 1, "gRPC")


# ------------------------------------------------------------------ decoder variants (serve --decoder)


def test_serve_refuses_a_decoder_the_bundle_lacks_before_writing(capsys, serve_bundle, tmp_path):
    rc, err = _cli(capsys, "--bundle", str(serve_bundle), "--repository", str(tmp_path / "repo"), "--decoder", "tiny", "--write-only")
    assert rc == 2 and "no 'tiny' decoder; it has ['full']" in err and not (tmp_path / "repo").exists()


def test_tiny_decoder_instances_serve_the_direct_runtimes_frames(triton_install, tmp_path):
    import tritonclient.http as httpclient

    bundle = synthetic_bundles.make_synthetic_bundle(tmp_path / "tiny_bundle", "consistency", decoders=("full", "tiny"))
    cfg = ServeConfig(bundle=str(bundle), decoder="tiny", repository=str(tmp_path / "repo"), port=free_port())
    write_repository(cfg)
    assert 'key: "decoder"\n  value: { string_value: "tiny" }' in (tmp_path / "repo" / cfg.model_name / "config.pbtxt").read_text()
    tiny, full = (Pipeline.from_bundle(bundle, decoder=d).generate(PROMPT, steps=2, seed=4) for d in ("tiny", "full"))
    with TritonServer(cfg.repository, port=cfg.port, ready_timeout=120) as server:
        c = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
        got = _frames(c, cfg.model_name, [PROMPT], [4], [2])
        c.close()
    assert np.array_equal(got[0], tiny) and not np.array_equal(got[0], full)
    assert server.process.returncode == 0


# ------------------------------------------------------------------ cancellation (gRPC: Triton's HTTP endpoint does not propagate it)


def _slow_student_bundle(out: Path, steps: int = 200, width: int = 512, matmuls: int = 8) -> Path:
    """The synthetic student with ``steps`` sampling steps allowed and a UNet made slow on purpose: ``matmuls``
    [width, width] products of a matrix built from the sample, added times zero (the frames stay the fast graph's)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from turbo_edge.spec import param

    bundle = synthetic_bundles.make_synthetic_bundle(out, "consistency")
    model = onnx.load(bundle / "unet.onnx")
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["fast_out" if o == "out_sample" else o for o in node.output]
    graph.initializer.extend([numpy_helper.from_array(np.eye(width, dtype=np.float32), "slow_w"),
                              numpy_helper.from_array(np.array([width, width], np.int64), "slow_shape"),
                              numpy_helper.from_array(np.array(0.0, np.float32), "slow_zero")])
    nodes = [helper.make_node("ReduceMean", ["sample"], ["slow_s"], keepdims=0), helper.make_node("Expand", ["slow_s", "slow_shape"], ["slow_m0"])]
    nodes += [helper.make_node("MatMul", [f"slow_m{i}", "slow_w"], [f"slow_m{i + 1}"]) for i in range(matmuls)]
    nodes += [helper.make_node("ReduceMean", [f"slow_m{matmuls}"], ["slow_r"], keepdims=0), helper.make_node("Mul", ["slow_r", "slow_zero"], ["slow_z"]),
              helper.make_node("Add", ["fast_out", "slow_z"], ["out_sample"])]
    graph.node.extend(nodes)
    del graph.value_info[:]
    assert graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    onnx.checker.check_model(model)
    onnx.save(model, bundle / "unet.onnx")
    manifest = json.loads((bundle / "manifest.json").read_text())
    sampler = manifest["sampler"]
    sampler["supported_steps"] = [*sampler["supported_steps"], steps]
    sampler["timesteps"][str(steps)] = [int(t) for t in param.ddim_timesteps(1000, steps)]
    manifest["files"]["unet.onnx"] = hashlib.sha256((bundle / "unet.onnx").read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return bundle


def test_a_request_its_grpc_client_cancels_stops_inside_its_video_and_the_instance_serves_on(triton_install, tmp_path):
    """An abandoned request must free its instance within one denoiser call: the slow bundle's 200-step video is
    cancelled after a second and stops inside its row (the server's log says after how many of its 200 calls); the one
    instance then answers the request queued behind it."""
    grpcclient = pytest.importorskip("tritonclient.grpc", reason="gRPC cancellation needs tritonclient[grpc]: pip install 'turbo-edge[serve]'")
    bundle = _slow_student_bundle(tmp_path / "slow")
    cfg = ServeConfig(bundle=str(bundle), repository=str(tmp_path / "repo"), instances=1, max_batch=1, threads=1, port=free_port())
    write_repository(cfg)

    def inputs(steps: int) -> list:
        arrays = (("prompt", np.array([[PROMPT.encode()]], dtype=object), "BYTES"), ("steps", np.array([[steps]], np.int32), "INT32"))
        out = []
        for name, array, datatype in arrays:
            out.append(grpcclient.InferInput(name, list(array.shape), datatype))
            out[-1].set_data_from_numpy(array)
        return out

    for wait_s in (1.5, 3.0, 6.0):
        with TritonServer(cfg.repository, port=cfg.port, ready_timeout=120) as server:
            c = grpcclient.InferenceServerClient(url=server.grpc_url)
            ctx = c.async_infer(cfg.model_name, inputs(200), callback=lambda result, error: None)
            time.sleep(wait_s)  # the request is inside its video now (200 slow denoiser calls, seconds)
            ctx.cancel()
            frames = c.infer(cfg.model_name, inputs(2)).as_numpy("frames")  # queued behind it on the one instance
            stats = c.get_inference_statistics(cfg.model_name, as_json=True)["model_stats"][0]["inference_stats"]
            c.close()
        executed = int(stats["success"]["count"]) + int(stats.get("fail", {}).get("count", 0))
        if executed == 2:
            break
        # 1: the cancel reached the request while Triton still held it in its queue (a loaded machine was slow to
        # start it), so it never ran; try again with a longer wait. A request that ran to its end counts here too.
    assert executed == 2, stats
    found = re.search(r"turbo-edge: the request was cancelled by its client in row 1 of 1: cancelled after (\d+) of 200 denoiser calls",
                      server.log_file.read_text())
    assert found and 1 <= int(found.group(1)) < 200, server.log_file.read_text()[-2000:]
    direct = Pipeline.from_bundle(bundle, threads=1)
    assert np.array_equal(frames[0], direct.generate(PROMPT, steps=2, seed=0))
    assert server.process.returncode == 0
