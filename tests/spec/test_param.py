import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from turbo_edge.spec import param


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_alphas_cumprod_matches_diffusers(schedule):
    cfg = {"num_train_timesteps": 1000, "beta_schedule": schedule, "beta_start": 0.00085, "beta_end": 0.012}
    ours = param.alphas_cumprod(cfg)
    theirs = DDIMScheduler(**cfg).alphas_cumprod.double().numpy()
    assert np.allclose(ours, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ptype", param.PREDICTION_TYPES)
def test_prediction_conversions_round_trip(ptype):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 2, 5, 5, generator=g), torch.randn(3, 4, 2, 5, 5, generator=g)
    abar = np.array([0.9, 0.5, 0.05])
    a, s = (torch.from_numpy(v).float() for v in param.alpha_sigma(abar))
    if ptype == "flow_prediction":  # flow matching's own schedule: alpha = 1 - sigma
        a, s = (torch.from_numpy(v[[100, 500, 950]]).float() for v in param.flow_schedule(1000, 3.0))
    x_t = param.add_noise(x0, eps, a, s)
    target = param.target_for(ptype, x0, eps, a, s)
    rx0, reps = param.to_x0_eps(ptype, target, x_t, a, s)
    assert torch.allclose(rx0, x0, atol=1e-4) and torch.allclose(reps, eps, atol=1e-4)


def test_min_snr_weight_caps_low_noise_steps():
    abar = np.array([0.999, 0.5, 0.001])
    w = param.min_snr_weight(abar, 5.0, "v_prediction")
    snr = abar / (1 - abar)
    assert w[0] == pytest.approx(5.0 / (snr[0] + 1))
    assert w[1] == pytest.approx(snr[1] / (snr[1] + 1))


def test_boundary_scalings_at_zero():
    c_skip, c_out = param.boundary_scalings(np.array([0.0, 999.0]))
    assert c_skip[0] == 1.0 and c_out[0] == 0.0
    assert c_skip[1] < 1e-6 and c_out[1] == pytest.approx(1.0, abs=1e-6)


def test_ddim_timesteps_match_diffusers_trailing():
    sched = DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    for steps in (1, 4, 50):
        sched.set_timesteps(steps)
        assert param.ddim_timesteps(1000, steps).tolist() == sched.timesteps.tolist()
    with pytest.raises(ValueError, match="steps must be"):
        param.ddim_timesteps(1000, 0)


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_consistency_timesteps_match_diffusers_lcm(steps):
    from diffusers import LCMScheduler

    sched = LCMScheduler(num_train_timesteps=1000, original_inference_steps=50)
    sched.set_timesteps(steps)
    assert param.consistency_timesteps(1000, 50, steps).tolist() == sched.timesteps.tolist()


def test_guidance_embedding_matches_diffusers_lcm():
    from diffusers import LatentConsistencyModelPipeline

    w = torch.tensor([2.0, 7.5])
    ref = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=32)
    # diffusers computes in float32 (args up to 7500 rad); ours in float64, so they differ by ~3e-5.
    assert np.allclose(param.guidance_embedding(w.numpy(), 32), ref.numpy(), atol=2e-4)


def test_min_snr_plus_one_keeps_unit_weight_at_pure_noise():
    abar = np.array([0.999, 0.5, 1e-6])
    snr = abar / (1 - abar)
    w = param.min_snr_weight(abar, 5.0, "v_prediction", plus_one=True)
    assert w[0] == pytest.approx(6.0 / (snr[0] + 1))
    assert w[1] == pytest.approx((snr[1] + 1) / (snr[1] + 1))
    assert w[2] == pytest.approx(1.0, abs=1e-5)
    # the plain min-SNR weight vanishes there
    assert param.min_snr_weight(abar, 5.0, "v_prediction")[2] < 1e-5


def test_flow_prediction_in_alpha_sigma_form_is_the_flow_euler_step():
    """With alpha = 1 - sigma, DDIM's x_s = alpha_s x0 + sigma_s eps (x0, eps from the velocity) is x_t + (sigma_s - sigma_t) v."""
    import numpy as np

    from turbo_edge.spec import param

    alpha, sigma = param.flow_schedule(1000, 3.0)
    assert np.allclose(alpha + sigma, 1.0) and sigma[-1] == 1.0 and np.all(np.diff(sigma) > 0)
    rng = np.random.default_rng(0)
    x0, eps, v = rng.standard_normal((3, 2, 4, 3, 2, 2))
    t, s = np.array([900, 400]), np.array([500, 100])
    x_t = param.add_noise(x0, eps, alpha[t], sigma[t])
    assert np.allclose(param.target_for("flow_prediction", x0, eps, alpha[t], sigma[t]), eps - x0)
    back_x0, back_eps = param.to_x0_eps("flow_prediction", eps - x0, x_t, alpha[t], sigma[t])
    assert np.allclose(back_x0, x0) and np.allclose(back_eps, eps)
    x0_hat, eps_hat = param.to_x0_eps("flow_prediction", v, x_t, alpha[t], sigma[t])
    ddim = param.add_noise(x0_hat, eps_hat, alpha[s], sigma[s])
    euler = x_t + (sigma[s] - sigma[t]).reshape(-1, 1, 1, 1, 1) * v
    assert np.allclose(ddim, euler)


def test_flow_sigmas_match_diffusers_flow_match_euler():
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    from turbo_edge.spec import param

    for shift in (1.0, 3.0, 7.0):
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
        for steps in (1, 2, 4, 50):
            scheduler.set_timesteps(steps)
            np.testing.assert_allclose(param.flow_sigmas(steps, shift), scheduler.sigmas.numpy(), atol=1e-6)
        fresh = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)  # its training sigmas, descending
        np.testing.assert_allclose(param.flow_schedule(1000, shift)[1], fresh.sigmas.numpy()[::-1], atol=1e-6)
