"""Feature networks for perceptual losses, loaded from local files only: a largo domain classifier, or torchvision's
VGG19 with weights on disk (ImageNet weights cannot be downloaded here). Each maps float images in [-1, 1] to a
list of feature maps, is frozen, and is named by the spec the user gave (`classifier:PATH`, `vgg19:PATH`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from largo.errors import LargoError
from largo.metrics import defaults
from largo.metrics.classifier import load_classifier

FeatureNet = Callable[[torch.Tensor], list[torch.Tensor]]
VGG19_LAYERS = (3, 8, 17, 26)  # relu1_2, relu2_2, relu3_4, relu4_4 (conv_4 block), as LPIPS/perceptual losses use
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_feature_net(spec: str, device: torch.device | str = "cpu") -> FeatureNet:
    """`classifier:PATH` or `vgg19:PATH` → a frozen feature function on `device`."""
    kind, _, path = spec.partition(":")
    if not path:
        raise LargoError(f"perceptual network {spec!r}: give classifier:PATH or vgg19:PATH")
    if kind == "classifier":
        return classifier_features(path, device)
    if kind == "vgg19":
        return vgg19_features(path, device)
    raise LargoError(f"unknown perceptual network {kind!r}; valid: classifier:PATH, vgg19:PATH")


def classifier_features(path: str | Path, device: torch.device | str = "cpu") -> FeatureNet:
    """A largo domain classifier's residual-block outputs (a folder, or the name of one shipped in
    checkpoints/classifiers/); images are resized (bilinear, antialiased) to the resolution it was trained at."""
    shipped = [d / str(path) for d in defaults.classifier_search_dirs() if (d / str(path)).is_dir()]
    model, config = load_classifier(path if Path(path).exists() or not shipped else shipped[0], device)
    model.requires_grad_(False)
    size = int(config["arch"]["resolution"])

    def features(x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return model.feature_maps(x)

    return features


def vgg19_features(path: str | Path, device: torch.device | str = "cpu") -> FeatureNet:
    """torchvision's VGG19 (`vgg19-dcbb9e9d.pth` or any state dict of that architecture) up to relu4_4."""
    path = Path(path)
    if not path.is_file():
        raise LargoError(f"VGG19 weights not found: {path} (torchvision's vgg19-dcbb9e9d.pth; nothing is downloaded)")
    import torchvision  # here, not at the top: torchvision's import costs seconds (torch._dynamo)

    vgg = torchvision.models.vgg19()
    try:
        vgg.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # a wrong or corrupt file: pickle, shape or key errors all mean the same to the user
        raise LargoError(f"{path} is not a torchvision VGG19 state dict ({type(e).__name__})") from None
    layers = vgg.features[:VGG19_LAYERS[-1] + 1].to(device).eval().requires_grad_(False)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def features(x: torch.Tensor) -> list[torch.Tensor]:
        h = ((x.expand(-1, 3, -1, -1) + 1) / 2 - mean) / std  # grayscale repeated to RGB, ImageNet normalisation
        out = []
        for i, layer in enumerate(layers):
            h = layer(h)
            if i in VGG19_LAYERS:
                out.append(h)
        return out

    return features
