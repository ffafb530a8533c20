"""The autoencoder's configs: its architecture, its loss, and the run that trains it (`largo autoencoder train`).

The data and train sections are the diffusion run's own (`DataConfig`, `TrainConfig`), so an autoencoder run has
the same run directory, checkpoints, resume, EMA and logs as a diffusion run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from largo.config.choices import RECONSTRUCTION_LOSSES
from largo.config.checks import check_diffusion_only
from largo.config.run import DataConfig, SectionedConfig, TrainConfig, _check, check_data, check_train
from largo.errors import LargoError

_VALID_FACTORS = (1, 2, 4, 8, 16)
PERCEPTUAL_KINDS = ("classifier:", "vgg19:")


@dataclass
class AutoencoderConfig:
    """Architecture of a `KLAutoencoder`; the downsampling factor is f = 2**(len(channel_mult) - 1)."""

    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    latent_channels: int = 4
    mid_attention: bool = True
    dropout: float = 0.0
    image_channels: int = 3

    def __post_init__(self) -> None:
        # Configs read from YAML/JSON carry lists; a tuple keeps the dataclass hashable and comparable.
        if isinstance(self.channel_mult, list):
            self.channel_mult = tuple(self.channel_mult)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    def validate(self) -> AutoencoderConfig:
        """Raise a one-line `LargoError` for the first bad value; return self so calls can be chained."""
        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not is_int(self.base_channels) or self.base_channels <= 0 or self.base_channels % 32:
            raise LargoError(f"autoencoder base_channels must be a positive multiple of 32 (GroupNorm uses 32 "
                             f"groups), got {self.base_channels!r}")
        if not self.channel_mult or not all(is_int(m) and m > 0 for m in self.channel_mult):
            raise LargoError(f"autoencoder channel_mult must be a non-empty list of positive integers, "
                             f"got {self.channel_mult!r}")
        if self.downsample_factor not in _VALID_FACTORS:
            raise LargoError(f"autoencoder downsampling factor 2**(len(channel_mult)-1) = {self.downsample_factor} "
                             f"is not one of {_VALID_FACTORS}; use 1 to 5 entries in channel_mult")
        if not is_int(self.num_res_blocks) or self.num_res_blocks < 1:
            raise LargoError(f"autoencoder num_res_blocks must be an integer >= 1, got {self.num_res_blocks!r}")
        if not is_int(self.latent_channels) or self.latent_channels < 1:
            raise LargoError(f"autoencoder latent_channels must be an integer >= 1, got {self.latent_channels!r}")
        if not is_int(self.image_channels) or self.image_channels < 1:
            raise LargoError(f"autoencoder image_channels must be an integer >= 1, got {self.image_channels!r}")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise LargoError(f"autoencoder dropout must be in [0, 1), got {self.dropout!r}")
        return self


@dataclass
class AutoencoderLossConfig:
    """Weights of the autoencoder loss; see the module docstring for the per-element convention."""

    reconstruction: str = "l1"  # "l1" | "l2"
    kl_weight: float = 1e-6
    perceptual_weight: float = 1.0
    disc_weight: float = 0.5  # 0: no discriminator at all
    disc_start: int = 5000  # optimizer step at which the GAN terms switch on (LDM starts them late: the
    #                         discriminator wins easily against blurry early reconstructions and destabilises them)
    disc_layers: int = 3
    # The network whose features the perceptual term compares: "" = none, "classifier:PATH" = a largo domain
    # classifier folder, "vgg19:PATH" = torchvision VGG19 weights on disk. Score the autoencoder with another network.
    perceptual_net: str = ""

    def validate(self) -> AutoencoderLossConfig:
        """Raise a one-line `LargoError` for the first bad value; return self."""
        if self.perceptual_net and not self.perceptual_net.startswith(PERCEPTUAL_KINDS):
            raise LargoError(f"perceptual_net must be '' (none), classifier:PATH or vgg19:PATH, got "
                             f"{self.perceptual_net!r}")
        if self.reconstruction not in RECONSTRUCTION_LOSSES:
            raise LargoError(f"autoencoder reconstruction loss must be 'l1' or 'l2', got {self.reconstruction!r}")
        for name in ("kl_weight", "perceptual_weight", "disc_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise LargoError(f"autoencoder {name} must be a finite number >= 0, got {v!r}")
        if isinstance(self.disc_start, bool) or not isinstance(self.disc_start, int) or self.disc_start < 0:
            raise LargoError(f"autoencoder disc_start must be an integer >= 0, got {self.disc_start!r}")
        if isinstance(self.disc_layers, bool) or not isinstance(self.disc_layers, int) or self.disc_layers < 1:
            raise LargoError(f"autoencoder disc_layers must be an integer >= 1, got {self.disc_layers!r}")
        return self


@dataclass
class AutoencoderRunConfig(SectionedConfig):
    """An autoencoder run: the images it learns, its architecture, its loss and the shared train section."""

    data: DataConfig = field(default_factory=lambda: DataConfig(hflip=True))
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    loss: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-4, ema_decay=0.999, weight_decay=0.0))
    preset: str = ""

    def validate(self) -> AutoencoderRunConfig:
        self.check_finite()
        check_data(self.data)
        check_train(self.train)
        check_diffusion_only(self.train)
        _check(not self.data.autoencoder, "an autoencoder run trains on pixels: drop --autoencoder")
        self.autoencoder.validate()
        self.loss.validate()
        loss, off = self.loss, AutoencoderLossConfig()
        # Settings that another one switches off: accepted, they would silently do nothing.
        _check(loss.perceptual_net or loss.perceptual_weight == off.perceptual_weight,
               "perceptual_weight applies only with --perceptual-net classifier:PATH or vgg19:PATH")
        _check(not loss.perceptual_net or loss.perceptual_weight > 0,
               "perceptual_net is unused with perceptual_weight 0")
        _check(loss.disc_weight > 0 or (loss.disc_start, loss.disc_layers) == (off.disc_start, off.disc_layers),
               "disc_start and disc_layers apply only with disc_weight > 0 (0 = no discriminator)")
        f = self.autoencoder.downsample_factor
        _check(self.data.resolution % f == 0, f"resolution {self.data.resolution} is not divisible by the "
                                              f"autoencoder's downsampling factor {f}")
        return self
