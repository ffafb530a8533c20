"""Variance gap (LARGO Fig. 11): per-channel pixel mean and variance and intensity histograms of real vs
generated images, and the ratio var_gen / var_real (< 1: the samples are too smooth / low-contrast)."""

from __future__ import annotations

import torch

from largo.metrics import defaults

_BATCH = 1024


class PixelStats:
    """Streaming per-channel moments (float64, pixels scaled to [0, 1]) and 256-bin intensity histograms."""

    def __init__(self, channels: int, bins: int = defaults.HIST_BINS) -> None:
        self.n_pixels = 0
        self.n_images = 0
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.sq = torch.zeros(channels, dtype=torch.float64)
        self.hist = torch.zeros(channels, bins, dtype=torch.float64)
        self.bins = bins

    def update(self, images: torch.Tensor) -> PixelStats:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("expected uint8 images (N, C, H, W)")
        for batch in images.split(_BATCH):
            x = batch.transpose(0, 1).reshape(batch.shape[1], -1)  # (C, N*H*W)
            xf = x.to(torch.float64) / 255.0
            self.sum += xf.sum(dim=1)
            self.sq += (xf * xf).sum(dim=1)
            idx = (x.long() * self.bins) // 256
            self.hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
            self.n_pixels += x.shape[1]
            self.n_images += batch.shape[0]
        return self

    def result(self) -> dict:
        mean = self.sum / self.n_pixels
        var = (self.sq / self.n_pixels - mean * mean).clamp_min(0) * self.n_pixels / max(self.n_pixels - 1, 1)
        return {"mean": mean.tolist(), "var": var.tolist(), "std": var.sqrt().tolist(),
                "histogram": (self.hist / self.n_pixels).tolist(), "n_images": self.n_images}


def pixel_stats(images: torch.Tensor, bins: int = defaults.HIST_BINS) -> dict:
    return PixelStats(images.shape[1], bins).update(images).result()


def variance_gap(real: torch.Tensor, fake: torch.Tensor, bins: int = defaults.HIST_BINS) -> dict:
    """Per-channel stats of both sets, var_gen/var_real per channel and overall, and the histogram distance."""
    r, f = pixel_stats(real, bins), pixel_stats(fake, bins)
    ratio = [fv / rv if rv > 0 else float("inf") for fv, rv in zip(f["var"], r["var"])]
    hr, hf = torch.tensor(r["histogram"]), torch.tensor(f["histogram"])
    return {
        "var_ratio": ratio,  # per channel
        "var_ratio_mean": sum(ratio) / len(ratio),
        "mean_diff": [fm - rm for fm, rm in zip(f["mean"], r["mean"])],
        "histogram_l1": (hr - hf).abs().sum(dim=1).mul(0.5).tolist(),  # total variation per channel, in [0, 1]
        "bins": bins,
        "reference": r,
        "generated": f,
    }
