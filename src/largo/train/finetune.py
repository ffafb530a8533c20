"""Fine-tuning (`largo train --init-from NAME|RUN|CKPT`, `largo.train(..., init_from=...)`): a new run starts from a
released checkpoint's or a run's weights and EMA instead of a random network.

The network and the diffusion process are the source's (`adopt_source` copies its model and diffusion sections and
its resolution into the new config; a flag that asks for another value is refused). The dataset may have other
classes: rows of the class embedding whose class names match (case, spaces, '_' and '-' ignored) are kept, classes
the dataset lacks are dropped, and new classes start at the mean of the source's class rows plus seeded Gaussian
noise with their per-coordinate spread: as far apart as the source's classes are, so that they can be told apart
from the first step. (Starting every new class at the null-class row, the unconditional model, gives them one
identical row; at a fine-tuning LR AdamW moves each coordinate by about the LR per step, and MNIST fine-tuned from
Fashion-MNIST that way was still at chance after 400 steps: docs/FINETUNE.md.) Image channels and resolution must
match. The optimizer, step count, LR schedule and EMA warm-up start fresh.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from largo.checkpoint import read_meta, read_weights, resolve_checkpoint
from largo.config import RunConfig
from largo.errors import LargoError
from largo.runtime import unwrap_model

FILLED = ("image_channels", "num_classes", "input_size", "augment_dim")  # set from the new dataset, not copied
EMBEDDING = "class_embed.weight"
AUGMENT = "augment_embed.weight"


def source(spec: str) -> tuple[Path, dict, RunConfig]:
    """(checkpoint folder, meta, config) of what --init-from names; one line when it cannot be a source."""
    ckpt = resolve_checkpoint(spec)
    meta = read_meta(ckpt)
    if meta.get("kind", "diffusion") != "diffusion":
        raise LargoError(f"init_from {spec}: {ckpt} holds a {meta.get('kind')} model, not a diffusion model")
    if meta.get("latent"):
        raise LargoError(f"init_from {spec}: a latent model cannot be fine-tuned yet (pixel models only)")
    return ckpt, meta, RunConfig.from_dict(meta["config"])


def adopt_source(cfg: RunConfig, spec: str, explicit: set[str] = frozenset()) -> RunConfig:
    """`cfg` with --init-from's network (model section, filled fields left to the new data), diffusion section
    and resolution. A field in `explicit` (a flag the user gave) that differs from the source's is refused."""
    _, _, src = source(spec)
    cfg = dataclasses.replace(cfg)
    changes: dict[str, tuple[str, Any]] = {"resolution": ("data", src.data.resolution)}
    for section in ("model", "diffusion"):
        for f in dataclasses.fields(getattr(src, section)):
            if f.name not in FILLED:
                changes[f.name] = (section, getattr(getattr(src, section), f.name))
    for name, (section, value) in changes.items():
        mine = getattr(getattr(cfg, section), name)
        if name in explicit and mine != value:
            raise LargoError(f"--{name.replace('_', '-')} {_show(mine)}: the model fine-tuned from {spec} has "
                             f"{name} {_show(value)}, and fine-tuning keeps its network, diffusion process and "
                             f"resolution (drop the flag)")
        setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{name: value}))
    cfg.train = dataclasses.replace(cfg.train, init_from=spec)
    return cfg


def _show(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in " _-")


