"""Memorisation check of a diffusion checkpoint: each sample's nearest training image, in the domain classifier's
features and in pixels, against the same distance for real held-out images (the dataset's test split).

    python benchmarks/memorisation.py flowers102-64 --n 1000 --steps 20 --cfg 1.5 --device cuda --out-dir runs/mem
    python benchmarks/memorisation.py flowers102-64 --n 16 --steps 10 --device cpu --out-dir /tmp/mem   # dry run

Samples: classes cycled 0..K-1 and seeds 0..N-1, as `largo eval` draws them (DPM++2M by default). Distances:
L2 in the classifier's pooled features (the space `largo eval` uses), and the RMS pixel difference in 8-bit levels;
the training set is searched with its mirrors (training flips images). Writes `memorisation.json` (per space:
quantiles of the samples' and the held-out images' nearest-training distances, the held-out 1st percentile, the
share of samples below it — about 0.01 when nothing is copied — and the median ratio; plus the share of samples
whose nearest training image has the sample's class) and `closest_pairs.png`: the `--pairs` samples closest to a
training image (sample above, nearest training image below, distance on top), per space, and the held-out real
images closest to a training image for comparison (what a near-duplicate looks like in the data itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from largo.data.datasets import load_images
from largo.draw.grid import Section, annotated_grid
from largo.metrics.evaluate import classifier_space
from largo.metrics.features import extract
from largo.metrics.memorisation import nearest_training, pixel_vectors
from largo.runtime import resolve_device
from largo.sampling import load_model


def section(title: str, top: torch.Tensor, bottom: torch.Tensor, d: torch.Tensor, idx: torch.Tensor, k: int,
            labels: tuple[str, str]) -> Section:
    order = d.argsort()[:k]
    s = Section(title, col_labels=[f"#{r + 1}\n{float(d[i]):.2f}" for r, i in enumerate(order)])
    s.add(labels[0], [top[i] for i in order])
    s.add(labels[1], [bottom[idx[i]] for i in order])
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="run directory, checkpoint folder or released name (e.g. flowers102-64)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--sampler", default="dpmpp2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=1.5)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default="")
    p.add_argument("--classifier", default=None, help="domain classifier folder (default: the shipped one)")
    p.add_argument("--pairs", type=int, default=16, help="closest pairs shown per space")
    p.add_argument("--no-mirror", action="store_true", help="do not search the mirrored training images")
    p.add_argument("--out-dir", type=Path, default=Path("runs/memorisation"))
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    t0 = time.time()
    model = load_model(a.source, device)
    d = model.cfg.data
    k = len(model.class_names)
    labels = torch.arange(a.n) % k
    samples = model.generate(labels, list(range(a.n)), sampler=a.sampler, steps=a.steps, cfg=a.cfg,
                             batch_size=a.batch_size, device=device)
    t_gen = time.time() - t0
    print(f"generated {a.n} samples in {t_gen:.0f} s", flush=True)
    train = load_images(d.dataset, "train", d.resolution, a.data_root, split_seed=d.split_seed)
    heldout = load_images(d.dataset, "test", d.resolution, a.data_root, split_seed=d.split_seed)
    space = classifier_space(d.dataset, d.resolution, a.classifier, device)
    spaces = {}  # name → uint8 images to (N, d) rows on the device, where the search runs
    if space is not None:
        spaces[space.id] = lambda im: extract(space, im)["features"].to(device)
    spaces["pixels_rms_8bit"] = lambda im: pixel_vectors(im.to(device))
    result = {"source": str(a.source), "checkpoint": str(model.checkpoint), "step": model.step, "n": a.n,
              "sampler": a.sampler, "steps": a.steps, "cfg": a.cfg, "mirror": not a.no_mirror,
              "n_train": len(train), "n_heldout": len(heldout), "generate_s": round(t_gen, 1), "spaces": {}}
    sections = []
    for name, embed in spaces.items():
        t1 = time.time()
        out = nearest_training(samples, heldout.images, train.images, embed, mirror=not a.no_mirror)
        print(f"{name}: nearest training images of {a.n} samples and {len(heldout)} held-out images among "
              f"{len(train)} (x2 with mirrors) in {time.time() - t1:.0f} s", flush=True)
        same = (train.labels[out["sample_idx"]] == labels).double().mean()
        result["spaces"][name] = {**out["summary"], "share_nearest_train_same_class": round(float(same), 4)}
        short = "classifier features" if name.startswith("classifier") else "pixels (RMS, 8-bit)"
        sections.append(section(f"samples closest to a training image in {short}", samples, train.images,
                                out["sample_d"], out["sample_idx"], a.pairs, ("sample", "nearest train")))
        if not name.startswith("classifier"):
            sections.append(section(f"held-out real images closest to a training image in {short}",
                                    heldout.images, train.images, out["heldout_d"], out["heldout_idx"], a.pairs,
                                    ("held-out real", "nearest train")))
    result["total_s"] = round(time.time() - t0, 1)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    (a.out_dir / "memorisation.json").write_text(json.dumps(result, indent=1) + "\n")
    annotated_grid(sections).save(a.out_dir / "closest_pairs.png")
    for name, s in result["spaces"].items():
        print(f"{name}: samples' nearest-train distance median {s['samples']['q0.5']} (held-out "
              f"{s['heldout']['q0.5']}), min {s['samples']['q0']} (held-out {s['heldout']['q0']}); "
              f"{100 * s['share_samples_below_heldout_q0.01']:.1f} % of samples below the held-out 1st "
              f"percentile {s['heldout_q0.01']} (held-out itself {100 * s['share_heldout_below_heldout_q0.01']:.1f}"
              f" %); nearest train of the same class {100 * s['share_nearest_train_same_class']:.0f} %")
    print(f"{a.n} samples ({a.sampler} {a.steps}, cfg {a.cfg}) in {t_gen:.0f} s; total {result['total_s']} s; "
          f"wrote {a.out_dir / 'memorisation.json'} and {a.out_dir / 'closest_pairs.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
