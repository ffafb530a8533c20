"""Pack Flowers-102 at 64×64 as JPEGs in a torchvision-style root for a GPU call (nothing can be downloaded there).

    .venv/bin/python benchmarks/records/gpu_session/pack_flowers.py                      # → .device/data/flowers-102
    .venv/bin/python benchmarks/records/gpu_session/pack_flowers.py --src ../shared/data --out .device/data --check

Each image goes through largo's own decoder (`largo.data.datasets._load_pil`: shorter side to 64, bicubic,
centre crop), so the packed file is already 64×64 and largo's decode there is a plain JPEG decode (PIL's resize to
the same size is a copy). Saved as JPEG quality 95 with 4:4:4 chroma, as in the H100 session (mean abs. error
about 2/255). The official `imagelabels.mat` and `setid.mat` are copied beside `jpg/`, so
`torchvision.datasets.Flowers102(root)` and `largo.data.load_images("flowers102", data_root=root)` read the
folder as they read the full dataset. `--check` decodes the packed root with largo (the 95/5 generative split:
7,780 train, 409 test) and prints the mean absolute difference to the unpacked data. `/.device/` is in
.gitignore, so the pack never becomes a tracked file; it travels only when a `run` call names it in `carry`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from PIL import Image

from largo.data.datasets import _load_pil, load_images
from largo.paths import default_data_root


def pack(src: Path, out: Path, resolution: int, quality: int) -> tuple[int, int]:
    """Write every `src/flowers-102/jpg/*.jpg` at `resolution` to `out/flowers-102/jpg/`; (files, bytes)."""
    sdir, odir = src / "flowers-102", out / "flowers-102"
    (odir / "jpg").mkdir(parents=True, exist_ok=True)
    for name in ("imagelabels.mat", "setid.mat"):
        shutil.copyfile(sdir / name, odir / name)
    files = sorted((sdir / "jpg").glob("image_*.jpg"))
    if not files:
        raise SystemExit(f"no images under {sdir / 'jpg'}")
    total = 0
    for f in files:
        arr = _load_pil(f, resolution, "RGB")
        target = odir / "jpg" / f.name
        Image.fromarray(arr).save(target, "JPEG", quality=quality, subsampling=0)
        total += target.stat().st_size
    return len(files), total + sum((odir / n).stat().st_size for n in ("imagelabels.mat", "setid.mat"))


def check(src: Path, out: Path, resolution: int) -> None:
    for split in ("train", "test"):
        a = load_images("flowers102", split, resolution, str(src))
        b = load_images("flowers102", split, resolution, str(out))
        assert a.labels.equal(b.labels) and a.images.shape == b.images.shape, split
        mae = (a.images.float() - b.images.float()).abs().mean().item()
        print(f"check {split}: {len(b)} images, {b.num_classes} classes, mean |packed - original| = {mae:.2f}/255")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=None, help="dataset root holding flowers-102/ (default: largo's)")
    p.add_argument("--out", type=Path, default=Path(".device/data"))
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--quality", type=int, default=95)
    p.add_argument("--check", action="store_true", help="decode both roots with largo and compare")
    a = p.parse_args()
    src = a.src or default_data_root()
    t0 = time.time()
    n, size = pack(src, a.out, a.resolution, a.quality)
    print(f"packed {n} images from {src} into {a.out / 'flowers-102'}: {size / 2**20:.1f} MiB "
          f"({size / n / 1024:.1f} KiB per image, JPEG q{a.quality} 4:4:4) in {time.time() - t0:.0f} s")
    if a.check:
        check(src, a.out, a.resolution)
    return 0


if __name__ == "__main__":
    sys.exit(main())
