"""Demo-recipe sweep: train the `demo` preset for a fixed number of images (what `make demo` sees on a 2-core CPU
in 9 minutes) with one change, then score its EMA samples with the shipped Fashion-MNIST classifier.

    python benchmarks/records/demo_sweep.py --name base --out runs/sweep [--lr 2e-3] [--ema-decay 0.995]
        [--prediction v] [--batch-size 32] [--samplings ddim:20:3,ddim:20:2,dpmpp2m:20:3] [--n 1000]

Writes OUT/NAME.json: the settings, the training summary and, per (sampler, steps, cfg), the share of the N
samples (N/10 per class, seeds 10000+i) that the classifier assigns to their conditioning class.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from largo.config import preset_config
from largo.metrics.classifier import classifier_outputs, find_classifier, load_classifier
from largo.sampling import generate_images
from largo.train.trainer import Trainer

IMAGES = 850 * 64  # ≈ what `make demo` trains on in 9 min at ~100 images/s on the 2-core CPU


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--images", type=int, default=IMAGES)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--ema-decay", type=float, default=None)
    p.add_argument("--prediction", default=None)
    p.add_argument("--loss-weighting", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samplings", default="ddim:20:3")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--data-root", default="")
    a = p.parse_args()

    cfg = preset_config("demo")
    steps = a.images // a.batch_size
    warmup = cfg.train.lr_warmup * 64 // a.batch_size  # the preset's warm-up, in images
    train_kw = {"device": a.device, "precision": a.precision, "max_minutes": 0.0, "steps": steps,
                "batch_size": a.batch_size, "lr_warmup": warmup, "seed": a.seed, "checkpoint_every": 100_000,
                "log_every": 50, "sample_every": 0}
    if a.lr is not None:
        train_kw["lr"] = a.lr
    if a.ema_decay is not None:
        train_kw["ema_decay"] = a.ema_decay
    cfg.train = dataclasses.replace(cfg.train, **train_kw)
    cfg.data = dataclasses.replace(cfg.data, data_root=a.data_root)
    dif_kw = {}
    if a.prediction:
        dif_kw["prediction"] = a.prediction
    if a.loss_weighting:
        dif_kw["loss_weighting"] = a.loss_weighting
    cfg.diffusion = dataclasses.replace(cfg.diffusion, **dif_kw)

    run_dir = a.out / a.name
    t0 = time.time()
    trainer = Trainer(cfg, run_dir, progress=False)
    summary = trainer.fit()
    train_s = time.time() - t0
    device = trainer.device
    clf_path = find_classifier("fashion_mnist", 32)
    clf, meta = load_classifier(clf_path, device)
    k = len(trainer.class_names)
    labels = torch.arange(k).repeat_interleave(a.n // k)
    seeds = [10_000 + i for i in range(len(labels))]
    scores = []
    for spec in a.samplings.split(","):
        sampler, st, w = spec.split(":")
        t1 = time.time()
        images = generate_images(trainer.ema.net, cfg, labels, seeds, sampler=sampler, steps=int(st),
                                 cfg=float(w), batch_size=500, device=device)
        with torch.no_grad():
            pred = classifier_outputs(clf, images, 500, device)[1].argmax(1)
        acc = float((pred == labels).float().mean())
        per = [float((pred[labels == c] == c).float().mean()) for c in range(k)]
        scores.append({"sampler": sampler, "steps": int(st), "cfg": float(w), "accuracy": acc, "per_class": per,
                       "n": len(labels), "seconds": round(time.time() - t1, 1)})
        print(f"{a.name}: {spec} accuracy {acc:.3f}", flush=True)
    last = [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines() if ln.strip()][-1]
    result = {"name": a.name, "images": steps * a.batch_size, "steps": steps, "batch_size": a.batch_size,
              "lr": cfg.train.lr, "lr_warmup": warmup, "ema_decay": cfg.train.ema_decay,
              "prediction": cfg.diffusion.prediction, "loss_weighting": cfg.diffusion.loss_weighting,
              "seed": a.seed, "precision": a.precision, "train_seconds": round(train_s, 1),
              "final_loss_window": last.get("loss"), "summary": summary, "classifier": str(clf_path),
              "classifier_test_accuracy_real": meta.get("test_accuracy"), "scores": scores}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.name}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
