"""Numeric precision for training and sampling, and the checks torch.compile needs up front."""

from __future__ import annotations

import contextlib
import functools
import platform
import shutil
from pathlib import Path

import torch

from largo.config import SAMPLE_PRECISIONS
from largo.errors import LargoError


# CPU features with which oneDNN runs bf16 convolutions and matmuls natively; without them torch emulates bf16 on
# AVX512 and training gets slower, not faster.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_bf16_features() -> tuple[str, ...]:
    """The native-bf16 features this CPU has, as Linux reports them (empty elsewhere, or when torch's oneDNN
    has no bf16 path at all)."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not cpuinfo.is_file() or not torch.backends.mkldnn.is_available():
        return ()
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return ()
    flags = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return tuple(f for f in NATIVE_BF16_FLAGS if f in flags)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Training's autocast dtype. `auto`: bf16 on GPUs that have it, fp16 with loss scaling on older GPUs; on the
    CPU bf16 where it has native bf16 units (AMX-BF16 or AVX512-BF16: 1.45x the demo's training speed on the
    2-core AMD EPYC, docs/SPEED.md), else fp32. (Sampling never uses fp16: see `sampling_autocast`.)"""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_bf16_features() else torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise LargoError("fp16 training needs a CUDA GPU; use --precision bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise LargoError("this GPU has no bfloat16 support; use --precision fp16 (with loss scaling) or fp32")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def describe_precision(dtype: torch.dtype, device: torch.device) -> str:
    """For the first line of a run: the dtype and, on the CPU, why."""
    name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    if device.type != "cpu":
        return name
    found = cpu_bf16_features()
    return f"{name}; CPU bf16 units: {'/'.join(found) if found else 'none'}"


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def sampling_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The network's precision while sampling; the sampler's own arithmetic stays in float32/64 either way.
    auto: bf16 on CUDA GPUs that support it, else fp32. bf16 on CPU uses autocast (fast where the CPU has
    AMX/AVX512-BF16, e.g. 1.8x here; slower elsewhere)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise LargoError("sample_precision bf16: this GPU does not support bfloat16; use fp32")
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise LargoError(f"unknown sample_precision {precision!r}; valid: {', '.join(SAMPLE_PRECISIONS)}")


def check_compile(device: torch.device) -> None:
    """torch.compile fails deep inside its first step where it cannot work; say so up front instead."""
    if not torch._dynamo.is_dynamo_supported():
        raise LargoError(f"torch.compile is not supported with this Python/torch ({torch.__version__}); "
                         f"train without --compile")
    if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        raise LargoError("torch.compile on the CPU needs a C++ compiler (g++ or clang++) on PATH; install one or "
                         "train without --compile")
