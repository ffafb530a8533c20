"""Finding a checkpoint by what a user types: a run directory, a checkpoint folder or a released name."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from largo.checkpoint.load import read_weights
from largo.checkpoint.store import latest_checkpoint, read_meta, step_of
from largo.errors import LargoError
from largo.io import atomic_write, atomic_write_json
from largo.paths import released_dirs


def released_checkpoints() -> dict[str, Path]:
    """Released checkpoints by name, over the search path of `largo.paths.released_dirs` (the first one wins)."""
    found: dict[str, Path] = {}
    for root in released_dirs():
        for d in sorted(root.iterdir()):
            if (d / "meta.json").is_file() and d.name not in found:
                found[d.name] = d
    return found


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory (its latest checkpoint), a checkpoint folder, or a released checkpoint's name."""
    p = Path(path)
    if not p.exists():
        released = released_checkpoints()
        if str(path) not in released:
            hint = f"; released checkpoints: {', '.join(released)}" if released else \
                "; no released checkpoints found (see `largo checkpoints`)"
            raise LargoError(f"no run, checkpoint or released checkpoint named {path}{hint}")
        p = released[str(path)]
    if (p / "meta.json").exists():
        return p
    if (p / "checkpoints").is_dir() or (p / "config.json").exists():
        ckpt = latest_checkpoint(p)
        if ckpt is None:
            raise LargoError(f"run {p} has no complete checkpoint yet")
        return ckpt
    raise LargoError(f"{p} is neither a run directory nor a checkpoint folder")


def run_root(ckpt: Path) -> Path | None:
    """The run directory a checkpoint folder belongs to (RUN/checkpoints/step_N), or None for a released one."""
    ckpt = Path(ckpt)
    is_step = ckpt.parent.name == "checkpoints" and step_of(ckpt.name) is not None
    return ckpt.parent.parent if is_step else None


def export_release(source: str | Path, out: str | Path, dtype: str = "fp16") -> dict:
    """Write OUT/ema.safetensors (fp16 or fp32) and OUT/meta.json from a run's latest checkpoint, so that
    `largo sample OUT` works without the training state. Returns {"step", "dtype", "size_mib", "params", "out"}."""
    if dtype not in ("fp16", "fp32"):
        raise LargoError(f"unknown export dtype {dtype!r}; valid: fp16, fp32")
    ckpt, out = resolve_checkpoint(source), Path(out)
    meta = read_meta(ckpt)
    if out.resolve() == ckpt.resolve():
        raise LargoError("--out must differ from the source checkpoint")
    state = read_weights(ckpt / "ema.safetensors")
    torch_dtype = torch.float16 if dtype == "fp16" else torch.float32
    state = {k: v.to(torch_dtype) if v.is_floating_point() else v for k, v in state.items()}
    for name, value in state.items():
        if not torch.isfinite(value.float()).all():
            raise LargoError(f"EMA weight {name} is not finite in {dtype}; export with --dtype fp32")
    atomic_write(out / "ema.safetensors", lambda tmp: save_file(state, tmp))
    if meta.get("latent"):  # a latent model carries its autoencoder, so the export loads by name alone
        meta = {**meta, "latent": _copy_autoencoder(meta["latent"], ckpt, out / "autoencoder")}
    atomic_write_json(out / "meta.json", {**meta, "exported_from": str(ckpt), "weights_dtype": dtype})
    return {"step": meta["step"], "dtype": dtype, "size_mib": (out / "ema.safetensors").stat().st_size / 2**20,
            "params": sum(v.numel() for v in state.values()), "out": str(out)}


AUTOENCODER_FILES = {"largo": ("ema.safetensors", "meta.json"),
                     "diffusers": ("config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")}


def _copy_autoencoder(record: dict, ckpt: Path, dest: Path) -> dict:
    """Copy the autoencoder a latent checkpoint records into `dest` byte for byte (its sha256 stays valid) and
    return the record pointing there (relative to the export)."""
    ae = record.get("autoencoder") or {}
    src = Path(ae.get("path", ""))
    src = src if src.is_absolute() else ckpt / src
    if not src.is_dir():
        raise LargoError(f"cannot export: the latent model's autoencoder {src} is missing")
    copied = 0
    for name in AUTOENCODER_FILES.get(ae.get("kind"), ()):
        if (src / name).is_file():
            data = (src / name).read_bytes()
            atomic_write(dest / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
            copied += 1
    if not copied:
        raise LargoError(f"cannot export: no autoencoder files in {src}")
    return {**record, "autoencoder": {**ae, "path": dest.name}}


def describe_released() -> list[dict]:
    """One row per released checkpoint: name, folder, kind, dataset, resolution, step and its card's headline."""
    rows = []
    for name, folder in released_checkpoints().items():
        try:
            meta = read_meta(folder)
        except LargoError as e:
            rows.append({"name": name, "path": str(folder), "error": str(e)})
            continue
        data = meta["config"].get("data", {})
        card = folder / "README.md"
        lines = card.read_text(errors="replace").splitlines() if card.is_file() else []
        headline = next((ln.lstrip("# ").strip() for ln in lines if ln.startswith("# ")), "")
        rows.append({"name": name, "path": str(folder), "kind": meta.get("kind", "diffusion"),
                     "dataset": data.get("dataset"), "resolution": data.get("resolution"), "step": meta["step"],
                     "headline": headline.split(": ", 1)[-1] if headline.startswith(name) else headline})
    return rows
