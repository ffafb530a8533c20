"""Checkpoints that never run code: weights in safetensors, the rest through `torch.load(weights_only=True)`.

Layout of a run directory:
    config.json                  the resolved RunConfig
    checkpoints/step_00001000/   model.safetensors, ema.safetensors, state.pt, meta.json
    checkpoints/latest           the name of the newest complete checkpoint folder
A checkpoint folder is written under a temporary name (every file fsynced) and renamed when complete, and
`latest` is replaced atomically afterwards, so a crash at any moment leaves the previous checkpoint usable.
Re-saving the step `latest` names swaps the files one rename at a time, so `latest` never dangles; a missing
or damaged pointer falls back to the newest complete folder. `--keep N` keeps the newest N folders.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from largo.config import SectionedConfig
from largo.errors import LargoError
from largo.io import WriteError, atomic_write_json, atomic_write_text, fsync_dir
from largo.runtime import unwrap_model
from largo.version import __version__

FORMAT_VERSION = 1


def _contiguous_state(net: nn.Module) -> dict[str, torch.Tensor]:
    # Stored under the plain module's names (no DDP/compile prefixes), so any net loads them.
    return {k: v.detach().contiguous().cpu() for k, v in unwrap_model(net).state_dict().items()}


def save_checkpoint(run_dir: Path, step: int, net: nn.Module, ema_net: nn.Module, state: dict[str, Any],
                    cfg: SectionedConfig, keep: int, class_names: list[str], meta: dict[str, Any] | None = None
                    ) -> Path:
    """Write `checkpoints/step_XXXXXXXX/` completely (temporary folder, fsync), then publish it.

    A new step's folder appears by one rename and `latest` is replaced atomically afterwards. Re-saving the step
    `latest` already names (a finished run resumed) swaps
    the files one atomic rename at a time, so `latest` never names a missing or partial folder. A failed write
    (disk full) removes the partial copy and raises a one-line `WriteError`; earlier checkpoints are untouched.
    """
    ckpt_root = run_dir / "checkpoints"
    name = f"step_{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".{name}.tmp-{os.getpid()}"
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f, data in _checkpoint_bytes(step, net, ema_net, state, cfg, class_names, meta or {}).items():
            _write_synced(tmp / f, data)
        fsync_dir(tmp)
        if final.is_dir() and latest_checkpoint(run_dir) == final:
            for f in CHECKPOINT_FILES:  # every file stays present; each is the old or the new copy
                os.replace(tmp / f, final / f)
            fsync_dir(final)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if final.exists():  # not what a resume would load (killed before `latest` was updated)
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_dir(ckpt_root)
        atomic_write_text(ckpt_root / "latest", name + "\n")
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        note = f"; the last complete checkpoint {previous} is intact" if previous else ""
        raise WriteError(final, e, note) from e
    _prune(ckpt_root, keep, protect=name)
    return final


CHECKPOINT_FILES = ("model.safetensors", "ema.safetensors", "state.pt", "meta.json")
BEST = "best"  # checkpoints/best: the best checkpoint by the in-training evaluation (never pruned, never `latest`)


def save_best(run_dir: Path, step: int, net: nn.Module, ema_net: nn.Module, state: dict[str, Any],
              cfg: SectionedConfig, class_names: list[str], meta: dict[str, Any]) -> Path:
    """Write checkpoints/best completely under a temporary name, then swap it in: at any moment `best` is either
    the previous best or the new one, whole."""
    root = run_dir / "checkpoints"
    final, tmp, old = root / BEST, root / f".{BEST}.tmp-{os.getpid()}", root / f".{BEST}.old-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f, data in _checkpoint_bytes(step, net, ema_net, state, cfg, class_names, meta).items():
            _write_synced(tmp / f, data)
        fsync_dir(tmp)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(root)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(final, e, "") from e
    return final


def _checkpoint_bytes(step: int, net: nn.Module, ema_net: nn.Module, state: dict[str, Any], cfg: SectionedConfig,
                      class_names: list[str], extra: dict[str, Any]) -> dict[str, bytes]:
    """Serialise in memory, so a failed write is a plain OSError with its errno (torch.save and safetensors
    report a full disk as cryptic RuntimeError / SafetensorError messages)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    meta = {"format_version": FORMAT_VERSION, "largo_version": __version__, "step": step, "kind": "diffusion",
            "time": time.time(), "class_names": class_names, **extra, "config": cfg.to_dict()}
    return {"model.safetensors": save_safetensors(_contiguous_state(net)),
            "ema.safetensors": save_safetensors(_contiguous_state(ema_net)),
            "state.pt": buffer.getvalue(),
            "meta.json": json.dumps(meta, indent=2).encode()}


def _write_synced(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # named by save_checkpoint after the final folder, not this temporary one
        raise OSError(e.errno, f"{e.strerror or e} (writing {path.name})") from e


def step_of(name: str) -> int | None:
    m = _STEP_NAME.fullmatch(name)
    return int(m.group(1)) if m else None


_STEP_NAME = re.compile(r"step_(\d{8,})")


def _complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file()  # a step folder only ever appears complete (see save_checkpoint)


def _prune(ckpt_root: Path, keep: int, protect: str) -> None:
    done = sorted((p for p in ckpt_root.iterdir() if p.is_dir() and step_of(p.name) is not None),
                  key=lambda p: step_of(p.name))
    for old in done[:-keep] if keep > 0 else []:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root.glob(".step_*.tmp-*"):  # left by a crash mid-write
        shutil.rmtree(stale, ignore_errors=True)


def _pointer_name(ckpt_root: Path) -> str | None:
    """The folder name in `checkpoints/latest`, or None when the pointer is missing or is not a step name."""
    try:
        name = (ckpt_root / "latest").read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if step_of(name) is not None else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint `latest` names; if the pointer is missing or damaged, the newest complete step folder."""
    ckpt_root = Path(run_dir) / "checkpoints"
    if not ckpt_root.is_dir():
        return None
    name = _pointer_name(ckpt_root)
    if name is not None and _complete(ckpt_root / name):
        return ckpt_root / name
    try:
        candidates = [p for p in ckpt_root.iterdir() if step_of(p.name) is not None and _complete(p)]
    except OSError:
        return None
    return max(candidates, key=lambda p: step_of(p.name)) if candidates else None


def read_meta(ckpt: Path) -> dict[str, Any]:
    try:
        meta = json.loads((ckpt / "meta.json").read_text())
    except FileNotFoundError:
        raise LargoError(f"{ckpt} is not a largo checkpoint (no meta.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise LargoError(f"checkpoint metadata {ckpt / 'meta.json'} is corrupt") from None
    except OSError as e:
        raise LargoError(f"cannot read checkpoint metadata {ckpt / 'meta.json'}: {e.strerror or e}") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise LargoError(f"checkpoint {ckpt} has format version {version!r}; this largo reads version "
                         f"{FORMAT_VERSION}")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("step"), int):
        raise LargoError(f"checkpoint metadata {ckpt / 'meta.json'} is corrupt (no config or step)")
    if meta.get("class_names") is not None and not (
            isinstance(meta["class_names"], list) and all(isinstance(c, str) for c in meta["class_names"])):
        raise LargoError(f"checkpoint metadata {ckpt / 'meta.json'} is corrupt (class_names)")
    return meta


def write_config(run_dir: Path, cfg: SectionedConfig) -> None:
    atomic_write_json(run_dir / "config.json", cfg.to_dict())
