"""Peak memory: the CUDA allocator's peak, or the process's peak resident set on the CPU."""

from __future__ import annotations

import os
import resource
from typing import Any

import torch


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class PeakMemory:
    """Peak memory of one phase: CUDA allocator peak, or the process's peak RSS (reset first where Linux allows
    it, else the process-lifetime peak: `scope` says which)."""

    def __init__(self, device: Any):
        self.cuda = getattr(device, "type", str(device)) == "cuda"
        self.device = device

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            return float("nan")

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device) / 2**20
            self.scope = "cuda max_memory_allocated (this cell)"
            return self
        self.start = self.rss_mb()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS ("hiwater") to the current RSS
            self.scope = "peak RSS (this cell)"
        except OSError:
            self.scope = "peak RSS (process lifetime)"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        self.delta = self.peak - self.start

    @property
    def kind(self) -> str:
        return "cuda" if self.cuda else "rss"
