"""What a diffusion run trains: the U-Net with the denoising loss, on pixels or on an autoencoder's latents."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import torch
from PIL import Image
from torch import nn

from largo.autoencoder.latents import LatentSpace, encode_dataset, fit_latent_space, latent_space_from_record
from largo.autoencoder.load import load_autoencoder
from largo.config import RunConfig
from largo.data import ImageSet
from largo.data.augment import AUG_DIM, augment
from largo.diffusion.edm import UncertaintyWeight
from largo.diffusion.loss import diffusion_loss
from largo.diffusion.schedules import NoiseSchedule
from largo.errors import LargoError
from largo.models import build_unet
from largo.runtime import DistInfo, model_num_classes
from largo.runtime.distributed import all_reduce_mean
from largo.sampling import class_grid
from largo.train.auxiliary import AuxiliaryLoss
from largo.train.perceptual import load_feature_net
from largo.train.task import TrainTask


AUGMENT_SEED_OFFSET = 24_000_001  # the augmentation generator's seed is the run's seed plus this


class Augmented:
    """The network called with this micro-batch's augmentation parameters (what the loss calls as `net(x, t, y)`)."""

    def __init__(self, model_fn: nn.Module, labels: torch.Tensor, num_classes: int):
        self.model_fn, self.labels, self.num_classes = model_fn, labels, num_classes

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.model_fn(x, t, y, augment_labels=self.labels)


