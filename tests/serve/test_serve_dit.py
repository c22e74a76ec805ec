"""``turbo-edge serve`` of a DiT bundle (the synthetic one of ``tests/dit_bundles.py``: flow Euler + CFG, the UMT5 mask,
the whole-clip causal decoder, and a tiny decoder variant) on the real tritonserver over loopback: the config from its
manifest, and frames equal to the direct runtime's, with the bundle's default decoder and with ``--decoder tiny`` (a
second model of the same repository, one server); and the range bundle of ``tests/dit_bundles.py`` (clip lengths 5 to
13) as a third model, each request's ``num_frames`` its clip length. Skips without ``turbo-edge[serve]``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dit_bundles import FACTOR, FRAMES, LH, LW, make_dit_bundle, make_dit_range_bundle, teacher_contract
from triton_inputs import triton_inputs

from turbo_edge.runtime import Pipeline
from turbo_edge.serve import ServeError, TritonInstall, TritonServer, free_port, write_repository
from turbo_edge.spec.configs import ServeConfig

PROMPT = "a red circle left"
TINY_MODEL = "turbo_edge_tiny"
ROOT = Path(__file__).resolve().parents[2]
RANGE_MODEL = "turbo_edge_range"


@pytest.fixture(scope="module")
def dit_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, ServeConfig, Path]]:
    pytest.importorskip("tritonclient.http", reason="the tests talk to the server with tritonclient: pip install 'turbo-edge[serve]'")
    try:
        TritonInstall.find()
    except ServeError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("serve_dit")
    bundle, _ = make_dit_bundle(root / "bundle", teacher_contract(), decoders=("full", "tiny"))
    cfg = ServeConfig(bundle=str(bundle), repository=str(root / "repo"), instances=1, max_batch=2, port=free_port())
    write_repository(cfg)
    write_repository(cfg.replace(model_name=TINY_MODEL, decoder="tiny"))  # the same bundle decoding with its tiny decoder
    make_dit_range_bundle(root / "range_bundle", teacher_contract())
    # The batcher waits up to 0.3 s to fill a batch of 2, so requests in flight share execute() calls.
    write_repository(cfg.replace(model_name=RANGE_MODEL, bundle=str(root / "range_bundle"), batch_delay_us=300_000))
    with TritonServer(cfg.repository, port=cfg.port, ready_timeout=120) as server:
        yield server, cfg, bundle
    assert server.process.returncode == 0, server.log_file.read_text()[-2000:]


def test_a_dit_bundle_is_served_with_the_direct_runtimes_frames(dit_served) -> None:
    import tritonclient.http as httpclient

    server, cfg, bundle = dit_served
    config = (Path(cfg.repository) / cfg.model_name / "config.pbtxt").read_text()
    assert f"dims: [ {FRAMES}, {LH * FACTOR}, {LW * FACTOR}, 3 ]" in config
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        prompts, seeds, steps = [PROMPT, "a red circle"], [3, 11], [2, 3]
        inputs = []
        for name, array, dtype in (("prompt", np.array([[p.encode()] for p in prompts], dtype=object), "BYTES"),
                                   ("seed", np.array([[s] for s in seeds], dtype=np.int64), "INT64"),
                                   ("steps", np.array([[s] for s in steps], dtype=np.int32), "INT32")):
            tensor = httpclient.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        got = client.infer(cfg.model_name, inputs).as_numpy("frames")
    finally:
        client.close()
    direct = Pipeline.from_bundle(bundle)
    assert got.shape == (2, FRAMES, LH * FACTOR, LW * FACTOR, 3)
    for row, (prompt, seed, n) in enumerate(zip(prompts, seeds, steps)):
        assert np.array_equal(got[row], direct.generate(prompt, steps=n, seed=seed))


def test_a_dit_bundle_is_served_with_its_tiny_decoder(dit_served) -> None:
    import tritonclient.http as httpclient

    server, cfg, bundle = dit_served
    config = (Path(cfg.repository) / TINY_MODEL / "config.pbtxt").read_text()
    assert f"dims: [ {FRAMES}, {LH * FACTOR}, {LW * FACTOR}, 3 ]" in config  # the full decoder's clip: 1 + 4(f - 1) frames
    assert 'key: "decoder"\n  value: { string_value: "tiny" }' in config
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    try:
        inputs = []
        for name, array, dtype in (("prompt", np.array([[PROMPT.encode()]], dtype=object), "BYTES"),
                                   ("seed", np.array([[3]], dtype=np.int64), "INT64"), ("steps", np.array([[2]], dtype=np.int32), "INT32")):
            tensor = httpclient.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        got = client.infer(TINY_MODEL, inputs).as_numpy("frames")
    finally:
        client.close()
    tiny, full = (Pipeline.from_bundle(bundle, decoder=d).generate(PROMPT, steps=2, seed=3) for d in ("tiny", "full"))
    assert got.shape == (1, FRAMES, LH * FACTOR, LW * FACTOR, 3)
    assert np.array_equal(got[0], tiny) and not np.array_equal(got[0], full)


def test_a_range_bundle_serves_each_requests_clip_length(dit_served) -> None:
    """Requests at different lengths, several in flight (so the batcher merges some into one execute()), each get the
    direct runtime's frames at their length; a length the bundle does not serve is the runtime's one line, HTTP 400."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    server, cfg, _ = dit_served
    bundle = Path(cfg.repository).parent / "range_bundle"
    config = (Path(cfg.repository) / RANGE_MODEL / "config.pbtxt").read_text()
    assert f"dims: [ -1, {LH * FACTOR}, {LW * FACTOR}, 3 ]" in config
    assert 'name: "num_frames"\n    data_type: TYPE_INT32\n    dims: [ 1 ]\n    optional: true' in config
    assert "num_frames" not in (Path(cfg.repository) / cfg.model_name / "config.pbtxt").read_text()  # a single-length bundle: no input
    direct = Pipeline.from_bundle(bundle)
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), concurrency=4)
    try:
        def executions() -> int:
            return int(client.get_inference_statistics(RANGE_MODEL)["model_stats"][0]["execution_count"])

        loaded = client.get_model_config(RANGE_MODEL)  # what the server parsed
        assert [list(map(int, o["dims"])) for o in loaded["output"]] == [[-1, LH * FACTOR, LW * FACTOR, 3]]
        assert [(i["data_type"], i.get("optional", False)) for i in loaded["input"] if i["name"] == "num_frames"] == [("TYPE_INT32", True)]
        before = executions()
        lengths = [5, 13, 5, 13, 9, 0]
        pending = [client.async_infer(RANGE_MODEL, triton_inputs([PROMPT], [seed], [2], num_frames=[n])) for seed, n in enumerate(lengths)]
        for seed, (n, request) in enumerate(zip(lengths, pending)):
            got = request.get_result().as_numpy("frames")
            assert got.shape == (1, n or FRAMES, LH * FACTOR, LW * FACTOR, 3)
            assert np.array_equal(got[0], direct.generate(PROMPT, steps=2, seed=seed, frames=n or None)), (seed, n)
        assert executions() - before < len(lengths)  # some execute() calls held requests of different lengths
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / "serve_client.py"), PROMPT, "--url", server.url.removeprefix("http://"),
                               "--model", RANGE_MODEL, "--steps", "2", "--frames", "13"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and f"frames [13, {LH * FACTOR}, {LW * FACTOR}, 3] uint8" in proc.stdout, proc.stderr
        default = client.infer(RANGE_MODEL, triton_inputs([PROMPT, "a red circle"], [3, 4], [2, 2])).as_numpy("frames")  # no num_frames
        assert default.shape == (2, FRAMES, LH * FACTOR, LW * FACTOR, 3)
        assert np.array_equal(default[1], direct.generate("a red circle", steps=2, seed=4))
        for lengths, bad in (([10], 10), ([17], 17)):
            with pytest.raises(ValueError) as err:
                direct.generate(PROMPT, steps=2, frames=bad)
            with pytest.raises(InferenceServerException) as caught:
                client.infer(RANGE_MODEL, triton_inputs([PROMPT], [0], [2], num_frames=lengths))
            assert caught.value.message() == str(err.value) and caught.value.status() == "400"
        with pytest.raises(InferenceServerException) as caught:  # one request, rows of two lengths: one [B, F, H, W, 3] cannot hold them
            client.infer(RANGE_MODEL, triton_inputs([PROMPT, PROMPT], [0, 1], [2, 2], num_frames=[5, 9]))
        assert caught.value.message().startswith("the rows of one request ask for different num_frames [5, 9]")
        assert caught.value.status() == "400"
    finally:
        client.close()
