"""The KL autoencoder, its loss and the diffusers VAE wrapper, on tiny models (a few seconds per test)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from largo.autoencoder.loss import (AutoencoderLoss, AutoencoderLossConfig, PatchDiscriminator, hinge_d_loss,
                                    perceptual_distance)
from largo.errors import LargoError
from largo.models.autoencoder import AutoencoderConfig, DiagonalGaussian, build_autoencoder


def tiny_ae(channel_mult=(1, 2, 2), image_channels=3, **kw):
    torch.manual_seed(0)
    cfg = AutoencoderConfig(base_channels=32, channel_mult=channel_mult, num_res_blocks=1,
                            image_channels=image_channels, **kw)
    return build_autoencoder(cfg)


class TinyFeatures(nn.Module):
    """A frozen random two-layer conv net standing in for a pretrained feature extractor."""

    def __init__(self, channels: int = 3):
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Conv2d(channels, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.requires_grad_(False)

    def forward(self, x):
        h1 = torch.relu(self.a(x))
        return [h1, torch.relu(self.b(h1))]


# ---------------------------------------------------------------------------------------------- the model


@pytest.mark.parametrize("channel_mult, f, size", [((1, 2, 2), 4, (16, 32)), ((1, 1, 2, 2), 8, (32, 16))])
def test_encode_decode_shapes(channel_mult, f, size):
    ae = tiny_ae(channel_mult, latent_channels=3)
    assert ae.downsample_factor == f and ae.config.downsample_factor == f and ae.latent_channels == 3
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        post = ae.encode(x)
        latent = (2, 3, size[0] // f, size[1] // f)
        assert post.mean.shape == latent and post.logvar.shape == latent and post.sample().shape == latent
        recon = ae.decode(post.mode())
        assert recon.shape == x.shape
        recon2, post2 = ae(x, sample_posterior=False)
    torch.testing.assert_close(recon2, recon)
    assert ae.last_layer_weight() is ae.decoder.conv_out.weight


def test_bad_inputs_raise_largo_error():
    ae = tiny_ae((1, 2, 2))
    with pytest.raises(LargoError, match="not divisible .* factor 4"):
        ae.encode(torch.zeros(2, 3, 18, 16))
    with pytest.raises(LargoError, match=r"\(N, 3, H, W\)"):
        ae.encode(torch.zeros(2, 1, 16, 16))
    with pytest.raises(LargoError, match="float"):
        ae.encode(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(LargoError, match="latents"):
        ae.decode(torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("change, message", [
    (dict(base_channels=48), "multiple of 32"), (dict(base_channels=0), "multiple of 32"),
    (dict(channel_mult=()), "channel_mult"), (dict(channel_mult=(1, 0)), "channel_mult"),
    (dict(channel_mult=(1,) * 6), "factor"), (dict(latent_channels=0), "latent_channels"),
    (dict(image_channels=0), "image_channels"), (dict(dropout=1.0), "dropout"), (dict(dropout=-0.1), "dropout"),
    (dict(num_res_blocks=0), "num_res_blocks"),
])
def test_config_validation(change, message):
    cfg = AutoencoderConfig(**change)
    with pytest.raises(LargoError, match=message) as err:
        cfg.validate()
    assert "\n" not in str(err.value)


def test_config_factor_and_lists():
    assert AutoencoderConfig().validate().downsample_factor == 4
    assert AutoencoderConfig(channel_mult=(1, 2, 4, 4)).downsample_factor == 8
    assert AutoencoderConfig(channel_mult=[1, 2]).channel_mult == (1, 2)  # as read from YAML


def test_diagonal_gaussian():
    zero = DiagonalGaussian(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3))
    assert zero.kl().shape == (2,) and torch.equal(zero.kl(), torch.zeros(2))
    mean = torch.zeros(2, 4, 3, 3)
    mean[1, 0, 0, 0] = 2.0
    kl = DiagonalGaussian(mean, torch.zeros_like(mean)).kl()
    assert kl[0] == 0 and kl[1] == pytest.approx(2.0)  # ½·mean²
    assert (DiagonalGaussian(torch.zeros(1, 4), torch.full((1, 4), -1.0)).kl() > 0).all()
    # logvar is clamped, so a huge value cannot overflow exp()
    assert torch.isfinite(DiagonalGaussian(torch.zeros(1, 2), torch.full((1, 2), 1e4)).var).all()

    post = DiagonalGaussian(torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8))
    a = post.sample(torch.Generator().manual_seed(5))
    b = post.sample(torch.Generator().manual_seed(5))
    c = post.sample(torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(post.mode(), post.mean)


# ----------------------------------------------------------------------------------------------- the loss


def test_hinge_d_loss_values():
    assert hinge_d_loss(torch.tensor([2.0, 3.0]), torch.tensor([-2.0, -1.5])).item() == 0.0
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)).item() == 1.0
    assert hinge_d_loss(torch.tensor([-1.0]), torch.tensor([1.0])).item() == 2.0
    assert hinge_d_loss(torch.tensor([0.5, 2.0]), torch.tensor([0.5, -3.0])).item() == pytest.approx(0.5 * (0.25 + 0.75))


def test_perceptual_distance():
    f = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    d = perceptual_distance(f, [t.clone() for t in f])
    assert d.shape == (2,) and torch.allclose(d, torch.zeros(2), atol=1e-6)
    # Unit-normalised over channels: a per-position rescaling changes nothing, a different map does.
    scaled = [t * torch.rand(2, 1, *t.shape[2:]).add(0.5) for t in f]
    assert torch.allclose(perceptual_distance(f, scaled), torch.zeros(2), atol=1e-6)
    other = [torch.randn_like(t) for t in f]
    assert (perceptual_distance(f, other) > 0.1).all()


def test_perceptual_term_and_gradients():
    ae = tiny_ae((1, 2))
    loss_fn = AutoencoderLoss(AutoencoderLossConfig(disc_weight=0.0), image_channels=3, feature_net=TinyFeatures())
    assert loss_fn.discriminator is None and list(loss_fn.parameters()) == []  # the feature net stays the caller's
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    post = ae.encode(x)
    _, same = loss_fn.generator_loss(x, x.clone(), post, step=0, last_layer_weight=ae.last_layer_weight())
    assert same["perceptual"] < 1e-10 and same["rec"] == 0.0
    recon, post = ae(x, generator=torch.Generator().manual_seed(0))
    loss, logs = loss_fn.generator_loss(x, recon, post, step=0, last_layer_weight=ae.last_layer_weight())
    assert logs["perceptual"] > 0 and logs["rec"] > 0 and logs["kl"] > 0
    assert logs["loss"] == pytest.approx(logs["rec"] + logs["perceptual"] + 1e-6 * logs["kl"], rel=1e-5)
    loss.backward()
    for part in (ae.encoder.conv_in, ae.quant_conv, ae.post_quant_conv, ae.decoder.conv_out):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0

    no_features = AutoencoderLoss(AutoencoderLossConfig(disc_weight=0.0), image_channels=3)
    assert no_features.generator_loss(x, recon, post, 0, ae.last_layer_weight())[1]["perceptual"] == 0.0


def test_discriminator_switches_on_at_disc_start():
    ae = tiny_ae((1, 2))
    cfg = AutoencoderLossConfig(disc_start=3, disc_layers=2, perceptual_weight=0.0)
    loss_fn = AutoencoderLoss(cfg, image_channels=3)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    recon, post = ae(x, generator=torch.Generator().manual_seed(0))
    last = ae.last_layer_weight()

    d_loss, d_logs = loss_fn.discriminator_loss(x, recon, step=2)
    assert d_loss.item() == 0.0 and d_logs["d_loss"] == 0.0
    d_loss.backward()  # a harmless no-op before disc_start
    assert all(p.grad is None for p in loss_fn.discriminator.parameters())
    before, logs = loss_fn.generator_loss(x, recon, post, step=2, last_layer_weight=last)
    assert logs["g_adv"] == 0.0 and logs["d_weight"] == 0.0 and logs["disc_factor"] == 0.0
    assert logs["loss"] == pytest.approx(logs["nll"] + 1e-6 * logs["kl"], rel=1e-6)

    after, logs = loss_fn.generator_loss(x, recon, post, step=3, last_layer_weight=last)
    assert logs["g_adv"] != 0.0 and logs["d_weight"] > 0.0 and logs["disc_factor"] == 1.0
    assert after.item() == pytest.approx(before.item() + logs["d_weight"] * logs["g_adv"], rel=1e-5)
    after.backward()
    assert ae.decoder.conv_out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.discriminator.parameters())  # D untouched by the generator loss

    ae.zero_grad(set_to_none=True)
    d_loss, d_logs = loss_fn.discriminator_loss(x, recon, step=3)
    assert d_loss.item() > 0 and d_logs["d_loss"] == pytest.approx(d_loss.item())
    d_loss.backward()
    assert all(p.grad is not None for p in loss_fn.discriminator.parameters())
    assert ae.encoder.conv_in.weight.grad is None  # recon was detached for D

    with torch.no_grad():  # evaluation: no graph, so the adaptive weight falls back to 0
        recon, post = ae(x, sample_posterior=False)
        _, logs = loss_fn.generator_loss(x, recon, post, step=3, last_layer_weight=last)
    assert logs["d_weight"] == 0.0 and logs["g_adv"] != 0.0


def test_patch_discriminator():
    torch.manual_seed(0)
    d = PatchDiscriminator(3, base_channels=16, n_layers=3)
    x = torch.randn(3, 3, 32, 32)
    out = d(x)
    assert out.shape == (3, 1, 2, 2)
    torch.testing.assert_close(d(x[:1]), out[:1], atol=1e-5, rtol=1e-5)  # GroupNorm: batch-independent
    with pytest.raises(LargoError, match="too small.*at least 24"):
        d(torch.randn(1, 3, 16, 16))


@pytest.mark.parametrize("change, message", [
    (dict(reconstruction="l3"), "'l1' or 'l2'"), (dict(kl_weight=-1.0), "kl_weight"),
    (dict(disc_weight=float("nan")), "disc_weight"), (dict(disc_start=-1), "disc_start"),
    (dict(disc_layers=0), "disc_layers"), (dict(perceptual_weight="1"), "perceptual_weight"),
])
def test_loss_config_validation(change, message):
    with pytest.raises(LargoError, match=message):
        AutoencoderLossConfig(**change).validate()


@pytest.mark.slow
def test_training_on_real_images_reduces_reconstruction_loss(data_root):
    from largo.data import load_images

    s = load_images("fashion_mnist", "test", 32)
    x = s.images[:8].float() / 127.5 - 1  # 8 garments: 20 steps on one core in ~10 s
    ae = tiny_ae((1, 2), image_channels=1, mid_attention=False)
    loss_fn = AutoencoderLoss(AutoencoderLossConfig(disc_weight=0.0), image_channels=1)
    opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)

    def rec_l1() -> float:
        with torch.no_grad():
            return (ae(x, sample_posterior=False)[0] - x).abs().mean().item()

    start = rec_l1()
    for step in range(20):
        recon, post = ae(x, generator=g)
        loss, _ = loss_fn.generator_loss(x, recon, post, step, ae.last_layer_weight())
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = rec_l1()
    # Beyond falling, it must beat the best image-independent output (the per-pixel median of the batch), so the
    # autoencoder reconstructs these images rather than the mostly black Fashion-MNIST background.
    best_constant = (x - x.median(dim=0).values).abs().mean().item()
    assert end < 0.6 * start and end < 0.9 * best_constant, (start, end, best_constant)


# ------------------------------------------------------------------------------------------ diffusers VAE


def test_diffusers_vae_parity_and_errors(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from largo.models.diffusers_vae import load_diffusers_vae

    torch.manual_seed(0)
    theirs = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 32), layers_per_block=1, latent_channels=4,
        norm_num_groups=32, sample_size=32, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2).eval()
    theirs.save_pretrained(tmp_path / "vae")
    ours = load_diffusers_vae(tmp_path / "vae")
    assert ours.downsample_factor == 2 and ours.latent_channels == 4
    assert ours.config == {"kind": "diffusers", "path": str(tmp_path / "vae"), "latent_channels": 4, "f": 2,
                           "image_channels": 3, "scaling_factor": theirs.config.scaling_factor}

    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        post = ours.encode(x)
        their_dist = theirs.encode(x).latent_dist
        assert torch.allclose(post.mean, their_dist.mean, atol=1e-6)
        assert torch.allclose(post.logvar, their_dist.logvar, atol=1e-6)
        z = torch.randn(2, 4, 8, 8)
        assert torch.allclose(ours.decode(z), theirs.decode(z).sample, atol=1e-6)
    with pytest.raises(LargoError, match="not divisible"):
        ours.encode(torch.zeros(1, 3, 15, 16))

    with pytest.raises(LargoError, match="not found"):
        load_diffusers_vae(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LargoError, match="no config.json"):
        load_diffusers_vae(tmp_path / "empty")
    weights = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(LargoError, match="cannot load") as err:
        load_diffusers_vae(tmp_path / "vae")
    assert "\n" not in str(err.value)
