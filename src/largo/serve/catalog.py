"""The models `largo serve` offers, each under a server-side id: released diffusion checkpoints, the runs found
under a runs folder, and checkpoints named on the command line. A request names a model only by its id; no path
from a request is ever opened."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from largo.checkpoint import latest_checkpoint, read_meta, released_checkpoints, resolve_checkpoint, run_root
from largo.config import SAMPLERS, RunConfig
from largo.errors import LargoError
from largo.metrics.classifier import DomainClassifier, check_classifier, find_classifier, load_classifier
from largo.sampling import LoadedModel, load_model
from largo.sampling.model import distilled_rounds

RUN_SEARCH_DEPTH = 3  # runs/<study>/<group>/<run>
CACHED_MODELS = 2


@dataclass
class ModelEntry:
    id: str
    checkpoint: Path  # a checkpoint folder (meta.json inside), resolved when the server starts
    source: str  # "released", "run" or "given"
    cfg: RunConfig
    class_names: list[str]
    latent: bool
    # a `largo distill` run: the step counts of its students (each its own network), fewest last
    step_choices: tuple[int, ...] = ()

    def describe(self) -> dict:
        s = self.cfg.sample
        return {"id": self.id, "source": self.source, "dataset": self.cfg.data.dataset,
                "resolution": self.cfg.data.resolution, "latent": self.latent, "classes": self.class_names,
                "samplers": list(SAMPLERS), "max_steps": self.cfg.diffusion.timesteps,
                "conditional": self.cfg.model.num_classes > 0,
                "defaults": {"sampler": s.sampler, "steps": s.sample_steps, "cfg": s.cfg},
                "step_choices": list(self.step_choices)}


def _entry(model_id: str, ckpt: Path, source: str) -> ModelEntry | None:
    """The entry of a diffusion checkpoint; None for an autoencoder, a classifier or an unreadable folder."""
    try:
        meta = read_meta(ckpt)
        if meta.get("kind", "diffusion") != "diffusion":
            return None
        cfg = RunConfig.from_dict(meta["config"]).validate(strict=False)
    except (LargoError, KeyError, TypeError, ValueError, OSError):
        return None
    names = list(meta.get("class_names") or [str(i) for i in range(cfg.model.num_classes)]) or ["(unconditional)"]
    run = run_root(ckpt)
    choices = tuple(sorted(distilled_rounds(run), reverse=True)) if run is not None else ()
    return ModelEntry(model_id, ckpt, source, cfg, names, bool(meta.get("latent")), choices)


def _run_dirs(root: Path, depth: int = RUN_SEARCH_DEPTH) -> list[Path]:
    """Run directories (config.json + checkpoints/) under `root`, searched `depth` folders deep."""
    if not root.is_dir() or depth < 0:
        return []
    if (root / "checkpoints").is_dir() and (root / "config.json").is_file():
        return [root]
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    return [run for child in children for run in _run_dirs(child, depth - 1)]


def _unique(name: str, taken: dict) -> str:
    k, out = 2, name
    while out in taken:
        out, k = f"{name} ({k})", k + 1
    return out


def discover(runs: str | Path | None = "runs", given: list[str] | None = None, released: bool = True
             ) -> dict[str, ModelEntry]:
    """id → entry: the released checkpoints (by name), the runs under `runs` (by their path below it) and the
    `given` run directories or checkpoint folders (by folder name); a name is never reused."""
    found: dict[str, ModelEntry] = {}

    def add(name: str, ckpt: Path | None, source: str) -> None:
        entry = _entry(_unique(name, found), ckpt, source) if ckpt is not None else None
        if entry is not None:
            found[entry.id] = entry

    for path in given or []:
        ckpt = resolve_checkpoint(path)  # a path the user typed on the command line: a mistake is a LargoError
        if _entry("x", ckpt, "given") is None:
            raise LargoError(f"{path} does not hold a diffusion model to sample from")
        folder = Path(path).resolve()
        add(folder.name if folder.name != "checkpoints" else folder.parent.name, ckpt, "given")
    if released:
        for name, folder in released_checkpoints().items():
            add(name, folder, "released")
    if runs:
        root = Path(runs)
        for run in _run_dirs(root):
            add(run.relative_to(root).as_posix(), latest_checkpoint(run), "run")
    return found


@dataclass
class ModelCache:
    """The last few loaded models (and the domain classifier of each dataset), so a second request does not
    load again."""
    device: torch.device
    size: int = CACHED_MODELS
    _models: OrderedDict = field(default_factory=OrderedDict)
    _classifiers: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model(self, entry: ModelEntry, steps: int | None = None) -> LoadedModel:
        """The entry's network; for a distilled run, the student trained for `steps` when it has one."""
        student = steps if steps in entry.step_choices else None
        key = (entry.id, student)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            if student is None:
                model = load_model(entry.checkpoint, self.device)
            else:
                model = load_model(run_root(entry.checkpoint), self.device, steps=student)
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return model

    def classifier(self, entry: ModelEntry, channels: int) -> tuple[DomainClassifier, list[str]] | None:
        """The shipped domain classifier of the model's dataset and resolution, when there is one that fits."""
        key = (entry.cfg.data.dataset, entry.cfg.data.resolution, channels)
        with self._lock:
            if key not in self._classifiers:
                self._classifiers[key] = self._load_classifier(entry, channels)
            return self._classifiers[key]

    def _load_classifier(self, entry: ModelEntry, channels: int) -> tuple[DomainClassifier, list[str]] | None:
        path = find_classifier(entry.cfg.data.dataset, entry.cfg.data.resolution)
        if path is None:
            return None
        try:
            net, config = load_classifier(path, self.device)
            check_classifier(config, entry.cfg.data.dataset, entry.cfg.data.resolution, channels, entry.class_names)
        except LargoError:
            return None
        return net, list(config.get("class_names") or entry.class_names)
