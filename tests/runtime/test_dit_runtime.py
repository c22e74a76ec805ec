"""The runtime on a DiT bundle without torch: hand-built graphs in the Wan export's layout (``export.dit``), and the whole
chain re-computed in plain numpy (tokenizer ids -> masked text encoder -> flow Euler + CFG over the manifest's sigmas
-> whole-clip causal decoder) to compare with ``Pipeline.generate``. Runs under ``pytest -p no_torch``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dit_bundles import (
    FACTOR,
    FRAMES,
    LH,
    LW,
    WORDS,
    make_dit_bundle,
    make_dit_range_bundle,
    reference_clip,
    reference_range_clip,
    reference_student_clip,
    student_contract,
    teacher_contract,
)

from turbo_edge.runtime import Pipeline, samplers
from turbo_edge.spec.errors import BundleError
from turbo_edge.spec.sampler import SamplerSpec, flow_tables


@pytest.fixture(scope="module")
def dit_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    return make_dit_bundle(tmp_path_factory.mktemp("dit") / "bundle", teacher_contract())


@pytest.mark.parametrize(("steps", "seed"), [(3, 0), (2, 7)])
def test_a_dit_bundle_generates_what_the_contract_says(dit_bundle, steps: int, seed: int) -> None:
    path, weights = dit_bundle
    pipe = Pipeline.from_bundle(path, backend="ort-cpu")
    got = pipe.generate("a red circle left", steps=steps, seed=seed)
    ids = [WORDS["a"], WORDS["red"], WORDS["circle"], WORDS["left"], 1]  # every word one piece, then </s>
    ref = reference_clip(weights, ids, steps, seed, 4.0)
    assert got.shape == ref.shape == (FRAMES, LH * FACTOR, LW * FACTOR, 3) and ref.std() > 10  # not a flat clip
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert np.array_equal(got[1], got[4]) and not np.array_equal(got[4], got[5])  # frames 1-4 from latent frame 1, 5-8 from 2


def test_a_batch_of_prompts_matches_one_prompt_alone(dit_bundle) -> None:
    pipe = Pipeline.from_bundle(dit_bundle[0], backend="ort-cpu")
    batch = pipe.run(["a red circle", "a left circle", "red"], seed=2).frames  # 2 prompts per transformer call: 2 chunks
    assert batch.shape == (3, FRAMES, LH * FACTOR, LW * FACTOR, 3)
    assert np.array_equal(batch[0], pipe.run(["a red circle"], seed=2).frames[0])  # prompt 0 draws stream 0 either way
    assert not np.array_equal(batch[0], batch[1]) and not np.array_equal(batch[1], batch[2])


# ------------------------------------------------------------------ the tiny decoder variant of a DiT bundle

IDS = [WORDS["a"], WORDS["red"], WORDS["circle"], WORDS["left"], 1]


@pytest.fixture(scope="module")
def dit_tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    return make_dit_bundle(tmp_path_factory.mktemp("dit") / "tiny", teacher_contract(), decoders=("full", "tiny"))


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_a_dit_bundle_decodes_with_its_tiny_decoder_as_the_contract_says(dit_tiny_bundle, backend: str) -> None:
    """``--decoder tiny``: the same sampled latents through the variant's graph, 1 + 4(f - 1) frames in the full decoder's
    order (the ramp over output frames shows a wrong order or a dropped first frame)."""
    path, weights = dit_tiny_bundle
    pipe = Pipeline.from_bundle(path, backend=backend, decoder="tiny")
    assert (pipe.decoder_name, pipe.decoder_component, pipe.decoder_layout) == ("tiny", "vae_decoder_tiny", "clip")
    got = pipe.generate("a red circle left", steps=3, seed=4)
    ref = reference_clip(weights, IDS, 3, 4, 4.0, decoder="tiny")
    assert got.shape == ref.shape == (FRAMES, LH * FACTOR, LW * FACTOR, 3) and ref.std() > 10
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    full = Pipeline.from_bundle(path, backend=backend).generate("a red circle left", steps=3, seed=4)  # the default: full
    assert np.abs(full.astype(int) - reference_clip(weights, IDS, 3, 4, 4.0).astype(int)).max() <= 1
    assert np.abs(full.astype(int) - got.astype(int)).mean() > 5  # another graph made these
    batch = pipe.run(["a red circle left", "red"], steps=3, seed=4).frames  # two clips in one variant call: each as alone
    assert batch.shape == (2, *got.shape) and np.array_equal(batch[0], got)


def test_generate_cli_takes_the_decoder_of_a_dit_bundle(dit_bundle, dit_tiny_bundle, tmp_path: Path, capsys) -> None:
    from turbo_edge.cli import main

    assert main(["generate", "a red circle left", "--bundle", str(dit_tiny_bundle[0]), "--decoder", "tiny", "--steps", "2",
                 "--out", str(tmp_path / "c.gif")]) == 0
    assert (tmp_path / "c.gif").stat().st_size > 0
    assert main(["generate", "a red circle left", "--bundle", str(dit_bundle[0]), "--decoder", "tiny", "--out", str(tmp_path / "d.gif")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no 'tiny' decoder; it has ['full']" in err[0] and not (tmp_path / "d.gif").exists()


def test_a_dit_bundle_without_the_tiny_decoder_refuses_it_in_one_line(dit_bundle, dit_tiny_bundle, tmp_path: Path) -> None:
    with pytest.raises(BundleError) as err:
        Pipeline.from_bundle(dit_bundle[0], decoder="tiny")
    message = str(err.value)
    assert "\n" not in message and "no 'tiny' decoder; it has ['full']" in message and "--decoder full,tiny" in message
    with pytest.raises(BundleError, match=r"no 'pruned' decoder; it has \['full', 'tiny'\]"):
        Pipeline.from_bundle(dit_tiny_bundle[0], decoder="pruned")
    only_tiny, weights = make_dit_bundle(tmp_path / "only_tiny", teacher_contract(), decoders=("tiny",))
    pipe = Pipeline.from_bundle(only_tiny)  # runnable without the full decoder: the default is there
    assert pipe.decoder_name == "tiny" and not (only_tiny / "vae_decoder.onnx").exists()
    assert np.abs(pipe.generate("a red circle left", steps=2, seed=1).astype(int)
                  - reference_clip(weights, IDS, 2, 1, 4.0, decoder="tiny").astype(int)).max() <= 1


def test_a_dit_bundles_full_decoder_has_the_video_layout_with_or_without_a_section(dit_bundle, dit_tiny_bundle) -> None:
    from turbo_edge.spec.bundle import load_bundle

    assert load_bundle(dit_bundle[0]).decoder() == ("full", "vae_decoder", "video")  # no section: read from the graph's rank
    assert load_bundle(dit_tiny_bundle[0]).decoder() == ("full", "vae_decoder", "video")
    assert load_bundle(dit_tiny_bundle[0]).decoders == (["full", "tiny"], "full")


def test_flow_euler_lands_on_x0_when_the_velocity_is_exact() -> None:
    """For the straight path x_sigma = (1 - sigma) x0 + sigma eps the velocity is (x - x0) / sigma; Euler on any sigma
    grid ending at 0 lands on x0 exactly, whatever the guidance (both halves agree)."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    _, sigmas = flow_tables(4, 3.0, 1000)
    state = {"i": 0}

    def model_fn(x: np.ndarray, t: float) -> np.ndarray:
        v = (x - x0) / sigmas[state["i"]]
        state["i"] += 1
        return np.concatenate([v, v]).astype(np.float32)

    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    out = samplers.flow_euler_cfg(model_fn, x, [s * 1000 for s in sigmas[:-1]], sigmas=sigmas, guidance=5.0)
    assert np.abs(out - x0).max() < 1e-5


