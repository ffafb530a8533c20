"""Recognisability along the reverse process: at each sampler step, how often the domain classifier names the
asked class in the current state x_t and in the network's estimate x̂0 of the final image. It answers claims such
as "an image becomes recognisable 30-50 % of the way through denoising" with a number."""

from __future__ import annotations

import torch

from largo.errors import LargoError
from largo.images import to_uint8
from largo.metrics.evaluate import classifier_space
from largo.metrics.features import ClassifierFeatures
from largo.sampling import LoadedModel, SamplingOptions, reverse_trajectory


def recognisability(model: LoadedModel, options: SamplingOptions, per_class: int = 10, seed: int = 0,
                    batch_size: int = 100, device: torch.device | str = "cpu") -> dict:
    """Per step: fraction of the steps done, t, and the classifier's accuracy on x_t and on x̂0 (class i mod K)."""
    k = model.cfg.model.num_classes
    if k == 0:
        raise LargoError("recognisability needs a class-conditional model")
    if per_class < 1:
        raise LargoError("--n must be >= 1")
    d = model.cfg.data
    space = classifier_space(d.dataset, d.resolution, device=device)
    if space is None:
        raise LargoError(f"no domain classifier for {d.dataset} at {d.resolution}px to judge the images")
    labels = torch.arange(k).repeat(per_class)
    hits_xt: list[int] = []
    hits_x0: list[int] = []
    ts: list[float] = []
    for i in range(0, len(labels), batch_size):
        y = labels[i:i + batch_size]
        seeds = [seed + j for j in range(i, i + len(y))]
        final, trajectory = reverse_trajectory(model.net, model.cfg, y, seeds, options, device, latent=model.latent)
        frames = [(f["t"], f["x_t"], f["x0_hat"]) for f in trajectory] + [(0.0, final, final)]
        for s, (t, x_t, x0) in enumerate(frames):
            if s == len(ts):
                ts.append(float(t))
                hits_xt.append(0)
                hits_x0.append(0)
            for hits, x in ((hits_xt, x_t), (hits_x0, x0)):
                hits[s] += int((_predict(space, to_uint8(x.cpu())) == y).sum())
    n, steps = len(labels), len(ts) - 1
    rows = [{"step": s, "fraction_done": s / steps, "t": ts[s], "acc_xt": hits_xt[s] / n, "acc_x0": hits_x0[s] / n}
            for s in range(len(ts))]
    final_acc = rows[-1]["acc_x0"]
    half = next((r["fraction_done"] for r in rows if r["acc_x0"] >= 0.5 * final_acc), None) if final_acc else None
    return {"sampler": options.sampler, "steps": options.steps, "cfg": options.cfg, "n": n, "classes": k,
            "classifier": space.id, "resize": space.resize, "rows": rows, "final_accuracy": final_acc,
            "x0_half_of_final_at": half,
            "xt_half_of_final_at": next((r["fraction_done"] for r in rows if r["acc_xt"] >= 0.5 * final_acc), None)
            if final_acc else None}


def _predict(space: ClassifierFeatures, images: torch.Tensor) -> torch.Tensor:
    return space(images)["logits"].argmax(1)
