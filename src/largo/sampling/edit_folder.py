"""`largo edit`'s job: read the input image (a PNG/JPEG file, or a held-out test image), build the mask, run one
editing algorithm (`largo.sampling.editing`) and write the result, the input and a grid. Every input is checked
before anything is written; a refusal is one line."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from largo.data import load_images
from largo.draw.grid import labelled_grid
from largo.errors import LargoError
from largo.images import safe_name, write_pngs
from largo.io import atomic_save_image, atomic_write_json
from largo.sampling.editing import (check_frames, check_images, check_masks, check_strength, image_to_image, inpaint,
                                    interpolate_classes, interpolate_seeds)
from largo.sampling.model import LoadedModel
from largo.sampling.options import SamplingOptions

MASKS = ("centre", "left", "right", "top", "bottom")  # named masks: the centre square, or one half
MAX_IMAGE_BYTES = 8 * 1024 * 1024


def named_mask(name: str, size: int) -> torch.Tensor:
    """bool (H, W), True = fill: the centre square of half the side, or the named half."""
    m = torch.zeros(size, size, dtype=torch.bool)
    h, q = size // 2, size // 4
    regions = {"centre": (slice(q, q + h), slice(q, q + h)), "left": (slice(None), slice(0, h)),
               "right": (slice(None), slice(h, None)), "top": (slice(0, h), slice(None)),
               "bottom": (slice(h, None), slice(None))}
    if name not in regions:
        raise LargoError(f"unknown mask {name!r}; give a PNG file or one of: {', '.join(MASKS)}")
    m[regions[name]] = True
    return m


def decode_image(data: bytes, channels: int, what: str = "image") -> torch.Tensor:
    """uint8 (1, C, H, W) from encoded bytes (PNG, JPEG, …) in `channels` (1: grayscale, 3: RGB); one line if the
    bytes are not an image."""
    if len(data) > MAX_IMAGE_BYTES:
        raise LargoError(f"the {what} is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            a = np.array(im.convert("L" if channels == 1 else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise LargoError(f"the {what} is not an image that Pillow can read (PNG, JPEG, …)") from None
    return torch.from_numpy(a[:, :, None] if a.ndim == 2 else a).permute(2, 0, 1)[None].contiguous()


def read_image(spec: str, model: LoadedModel, data_root: str = "") -> tuple[torch.Tensor, int | None]:
    """(uint8 (1, C, H, W), its label or None) from a file path or `test:K`, the K-th held-out test image."""
    cfg = model.cfg
    if spec.startswith("test:"):
        try:
            k = int(spec[5:])
        except ValueError:
            raise LargoError(f"--image test:K needs an integer K, got {spec!r}") from None
        test = load_images(cfg.data.dataset, "test", cfg.data.resolution, data_root)
        if not 0 <= k < len(test.labels):
            raise LargoError(f"--image test:{k}: the test split has {len(test.labels)} images")
        return test.images[k:k + 1].clone(), int(test.labels[k])
    path = Path(spec)
    if not path.is_file():
        raise LargoError(f"--image {spec}: no such file (or test:K for a held-out test image)")
    return decode_image(path.read_bytes(), cfg.model.image_channels, f"file {spec}"), None


def read_mask(spec: str, size: int) -> torch.Tensor:
    """bool (H, W), True = fill, from a named mask or a PNG (white ≥ 128 = fill)."""
    if spec in MASKS:
        return named_mask(spec, size)
    path = Path(spec)
    if not path.is_file():
        raise LargoError(f"--mask {spec}: no such file; give a PNG (white = fill) or one of: {', '.join(MASKS)}")
    return decode_image(path.read_bytes(), 1, f"mask {spec}")[0, 0] >= 128


@dataclass
class EditFolder:
    out: Path
    grid: Path
    images: torch.Tensor
    record: dict = field(default_factory=dict)


# long function: the three edits share the checks, the output folder and the record; each branch is a few lines
def edit_to_folder(model: LoadedModel, task: str, options: SamplingOptions, out: Path, *, image: str = "",
                   target: int | None = None, strength: float = 0.6, mask: str = "centre", method: str = "repaint",
                   classes: tuple[int, int] | None = None, seeds: tuple[int, int] | None = None, frames: int = 8,
                   seed: int = 0, device: torch.device | str | None = None, data_root: str = "") -> EditFolder:
    """Run `task` (img2img, inpaint or interpolate) and write OUT/result.png (the strip for interpolate),
    OUT/input.png, OUT/grid.png and OUT/edit.json. Nothing is written when an input is refused."""
    names = model.class_names
    record: dict = {"task": task, "model": str(model.checkpoint), **options.to_dict(), "seed": seed}
    if task in ("img2img", "inpaint"):
        x, label = read_image(image, model, data_root)
        check_images(x, model.cfg)
        target = label if target is None else target
        if target is None:
            raise LargoError("--class is needed for an image from a file (a test:K image defaults to its own class)")
        record |= {"image": image, "class": names[target]}
        if task == "img2img":
            record["strength"] = check_strength(strength)
            result = image_to_image(model.net, model.cfg, x, [target], strength, [seed], options, device=device)
            fill, middle = None, []
        else:
            fill = check_masks(read_mask(mask, x.shape[-1]), x)
            record |= {"mask": mask, "method": method}
            result = inpaint(model.net, model.cfg, x, fill, [target], [seed], options, method=method, device=device)
            shown = torch.where(fill, torch.full_like(x, 128), x)
            middle = [shown]
        record |= {"evaluations_per_image": result.evaluations, "denoising_steps": result.steps}
        images = torch.cat([x, *middle, result.images])
        labels = ["input", *(["masked"] if middle else []), f"-> {names[target]}"]
        out.mkdir(parents=True, exist_ok=True)
        write_pngs(x, [out / "input.png"])
        write_pngs(result.images, [out / "result.png"])
        grid = labelled_grid(images, len(images), [" · ".join(labels)])
    elif task == "interpolate":
        frames = check_frames(frames)
        if classes is not None:
            a, b = classes
            images = interpolate_classes(model.net, model.cfg, a, b, frames, seed, options, device=device)
            title = f"{names[a]} -> {names[b]} (seed {seed})"
        elif seeds is not None and target is not None:
            images = interpolate_seeds(model.net, model.cfg, target, seeds[0], seeds[1], frames, options,
                                       device=device)
            title = f"{names[target]}: seed {seeds[0]} -> {seeds[1]}"
        else:
            raise LargoError("interpolate needs --classes A,B, or --class C with --seeds S1,S2")
        record |= {"title": title, "frames": frames}
        out.mkdir(parents=True, exist_ok=True)
        write_pngs(images, [out / f"frame_{i:02d}.png" for i in range(len(images))])
        grid = labelled_grid(images, len(images), [title])
    else:
        raise LargoError(f"unknown edit {task!r}; valid: img2img, inpaint, interpolate")
    path = out / "grid.png"
    atomic_save_image(path, grid)
    atomic_write_json(out / "edit.json", record)
    return EditFolder(out, path, images, record)


def default_edit_dir(model: LoadedModel, task: str, target_name: str, seed: int) -> Path:
    return Path("edits") / model.checkpoint.name / f"{task}-{safe_name(target_name)}-seed{seed}"
