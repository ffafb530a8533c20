"""Training and sampling throughput and model-FLOPs utilisation (MFU) of the flowers64 U-Net, against diffusers'
`UNet2DModel` built to the same shape, for a list of variants; a torch.profiler table of the best one (issue 18).

    python benchmarks/gpu_mfu.py --device cpu --tiny                        # CPU dry run, tiny sizes, < 1 min
    python benchmarks/gpu_mfu.py --device cuda --isolate --out-dir $OUT/mfu \\
        --variants train:ours:256:default:cl train:ours:512:max-autotune:cl sample:ours:512:default:cl ...

A variant is KIND:MODEL:BATCH:COMPILE:LAYOUT[:FLAG...]
  KIND     train | sample
  MODEL    ours (largo's U-Net) | diffusers (UNet2DModel, matched as in benchmarks/unet_vs_diffusers.py)
  BATCH    training batch; for sampling the number of images (each guided step is one forward of 2×BATCH)
  COMPILE  off | default | max-autotune | max-autotune-no-cudagraphs | reduce-overhead (CUDA graphs)
  LAYOUT   cl (channels_last) | nchw
  FLAGS    noema (train: the EMA update is skipped — the most that an EMA every k steps could save),
           bench (cudnn.benchmark), fp32 (no bf16 autocast), attn-flash | attn-efficient | attn-cudnn | attn-math
           (the only SDPA backend allowed)

Training runs the real `Trainer.train_step` (diffusion loss with label dropout, backward, grad clip, fused AdamW
on CUDA, foreach EMA, one host sync per step) on synthetic uint8 data of the dataset's shape that lives on the
device, as the real data does. For `diffusers` the same Trainer builds the matched UNet2DModel instead of ours, so
everything around the network is identical. COMPILE other than `off` replaces the Trainer's `model_fn` by
`torch.compile(train_net, mode=...)` (`default` is exactly what `--compile true` does). `--warm` untimed steps
(compilation, autotuning, CUDA-graph recording) are followed by `--timed` steps in 3 blocks; the median block
gives images/s, min–max of the blocks the spread.

FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` on one real eager forward + backward of the
same network through the same loss (at a small batch, scaled linearly: every counted op is linear in the batch);
MFU = FLOPs per step / step time / `--peak-tflops` (default 989, the H100/H200 SXM dense bf16 datasheet peak;
KINDS.md measured 770–800 TFLOP/s for an 8192³ bf16 matmul on the H200: `--ceilings` measures it again).
Sampling: `largo.sampling.generate_images`, DPM++2M with `--sample-nfe` steps and guidance `--cfg` (one forward of
2B per step), images/s after one full untimed run; its MFU uses the counted forward FLOPs.

`--isolate` runs every variant in its own process with `--variant-timeout` (a hung autotune or a CUDA error
cannot take the others down; memory starts clean). After the variants, the best training variant of `ours` (by
images/s, or `--profile SPEC`) is profiled: `profile_<spec>.txt` (top ops by CUDA time, CPU time on the CPU),
one JSON line with the time per category (convolution, matmul, attention, GroupNorm, optimizer, EMA/foreach,
copies, other elementwise), largo::data/forward+loss/optimizer/ema ranges, host syncs per step and the
GPU's busy fraction, and a gzipped Chrome trace. Output: `--out-dir`/results.jsonl (one JSON line per variant,
appended), the profile files, and a Markdown table printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import largo.train.trainer as trainer_mod
from _common import sync, synthetic_images
from largo.config import preset_config
from largo.models import count_parameters
from largo.runtime import autocast, resolve_device
from largo.sampling import generate_images
from largo.train.diffusion_task import DiffusionTask

COMPILE_MODES = ("off", "default", "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead")
FLAGS = ("noema", "bench", "fp32", "attn-flash", "attn-efficient", "attn-cudnn", "attn-math")
CLASSES = 102
TINY_VARIANTS = ["train:ours:4:off:nchw", "train:ours:4:off:cl:noema", "train:diffusers:4:off:nchw",
                 "sample:ours:4:off:nchw", "sample:diffusers:4:off:nchw"]
CUDA_VARIANTS = [
    "train:ours:256:off:cl", "train:ours:256:default:cl", "train:ours:256:default:nchw",
    "train:ours:512:default:cl", "train:ours:1024:default:cl", "train:ours:256:default:cl:noema",
    "train:ours:512:max-autotune-no-cudagraphs:cl", "train:ours:512:reduce-overhead:cl",
    "train:diffusers:256:default:cl", "sample:ours:256:default:cl", "sample:ours:1024:default:cl",
    "sample:ours:1024:off:cl", "sample:diffusers:1024:default:cl",
]
# Kernel (CUDA) or op (CPU) name → category; the first pattern that matches wins.
CATEGORIES = [
    ("attention", r"flash|fmha|attention|sdpa|_efficient_attention"),
    ("groupnorm", r"group_norm|groupnorm|native_group"),
    ("convolution", r"conv|xmma|cudnn|implicit|wgrad|dgrad|fprop|winograd"),
    ("matmul", r"gemm|nvjet|cublas|cutlass|aten::mm|aten::addmm|aten::bmm|linear"),
    ("optimizer", r"adam"),
    ("ema/foreach", r"foreach|lerp"),
    ("copies/layout", r"copy|memcpy|memset|clone|contiguous|permute|transpose|cat|to_copy"),
    ("other elementwise", r"triton|elementwise|vectorized|reduce|silu|add|mul|where|fill"),
]


@dataclasses.dataclass
class Variant:
    kind: str
    model: str
    batch: int
    compile: str
    channels_last: bool
    flags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Variant:
        parts = spec.split(":")
        if len(parts) < 5:
            raise SystemExit(f"bad variant {spec!r}: KIND:MODEL:BATCH:COMPILE:LAYOUT[:FLAG...]")
        kind, model, batch, mode, layout, *flags = parts
        bad = ([kind] if kind not in ("train", "sample") else []) + ([model] if model not in ("ours", "diffusers")
                                                                      else [])
        bad += ([mode] if mode not in COMPILE_MODES else []) + ([layout] if layout not in ("cl", "nchw") else [])
        bad += [f for f in flags if f not in FLAGS]
        if bad or not batch.isdigit():
            raise SystemExit(f"bad variant {spec!r}: {bad or batch}")
        return cls(kind, model, int(batch), mode, layout == "cl", tuple(flags))

    @property
    def spec(self) -> str:
        return ":".join([self.kind, self.model, str(self.batch), self.compile, "cl" if self.channels_last else "nchw",
                         *self.flags])


# -- building the real Trainer on synthetic data ----------------------------------------------------------
def run_config(a: argparse.Namespace, v: Variant):
    cfg = preset_config("flowers64")
    if a.tiny:  # the flowers64 structure at a size the CPU runs in seconds
        cfg.model = dataclasses.replace(cfg.model, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                                        attention_resolutions=(8,))
        cfg.data = dataclasses.replace(cfg.data, resolution=16)
    else:
        cfg.model = dataclasses.replace(cfg.model, channel_mult=tuple(int(m) for m in a.channel_mult.split(",")))
    cfg.train = dataclasses.replace(cfg.train, batch_size=v.batch, device=a.device, compile=False,
                                    precision="fp32" if "fp32" in v.flags else a.precision,
                                    channels_last=v.channels_last, steps=10**6, max_minutes=0.0,
                                    checkpoint_every=10**6, lr=3e-4, lr_warmup=0, ema_decay=0.9995)
    return cfg


class DiffusersTask(DiffusionTask):
    """The diffusion task with diffusers' matched UNet2DModel instead of our U-Net (variant model `diffusers`)."""

    def build_net(self) -> torch.nn.Module:
        from unet_vs_diffusers import DiffusersAdapter, diffusers_unet  # benchmarks/, next to this script

        net = DiffusersAdapter(diffusers_unet(self.cfg.model, self.cfg.net_size)[0])
        net.num_classes = self.cfg.model.num_classes  # the loss reads the null class from here, as from ours
        return net


