"""How well an autoencoder reconstructs held-out images (`largo autoencoder eval`): PSNR and SSIM
(torchmetrics), the Fréchet distance between real and reconstructed images in the domain classifier's features
(rFD; rFID where Inception weights are on disk), the per-channel latent statistics and the latent scale factor,
and a picture of originals above their reconstructions."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from largo.autoencoder.load import load_autoencoder
from largo.checkpoint import read_meta, run_root
from largo.config import AutoencoderRunConfig
from largo.data import load_images
from largo.draw.grid import labelled_grid
from largo.errors import LargoError
from largo.images import to_float, to_uint8
from largo.io import atomic_save_image
from largo.metrics.evaluate import classifier_space, write_result
from largo.metrics.features import extract
from largo.metrics.fid import fd_from_features
from largo.metrics.inception import InceptionFeatures, find_inception_weights, missing_weights_message
from largo.runtime import resolve_device

PICTURE_IMAGES = 8


def _dataset_of(ae, dataset: str | None, resolution: int | None, data_root: str | None) -> tuple[str, int, str]:
    """A largo autoencoder knows what it was trained on; a diffusers one needs --dataset and --resolution."""
    if ae.kind == "largo":
        cfg = AutoencoderRunConfig.from_dict(read_meta(ae.source)["config"])
        return (dataset or cfg.data.dataset, resolution or cfg.data.resolution,
                cfg.data.data_root if data_root is None else data_root)
    if not dataset or not resolution:
        raise LargoError("a diffusers autoencoder needs --dataset and --resolution (the images to reconstruct)")
    return dataset, resolution, data_root or ""


@torch.no_grad()
def reconstruct(ae, images: torch.Tensor, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 reconstructions, float32 latents = posterior means) of uint8 images."""
    recon, latents = [], []
    for i in range(0, len(images), batch_size):
        z = ae.net.encode(to_float(images[i:i + batch_size]).to(device)).mode()
        latents.append(z.float().cpu())
        recon.append(to_uint8(ae.net.decode(z)).cpu())
    return torch.cat(recon), torch.cat(latents)


def _pixel_metrics(real: torch.Tensor, recon: torch.Tensor) -> dict:
    try:
        from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
    except ImportError:
        raise LargoError("PSNR/SSIM need torchmetrics: pip install 'largo[metrics]'") from None
    psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3))
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
    for i in range(0, len(real), 256):
        a, b = real[i:i + 256].float() / 255, recon[i:i + 256].float() / 255
        psnr.update(b, a)
        ssim.update(b, a)
    return {"psnr_db": float(psnr.compute()), "ssim": float(ssim.compute()),
            "protocol": "images in [0, 1]; PSNR averaged over images; SSIM (torchmetrics, Gaussian 11×11, σ 1.5)"}


def evaluate_autoencoder(source: str | Path, split: str = "test", n: int = 0, batch_size: int = 64,
                         device: str = "auto", dataset: str | None = None, resolution: int | None = None,
                         data_root: str | None = None, classifier: str | None = None,
                         inception_weights: str | None = None, out: Path | None = None, log=print) -> tuple[dict, Path]:
    """Reconstruct `n` images (0 = all) of a split and measure them; writes RUN/eval/autoencoder-<split>.json and
    the picture beside it. Returns (result, JSON path)."""
    if n < 0 or batch_size < 1:
        raise LargoError("--n must be >= 0 and --batch-size >= 1")
    dev = resolve_device(device)
    ae = load_autoencoder(source, dev)
    dataset, resolution, data_root = _dataset_of(ae, dataset, resolution, data_root)
    data = load_images(dataset, split, resolution, data_root)
    real = data.images[:n or None]
    t0 = time.perf_counter()
    recon, latents = reconstruct(ae, real, batch_size, dev)
    seconds = time.perf_counter() - t0
    c = latents.shape[1]
    per_channel = latents.transpose(0, 1).reshape(c, -1)
    result: dict = {
        "format": "largo-autoencoder-eval", "autoencoder": ae.describe(), "dataset": dataset, "split": split,
        "resolution": resolution, "n": len(real), "reconstruct_s_per_image": seconds / len(real),
        "pixels": _pixel_metrics(real, recon),
        "latents": {"shape": list(latents.shape[1:]), "mean": per_channel.mean(1).tolist(),
                    "std": per_channel.std(1).tolist(), "std_all": float(latents.std()),
                    "scale_factor": 1.0 / float(latents.std())},
        "skipped": [],
    }
    space = classifier_space(dataset, resolution, classifier, dev)
    if space is None:
        result["skipped"].append(f"rFD skipped: no domain classifier for {dataset} at {resolution} px or below")
    else:
        a, b = extract(space, real, batch_size)["features"], extract(space, recon, batch_size)["features"]
        result["rfd_classifier"] = {"value": fd_from_features(a, b), "extractor": space.id, "resize": space.resize,
                                    "n": len(real)}
    weights = find_inception_weights(inception_weights)
    if weights is None:
        result["skipped"].append("rFID skipped: " + missing_weights_message())
    else:
        inc = InceptionFeatures(weights, dev)
        result["rfid"] = {"value": fd_from_features(extract(inc, real, batch_size)["features"],
                                                    extract(inc, recon, batch_size)["features"]),
                          "extractor": "inception-v3-compat", "n": len(real)}
    root = run_root(ae.source) or Path(".")
    out = out or root / "eval" / f"autoencoder-{dataset.replace(':', '_').replace('/', '_')}-{split}.json"
    picture = out.with_suffix(".png")
    picture.parent.mkdir(parents=True, exist_ok=True)
    k = min(PICTURE_IMAGES, len(real))
    atomic_save_image(picture, labelled_grid(torch.cat([real[:k], recon[:k]]), k, ["original", "reconstruction"]))
    result["picture"] = str(picture)
    write_result(out, result)
    return result, out