def test_the_flow_contract_round_trips_and_refuses_what_it_cannot_be() -> None:
    spec = teacher_contract()
    again = SamplerSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.sigmas == spec.sigmas and again.uses_cfg
    assert isinstance(again.timesteps[3][1], float) and again.sigmas[3][-1] == 0.0
    assert spec.with_steps(4).sigmas[4] == flow_tables(4, 5.0, 1000)[1]  # a new step count from the shift
    bad = {k: v for k, v in spec.to_dict().items() if k != "flow_shift"}
    with pytest.raises(BundleError, match="disagree"):
        SamplerSpec.from_dict(bad)
    assert "parameterisation" not in spec.to_dict() and spec.parameterisation == "flow"  # main's form: flow is a shift
    no_sigmas = {**spec.to_dict(), "sigmas": {"3": spec.to_dict()["sigmas"]["3"]}}
    with pytest.raises(BundleError, match="sigmas table for every step count"):
        SamplerSpec.from_dict(no_sigmas)


@pytest.mark.parametrize(("steps", "seed"), [(1, 0), (2, 5), (4, 9)])
def test_a_flow_consistency_student_samples_what_the_contract_says(tmp_path: Path, steps: int, seed: int) -> None:
    """The student contract main's distiller writes for a flow teacher (kind consistency, flow_prediction, flow_shift,
    integer indices of the flow schedule): the runtime samples it as ``core.consistency.consistency_sample`` does."""
    student = student_contract()
    assert student.parameterisation == "flow" and not student.uses_cfg and student.alphas_cumprod is None
    path, weights = make_dit_bundle(tmp_path / "student", student)
    got = Pipeline.from_bundle(path).generate("a red circle left", steps=steps, seed=seed)
    ref = reference_student_clip(weights, [WORDS["a"], WORDS["red"], WORDS["circle"], WORDS["left"], 1], steps, seed)
    assert got.shape == ref.shape and ref.std() > 10
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


