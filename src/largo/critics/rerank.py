"""Re-ranking: draw K candidates per requested image and keep the one a critic likes best.

Candidate j of the image with seed s is drawn from seed s·K + j, so K = 1 is plain sampling, every candidate is
reproducible, and no two images share a candidate. The critic is by default the *second* domain classifier of a
dataset (`<dataset>-<res>-critic`, trained with another seed), so that `largo eval`, which scores with the
shipped classifier, does not grade the re-ranker with its own network.
"""

from __future__ import annotations

from pathlib import Path

import torch

from largo.config import RERANK_CRITICS
from largo.critics.clip import ClipCritic
from largo.errors import LargoError
from largo.metrics import defaults
from largo.metrics.classifier import check_classifier, classifier_outputs, find_classifier, load_classifier
from largo.sampling import LoadedModel, SamplingOptions

MAX_CANDIDATES = 64


class ClassifierCritic:
    """Scores uint8 images by a domain classifier's probability of the class that was asked for."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        self.model, self.config = load_classifier(path, device)
        self.device = device
        self.name = f"classifier:{Path(self.config['path']).name}@{self.config['sha256'][:12]}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _, logits = classifier_outputs(self.model, images, device=self.device)
        return logits.softmax(dim=1).gather(1, labels.view(-1, 1).cpu()).squeeze(1)


def default_critic_path(dataset: str, resolution: int) -> Path | None:
    return find_classifier(dataset, resolution, "-critic")


class PromptCritic:
    """Scores images by CLIP similarity (100·cos) to the prompt of the class asked for."""

    def __init__(self, clip: ClipCritic, class_names: list[str], dataset: str):
        self.clip, self.class_names, self.dataset, self.name = clip, class_names, dataset, clip.name

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.clip(images, labels, self.class_names, self.dataset)


def load_critic(kind: str, model: LoadedModel, path: str | None = None, device: torch.device | str = "cpu",
                clip: str | None = None) -> ClassifierCritic | PromptCritic:
    """The critic `--rerank KIND` names, for this model's dataset (`path` overrides the default critic
    classifier; `clip` is the ARCH:PATH of CLIP weights for `--rerank clip`)."""
    if kind not in RERANK_CRITICS:
        raise LargoError(f"unknown --rerank {kind!r}; valid: {', '.join(RERANK_CRITICS)}")
    if kind == "clip":
        if not clip:
            raise LargoError("--rerank clip needs --clip ARCH:PATH (CLIP weights on disk)")
        return PromptCritic(ClipCritic(clip, device), model.class_names, model.cfg.data.dataset)
    d = model.cfg.data
    found = Path(path) if path else default_critic_path(d.dataset, d.resolution)
    if found is None:
        name = defaults.classifier_dirname(d.dataset, d.resolution) + "-critic"
        raise LargoError(f"no critic classifier {name} for {d.dataset} at {d.resolution}px; train one with "
                         f"`largo classifier train --seed 1 --out …` and pass --critic PATH")
    critic = ClassifierCritic(found, device)
    check_classifier(critic.config, d.dataset, d.resolution, model.image_channels, model.class_names)
    return critic


def check_candidates(candidates: int) -> None:
    if not 1 <= candidates <= MAX_CANDIDATES:
        raise LargoError(f"--candidates must be in [1, {MAX_CANDIDATES}], got {candidates}")


def generate_reranked(model: LoadedModel, labels: torch.Tensor, seeds: list[int], options: SamplingOptions,
                      critic: ClassifierCritic | PromptCritic, candidates: int, **generate_kwargs) -> tuple[torch.Tensor, dict]:
    """The best of `candidates` images per label by `critic`, and what it cost and bought: mean critic score of
    the kept images and of all candidates, and the candidates drawn."""
    check_candidates(candidates)
    n, k = len(labels), candidates
    all_labels = labels.repeat_interleave(k)
    all_seeds = [s * k + j for s in seeds for j in range(k)]
    images = model.generate(all_labels, all_seeds, options, **generate_kwargs)
    scores = critic(images, all_labels).view(n, k)
    best = scores.argmax(dim=1)
    kept = images.view(n, k, *images.shape[1:])[torch.arange(n), best]
    info = {"rerank": "clip" if isinstance(critic, PromptCritic) else "classifier", "critic": critic.name, "candidates": k, "images_drawn": n * k,
            "mean_score_kept": float(scores.max(dim=1).values.mean()), "mean_score_all": float(scores.mean())}
    return kept, info
