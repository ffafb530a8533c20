"""The sampling options of one request, resolved once against a run's sample config and checked once.

`SamplingOptions` is the one vocabulary of sampling options (after guided-diffusion's script_util: flag name =
argument = config key): its field names are the CLI flags (`steps` ↔ `--steps`, `cfg_interval` ↔ `--cfg-interval`),
the keyword arguments of the Python API, the keys of a sweep grid, the request fields of `largo serve` and the keys
of every record (`to_dict()` is the record). Only the saved run config keeps two older names (`SampleConfig`'s
`sample_steps` and `sample_precision`, read by released checkpoints): `CONFIG_FIELDS` maps them, here alone."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from largo.config import RunConfig, check_sampling
from largo.errors import LargoError

# SamplingOptions field → the SampleConfig field that holds its default (where the two names differ).
CONFIG_FIELDS = {"steps": "sample_steps", "precision": "sample_precision"}
OPTION_NAMES = {v: k for k, v in CONFIG_FIELDS.items()}


@dataclass(frozen=True)
class SamplingOptions:
    sampler: str
    steps: int
    eta: float
    spacing: str
    cfg: float  # guidance scale w in eps = eps(x,∅) + w (eps(x,y) - eps(x,∅)); 1 = no guidance, 0 = unconditional
    cfg_interval: tuple[int, int] | None = None  # guide only for timesteps in [lo, hi]
    clip_x0: bool = True
    precision: str = "auto"  # network precision while sampling: auto, fp32 or bf16
    # autoguidance: a weaker model of the same data (run, checkpoint or released name) replaces the unconditional
    # branch of guidance, D = D_guide + cfg · (D − D_guide); None = classifier-free guidance
    guide_with: str | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names: the one vocabulary of sampling options."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def resolve(cls, run_config: RunConfig, /, *, sampler: str | None = None, steps: int | None = None,
                eta: float | None = None, spacing: str | None = None, cfg: float | None = None,
                cfg_interval: tuple[int, int] | None = None, clip_x0: bool | None = None,
                precision: str | None = None, guide_with: str | None = None, label: Callable[[str], str] = str,
                cfg_scale: float | None = None) -> SamplingOptions:
        """Options given here win, the rest come from `run_config.sample`; every value is checked against the run
        (steps ≤ its timesteps, guidance only for a conditional model). `label` names a field in errors the way
        the caller's user wrote it (e.g. "--steps"). `cfg_scale` is the old name of `cfg` (deprecated)."""
        if cfg_scale is not None:
            warnings.warn("SamplingOptions: cfg_scale= is now cfg=", DeprecationWarning, stacklevel=2)
            cfg = cfg_scale if cfg is None else cfg
        given = {"sampler": sampler, "steps": steps, "eta": eta, "spacing": spacing, "cfg": cfg,
                 "cfg_interval": cfg_interval, "clip_x0": clip_x0, "precision": precision,
                 "guide_with": guide_with or None}
        s = run_config.sample
        values = {name: value if value is not None else getattr(s, CONFIG_FIELDS.get(name, name), None)
                  for name, value in given.items()}
        if eta is None and values["sampler"] != "ddim":
            values["eta"] = 0.0  # the run's eta belongs to its ddim sampler; another sampler given here reads none
        options = cls(**values)
        options.check(run_config.diffusion.timesteps, run_config.model.num_classes, label)
        return options

    def check(self, timesteps: int | None = None, num_classes: int | None = None,
              label: Callable[[str], str] = str) -> None:
        """A one-line LargoError for the first value out of range (steps ≤ `timesteps` when given, no guidance
        for an unconditional model when `num_classes` is given, eta only for ddim: another sampler would ignore it)."""
        check_option_values(self.to_dict(), timesteps, label=label)
        if self.sampler != "ddim" and self.eta != 0:
            raise LargoError(f"{label('eta')} applies only to the ddim sampler ({label('sampler')} is {self.sampler})")
        if num_classes == 0 and self.cfg != 1:
            raise LargoError(f"this checkpoint is unconditional: classifier-free guidance needs {label('cfg')} 1")

    def describe(self) -> str:
        guide = f" guided by {self.guide_with}" if self.guide_with else ""
        return f"{self.sampler}, {self.steps} steps, cfg {self.cfg:g}{guide}"

    def to_dict(self) -> dict:
        return asdict(self)


def check_option_values(values: dict, timesteps: int | None = None, *, prefix: str = "",
                        label: Callable[[str], str] = str) -> None:
    """Check sampling values named as `SamplingOptions` names them (absent keys are not checked)."""
    config_values = {CONFIG_FIELDS.get(k, k): v for k, v in values.items() if k not in ("cfg_interval", "guide_with")}
    check_sampling(config_values, timesteps, prefix=prefix, label=lambda field: label(OPTION_NAMES.get(field, field)))
    interval = values.get("cfg_interval")
    if interval is not None:
        ok = isinstance(interval, (list, tuple)) and len(interval) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in interval)
        if not ok or not 0 <= interval[0] <= interval[1]:
            raise LargoError(f"{prefix}{label('cfg_interval')} needs 0 <= LO <= HI, got {interval!r}")
    guide = values.get("guide_with")
    if guide is not None and (not isinstance(guide, str) or not guide.strip()):
        raise LargoError(f"{prefix}{label('guide_with')} needs a run, checkpoint folder or released name")
