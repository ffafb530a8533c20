"""What an autoencoder run trains: the KL autoencoder with reconstruction + KL + perceptual + (late) patch-GAN
losses, on the same loop, checkpoints and logs as a diffusion run (`largo autoencoder train`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from PIL import Image
from torch import nn

from largo.autoencoder.loss import AutoencoderLoss
from largo.config import AutoencoderConfig, AutoencoderRunConfig
from largo.data import ImageSet
from largo.draw.grid import labelled_grid
from largo.errors import LargoError
from largo.images import to_float, to_uint8
from largo.models.autoencoder import build_autoencoder
from largo.runtime import DistInfo, unwrap_model
from largo.runtime.distributed import all_reduce_mean
from largo.train.perceptual import load_feature_net
from largo.train.task import TrainTask

GRID_IMAGES = 8  # originals above their reconstructions in the run's sample grids


class AutoencoderTask(TrainTask):
    kind = "autoencoder"

    def __init__(self, cfg: AutoencoderRunConfig, device: torch.device, log: Any = print):
        self.cfg, self.device, self.log = cfg, device, log
        self.logs: dict[str, float] = {}
        self.loss_fn: AutoencoderLoss | None = None
        self.disc_opt: torch.optim.Optimizer | None = None
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, reconstruction) of the last micro-batch
        self.cache_event = None

    def prepare(self, data: ImageSet) -> tuple[ImageSet, None]:
        given = self.cfg.autoencoder.image_channels  # filled from the data; a config file's other value must agree
        if given not in (AutoencoderConfig().image_channels, data.channels):
            raise LargoError(f"config: autoencoder image_channels is {given} but the images have {data.channels} "
                             f"channel(s); it is filled from the dataset")
        self.cfg.autoencoder = dataclasses.replace(self.cfg.autoencoder, image_channels=data.channels)
        per_class = {}
        for i, y in enumerate(data.labels.tolist()):  # one image per class first, for a varied grid
            per_class.setdefault(y, i)
        picks = (list(per_class.values()) + list(range(len(data))))[:GRID_IMAGES]
        self.grid_images = data.images[picks]
        return data, None

    def build_net(self) -> nn.Module:
        return build_autoencoder(self.cfg.autoencoder)

    def setup(self, net: nn.Module, fused: bool) -> None:
        spec = self.cfg.loss.perceptual_net
        feature_net = load_feature_net(spec, self.device) if spec and self.cfg.loss.perceptual_weight > 0 else None
        self.loss_fn = AutoencoderLoss(self.cfg.loss, self.cfg.autoencoder.image_channels, feature_net).to(self.device)
        if self.loss_fn.discriminator is not None:
            # Adam with β1 = 0.5 for the discriminator, as in LDM and pix2pix (momentum destabilises GAN training).
            self.disc_opt = torch.optim.AdamW(self.loss_fn.discriminator.parameters(), lr=self.cfg.train.lr,
                                              betas=(0.5, 0.9), weight_decay=0.0, fused=fused,
                                              foreach=None if fused else True)

    def loss(self, model_fn: nn.Module, net: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int,
             shard: tuple[int, int]) -> torch.Tensor:
        recon, posterior = model_fn(x)
        loss, self.logs = self.loss_fn.generator_loss(x, recon, posterior, step, unwrap_model(net).last_layer_weight())
        self._last = (x.detach(), recon.detach().float())  # the discriminator runs outside autocast
        return loss

    def after_step(self, step: int, dist: DistInfo) -> None:
        """One discriminator step on the last micro-batch, once the GAN terms are on (gradients averaged over
        processes, so every rank keeps the same discriminator)."""
        if self.disc_opt is None or self._last is None or not self.loss_fn.discriminator_active(step):
            return
        d_loss, d_logs = self.loss_fn.discriminator_loss(*self._last, step)
        self.disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        for p in self.loss_fn.discriminator.parameters():
            if p.grad is not None:
                all_reduce_mean(p.grad, dist)
        self.disc_opt.step()
        self.logs.update(d_logs)

    @torch.no_grad()
    def grid(self, ema_net: nn.Module, class_names: list[str]) -> Image.Image:
        x = to_float(self.grid_images).to(self.device)
        recon = to_uint8(ema_net.eval()(x, sample_posterior=False)[0]).cpu()
        return labelled_grid(torch.cat([self.grid_images, recon]), len(x), ["original", "reconstruction"])

    def architecture(self, cfg: AutoencoderRunConfig) -> Any:
        return cfg.autoencoder

    def meta(self) -> dict:
        a = self.cfg.autoencoder
        return {"kind": self.kind, "downsample_factor": a.downsample_factor, "latent_channels": a.latent_channels}

    def state_dict(self) -> dict:
        if self.disc_opt is None:
            return {}
        return {"discriminator": self.loss_fn.discriminator.state_dict(), "disc_opt": self.disc_opt.state_dict()}

    def load_state_dict(self, state: dict | None) -> None:
        if self.disc_opt is not None and state:
            self.loss_fn.discriminator.load_state_dict(state["discriminator"])
            self.disc_opt.load_state_dict(state["disc_opt"])
