"""Our U-Net against diffusers' `UNet2DModel` built to the same shape: same process, same batch, same machine.

    python benchmarks/unet_vs_diffusers.py --preset fashion32 --batch 32            # CPU, fp32, both eager
    python benchmarks/unet_vs_diffusers.py --preset flowers64 --batch 8 --reps 3
    python benchmarks/unet_vs_diffusers.py --preset flowers64 --batch 128 --device cuda --fast

The diffusers model mirrors the preset: `block_out_channels` = base_channels × channel_mult, `layers_per_block` =
num_res_blocks, AttnDownBlock2D / AttnUpBlock2D at the levels whose side is in `attention_resolutions` (plain
DownBlock2D / UpBlock2D elsewhere), mid-block attention, GroupNorm 32, the same dropout, class conditioning by
`num_class_embeds = num_classes + 1` (the null class). diffusers has one `attention_head_dim` for all levels, so it
is set to give our head count at the first attention level (head counts per level are printed; they do not
change the parameter count or the FLOPs). The parameter counts must agree within 5 % (the script stops
otherwise); both are printed with their ratio.

Measured with the two models alternating inside every repetition (A B, then B A, ...), warm-up calls excluded;
images/s come from the median wall time per call, the ratio ours/diffusers is the median over repetitions of the
paired per-repetition ratio (diffusers' time / ours), and the same ratio of process CPU time is printed beside it
(steadier than wall time when other jobs share the cores):
  * train: forward + MSE-to-noise loss + backward + AdamW step (foreach on the CPU, fused on CUDA; both models
    get the same optimizer), batch B, random inputs, train mode (dropout on);
  * sample: one no-grad eval forward of 2B images, i.e. one classifier-free-guidance step for B images;
    reported as network evaluations (images through the net) per second.

Only the ratio ours/diffusers measured in one run means anything on a shared or throttled machine; the absolute
images/s move with whatever else runs. `--fast` (CUDA): ours with bf16 autocast + channels_last +
torch.compile, diffusers as their training example runs it (fp32 eager; `--diffusers-bf16` autocasts theirs too).
`--json PATH` appends one JSON line with every number. On a CPU shared with other jobs use `--threads 1` (or
OMP_WAIT_POLICY=PASSIVE); results and commands are in docs/SPEED.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from _common import load_average
from largo.config import PRESETS, ModelConfig, preset_config
from largo.models import build_unet, count_parameters

# Image channels and classes of each preset's dataset (so no dataset is needed here).
DATASET_SHAPES = {"flowers102": (3, 102), "fashion_mnist": (1, 10), "mnist": (1, 10), "cifar10": (3, 10)}


def model_config(preset: str) -> tuple[ModelConfig, int]:
    cfg = preset_config(preset)
    channels, classes = DATASET_SHAPES[cfg.data.dataset]
    return dataclasses.replace(cfg.model, image_channels=channels, num_classes=classes), cfg.data.resolution


def diffusers_unet(m: ModelConfig, resolution: int) -> tuple[nn.Module, dict[str, Any]]:
    from diffusers import UNet2DModel

    widths = [m.base_channels * k for k in m.channel_mult]
    sides = [resolution // 2**i for i in range(len(widths))]
    attn = [s in m.attention_resolutions for s in sides]
    attn_widths = [w for w, a in zip(widths, attn) if a] or [widths[-1]]
    head_dim = attn_widths[0] // m.num_heads
    config = dict(
        sample_size=resolution, in_channels=m.image_channels, out_channels=m.image_channels,
        block_out_channels=tuple(widths), layers_per_block=m.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        mid_block_type="UNetMidBlock2D", add_attention=True, attention_head_dim=head_dim, norm_num_groups=32,
        dropout=m.dropout, num_class_embeds=m.num_classes + 1,
    )
    return UNet2DModel(**config), config


class DiffusersAdapter(nn.Module):
    """`net(x, t, y)` like ours."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=y, return_dict=False)[0]


