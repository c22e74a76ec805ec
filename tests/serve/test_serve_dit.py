"""``turbo-edge serve`` of a DiT bundle (the synthetic one of ``tests/dit_bundles.py``: flow Euler + CFG, the UMT5 mask,
the whole-clip causal decoder, and a tiny decoder variant) on the real tritonserver over loopback: the config from its
manifest, and frames equal to the direct runtime's, with the bundle's default decoder and with ``--decoder tiny`` (a
second model of the same repository, one server). Skips without ``turbo-edge[serve]``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dit_bundles import FACTOR, FRAMES, LH, LW, make_dit_bundle, teacher_contract

from turbo_edge.runtime import Pipeline
from turbo_edge.serve import ServeError, TritonInstall, TritonServer, free_port, write_repository
from turbo_edge.spec.configs import ServeConfig

PROMPT = "a red circle left"
TINY_MODEL = "turbo_edge_tiny"


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
