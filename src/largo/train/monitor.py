"""Quality while a run trains (`--eval-every N --eval-n 500`): every N steps the EMA network draws the same seeded
images (classes cycled 0…K−1, image i from seed i, the run's sampling settings), and the domain classifier scores
them against the held-out split: accuracy of the samples against their labels, Fréchet distance and
precision/recall (k = 3) in its feature space. The memorisation check (`largo.metrics.memorisation`) measures how
close each sample is to its nearest training image (mirrors included when the run flips) in pixels, against the
same distance for held-out images: `memorised` is the share of samples closer than the held-out images' 1st
percentile (about 0.01 for a model that does not copy).

The evaluation runs between two optimizer steps and puts back every global random state it may touch, so the
training that follows is bit for bit the training without it (tests/test_finetune.py). The number named by
`best_metric` picks `checkpoints/best`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from largo.config import RunConfig
from largo.data import ImageSet, load_images
from largo.errors import LargoError
from largo.metrics import defaults
from largo.metrics.classifier import check_classifier, find_classifier, load_classifier
from largo.metrics.features import ClassifierFeatures, extract
from largo.metrics.fid import fd_from_features
from largo.metrics.memorisation import compare, nearest_neighbours, pixel_vectors, with_mirrors
from largo.metrics.evaluate import data_resize_method
from largo.metrics.prc import precision_recall
from largo.metrics.refstats import reference_outputs
from largo.sampling import SamplingOptions, generate_images
from largo.train.rng import rng_state, set_rng_state

REFERENCE_N = 2000  # held-out images the FD and recall compare against (a fixed seeded subset of the split)
FEW_HELDOUT = 200  # below this many held-out images (a folder of 4,000 or fewer), the FD and recall are noisy
LOWER_IS_BETTER = {"fd": True, "accuracy": False, "recall": False}


def find_judge(cfg: RunConfig) -> Path | None:
    """The classifier that judges in-training evaluations: `eval_classifier` (a folder or a name under
    checkpoints/classifiers) or the shipped one for the dataset at its resolution; None when there is none."""
    spec = cfg.train.eval_classifier
    if not spec:
        return find_classifier(cfg.data.dataset, cfg.data.resolution)
    if Path(spec).is_dir():
        return Path(spec)
    for root in defaults.classifier_search_dirs():
        if (root / spec / defaults.CLASSIFIER_CONFIG).is_file():
            return root / spec
    raise LargoError(f"eval_classifier {spec!r}: no such classifier folder or name under "
                     f"{' or '.join(str(d) for d in defaults.classifier_search_dirs())}")


class TrainingEval:
    """The fixed evaluation of one run: labels, seeds, held-out reference features and training-set pixels are
    prepared once; each call scores the current EMA network."""

    def __init__(self, cfg: RunConfig, train: ImageSet, device: torch.device, latent=None, log=print,
                 progress: bool = True):
        state = rng_state()  # building the judge initialises a network from the global RNG: the run's stream
        try:                 # must not see it
            self._prepare(cfg, train, device, latent, log, progress)
        finally:
            set_rng_state(state)

    def _prepare(self, cfg: RunConfig, train: ImageSet, device: torch.device, latent, log, progress: bool) -> None:
        d, n = cfg.data, cfg.train.eval_n
        self.cfg, self.device, self.latent, self.n = cfg, device, latent, n
        self.labels = torch.arange(n) % train.num_classes
        self.options = SamplingOptions.resolve(cfg)
        held = load_images(d.dataset, "test", d.resolution, d.data_root, bad_images=d.bad_images,
                           split_seed=d.split_seed)
        if len(held) < 2:
            raise LargoError(f"in-training evaluation needs held-out images; {d.dataset}'s test split has {len(held)}")
        if len(held) < FEW_HELDOUT:
            log(f"largo: note: the in-training evaluation compares with {len(held)} held-out images (the test split "
                f"of {d.dataset}): FD, recall and the memorisation threshold are noisy with so few; compare runs "
                f"on accuracy and memorised, and score the final checkpoint with `largo eval RUN --ref-split all`")
        order = torch.randperm(len(held), generator=torch.Generator().manual_seed(0))
        reference = held.images[order[:REFERENCE_N]]
        self.space = None
        judge = find_judge(cfg)
        if judge is None:
            log(f"largo: in-training evaluation without accuracy, FD and recall: no classifier for {d.dataset} at "
                f"{d.resolution}px (train one with `largo classifier train --dataset {d.dataset}` and pass "
                f"--eval-classifier); the memorisation check runs in pixels")
        else:
            model, config = load_classifier(judge, device)
            check_classifier(config, d.dataset, d.resolution, train.channels, train.class_names)
            self.space = ClassifierFeatures(model, config, device, input_size=d.resolution)
            # the same disk cache as `largo eval`: a resumed run, or the next run on this dataset, skips the judge
            # pass over the reference images
            outs, _ = reference_outputs(self.space, reference, held.labels[order[:REFERENCE_N]], dataset=d.dataset,
                                        split="test", resolution=d.resolution,
                                        data_resize=data_resize_method(d.dataset, d.resolution), log=log,
                                        progress=progress)
            self.reference = outs["features"]
        self.train_pixels = pixel_vectors(with_mirrors(train.images) if d.hflip else train.images)
        heldout = held.images[order[:n]]
        self.heldout_d = nearest_neighbours(pixel_vectors(heldout), self.train_pixels)[0]
        self.best: dict | None = None
        self.last_step = -1

    @torch.no_grad()
    def __call__(self, ema_net: torch.nn.Module, step: int) -> dict:
        """One evaluation record for log.jsonl (the global RNG states are restored afterwards)."""
        state = rng_state()
        t0, self.last_step = time.time(), step
        try:
            images = generate_images(ema_net, self.cfg, self.labels, list(range(self.n)), self.options,
                                     device=self.device, latent=self.latent)
            record: dict = {"step": step, "event": "eval", "n": self.n}
            if self.space is not None:
                out = extract(self.space, images)
                pr = precision_recall(self.reference, out["features"], defaults.PRC_K)
                record.update(accuracy=float((out["logits"].argmax(1) == self.labels).float().mean()),
                              fd=fd_from_features(self.reference, out["features"]), precision=pr["precision"],
                              recall=pr["recall"], judge=self.space.id)
            distances = nearest_neighbours(pixel_vectors(images), self.train_pixels)[0]
            summary = compare(distances, self.heldout_d)
            record.update(memorised=summary["share_samples_below_heldout_q0.01"],
                          nn_ratio=summary["median_ratio_samples_to_heldout"])
        finally:
            set_rng_state(state)
        record["seconds"] = round(time.time() - t0, 2)
        return record

    def improved(self, record: dict) -> bool:
        """Whether `record` is the best so far by `best_metric` (and remember it)."""
        metric = self.cfg.train.best_metric
        value = record.get(metric)
        if value is None or not math.isfinite(value):
            return False
        lower = LOWER_IS_BETTER[metric]
        if self.best is not None and not (value < self.best["value"] if lower else value > self.best["value"]):
            return False
        self.best = {"metric": metric, "value": value, "step": record["step"]}
        return True
