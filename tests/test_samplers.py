"""Samplers and the CFG denoiser on toy problems with a closed-form optimal denoiser (no training)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from largo.diffusion import Denoiser, ImageNoise, NoiseSchedule, sample
from largo.diffusion.samplers import ddim_std
from largo.errors import LargoError

MU, STD = 0.3, 0.5
SHAPE = (256, 1, 4, 4)  # 4096 scalar samples per run


class GaussianNet(nn.Module):
    """The exact denoiser for data ~ N(mu_y, STD²) per pixel, answering as `prediction`.

    mu_y = MU + 0.1·y for real classes and MU for the null class. A float64 parameter makes the Denoiser call it
    in float64. Counts forward calls and remembers batch sizes.
    """

    def __init__(self, sched: NoiseSchedule, prediction: str = "eps", num_classes: int = 0):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.sched, self.prediction, self.num_classes = sched, prediction, num_classes
        self.batches: list[int] = []

    def forward(self, x, t, y):
        self.batches.append(x.shape[0])
        abar = self.sched.alpha_bar(t.double()).reshape(-1, 1, 1, 1)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        mu = MU + 0.1 * torch.where(y == self.num_classes, 0, y).double().reshape(-1, 1, 1, 1)
        var = abar * STD**2 + 1 - abar
        x0 = mu + a * STD**2 * (x - a * mu) / var
        eps = s * (x - a * mu) / var
        return {"eps": eps, "x0": x0, "v": a * eps - s * x0}[self.prediction]


def _denoiser(prediction="eps", kind="linear", ztsnr=False, **kw):
    sched = NoiseSchedule.make(kind, zero_terminal_snr=ztsnr)
    return Denoiser(GaussianNet(sched, prediction, kw.pop("num_classes", 0)), sched, prediction, **kw)


# (sampler, steps, relative tolerance on the std, extra args): tolerances follow each sampler's discretisation
# error at that NFE on this problem (sharp around σ ≈ STD), plus ~2 % sampling error. (Respaced DDPM with few
# steps is known to under-disperse with β̃, so it is only checked on the full grid.)
SLOW = pytest.mark.slow  # DDPM's 1000 steps: the other samplers cover the fast set
CASES = [pytest.param("ddpm", 1000, 0.04, {}, marks=SLOW),
         pytest.param("ddpm", 1000, 0.04, {"ddpm_variance": "beta"}, marks=SLOW), ("ddim", 100, 0.05, {}),
         ("ddim", 100, 0.05, {"eta": 0.5}), ("dpmpp2m", 25, 0.05, {}), ("dpmpp3m", 25, 0.05, {}),
         ("euler", 200, 0.04, {}), ("heun", 79, 0.04, {})]


@pytest.mark.parametrize("sampler,steps,tol,extra", CASES)
def test_recovers_gaussian_data(sampler, steps, tol, extra):
    x = sample(_denoiser(), SHAPE, None, sampler=sampler, steps=steps, device="cpu", **extra)
    assert x.dtype == torch.float32 and x.shape == SHAPE
    assert abs(x.mean().item() - MU) < 0.03
    assert abs(x.std().item() / STD - 1) < tol


@pytest.mark.parametrize("prediction", ["x0", "v"])
@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m", "heun"])
def test_targets_agree(prediction, sampler):
    ref = sample(_denoiser("eps"), (8, 1, 2, 2), None, sampler=sampler, steps=20, device="cpu")
    out = sample(_denoiser(prediction), (8, 1, 2, 2), None, sampler=sampler, steps=20, device="cpu")
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_zero_terminal_snr_needs_v_or_x0():
    x = sample(_denoiser("v", ztsnr=True), SHAPE, None, sampler="dpmpp2m", steps=25, device="cpu")
    assert abs(x.mean().item() - MU) < 0.03 and abs(x.std().item() / STD - 1) < 0.06
    with pytest.raises(LargoError, match="zero SNR"):
        sample(_denoiser("eps", ztsnr=True), (2, 1, 2, 2), None, sampler="ddim", steps=10, device="cpu")


def test_ddim_eta1_is_ddpm_posterior():
    sched = NoiseSchedule.make("cosine", timesteps=100)
    for t in range(1, 100):  # per-step variance on the full grid = β̃_t
        a_t, a_prev = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[t - 1])
        beta_tilde = (1 - a_prev) / (1 - a_t) * float(sched.betas[t])
        assert math.isclose(ddim_std(a_t, a_prev, 1.0) ** 2, beta_tilde, rel_tol=1e-9)
    # And the whole chain: same seeds → the same images, on the full grid and on a respaced one.
    den = Denoiser(GaussianNet(sched), sched, "eps")
    for steps in (100, 10):
        ddim = sample(den, (4, 1, 3, 3), None, sampler="ddim", eta=1.0, steps=steps, device="cpu")
        ddpm = sample(den, (4, 1, 3, 3), None, sampler="ddpm", steps=steps, device="cpu")
        torch.testing.assert_close(ddim, ddpm, atol=1e-6, rtol=0)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp3m", "heun"])
def test_image_independent_of_batch(sampler):
    den = _denoiser()
    kw = dict(sampler=sampler, steps=12, eta=0.7, device="cpu")
    four = sample(den, (4, 1, 3, 3), None, seeds=[0, 1, 2, 3], **kw)
    first = sample(den, (2, 1, 3, 3), None, seeds=[0, 1], **kw)
    second = sample(den, (2, 1, 3, 3), None, seeds=[2, 3], **kw)
    assert torch.equal(four, torch.cat([first, second]))
    assert torch.equal(four, sample(den, (4, 1, 3, 3), None, **kw))  # default seeds = range(B)


@pytest.mark.parametrize("sampler,steps,expected", [("ddim", 7, 7), ("dpmpp2m", 5, 5), ("euler", 6, 6),
                                                     ("heun", 9, 5), ("heun", 10, 5)])
def test_trajectory(sampler, steps, expected):
    den = _denoiser()
    x, traj = sample(den, (3, 1, 2, 2), None, sampler=sampler, steps=steps, device="cpu", return_trajectory=True)
    assert len(traj) == expected
    for rec in traj:
        assert set(rec) == {"t", "x_t", "x0_hat"} and isinstance(rec["t"], float)
        assert rec["x_t"].dtype == torch.float32 and rec["x_t"].device.type == "cpu" and rec["x_t"].shape == x.shape
    assert [r["t"] for r in traj] == sorted((r["t"] for r in traj), reverse=True)
    torch.testing.assert_close(traj[-1]["x0_hat"], x)  # the last step lands on the last x0 estimate
    if sampler == "heun":  # NFE budget: 2k - 1 evaluations for k intervals
        assert len(den.net.batches) == 2 * expected - 1


def test_cfg_scale_one_is_the_conditional_pass():
    den = _denoiser(num_classes=5, cfg_scale=1.0)
    x, y = torch.randn(6, 1, 2, 2, dtype=torch.float64), torch.arange(6) % 5
    out = den(x, 500, y)
    assert den.net.batches == [6]
    a, s = den.schedule.alpha(500), den.schedule.sigma(500)
    eps = den.net(x, torch.full((6,), 500.0), y)
    torch.testing.assert_close(out.eps, eps, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.x0, (x - s * eps) / a, atol=1e-12, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_cfg_one_batched_pass_and_interval(prediction):
    den = _denoiser(prediction, num_classes=5, cfg_scale=3.0, cfg_interval=(100, 600))
    x, y = torch.randn(4, 1, 2, 2, dtype=torch.float64), torch.tensor([0, 1, 4, 2])
    plain = _denoiser("eps", num_classes=5)
    cond, uncond = plain(x, 300, y), plain(x, 300, torch.full_like(y, 5))
    out = den(x, 300, y)
    assert den.net.batches == [8]  # cond + uncond in ONE forward
    torch.testing.assert_close(out.eps, uncond.eps + 3.0 * (cond.eps - uncond.eps), atol=1e-10, rtol=0)
    torch.testing.assert_close(out.x0, uncond.x0 + 3.0 * (cond.x0 - uncond.x0), atol=1e-10, rtol=0)
    outside = den(x, 800, y)  # outside the interval: the plain conditional prediction, one pass of 4
    assert den.net.batches[-1] == 4
    torch.testing.assert_close(outside.eps, plain(x, 800, y).eps, atol=1e-10, rtol=0)


def test_cfg_zero_is_one_unconditional_pass():
    den = _denoiser("v", num_classes=5, cfg_scale=0.0, cfg_interval=(100, 600))
    x, y = torch.randn(4, 1, 2, 2, dtype=torch.float64), torch.tensor([0, 1, 4, 2])
    plain = _denoiser("v", num_classes=5)
    out = den(x, 300, y)
    assert den.net.batches == [4]  # not the batched pair: w = 0 needs no conditional prediction
    torch.testing.assert_close(out.x0, plain(x, 300, torch.full_like(y, 5)).x0, atol=1e-12, rtol=0)
    torch.testing.assert_close(den(x, 800, y).x0, plain(x, 800, y).x0, atol=1e-12, rtol=0)  # outside: conditional


def test_unconditional_checkpoint_rejects_guidance():
    with pytest.raises(LargoError, match="unconditional"):
        _denoiser(num_classes=0, cfg_scale=2.0)


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=1001), dict(eta=-0.1), dict(sampler="plms"),
                                    dict(spacing="uniform"), dict(ddpm_variance="learned"), dict(seeds=[1])])
def test_bad_arguments(kwargs):
    with pytest.raises(LargoError):
        sample(_denoiser(), (2, 1, 2, 2), None, device="cpu", **kwargs)


def test_bad_prediction():
    with pytest.raises(LargoError):
        _denoiser("score")


def test_image_noise_is_per_image():
    a = ImageNoise([5, 9], (2, 2), "cpu").draw()
    b = ImageNoise([9], (2, 2), "cpu").draw()
    assert a.dtype == torch.float64 and torch.equal(a[1:], b)
