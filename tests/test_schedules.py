"""Noise schedules, ε/x0/v conversions and the training loss (toy tensors only)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from largo.config import DiffusionConfig
from largo.diffusion import NoiseSchedule, convert, diffusion_loss, training_target
from largo.errors import LargoError

KINDS = ("linear", "cosine", "sigmoid")


class ToyNet(nn.Module):
    """A 1x1 conv plus a t/y-dependent bias: enough to exercise the loss; remembers the last labels."""

    def __init__(self, channels: int = 1, num_classes: int = 10, out_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(channels, channels, 1)
        self.emb = nn.Embedding(num_classes + 1, channels)
        self.out_dtype = out_dtype
        self.last_y: torch.Tensor | None = None
        self.last_t: torch.Tensor | None = None

    def forward(self, x, t, y):
        self.last_y, self.last_t = y, t
        out = self.conv(x) + self.emb(y)[:, :, None, None] + torch.sin(t / 100)[:, None, None, None]
        return out.to(self.out_dtype)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_closed_form_matches_iterated_forward_process(kind):
    torch.manual_seed(0)
    sched = NoiseSchedule.make(kind, timesteps=50)
    x0 = torch.tensor([-0.8, 0.0, 0.6], dtype=torch.float64).repeat(8000, 1)
    x = x0.clone()
    for t in range(50):
        beta = sched.betas[t]
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn_like(x)  # q(x_t | x_{t-1})
        if t in (0, 9, 30, 49):
            mean, std = sched.alpha(t) * x0[0], sched.sigma(t)
            assert torch.allclose(x.mean(0), mean, atol=4 * std / math.sqrt(len(x)) + 1e-4)
            assert torch.allclose(x.std(0), std.expand(3), rtol=0.03)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [10, 1000])
def test_alpha_bar_strictly_decreasing_in_unit_interval(kind, T):
    abar = NoiseSchedule.make(kind, timesteps=T).alphas_cumprod
    assert abar.dtype == torch.float64 and abar.shape == (T,)
    assert bool((abar > 0).all() and (abar <= 1).all())
    assert bool((abar[1:] < abar[:-1]).all())


@pytest.mark.parametrize("kind", KINDS)
def test_zero_terminal_snr(kind):
    plain = NoiseSchedule.make(kind, timesteps=100)
    sched = NoiseSchedule.make(kind, timesteps=100, zero_terminal_snr=True)
    abar = sched.alphas_cumprod
    assert abar[-1] == 0 and bool((abar[:-1] > 0).all()) and bool((abar[1:] < abar[:-1]).all())
    assert torch.isclose(abar[0], plain.alphas_cumprod[0], rtol=1e-12)
    assert sched.log_snr(99) == -math.inf and sched.alpha(99) == 0 and sched.sigma(99) == 1
    # Float timesteps next to the terminal step: no nan; strictly between neighbours on the λ line.
    lam = sched.log_snr(torch.tensor([98.0, 98.5, 99.0]))
    assert not bool(lam.isnan().any()) and lam[2] == -math.inf and lam[1] == -math.inf
    x0 = torch.ones(2, 1, 2, 2)
    noise = torch.randn_like(x0)
    assert torch.equal(sched.q_sample(x0, torch.tensor([99, 99]), noise), noise)
    assert math.isfinite(sched.sigma_max) and bool((sched.sigmas[1:] > sched.sigmas[:-1]).all())


def test_float_timesteps_interpolate_log_snr():
    sched = NoiseSchedule.make("cosine", timesteps=1000)
    ints = torch.tensor([0, 17, 500, 999])
    assert torch.equal(sched.alpha(ints.double()), sched.alpha(ints))
    lam = sched.log_snr(torch.tensor([17.25]))
    expected = 0.75 * sched.log_snrs[17] + 0.25 * sched.log_snrs[18]
    assert torch.allclose(lam, expected.reshape(1), atol=1e-10)
    # sigma_to_t inverts the interpolation: α(t(σ)) = 1/sqrt(1+σ²).
    sig = torch.tensor([0.05, 1.0, 7.3, 300.0], dtype=torch.float64)
    t = sched.sigma_to_t(sig)
    assert torch.allclose(sched.alpha(t), (1 + sig**2).rsqrt(), rtol=1e-9)
    assert torch.allclose(sched.sigma_to_t(sched.sigmas[ints]), ints.double(), atol=1e-9)
    assert sched.sigma_to_t(1e-4) == 0 and sched.sigma_to_t(1e6) == 999  # clamped outside the table


def test_karras_sigmas():
    sched = NoiseSchedule.make("linear")
    sig = sched.karras_sigmas(10)
    assert sig.shape == (11,) and sig[-1] == 0
    assert math.isclose(sig[0], sched.sigma_max) and math.isclose(sig[-2], sched.sigma_min)
    assert bool((sig[1:] < sig[:-1]).all())


def test_q_sample_dtype_and_shape():
    sched = NoiseSchedule.make("linear", timesteps=100)
    x0 = torch.randn(3, 2, 4, 4, dtype=torch.bfloat16)
    t = torch.tensor([0, 50, 99])
    out = sched.q_sample(x0, t, torch.randn_like(x0))
    assert out.dtype == torch.bfloat16 and out.shape == x0.shape


@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
@pytest.mark.parametrize("steps", [1, 7, 50, 1000])
def test_timesteps_descending_unique_in_range(spacing, steps):
    ts = NoiseSchedule.make("linear").timesteps(steps, spacing)
    assert ts.dtype == torch.int64 and ts.shape == (steps,)
    assert bool((ts[1:] < ts[:-1]).all()) and ts.min() >= 0 and ts.max() <= 999


def test_bad_arguments_raise_largo_error():
    with pytest.raises(LargoError):
        NoiseSchedule.make("quadratic")
    sched = NoiseSchedule.make("linear", timesteps=10)
    for steps, spacing in [(0, "trailing"), (11, "trailing"), (5, "uniform")]:
        with pytest.raises(LargoError):
            sched.timesteps(steps, spacing)


@pytest.mark.parametrize("source", ["eps", "x0", "v"])
@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_parameterization_round_trip_exact(source, target):
    g = torch.Generator().manual_seed(0)
    abar = torch.rand(6, 1, 1, 1, generator=g, dtype=torch.float64) * 0.98 + 0.01
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    x0 = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 3, 4, 4, generator=g, dtype=torch.float64)
    x_t = alpha * x0 + sigma * eps
    truth = {k: training_target(k, x0, eps, alpha, sigma) for k in ("eps", "x0", "v")}
    out = convert(truth[source], source, target, x_t, alpha, sigma)
    assert torch.allclose(out, truth[target], atol=1e-12, rtol=0)
    back = convert(out, target, source, x_t, alpha, sigma)
    assert torch.allclose(back, truth[source], atol=1e-12, rtol=0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("weighting", ["uniform", "min_snr"])
@pytest.mark.parametrize("ztsnr", [False, True])
def test_loss_finite_for_each_target(prediction, weighting, ztsnr):
    torch.manual_seed(0)
    cfg = DiffusionConfig(timesteps=20, prediction=prediction, loss_weighting=weighting, zero_terminal_snr=ztsnr)
    sched = NoiseSchedule.make("cosine", timesteps=20, zero_terminal_snr=ztsnr)
    net = ToyNet(out_dtype=torch.bfloat16)
    x0 = torch.rand(64, 1, 4, 4) * 2 - 1
    y = torch.randint(0, 10, (64,))
    loss = diffusion_loss(net, x0, y, sched, cfg)
    assert loss.ndim == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.last_t.dtype == torch.float32 and net.last_y.dtype == torch.int64


def test_loss_uses_global_rng_reproducibly():
    cfg = DiffusionConfig(timesteps=20)
    sched = NoiseSchedule.make("linear", timesteps=20)
    net = ToyNet()
    x0, y = torch.zeros(8, 1, 2, 2), torch.zeros(8, dtype=torch.int64)
    torch.manual_seed(3)
    a = diffusion_loss(net, x0, y, sched, cfg)
    torch.manual_seed(3)
    b = diffusion_loss(net, x0, y, sched, cfg)
    assert torch.equal(a, b)


def test_label_dropout_rate():
    torch.manual_seed(0)
    cfg = DiffusionConfig(timesteps=20, p_uncond=0.2)
    net = ToyNet(num_classes=7)
    y = torch.randint(0, 7, (20000,))
    diffusion_loss(net, torch.zeros(20000, 1, 1, 1), y, NoiseSchedule.make("linear", 20), cfg)
    dropped = net.last_y == 7
    assert abs(dropped.float().mean().item() - 0.2) < 0.01
    assert torch.equal(net.last_y[~dropped], y[~dropped])