def set_backends(v: Variant) -> None:
    torch.backends.cudnn.benchmark = "bench" in v.flags
    attn = [f[5:] for f in v.flags if f.startswith("attn-")]
    if attn and torch.cuda.is_available():
        for name in ("flash", "mem_efficient", "cudnn", "math"):
            on = name.replace("mem_", "") == attn[0]
            getattr(torch.backends.cuda, f"enable_{name}_sdp")(on)


def compiled(fn: torch.nn.Module, mode: str) -> torch.nn.Module:
    if mode == "off":
        return fn
    return torch.compile(fn) if mode == "default" else torch.compile(fn, mode=mode)


def build(a: argparse.Namespace, v: Variant, tmp: str) -> trainer_mod.Trainer:
    cfg = run_config(a, v)
    data = synthetic_images(3, CLASSES, cfg.data.resolution, max(4 * v.batch, 1024))
    task = DiffusersTask(cfg, resolve_device(cfg.train.device)) if v.model == "diffusers" else None
    tr = trainer_mod.Trainer(cfg, Path(tmp), progress=False, data=data, task=task)
    if "noema" in v.flags:
        tr.ema.update = lambda net: None
    return tr


# -- FLOPs -------------------------------------------------------------------------------------------------
def count_flops(tr: trainer_mod.Trainer, batch: int, n: int, train: bool) -> tuple[float, dict[str, float]]:
    """FLOPs of one training step (forward + backward through the real loss) or one sampling forward of
    `batch` images, counted at n ≤ batch images and scaled; with the share of each counted op."""
    net, x, y = tr.net, *tr.stream.next()
    x, y = x[:n], y[:n]
    if tr.cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    net.train(train)
    with FlopCounterMode(display=False) as fc:
        if train:
            with autocast(tr.device, tr.amp_dtype):
                loss = tr.task.loss(net, net, x, y, 0, (0, 1))
            loss.backward()
        else:
            with torch.no_grad(), autocast(tr.device, tr.amp_dtype):
                net(x, torch.full((n,), 500, device=x.device), y)
    net.zero_grad(set_to_none=True)
    total = fc.get_total_flops()
    ops = fc.get_flop_counts().get("Global", {})
    share = {str(k).split(".")[-1] if not isinstance(k, str) else k: round(f / max(total, 1), 4)
             for k, f in sorted(ops.items(), key=lambda kv: -kv[1])}
    return total * batch / n, share


