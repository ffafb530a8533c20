"""Typed run configuration: one source of defaults that becomes the saved config *and* the CLI flags.

Every field of every section is a flat CLI flag (`--base-channels 32`), so field names are unique across
sections. A run directory holds `config.json`, the fully resolved config it was trained with.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from largo.config.checks import check_edm, check_sampling, check_small_data
from largo.config.choices import (CLASS_EMBEDDINGS, LATENT_NORMS, PRECISIONS, PREDICTIONS, SCHEDULES, UPSAMPLES,
                                  WEIGHTINGS)
from largo.errors import LargoError
from largo.io import read_json


@dataclass
class DataConfig:
    dataset: str = "fashion_mnist"  # flowers102 | fashion_mnist | mnist | cifar10 | folder:PATH
    data_root: str = ""  # "" = ../shared/data when it exists, else ~/.cache/largo/data
    resolution: int = 32
    hflip: bool = True  # random horizontal flip p=0.5 (off for digits, where it changes meaning)
    balanced: bool = False  # class-balanced sampling, P(class) ∝ 1/N_c
    # Long-tailed training set (as CIFAR-10-LT): class c keeps N_c · imbalance^(-c/(K-1)) of its images, so the
    # first class is `imbalance` times the last; 1 = the dataset as it is. For studying the balanced sampler.
    imbalance: float = 1.0
    subset: int = 0  # train on a seeded random subset of this many images (0 = all): quick experiments, tests
    split_seed: int = 0  # seed of the 95/5 generative split (flowers, folders)
    download: bool = False  # let torchvision download a dataset that is missing (needs a network)
    bad_images: str = "error"  # folder datasets: "error" stops on a corrupt image, "skip" skips and counts
    # Latent diffusion: train on the latents of this autoencoder (a largo autoencoder run or export, or a diffusers
    # AutoencoderKL folder) instead of on pixels; "" = pixels.
    autoencoder: str = ""
    latent_norm: str = "std"  # latents are scaled by 1/std over all channels ("std", LDM) or per channel ("channel")
    # Non-leaking augmentation (EDM/ADA, data/augment.py): each transform applies with this probability and its
    # parameters condition the network; sampling passes "none" (zeros). 0 = off.
    augment: float = 0.0


@dataclass
class ModelConfig:
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    dropout: float = 0.1
    # How the class reaches the blocks: "concat" = LARGO eq. 12 (class and time embeddings concatenated, then an
    # MLP mixes them); "add" = a class embedding of the block-embedding width added after the time MLP (ADM,
    # diffusers' UNet2DModel).
    class_embedding: str = "concat"
    # The decoder's ×2: "nearest_conv" = nearest neighbour + 3×3 conv (DDPM, LARGO); "transposed" = a 2×2 stride-2
    # transposed conv, 9× fewer multiply-adds (nearest_conv is 16 % of the demo U-Net's convolution work)
    upsample: str = "nearest_conv"
    # Filled from the dataset when a run starts; recorded so a checkpoint rebuilds its network alone.
    image_channels: int = 0  # what the U-Net sees: image channels, or latent channels
    num_classes: int = 0
    input_size: int = 0  # the side of what the U-Net sees: the resolution, or resolution / f for latents (0: resolution)
    augment_dim: int = 0  # width of the augmentation conditioning (filled: data/augment.py's AUG_DIM when augment > 0)
    # A guidance-distilled student (`largo distill`, Meng et al. 2023): the guidance scale w is an input of the net
    # (sinusoidal features → MLP with a zero-initialised output, added to the block embedding), one pass per step.
    guidance_input: bool = False


@dataclass
class DiffusionConfig:
    timesteps: int = 1000
    schedule: str = "linear"  # linear | cosine | sigmoid | karras (σ from sigma_min to sigma_max, ρ = 7: EDM's grid)
    prediction: str = "eps"  # eps | x0 | v | edm (EDM's preconditioned denoiser; trained on log-normal σ)
    loss_weighting: str = "uniform"  # uniform | min_snr (eps/x0/v) | uncertainty (edm: EDM2's learned u(σ))
    min_snr_gamma: float = 5.0
    p_uncond: float = 0.1  # label dropout to the null class, for classifier-free guidance
    # EDM (prediction "edm"): the data's standard deviation in the preconditioning, and ln σ ~ N(p_mean, p_std²)
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    # The karras schedule's σ range (Karras et al. 2022, table 1)
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    zero_terminal_snr: bool = False
    # Auxiliary losses on the predicted clean image x̂0 (off by default; docs/STUDIES.md, "auxiliary losses"):
    # perceptual = LPIPS-style distance of x̂0 to x0 in `aux_net`'s features; feature matching = L1 between their raw
    # feature maps (pix2pixHD's feature-matching loss, Wang et al. 2018).
    perceptual_weight: float = 0.0
    feature_match_weight: float = 0.0
    aux_net: str = ""  # classifier:PATH or NAME (a shipped classifier, e.g. fashion_mnist-32-critic) | vgg19:PATH
    aux_layers: tuple[int, ...] = ()  # which of the network's feature maps (0 = the first); () = all
    # x̂0 only resembles an image at low noise: the terms apply where t < aux_max_t · T (0.25: SNR >= 1.1 on the
    # linear schedule, where x̂0 is more signal than guess).
    aux_max_t: float = 0.25


@dataclass
class TrainConfig:
    steps: int = 10_000  # optimizer steps
    epochs: int = 0  # or passes over the data instead (needs steps 0: one of the two sets the length)
    max_minutes: float = 0.0  # wall-clock budget; 0 = none
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 2e-4
    lr_warmup: int = 0  # linear warm-up steps
    lr_schedule: str = "constant"  # constant | cosine (to zero at `steps`, or where max_minutes runs out first)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay_n = min(decay, (1+n)/(10+n)) so early EMA samples are not noise
    ema_power: float = 0.0  # > 0: warm-up decay_n = min(decay, 1 - (1+n)^-power) (diffusers' EMAModel), e.g. 0.75
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto = bf16 on GPUs that support it and on CPUs with bf16 units (AMX/AVX512-BF16)
    channels_last: bool = False
    compile: bool = False
    log_every: int = 50
    sample_every: int = 0  # steps between sample grids; 0 = only at the end
    checkpoint_every: int = 1000
    keep: int = 2  # checkpoints kept on disk
    max_bad_steps: int = 20  # consecutive non-finite steps before the run stops
    init_from: str = ""  # fine-tune: start from a released name, a run or a checkpoint (weights and EMA)
    eval_every: int = 0  # steps between in-training evaluations (accuracy, FD, recall, memorisation); 0 = none
    eval_n: int = 500  # seeded samples per in-training evaluation
    best_metric: str = "fd"  # the in-training evaluation's number that picks checkpoints/best (fd | accuracy | recall)
    eval_classifier: str = ""  # the judge of in-training evaluations ("" = the shipped one for the dataset)
    phema_every: int = 0  # steps between post-hoc EMA snapshots (EDM2; `largo ema RUN --length …`); 0 = none


@dataclass
class SampleConfig:
    # DPM-Solver++(2M) at 20 steps: the best quality at <= 20 NFE in docs/SAMPLERS.md, within noise of the best at
    # any NFE (DDPM 1000 included).
    sampler: str = "dpmpp2m"
    sample_steps: int = 20
    eta: float = 0.0
    spacing: str = "trailing"
    cfg: float = 3.0  # guidance scale w in eps = eps(x,∅) + w (eps(x,y) - eps(x,∅)); 1 = no guidance
    # Clip each x0 estimate to [-1, 1] (as DDPM/ADM's samplers do in pixel space): it stops an ε-model's error at
    # high noise, multiplied by σ/α ≈ 160 at t = 999, from turning samples into speckle (docs/GPU_RESULTS.md).
    clip_x0: bool = True
    # Network precision while sampling: auto = bf16 on CUDA, fp32 on CPU; bf16 on CPU is 1.8x faster where AMX exists.
    sample_precision: str = "auto"
    grid_per_class: int = 4  # images per class in periodic grids (capped at 16 classes)


class SectionedConfig:
    """Serialisation shared by the run configs: dataclass sections (plus a `preset` name) ↔ a JSON object whose
    unknown keys and mistyped values are one-line errors."""

    @classmethod
    def sections(cls) -> dict[str, type]:
        return {f.name: f.type if isinstance(f.type, type) else typing.get_type_hints(cls)[f.name]
                for f in dataclasses.fields(cls) if f.name != "preset"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        if not isinstance(d, dict):
            raise LargoError("config: expected a JSON object at the top level")
        sections = cls.sections()
        unknown = set(d) - set(sections) - {"preset"}
        if unknown:
            raise LargoError(f"config: unknown section(s) {sorted(unknown)}; valid: {sorted(sections) + ['preset']}")
        kwargs: dict[str, Any] = {name: _section_from_dict(sections[name], d[name], name) for name in sections
                                  if name in d}
        if "preset" in d:
            kwargs["preset"] = coerce_value("preset", d["preset"], str)
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path):
        return cls.from_dict(read_json(path, "config file"))

    def check_finite(self) -> None:
        for section in self.sections():
            for name, value in dataclasses.asdict(getattr(self, section)).items():
                if isinstance(value, float):
                    _check(math.isfinite(value), f"{name} must be a finite number, got {value}")


@dataclass
class RunConfig(SectionedConfig):
    """A diffusion run: what it trains on, the network, the diffusion process, training and sampling."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    preset: str = ""

    @property
    def net_size(self) -> int:
        """The side of what the U-Net sees: the image resolution, or the latent size for latent diffusion."""
        return self.model.input_size or self.data.resolution

    # -- checks ----------------------------------------------------------------------------------
    def validate(self, strict: bool = True) -> RunConfig:
        """Raise LargoError on the first value out of range; return self for chaining.

        strict=False (a finished run's saved config, read to sample or serve it) skips the refusals of values that
        would take no effect: they guard what a user asks for now, and must not lock a trained model away."""
        m, dif, t, s, data = self.model, self.diffusion, self.train, self.sample, self.data
        self.check_finite()
        check_data(data)
        check_train(t)
        check_small_data(self, strict)
        _check(m.image_channels >= 0 and m.num_classes >= 0, "image_channels and num_classes must be >= 0")
        _check(m.base_channels > 0 and m.base_channels % 32 == 0,
               f"base_channels must be a positive multiple of 32 (GroupNorm uses 32 groups), got {m.base_channels}")
        _check(len(m.channel_mult) >= 1 and all(c > 0 for c in m.channel_mult), "channel_mult must be positive")
        _check(m.num_res_blocks >= 1, "num_res_blocks must be >= 1")
        _check(m.num_heads >= 1 and (m.base_channels % m.num_heads == 0), "num_heads must divide base_channels")
        _check(0.0 <= m.dropout < 1.0, "dropout must be in [0, 1)")
        down = 2 ** (len(m.channel_mult) - 1)
        _check(data.latent_norm in LATENT_NORMS,
               f"unknown latent_norm {data.latent_norm!r}; valid: {', '.join(LATENT_NORMS)}")
        _check(bool(data.autoencoder) or data.resolution % down == 0,
               f"resolution {data.resolution} is not divisible by {down}, which the U-Net's "
               f"{len(m.channel_mult) - 1} downsamplings need (try {max(down, data.resolution // down * down)})")
        check_attention(m, self.net_size if strict and (m.input_size or not data.autoencoder) else None)
        _check(2 <= dif.timesteps <= 100_000, f"timesteps must be in [2, 100000], got {dif.timesteps}")
        _check(dif.schedule in SCHEDULES, f"unknown schedule {dif.schedule!r}; valid: {', '.join(SCHEDULES)}")
        _check(dif.prediction in PREDICTIONS, f"unknown prediction {dif.prediction!r}; valid: {', '.join(PREDICTIONS)}")
        _check(dif.loss_weighting in WEIGHTINGS,
               f"unknown loss_weighting {dif.loss_weighting!r}; valid: {', '.join(WEIGHTINGS)}")
        _check(dif.min_snr_gamma > 0, "min_snr_gamma must be > 0")
        _check(m.class_embedding in CLASS_EMBEDDINGS,
               f"unknown class_embedding {m.class_embedding!r}; valid: {', '.join(CLASS_EMBEDDINGS)}")
        _check(m.upsample in UPSAMPLES, f"unknown upsample {m.upsample!r}; valid: {', '.join(UPSAMPLES)}")
        check_edm(dif, strict)
        _check(dif.perceptual_weight >= 0 and dif.feature_match_weight >= 0,
               "perceptual_weight and feature_match_weight must be >= 0")
        _check(0 < dif.aux_max_t <= 1, f"aux_max_t must be in (0, 1], got {dif.aux_max_t}")
        _check(all(i >= 0 for i in dif.aux_layers), "aux_layers must be indices >= 0")
        _check(not (dif.perceptual_weight or dif.feature_match_weight) or dif.aux_net,
               "perceptual_weight / feature_match_weight need --aux-net classifier:PATH or vgg19:PATH")
        _check(0.0 <= dif.p_uncond < 1.0, "p_uncond must be in [0, 1)")
        if strict:
            check_dependents(self)
        check_sampling(dataclasses.asdict(s), dif.timesteps, prefix="config: ")
        _check(s.grid_per_class >= 1, "grid_per_class must be >= 1")
        return self


