"""Demo recipes on the CPU at a fixed number of training steps, scored by two classifiers of different
architectures (issue 17, docs/DEMO.md).

    # train: the demo preset with one change, EMA weights kept at the listed steps
    python benchmarks/demo_recipes.py train --name base --out runs/demo_recipes --steps 1400 --snapshots 400,800,1400 \
        [--precision bf16] [--lr 1e-3] [--lr-schedule cosine] [--ema-decay 0.995] [--loss-weighting min_snr] \
        [--base-channels 32] [--seed 0] [--threads 1]
    # score: every snapshot of every run under OUT, each sampling spec, both classifiers
    python benchmarks/demo_recipes.py score --out runs/demo_recipes --n 500 --samplings dpmpp2m:20:3,ddim:20:3:noclip
    # report: markdown tables of all scores, and the accuracy-against-steps curve of one run
    python benchmarks/demo_recipes.py report --out runs/demo_recipes --curve base --png docs/demo_curve.png \
        --mark 1000:"fp32, 9 min" --mark 1450:"bf16, 9 min"

`train` runs the real `Trainer.train_step` for exactly --steps steps (no time budget, so runs compare at the same
number of images whatever else the machine is doing) and writes OUT/NAME/{settings.json, snap_STEP.safetensors,
train.jsonl}; `score` samples N images per snapshot (classes cycled, seeds 10000+i, as `make demo` checks them)
and writes OUT/NAME/score_STEP.json with, per sampling spec and per classifier, the share of samples assigned to
their class and the Fréchet distance to the 10,000 real test images in that classifier's features.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from largo.config import RunConfig, preset_config
from largo.data import load_images
from largo.metrics.classifier import classifier_outputs, load_classifier
from largo.metrics.fid import fd_from_features
from largo.models import build_unet
from largo.sampling import generate_images
from largo.train.trainer import Trainer

CLASSIFIERS = ("checkpoints/classifiers/fashion_mnist-32", "checkpoints/classifiers/fashion_mnist-32-vgg")


def recipe_config(a: argparse.Namespace) -> RunConfig:
    cfg = preset_config("demo")
    train = {"precision": a.precision, "max_minutes": 0.0, "steps": a.steps, "seed": a.seed, "device": "cpu",
             "checkpoint_every": 10**9, "sample_every": 0}
    for key in ("lr", "lr_schedule", "ema_decay", "batch_size", "lr_warmup"):
        if getattr(a, key) is not None:
            train[key] = getattr(a, key)
    cfg.train = dataclasses.replace(cfg.train, **train)
    if a.loss_weighting:
        cfg.diffusion = dataclasses.replace(cfg.diffusion, loss_weighting=a.loss_weighting)
    if a.base_channels:
        cfg.model = dataclasses.replace(cfg.model, base_channels=a.base_channels)
    return cfg


def train(a: argparse.Namespace) -> None:
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = recipe_config(a)
    out = a.out / a.name
    snaps = {int(s) for s in a.snapshots.split(",") if s} | {a.steps}
    trainer = Trainer(cfg, out / "run", progress=False)
    t0, log = time.time(), []
    while trainer.step < a.steps:
        loss, _, _ = trainer.train_step()
        if trainer.step in snaps:
            state = {k: v.detach().contiguous() for k, v in trainer.ema.net.state_dict().items()}
            save_file(state, str(out / f"snap_{trainer.step}.safetensors"))
            log.append({"step": trainer.step, "seconds": round(time.time() - t0, 1), "loss": loss})
            print(f"{a.name}: step {trainer.step} ({time.time() - t0:.0f} s)", flush=True)
    settings = {"name": a.name, "config": trainer.cfg.to_dict(), "threads": torch.get_num_threads(),
                "train_seconds": round(time.time() - t0, 1), "snapshots": log}
    (out / "settings.json").write_text(json.dumps(settings, indent=2))


def score(a: argparse.Namespace) -> None:
    if a.threads:
        torch.set_num_threads(a.threads)
    test = load_images("fashion_mnist", "test", 32)
    judges = []
    for path in a.classifiers.split(","):
        clf, meta = load_classifier(path)
        real_feats, real_logits = classifier_outputs(clf, test.images)
        real_acc = float((real_logits.argmax(1) == test.labels).float().mean())
        judges.append((Path(path).name, clf, real_feats, real_acc))
    for settings_path in sorted(a.out.glob("*/settings.json")):
        settings = json.loads(settings_path.read_text())
        if a.only and settings["name"] not in a.only.split(","):
            continue
        cfg = RunConfig.from_dict(settings["config"])
        for snap in sorted(settings_path.parent.glob("snap_*.safetensors"), key=lambda p: int(p.stem[5:])):
            step = int(snap.stem[5:])
            if a.steps and step not in {int(x) for x in a.steps.split(",")}:
                continue
            dest = settings_path.parent / f"score_{step}{a.tag}.json"
            if dest.exists() and not a.force:
                continue
            dest.write_text(json.dumps(score_snapshot(cfg, snap, step, judges, a), indent=2))


def score_snapshot(cfg: RunConfig, snap: Path, step: int, judges: list, a: argparse.Namespace) -> dict:
    net = build_unet(cfg.model, cfg.data.resolution)
    net.load_state_dict(load_file(str(snap)))
    net.eval()
    k = 10
    labels = torch.arange(a.n) % k
    seeds = [10_000 + i for i in range(a.n)]
    rows = []
    for spec in a.samplings.split(","):
        sampler, steps, w, *rest = spec.split(":")
        clip_x0 = "noclip" not in rest
        t0 = time.time()
        images = generate_images(net, cfg, labels, seeds, sampler=sampler, steps=int(steps), cfg_scale=float(w),
                                 clip_x0=clip_x0, batch_size=250, device=torch.device("cpu"))
        row = {"spec": spec, "sampler": sampler, "steps": int(steps), "cfg": float(w), "clip_x0": clip_x0, "n": a.n,
               "sample_seconds": round(time.time() - t0, 1)}
        for name, clf, real_feats, real_acc in judges:
            feats, logits = classifier_outputs(clf, images)
            pred = logits.argmax(1)
            row[name] = {"accuracy": float((pred == labels).float().mean()),
                         "per_class": [float((pred[labels == c] == c).float().mean()) for c in range(k)],
                         "fd": fd_from_features(feats, real_feats), "real_test_accuracy": real_acc}
        print(f"{snap.parent.name} step {step} {spec}: " + ", ".join(
            f"{name} {row[name]['accuracy']:.3f} (FD {row[name]['fd']:.2f})" for name, *_ in judges), flush=True)
        rows.append(row)
    return {"step": step, "scores": rows}


def report(a: argparse.Namespace) -> None:
    """Markdown tables of every score file under OUT, and the accuracy-against-steps curve of --curve as a PNG."""
    from largo.draw.plot import BLUE, GREY, ORANGE, Panel, Series, plot

    rows = []
    for path in sorted(a.out.glob("*/score_*.json")):
        for row in json.loads(path.read_text())["scores"]:
            rows.append({"run": path.parent.name, "step": int(json.loads(path.read_text())["step"]), **row})
    judges = [Path(c).name for c in CLASSIFIERS]
    print("| run | step | sampling | " + " | ".join(f"{j} accuracy | FD" for j in judges) + " |")
    print("| --- | --- | --- | " + " | ".join("--- | ---" for _ in judges) + " |")
    for r in sorted(rows, key=lambda r: (r["run"], r["step"], r.get("spec", ""))):
        cells = " | ".join(f"{r[j]['accuracy']:.3f} | {r[j]['fd']:.2f}" if j in r else " | " for j in judges)
        print(f"| {r['run']} | {r['step']} | {r.get('spec', '')} | {cells} |")
    curve = sorted((r for r in rows if r["run"] == a.curve and r.get("spec") == a.curve_spec), key=lambda r: r["step"])
    if not curve or not a.png:
        return
    steps = [r["step"] for r in curve]
    series = [Series(steps, [r[j]["accuracy"] for r in curve], color, label=j)
              for j, color in zip(judges, (BLUE, ORANGE)) if all(j in r for r in curve)]
    lo = min(min(sr.y) for sr in series)
    for x, label in a.marks:
        series.append(Series([x, x], [lo, 1.0], GREY, label=label, width=1.0))
    series.append(Series([steps[0], steps[-1]], [0.88, 0.88], GREY, label="88 % (issue 17's bar)", width=1.0))
    panel = Panel(f"{a.curve}: share of {curve[0]['n']} samples recognised ({a.curve_spec})", series,
                  xlabel="training steps (batch 64)", ylabel="accuracy")
    plot([panel], (720, 420)).save(a.png)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--name", required=True)
    t.add_argument("--steps", type=int, default=1400)
    t.add_argument("--snapshots", default="")
    t.add_argument("--precision", default="bf16")
    t.add_argument("--lr", type=float)
    t.add_argument("--lr-schedule")
    t.add_argument("--lr-warmup", type=int)
    t.add_argument("--ema-decay", type=float)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--loss-weighting")
    t.add_argument("--base-channels", type=int)
    t.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("--n", type=int, default=500)
    s.add_argument("--samplings", default="dpmpp2m:20:3")
    s.add_argument("--classifiers", default=",".join(CLASSIFIERS))
    s.add_argument("--only", default="", help="comma-separated run names (default: all)")
    s.add_argument("--steps", default="", help="comma-separated snapshot steps (default: all)")
    s.add_argument("--tag", default="", help="suffix of the score files (score_STEP<TAG>.json)")
    s.add_argument("--force", action="store_true", help="re-score snapshots that already have a score")
    r = sub.add_parser("report")
    r.add_argument("--curve", default="base", help="the run whose snapshots make the curve")
    r.add_argument("--curve-spec", default="dpmpp2m:20:3")
    r.add_argument("--png", type=Path, help="write the curve here")
    r.add_argument("--mark", dest="marks", action="append", default=[], type=lambda v: (int(v.split(":")[0]),
                   v.split(":", 1)[1]), help="STEP:LABEL, a vertical line (repeatable)")
    for q in (t, s, r):
        q.add_argument("--out", type=Path, required=True)
        q.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    {"train": train, "score": score, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
