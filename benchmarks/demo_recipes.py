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

from _common import set_fields
from largo.config import RunConfig, preset_config
from largo.data import load_images
from largo.metrics.classifier import classifier_outputs, load_classifier
from largo.metrics.fid import fd_from_features
from largo.models import build_unet
from largo.sampling import generate_images
from largo.train.trainer import Trainer

CLASSIFIERS = ("checkpoints/classifiers/fashion_mnist-32", "checkpoints/classifiers/fashion_mnist-32-vgg")


def recipe_config(a: argparse.Namespace) -> RunConfig:
    cfg = preset_config(a.preset)
    train = {"precision": a.precision, "max_minutes": 0.0, "steps": a.steps, "seed": a.seed, "device": "cpu",
             "checkpoint_every": 10**9, "sample_every": 0}
    for key in ("lr", "lr_schedule", "ema_decay", "batch_size", "lr_warmup"):
        if getattr(a, key) is not None:
            train[key] = getattr(a, key)
    cfg.train = dataclasses.replace(cfg.train, **train)
    cfg = set_fields(cfg, a.set)
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


# -- the diffusers peer (issue 23): diffusers' own components, trained on largo's data stream -------------------
def peer_unet(num_classes: int = 10):
    """The peer's network: a class-conditional `UNet2DModel` of 1.11 M parameters, blocks 32/64/64, one layer a block,
    attention at the lowest level, a null class for guidance (the class embedding is added to the time embedding)."""
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), num_class_embeds=num_classes + 1)


class PeerNet(torch.nn.Module):
    """The peer in largo's calling convention `net(x, t, y)`, so largo's samplers and judges score it alike."""

    def __init__(self, unet: torch.nn.Module, num_classes: int = 10):
        super().__init__()
        self.unet, self.num_classes = unet, num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=y).sample