def check_compatible(cfg: RunConfig, src: RunConfig, spec: str) -> None:
    """Resolution, channels, network and diffusion process must be the source's (one line naming the first
    difference)."""
    if src.data.resolution != cfg.data.resolution:
        raise LargoError(f"init_from {spec} was trained at {src.data.resolution}×{src.data.resolution}; this run is "
                         f"at {cfg.data.resolution}×{cfg.data.resolution}: fine-tuning needs the same resolution")
    if src.model.image_channels != cfg.model.image_channels:
        raise LargoError(f"init_from {spec} has {src.model.image_channels} image channel(s); {cfg.data.dataset} has "
                         f"{cfg.model.image_channels}: fine-tuning needs the same channel count")
    for section in ("model", "diffusion"):
        for f in dataclasses.fields(getattr(src, section)):
            mine, theirs = getattr(getattr(cfg, section), f.name), getattr(getattr(src, section), f.name)
            if f.name not in FILLED and mine != theirs:
                raise LargoError(f"init_from {spec}: its {f.name} is {_show(theirs)}, this run's {_show(mine)}; "
                                 f"fine-tuning keeps the source's network and diffusion process")


def remap_classes(weight: torch.Tensor, old: list[str], new: list[str], seed: int = 0) -> tuple[torch.Tensor, dict]:
    """The class-embedding rows of `new` classes from a (len(old) + 1, d) table whose last row is the null class:
    matching names keep their row, new names start at mean + spread · N(0, 1) of the old class rows (seeded; the
    null row when there is a single old class), the null row stays last."""
    index = {_key(n): i for i, n in enumerate(old)}
    null = weight[len(old)]
    classes = weight[:len(old)]
    g = torch.Generator().manual_seed(seed)
    fresh = [classes.mean(0) + classes.std(0) * torch.randn(weight.shape[1], generator=g) if len(old) > 1 else null
             for _ in new]
    rows = [weight[index[_key(n)]] if _key(n) in index else f for n, f in zip(new, fresh)]
    kept = [n for n in new if _key(n) in index]
    report = {"kept": kept, "new": [n for n in new if _key(n) not in index],
              "dropped": [n for n in old if _key(n) not in {_key(m) for m in new}]}
    return torch.stack(rows + [null]), report


def _fit(state: dict[str, torch.Tensor], target: nn.Module, old: list[str], new: list[str], seed: int) -> dict:
    """`state` (the source's tensors) shaped for `target`: classes remapped, the augmentation layer kept at the
    target's zero initialisation when the source has none (and dropped when the target has none)."""
    mine = unwrap_model(target).state_dict()
    state = {k: v for k, v in state.items() if k != AUGMENT or AUGMENT in mine}
    report: dict = {}
    if EMBEDDING in state and EMBEDDING in mine:
        state[EMBEDDING], report = remap_classes(state[EMBEDDING].float(), old, new, seed)
    if AUGMENT in mine and AUGMENT not in state:
        state[AUGMENT] = mine[AUGMENT]
    missing, unexpected = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
    wrong = [k for k in mine if k in state and state[k].shape != mine[k].shape]
    if missing or unexpected or wrong:
        raise LargoError(f"init_from: the source's weights do not fit this network ("
                         f"{'missing ' + missing[0] if missing else 'unexpected ' + unexpected[0] if unexpected else 'shape of ' + wrong[0]})")
    unwrap_model(target).load_state_dict({k: v.to(mine[k].dtype) for k, v in state.items()})
    return report


def init_from(net: nn.Module, ema_net: nn.Module, cfg: RunConfig, class_names: list[str]) -> dict:
    """Load the --init-from weights into `net` (the source's online weights; a release has only its EMA) and its
    EMA into `ema_net`; returns a record for log.jsonl (source, step, classes kept, new and dropped)."""
    spec = cfg.train.init_from
    ckpt, meta, src = source(spec)
    check_compatible(cfg, src, spec)
    old = list(meta.get("class_names") or [str(i) for i in range(src.model.num_classes)])
    ema = read_weights(ckpt / "ema.safetensors")
    online = read_weights(ckpt / "model.safetensors") if (ckpt / "model.safetensors").is_file() else ema
    report = _fit(online, net, old, class_names, cfg.train.seed)
    _fit(ema, ema_net, old, class_names, cfg.train.seed)
    return {"step": 0, "event": "init_from", "source": str(ckpt), "source_step": meta["step"], **report}