# -- timing ------------------------------------------------------------------------------------------------
def step_fn(tr: trainer_mod.Trainer, v: Variant):
    if v.compile == "reduce-overhead":
        def step() -> None:
            torch.compiler.cudagraph_mark_step_begin()
            tr.train_step()
        return step
    return lambda: tr.train_step()


def blocks(fn, device: torch.device, n_blocks: int, per_block: int) -> list[float]:
    """Seconds per call in each of `n_blocks` blocks of `per_block` calls."""
    out = []
    for _ in range(n_blocks):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(per_block):
            fn()
        sync(device)
        out.append((time.perf_counter() - t0) / per_block)
    return out


def measure_train(a: argparse.Namespace, v: Variant, tr: trainer_mod.Trainer) -> dict:
    flops, share = count_flops(tr, v.batch, min(v.batch, a.count_batch), train=True)
    tr.model_fn = compiled(tr.train_net, v.compile)
    step = step_fn(tr, v)
    first = []
    for _ in range(a.warm):
        first.append(round(blocks(step, tr.device, 1, 1)[0], 3))
    if a.warm_only:
        return {"warm_only": True, "first_steps_s": first}
    times = blocks(step, tr.device, 3, max(1, a.timed // 3))
    s = statistics.median(times)
    return {"images_per_s": v.batch / s, "step_ms": 1000 * s,
            "step_ms_spread": [round(1000 * min(times), 2), round(1000 * max(times), 2)],
            "first_steps_s": first, "gflop_per_image": flops / v.batch / 1e9, "tflops": flops / s / 1e12,
            "mfu": flops / s / (a.peak_tflops * 1e12), "flop_share": dict(list(share.items())[:8])}


def measure_sample(a: argparse.Namespace, v: Variant, tr: trainer_mod.Trainer) -> dict:
    fwd_flops, share = count_flops(tr, 2 * v.batch, min(v.batch, a.count_batch), train=False)
    net = tr.ema.net.to(memory_format=torch.channels_last) if v.channels_last else tr.ema.net
    fn = compiled(net, v.compile)
    labels = torch.arange(v.batch) % CLASSES
    kw = {"sampler": "dpmpp2m", "steps": a.sample_nfe, "cfg": a.cfg, "batch_size": v.batch,
          "device": tr.device, "precision": "fp32" if "fp32" in v.flags else "auto"}
    t0 = time.perf_counter()
    generate_images(fn, tr.cfg, labels, **kw)  # compilation, allocations
    sync(tr.device)
    first = round(time.perf_counter() - t0, 2)
    if a.warm_only:
        return {"warm_only": True, "first_run_s": first}
    times = blocks(lambda: generate_images(fn, tr.cfg, labels, **kw), tr.device, a.sample_reps, 1)
    s = statistics.median(times)
    flops = fwd_flops * a.sample_nfe
    return {"images_per_s": v.batch / s, "run_s": s, "run_s_spread": [round(min(times), 3), round(max(times), 3)],
            "first_run_s": first, "nfe": a.sample_nfe, "cfg": a.cfg, "sampler": "dpmpp2m",
            "forward_batch": 2 * v.batch, "gflop_per_image": flops / v.batch / 1e9, "tflops": flops / s / 1e12,
            "mfu": flops / s / (a.peak_tflops * 1e12), "flop_share": dict(list(share.items())[:8])}


def run_one(a: argparse.Namespace, v: Variant) -> dict:
    set_backends(v)
    torch._dynamo.reset()
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        tr = build(a, v, tmp)
        row = {"variant": v.spec, "params": count_parameters(tr.net), "precision": str(tr.amp_dtype)[6:],
               "resolution": tr.cfg.data.resolution, "channel_mult": list(tr.cfg.model.channel_mult)}
        row.update(measure_train(a, v, tr) if v.kind == "train" else measure_sample(a, v, tr))
        if a.profile_this:
            row["profile"] = profile(a, v, tr)
    row["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else None
    row.update(device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu", torch=torch.__version__,
               peak_tflops=a.peak_tflops)
    return row


# -- profile -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def ranges(tr: trainer_mod.Trainer):
    """Name the parts of `train_step` in the profile (largo::data, ::forward+loss, ::optimizer, ::ema; the backward
    pass and grad clip are the rest of the step)
    by wrapping the objects the step calls; nothing in the step changes."""
    rf = torch.profiler.record_function
    saved = (tr.stream.next, tr.task.loss, tr.opt.step, tr.ema.update)

    def wrap(name, fn):
        def inner(*args, **kw):
            with rf(f"largo::{name}"):
                return fn(*args, **kw)
        return inner

    tr.stream.next, tr.task.loss = wrap("data", saved[0]), wrap("forward+loss", saved[1])
    tr.opt.step, tr.ema.update = wrap("optimizer", saved[2]), wrap("ema", saved[3])
    try:
        yield
    finally:
        tr.stream.next, tr.task.loss, tr.opt.step, tr.ema.update = saved


def categorise(name: str) -> str:
    low = name.lower()
    for cat, pattern in CATEGORIES:
        if re.search(pattern, low):
            return cat
    return "other"


def profile(a: argparse.Namespace, v: Variant, tr: trainer_mod.Trainer) -> dict:
    """torch.profiler over `--profile-steps` steps of a warmed-up variant: table, categories, syncs, busy."""
    cuda = tr.device.type == "cuda"
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    step = step_fn(tr, v) if v.kind == "train" else None
    if step is None:
        raise SystemExit("--profile takes a train variant")
    n = a.profile_steps
    with ranges(tr), torch.profiler.profile(activities=acts) as prof:
        sync(tr.device)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        sync(tr.device)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    out = Path(a.out_dir)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", v.spec)
    (out / f"profile_{name}.txt").write_text(
        f"{v.spec}: {n} steps, {wall / n * 1000:.1f} ms per step\n" + events.table(sort_by=sort, row_limit=a.rows))
    trace = out / f"trace_{name}.json"
    prof.export_chrome_trace(str(trace))
    with open(trace, "rb") as f, gzip.open(f"{trace}.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    trace.unlink()
    return summarise(events, wall, n, cuda)


def _device_us(e) -> float:
    return float(getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0) or 0)


def summarise(events, wall: float, steps: int, cuda: bool) -> dict:
    kernels = [e for e in events if cuda and e.device_type == torch.autograd.DeviceType.CUDA and _device_us(e) > 0]
    if cuda:
        items = [(e.key, _device_us(e)) for e in kernels if not e.key.startswith("largo::")]
    else:
        items = [(e.key, float(e.self_cpu_time_total)) for e in events if not e.key.startswith("largo::")]
    cats: dict[str, float] = {}
    for key, us in items:
        cats[categorise(key)] = cats.get(categorise(key), 0.0) + us
    busy = sum(us for _, us in items)
    syncs = sum(e.count for e in events if e.key in ("aten::_local_scalar_dense", "cudaStreamSynchronize",
                                                      "cudaDeviceSynchronize"))
    spans = {e.key: {"cpu_ms_per_step": round(e.cpu_time_total / 1000 / steps, 3),
                     "device_ms_per_step": round(float(getattr(e, "device_time_total", 0) or 0) / 1000 / steps, 3)}
             for e in events if e.key.startswith("largo::")}
    return {"steps": steps, "wall_ms_per_step": round(wall / steps * 1000, 2),
            "timed": "CUDA kernel self time" if cuda else "CPU op self time",
            "busy_ms_per_step": round(busy / 1000 / steps, 2), "busy_fraction": round(busy / 1e6 / wall, 3),
            "categories_ms_per_step": {k: round(us / 1000 / steps, 3) for k, us in sorted(cats.items(),
                                                                                            key=lambda kv: -kv[1])},
            "host_sync_events_per_step": round(syncs / steps, 2), "ranges": spans, "kernels": len(items)}


# -- ceilings ------------------------------------------------------------------------------------------------
def ceilings(device: torch.device, tiny: bool) -> dict:
    """The two roofline ceilings measured here: a bf16 matmul on random data and a device-to-device copy."""
    n = 512 if tiny else 8192
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    mm = statistics.median(blocks(lambda: a @ b, device, 5, 3 if tiny else 10))
    x = torch.randn((2**22 if tiny else 2**29) // 4, device=device)  # 4 MiB or 2 GiB of fp32
    y = torch.empty_like(x)
    cp = statistics.median(blocks(lambda: y.copy_(x), device, 5, 3 if tiny else 10))
    return {"variant": "ceilings", "matmul": f"{n}^3 {str(dtype)[6:]}", "matmul_tflops": 2 * n**3 / mm / 1e12,
            "copy_gb_per_s": 2 * x.numel() * 4 / cp / 1e9, "copy_bytes": 2 * x.numel() * 4,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}


# -- running variants ----------------------------------------------------------------------------------------
def child_args(a: argparse.Namespace) -> list[str]:
    args = ["--device", a.device, "--precision", a.precision, "--channel-mult", a.channel_mult,
            "--peak-tflops", str(a.peak_tflops), "--warm", str(a.warm), "--timed", str(a.timed),
            "--count-batch", str(a.count_batch), "--sample-nfe", str(a.sample_nfe), "--cfg", str(a.cfg),
            "--sample-reps", str(a.sample_reps), "--profile-steps", str(a.profile_steps), "--rows", str(a.rows),
            "--out-dir", str(a.out_dir)]
    return args + (["--tiny"] if a.tiny else [])


def run_variant(a: argparse.Namespace, spec: str, profile_it: bool = False) -> dict:
    """One variant, in this process or (`--isolate`) in a child with a timeout; errors become a row."""
    if not a.isolate:
        a.profile_this, a.warm_only = profile_it, False
        try:
            return run_one(a, Variant.parse(spec))
        except Exception as e:  # noqa: BLE001 - one failed variant must not lose the others
            return {"variant": spec, "error": f"{type(e).__name__}: {str(e)[:600]}"}
    cmd = [sys.executable, __file__, "--one", spec, *child_args(a)] + (["--profile-this"] if profile_it else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.variant_timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"variant": spec, "error": f"timeout after {a.variant_timeout} s"}
    for line in p.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"variant": spec, "error": f"exit {p.returncode}: {(p.stderr or p.stdout)[-600:]}"}


def prewarm(a: argparse.Namespace, specs: list[str]) -> list[dict]:
    """Compile every compiled variant `--prewarm` at a time in child processes (`--warm` steps each), so that
    the timed runs afterwards, one at a time, find their graphs and autotuning in inductor's caches: compiling is
    CPU work that runs in parallel, timing is GPU work that must not."""
    todo = [s for s in dict.fromkeys(specs) if Variant.parse(s).compile != "off"]

    def warm(spec: str) -> dict:
        t0 = time.time()
        cmd = [sys.executable, __file__, "--one", spec, "--warm-only", *child_args(a)]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.variant_timeout, check=False)
            ok = p.returncode == 0
            err = None if ok else (p.stderr or p.stdout)[-400:]
        except subprocess.TimeoutExpired:
            err = f"timeout after {a.variant_timeout} s"
        r = {"variant": spec, "prewarm_s": round(time.time() - t0, 1), **({"error": err} if err else {})}
        print(f"prewarmed {json.dumps(r)}", flush=True)
        return r

    with ThreadPoolExecutor(max_workers=a.prewarm) as pool:
        return list(pool.map(warm, todo))


def fmt_row(r: dict) -> str:
    if "prewarm_s" in r:
        return f"| `{r['variant']}` | prewarm {r['prewarm_s']} s {('error: ' + r['error'][:100]) if 'error' in r else ''} | | | | | |"

    if "error" in r:
        return f"| `{r['variant']}` | error: {r['error'][:120].replace('|', '/')} | | | | | |"
    if r["variant"] == "ceilings":
        return (f"| ceilings | matmul {r['matmul']}: {r['matmul_tflops']:.3g} TFLOP/s | copy {r['copy_gb_per_s']:.0f}"
                f" GB/s | | | | |")
    ms = r.get("step_ms", 1000 * r.get("run_s", 0))
    spread = r.get("step_ms_spread") or [1000 * s for s in r.get("run_s_spread", [0, 0])]
    first = r.get("first_steps_s", r.get("first_run_s"))
    return (f"| `{r['variant']}` | {r['images_per_s']:,.0f} | {ms:.1f} ({spread[0]:.1f}–{spread[1]:.1f}) | "
            f"{r['gflop_per_image']:.2f} | {r['tflops']:.1f} | {100 * r['mfu']:.1f} % | "
            f"{r['peak_mem_mb'] or '–'} MB, first {first} s |")


def pick_best(rows: list[dict]) -> str | None:
    ok = [r for r in rows if "error" not in r and r["variant"].startswith("train:ours:")]
    return max(ok, key=lambda r: r["images_per_s"])["variant"] if ok else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny model (base 32, mult 1,2, 16 px) for a CPU dry run")
    p.add_argument("--variants", nargs="+", help="KIND:MODEL:BATCH:COMPILE:LAYOUT[:FLAG...] (default: a CUDA "
                   "list, or with --tiny a CPU list)")
    p.add_argument("--precision", default="bf16", help="training autocast: bf16 | fp32 | auto (fp32 per flag)")
    p.add_argument("--channel-mult", default="1,2,3,4", help="the flagship's 22.1 M model (preset: 1,2,4,8)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H200/H100 SXM)")
    p.add_argument("--warm", type=int, default=3, help="untimed steps (compile, autotune, graph recording)")
    p.add_argument("--timed", type=int, default=30, help="timed training steps, in 3 blocks")
    p.add_argument("--count-batch", type=int, default=8, help="batch at which FLOPs are counted (then scaled)")
    p.add_argument("--sample-nfe", type=int, default=20)
    p.add_argument("--cfg", type=float, default=1.5, help="guidance scale of the timed sampling")
    p.add_argument("--sample-reps", type=int, default=3, help="timed sampling runs (median)")
    p.add_argument("--profile", default="best", help="train variant to profile: best (of ours) | SPEC | none")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--rows", type=int, default=40, help="rows of the profiler table")
    p.add_argument("--ceilings", action="store_true", help="measure the matmul and copy ceilings first")
    p.add_argument("--isolate", action="store_true", help="each variant in its own process (CUDA runs)")
    p.add_argument("--variant-timeout", type=float, default=240.0, help="seconds per isolated variant")
    p.add_argument("--deadline", type=float, default=1e9, help="start no variant after this many seconds")
    p.add_argument("--out-dir", type=Path, default=Path("runs/gpu_mfu"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--prewarm", type=int, default=0,
                   help="compile the compiled variants this many at a time in child processes first (0: no)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--warm-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile-this", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("no CUDA device here: use --device cpu --tiny for the dry run")
    a.variants = a.variants or (TINY_VARIANTS if a.tiny else CUDA_VARIANTS)
    for spec in a.variants:
        Variant.parse(spec)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    if a.one:  # a child of --isolate or --prewarm
        a.isolate = False
        print("RESULT " + json.dumps(run_one(a, Variant.parse(a.one))), flush=True)
        return 0
    start, rows = time.time(), []
    results = a.out_dir / "results.jsonl"

    def keep(r: dict) -> None:
        rows.append(r)
        with open(results, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"[{time.time() - start:5.0f} s] {json.dumps({k: v for k, v in r.items() if k != 'flop_share'})}",
              flush=True)

    if a.ceilings:
        keep(ceilings(torch.device(a.device), a.tiny))
    if a.prewarm:
        for r in prewarm(a, a.variants + ([a.profile] if a.profile not in ("best", "none") else [])):
            keep(r)
    for spec in a.variants:
        if time.time() - start > a.deadline:
            keep({"variant": spec, "error": "skipped: deadline"})
            continue
        keep(run_variant(a, spec))
    target = pick_best(rows) if a.profile == "best" else (None if a.profile == "none" else a.profile)
    if target and time.time() - start <= a.deadline:
        keep({**run_variant(a, target, profile_it=True), "profiled": True})
    print("\n| variant | images/s | ms per step or run (min–max) | GFLOP/image | TFLOP/s | MFU | memory, warm-up |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(fmt_row(r))
    print(f"\n{len(rows)} rows in {results}; {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
