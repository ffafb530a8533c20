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

from largo.cli.sampling_flags import add_sampling_flags, sampling_options
from largo.config import SAMPLERS, SCHEDULES, SPLITS
from largo.errors import LargoError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("viz", help="pictures: forward strips, trajectories, grids, sweeps, curves, histograms",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    vs = p.add_subparsers(dest="picture", metavar="PICTURE")

    _register_forward(vs)
    _register_trajectory(vs)
    _register_grid(vs)
    _register_cfg_sweep(vs)
    _register_samplers(vs)
    _register_curves(vs)
    _register_histogram(vs)
    _register_recognisability(vs)


def _register_forward(vs: argparse._SubParsersAction) -> None:
    f = vs.add_parser("forward", help="x_t of real images at evenly spaced t, one block per schedule",
                      description="The forward process q(x_t | x_0) on real test images: columns are evenly spaced "
                                  "t from 0 (the input) to T-1 (pure noise), labelled with t and ᾱ_t; one block "
                                  "of rows per schedule, all sharing one noise draw per image.")
    f.add_argument("--dataset", required=True, help="flowers102, fashion_mnist, mnist, cifar10 or folder:PATH")
    f.add_argument("--data-root", default="", help="dataset root (default: ../shared/data or the cache)")
    f.add_argument("--resolution", type=int, default=32)
    f.add_argument("--split", default="test", choices=SPLITS)
    f.add_argument("--n-images", type=int, default=4, help="images (rows per schedule), one per class (default 4)")
    f.add_argument("--frames", type=int, default=10, help="columns, t = 0 … T-1 evenly spaced (default 10)")
    f.add_argument("--schedules", default="linear,cosine", help=f"comma-separated, from {', '.join(SCHEDULES)}")
    f.add_argument("--timesteps", type=int, default=1000, help="T (default 1000)")
    f.add_argument("--seed", type=int, default=0, help="seed of the noise")
    f.add_argument("--out", type=Path, help="PNG path (default: ./forward-<dataset>-<resolution>.png)")
    f.set_defaults(func=run_forward)


def _register_trajectory(vs: argparse._SubParsersAction) -> None:
    t = vs.add_parser("trajectory", help="x_t and predicted x̂₀ every k reverse steps",
                      description="Follow one sample through the reverse process: row x_t (the state) and row "
                                  "x̂₀ (the network's estimate of the final image) every k steps, then the output.")
    _run_args(t)
    t.add_argument("--class", dest="class_name", default="", help="class name or index (default: the first)")
    t.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    t.add_argument("--n", type=int, default=1, help="samples (seeds SEED…SEED+n-1), two rows each (default 1)")
    add_sampling_flags(t, only=PICTURE_FLAGS)
    t.add_argument("--every", type=int, help="show every k-th step (default: steps // 8)")
    t.add_argument("--frames", type=int, help="or: this many steps evenly spaced (at most the step count)")
    t.set_defaults(func=run_trajectory)


def _register_grid(vs: argparse._SubParsersAction) -> None:
    g = vs.add_parser("grid", help="samples, one row per class (names on the left)")
    _run_args(g)
    g.add_argument("--classes", default="", help="comma-separated names or indices (default: all, at most 16)")
    g.add_argument("--n", type=int, default=8, help="images per class (default 8)")
    g.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i")
    add_sampling_flags(g, only=PICTURE_FLAGS)
    g.set_defaults(func=run_grid)


def _register_cfg_sweep(vs: argparse._SubParsersAction) -> None:
    c = vs.add_parser("cfg-sweep", help="same seeds at guidance scales w = 0, 1, 2, 3, 5, 7 (columns)",
                      description="Rows are classes; each row keeps one seed while the guidance scale w grows "
                                  "across the columns (w = 0 unconditional, 1 conditional without guidance).")
    _run_args(c)
    c.add_argument("--scales", default="0,1,2,3,5,7", help="guidance scales w (default 0,1,2,3,5,7)")
    c.add_argument("--classes", default="", help="comma-separated names or indices (default: all, at most 16)")
    c.add_argument("--n", type=int, default=1, help="seeds (rows) per class (default 1)")
    c.add_argument("--seed", type=int, default=0, help="row r uses seed SEED+r")
    add_sampling_flags(c, only=("sampler", "steps", "eta", "spacing"))
    c.set_defaults(func=run_cfg_sweep)


def _register_samplers(vs: argparse._SubParsersAction) -> None:
    s = vs.add_parser("samplers", help="same seeds, rows = sampler × NFE",
                      description="Rows are sampler × NFE (network evaluations; for heun the budget), columns are "
                                  "classes; column j uses seed SEED+j in every row.")
    _run_args(s)
    s.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated (default {','.join(SAMPLERS)})")
    s.add_argument("--nfe", default="10,20,50", help="comma-separated NFE per sampler (default 10,20,50)")
    s.add_argument("--classes", default="", help="comma-separated names or indices (default: all, at most 16)")
    s.add_argument("--seed", type=int, default=0)
    add_sampling_flags(s, only=("cfg", "eta", "spacing"))
    s.set_defaults(func=run_samplers)


def _register_curves(vs: argparse._SubParsersAction) -> None:
    cu = vs.add_parser("curves", help="training loss (raw, smoothed) and learning rate from log.jsonl")
    cu.add_argument("run_dir", type=Path, help="run directory")
    cu.add_argument("--smoothing", type=float, default=0.9, help="EMA weight of the smoothed loss (default 0.9)")
    cu.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR/viz/curves.png)")
    cu.set_defaults(func=run_curves)


