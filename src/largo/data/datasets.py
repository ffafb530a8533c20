"""Datasets by name, decoded once into uint8 tensors (N, C, H, W) and cached on disk.

After the first run no JPEG is decoded again: the cache file is keyed by dataset, split, resolution and (for
folders) a fingerprint of the files. Training works on the cached tensors directly (see `loader.py`).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from largo.config.choices import SPLITS
from largo.errors import LargoError
from largo.io import atomic_write
from largo.paths import cache_dir, default_data_root

DATASETS = ("flowers102", "fashion_mnist", "mnist", "cifar10", "folder:PATH")
GENERATIVE_TEST_FRACTION = 0.05  # LARGO: all official splits merged, shuffled, re-split 95 % / 5 %
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
CACHE_VERSION = 1


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    class_names: list[str]
    skipped: list[str] | None = None  # folder datasets: unreadable files that were skipped

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_images(dataset: str, split: str = "train", resolution: int = 32, data_root: str = "",
                download: bool = False, bad_images: str = "error", split_seed: int = 0) -> ImageSet:
    """Load a dataset split as uint8 tensors at `resolution`, from the cache when it is there."""
    if split not in SPLITS:
        raise LargoError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    root = Path(data_root) if data_root else default_data_root()
    name, source = _parse_name(dataset)
    key = {"v": CACHE_VERSION, "dataset": name, "resolution": resolution, "split_seed": split_seed,
           "source": _fingerprint(name, root, source)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = cache_dir("datasets") / f"{name}-{resolution}-{digest}.npz"
    full = _read_cache(cache_file)
    if full is None:
        full = _decode(name, root, source, resolution, download, bad_images)
        _write_cache(cache_file, full)
    if full.skipped:
        if bad_images != "skip":  # the cache was built by an earlier --bad-images skip run
            raise LargoError(f"cannot read image {full.skipped[0]} ({len(full.skipped)} unreadable in "
                             f"{source}; use --bad-images skip to skip such files)")
        shown = ", ".join(full.skipped[:5]) + (", …" if len(full.skipped) > 5 else "")
        print(f"largo: skipped {len(full.skipped)} unreadable image(s): {shown}")
    return _select_split(full, name, split, split_seed)


def long_tailed(data: ImageSet, imbalance: float, seed: int = 0) -> ImageSet:
    """A long-tailed subset: class c keeps round(n_c · imbalance^(-c/(K-1))) images (at least 1), chosen by a
    seeded permutation, so class 0 has `imbalance` times as many as class K-1 (the CIFAR-10-LT profile)."""
    if imbalance == 1:
        return data
    k = data.num_classes
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(k):
        idx = torch.nonzero(data.labels == c).flatten()
        n = max(1, round(len(idx) * imbalance ** (-c / max(k - 1, 1))))
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    keep = torch.cat(keep).sort().values
    return ImageSet(data.images[keep], data.labels[keep], data.class_names)


def random_subset(data: ImageSet, n: int, seed: int = 0) -> ImageSet:
    """A seeded random subset of `n` images in their original order (0, or n >= len: the set as it is)."""
    if n <= 0 or n >= len(data):
        return data
    keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return ImageSet(data.images[keep], data.labels[keep], data.class_names)


# -- naming and fingerprints ------------------------------------------------------------------------
def _parse_name(dataset: str) -> tuple[str, Path | None]:
    if dataset.startswith("folder:"):
        path = Path(dataset[len("folder:"):]).expanduser()
        if not path.is_dir():
            raise LargoError(f"folder dataset not found: {path} (expected one sub-folder of images per class)")
        return "folder", path.resolve()
    aliases = {"fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist", "flowers": "flowers102",
               "flowers-102": "flowers102", "cifar-10": "cifar10"}
    name = aliases.get(dataset.lower(), dataset.lower())
    if name not in ("flowers102", "fashion_mnist", "mnist", "cifar10"):
        raise LargoError(f"unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    return name, None


def _folder_files(folder: Path) -> list[tuple[str, list[Path]]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise LargoError(f"folder dataset {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    out = []
    for c in classes:
        files = sorted(p for p in c.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise LargoError(f"class folder {c} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        out.append((c.name, files))
    return out


def _fingerprint(name: str, root: Path, source: Path | None) -> str:
    if source is None:
        return str(root.resolve())
    h = hashlib.sha256(str(source).encode())
    for cls, files in _folder_files(source):
        for f in files:
            st = f.stat()
            h.update(f"{cls}/{f.relative_to(source)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


# -- cache ------------------------------------------------------------------------------------------
def _read_cache(path: Path) -> ImageSet | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return ImageSet(torch.from_numpy(z["images"]), torch.from_numpy(z["labels"]).long(),
                            meta["class_names"], meta.get("skipped") or None)
    except Exception:  # a damaged cache is rebuilt, never trusted
        path.unlink(missing_ok=True)
        return None


def _write_cache(path: Path, s: ImageSet) -> None:
    meta = json.dumps({"class_names": s.class_names, "skipped": s.skipped or []})

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, images=s.images.numpy(), labels=s.labels.numpy(), meta=np.array(meta))

    try:
        atomic_write(path, write)
    except OSError as e:  # a read-only or full cache only costs speed
        print(f"largo: warning: could not write dataset cache {path}: {e}")


# -- decoding ---------------------------------------------------------------------------------------
def _decode(name: str, root: Path, source: Path | None, resolution: int, download: bool,
            bad_images: str) -> ImageSet:
    if name == "folder":
        assert source is not None
        return _decode_folder(source, resolution, bad_images)
    if name == "flowers102":
        return _decode_flowers(root, resolution, download)
    return _decode_tensor_dataset(name, root, resolution, download)


def _missing(name: str, root: Path, expected: str, cause: BaseException | None = None) -> LargoError:
    reason = str(cause).splitlines()[0][:120] if cause is not None and str(cause) else ""
    if cause is not None and not isinstance(cause, FileNotFoundError) and "not found" not in reason.lower():
        return LargoError(f"{name} under {root} is unreadable ({type(cause).__name__}: {reason}); expected "
                          f"{expected} (re-download it, or pass another --data-root)")
    return LargoError(f"{name} not found under {root}: expected {expected} "
                      f"(pass --data-root, or --download true where a network is available)")


def _decode_tensor_dataset(name: str, root: Path, resolution: int, download: bool) -> ImageSet:
    import torchvision.datasets as tvd  # here, not at the top: torchvision's import costs seconds (torch._dynamo)

    cls = {"fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    expected = {"fashion_mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
                "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
                "cifar10": "cifar-10-batches-py/"}[name]
    parts = []
    try:
        for train in (True, False):
            ds = cls(str(root), train=train, download=download)
            data = torch.as_tensor(np.asarray(ds.data))
            data = data.permute(0, 3, 1, 2) if data.ndim == 4 else data.unsqueeze(1)  # CIFAR is NHWC
            parts.append((data.contiguous(), torch.as_tensor(ds.targets, dtype=torch.long), list(ds.classes)))
    except (RuntimeError, FileNotFoundError, EOFError, ValueError, OSError, IndexError) as e:
        raise _missing(name, root, expected, e) from e
    images = torch.cat([p[0] for p in parts])  # official train first, then test (see _select_split)
    labels = torch.cat([p[1] for p in parts])
    return ImageSet(_resize_tensor(images, resolution), labels, _clean_names(parts[0][2]))


def _clean_names(names: list[str]) -> list[str]:
    # torchvision's MNIST classes read "0 - zero"; keep the short form users type.
    return [n.split(" - ")[0] if " - " in n else n for n in names]


def _resize_tensor(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """28×28 digits/clothes: zero-pad to 32 (background is 0); other sizes: antialiased resize + crop."""
    h = images.shape[-1]
    if h == resolution:
        return images
    if h == 28 and resolution == 32:
        return F.pad(images, (2, 2, 2, 2))
    x = F.interpolate(images.float(), size=(resolution, resolution), mode="bilinear", antialias=True,
                      align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def _load_pil(path: Path, resolution: int, mode: str) -> np.ndarray:
    """Resize the shorter side to `resolution` (bicubic, antialiased) and centre-crop a square."""
    with Image.open(path) as img:
        img = img.convert(mode)
        w, h = img.size
        scale = resolution / min(w, h)
        nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
        arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _decode_flowers(root: Path, resolution: int, download: bool) -> ImageSet:
    import torchvision.datasets as tvd  # here, not at the top: torchvision's import costs seconds (torch._dynamo)

    files: list[Path] = []
    labels: list[int] = []
    try:
        for split in ("train", "val", "test"):  # LARGO merges all official splits
            ds = tvd.Flowers102(str(root), split=split, download=download)
            files += [Path(p) for p in ds._image_files]
            labels += list(ds._labels)
    except (RuntimeError, FileNotFoundError) as e:
        raise _missing("flowers102", root, "flowers-102/{jpg/image_XXXXX.jpg, imagelabels.mat, setid.mat}") from e
    order = np.argsort([f.name for f in files])  # image_00001 … image_08189: independent of split order
    files = [files[i] for i in order]
    labels = [labels[i] for i in order]
    missing = [f for f in files if not f.exists()]
    if missing:
        raise _missing("flowers102", root, f"{len(files)} images in flowers-102/jpg ({len(missing)} missing, "
                                           f"first {missing[0].name})")
    images = _decode_files(files, resolution, "RGB", bad="error")[0]
    return ImageSet(images, torch.tensor(labels, dtype=torch.long), list(tvd.Flowers102.classes))


def _decode_folder(folder: Path, resolution: int, bad_images: str) -> ImageSet:
    classes = _folder_files(folder)
    files = [f for _, fs in classes for f in fs]
    labels = [i for i, (_, fs) in enumerate(classes) for _ in fs]
    mode = _folder_mode(files)
    images, keep, skipped = _decode_files(files, resolution, mode, bad=bad_images)
    labels_t = torch.tensor(labels, dtype=torch.long)[keep]
    if len(labels_t) == 0:
        raise LargoError(f"folder dataset {folder}: no readable images")
    return ImageSet(images, labels_t, [c for c, _ in classes], skipped=[str(s) for s in skipped] or None)


def _folder_mode(files: list[Path]) -> str:
    """Greyscale only when every image we can open is greyscale; otherwise RGB."""
    for f in files[:32]:
        try:
            with Image.open(f) as img:
                if img.mode not in ("L", "I", "I;16", "1"):
                    return "RGB"
        except Exception:  # unreadable files are reported by _decode_files
            continue
    return "L"


def _decode_files(files: list[Path], resolution: int, mode: str, bad: str
                  ) -> tuple[torch.Tensor, torch.Tensor, list[Path]]:
    def one(f: Path) -> np.ndarray | None:
        try:
            return _load_pil(f, resolution, mode)
        except Exception as e:  # untrusted bytes: PIL raises OSError, SyntaxError, DecompressionBombError, …
            if bad == "skip":
                return None
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LargoError(f"cannot read image {f}: {reason} (use --bad-images skip to skip such files)") from None

    with ThreadPoolExecutor(max_workers=4) as pool:  # PIL releases the GIL while decoding and resizing
        arrays = list(pool.map(one, files))
    keep = torch.tensor([a is not None for a in arrays], dtype=torch.bool)
    skipped = [f for f, a in zip(files, arrays) if a is None]
    good = [a for a in arrays if a is not None]
    if not good:
        raise LargoError(f"none of the {len(files)} images could be read (first: {files[0]})")
    images = torch.from_numpy(np.stack(good)).permute(0, 3, 1, 2).contiguous()
    return images, keep, skipped


# -- splits -----------------------------------------------------------------------------------------
def _select_split(full: ImageSet, name: str, split: str, split_seed: int) -> ImageSet:
    if split == "all":
        return full
    n = len(full)
    if name in ("fashion_mnist", "mnist", "cifar10"):
        n_train = _official_train_size(name)
        idx = torch.arange(n_train) if split == "train" else torch.arange(n_train, n)
    else:  # generative split: seeded shuffle of everything, 95 % train / 5 % test
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
        n_test = max(1, round(GENERATIVE_TEST_FRACTION * n))
        if n - n_test < 1:
            raise LargoError(f"{name} dataset has only {n} readable image(s); the {1 - GENERATIVE_TEST_FRACTION:.0%}/"
                             f"{GENERATIVE_TEST_FRACTION:.0%} split needs at least 2")
        idx = perm[n_test:] if split == "train" else perm[:n_test]
        idx = idx.sort().values
    return ImageSet(full.images[idx], full.labels[idx], full.class_names, full.skipped)


def _official_train_size(name: str) -> int:
    return {"fashion_mnist": 60_000, "mnist": 60_000, "cifar10": 50_000}[name]