# ------------------------------------------------------------------ a bundle for a range of clip lengths (the "steps" decoder)


@pytest.fixture(scope="module")
def range_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    return make_dit_range_bundle(tmp_path_factory.mktemp("dit_range") / "bundle", teacher_contract())


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino"])
def test_a_range_bundle_generates_every_length_through_its_step_decoder(range_bundle, backend: str) -> None:
    """Clip lengths 5, 9 and 13 from one bundle: latent frame 0 through ``vae_decoder_first``, each later one through
    ``vae_decoder`` with the cache the call before returned (in numpy from the contract: ``reference_range_clip``)."""
    path, weights = range_bundle
    pipe = Pipeline.from_bundle(path, backend=backend)
    assert pipe.decoder_layout == "steps"
    for frames in (5, 9, 13):
        got = pipe.generate("a red circle left", steps=2, seed=4, frames=frames)
        ref = reference_range_clip(weights, IDS, 2, 4, 4.0, frames)
        assert got.shape == ref.shape == (frames, LH * FACTOR, LW * FACTOR, 3) and ref.std() > 10
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1, (backend, frames)
    assert pipe.generate("a red circle left", steps=2, seed=4).shape[0] == 9  # the bundle's default length
    batch = pipe.run(["a red circle", "red"], steps=2, seed=1, frames=13).frames  # two clips through one step binding
    assert np.array_equal(batch[0], pipe.run(["a red circle"], steps=2, seed=1, frames=13).frames[0])


def test_a_range_bundle_refuses_a_length_it_does_not_serve_in_one_line(range_bundle) -> None:
    from turbo_edge.spec.errors import RuntimeInputError

    pipe = Pipeline.from_bundle(range_bundle[0], backend="ort-cpu")
    with pytest.raises(RuntimeInputError, match=r"takes 1 \+ 4k frames \(5 to 13 frames in this bundle\), got 10$"):
        pipe.generate("a red circle", frames=10)
    with pytest.raises(RuntimeInputError, match="^frames 17 is outside this bundle's clip lengths, 5 to 13 frames; "):
        pipe.generate("a red circle", frames=17)


def test_a_steps_decoder_outside_a_schema_2_bundle_is_refused(range_bundle, tmp_path: Path) -> None:
    import shutil

    from turbo_edge.spec.bundle import load_bundle

    bad = tmp_path / "bad"
    shutil.copytree(range_bundle[0], bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    del manifest["components"]["vae_decoder_first"]
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match='"steps" layout, which only the full decoder of a schema 2 bundle with a vae_decoder_first'):
        load_bundle(bad, verify=False, runnable=False)
