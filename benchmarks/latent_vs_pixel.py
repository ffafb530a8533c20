"""Pixel-space vs latent-space diffusion at 128×128, with the same U-Net widths (the `flowers128` and
`flowers128-latent` presets): training images/s, peak memory, sampling seconds per image, in one script.

    python benchmarks/latent_vs_pixel.py                       # speed and memory (random weights, synthetic data)
    python benchmarks/latent_vs_pixel.py --autoencoder runs/ae --minutes 10 --n 200   # + quality at equal budget

Speed: the pixel U-Net sees 3×128×128 images; the latent U-Net sees 4×32×32 latents of an f = 4 autoencoder
(the `ae-flowers128` architecture), so it has the same channel widths per level but works at a quarter of the
side. A training step is the diffusion loss + backward + AdamW (no EMA, no data loading: both are the same for
both); sampling is DPM-Solver++(2M), 20 steps, guidance 3 (one batched forward of 2B per step), plus, for latents,
decoding with the autoencoder. The encoder's cost is paid once per training image (the encoded dataset is cached)
and is reported separately. Timings alternate between the two models round by round, so a load change on the
machine hits both. Peak memory is measured for each model and phase in a fresh process (peak RSS on the CPU, whose
high-water mark never comes down within a process; the CUDA allocator's peak on a GPU).

Quality (`--autoencoder`, `--minutes`): both presets are trained on Flowers-102 for the same wall-clock minutes
on this machine, then N images each (classes cycled) are scored against the test split in the flowers domain
classifier's features, at 64 px (the 128-px images are downsampled, bilinear with antialiasing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time

import torch

from _common import load_average, sync
from largo.config import AUTOENCODER_PRESETS, AutoencoderConfig, preset_config
from largo.diffusion.loss import diffusion_loss
from largo.diffusion.schedules import NoiseSchedule
from largo.models import build_unet, count_parameters
from largo.models.autoencoder import build_autoencoder
from largo.runtime import PeakMemory, resolve_device
from largo.sampling import SamplingOptions, generate_images


def nets(device: torch.device):
    pixel_cfg = preset_config("flowers128")
    pixel_cfg.model = dataclasses.replace(pixel_cfg.model, image_channels=3, num_classes=102, input_size=128)
    ae_cfg = AutoencoderConfig(**{**dataclasses.asdict(AutoencoderConfig()),
                                  **AUTOENCODER_PRESETS["ae-flowers128"]["autoencoder"], "image_channels": 3})
    f, c = ae_cfg.downsample_factor, ae_cfg.latent_channels
    latent_cfg = preset_config("flowers128-latent")
    latent_cfg.model = dataclasses.replace(latent_cfg.model, image_channels=c, num_classes=102, input_size=128 // f)
    return (pixel_cfg, build_unet(pixel_cfg.model, 128).to(device)), \
        (latent_cfg, build_unet(latent_cfg.model, 128 // f).to(device)), build_autoencoder(ae_cfg).to(device).eval()


class _Decoder:
    """The latent space's decode with an identity normalisation: the same cost as the real one (speed only)."""

    def __init__(self, ae):
        self.ae = ae

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        return torch.cat([self.ae.decode(z[i:i + batch_size]) for i in range(0, len(z), batch_size)])


def train_seconds(cfg, net, batch: int, steps: int, device: torch.device) -> float:
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, foreach=device.type != "cuda", fused=device.type == "cuda")
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    x = torch.randn(batch, cfg.model.image_channels, cfg.net_size, cfg.net_size, device=device)
    y = torch.randint(0, 102, (batch,), device=device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        diffusion_loss(net, x, y, schedule, cfg.diffusion).backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def speed(a: argparse.Namespace, device: torch.device) -> dict:
    (pcfg, pnet), (lcfg, lnet), ae = nets(device)
    out = {"pixel": {"params_m": count_parameters(pnet) / 1e6, "sees": [3, 128, 128]},
           "latent": {"params_m": count_parameters(lnet) / 1e6, "sees": [lcfg.model.image_channels, 32, 32],
                      "autoencoder_params_m": count_parameters(ae) / 1e6}}
    for name in ("pixel", "latent"):  # each in a fresh process: a process's peak RSS never comes down
        for phase in ("train", "sample"):
            out[name][f"{phase}_peak_mb"] = peak_in_subprocess(name, phase, a)
    for name, (cfg, net) in (("pixel", (pcfg, pnet)), ("latent", (lcfg, lnet))):
        train_seconds(cfg, net, a.batch, 1, device)  # warm-up
    times = {"pixel": 0.0, "latent": 0.0}
    for _ in range(a.rounds):  # alternate, so a change of load on the machine hits both alike
        times["pixel"] += train_seconds(pcfg, pnet, a.batch, a.steps, device)
        times["latent"] += train_seconds(lcfg, lnet, a.batch, a.steps, device)
    for name in times:
        out[name]["train_images_per_s"] = a.batch * a.steps * a.rounds / times[name]

    labels = torch.arange(a.sample_batch) % 102
    for name, (cfg, net), latent in (("pixel", (pcfg, pnet), None), ("latent", (lcfg, lnet), _Decoder(ae))):
        net.eval()
        options = SamplingOptions.resolve(cfg, steps=20, cfg=3.0)
        generate_images(net, cfg, labels[:1], options=dataclasses.replace(options, steps=1), device=device,
                        latent=latent)
        t0 = time.perf_counter()
        generate_images(net, cfg, labels, options=options, batch_size=a.sample_batch, device=device, latent=latent)
        sync(device)
        out[name]["sample_s_per_image"] = (time.perf_counter() - t0) / len(labels)
    x = torch.rand(a.sample_batch, 3, 128, 128, device=device) * 2 - 1
    with torch.no_grad():
        ae.encode(x[:1])
        t0 = time.perf_counter()
        ae.encode(x)
        sync(device)
    out["latent"]["encode_s_per_image"] = (time.perf_counter() - t0) / len(x)
    out["ratios"] = {"train_images_per_s": out["latent"]["train_images_per_s"] / out["pixel"]["train_images_per_s"],
                     "sample_s_per_image": out["pixel"]["sample_s_per_image"] / out["latent"]["sample_s_per_image"],
                     "train_peak_mb": out["pixel"]["train_peak_mb"] / out["latent"]["train_peak_mb"],
                     "sample_peak_mb": out["pixel"]["sample_peak_mb"] / out["latent"]["sample_peak_mb"]}
    return out


def peak_in_subprocess(name: str, phase: str, a: argparse.Namespace) -> float:
    """Peak memory (MB) of one phase of one model, in a fresh Python process."""
    args = [sys.executable, __file__, "--memory", f"{name}:{phase}", "--device", a.device, "--batch", str(a.batch),
            "--sample-batch", str(a.sample_batch)]
    return float(subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])


