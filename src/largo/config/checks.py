"""Checks of sampling settings, in one place whoever sets them (config, CLI flags, sweep grids, pictures)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from largo.config.choices import SAMPLE_PRECISIONS, SAMPLERS, SPACINGS
from largo.errors import LargoError

SAMPLING_CHOICES = {"sampler": SAMPLERS, "spacing": SPACINGS, "sample_precision": SAMPLE_PRECISIONS}


def check_sampling(values: dict[str, Any], timesteps: int | None = None, *, prefix: str = "",
                   label: Callable[[str], str] = str) -> None:
    """Raise a one-line LargoError for the first sampling value out of range. `values` uses SampleConfig's names
    (sampler, sample_steps, eta, spacing, cfg, clip_x0, sample_precision; absent keys are not checked);
    `label` names a field the way the user wrote it (e.g. "--steps") and `prefix` says where ("config: ")."""
    def fail(message: str) -> None:
        raise LargoError(prefix + message)

    for key, valid in SAMPLING_CHOICES.items():
        if key in values and values[key] not in valid:
            fail(f"unknown {label(key)} {values[key]!r}; valid: {', '.join(valid)}")
    if "sample_steps" in values:
        v = values["sample_steps"]
        if timesteps is None and not (_is_int(v) and v >= 1):
            fail(f"{label('sample_steps')} must be an integer >= 1, got {v!r}")
        if timesteps is not None and not (_is_int(v) and 1 <= v <= timesteps):
            fail(f"{label('sample_steps')} must be in [1, {timesteps}], got {v!r}")
    for key, hi in (("eta", 1.0), ("cfg", None)):
        if key not in values:
            continue
        v = values[key]
        if not _is_number(v):
            fail(f"{label(key)} must be a finite number, got {v!r}")
        if v < 0:
            fail(f"{label(key)} must be >= 0, got {v:g}")
        if hi is not None and v > hi:
            fail(f"{label(key)} must be <= {hi:g} (1 = DDPM's variance), got {v:g}")
    if "clip_x0" in values and not isinstance(values["clip_x0"], bool):
        fail(f"{label('clip_x0')} must be true or false, got {values['clip_x0']!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- fine-tuning, augmentation, in-training evaluation, post-hoc EMA (issue 24) --------------------------------
BEST_METRICS = ("fd", "accuracy", "recall")  # what picks checkpoints/best: FD lowest, the others highest
EVAL_MIN_N = 20  # precision/recall's k-NN radii (k = 3) and the held-out 1st percentile need a few tens of images
DIFFUSION_ONLY = ("init_from", "eval_every", "phema_every")


def check_small_data(cfg: Any, strict: bool = True) -> None:
    """The issue-24 settings of a diffusion run (`RunConfig`): in range, and refused where they would do nothing."""
    data, t = cfg.data, cfg.train

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise LargoError(f"config: {message}")

    need(0.0 <= data.augment <= 1.0, f"augment is a probability in [0, 1], got {data.augment:g}")
    need(not (data.augment and data.autoencoder), "augment transforms images: it does not apply to a latent run "
                                                  "(--autoencoder)")
    need(not (t.init_from and data.autoencoder), "init_from is for pixel models; fine-tuning a latent model is not "
                                                 "supported")
    need(t.eval_every >= 0 and t.phema_every >= 0, "eval_every and phema_every must be >= 0 (0 = off)")
    need(t.eval_n >= EVAL_MIN_N, f"eval_n must be >= {EVAL_MIN_N}, got {t.eval_n}")
    need(t.best_metric in BEST_METRICS, f"unknown best_metric {t.best_metric!r}; valid: {', '.join(BEST_METRICS)}")
    if strict and not t.eval_every:
        for name, default in (("eval_n", 500), ("best_metric", "fd"), ("eval_classifier", "")):
            need(getattr(t, name) == default, f"{name} applies only with --eval-every N > 0")


def check_diffusion_only(train: Any) -> None:
    """An autoencoder run refuses the train settings that only a diffusion run uses."""
    for name in DIFFUSION_ONLY:
        if getattr(train, name):
            raise LargoError(f"config: {name} applies to diffusion runs, not to an autoencoder")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise LargoError(f"config: {message}")


def check_edm(dif: Any, strict: bool = True) -> None:
    """EDM's settings take effect only with prediction edm, the σ range only with the karras schedule: refuse
    them elsewhere rather than accept a value that changes nothing (strict=False: only what breaks a run)."""
    edm, default = dif.prediction == "edm", type(dif)()  # a DiffusionConfig
    _need(dif.sigma_data > 0 and dif.p_std > 0, "sigma_data and p_std must be > 0")
    _need(0 < dif.sigma_min < dif.sigma_max, "the karras schedule needs 0 < sigma_min < sigma_max")
    for name in ("sigma_data", "p_mean", "p_std") if strict else ():
        _need(edm or getattr(dif, name) == getattr(default, name),
               f"{name} applies to prediction 'edm' only (this run predicts {dif.prediction!r})")
    for name in ("sigma_min", "sigma_max") if strict else ():
        _need(dif.schedule == "karras" or getattr(dif, name) == getattr(default, name),
               f"{name} applies to the karras schedule only (this run's schedule is {dif.schedule!r})")
    if edm:
        _need(dif.loss_weighting in ("uniform", "uncertainty"),
               f"loss_weighting {dif.loss_weighting!r} does not apply to prediction 'edm'; valid: uniform (EDM's "
               "λ(σ)), uncertainty (EDM2's learned weighting)")
        _need(not dif.zero_terminal_snr, "zero_terminal_snr does not apply to prediction 'edm' (σ stays finite)")
    else:
        _need(dif.loss_weighting != "uncertainty", "loss_weighting 'uncertainty' needs prediction 'edm'")
    _need(not (dif.zero_terminal_snr and dif.schedule == "karras"),
           "zero_terminal_snr does not apply to the karras schedule (its largest σ is sigma_max)")
