"""The autoencoder's training loss, after LDM's `LPIPSWithDiscriminator` (Rombach et al. 2022, Esser et al. 2021).

    generator:     rec + perceptual_weight·perceptual + kl_weight·kl + λ·disc_weight·(−mean D(recon))
    discriminator: hinge(D(x), D(recon.detach()))

Convention: every term is a mean per image element. `rec` is the per-pixel mean of |x − recon| (or its square),
`perceptual` the batch mean of a per-image distance, and `kl` the batch mean of the per-sample KL sum divided by
the number of elements C·H·W of one image. LDM instead sums the reconstruction over pixels and the KL over latent
dims, then divides both by the batch size; our total is LDM's divided by C·H·W (with LDM's learned output logvar
fixed at 0), so the balance between terms, and hence LDM's kl_weight = 1e-6, carry over unchanged, while the loss
itself stays O(1). λ, the adaptive weight, is a ratio of gradient norms and rescales with the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from largo.config.autoencoder import AutoencoderLossConfig
from largo.errors import LargoError

if TYPE_CHECKING:
    from largo.models.autoencoder import DiagonalGaussian

FeatureNet = Callable[[torch.Tensor], Sequence[torch.Tensor]]
DISC_CHANNELS = 64  # the pix2pix / LDM discriminator width


class PatchDiscriminator(nn.Module):
    """pix2pix's NLayerDiscriminator: a stack of 4×4 convs whose output is a map of real/fake logits, each
    judging one overlapping patch. GroupNorm replaces BatchNorm, so a logit depends only on its own image (no
    train/eval difference, no running statistics, and a resumed run continues exactly)."""

    def __init__(self, in_channels: int, base_channels: int = DISC_CHANNELS, n_layers: int = 3):
        super().__init__()
        if n_layers < 1 or base_channels < 1 or in_channels < 1:
            raise LargoError(f"patch discriminator needs n_layers, base_channels and in_channels >= 1, got "
                             f"{n_layers}, {base_channels}, {in_channels}")
        lrelu = nn.LeakyReLU(0.2)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1), lrelu]
        ch = base_channels
        for n in range(1, n_layers + 1):
            out = base_channels * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last hidden conv keeps the resolution, as in pix2pix
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=False), _norm(out), lrelu]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        # Each stride-2 conv halves the side (rounding down), each 4×4 stride-1 conv takes 1 off it.
        self.min_size = 3 * 2 ** n_layers
        self.n_layers = n_layers
        self.apply(_pix2pix_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) → logits (N, 1, h, w)."""
        if min(x.shape[-2:]) < self.min_size:
            raise LargoError(f"images of {x.shape[-2]}×{x.shape[-1]} are too small for a {self.n_layers}-layer "
                             f"patch discriminator (needs at least {self.min_size}); lower disc_layers")
        return self.net(x)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _pix2pix_init(m: nn.Module) -> None:
    # pix2pix's init (N(0, 0.02) convs, N(1, 0.02) norm scales), which LDM keeps.
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.GroupNorm):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss for the discriminator: ½·(mean relu(1 − D(x)) + mean relu(1 + D(x̂)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def perceptual_distance(features_a: list[torch.Tensor], features_b: list[torch.Tensor]) -> torch.Tensor:
    """Per-sample distance (N,) between two images' feature lists (each (N, C, H, W) or (N, C)).

    This is LPIPS's distance (Zhang et al. 2018) with uniform channel weights: each feature map is unit-normalised
    over channels, the squared difference is summed over channels, averaged over H×W and summed over layers.
    LPIPS's learned per-channel weights cannot be downloaded here, so every channel counts the same.
    """
    if len(features_a) != len(features_b) or not features_a:
        raise ValueError(f"need two equally long, non-empty feature lists, got {len(features_a)} and "
                         f"{len(features_b)}")
    total = features_a[0].new_zeros(features_a[0].shape[0])
    for fa, fb in zip(features_a, features_b):
        # 1e-10 as in LPIPS: a zero feature vector stays zero instead of becoming NaN.
        na = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
        nb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
        per_position = (na - nb).pow(2).sum(dim=1)  # (N, H, W), or (N,) for pooled features
        if per_position.ndim > 1:
            per_position = per_position.flatten(1).mean(dim=1)
        total = total + per_position
    return total


class AutoencoderLoss(nn.Module):
    """Generator and discriminator losses of a KL autoencoder; owns the discriminator when disc_weight > 0.

    `feature_net` maps a float image batch in [-1, 1] to a list of feature tensors (e.g. a frozen classifier's
    intermediate activations); None means no perceptual term (logged as 0). It stays the caller's: it is not a
    submodule, so its weights are not in this module's parameters() or state_dict(), and the caller freezes it
    and moves it to the right device.
    """

    def __init__(self, cfg: AutoencoderLossConfig, image_channels: int, feature_net: FeatureNet | None = None):
        super().__init__()
        self.config = cfg.validate()
        object.__setattr__(self, "feature_net", feature_net)  # bypass nn.Module registration, see above
        self.discriminator = (PatchDiscriminator(image_channels, DISC_CHANNELS, cfg.disc_layers)
                              if cfg.disc_weight > 0 else None)

    def discriminator_active(self, step: int) -> bool:
        """Whether the GAN terms count at optimizer step `step` (a trainer can skip the D update otherwise)."""
        return self.discriminator is not None and step >= self.config.disc_start

    def generator_loss(self, x: torch.Tensor, recon: torch.Tensor, posterior: DiagonalGaussian, step: int,
                       last_layer_weight: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The autoencoder's loss (scalar) and its terms as floats."""
        cfg = self.config
        diff = x - recon
        rec = diff.abs().mean() if cfg.reconstruction == "l1" else diff.pow(2).mean()
        perceptual = self._perceptual(x, recon)
        nll = rec + cfg.perceptual_weight * perceptual
        kl = posterior.kl().mean() / x[0].numel()
        loss = nll + cfg.kl_weight * kl
        g_adv, d_weight = x.new_zeros(()), x.new_zeros(())
        if self.discriminator_active(step):
            with self._frozen_discriminator():
                g_adv = -self.discriminator(recon).mean()
            d_weight = cfg.disc_weight * self._adaptive_weight(nll, g_adv, last_layer_weight)
            loss = loss + d_weight * g_adv
        logs = {"loss": loss, "rec": rec, "perceptual": perceptual, "kl": kl, "nll": nll, "g_adv": g_adv,
                "d_weight": d_weight}
        logs = {k: float(v.detach()) for k, v in logs.items()}
        logs["disc_factor"] = float(self.discriminator_active(step))
        return loss, logs

    def discriminator_loss(self, x: torch.Tensor, recon: torch.Tensor,
                           step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss of the discriminator on real x and detached reconstructions.

        Before disc_start (or without a discriminator) it is a zero leaf that requires grad, so an unconditional
        `backward()` is a harmless no-op; `discriminator_active(step)` lets a trainer skip the update instead.
        """
        if not self.discriminator_active(step):
            zero = torch.zeros((), device=x.device, dtype=x.dtype, requires_grad=True)
            return zero, {"d_loss": 0.0, "logits_real": 0.0, "logits_fake": 0.0}
        logits_real = self.discriminator(x.detach())
        logits_fake = self.discriminator(recon.detach())
        loss = hinge_d_loss(logits_real, logits_fake)
        return loss, {"d_loss": float(loss.detach()), "logits_real": float(logits_real.detach().mean()),
                      "logits_fake": float(logits_fake.detach().mean())}

    def _perceptual(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        if self.feature_net is None or self.config.perceptual_weight == 0:
            return x.new_zeros(())
        with torch.no_grad():  # the target's features need no graph
            target = list(self.feature_net(x))
        return perceptual_distance(target, list(self.feature_net(recon))).mean()

    @contextmanager
    def _frozen_discriminator(self) -> Iterator[None]:
        # The generator's loss goes through D, but must not leave gradients on D's weights: the D optimizer's
        # step would otherwise also follow the generator's objective.
        params = [p for p in self.discriminator.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in params:
                p.requires_grad_(True)

    @staticmethod
    def _adaptive_weight(nll: torch.Tensor, g_adv: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
        """λ = ||∇_last nll|| / (||∇_last g_adv|| + 1e-4), clamped to [0, 1e4] and detached (LDM, after VQGAN):
        the GAN term's gradient at the decoder's output layer is scaled to the size of the reconstruction's.
        0 where there is no graph to differentiate (e.g. evaluation under torch.no_grad)."""
        zero = nll.new_zeros(())
        if not (torch.is_grad_enabled() and nll.requires_grad and g_adv.requires_grad and last_layer.requires_grad):
            return zero
        (nll_grad,) = torch.autograd.grad(nll, last_layer, retain_graph=True, allow_unused=True)
        (g_grad,) = torch.autograd.grad(g_adv, last_layer, retain_graph=True, allow_unused=True)
        if nll_grad is None or g_grad is None:  # last_layer is not on this graph
            return zero
        return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
