"""The EDM formulation: preconditioning, loss, learned uncertainty, the karras schedule, and every sampler on a
toy problem whose optimal denoiser is known in closed form (no training)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from largo.config import RunConfig, preset_config
from largo.diffusion import Denoiser, ImageNoise, NoiseSchedule, sample
from largo.diffusion import edm
from largo.diffusion.loss import diffusion_loss
from largo.errors import LargoError

MU, STD, SIGMA_DATA = 0.3, 0.5, 0.5
SHAPE = (256, 1, 4, 4)


class GaussianEDMNet(nn.Module):
    """The exact EDM network F for data ~ N(MU, STD²) per pixel: it reads σ back from c_noise and x_σ from c_in x_σ,
    and answers F = (D - c_skip x_σ) / c_out with D the posterior mean MU + STD²/(STD² + σ²) (x_σ - MU)."""

    num_classes = 0

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.calls = 0

    def forward(self, x_in, c_noise, y):
        self.calls += 1
        sigma = (c_noise.double() / edm.NOISE_SCALE).exp().reshape(-1, 1, 1, 1)
        c_skip, c_out, c_in, _ = edm.preconditioning(sigma, SIGMA_DATA)
        x_sigma = x_in.double() / c_in
        d = MU + STD**2 / (STD**2 + sigma**2) * (x_sigma - MU)
        return (d - c_skip * x_sigma) / c_out


def _denoiser(**kw):
    return Denoiser(GaussianEDMNet(), NoiseSchedule.make("karras"), "edm", sigma_data=SIGMA_DATA, **kw)


def _posterior_mean(x, sigma):
    return MU + STD**2 / (STD**2 + sigma**2) * (x - MU)


def test_preconditioning_gives_unit_variance_input_and_target():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(20_000, generator=g, dtype=torch.float64) * SIGMA_DATA
    n = torch.randn(20_000, generator=g, dtype=torch.float64)
    for s in (0.01, 0.5, 5.0, 80.0):
        sigma = torch.tensor(s, dtype=torch.float64)
        c_skip, c_out, c_in, c_noise = edm.preconditioning(sigma, SIGMA_DATA)
        x = x0 + s * n
        assert abs((c_in * x).std().item() - 1) < 0.02
        assert abs(((x0 - c_skip * x) / c_out).std().item() - 1) < 0.02
        assert c_noise.item() == pytest.approx(edm.NOISE_SCALE * math.log(s))


def test_loss_is_lambda_weighted_x0_error():
    """‖F - target‖² equals EDM's λ(σ) ‖D - x0‖² with λ = (σ² + σ_d²) / (σ σ_d)²."""
    g = torch.Generator().manual_seed(1)
    x0, pred = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    sigma = torch.tensor([0.002, 0.1, 0.5, 1.0, 10.0, 80.0])
    x_sigma = x0 + sigma.reshape(-1, 1, 1, 1) * torch.randn(6, 1, 4, 4, generator=g)
    ours = edm.edm_loss_per_sample(pred, x0, x_sigma, sigma, SIGMA_DATA)
    d = edm.denoised(pred, x_sigma, sigma, SIGMA_DATA)
    lam = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2
    torch.testing.assert_close(ours, lam * (d - x0).pow(2).flatten(1).mean(1), rtol=1e-4, atol=1e-6)


def test_training_sigmas_are_log_normal():
    torch.manual_seed(0)
    log_sigma = edm.training_sigmas(100_000, -1.2, 1.2, "cpu").log()
    assert abs(log_sigma.mean().item() + 1.2) < 0.02 and abs(log_sigma.std().item() - 1.2) < 0.02


def test_uncertainty_learns_the_log_of_each_levels_loss():
    """Minimising ℓ(σ)/e^u(σ) + u(σ) over u gives u(σ) = ln ℓ(σ): the hard levels are weighted down."""
    torch.manual_seed(0)
    u = edm.UncertaintyWeight()
    assert torch.equal(u(torch.tensor([0.1, 1.0, 10.0])), torch.zeros(3))  # starts as plain EDM weighting
    opt = torch.optim.Adam(u.parameters(), lr=0.01)
    level_loss = lambda s: 0.5 * torch.exp(1.5 * torch.sin(s.log()))  # noqa: E731  (levels ~20× apart in difficulty)
    for _ in range(600):
        s = edm.training_sigmas(256, -1.2, 1.2, "cpu")
        out = u(s)
        loss = (level_loss(s) / out.exp() + out).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    probe = torch.tensor([0.1, 0.3, 1.0, 3.0])
    torch.testing.assert_close(u(probe).detach(), level_loss(probe).log(), atol=0.1, rtol=0)


