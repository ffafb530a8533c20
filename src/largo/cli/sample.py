"""`largo sample`: images from a run, a checkpoint folder or a released checkpoint."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from largo.cli.sampling_flags import add_sampling_flags, resolve_sampling
from largo.errors import LargoError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate images from a trained model",
                       description="Generate class-conditional samples: a grid (one row per class) and one "
                                   "PNG per image.")
    p.add_argument("source", help="run directory, checkpoint folder or released checkpoint name")
    p.add_argument("--classes", default="", help="comma-separated class names or indices (default: all, "
                                                  "at most 16 rows spread over the labels)")
    p.add_argument("--n", type=int, default=8, help="images per class (default 8)")
    add_sampling_flags(p)
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, help="output folder (default: RUN/samples/<settings>)")
    p.set_defaults(func=run)


def parse_classes(text: str, class_names: list[str]) -> list[int]:
    """Class indices from 'rose,3,sunflower' (names case-insensitive)."""
    if not text.strip():
        from largo.generate import grid_classes

        return grid_classes(len(class_names))
    lower = {n.lower(): i for i, n in enumerate(class_names)}
    out = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if token.isdigit() and int(token) < len(class_names):
            out.append(int(token))
        elif token.lower() in lower:
            out.append(lower[token.lower()])
        else:
            close = difflib.get_close_matches(token.lower(), list(lower), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else \
                f"valid: 0-{len(class_names) - 1} or {', '.join(class_names[:12])}{', …' if len(class_names) > 12 else ''}"
            raise LargoError(f"unknown class {token!r}; {hint}")
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from largo.generate import generate_images
    from largo.train.checkpoint import load_for_sampling, resolve_checkpoint
    from largo.train.trainer import resolve_device
    from largo.viz.grid import labelled_grid

    if args.n < 1 or args.batch_size < 1:
        raise LargoError("--n and --batch-size must be >= 1")
    device = resolve_device(args.device)
    ckpt = resolve_checkpoint(args.source)
    net, cfg, class_names = load_for_sampling(ckpt, device, weights=args.weights)
    sm = resolve_sampling(args, cfg)
    classes = parse_classes(args.classes, class_names)
    labels = torch.tensor([c for c in classes for _ in range(args.n)], dtype=torch.long)
    seeds = [args.seed + i for i in range(len(labels))]
    images = generate_images(net, cfg, labels, seeds, **sm.kwargs(), batch_size=args.batch_size, device=device,
                             progress=True)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else Path("samples")
    out = args.out or run_dir / "samples" / f"{sm.sampler}-{sm.steps}-cfg{sm.cfg_scale:g}-seed{args.seed}"
    (out / "images").mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for i, (img, c) in enumerate(zip(images, labels.tolist())):
        arr = img.permute(1, 2, 0).numpy()
        name = class_names[c].replace("/", "-").replace(" ", "_")
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(out / "images" / f"{i:05d}_{name}.png")
    labelled_grid(images, args.n, [class_names[c] for c in classes]).save(out / "grid.png")
    print(f"largo: {len(images)} images ({sm.sampler}, {sm.steps} steps, cfg {sm.cfg_scale:g}) → {out / 'grid.png'}")
    return 0
