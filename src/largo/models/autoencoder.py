"""A KL-regularised convolutional autoencoder for latent diffusion (Rombach et al. 2022, the LDM "AutoencoderKL").

The encoder maps an image x ∈ [-1, 1]^(C×H×W) to a diagonal Gaussian over latents of shape
(latent_channels, H/f, W/f); the decoder maps a latent back to an image. A diffusion model then runs on the
latents, which are f² times smaller in area. Layout, as in LDM's `Encoder`/`Decoder`:

    encoder: conv_in → per level [num_res_blocks ResnetBlocks, stride-2 conv except at the last level]
             → middle (res, attn, res) → GN, SiLU, conv_out (2·latent_channels) → quant_conv 1×1
    decoder: post_quant_conv 1×1 → conv_in → middle (res, attn, res)
             → per level, deepest first [num_res_blocks+1 ResnetBlocks, nearest ×2 + conv except at level 0]
             → GN, SiLU, conv_out
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from largo.config.autoencoder import AutoencoderConfig
from largo.errors import LargoError
from largo.models.unet import Upsample

_VALID_FACTORS = (1, 2, 4, 8, 16)


class DiagonalGaussian:
    """The posterior q(z|x) = N(mean, diag(exp(logvar))); logvar is clamped to [-30, 20] as in LDM, so exp()
    neither underflows to a zero std nor overflows in early, unstable training."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised draw (differentiable in mean and logvar); `generator` makes it reproducible.

        The noise is drawn on the generator's device and then moved, so a CPU generator gives the same latents
        whether the model runs on the CPU or a GPU."""
        device = generator.device if generator is not None else self.mean.device
        noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        noise = noise.to(self.mean.device)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over all latent dimensions: shape (N,)."""
        return 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar).flatten(1).sum(1)


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: the output of one image must not depend on the rest of the batch.
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """GN→SiLU→Conv3×3→GN→SiLU→Dropout→Conv3×3 plus a skip (1×1 conv when the width changes); no time input."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(_norm(in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1),
                                  _norm(out_ch), nn.SiLU(), nn.Dropout(dropout),
                                  nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class AttnBlock(nn.Module):
    """Single-head self-attention over the H×W positions, with a residual connection (LDM's `AttnBlock`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)  # each (B, HW, C)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # one head
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


def _middle(channels: int, dropout: float, attention: bool) -> nn.Sequential:
    # Attention only here, at the lowest resolution, where the H×W × H×W attention matrix is affordable.
    attn = AttnBlock(channels) if attention else nn.Identity()
    return nn.Sequential(ResnetBlock(channels, channels, dropout), attn, ResnetBlock(channels, channels, dropout))


class Encoder(nn.Module):
    """Image (N, image_channels, H, W) → (N, out_channels, H/f, W/f) features (mean and logvar, before quant_conv)."""

    def __init__(self, cfg: AutoencoderConfig, out_channels: int):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(cfg.image_channels, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        ch = widths[0]
        for level, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResnetBlock(ch, width, cfg.dropout))
                ch = width
            if level != len(widths) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))  # halve H and W
        self.down = nn.Sequential(*layers)
        self.mid = _middle(ch, cfg.dropout, cfg.mid_attention)
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mid(self.down(self.conv_in(x))))


class Decoder(nn.Module):
    """Latent (N, in_channels, h, w) → image (N, image_channels, h·f, w·f); the encoder's mirror image."""

    def __init__(self, cfg: AutoencoderConfig, in_channels: int):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        ch = widths[-1]
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.mid = _middle(ch, cfg.dropout, cfg.mid_attention)
        layers: list[nn.Module] = []
        for level in reversed(range(len(widths))):
            # One block more than the encoder, as in LDM: the decoder does the harder job.
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResnetBlock(ch, widths[level], cfg.dropout))
                ch = widths[level]
            if level != 0:
                layers.append(Upsample(ch))
        self.up = nn.Sequential(*layers)
        self.norm_out = nn.Sequential(_norm(ch), nn.SiLU())
        self.conv_out = nn.Conv2d(ch, cfg.image_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.norm_out(self.up(self.mid(self.conv_in(z)))))


def check_images(x: torch.Tensor, channels: int, factor: int) -> None:
    """One-line `LargoError` unless x is a float (N, channels, H, W) batch with H and W divisible by `factor`."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise LargoError(f"the autoencoder expects images of shape (N, {channels}, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise LargoError(f"the autoencoder expects float images in [-1, 1], got dtype {x.dtype}")
    if x.shape[2] % factor or x.shape[3] % factor:
        raise LargoError(f"image size {x.shape[2]}×{x.shape[3]} is not divisible by the autoencoder's "
                         f"downsampling factor {factor}")


def check_latents(z: torch.Tensor, channels: int) -> None:
    """One-line `LargoError` unless z is an (N, channels, h, w) batch."""
    if z.ndim != 4 or z.shape[1] != channels:
        raise LargoError(f"the autoencoder expects latents of shape (N, {channels}, h, w), got {tuple(z.shape)}")


class Reconstructs:
    """`forward` of every autoencoder here (largo's and the diffusers wrapper), written once over encode/decode."""

    def forward(self, x: torch.Tensor, sample_posterior: bool = True,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruct x through a posterior sample (training) or its mean; returns (reconstruction, posterior)."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior


class KLAutoencoder(Reconstructs, nn.Module):
    """Encoder + 1×1 quant_conv → DiagonalGaussian posterior; 1×1 post_quant_conv + Decoder → image."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.config = cfg.validate()
        self.downsample_factor = cfg.downsample_factor
        self.latent_channels = cfg.latent_channels
        self.encoder = Encoder(cfg, 2 * cfg.latent_channels)
        # The 1×1 convs are LDM's: they let the latent statistics be re-mixed without touching the conv stacks.
        self.quant_conv = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
        self.decoder = Decoder(cfg, cfg.latent_channels)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """Images in [-1, 1], (N, C, H, W) with H and W divisible by f → posterior over (N, latent, H/f, W/f)."""
        check_images(x, self.config.image_channels, self.downsample_factor)
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, latent_channels, h, w) → images (N, C, h·f, w·f), roughly in [-1, 1] (not clamped)."""
        check_latents(z, self.latent_channels)
        return self.decoder(self.post_quant_conv(z))

    def last_layer_weight(self) -> torch.Tensor:
        """The decoder's final conv weight: the adaptive GAN weight compares loss gradients with respect to it."""
        return self.decoder.conv_out.weight


def build_autoencoder(cfg: AutoencoderConfig) -> KLAutoencoder:
    """Validate `cfg` and build the autoencoder (on the CPU, in float32)."""
    return KLAutoencoder(cfg)