def test_karras_schedule_is_the_edm_sigma_grid():
    sched = NoiseSchedule.make("karras", 1000, sigma_range=(0.002, 80.0))
    assert sched.sigma_min == pytest.approx(0.002) and sched.sigma_max == pytest.approx(80.0)
    # a uniform grid in t is Karras' ρ = 7 grid: the trailing 11-point grid hits every 100th σ of it
    ramp = torch.linspace(0, 1, 1000, dtype=torch.float64)
    expected = (0.002 ** (1 / 7) + ramp * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
    torch.testing.assert_close(sched.sigmas, expected, rtol=1e-9, atol=0)


def _reference_heun(x_init, steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """NVlabs/edm `edm_sampler` with S_churn = 0 written out plainly in float64 (the toy D is exact). The only
    change: the start is x_T scaled by sqrt(1 + σ_max²) (the VP x_T ~ N(0, I) seen in the σ view), not σ_max."""
    i = torch.arange(steps, dtype=torch.float64)
    t_steps = (sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t_steps = torch.cat([t_steps, torch.zeros(1, dtype=torch.float64)])
    x_next = x_init * math.sqrt(1 + t_steps[0].item() ** 2)
    for k in range(steps):
        t_cur, t_next = t_steps[k], t_steps[k + 1]
        x_cur = x_next
        d_cur = (x_cur - _posterior_mean(x_cur, t_cur)) / t_cur
        x_next = x_cur + (t_next - t_cur) * d_cur
        if k < steps - 1:
            d_prime = (x_next - _posterior_mean(x_next, t_next)) / t_next
            x_next = x_cur + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def test_heun_matches_the_reference_edm_sampler():
    shape, intervals = (16, 1, 2, 2), 18
    seeds = list(range(16))
    ours = sample(_denoiser(), shape, None, sampler="heun", steps=2 * intervals - 1, seeds=seeds, device="cpu")
    ref = _reference_heun(ImageNoise(seeds, shape[1:], "cpu").draw(), intervals)
    torch.testing.assert_close(ours, ref.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler,steps,tol", [("heun", 79, 0.04), ("euler", 100, 0.04), ("dpmpp2m", 25, 0.05),
                                               ("ddim", 200, 0.04)])
def test_every_sampler_recovers_gaussian_data(sampler, steps, tol):
    x = sample(_denoiser(), SHAPE, None, sampler=sampler, steps=steps, device="cpu")
    assert abs(x.mean().item() - MU) < 0.03
    assert abs(x.std().item() / STD - 1) < tol


def test_denoiser_needs_sigma_data():
    with pytest.raises(LargoError, match="sigma_data"):
        Denoiser(GaussianEDMNet(), NoiseSchedule.make("karras"), "edm")


def _edm_config(**diffusion) -> RunConfig:
    cfg = preset_config("demo")
    cfg.model = dataclasses.replace(cfg.model, image_channels=1, num_classes=10)
    cfg.diffusion = dataclasses.replace(cfg.diffusion, **{"prediction": "edm", "schedule": "karras",
                                                          "loss_weighting": "uniform", **diffusion})
    return cfg


@pytest.mark.parametrize("diffusion,match", [
    ({"prediction": "v", "schedule": "linear", "p_mean": -1.0}, "p_mean applies to prediction 'edm' only"),
    ({"prediction": "v", "schedule": "linear", "sigma_data": 1.0}, "sigma_data applies"),
    ({"schedule": "linear", "sigma_max": 100.0}, "sigma_max applies to the karras schedule only"),
    ({"loss_weighting": "min_snr"}, "does not apply to prediction 'edm'"),
    ({"prediction": "v", "schedule": "linear", "loss_weighting": "uncertainty"}, "needs prediction 'edm'"),
    ({"zero_terminal_snr": True}, "zero_terminal_snr"),
    ({"sigma_min": 90.0}, "sigma_min < sigma_max"),
    ({"p_std": 0.0}, "p_std must be > 0"),
])
def test_settings_that_cannot_take_effect_are_refused(diffusion, match):
    with pytest.raises(LargoError, match=match):
        _edm_config(**diffusion).validate()


def test_edm_loss_through_diffusion_loss_is_reproducible_and_sharded():
    """The loss draws σ, noise and label dropout from the global RNG in that order; two ranks' shards of one global
    batch reproduce the whole batch's per-sample losses."""
    from largo.models import build_unet

    cfg = _edm_config()
    cfg.model = dataclasses.replace(cfg.model, base_channels=32, channel_mult=(1, 2), attention_resolutions=())
    torch.manual_seed(0)
    net = build_unet(cfg.model, 8).double()
    for p in net.parameters():  # a non-zero output, so the loss depends on the network
        nn.init.normal_(p, std=0.05)
    x0 = torch.rand(4, 1, 8, 8, dtype=torch.float64) * 2 - 1
    y = torch.arange(4)
    sched = NoiseSchedule.from_config(cfg.diffusion)
    torch.manual_seed(3)
    whole = diffusion_loss(net, x0, y, sched, cfg.diffusion)
    shards = []
    for rank in range(2):
        torch.manual_seed(3)
        shards.append(diffusion_loss(net, x0[rank::2], y[rank::2], sched, cfg.diffusion, shard=(rank, 2)))
    torch.testing.assert_close((shards[0] + shards[1]) / 2, whole)
    u = edm.UncertaintyWeight()
    torch.manual_seed(3)
    weighted = diffusion_loss(net, x0, y, sched, dataclasses.replace(cfg.diffusion, loss_weighting="uncertainty"),
                              uncertainty=u)
    torch.testing.assert_close(weighted, whole)  # u = 0 at the start: the plain EDM loss


def test_edm_run_resumes_bit_exact_exports_and_samples(tmp_path, data_root):
    """A tiny EDM2-weighted run: killed at step 3 and resumed, it ends with the weights (and the learned u(σ)) of a
    run that never stopped; its export samples through the CLI with every σ-grid sampler."""
    from helpers import tiny_config
    from safetensors.torch import load_file

    from largo.checkpoint import latest_checkpoint, load_state
    from largo.cli import main
    from largo.train.trainer import Trainer

    def cfg(steps):
        c = tiny_config(steps=steps)
        c.diffusion = dataclasses.replace(c.diffusion, prediction="edm", schedule="karras",
                                          loss_weighting="uncertainty")
        return c

    Trainer(cfg(6), tmp_path / "full", progress=False).fit()
    Trainer(cfg(3), tmp_path / "part", progress=False).fit()
    Trainer(cfg(6), tmp_path / "part", resume=True, progress=False).fit()
    full, part = latest_checkpoint(tmp_path / "full"), latest_checkpoint(tmp_path / "part")
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(full / name)), load_file(str(part / name))
        assert all(torch.equal(a[k], b[k]) for k in a)
    u_full, u_part = load_state(full)["task"]["uncertainty"], load_state(part)["task"]["uncertainty"]
    assert u_full["linear.weight"].abs().sum() > 0  # it learned something
    assert all(torch.equal(u_full[k], u_part[k]) for k in u_full)
    assert main(["export", str(tmp_path / "full"), "--out", str(tmp_path / "release")]) == 0
    for sampler in ("heun", "euler", "dpmpp2m", "ddim"):
        out = tmp_path / sampler
        assert main(["sample", str(tmp_path / "release"), "--classes", "Trouser", "--n", "2", "--sampler", sampler,
                     "--steps", "5", "--cfg", "2", "--out", str(out), "--device", "cpu"]) == 0
        assert sorted(p.name for p in (out / "images").iterdir()) == ["00000_Trouser.png", "00001_Trouser.png"]



@pytest.mark.parametrize("preset,weighting", [("demo-edm", "uniform"), ("demo-edm2", "uncertainty")])
def test_edm_presets_train_a_step(preset, weighting, tmp_path, data_root):
    from largo.train import Trainer
    cfg = preset_config(preset)
    assert (cfg.diffusion.prediction, cfg.diffusion.schedule, cfg.diffusion.loss_weighting) == ("edm", "karras",
                                                                                                 weighting)
    cfg.data = dataclasses.replace(cfg.data, data_root=str(data_root), subset=64)
    cfg.train = dataclasses.replace(cfg.train, steps=1, max_minutes=0.0, batch_size=8, sample_every=0)
    cfg.sample = dataclasses.replace(cfg.sample, grid_per_class=1, sample_steps=3)  # the end-of-run grid, kept small
    summary = Trainer(cfg, tmp_path / preset).fit()
    assert summary["step"] == 1
