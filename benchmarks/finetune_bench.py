"""docs/FINETUNE.md's measurements (issue 24): small-data arms, fine-tuning across datasets, post-hoc EMA.

    # an arm that also tracks fixed-decay EMAs beside the run's own (for the post-hoc EMA comparison)
    python benchmarks/finetune_bench.py train --run-dir runs/ft/fm500-scratch --preset demo \
        --set subset=500 steps=1200 max_minutes=0 eval_every=400 eval_n=200 phema_every=100 --extra-ema 0.9999
    # score checkpoint folders (post-hoc reconstructions, the extra EMAs) with the run's own in-training evaluation
    python benchmarks/finetune_bench.py score runs/ft/fm500-scratch RUN/phema/ema-0.050 RUN/extra-ema-0.9999 ...
    # the eval records of several runs: a markdown table and one picture of the curves against minutes
    python benchmarks/finetune_bench.py table runs/ft/a runs/ft/b --out docs/finetune/curves.png

The arms themselves are plain `largo train` commands (docs/FINETUNE.md lists them); `train` here only adds the
extra EMAs, which largo keeps one of.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from _common import load_average, set_fields
from largo.checkpoint import latest_checkpoint, read_meta, resolve_checkpoint
from largo.data import load_images, long_tailed, random_subset
from largo.draw.plot import BLUE, GREEN, GREY, ORANGE, RED, Panel, Series, plot
from largo.io import atomic_write_json
from largo.sampling import load_model
from largo.runtime import resolve_device
from largo.train import DiffusionTask
from largo.train.ema import EMA
from largo.train.monitor import TrainingEval
from largo.train.run import new_run_config
from largo.train.trainer import Trainer
from largo.viz.curves import read_evals


class ExtraEMATask(DiffusionTask):
    """The diffusion task, plus fixed-decay EMAs of the network updated after every optimizer step (the TrainTask
    hooks: no patching of the loop)."""

    def __init__(self, cfg, device, decays):
        super().__init__(cfg, device)
        self.decays, self.extra = decays, {}

    def setup(self, net, fused):
        super().setup(net, fused)
        self.net = net
        self.extra = {d: EMA(net, d, warmup=True) for d in self.decays}

    def after_step(self, step, dist):
        super().after_step(step, dist)
        for e in self.extra.values():
            e.update(self.net)


def train(args: argparse.Namespace) -> None:
    cfg = new_run_config(args.preset, overrides=None)
    cfg = set_fields(cfg, args.set).validate()
    task = ExtraEMATask(cfg, resolve_device(cfg.train.device), args.extra_ema)
    trainer = Trainer(cfg, Path(args.run_dir), progress=False, task=task)
    t0 = time.time()
    summary = trainer.fit()
    meta = read_meta(latest_checkpoint(Path(args.run_dir)))
    for d, e in task.extra.items():
        out = Path(args.run_dir) / f"extra-ema-{d:g}"
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in e.net.state_dict().items()}, str(out / "ema.safetensors"))
        atomic_write_json(out / "meta.json", {**meta, "extra_ema": d})
    print(json.dumps({**summary, "wall_s": round(time.time() - t0, 1), "load": load_average(),
                      "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}))


def score(args: argparse.Namespace) -> None:
    """Each folder's EMA weights through the run's own in-training evaluation (same seeds, judge, references)."""
    run = Path(args.run)
    model = load_model(resolve_checkpoint(run), "cpu")
    cfg = copy.deepcopy(model.cfg)
    cfg.train.eval_n = args.n
    d = cfg.data
    data = load_images(d.dataset, "train", d.resolution, d.data_root, bad_images=d.bad_images, split_seed=d.split_seed)
    data = random_subset(long_tailed(data, d.imbalance, seed=d.split_seed), d.subset, seed=d.split_seed)
    evaluator = TrainingEval(cfg, data, torch.device("cpu"))
    print("| weights | accuracy | FD | recall | memorised | seconds |\n| --- | --- | --- | --- | --- | --- |")
    for folder in args.folders:
        net = load_model(resolve_checkpoint(folder), "cpu").net
        r = evaluator(net, 0)
        print(f"| {folder} | {r.get('accuracy', float('nan')):.3f} | {r.get('fd', float('nan')):.2f} | "
              f"{r.get('recall', float('nan')):.3f} | {r['memorised']:.3f} | {r['seconds']:.0f} |", flush=True)


COLORS = [BLUE, ORANGE, GREEN, RED, GREY]


def ema_profile(decay: float, steps: int) -> list[float]:
    """Weight of the weights after each step 1..steps in largo's EMA with warm-up, d_n = min(decay, (1+n)/(10+n))."""
    d = [min(decay, (1 + n) / (10 + n)) for n in range(steps)]
    w, tail = [0.0] * steps, 1.0
    for tau in range(steps, 0, -1):  # update tau - 1 mixes in the weights after step tau
        w[tau - 1] = (1 - d[tau - 1]) * tail
        tail *= d[tau - 1]
    return w