def _register_histogram(vs: argparse._SubParsersAction) -> None:
    h = vs.add_parser("histogram", help="pixel-intensity histograms, real (test split) vs generated")
    _run_args(h)
    h.add_argument("--n", type=int, default=256, help="generated images, classes cycled (default 256)")
    h.add_argument("--bins", type=int, default=64, help="bins over 0-255 (default 64)")
    h.add_argument("--linear", action="store_true", help="linear y axis (default: log)")
    h.add_argument("--data-root", default=None, help="dataset root (default: the run's)")
    h.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i")
    add_sampling_flags(h, only=PICTURE_FLAGS)
    h.set_defaults(func=run_histogram)

def _register_recognisability(vs: argparse._SubParsersAction) -> None:
    r = vs.add_parser("recognisability", help="classifier accuracy on x_t and x̂0 along the reverse process",
                      description="Sample N images per class and, at every sampler step, measure how often the "
                                  "domain classifier names the asked class in x_t and in the predicted x̂0. "
                                  "Writes a plot and its JSON; e.g. --sampler ddpm --steps 100 as in the reports.")
    _run_args(r)
    r.add_argument("--n", type=int, default=10, help="images per class (default 10)")
    r.add_argument("--seed", type=int, default=0)
    add_sampling_flags(r, only=PICTURE_FLAGS)
    r.set_defaults(func=run_recognisability)


PICTURE_FLAGS = ("sampler", "steps", "eta", "spacing", "cfg")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory, checkpoint folder or released checkpoint name")
    add_sampling_flags(p, only=("weights",))
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR/viz/<picture>.png)")


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
    """(model, sampling options from the flags, folder for pictures, device)."""
    from largo.runtime import resolve_device
    from largo.sampling import load_model

    device = resolve_device(args.device)
    model = load_model(args.run_dir, device, args.weights)
    return model, sampling_options(args, model.cfg), model.run_dir or Path("."), device


def _save(image, path: Path, what: str) -> int:
    from largo.io import atomic_save_image

    atomic_save_image(path, image)
    print(f"largo: {what} ({image.width}×{image.height}) → {path}")
    return 0


# -- handlers: parse, call one picture function, save ------------------------------------------------------
def run_forward(args: argparse.Namespace) -> int:
    from largo.viz.forward import dataset_forward_strip

    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    image = dataset_forward_strip(args.dataset, args.split, args.resolution, args.data_root, args.n_images,
                                  args.frames, schedules, args.timesteps, args.seed)
    out = args.out or Path(f"forward-{_slug(args.dataset)}-{args.resolution}.png")
    return _save(image, out, "forward process")


