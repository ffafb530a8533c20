"""`largo viz PICTURE`: PNGs that show what a diffusion model does.

forward     the noising process on real images, linear and cosine schedules stacked
trajectory  x_t and the predicted x̂₀ along the reverse process of one sample
grid        samples, one row per class
cfg-sweep   the same seeds at guidance scales w = 0, 1, 2, 3, 5, 7
samplers    the same seeds with each sampler at several NFE
curves      training loss (raw and smoothed) and learning rate from log.jsonl
histogram   pixel-intensity histograms of real vs generated images

Pictures of a run go to RUN_DIR/viz/ unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from largo.config import SAMPLERS, SCHEDULES, SPACINGS
from largo.errors import LargoError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("viz", help="pictures: forward strips, trajectories, grids, sweeps, curves, histograms",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    vs = p.add_subparsers(dest="picture", metavar="PICTURE")

    f = vs.add_parser("forward", help="x_t of real images at evenly spaced t, one block per schedule",
                      description="The forward process q(x_t | x_0) on real test images: columns are evenly spaced "
                                  "t from 0 (the input) to T-1 (pure noise), labelled with t and ᾱ_t; one block "
                                  "of rows per schedule, all sharing one noise draw per image.")
    f.add_argument("--dataset", required=True, help="flowers102, fashion_mnist, mnist, cifar10 or folder:PATH")
    f.add_argument("--data-root", default="", help="dataset root (default: ../shared/data or the cache)")
    f.add_argument("--resolution", type=int, default=32)
    f.add_argument("--split", default="test", choices=("train", "test", "all"))
    f.add_argument("--n-images", type=int, default=4, help="images (rows per schedule), one per class (default 4)")
    f.add_argument("--frames", type=int, default=10, help="columns, t = 0 … T-1 evenly spaced (default 10)")
    f.add_argument("--schedules", default="linear,cosine", help=f"comma-separated, from {', '.join(SCHEDULES)}")
    f.add_argument("--timesteps", type=int, default=1000, help="T (default 1000)")
    f.add_argument("--seed", type=int, default=0, help="seed of the noise")
    f.add_argument("--out", type=Path, help="PNG path (default: ./forward-<dataset>-<resolution>.png)")
    f.set_defaults(func=run_forward)

    t = vs.add_parser("trajectory", help="x_t and predicted x̂₀ every k reverse steps",
                      description="Follow one sample through the reverse process: row x_t (the state) and row "
                                  "x̂₀ (the network's estimate of the final image) every k steps, then the output.")
    _run_args(t)
    t.add_argument("--class", dest="class_name", default="", help="class name or index (default: the first)")
    t.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    t.add_argument("--n", type=int, default=1, help="samples (seeds SEED…SEED+n-1), two rows each (default 1)")
    _sampling_args(t)
    t.add_argument("--every", type=int, help="show every k-th step (default: steps // 8)")
    t.add_argument("--frames", type=int, help="or: this many steps evenly spaced (at most the step count)")
    t.set_defaults(func=run_trajectory)

    g = vs.add_parser("grid", help="samples, one row per class (names on the left)")
    _run_args(g)
    g.add_argument("--classes", default="", help="comma-separated names or indices (default: all, at most 16)")
    g.add_argument("--n", type=int, default=8, help="images per class (default 8)")
    g.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i")
    _sampling_args(g)
    g.set_defaults(func=run_grid)

    c = vs.add_parser("cfg-sweep", help="same seeds at guidance scales w = 0, 1, 2, 3, 5, 7 (columns)",
                      description="Rows are classes; each row keeps one seed while the guidance scale w grows "
                                  "across the columns (w = 0 unconditional, 1 conditional without guidance).")
    _run_args(c)
    c.add_argument("--scales", default="0,1,2,3,5,7", help="guidance scales w (default 0,1,2,3,5,7)")
    c.add_argument("--classes", default="", help="comma-separated names or indices (default: all, at most 16)")
    c.add_argument("--n", type=int, default=1, help="seeds (rows) per class (default 1)")
    c.add_argument("--seed", type=int, default=0, help="row r uses seed SEED+r")
    _sampling_args(c, cfg=False)
    c.set_defaults(func=run_cfg_sweep)

    s = vs.add_parser("samplers", help="same seeds, rows = sampler × NFE",
                      description="Rows are sampler × NFE (network evaluations; for heun the budget), columns are "
                                  "classes; column j uses seed SEED+j in every row.")
    _run_args(s)
    s.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated (default {','.join(SAMPLERS)})")
    s.add_argument("--nfe", default="10,20,50", help="comma-separated NFE per sampler (default 10,20,50)")
    s.add_argument("--classes", default="", help="comma-separated names or indices (default: all, at most 16)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cfg", type=float, help="guidance scale w (default: the run's)")
    s.add_argument("--eta", type=float, help="DDIM η")
    s.add_argument("--spacing", choices=SPACINGS, help="timestep spacing")
    s.set_defaults(func=run_samplers)

    cu = vs.add_parser("curves", help="training loss (raw, smoothed) and learning rate from log.jsonl")
    cu.add_argument("run_dir", type=Path, help="run directory")
    cu.add_argument("--smoothing", type=float, default=0.9, help="EMA weight of the smoothed loss (default 0.9)")
    cu.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR/viz/curves.png)")
    cu.set_defaults(func=run_curves)

    h = vs.add_parser("histogram", help="pixel-intensity histograms, real (test split) vs generated")
    _run_args(h)
    h.add_argument("--n", type=int, default=256, help="generated images, classes cycled (default 256)")
    h.add_argument("--bins", type=int, default=64, help="bins over 0-255 (default 64)")
    h.add_argument("--linear", action="store_true", help="linear y axis (default: log)")
    h.add_argument("--data-root", default=None, help="dataset root (default: the run's)")
    h.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i")
    _sampling_args(h)
    h.set_defaults(func=run_histogram)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory, checkpoint folder or released checkpoint name")
    p.add_argument("--weights", choices=("ema", "online"), default="ema")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR/viz/<picture>.png)")


def _sampling_args(p: argparse.ArgumentParser, cfg: bool = True) -> None:
    p.add_argument("--sampler", choices=SAMPLERS, help="default: the run's sample config")
    p.add_argument("--steps", type=int, help="sampling steps (default: the run's)")
    p.add_argument("--eta", type=float, help="DDIM η")
    p.add_argument("--spacing", choices=SPACINGS, help="timestep spacing")
    if cfg:
        p.add_argument("--cfg", type=float, help="guidance scale w (default: the run's)")


# -- helpers ---------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LargoError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LargoError(f"{what} must be comma-separated integers, got {text!r}") from None


def _open(args: argparse.Namespace):
    from largo.train.trainer import resolve_device
    from largo.viz.sampling import open_run

    if getattr(args, "batch_size", 1) < 1:
        raise LargoError("--batch-size must be >= 1")
    device = resolve_device(args.device)
    net, cfg, class_names, root = open_run(args.run_dir, device, args.weights)
    return net, cfg, class_names, root, device


def _save(image, path: Path, what: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    print(f"largo: {what} ({image.width}×{image.height}) → {path}")
    return 0


def _sampling(args: argparse.Namespace) -> dict:
    out = {"sampler": args.sampler, "steps": args.steps, "eta": args.eta, "spacing": args.spacing}
    if hasattr(args, "cfg"):
        out["cfg_scale"] = args.cfg
    return out


# -- handlers --------------------------------------------------------------------------------------
def run_forward(args: argparse.Namespace) -> int:
    from largo.data import load_images
    from largo.viz.forward import forward_strip, forward_timesteps, pick_images

    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    bad = [s for s in schedules if s not in SCHEDULES]
    if bad or not schedules:
        raise LargoError(f"unknown schedule(s) {', '.join(bad) or '(none)'}; valid: {', '.join(SCHEDULES)}")
    if args.n_images < 1:
        raise LargoError("--n-images must be >= 1")
    if args.timesteps < 2:
        raise LargoError("--timesteps must be >= 2")
    forward_timesteps(args.timesteps, args.frames)  # check the frame count before loading data
    data = load_images(args.dataset, args.split, args.resolution, args.data_root)
    idx = pick_images(data.labels, args.n_images)
    if not idx:
        raise LargoError(f"{args.dataset} ({args.split}) has no images")
    labels = [data.class_names[int(data.labels[i])] if data.class_names else f"image {i}" for i in idx]
    image = forward_strip(data.images[idx], labels, schedules, args.frames, args.timesteps, args.seed)
    out = args.out or Path(f"forward-{_slug(args.dataset)}-{args.resolution}.png")
    return _save(image, out, "forward process")


def run_trajectory(args: argparse.Namespace) -> int:
    from largo.cli.sample import parse_classes
    from largo.viz.sampling import trajectory_strip

    if args.n < 1:
        raise LargoError("--n must be >= 1")
    net, cfg, class_names, root, device = _open(args)
    classes = parse_classes(args.class_name, class_names) if args.class_name else [0]
    if len(classes) != 1:
        raise LargoError(f"--class takes one class, got {args.class_name!r}")
    seeds = [args.seed + i for i in range(args.n)]
    image = trajectory_strip(net, cfg, class_names, classes[0], seeds, every=args.every, frames=args.frames,
                             device=device, **_sampling(args))
    name = class_names[classes[0]] if class_names else str(classes[0])
    out = args.out or root / "viz" / f"trajectory-{_slug(name)}-seed{args.seed}.png"
    return _save(image, out, "trajectory")


def run_grid(args: argparse.Namespace) -> int:
    from largo.cli.sample import parse_classes
    from largo.generate import class_grid

    if args.n < 1:
        raise LargoError("--n must be >= 1")
    net, cfg, class_names, root, device = _open(args)
    classes = parse_classes(args.classes, class_names)
    s = _sampling(args)
    image = class_grid(net, cfg, class_names, per_class=args.n, classes=classes, seed=args.seed, device=device,
                       batch_size=args.batch_size, **{key: v for key, v in s.items() if v is not None})
    return _save(image, args.out or root / "viz" / "grid.png", "class grid")


def run_cfg_sweep(args: argparse.Namespace) -> int:
    from largo.cli.sample import parse_classes
    from largo.viz.sampling import cfg_sweep

    scales = tuple(_floats(args.scales, "--scales"))
    if args.n < 1:
        raise LargoError("--n must be >= 1")
    net, cfg, class_names, root, device = _open(args)
    classes = parse_classes(args.classes, class_names)
    image = cfg_sweep(net, cfg, class_names, classes, scales, args.n, args.seed, batch_size=args.batch_size,
                      device=device, **_sampling(args))
    return _save(image, args.out or root / "viz" / "cfg-sweep.png", "guidance sweep")


def run_samplers(args: argparse.Namespace) -> int:
    from largo.cli.sample import parse_classes
    from largo.viz.sampling import sampler_grid

    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    nfes = _ints(args.nfe, "--nfe")
    net, cfg, class_names, root, device = _open(args)
    classes = parse_classes(args.classes, class_names)
    image = sampler_grid(net, cfg, class_names, classes, samplers, nfes, args.seed, cfg_scale=args.cfg,
                         eta=args.eta, spacing=args.spacing, batch_size=args.batch_size, device=device)
    return _save(image, args.out or root / "viz" / "samplers.png", "sampler comparison")


def run_curves(args: argparse.Namespace) -> int:
    from largo.viz.curves import curves_image

    run_dir = args.run_dir
    if not run_dir.is_dir():
        raise LargoError(f"run directory not found: {run_dir}")
    image = curves_image(run_dir, args.smoothing)
    return _save(image, args.out or run_dir / "viz" / "curves.png", "training curves")


def run_histogram(args: argparse.Namespace) -> int:
    import torch

    from largo.data import load_images
    from largo.generate import generate_images
    from largo.viz.histogram import histogram_image

    if args.n < 1:
        raise LargoError("--n must be >= 1")
    net, cfg, class_names, root, device = _open(args)
    d = cfg.data
    real = load_images(d.dataset, "test", d.resolution, d.data_root if args.data_root is None else args.data_root,
                       bad_images=d.bad_images, split_seed=d.split_seed).images
    labels = torch.arange(args.n, dtype=torch.long) % max(1, cfg.model.num_classes)
    seeds = [args.seed + i for i in range(args.n)]
    s = _sampling(args)
    fake = generate_images(net, cfg, labels, seeds, batch_size=args.batch_size, device=device, progress=True,
                           **{key: v for key, v in s.items() if v is not None})
    title = f"{d.dataset} test split vs {args.n} samples"
    image = histogram_image(real, fake, args.bins, logy=not args.linear, title=title)
    return _save(image, args.out or root / "viz" / "histogram.png", "pixel histograms")