def heads_per_level(m: ModelConfig, resolution: int, head_dim: int) -> str:
    widths = [m.base_channels * k for k in m.channel_mult]
    out = []
    for i, w in enumerate(widths):
        side = resolution // 2**i
        if side in m.attention_resolutions:
            out.append(f"{side}px: ours {m.num_heads}, diffusers {w // head_dim}")
    out.append(f"mid: ours {m.num_heads}, diffusers {widths[-1] // head_dim}")
    return "; ".join(out)


class Case:
    """One model with its optimizer and its two timed closures."""

    def __init__(self, name: str, net: nn.Module, device: torch.device, batch: int, shape: tuple[int, int, int],
                 classes: int, amp: torch.dtype | None, channels_last: bool, compile_: bool, seed: int = 0):
        self.name, self.device, self.amp, self.channels_last = name, device, amp, channels_last
        self.net = net.to(device)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        fused = device.type == "cuda"
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-4, weight_decay=1e-4, fused=fused,
                                     foreach=None if fused else True)
        self.fn = torch.compile(self.net, dynamic=False) if compile_ else self.net
        g = torch.Generator(device="cpu").manual_seed(seed)
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def inputs(n: int) -> tuple[torch.Tensor, ...]:
            x = torch.randn((n, *shape), generator=g).to(device).contiguous(memory_format=fmt)
            t = torch.randint(0, 1000, (n,), generator=g).float().to(device)
            y = torch.randint(0, classes + 1, (n,), generator=g).to(device)
            return x, t, y

        self.train_inputs = inputs(batch)
        self.noise = torch.randn((batch, *shape), generator=g).to(device)
        self.sample_inputs = inputs(2 * batch)

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext()

    def train_step(self) -> None:
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            pred = self.fn(*self.train_inputs)
        loss = F.mse_loss(pred.float(), self.noise)
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def sample_forward(self) -> None:
        self.net.eval()
        with self.autocast():
            self.fn(*self.sample_inputs)


def timed(fn: Callable[[], None], iters: int, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - w0) / iters, (time.process_time() - c0) / iters