def run_trajectory(args: argparse.Namespace) -> int:
    from largo.sampling import parse_classes
    from largo.viz.sampling import trajectory_strip

    model, options, root, device = _open(args)
    classes = parse_classes(args.class_name, model.class_names) if args.class_name else [0]
    if len(classes) != 1:
        raise LargoError(f"--class takes one class, got {args.class_name!r}")
    seeds = [args.seed + i for i in range(args.n)]
    image = trajectory_strip(model, classes[0], seeds, options, every=args.every, frames=args.frames, device=device)
    name = model.class_names[classes[0]] if model.class_names else str(classes[0])
    out = args.out or root / "viz" / f"trajectory-{_slug(name)}-seed{args.seed}.png"
    return _save(image, out, "trajectory")


def run_grid(args: argparse.Namespace) -> int:
    from largo.sampling import class_grid, parse_classes

    model, options, root, device = _open(args)
    classes = parse_classes(args.classes, model.class_names)
    image = class_grid(model.net, model.cfg, model.class_names, per_class=args.n, classes=classes, seed=args.seed,
                       device=device, options=options, batch_size=args.batch_size, latent=model.latent)
    return _save(image, args.out or root / "viz" / "grid.png", "class grid")


def run_cfg_sweep(args: argparse.Namespace) -> int:
    from largo.sampling import parse_classes
    from largo.viz.sampling import cfg_sweep

    scales = tuple(_floats(args.scales, "--scales"))
    model, options, root, device = _open(args)
    classes = parse_classes(args.classes, model.class_names)
    image = cfg_sweep(model, classes, options, scales, args.n, args.seed, batch_size=args.batch_size, device=device)
    return _save(image, args.out or root / "viz" / "cfg-sweep.png", "guidance sweep")


def run_samplers(args: argparse.Namespace) -> int:
    from largo.sampling import parse_classes
    from largo.viz.sampling import sampler_grid

    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    nfes = _ints(args.nfe, "--nfe")
    model, options, root, device = _open(args)
    classes = parse_classes(args.classes, model.class_names)
    image = sampler_grid(model, classes, samplers, nfes, options, args.seed, batch_size=args.batch_size,
                         device=device)
    return _save(image, args.out or root / "viz" / "samplers.png", "sampler comparison")


def run_curves(args: argparse.Namespace) -> int:
    from largo.viz.curves import curves_image

    run_dir = args.run_dir
    if not run_dir.is_dir():
        raise LargoError(f"run directory not found: {run_dir}")
    image = curves_image(run_dir, args.smoothing)
    return _save(image, args.out or run_dir / "viz" / "curves.png", "training curves")


def run_histogram(args: argparse.Namespace) -> int:
    from largo.viz.histogram import real_vs_generated_histogram

    model, options, root, device = _open(args)
    image = real_vs_generated_histogram(model, options, args.n, args.bins, logy=not args.linear, seed=args.seed,
                                        data_root=args.data_root, batch_size=args.batch_size, device=device)
    return _save(image, args.out or root / "viz" / "histogram.png", "pixel histograms")


def run_recognisability(args: argparse.Namespace) -> int:
    from largo.evaluation import recognisability
    from largo.io import atomic_write_json
    from largo.viz.recognisability import recognisability_plot

    model, options, root, device = _open(args)
    result = recognisability(model, options, args.n, args.seed, args.batch_size, device)
    out = args.out or root / "viz" / f"recognisability-{options.sampler}-{options.steps}.png"
    _save(recognisability_plot(result), out, "recognisability")
    atomic_write_json(out.with_suffix(".json"), result)
    half = result["x0_half_of_final_at"]
    print(f"largo: final accuracy {result['final_accuracy']:.1%}; x̂0 reaches half of it "
          + (f"{half:.0%} of the way through" if half is not None else "never") + f" → {out.with_suffix('.json')}")
    return 0
