"""Pixel-intensity histograms of real and generated images, one panel per channel."""

from __future__ import annotations

import torch
from PIL import Image

from largo.data import load_images
from largo.draw.plot import BLUE, GREEN, LIGHT_GREY, RED, Panel, Series, plot
from largo.errors import LargoError
from largo.sampling import LoadedModel, SamplingOptions

HIST_PANEL = (520, 380)  # one panel per channel; the image is (C × 520, 380 + 28) pixels


def channel_histogram(images: torch.Tensor, channel: int, bins: int) -> list[float]:
    """Fraction of the pixels of one channel of uint8 images (N, C, H, W) in each of `bins` equal bins."""
    values = images[:, channel].reshape(-1).long()
    counts = torch.bincount(values * bins // 256, minlength=bins).double()
    return (counts / max(1, values.numel())).tolist()


def histogram_image(real: torch.Tensor, generated: torch.Tensor, bins: int = 64, logy: bool = True,
                    title: str = "") -> Image.Image:
    """Real (grey, filled) vs generated (line) pixel histograms; legends give each side's mean and std."""
    if real.dtype != torch.uint8 or generated.dtype != torch.uint8:
        raise ValueError("histograms take uint8 images")
    if real.shape[1] != generated.shape[1]:
        raise LargoError(f"real images have {real.shape[1]} channels, generated {generated.shape[1]}")
    if not 2 <= bins <= 256:
        raise LargoError(f"--bins must be in [2, 256], got {bins}")
    c = real.shape[1]
    names = ["intensity"] if c == 1 else ["red", "green", "blue"][:c] if c == 3 else [f"channel {i}" for i in range(c)]
    colors = [BLUE] if c == 1 else [RED, GREEN, BLUE][:c] if c == 3 else [BLUE] * c
    edges = [i * 256 / bins for i in range(bins + 1)]
    panels = []
    for ch in range(c):
        r, g = real[:, ch].double(), generated[:, ch].double()
        panels.append(Panel(names[ch], [
            Series(edges, channel_histogram(real, ch, bins), color=(120, 120, 120), edges=True, fill=LIGHT_GREY,
                   label=f"real (n={len(real)}) μ={r.mean():.1f} σ={r.std():.1f}", width=1.0),
            Series(edges, channel_histogram(generated, ch, bins), color=colors[ch], edges=True, width=1.8,
                   label=f"generated (n={len(generated)}) μ={g.mean():.1f} σ={g.std():.1f}"),
        ], xlabel="pixel value (0-255)", ylabel="fraction of pixels" + (" (log)" if logy else ""), logy=logy,
            y_from_zero=not logy))
    return plot(panels, panel_size=HIST_PANEL, title=title)


def real_vs_generated_histogram(model: LoadedModel, options: SamplingOptions, n: int = 256, bins: int = 64,
                                logy: bool = True, seed: int = 0, data_root: str | None = None, batch_size: int = 64,
                                device: torch.device | str | None = None) -> Image.Image:
    """Histograms of the test split of the model's dataset vs `n` samples (classes cycled, seed SEED+i)."""
    if n < 1:
        raise LargoError("--n must be >= 1")
    d = model.cfg.data
    real = load_images(d.dataset, "test", d.resolution, d.data_root if data_root is None else data_root,
                       bad_images=d.bad_images, split_seed=d.split_seed).images
    labels = torch.arange(n, dtype=torch.long) % max(1, model.cfg.model.num_classes)
    fake = model.generate(labels, [seed + i for i in range(n)], options, batch_size=batch_size, device=device,
                          progress=True)
    return histogram_image(real, fake, bins, logy=logy, title=f"{d.dataset} test split vs {n} samples")
