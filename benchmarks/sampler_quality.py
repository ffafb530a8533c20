"""Sampler quality per NFE (issue 3): every sampler at NFE 5, 10, 20, 50, 100 (and DDPM at 1000) on one
checkpoint, the same seeded images in every cell, scored with the shipped Fashion-MNIST classifier.

    python benchmarks/sampler_quality.py [--checkpoint checkpoints/fashion_mnist-32] [--n 300] [--cfg 3]
        [--nfe 5,10,20,50,100] [--samplers ddpm,ddim,dpmpp2m,dpmpp3m,euler,heun] [--ddpm-1000/--no-ddpm-1000]
        [--skip heun:100,dpmpp3m:100] [--out runs/sampler_quality] [--doc docs/SAMPLERS.md]
        [--plot docs/sampler_quality.png] [--device auto]

It runs through `largo.sweep` (so it resumes: finished cells in OUT/cells/ are not recomputed) and then writes
the Markdown report and the PNG plot. Quality = class accuracy under the classifier and FD in its features
against the real test split (10 000 images); the "real floor" row scores N real training images the same way
(the FD a perfect sampler would get at this N). The 5 % target of the issue: some sampler at NFE <= 20 has an
FD within 5 % of the best FD any sampler reaches at any NFE (and, for accuracy, within 5 % of the best).
A benchmark, not a test: minutes to hours on a CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import time
from pathlib import Path

from largo.config import SAMPLE_PRECISIONS, SAMPLERS as ALL_SAMPLERS

REPO = Path(__file__).resolve().parents[1]
PURPLE, BROWN = (148, 103, 189), (140, 86, 75)
HAND_WRITTEN = "<!-- hand-written from here on: kept when the benchmark rewrites the page -->"


def default_checkpoint() -> str:
    cpu = REPO / "checkpoints" / "fashion_mnist-32-cpu"
    return str(cpu) if cpu.exists() else str(REPO / "runs" / "bench-demo")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="default: checkpoints/fashion_mnist-32-cpu, else runs/bench-demo")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the checkpoint's)")
    p.add_argument("--clip-x0", dest="clip_x0", action=argparse.BooleanOptionalAction, default=True,
                   help="clip x0 estimates to [-1, 1] (largo's sampling default; default on)")
    p.add_argument("--precision", choices=SAMPLE_PRECISIONS, default="auto",
                   help="network precision while sampling (bf16 on CPU: autocast, 1.8x faster with AMX)")
    p.add_argument("--note", default="", help="a scope note for the report (what was left out and why)")
    p.add_argument("--nfe", default="5,10,20,50,100")
    p.add_argument("--samplers", default=",".join(ALL_SAMPLERS))
    p.add_argument("--ddpm-1000", dest="ddpm_1000", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--skip", default="", help="sampler:nfe cells to leave out, e.g. heun:100,dpmpp3m:100")
    p.add_argument("--extra", default="", help="sampler:nfe cells to add, e.g. dpmpp2m:50")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default=str(REPO / "runs" / "sampler_quality"))
    p.add_argument("--doc", default=str(REPO / "docs" / "SAMPLERS.md"))
    p.add_argument("--plot", default=str(REPO / "docs" / "sampler_quality.png"))
    p.add_argument("--device", default="auto")
    p.add_argument("--report-only", action="store_true", help="rewrite the doc and plot from OUT's finished cells")
    return p.parse_args(argv)


def build_grid(samplers: list[str], nfes: list[int], skip: set[tuple[str, int]], ddpm_1000: bool,
               cfg: float | None, clip_x0: bool = True, extra: list[tuple[str, int]] = (),
               precision: str = "auto") -> list[dict]:
    grid = []
    for s in samplers:
        steps = [k for k in nfes if (s, k) not in skip]
        if s == "ddpm" and ddpm_1000 and 1000 not in steps:
            steps.append(1000)
        steps += [k for e, k in extra if e == s and k not in steps]
        if steps:
            grid.append({"sampler": [s], "steps": steps, "clip_x0": [clip_x0], "precision": [precision],
                         **({"cfg": [cfg]} if cfg is not None else {})})
    return grid


def real_floor(spec, log=print) -> dict:
    """Accuracy and FD of N real training images (classes cycled like the samples) against the same reference."""
    import torch

    from largo.checkpoint import read_meta, resolve_checkpoint
    from largo.config import RunConfig
    from largo.data import load_images
    from largo.metrics.evaluate import EvalOptions, build_feature_spaces, evaluate, load_reference

    cfg = RunConfig.from_dict(read_meta(resolve_checkpoint(spec.checkpoint))["config"])
    ref = load_reference(cfg.data.dataset, spec.ref_split, cfg.data.resolution, cfg.data.data_root, spec.ref_n,
                         spec.seed)
    spaces = build_feature_spaces(ref, spec.classifier, None, True, False, "cpu", [])
    train = load_images(cfg.data.dataset, "train", cfg.data.resolution, cfg.data.data_root)
    k = len(train.class_names)
    g = torch.Generator().manual_seed(spec.seed)
    per_class = [torch.nonzero(train.labels == c).flatten() for c in range(k)]
    per_class = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    pick = torch.stack([per_class[i % k][i // k] for i in range(spec.n)])
    labels = torch.arange(spec.n) % k
    r = evaluate(train.images[pick], labels, ref, spaces, EvalOptions(kid_subsets=spec.kid_subsets, seed=spec.seed),
                 log=log)
    cls = next(v for name, v in r["feature_spaces"].items() if name.startswith("classifier"))
    return {"class_acc": cls["accuracy"]["overall"], "fd_cls": cls["fd"]["value"], "kid_cls": cls["kid"]["mean"],
            "precision_cls": cls["precision_recall"]["precision"], "recall_cls": cls["precision_recall"]["recall"],
            "var_ratio": r["variance_gap"]["var_ratio_mean"]}


# -- report ----------------------------------------------------------------------------------------------
def _f(v, digits=4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}g}"


def analyse(rows: list[dict], budget: int = 20, tol: float = 0.05) -> dict:
    best_fd = min(rows, key=lambda r: r["fd_cls"])
    best_acc = max(rows, key=lambda r: r["class_acc"])
    cheap = [r for r in rows if r["nfe"] <= budget]
    cheap_fd = min(cheap, key=lambda r: r["fd_cls"]) if cheap else None
    cheap_acc = max(cheap, key=lambda r: r["class_acc"]) if cheap else None
    return {
        "best_fd": best_fd, "best_acc": best_acc, "cheap_fd": cheap_fd, "cheap_acc": cheap_acc,
        "fd_holds": bool(cheap_fd and cheap_fd["fd_cls"] <= (1 + tol) * best_fd["fd_cls"]),
        "acc_holds": bool(cheap_acc and cheap_acc["class_acc"] >= (1 - tol) * best_acc["class_acc"]),
        "fd_ratio": cheap_fd["fd_cls"] / best_fd["fd_cls"] if cheap_fd else None,
        "acc_ratio": cheap_acc["class_acc"] / best_acc["class_acc"] if cheap_acc else None,
    }


def pivot(rows: list[dict], samplers: list[str], col: str, digits: int = 4, best=None) -> list[str]:
    steps = sorted({r["steps"] for r in rows})
    head = "| sampler | " + " | ".join(f"{s}" for s in steps) + " |"
    lines = [head, "|---|" + "|".join("---:" for _ in steps) + "|"]
    for s in samplers:
        cells = []
        for k in steps:
            r = next((r for r in rows if r["sampler"] == s and r["steps"] == k), None)
            v = _f(r[col], digits) if r else ""
            if r is not None and best is not None and r is best:
                v = f"**{v}**"
            cells.append(v)
        if any(cells):
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines


def make_plot(rows: list[dict], samplers: list[str], floor: dict | None, path: Path, title: str) -> None:
    """Quality and time against NFE. The quality panels zoom on the good cells: a value worse than 2× the best
    FD (or accuracy below 0.6) leaves the chart and is named in the panel's notes instead."""
    from largo.draw.plot import BLUE, GREEN, GREY, ORANGE, RED, Panel, Series, plot

    colors = dict(zip(ALL_SAMPLERS, (GREY, BLUE, ORANGE, GREEN, RED, PURPLE)))
    best_fd = min(r["fd_cls"] for r in rows)
    keep = {"fd_cls": lambda v: v <= 2 * best_fd, "class_acc": lambda v: v >= 0.6, "s_per_img": lambda v: True}
    panels = []
    for col, label, logy in (("fd_cls", "FD in classifier features (lower is better)", False),
                             ("class_acc", "class accuracy (higher is better)", False),
                             ("s_per_img", "wall seconds per image", True)):
        series, notes = [], []
        for s in samplers:
            rs = sorted((r for r in rows if r["sampler"] == s), key=lambda r: r["nfe"])
            if rs:
                ys = [r[col] if keep[col](r[col]) else math.nan for r in rs]
                notes += [f"{s} at {r['nfe']} NFE: {_f(r[col], 3)} (off the chart)" for r in rs if not keep[col](r[col])]
                series.append(Series([math.log10(r["nfe"]) for r in rs], ys, colors.get(s, BROWN), s, width=2))
        if floor and col == "class_acc":
            xs = [math.log10(min(r["nfe"] for r in rows)), math.log10(max(r["nfe"] for r in rows))]
            series.append(Series(xs, [floor[col]] * 2, (120, 120, 120), "real images", width=1))
        panels.append(Panel(label, series, xlabel="log10 NFE  (0.7 = 5, 1 = 10, 1.3 = 20, 2 = 100, 3 = 1000)",
                            ylabel=col, logy=logy, notes=notes))
    path.parent.mkdir(parents=True, exist_ok=True)
    plot(panels, (560, 420), title=title).save(path)


