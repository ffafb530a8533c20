"""Read a folder of generated images for `largo eval --images DIR`: class sub-folders named by class index or
class name, or a flat folder (no class information: class metrics are skipped).

Images of any size are brought to the evaluation resolution by the datasets' own rule (shorter side resized,
bicubic with antialiasing, then a centre square crop), one image at a time, so memory is bounded by the result,
not by the files. Palette, RGBA and grey-as-RGB images are converted; what cannot be compared without guessing
(colour images for a grayscale dataset, 16-bit images) is refused with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from largo.errors import LargoError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
IGNORED_DIRS = {"eval"}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def _class_index(name: str, class_names: list[str], folder: Path) -> int:
    if name.isdigit():
        c = int(name)
        if c >= len(class_names):
            raise LargoError(f"class folder {folder / name}: index {c} is out of range (the dataset has "
                             f"{len(class_names)} classes)")
        return c
    lookup = {_norm(n): i for i, n in enumerate(class_names)}
    if _norm(name) not in lookup:
        raise LargoError(f"class folder {folder / name}: unknown class name {name!r} "
                         f"(use a class index 0..{len(class_names) - 1} or one of the dataset's class names)")
    return lookup[_norm(name)]


def _read(path: Path, channels: int, resolution: int) -> tuple[np.ndarray, bool]:
    """(uint8 H×W×C array at `resolution`, whether it had to be resized)."""
    try:
        with Image.open(path) as img:
            img.draft("RGB" if channels == 3 else "L", (resolution, resolution))  # JPEGs decode near the target size
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise LargoError(f"image {path} is not 8-bit ({img.mode}); save it as 8-bit PNG")
            img = img.convert("RGB" if img.mode in ("P", "RGBA", "CMYK", "YCbCr", "LA") or img.mode == "RGB" else "L")
            if img.mode == "RGB" and channels == 1:
                arr = np.asarray(img)
                if not (arr == arr[:, :, :1]).all():
                    raise LargoError(f"image {path} is a colour image; the dataset's images are grayscale")
                img = img.convert("L")  # a grayscale image saved as RGB
            if img.mode == "L" and channels == 3:
                raise LargoError(f"image {path} has 1 channel; the dataset's images have 3 (RGB)")
            resized = img.size != (resolution, resolution)
            if resized:
                img = _resize_crop(img, resolution)
            arr = np.array(img, dtype=np.uint8)  # a writable copy
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise LargoError(f"cannot read image {path}: {e}") from None
    return (arr[:, :, None] if arr.ndim == 2 else arr), resized


def _resize_crop(img: Image.Image, resolution: int) -> Image.Image:
    """Shorter side to `resolution` (bicubic, antialiased), then the centre square: the datasets' own rule."""
    w, h = img.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return img.crop((left, top, left + resolution, top + resolution))


RESIZE_RULE = "bicubic-shorter-side-center-crop"


def list_image_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """(class folders holding images, images at the top level)."""
    if not root.is_dir():
        raise LargoError(f"--images {root}: not a folder")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in IGNORED_DIRS
                     and not p.name.startswith("."))
    class_dirs = [d for d in subdirs if _images_in(d)]
    flat = _images_in(root)
    if class_dirs and flat:
        raise LargoError(f"{root} holds both images and class folders; use one layout")
    if not class_dirs and not flat:
        raise LargoError(f"no images ({', '.join(sorted(SUFFIXES))}) in {root} or its class folders")
    return class_dirs, flat


def load_image_folder(folder: str | Path, class_names: list[str], channels: int,
                      resolution: int) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """(uint8 images (N, C, resolution, resolution), int64 labels or None, info with how many were resized)."""
    root = Path(folder)
    class_dirs, flat = list_image_folder(root)
    entries: list[tuple[Path, int | None]] = []
    if class_dirs:
        seen: dict[int, str] = {}
        for d in class_dirs:
            c = _class_index(d.name, class_names, root)
            if c in seen:
                raise LargoError(f"class folders {seen[c]!r} and {d.name!r} in {root} name the same class {c}")
            seen[c] = d.name
            entries += [(p, c) for p in _images_in(d)]
    else:
        entries = [(p, None) for p in flat]
    images = torch.empty((len(entries), channels, resolution, resolution), dtype=torch.uint8)
    resized = 0
    for i, (path, _) in enumerate(entries):
        arr, was_resized = _read(path, channels, resolution)
        images[i] = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        resized += was_resized
    labels = torch.tensor([c for _, c in entries], dtype=torch.long) if class_dirs else None
    info = {"images": str(root), "layout": "class folders" if class_dirs else "flat (no class labels)",
            "n": len(entries), "resolution": resolution, "resized": resized,
            "resize": RESIZE_RULE if resized else "none"}
    return images, labels, info
