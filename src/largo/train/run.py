"""Training as one call: a config (or a run to resume) in, a run directory with checkpoints out."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from largo.config import AutoencoderRunConfig, RunConfig, SectionedConfig, check_overrides, field_sections, preset_config, with_overrides
from largo.errors import LargoError
from largo.runtime import describe_precision
from largo.train.finetune import adopt_source
from largo.train.trainer import Trainer

RESUMABLE_SECTIONS = ("train", "sample")  # autoencoder runs: "train"  # what may change when a run continues; data/model/diffusion are fixed


def new_run_config(preset: str | None = None, config: str | Path | None = None,
                   overrides: dict[str, Any] | None = None, config_cls: type[SectionedConfig] = RunConfig
                   ) -> SectionedConfig:
    """A preset's config, a config.json's, or the defaults, with flat {field: value} overrides, validated."""
    if preset and config:
        raise LargoError("give a preset or a config file, not both")
    cfg = config_cls.load(config) if config else (preset_config(preset, config_cls) if preset else config_cls())
    cfg = with_overrides(cfg, check_overrides(overrides or {}, "config", config_cls=config_cls))
    if isinstance(cfg, RunConfig) and cfg.train.init_from:  # the network, diffusion and resolution of the source
        cfg = adopt_source(cfg, cfg.train.init_from, explicit=set(overrides or {}))
    return cfg.validate()


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None,
                  config_cls: type[SectionedConfig] = RunConfig) -> SectionedConfig:
    """The config of the run in `run_dir`, with train/sample overrides (the rest of a run cannot change)."""
    overrides = overrides or {}
    sections = field_sections(config_cls)
    frozen = sorted({sections[k][0] for k in overrides if k in sections and sections[k][0] not in RESUMABLE_SECTIONS})
    if frozen:
        raise LargoError(f"--resume cannot change the {', '.join(frozen)} config of a run; only train and sample flags")
    cfg = config_cls.load(Path(run_dir) / "config.json")
    return with_overrides(cfg, check_overrides(overrides, "config", config_cls=config_cls)).validate()


def run_config(config_cls: type[SectionedConfig] = RunConfig, *, preset: str | None = None,
               config: str | Path | None = None, run_dir: str | Path | None = None, resume: str | Path | None = None,
               overrides: dict[str, Any] | None = None) -> tuple[SectionedConfig, Path | None]:
    """(config, run directory) of a new run (preset/config file + overrides) or of the run `resume` continues."""
    if resume:
        if preset or config or run_dir:
            raise LargoError("--resume takes its config from the run; drop --preset/--config/--run-dir")
        return resume_config(resume, overrides, config_cls), Path(resume)
    return new_run_config(preset, config, overrides, config_cls), Path(run_dir) if run_dir else None


def default_run_dir(cfg: SectionedConfig) -> Path:
    name = cfg.preset or cfg.data.dataset.replace("folder:", "folder-").replace("/", "_")
    if isinstance(cfg, AutoencoderRunConfig) and not cfg.preset:
        name = "autoencoder-" + name
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(cfg: SectionedConfig, run_dir: str | Path | None = None, *, resume: bool = False, progress: bool = True,
          log: Callable[[str], Any] | None = None, init_from: str | Path | None = None) -> dict[str, Any]:
    """Train `cfg` (a `RunConfig`: a diffusion model; an `AutoencoderRunConfig`: an autoencoder) into `run_dir`
    (default runs/<preset or dataset>-<time>), or continue the run there with `resume=True`. `init_from` (a
    released name, a run or a checkpoint) fine-tunes it: the network, diffusion process and resolution become the
    source's and training starts from its weights and EMA (see `largo.train.finetune`). Returns the summary:
    step, stop_reason, checkpoint, grid, minutes, parameters."""
    if init_from is not None and resume:
        raise LargoError("init_from starts a new run; a resumed run continues from its own checkpoint")
    spec = str(init_from) if init_from is not None else getattr(cfg.train, "init_from", "")
    if spec and not resume and isinstance(cfg, RunConfig):
        cfg = adopt_source(cfg, spec)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    if not resume and ((run_dir / "checkpoints").exists() or (run_dir / "config.json").exists()):
        raise LargoError(f"run directory {run_dir} already holds a run; use --resume {run_dir} to continue "
                         f"it or choose another --run-dir")
    trainer = Trainer(cfg.validate(), run_dir, resume=resume, progress=progress)
    if log:
        what = "an autoencoder on " if trainer.task.kind == "autoencoder" else ""
        log(f"training {what}{cfg.data.dataset} at {cfg.data.resolution}px on {trainer.device} ({describe_precision(trainer.amp_dtype, trainer.device)}), "
            f"{sum(p.numel() for p in trainer.net.parameters()) / 1e6:.2f} M parameters, step {trainer.step} → "
            f"{trainer.total_steps}; run: {run_dir}")
        if trainer.init_event:
            e = trainer.init_event
            log(f"fine-tuning {e['source']} (step {e['source_step']}): classes kept {len(e.get('kept', []))}, new "
                f"{len(e.get('new', []))} (mean + spread of the source's rows), dropped {len(e.get('dropped', []))}")
    return trainer.fit()
