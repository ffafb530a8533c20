"""Where and how computation runs: devices, precision, processes (torchrun), memory measurement."""

from largo.runtime.device import model_num_classes, resolve_device, unwrap_model
from largo.runtime.distributed import DistInfo
from largo.runtime.memory import PeakMemory, peak_memory_mb
from largo.runtime.precision import (autocast, check_compile, cpu_bf16_features, describe_precision, resolve_precision,
                                     sampling_autocast)

__all__ = ["DistInfo", "PeakMemory", "autocast", "check_compile", "cpu_bf16_features", "describe_precision",
           "model_num_classes", "peak_memory_mb", "resolve_device", "resolve_precision", "sampling_autocast",
           "unwrap_model"]
