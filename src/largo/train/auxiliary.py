"""Auxiliary losses on the predicted clean image x̂0 of a diffusion step, in a frozen feature network:

    perceptual       d(x̂0, x0) = Σ_l mean_hw ‖f̂_l(x̂0) − f̂_l(x0)‖²  with f̂ unit-normalised over channels (LPIPS'
                     distance with uniform channel weights, Zhang et al. 2018)
    feature matching Σ_l mean |f_l(x̂0) − f_l(x0)|  on the raw feature maps (the feature-matching loss of
                     pix2pixHD, Wang et al. 2018, after Salimans et al. 2016), averaged over layers

Both compare each x̂0 with its own x0, only for samples with t < aux_max_t · T (x̂0 is a blur of the class mean
at high noise, so pulling its features toward x0's there teaches nothing), and are averaged over the whole batch
(masked samples count as zero), so their size does not depend on how many samples the mask keeps.
"""

from __future__ import annotations

import torch

from largo.autoencoder.loss import perceptual_distance
from largo.config import DiffusionConfig
from largo.diffusion.loss import LossParts
from largo.errors import LargoError
from largo.train.perceptual import FeatureNet


class AuxiliaryLoss:
    def __init__(self, cfg: DiffusionConfig, feature_net: FeatureNet, n_layers: int | None = None):
        """`n_layers`: how many feature maps `feature_net` returns; aux_layers beyond them are refused."""
        self.cfg, self.feature_net = cfg, feature_net
        beyond = [i for i in cfg.aux_layers if n_layers is not None and i >= n_layers]
        if beyond:
            raise LargoError(f"config: aux_layers {beyond} are beyond the {n_layers} feature maps of {cfg.aux_net} "
                             f"(indices 0..{n_layers - 1})")

    def _layers(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [maps[i] for i in self.cfg.aux_layers] if self.cfg.aux_layers else maps

    def __call__(self, parts: LossParts) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        batch = parts.x0.shape[0]
        keep = parts.t < cfg.aux_max_t * cfg.timesteps
        zero = parts.x0_hat.new_zeros(())
        if not bool(keep.any()):
            return zero, {"perceptual": 0.0, "feature_match": 0.0, "aux_fraction": 0.0}
        with torch.no_grad():
            real = self._layers(list(self.feature_net(parts.x0[keep].float())))
        fake = self._layers(list(self.feature_net(parts.x0_hat[keep])))
        perceptual = perceptual_distance(fake, real).sum() / batch if cfg.perceptual_weight else zero
        fm = (sum((a - b).abs().mean(dim=tuple(range(1, a.ndim))) for a, b in zip(fake, real)) / len(fake)).sum() \
            / batch if cfg.feature_match_weight else zero
        loss = cfg.perceptual_weight * perceptual + cfg.feature_match_weight * fm
        return loss, {"perceptual": float(perceptual.detach()), "feature_match": float(fm.detach()),
                      "aux_fraction": float(keep.float().mean())}
