"""CLIP as a critic: the CLIP score of each image against its class prompt (100·cos, the usual convention), the
reports' good / clear / blurry prompt scores, and a per-class table. Weights come from a local file only
(`--clip ARCH:PATH`, an open_clip architecture and its checkpoint); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from largo.errors import LargoError

# Prompt templates per dataset, as CLIP's zero-shot evaluations write them.
PROMPTS = {"flowers102": "a photo of a {}, a type of flower.", "fashion_mnist": "a photo of a {}.",
           "mnist": 'a photo of the number: "{}".', "cifar10": "a photo of a {}."}
DEFAULT_PROMPT = "a photo of a {}."
QUALITY_PROMPTS = {"good": "a good photo of a {}.", "clear": "a clear photo of a {}.", "blurry": "a blurry photo of a {}."}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipCritic:
    """An open_clip model with weights from disk; images are uint8 (N, C, H, W), grey repeated to RGB."""

    def __init__(self, spec: str, device: torch.device | str = "cpu"):
        arch, _, path = spec.partition(":")
        if not arch or not path:
            raise LargoError(f"--clip takes ARCH:PATH (an open_clip architecture and its weights), got {spec!r}")
        try:
            import open_clip
        except ImportError:
            raise LargoError("CLIP scores need open_clip: pip install 'largo[clip]'") from None
        if arch not in open_clip.list_models():
            raise LargoError(f"unknown CLIP architecture {arch!r} (open_clip's list_models(), e.g. ViT-B-32)")
        if not Path(path).is_file():
            raise LargoError(f"CLIP weights not found: {path} (nothing is downloaded)")
        try:
            self.model = open_clip.create_model(arch, pretrained=path, device=device).eval().requires_grad_(False)
        except Exception as e:  # a file of another architecture or a corrupt one: the user's to fix
            raise LargoError(f"CLIP weights {path} do not load as {arch} ({type(e).__name__})") from None
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.size = self.model.visual.image_size
        self.size = self.size[0] if isinstance(self.size, (tuple, list)) else self.size
        self.device, self.name = device, f"clip:{arch}:{Path(path).name}"

    @torch.no_grad()
    def image_features(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        out = []
        for batch in images.split(batch_size):
            x = batch.to(self.device).float().div(255).expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)
            out.append(F.normalize(self.model.encode_image((x.clamp(0, 1) - mean) / std).float(), dim=-1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(prompts).to(self.device)).float(), dim=-1).cpu()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str], dataset: str
                 ) -> torch.Tensor:
        """CLIP score (100·cos) of each image with the prompt of its class."""
        template = PROMPTS.get(dataset, DEFAULT_PROMPT)
        text = self.text_features([template.format(n) for n in class_names])
        return 100 * (self.image_features(images) * text[labels.cpu()]).sum(dim=1)


def clip_scores(critic: ClipCritic, images: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                dataset: str) -> dict:
    """Mean CLIP score against each image's class prompt, the good/clear/blurry prompt scores, per-class means."""
    image = critic.image_features(images)
    result = {"extractor": critic.name, "template": PROMPTS.get(dataset, DEFAULT_PROMPT), "n": len(images)}
    for key, template in {"class": PROMPTS.get(dataset, DEFAULT_PROMPT), **QUALITY_PROMPTS}.items():
        text = critic.text_features([template.format(n) for n in class_names])
        scores = 100 * (image * text[labels.cpu()]).sum(dim=1)
        if key == "class":
            result["clip_score"] = float(scores.mean())
            result["per_class"] = [{"class": c, "name": class_names[c], "n": int((labels == c).sum()),
                                    "clip_score": float(scores[labels.cpu() == c].mean())}
                                   for c in sorted(set(labels.tolist()))]
        else:
            result.setdefault("quality_prompts", {})[key] = float(scores.mean())
    return result