def write_doc(spec, rows, samplers, floor, meta, args, doc: Path, plot_path: Path, wall_min: float | None) -> dict:
    a = analyse(rows)
    step, ckpt = meta.get("step"), spec.checkpoint
    heun = {r["steps"]: r["nfe"] for r in rows if r["sampler"] == "heun"}
    rel = os.path.relpath(plot_path, doc.parent)
    cfg_used = sorted({r["cfg"] for r in rows})
    import shlex
    import sys

    shown, it = [], iter(args.argv if args.argv is not None else sys.argv[1:])
    for x in it:  # the command that computes the cells (not --report-only, not the note)
        if x == "--note":
            next(it, None)
        elif x != "--report-only" and not x.startswith("--note="):
            shown.append(x)
    cmd = "OMP_NUM_THREADS=2 .venv/bin/python benchmarks/sampler_quality.py " + " ".join(shlex.quote(x) for x in shown)
    fd_best, acc_best = a["best_fd"], a["best_acc"]
    lines = [
        "# Sampler quality per NFE",
        "",
        "Which sampler to use, and at how many network evaluations (NFE), for class-conditional Fashion-MNIST "
        "(issue 3). Generated by `benchmarks/sampler_quality.py`; numbers below are from one CPU run.",
        "",
        "```bash",
        cmd,
        "```",
        "",
        "## Setup",
        "",
        f"- checkpoint: `{ckpt}` (EMA weights, training step {step}); {meta.get('model', 'U-Net')}, "
        f"{meta.get('prediction', '?')}-prediction, 32×32 Fashion-MNIST",
        f"- N = {spec.n} images per cell (class i mod 10, seed {spec.seed}+i: **the same initial noise in every cell**), "
        f"guidance w = {', '.join(f'{c:g}' for c in cfg_used)}, spacing trailing, DDIM η = 0, DDPM with the "
        f"posterior variance β̃, x0 estimates clipped to [-1, 1]: {'yes' if args.clip_x0 else 'no'}; network "
        f"precision while sampling: {args.precision}" + (" (bf16 autocast; the sampler's own arithmetic stays "
                                                         "fp32/fp64)" if args.precision == "bf16" else ""),
        f"- metrics: the shipped Fashion-MNIST classifier (`checkpoints/classifiers/fashion_mnist-32`): class "
        f"accuracy of the samples, FD between classifier features of the samples and of the real "
        f"{spec.ref_split} split ({meta.get('n_ref', '?')} images); KID/precision/recall are in the CSV",
        "- NFE = network evaluations per image (a guided evaluation runs the conditional and unconditional inputs "
        "as one 2B batch and counts once). Heun's budget k uses (k+1)//2 σ-intervals, i.e. "
        + ", ".join(f"{k}→{v}" for k, v in sorted(heun.items())) + " evaluations; the columns are the "
        "requested budget, the plot uses the true NFE",
        f"- time: wall seconds per image on {meta.get('device', 'cpu')} ({meta.get('threads', '?')} threads, "
        f"batch {spec.batch_size})" + (" on a shared 2-core machine, so only ratios within this table mean much"
                                       if meta.get("device", "cpu") == "cpu" else ""),
        f"- noise: with N = {spec.n} the standard error of an accuracy near 0.9 is ±"
        f"{100 * math.sqrt(0.09 / spec.n):.1f} points; FD at small N is biased upwards by about the same amount in "
        "every cell (same seeds, same classes), so differences between cells are more reliable than the values",
    ]
    if args.skip:
        lines.append("- cells not run (`--skip`): " + ", ".join(c.replace(":", " at NFE ") for c in args.skip.split(",")))
    if args.note:
        lines += ["", "**Scope of this run.** " + args.note]
    lines += [
        "",
        "## Result",
        "",
    ]
    if a["cheap_fd"] is not None:
        c = a["cheap_fd"]
        lines += [
            f"- **Best at ≤ 20 NFE: `{c['sampler']}` at {c['nfe']} NFE**: FD {_f(c['fd_cls'])}, accuracy "
            f"{_f(c['class_acc'], 3)}.",
            f"- Best at any NFE: FD {_f(fd_best['fd_cls'])} (`{fd_best['sampler']}`, {fd_best['nfe']} NFE); "
            f"accuracy {_f(acc_best['class_acc'], 3)} (`{acc_best['sampler']}`, {acc_best['nfe']} NFE).",
            f"- 5 % target (FD at ≤ 20 NFE ≤ 1.05 × best FD): **{'holds' if a['fd_holds'] else 'does not hold'}** "
            f"(ratio {a['fd_ratio']:.3f}). Accuracy at ≤ 20 NFE ≥ 0.95 × best accuracy: "
            f"**{'holds' if a['acc_holds'] else 'does not hold'}** (`{a['cheap_acc']['sampler']}` "
            f"{a['cheap_acc']['nfe']} NFE, ratio {a['acc_ratio']:.3f}).",
        ]
    if floor:
        lines.append(f"- Real-image floor at this N ({spec.n} real training images vs the same reference): "
                     f"FD {_f(floor['fd_cls'])}, accuracy {_f(floor['class_acc'], 3)}.")
    lines += ["", f"![quality vs NFE]({rel})", "", "### FD in classifier features (lower is better; bold = best)", ""]
    lines += pivot(rows, samplers, "fd_cls", best=fd_best)
    lines += ["", "### Class accuracy (higher is better; bold = best)", ""]
    lines += pivot(rows, samplers, "class_acc", 3, best=acc_best)
    lines += ["", "### Wall seconds per image", ""]
    lines += pivot(rows, samplers, "s_per_img", 3)
    lines += ["", "### Variance gap: var_gen / var_real of pixel intensities (1 = no gap)", ""]
    lines += pivot(rows, samplers, "var_ratio", 3)
    lines += ["", "### Precision / recall (classifier features)", ""]
    pr = [{**r, "pr": f"{_f(r['precision_cls'], 2)} / {_f(r['recall_cls'], 2)}"} for r in rows]
    steps = sorted({r["steps"] for r in rows})
    lines += ["| sampler | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "|".join("---:" for _ in steps) + "|"]
    for s in samplers:
        cells = [next((r["pr"] for r in pr if r["sampler"] == s and r["steps"] == k), "") for k in steps]
        if any(cells):
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", f"Every cell's full eval JSON: `{spec.out}/cells/`; the flat table: `{spec.out}/results.csv`.",
              f"Run {dt.date.today().isoformat()}" + (f", {wall_min:.0f} min wall." if wall_min else "."), ""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    kept = doc.read_text().split(HAND_WRITTEN, 1)[1] if doc.is_file() and HAND_WRITTEN in doc.read_text() else ""
    doc.write_text("\n".join(lines) + ("\n" + HAND_WRITTEN + kept if kept else ""))
    return a


def main(argv=None) -> None:
    args = parse_args(argv)
    args.argv = argv
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from largo.sweep import read_rows, run_sweep, spec_from_dict

    args.ckpt_arg = args.checkpoint or os.path.relpath(default_checkpoint(), Path.cwd())
    samplers = [s for s in args.samplers.split(",") if s]
    nfes = [int(k) for k in args.nfe.split(",") if k]
    skip = {(s.split(":")[0], int(s.split(":")[1])) for s in args.skip.split(",") if s}
    extra = [(s.split(":")[0], int(s.split(":")[1])) for s in args.extra.split(",") if s]
    spec = spec_from_dict({"checkpoint": args.ckpt_arg, "n": args.n, "seed": args.seed, "out": args.out,
                           "grid": build_grid(samplers, nfes, skip, args.ddpm_1000, args.cfg, args.clip_x0, extra,
                                             args.precision),
                           "batch_size": args.batch_size, "device": args.device, "ref_split": "test",
                           "inception": False, "name": "Sampler quality per NFE"}, source=__file__)
    t0 = time.time()
    if args.report_only:
        rows = [r for r in read_rows(spec.out)]
    else:
        rows = run_sweep(spec)["rows"]
    wall = (time.time() - t0) / 60 if not args.report_only else None
    from largo.checkpoint import read_meta, resolve_checkpoint

    ckpt = resolve_checkpoint(spec.checkpoint)
    m = read_meta(ckpt)
    import json

    cell = json.loads(next((Path(spec.out) / "cells").glob("*.json")).read_text())
    meta = {"step": m.get("step"), "device": cell["sweep"]["device"], "threads": cell["sweep"]["torch_threads"],
            "n_ref": cell["n_reference"]}
    try:
        from largo.config import RunConfig
        from largo.models import build_unet

        rc = RunConfig.from_dict(m["config"])
        params = sum(p.numel() for p in build_unet(rc.model, rc.data.resolution).parameters()) / 1e6
        mm = rc.model
        meta["model"] = (f"U-Net base {mm.base_channels}, mult {','.join(map(str, mm.channel_mult))}, "
                         f"{mm.num_res_blocks} res-block(s) a level, {params:.2f} M parameters")
        meta["prediction"] = rc.diffusion.prediction
    except Exception:  # noqa: BLE001 - cosmetic
        pass
    floor = real_floor(spec)
    a = write_doc(spec, rows, samplers, floor, meta, args, Path(args.doc), Path(args.plot), wall)
    make_plot(rows, samplers, floor, Path(args.plot),
              f"Fashion-MNIST 32px, step {meta['step']}, N = {spec.n}, w = {rows[0]['cfg']:g}")
    c = a["cheap_fd"]
    print(f"best <= 20 NFE: {c['sampler']} {c['nfe']} NFE, FD {c['fd_cls']:.4g} (ratio to best {a['fd_ratio']:.3f}, "
          f"target {'holds' if a['fd_holds'] else 'fails'}); wrote {args.doc} and {args.plot}")


if __name__ == "__main__":
    main()