class DiffusionTask(TrainTask):
    kind = "diffusion"

    def __init__(self, cfg: RunConfig, device: torch.device, log: Any = print):
        self.cfg, self.device, self.log = cfg, device, log
        self.schedule = NoiseSchedule.from_config(cfg.diffusion)
        self.latent: LatentSpace | None = None
        self.logs: dict[str, float] = {}
        self.cache_event: dict | None = None  # latent runs: whether the encoded dataset came from the cache
        self.auxiliary: AuxiliaryLoss | None = None
        # EDM2's learned u(σ) (loss_weighting "uncertainty"): part of the loss, not of the network, so samplers and
        # exports never see it; its own Adam at the run's LR, its weights in the training state.
        self.uncertainty: UncertaintyWeight | None = None
        self.uncertainty_opt: torch.optim.Optimizer | None = None
        self._grad_step = -1
        # Non-leaking augmentation draws from its own generator, saved with each checkpoint (exact resume).
        self.augment_rng = torch.Generator().manual_seed(cfg.train.seed + AUGMENT_SEED_OFFSET)

    def prepare(self, data: ImageSet) -> tuple[ImageSet, torch.Tensor | None]:
        """The training set the stream draws from (images, or normalised latents and their mirror images); fills
        the model config with what the network sees."""
        cfg = self.cfg
        if not cfg.data.autoencoder:
            self._fill(image_channels=data.channels, num_classes=data.num_classes, input_size=cfg.data.resolution,
                       augment_dim=AUG_DIM if cfg.data.augment else 0)
            return data, None
        ae = load_autoencoder(cfg.data.autoencoder, self.device)
        d = cfg.data
        key = {"dataset": d.dataset, "split": "train", "resolution": d.resolution, "split_seed": d.split_seed,
               "imbalance": d.imbalance, "subset": d.subset,
               "images_sha256": hashlib.sha256(data.images.numpy().tobytes()).hexdigest()}
        enc = encode_dataset(ae, data, key, device=self.device, log=lambda s: self.log(f"largo: {s}"))
        self.cache_event = {"event": "latents", "cache": "hit" if enc.from_cache else "miss", "path": str(enc.path)}
        self.latent = fit_latent_space(ae, enc.latents, d.latent_norm)
        self._fill(image_channels=ae.latent_channels, num_classes=data.num_classes,
                   input_size=d.resolution // ae.downsample_factor)
        norm = lambda z: (z - self.latent.shift.view(1, -1, 1, 1)) * self.latent.scale.view(1, -1, 1, 1)  # noqa: E731
        return ImageSet(norm(enc.latents), data.labels, data.class_names), norm(enc.flipped)

    def _fill(self, **found: int) -> None:
        """Fill what the network sees into the model config; a value a config file already holds must agree."""
        m = self.cfg.model
        for name, value in found.items():
            if getattr(m, name) not in (0, value):
                raise LargoError(f"config: model {name} is {getattr(m, name)} but the data gives {value}; it is "
                                 f"filled from the dataset (and autoencoder): leave it 0")
        self.cfg.model = dataclasses.replace(m, **found)

    def build_net(self) -> nn.Module:
        return build_unet(self.cfg.model, self.cfg.net_size)

    def setup(self, net: nn.Module, fused: bool) -> None:
        d = self.cfg.diffusion
        if d.loss_weighting == "uncertainty":
            self.uncertainty = UncertaintyWeight().to(self.device)
            self.uncertainty_opt = torch.optim.Adam(self.uncertainty.parameters(), lr=self.cfg.train.lr)
        if d.perceptual_weight or d.feature_match_weight:
            if self.latent is not None:
                raise LargoError("auxiliary losses compare images: they do not apply to a latent model")
            feature_net = load_feature_net(d.aux_net, self.device)
            side, channels = self.cfg.data.resolution, self.cfg.model.image_channels
            with torch.no_grad():  # how many feature maps it gives, so aux_layers beyond them are refused
                n_layers = len(feature_net(torch.zeros(1, channels, side, side, device=self.device)))
            self.auxiliary = AuxiliaryLoss(d, feature_net, n_layers)

    def loss(self, model_fn: nn.Module, net: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int,
             shard: tuple[int, int]) -> torch.Tensor:
        if self.uncertainty_opt is not None and step != self._grad_step:  # first micro-batch of this step
            self.uncertainty_opt.zero_grad(set_to_none=True)
            self._grad_step = step
        if self.cfg.data.augment:
            x, labels = augment(x, self.cfg.data.augment, self.augment_rng, shard, mirror=self.cfg.data.hflip)
            model_fn = Augmented(model_fn, labels, model_num_classes(net))
        if self.auxiliary is None:
            return diffusion_loss(model_fn, x, y, self.schedule, self.cfg.diffusion, shard=shard,
                                  uncertainty=self.uncertainty)
        loss, parts = diffusion_loss(model_fn, x, y, self.schedule, self.cfg.diffusion, shard=shard, parts=True,
                                     uncertainty=self.uncertainty)
        aux, self.logs = self.auxiliary(parts)
        self.logs["mse"] = float(loss.detach())
        return loss + aux

    def after_step(self, step: int, dist: DistInfo) -> None:
        if self.uncertainty_opt is None:
            return
        for p in self.uncertainty.parameters():  # every rank takes the same step
            if p.grad is not None:
                all_reduce_mean(p.grad, dist)
        self.uncertainty_opt.step()

    def grid(self, ema_net: nn.Module, class_names: list[str]) -> Image.Image:
        s = self.cfg.sample
        return class_grid(ema_net, self.cfg, class_names, per_class=s.grid_per_class, seed=0, device=self.device,
                          latent=self.latent)

    def architecture(self, cfg: RunConfig) -> Any:
        return cfg.model

    def meta(self) -> dict:
        return {"prediction": self.cfg.diffusion.prediction,
                "latent": self.latent.record() if self.latent is not None else None}

    def check_resume(self, meta: dict) -> None:
        """A latent run continues only with the autoencoder and normalisation it started with."""
        if self.latent is None:
            return
        record = meta.get("latent") or {}
        if record.get("autoencoder", {}).get("sha256") != self.latent.autoencoder.sha256:
            raise LargoError("cannot resume: the run was trained on another autoencoder's latents")
        latent_space_from_record(record, self.device)  # the recorded autoencoder must still be there and unchanged
        if record.get("scale") != self.latent.scale.tolist() or record.get("shift") != self.latent.shift.tolist():
            raise LargoError("cannot resume: the latent normalisation differs from the checkpoint's")

    def state_dict(self) -> dict:
        state = {"augment_rng": self.augment_rng.get_state()} if self.cfg.data.augment else {}
        if self.uncertainty is None:
            return state
        return {**state, "uncertainty": self.uncertainty.state_dict(),
                "uncertainty_opt": self.uncertainty_opt.state_dict()}

    def load_state_dict(self, state: dict | None) -> None:
        if self.cfg.data.augment:
            if not state or "augment_rng" not in state:
                raise LargoError("cannot resume: the checkpoint has no augmentation generator state (data augment)")
            self.augment_rng.set_state(state["augment_rng"])
        if self.uncertainty is None:
            return
        if not state or "uncertainty" not in state:
            raise LargoError("cannot resume: the checkpoint has no learned uncertainty weights (loss_weighting "
                             "'uncertainty')")
        self.uncertainty.load_state_dict(state["uncertainty"])
        self.uncertainty_opt.load_state_dict(state["uncertainty_opt"])