def memory_phase(spec: str, a: argparse.Namespace) -> float:
    """One training step (after a warm-up step) or one sampling call, and the process's peak memory after it."""
    device = resolve_device(a.device)
    name, phase = spec.split(":")
    (pcfg, pnet), (lcfg, lnet), ae = nets(device)
    cfg, net = (pcfg, pnet) if name == "pixel" else (lcfg, lnet)
    with PeakMemory(device) as mem:
        if phase == "train":
            train_seconds(cfg, net, a.batch, 2, device)
        else:
            net.eval()
            decoder = _Decoder(ae) if name == "latent" else None
            generate_images(net, cfg, torch.arange(a.sample_batch) % 102, options=SamplingOptions.resolve(cfg, steps=2),
                            batch_size=a.sample_batch, device=device, latent=decoder)
    return mem.peak


def quality(a: argparse.Namespace) -> dict:
    from largo.evaluation import EvalSettings, make_judge, sample_and_evaluate
    from largo.sampling import load_model
    from largo.train import train

    out = {}
    for preset in ("flowers128", "flowers128-latent"):
        cfg = preset_config(preset)
        cfg.data = dataclasses.replace(cfg.data, **({"autoencoder": a.autoencoder} if "latent" in preset else {}))
        cfg.model = dataclasses.replace(cfg.model, base_channels=a.base_channels or cfg.model.base_channels)
        cfg.train = dataclasses.replace(cfg.train, max_minutes=a.minutes, steps=10**9, batch_size=a.batch,
                                        checkpoint_every=10**9, device=a.device)
        run = f"{a.out}/{preset}"
        summary = train(cfg, run, progress=False)
        device = resolve_device(a.device)
        model = load_model(run, device)
        settings = EvalSettings(n=a.n, ref_split="test", use_inception=False, device=a.device, batch_size=16,
                                kid_subsets=10)
        judge = make_judge("flowers102", 128, settings, device, num_classes=102)
        result = sample_and_evaluate(model, SamplingOptions.resolve(model.cfg), judge, settings, device)
        space = next(iter(result.result["feature_spaces"].values()), {})
        out[preset] = {"steps": summary["step"], "images_seen": summary["step"] * a.batch, "minutes": a.minutes,
                       "base_channels": cfg.model.base_channels, "n": a.n,
                       "sample_s_per_image": result.timing["s_per_image"],
                       "accuracy": space.get("accuracy", {}).get("overall"), "fd": space.get("fd", {}).get("value"),
                       "extractor": space.get("extractor"), "skipped": result.result["skipped"]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=4, help="training batch (both models)")
    p.add_argument("--steps", type=int, default=3, help="training steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sample-batch", type=int, default=4)
    p.add_argument("--autoencoder", help="an autoencoder run for the quality comparison")
    p.add_argument("--minutes", type=float, default=0, help="training minutes per model for the quality comparison")
    p.add_argument("--n", type=int, default=200, help="images per model for the quality comparison")
    p.add_argument("--base-channels", type=int, default=0, help="quality comparison: both U-Nets' width "
                                                                    "(default: the presets' 64)")
    p.add_argument("--out", default="runs/latent_vs_pixel")
    p.add_argument("--skip-speed", action="store_true", help="only the quality comparison")
    p.add_argument("--memory", help=argparse.SUPPRESS)  # internal: MODEL:PHASE, run in a fresh process
    a = p.parse_args()
    if a.memory:
        print(memory_phase(a.memory, a))
        return
    device = resolve_device(a.device)
    report = {"machine": f"{device}, {torch.get_num_threads()} threads, load {load_average()}",
              "sizes": {"batch": a.batch, "steps": a.steps, "rounds": a.rounds, "sample_batch": a.sample_batch}}
    if not a.skip_speed:
        report["speed"] = speed(a, device)
    if a.autoencoder and a.minutes > 0:
        report["quality"] = quality(a)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