def interleaved(cases: list[Case], kind: str, warmup: int, iters: int, reps: int) -> dict[str, list[tuple]]:
    """(wall, cpu) seconds per call for each case, one entry per repetition; the order alternates (A B, B A, ...)
    so that a slow drift of the machine's load hits both models alike."""
    for c in cases:
        for _ in range(warmup):
            getattr(c, kind)()
    times: dict[str, list[tuple]] = {c.name: [] for c in cases}
    for r in range(reps):
        for c in (cases if r % 2 == 0 else cases[::-1]):
            times[c.name].append(timed(getattr(c, kind), iters, c.device))
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fashion32", choices=sorted(PRESETS))
    p.add_argument("--batch", type=int, default=32, help="training batch B; the sampling forward runs 2B")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fast", action="store_true",
                   help="ours with bf16 autocast + channels_last + torch.compile (CUDA); diffusers fp32 eager")
    p.add_argument("--diffusers-bf16", action="store_true", help="with --fast: also autocast diffusers to bf16")
    p.add_argument("--warmup", type=int, help="untimed calls per model and kind (default 1; 3 with --fast)")
    p.add_argument("--iters", type=int, default=1, help="calls per timed repetition")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions; the median is reported")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", type=Path, help="append the results as one JSON line")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.warmup is None:
        a.warmup = 3 if a.fast else 1
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here; use --device cpu", file=sys.stderr)
        return 2
    if a.fast and device.type != "cuda":
        print("--fast is the CUDA fast path (bf16 + channels_last + compile); on the CPU run without it",
              file=sys.stderr)
        return 2

    m, res = model_config(a.preset)
    torch.manual_seed(0)
    ours = build_unet(m, res)
    theirs, dcfg = diffusers_unet(m, res)
    n_ours, n_theirs = count_parameters(ours), count_parameters(theirs)
    ratio = n_ours / n_theirs
    import diffusers

    print(f"preset {a.preset}: {m.image_channels}×{res}×{res}, widths {[m.base_channels * k for k in m.channel_mult]}, "
          f"{m.num_res_blocks} res blocks/level, attention at {m.attention_resolutions} + mid, dropout {m.dropout}")
    print(f"diffusers {diffusers.__version__} UNet2DModel: down {dcfg['down_block_types']}, "
          f"up {dcfg['up_block_types']}, attention_head_dim {dcfg['attention_head_dim']}, "
          f"num_class_embeds {dcfg['num_class_embeds']}")
    print(f"attention heads: {heads_per_level(m, res, dcfg['attention_head_dim'])}")
    print(f"parameters: ours {n_ours:,}  diffusers {n_theirs:,}  ratio {ratio:.4f}")
    if abs(ratio - 1) > 0.05:
        print(f"parameter counts differ by more than 5 % ({ratio:.3f}); the comparison would not be fair",
              file=sys.stderr)
        return 1

    fast = a.fast
    amp_ours = torch.bfloat16 if fast else None
    amp_theirs = torch.bfloat16 if fast and a.diffusers_bf16 else None
    shape = (m.image_channels, res, res)
    cases = [
        Case("ours", ours, device, a.batch, shape, m.num_classes, amp_ours, channels_last=fast, compile_=fast),
        Case("diffusers", DiffusersAdapter(theirs), device, a.batch, shape, m.num_classes, amp_theirs,
             channels_last=False, compile_=False),
    ]
    what_ours = "bf16 autocast + channels_last + torch.compile" if fast else "fp32 eager"
    what_theirs = ("bf16 autocast, eager" if amp_theirs else "fp32 eager")
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load_average()}; "
          f"ours: {what_ours}; diffusers: {what_theirs}")
    print(f"batch {a.batch} (sampling forward: {2 * a.batch}); {a.warmup} warm-up calls, then {a.reps} interleaved "
          f"repetitions of {a.iters} calls per model; medians")

    result: dict[str, Any] = {"preset": a.preset, "device": str(device), "fast": fast, "batch": a.batch,
                              "params_ours": n_ours, "params_diffusers": n_theirs, "param_ratio": ratio,
                              "torch": torch.__version__, "diffusers": diffusers.__version__,
                              "threads": torch.get_num_threads()}
    for kind, label, images in (("train_step", "train (fwd+bwd+AdamW)", a.batch),
                                ("sample_forward", "sample fwd (2B, no grad)", 2 * a.batch)):
        t0 = time.perf_counter()
        times = interleaved(cases, kind, a.warmup, a.iters, a.reps)
        wall = {k: [w for w, _ in v] for k, v in times.items()}
        cpu = {k: [c for _, c in v] for k, v in times.items()}
        ips = {k: images / statistics.median(v) for k, v in wall.items()}
        # Ratio of throughputs = diffusers' time / ours, paired within each repetition, then the median.
        r_wall = statistics.median(d / o for o, d in zip(wall["ours"], wall["diffusers"]))
        r_cpu = statistics.median(d / o for o, d in zip(cpu["ours"], cpu["diffusers"]))
        spread = {k: f"{min(v) * 1000:.0f}–{max(v) * 1000:.0f}" for k, v in wall.items()}
        print(f"{label:24s} ours {ips['ours']:8.1f} img/s  diffusers {ips['diffusers']:8.1f} img/s  "
              f"ratio ours/diffusers {r_wall:.3f} (CPU-time ratio {r_cpu:.3f})", flush=True)
        print(f"{'':24s} ms per call, min–max over reps: ours {spread['ours']}, diffusers {spread['diffusers']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        key = kind.split("_")[0]
        result.update({f"{key}_images_per_s_ours": ips["ours"], f"{key}_images_per_s_diffusers": ips["diffusers"],
                       f"{key}_ratio": r_wall, f"{key}_cpu_time_ratio": r_cpu, f"{key}_seconds_per_call": times})
    print(f"load average at the end: {load_average()} (other jobs on the machine slow both models alike)")
    result["load_average_end"] = load_average()
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
