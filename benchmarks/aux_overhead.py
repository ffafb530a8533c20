"""Training-speed cost of the auxiliary perceptual / feature-matching losses (docs/STUDIES.md, Study 7).

    python benchmarks/aux_overhead.py                      # the demo model, batch 64, fp32, on the CPU

The real `Trainer.train_step` of the demo preset on synthetic Fashion-MNIST-shaped data, without and with the
auxiliary losses (perceptual 0.1 + feature matching 0.05 in the critic classifier, for t < 0.25 T): the two
trainers alternate round by round, so a load change on the machine hits both; the result is the ratio of their
images/s. The extra cost is the critic's forward on x0 and forward + backward on x̂0 for the quarter of the batch
whose t is small.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from _common import load_average, synthetic_images
from largo.config import preset_config
from largo.data import ImageSet
from largo.train import Trainer


def trainer(aux: bool, batch: int, precision: str, tmp: str, data: ImageSet) -> Trainer:
    cfg = preset_config("demo")
    cfg.train = dataclasses.replace(cfg.train, batch_size=batch, device="cpu", precision=precision, steps=10**6,
                                    max_minutes=0.0, checkpoint_every=10**6, lr_warmup=0)
    if aux:
        cfg.diffusion = dataclasses.replace(cfg.diffusion, perceptual_weight=0.1, feature_match_weight=0.05,
                                            aux_net="classifier:fashion_mnist-32-critic")
    return Trainer(cfg, Path(tmp) / ("aux" if aux else "plain"), progress=False, data=data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--precision", default="fp32")
    a = p.parse_args()
    data = synthetic_images(1, 10, 32, 1024)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"plain": trainer(False, a.batch, a.precision, tmp, data),
                "aux": trainer(True, a.batch, a.precision, tmp, data)}
        seconds = {k: 0.0 for k in runs}
        for tr in runs.values():
            tr.train_step()  # warm-up
        for _ in range(a.rounds):
            for name, tr in runs.items():
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    tr.train_step()
                seconds[name] += time.perf_counter() - t0
    ips = {k: a.batch * a.steps * a.rounds / s for k, s in seconds.items()}
    print(json.dumps({"machine": f"cpu, {torch.get_num_threads()} threads, load {load_average()}",
                      "batch": a.batch, "precision": a.precision, "steps": a.steps * a.rounds,
                      "images_per_s": ips, "aux_cost_ratio": ips["plain"] / ips["aux"]}, indent=2))


if __name__ == "__main__":
    main()