def check_data(data: DataConfig) -> None:
    _check(8 <= data.resolution <= 2048, f"resolution must be in [8, 2048], got {data.resolution}")
    _check(data.bad_images in ("error", "skip"), "bad_images must be 'error' or 'skip'")
    _check(data.imbalance >= 1, "imbalance must be >= 1 (1 = keep every image)")
    _check(data.subset >= 0, "subset must be >= 0 (0 = every image)")
    folder = data.dataset.startswith("folder:")
    # Settings that only some datasets use: elsewhere they would be accepted and do nothing.
    _check(folder or data.bad_images == "error", "bad_images skip applies to folder: datasets only (the "
                                                 f"{data.dataset} files are read whole or not at all)")
    _check(not folder or not data.data_root, "data_root is not used by a folder: dataset (its path is the "
                                             "folder); drop --data-root")
    _check(not folder or not data.download, "download applies to torchvision datasets, not to a folder: dataset")
    fixed_split = data.dataset.lower().replace("-", "_") in FIXED_SPLITS
    _check(not (fixed_split and data.split_seed and data.imbalance == 1 and not data.subset),
           f"split_seed changes nothing here: {data.dataset} has a fixed train split, and split_seed only seeds "
           f"the flowers102/folder split, --imbalance and --subset")


def check_attention(m: ModelConfig, net_size: int | None) -> None:
    """attention_resolutions name sides of feature maps the U-Net has (net_size halved at each level);
    net_size None (a latent run before its autoencoder is read) checks only what needs no size."""
    res = m.attention_resolutions
    _check(len(set(res)) == len(res), f"attention_resolutions has a duplicate: {list(res)}")
    _check(all(r > 0 for r in res), f"attention_resolutions must be positive sides, got {list(res)}")
    if net_size is None:
        return
    sides = [net_size // 2 ** i for i in range(len(m.channel_mult))]
    never = [r for r in res if r not in sides]
    _check(not never, f"attention_resolutions {never} are never reached: the U-Net's feature maps are "
                      f"{', '.join(map(str, sides))} pixels wide (resolution and channel_mult)")


def check_dependents(cfg: RunConfig) -> None:
    """Refuse a value that another setting switches off (it would be accepted and silently do nothing)."""
    dif, default = cfg.diffusion, DiffusionConfig()
    aux = dif.perceptual_weight or dif.feature_match_weight
    _check(dif.loss_weighting == "min_snr" or dif.min_snr_gamma == default.min_snr_gamma,
           "min_snr_gamma applies only with --loss-weighting min_snr")
    _check(aux or not dif.aux_net, "aux_net is used only with perceptual_weight or feature_match_weight > 0")
    _check(aux or (dif.aux_layers == default.aux_layers and dif.aux_max_t == default.aux_max_t),
           "aux_layers and aux_max_t apply only with perceptual_weight or feature_match_weight > 0")
    _check(len(set(dif.aux_layers)) == len(dif.aux_layers), f"aux_layers has a duplicate: {list(dif.aux_layers)}")
    _check(not (aux and cfg.data.autoencoder), "auxiliary losses compare images: they do not apply to a latent "
                                               "model (drop --perceptual-weight/--feature-match-weight)")
    _check(cfg.data.autoencoder or cfg.data.latent_norm == DataConfig().latent_norm,
           "latent_norm applies only to latent runs (--autoencoder)")
    s, sample_default = cfg.sample, SampleConfig()
    _check(s.sampler == "ddim" or s.eta == sample_default.eta,
           f"eta applies only to the ddim sampler (sampler is {s.sampler})")
    _check(s.sampler not in CONTINUOUS_SAMPLERS or s.spacing == sample_default.spacing,
           f"spacing applies only to the discrete samplers: {s.sampler} walks Karras sigmas")
    _check(dif.p_uncond > 0 or cfg.sample.cfg == 1,
           f"p_uncond 0 trains no unconditional model, which guidance (cfg {cfg.sample.cfg:g}) needs: set --cfg 1 "
           f"or --p-uncond > 0")


def check_train(t: TrainConfig) -> None:
    _check(t.steps >= 1 or t.epochs >= 1, "train needs steps >= 1 or epochs >= 1")
    _check(t.epochs >= 0 and t.max_minutes >= 0, "epochs and max_minutes must be >= 0")
    _check(t.epochs == 0 or t.steps == 0, f"steps {t.steps} and epochs {t.epochs} both set the run's length: "
                                          "train by epochs with --steps 0, or by steps with --epochs 0")
    _check(t.batch_size >= 1 and t.grad_accum >= 1, "batch_size and grad_accum must be >= 1")
    _check(t.lr > 0, "lr must be > 0")
    _check(t.lr_warmup >= 0, "lr_warmup must be >= 0")
    _check(t.lr_warmup != 1, "lr_warmup 1 changes nothing (warm-up step k runs at lr·(k+1)/lr_warmup, so the first "
                             "step already has the full lr): use 0 or >= 2")
    _check(t.lr_schedule in ("constant", "cosine"), "lr_schedule must be 'constant' or 'cosine'")
    _check(t.weight_decay >= 0 and t.grad_clip >= 0, "weight_decay and grad_clip must be >= 0")
    _check(0.0 <= t.ema_decay < 1.0, "ema_decay must be in [0, 1)")
    _check(t.ema_power >= 0, "ema_power must be >= 0")
    _check(t.ema_warmup or t.ema_power == 0, "ema_power shapes the EMA warm-up: it needs --ema-warmup true")
    _check(t.precision in PRECISIONS, f"unknown precision {t.precision!r}; valid: {', '.join(PRECISIONS)}")
    _check(t.log_every >= 1 and t.checkpoint_every >= 1, "log_every and checkpoint_every must be >= 1")
    _check(t.sample_every >= 0 and t.keep >= 1 and t.max_bad_steps >= 1,
           "sample_every must be >= 0, keep and max_bad_steps >= 1")


# What a run fills in from its dataset (and autoencoder) when it starts: a flag or override cannot set them.
FILLED_FIELDS = ("image_channels", "num_classes", "input_size", "augment_dim", "guidance_input")
FIXED_SPLITS = ("fashion_mnist", "fashionmnist", "mnist", "cifar10")
CONTINUOUS_SAMPLERS = ("euler", "heun")  # Karras sigmas: no timestep spacing

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "diffusion": DiffusionConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
}
SECTION_NAMES = sorted(SECTIONS) + ["preset"]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise LargoError(f"config: {message}")


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_value(name: str, value: Any, typ: Any) -> Any:
    """Check a JSON value against a field's annotated type (bool is not an int here)."""
    origin = typing.get_origin(typ)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise LargoError(f"config: {name} must be a list of integers, got {value!r}")
        return tuple(value)
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, typ)
    if not ok:
        raise LargoError(f"config: {name} must be {getattr(typ, '__name__', typ)}, got {value!r}")
    return value


def _section_from_dict(cls: type, d: Any, section: str) -> Any:
    if not isinstance(d, dict):
        raise LargoError(f"config: section {section!r} must be an object")
    types = field_types(cls)
    unknown = set(d) - set(types)
    if unknown:
        raise LargoError(f"config: unknown key(s) {sorted(unknown)} in section {section!r}")
    return cls(**{k: coerce_value(f"{section}.{k}", v, types[k]) for k, v in d.items()})