def profiles(args: argparse.Namespace) -> None:
    """The averaging profiles over the run: post-hoc reconstructions and the fixed-decay EMAs."""
    from largo.train import phema

    found = phema.snapshots(Path(args.run))
    steps, sigmas = [f[0] for f in found], [f[1] for f in found]
    last = steps[-1]
    lines = []
    for i, sigma in enumerate(args.lengths):
        x = phema.coefficients(steps, sigmas, last, sigma)
        lines.append(Series(list(range(1, last + 1)), list(phema.response(steps, sigmas, x, last)),
                            color=COLORS[i % len(COLORS)], label=f"post-hoc σ_rel {sigma:g}", width=2.0))
    for j, decay in enumerate(args.decays):
        lines.append(Series(list(range(1, last + 1)), ema_profile(decay, last), color=COLORS[(len(args.lengths) + j)
                            % len(COLORS)], label=f"EMA {decay:g} (warm-up)", width=1.2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    plot([Panel(f"weight of each step's weights at step {last}", lines, xlabel="step", ylabel="weight",
                y_from_zero=True)], panel_size=(900, 420)).save(args.out)
    print(f"profiles → {args.out}")


def table(args: argparse.Namespace) -> None:
    runs = [Path(r) for r in args.runs]
    print("| run | step | minutes | accuracy | FD | recall | memorised | eval s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    series: dict[str, list[Series]] = {"accuracy": [], "fd": [], "recall": [], "memorised": []}
    for i, run in enumerate(runs):
        recs = read_evals(run)
        for r in recs:
            print(f"| {run.name} | {r['step']} | {r.get('minutes', 0):.1f} | {r.get('accuracy', float('nan')):.3f} | "
                  f"{r.get('fd', float('nan')):.2f} | {r.get('recall', float('nan')):.3f} | {r['memorised']:.3f} | "
                  f"{r['seconds']:.0f} |")
        for key in series:
            series[key].append(Series([r.get(args.x, r["step"]) for r in recs],
                                      [r.get(key, float("nan")) for r in recs], color=COLORS[i % len(COLORS)],
                                      label=run.name, width=2.0))
    panels = [Panel(key, s, xlabel=args.x, ylabel=key, y_from_zero=key != "fd") for key, s in series.items()]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        plot(panels, panel_size=(520, 380)).save(args.out)
        print(f"curves → {args.out}")


def augment_demo(args: argparse.Namespace) -> None:
    """What the network is shown: `--n` training images (first column) and `--draws` augmented draws of each."""
    from largo.data.augment import augment
    from largo.draw.grid import labelled_grid
    from largo.metrics.defaults import NO_HFLIP_DATASETS
    from largo.images import to_uint8

    data = load_images(args.dataset, "train", args.resolution)
    x = data.images[: args.n].float() / 127.5 - 1
    g = torch.Generator().manual_seed(0)
    mirror = args.dataset not in NO_HFLIP_DATASETS  # as a run of the dataset's default --hflip augments
    cols = [x] + [augment(x, args.p, g, mirror=mirror)[0] for _ in range(args.draws)]
    images = to_uint8(torch.stack(cols, 1).flatten(0, 1))
    labelled_grid(images, args.draws + 1, [data.class_names[int(c)][:12] for c in data.labels[: args.n]]).save(args.out)
    print(f"augmentations → {args.out}")


def conditioning(args: argparse.Namespace) -> None:
    """One sample per class of an --augment run with the augmentation input set to none, an x-flip, a 90° rotation
    and +0.4 brightness: whether the network has learnt what the input means (the same seeds in every row)."""
    from largo.data.augment import AUG_DIM
    from largo.draw.grid import labelled_grid
    from largo.sampling import generate_images

    model = load_model(resolve_checkpoint(args.run), "cpu")

    class Cond(torch.nn.Module):
        def __init__(self, net, lab):
            super().__init__()
            self.net, self.lab, self.num_classes = net, lab, net.num_classes

        def forward(self, x, t, y=None):
            return self.net(x, t, y, augment_labels=self.lab.expand(len(x), -1).to(x.dtype))

    k = len(model.class_names)
    rows, names = [], []
    for name, values in (("none", {}), ("x-flip", {0: 1.0}), ("rot90", {1: 1.0, 2: -1.0}), ("bright+0.4", {9: 0.4})):
        lab = torch.zeros(1, AUG_DIM)
        for i, v in values.items():
            lab[0, i] = v
        rows.append(generate_images(Cond(model.net, lab), model.cfg, torch.arange(k), list(range(k))))
        names.append(name)
    labelled_grid(torch.cat(rows), k, names).save(args.out)
    print(f"conditioning → {args.out}")


def grids(args: argparse.Namespace) -> None:
    """The runs' last sample grids side by side, each under its run's name."""
    from PIL import Image, ImageDraw

    pictures = []
    for run in args.runs:
        last = sorted((Path(run) / "samples").glob("step_*.png"))[-1]
        pictures.append((Path(run).name, Image.open(last).convert("RGB")))
    w = sum(p.width for _, p in pictures) + 12 * (len(pictures) - 1)
    h = max(p.height for _, p in pictures) + 22
    out = Image.new("RGB", (w, h), "white")
    x = 0
    for name, p in pictures:
        out.paste(p, (x, 22))
        ImageDraw.Draw(out).text((x + 4, 4), name.replace("mnist500-", ""), fill="black")
        x += p.width + 12
    out.save(args.out)
    print(f"grids → {args.out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--run-dir", required=True)
    t.add_argument("--preset", default="demo")
    t.add_argument("--set", nargs="*", default=[], help="FIELD=VALUE overrides")
    t.add_argument("--extra-ema", nargs="*", type=float, default=[], help="fixed EMA decays tracked beside the run's")
    t.set_defaults(func=train)
    s = sub.add_parser("score")
    s.add_argument("run")
    s.add_argument("folders", nargs="+")
    s.add_argument("--n", type=int, default=200)
    s.set_defaults(func=score)
    b = sub.add_parser("table")
    b.add_argument("runs", nargs="+")
    b.add_argument("--x", default="minutes")
    b.add_argument("--out")
    b.set_defaults(func=table)
    f = sub.add_parser("profiles")
    f.add_argument("run")
    f.add_argument("--lengths", nargs="+", type=float, default=[0.05, 0.1, 0.2])
    f.add_argument("--decays", nargs="+", type=float, default=[0.999, 0.9999])
    f.add_argument("--out", required=True)
    f.set_defaults(func=profiles)
    a = sub.add_parser("augment-demo")
    a.add_argument("--dataset", default="mnist")
    a.add_argument("--resolution", type=int, default=28)
    a.add_argument("--n", type=int, default=6)
    a.add_argument("--draws", type=int, default=8)
    a.add_argument("--p", type=float, default=0.12)
    a.add_argument("--out", required=True)
    a.set_defaults(func=augment_demo)
    c = sub.add_parser("conditioning")
    c.add_argument("run")
    c.add_argument("--out", required=True)
    c.set_defaults(func=conditioning)
    g = sub.add_parser("grids")
    g.add_argument("runs", nargs="+")
    g.add_argument("--out", required=True)
    g.set_defaults(func=grids)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