def train_peer(a: argparse.Namespace) -> None:
    """The peer recipe of issue 23: DDPMScheduler (linear β, v-prediction), AdamW 1e-3 (weight decay 1e-4) with 100
    warm-up steps, gradient clipping 1, EMAModel (0.999, power 0.75), batch 64, flips, 10 % label dropout."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from largo.data import BatchStream
    from largo.runtime import autocast

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = a.out / a.name
    out.mkdir(parents=True, exist_ok=True)
    snaps = {int(s) for s in a.snapshots.split(",") if s} | {a.steps}
    unet = peer_unet()
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="v_prediction")
    opt = torch.optim.AdamW(unet.parameters(), lr=a.lr or 1e-3, weight_decay=1e-4)
    warmup = 100 if a.lr_warmup is None else a.lr_warmup
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    ema = EMAModel(unet.parameters(), decay=a.ema_decay or 0.999, use_ema_warmup=True, power=0.75)
    batch = a.batch_size or 64
    stream = BatchStream(load_images("fashion_mnist", "train", 32), batch, hflip=True, seed=a.seed)
    dtype = torch.bfloat16 if a.precision == "bf16" else None
    t0, log = time.time(), []
    for step in range(1, a.steps + 1):
        x0, y = stream.next()
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch,))
        y = torch.where(torch.rand(batch) < 0.1, torch.full_like(y, 10), y)
        with autocast(torch.device("cpu"), dtype):
            pred = unet(sched.add_noise(x0, noise, t), t, class_labels=y).sample
        loss = torch.nn.functional.mse_loss(pred.float(), sched.get_velocity(x0, noise, t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        ema.step(unet.parameters())
        if step in snaps:
            shadow = peer_unet()
            ema.copy_to(shadow.parameters())
            save_file({k: v.contiguous() for k, v in shadow.state_dict().items()}, str(out / f"snap_{step}.safetensors"))
            log.append({"step": step, "seconds": round(time.time() - t0, 1), "loss": float(loss.detach())})
            print(f"{a.name}: step {step} ({time.time() - t0:.0f} s)", flush=True)
    # recorded for the scorer and the report: the peer's size, batch and prediction (its network is diffusers')
    cfg = preset_config("demo32")
    cfg.diffusion = dataclasses.replace(cfg.diffusion, prediction="v", loss_weighting="uniform")
    cfg.train = dataclasses.replace(cfg.train, batch_size=batch)
    cfg.model = dataclasses.replace(cfg.model, image_channels=1, num_classes=10, input_size=32)
    settings = {"name": a.name, "peer": "diffusers", "config": cfg.to_dict(), "threads": torch.get_num_threads(),
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
        cfg.peer = settings.get("peer")
        for snap in sorted(settings_path.parent.glob("snap_*.safetensors"), key=lambda p: int(p.stem[5:])):
            step = int(snap.stem[5:])
            if a.steps and step not in {int(x) for x in a.steps.split(",")}:
                continue
            dest = settings_path.parent / f"score_{step}{a.tag}.json"
            if dest.exists() and not a.force:
                continue
            dest.write_text(json.dumps(score_snapshot(cfg, snap, step, judges, a), indent=2))


def score_snapshot(cfg: RunConfig, snap: Path, step: int, judges: list, a: argparse.Namespace) -> dict:
    if getattr(cfg, "peer", None):
        unet = peer_unet()
        unet.load_state_dict(load_file(str(snap)))
        net = PeerNet(unet)
    else:
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
        images = generate_images(net, cfg, labels, seeds, sampler=sampler, steps=int(steps), cfg=float(w),
                                 clip_x0=clip_x0, batch_size=250, device=torch.device("cpu"))
        if images.shape[-1] == 28:  # a native 28×28 model: pad as the data pipeline pads the 32×32 judges' data
            images = torch.nn.functional.pad(images, (2, 2, 2, 2))
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
    if a.curves and a.curves_png:
        plot_curves(a, rows, judges)
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


def plot_curves(a: argparse.Namespace, rows: list[dict], judges: list[str]) -> None:
    """Accuracy and FD against training images for several runs (--curves), one panel per judge and measure."""
    from largo.draw.plot import BLUE, GREEN, ORANGE, RED, Panel, Series, plot

    colors = (BLUE, ORANGE, GREEN, RED, (148, 103, 189), (140, 86, 75))
    runs = []  # (run, label, batch size): images seen = step × batch
    for item in a.curves.split(","):
        run, _, label = item.partition("=")
        batch = json.loads((a.out / run / "settings.json").read_text())["config"]["train"]["batch_size"]
        runs.append((run, label or run, batch))
    n = next(r["n"] for r in rows if r["run"] in {run for run, _, _ in runs})
    panels = []
    for measure in ("accuracy", "fd"):
        for j in judges:
            series = []
            for (run, label, batch), color in zip(runs, colors):
                # accuracy is drawn as the share missed, so every curve falls and stays clear of the legend
                pts = sorted((r["step"] * batch / 1000, 1 - r[j][measure] if measure == "accuracy" else r[j][measure])
                             for r in rows if r["run"] == run and r.get("spec") == a.curve_spec and j in r)
                if pts:
                    series.append(Series([x for x, _ in pts], [y for _, y in pts], color, label=label))
            panels.append(Panel(f"{j}: {'share missed' if measure == 'accuracy' else 'Fréchet distance'}",
                                series, xlabel="training images (thousands)", y_from_zero=True,
                                ylabel="1 − accuracy" if measure == "accuracy" else "FD (judge's features)",
                                notes=[f"N = {n}, {a.curve_spec}"]))
    plot(panels, (420, 360)).save(a.curves_png)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    tp = sub.add_parser("train-peer")
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
    t.add_argument("--preset", default="demo", help="the recipe's starting point (demo32: the 2026-12-02 demo)")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="any config field, e.g. diffusion.prediction=edm (repeatable)")
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
    r.add_argument("--curves", default="", help="comma-separated RUN or RUN=LABEL: accuracy and FD against images, each judge")
    r.add_argument("--curves-png", type=Path, help="write the --curves figure here")
    r.add_argument("--mark", dest="marks", action="append", default=[], type=lambda v: (int(v.split(":")[0]),
                   v.split(":", 1)[1]), help="STEP:LABEL, a vertical line (repeatable)")
    for q in (tp,):
        q.add_argument("--name", required=True)
        q.add_argument("--steps", type=int, default=600)
        q.add_argument("--snapshots", default="")
        q.add_argument("--precision", default="bf16")
        q.add_argument("--seed", type=int, default=0)
        for flag, kind in (("--lr", float), ("--lr-warmup", int), ("--ema-decay", float), ("--batch-size", int)):
            q.add_argument(flag, type=kind)
    for q in (t, tp, s, r):
        q.add_argument("--out", type=Path, required=True)
        q.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    {"train": train, "train-peer": train_peer, "score": score, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
