"""Our DDPM / DDIM / DPM-Solver++ trajectories against diffusers' schedulers, in float64, same model, same noise.

The "model" is a fixed deterministic function of (x, t), read as ε or as v. To compare update formulas rather than
float32 rounding, diffusers' float32 tables (betas, ᾱ, DPM's σ grid) are replaced by our float64 ones after we
check they agree to float32 precision.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

diffusers = pytest.importorskip("diffusers")
from diffusers.schedulers import scheduling_ddpm  # noqa: E402

from largo.diffusion import Denoiser, ImageNoise, NoiseSchedule, sample  # noqa: E402

# diffusers' DPM scheduler calls np.array on a tensor, which numpy 2 flags; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

T = 1000
SHAPE = (2, 1, 2, 3)
SEEDS = [11, 12]
THEIR_KIND = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
THEIR_PRED = {"eps": "epsilon", "v": "v_prediction"}


def toy_model(x: torch.Tensor, t: float) -> torch.Tensor:
    return 0.1 * x + math.sin(t / 100)


class ToyNet(nn.Module):
    num_classes = 0

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))  # → called in float64

    def forward(self, x, t, y):
        return 0.1 * x + torch.sin(t.double() / 100).reshape(-1, 1, 1, 1)


def _ours(kind, prediction, **kw):
    sched = NoiseSchedule.make(kind, timesteps=T)
    x, traj = sample(Denoiser(ToyNet(), sched, prediction), SHAPE, None, seeds=SEEDS, device="cpu",
                     return_trajectory=True, **kw)
    return sched, [r["x_t"].double() for r in traj] + [x.double()], [r["t"] for r in traj]


def _use_float64_tables(theirs, sched: NoiseSchedule) -> None:
    torch.testing.assert_close(theirs.alphas_cumprod.double(), sched.alphas_cumprod, atol=1e-6, rtol=1e-5)
    theirs.betas = sched.betas.clone()
    theirs.alphas = 1.0 - sched.betas
    theirs.alphas_cumprod = sched.alphas_cumprod.clone()


def _compare(ours, theirs):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b.double(), atol=1e-5, rtol=1e-5, msg=lambda m: f"step {i}: {m}")


def _run(scheduler, step_kwargs):
    """Drive a diffusers scheduler from the same initial noise; returns the states x_t, …, x_0 and the grid."""
    noise = step_kwargs.pop("noise")
    x = noise.draw()
    states = [x]
    for i, t in enumerate(scheduler.timesteps):
        kwargs = {k: (v(i) if callable(v) else v) for k, v in step_kwargs.items()}
        x = scheduler.step(toy_model(x, float(t)), t, x, **kwargs).prev_sample
        states.append(x)
    return states


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
# Deliberate difference: on a trailing grid the last step starts at t > 0 and diffusers adds β-variance noise
# on it ("fixed_large"); we never add noise on the step that lands on x0. So (trailing, beta) is not compared.
@pytest.mark.parametrize("spacing,variance", [("leading", "beta_tilde"), ("linspace", "beta_tilde"),
                                              ("trailing", "beta_tilde"), ("leading", "beta"), ("linspace", "beta")])
def test_ddpm(kind, prediction, spacing, variance, monkeypatch):
    steps = 37  # not a divisor of T: DDPMScheduler steps to the next grid point, as we do
    sched, ours, grid = _ours(kind, prediction, sampler="ddpm", steps=steps, spacing=spacing,
                              ddpm_variance=variance)
    theirs = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=THEIR_KIND[kind],
                                     prediction_type=THEIR_PRED[prediction], timestep_spacing=spacing,
                                     variance_type={"beta_tilde": "fixed_small", "beta": "fixed_large"}[variance],
                                     clip_sample=False)  # we clamp nothing by default
    _use_float64_tables(theirs, sched)
    theirs.set_timesteps(steps)
    assert [float(t) for t in theirs.timesteps] == grid
    noise = ImageNoise(SEEDS, SHAPE[1:], "cpu")
    # DDPMScheduler draws its own noise; hand it the same per-image stream (initial draw first, then per step).
    step_noise = ImageNoise(SEEDS, SHAPE[1:], "cpu")
    step_noise.draw()
    monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda *a, **k: step_noise.draw())
    _compare(ours, _run(theirs, {"noise": noise}))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim(kind, prediction, spacing, eta):
    # DDIMScheduler takes the previous step as t - T // steps rather than the next grid point, so it agrees with
    # us only where the grid is evenly spaced by T // steps: leading/trailing with steps dividing T. (On other
    # grids, e.g. "linspace", diffusers' DDIM evaluates ᾱ off-grid; we use the next grid point.)
    steps = 50
    sched, ours, grid = _ours(kind, prediction, sampler="ddim", steps=steps, spacing=spacing, eta=eta)
    theirs = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule=THEIR_KIND[kind],
                                     prediction_type=THEIR_PRED[prediction], timestep_spacing=spacing,
                                     clip_sample=False,  # we clamp nothing by default
                                     set_alpha_to_one=True,  # our last step lands on ᾱ = 1 (clean data)
                                     steps_offset=0)  # our "leading" grid ends at t = 0
    _use_float64_tables(theirs, sched)
    theirs.set_timesteps(steps)
    assert [float(t) for t in theirs.timesteps] == grid
    noise = ImageNoise(SEEDS, SHAPE[1:], "cpu")
    step_noise = ImageNoise(SEEDS, SHAPE[1:], "cpu")
    step_noise.draw()

    def variance_noise(i):  # we draw on every step but the last (whose DDIM std is 0)
        return step_noise.draw() if eta > 0 and i < steps - 1 else None

    _compare(ours, _run(theirs, {"noise": noise, "eta": eta, "variance_noise": variance_noise}))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("order,steps", [(2, 10), (2, 20), (3, 10), (3, 20)])
def test_dpmpp_multistep(kind, prediction, order, steps):
    # Only "trailing": DPMSolverMultistepScheduler builds its "leading"/"linspace" grids from steps + 1 points
    # (dropping the last), unlike DDIM/DDPM, whose definition we follow.
    sched, ours, grid = _ours(kind, prediction, sampler=f"dpmpp{order}m", steps=steps, spacing="trailing")
    theirs = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T, beta_schedule=THEIR_KIND[kind], prediction_type=THEIR_PRED[prediction],
        algorithm_type="dpmsolver++", solver_order=order, solver_type="midpoint", timestep_spacing="trailing",
        lower_order_final=True, final_sigmas_type="zero", thresholding=False)
    _use_float64_tables(theirs, sched)
    theirs.set_timesteps(steps)
    assert [float(t) for t in theirs.timesteps] == grid
    # set_timesteps casts its σ grid to float32; use the float64 one.
    theirs.sigmas = torch.cat([sched.sigmas[theirs.timesteps], torch.zeros(1, dtype=torch.float64)])
    _compare(ours, _run(theirs, {"noise": ImageNoise(SEEDS, SHAPE[1:], "cpu")}))
