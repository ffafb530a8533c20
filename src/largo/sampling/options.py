"""The sampling options of one request, resolved once against a run's sample config and checked once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from largo.config import RunConfig, check_sampling
from largo.errors import LargoError

# How the Python API names each SampleConfig field (the CLI passes its own flag names instead).
KWARG_NAMES = {"sample_steps": "steps", "cfg": "cfg_scale"}


def kwarg_label(field: str) -> str:
    return KWARG_NAMES.get(field, field)


@dataclass(frozen=True)
class SamplingOptions:
    sampler: str
    steps: int
    eta: float
    spacing: str
    cfg_scale: float  # w in eps = eps(x,∅) + w (eps(x,y) - eps(x,∅)); 1 = no guidance, 0 = unconditional
    cfg_interval: tuple[int, int] | None = None  # guide only for timesteps in [lo, hi]
    clip_x0: bool = True
    precision: str = "auto"

    @classmethod
    def resolve(cls, cfg: RunConfig, *, sampler: str | None = None, steps: int | None = None,
                eta: float | None = None, spacing: str | None = None, cfg_scale: float | None = None,
                cfg_interval: tuple[int, int] | None = None, clip_x0: bool | None = None,
                precision: str | None = None, label: Callable[[str], str] = kwarg_label) -> SamplingOptions:
        """Options given here win, the rest come from `cfg.sample`; every value is checked against the run
        (steps ≤ its timesteps, guidance only for a conditional model). `label` names fields in errors."""
        s = cfg.sample
        pick = lambda given, default: default if given is None else given  # noqa: E731
        options = cls(sampler=pick(sampler, s.sampler), steps=pick(steps, s.sample_steps), eta=pick(eta, s.eta),
                      spacing=pick(spacing, s.spacing), cfg_scale=pick(cfg_scale, s.cfg), cfg_interval=cfg_interval,
                      clip_x0=pick(clip_x0, s.clip_x0), precision=pick(precision, s.sample_precision))
        options.check(cfg.diffusion.timesteps, cfg.model.num_classes, label)
        return options

    def check(self, timesteps: int, num_classes: int, label: Callable[[str], str] = kwarg_label) -> None:
        check_sampling({"sampler": self.sampler, "sample_steps": self.steps, "eta": self.eta, "spacing": self.spacing,
                        "cfg": self.cfg_scale, "clip_x0": self.clip_x0, "sample_precision": self.precision},
                       timesteps, label=label)
        if num_classes == 0 and self.cfg_scale != 1:
            raise LargoError(f"this checkpoint is unconditional: classifier-free guidance needs {label('cfg')} 1")
        if self.cfg_interval is not None:
            lo, hi = self.cfg_interval
            if not 0 <= lo <= hi:
                raise LargoError(f"{label('cfg_interval')} needs 0 <= LO <= HI")

    def describe(self) -> str:
        return f"{self.sampler}, {self.steps} steps, cfg {self.cfg_scale:g}"

    def to_dict(self) -> dict:
        return asdict(self)
