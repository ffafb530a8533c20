"""Read a folder of generated images for `largo eval --images DIR`: class sub-folders named by class index or
class name, or a flat folder (no class information: class metrics are skipped)."""

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


def _read(path: Path, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "RGBA", "LA", "I;16", "I"):
                img = img.convert("RGB" if mode in ("P", "RGBA") else "L")
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError) as e:
        raise LargoError(f"cannot read image {path}: {e}") from None
    if arr.dtype != np.uint8:
        raise LargoError(f"image {path} is not 8-bit")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 3 and channels == 1 and (arr == arr[:, :, :1]).all():
        arr = arr[:, :, :1]  # a grayscale image saved as RGB
    if arr.shape[2] != channels:
        raise LargoError(f"image {path} has {arr.shape[2]} channel(s); the dataset's images have {channels}")
    return arr


def _list(root: Path) -> tuple[list[Path], list[Path]]:
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


def probe_resolution(folder: str | Path) -> int:
    """The height of the first image (the folder must not be empty)."""

    class_dirs, flat = _list(Path(folder))
    first = flat[0] if flat else _images_in(class_dirs[0])[0]
    try:
        with Image.open(first) as img:
            return int(img.size[1])
    except OSError as e:
        raise LargoError(f"cannot read image {first}: {e}") from None


def load_image_folder(folder: str | Path, class_names: list[str], channels: int,
                      resolution: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """(uint8 images (N, C, H, W), int64 labels or None, info). All images must be `resolution` square."""
    root = Path(folder)
    class_dirs, flat = _list(root)
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
    arrays = []
    for path, _ in entries:
        arr = _read(path, channels)
        h, w = arr.shape[:2]
        if resolution is None:
            resolution = h
        if (h, w) != (resolution, resolution):
            raise LargoError(f"image {path} is {w}x{h}; expected {resolution}x{resolution} like the others "
                             f"(and the reference set)")
        arrays.append(arr)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([c for _, c in entries], dtype=torch.long) if class_dirs else None
    info = {"images": str(root), "layout": "class folders" if class_dirs else "flat (no class labels)",
            "n": len(entries)}
    return images, labels, info
