"""`python3 largo_tuned.py train …` is `python3 -m largo train …` with backend settings that the CLI has no flag for,
taken from the environment, so a GPU call can train with what benchmarks/gpu_mfu.py found fastest:

    CUDNN_BENCHMARK=1                        torch.backends.cudnn.benchmark = True
    LARGO_INDUCTOR="max_autotune=1,triton.cudagraphs=0,coordinate_descent_tuning=1"
                                             torch._inductor.config fields (what torch.compile's modes set:
                                             max-autotune = max_autotune + triton.cudagraphs; reduce-overhead =
                                             triton.cudagraphs); applies to `--compile true`

Each setting that is applied is printed on one line.
"""

import os
import sys

import torch


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> int:
    if os.environ.get("CUDNN_BENCHMARK") == "1":
        torch.backends.cudnn.benchmark = True
        print("largo_tuned: cudnn.benchmark = True", flush=True)
    import torch._inductor.config as inductor

    for item in filter(None, os.environ.get("LARGO_INDUCTOR", "").split(",")):
        key, _, raw = item.partition("=")
        *path, leaf = key.strip().split(".")
        obj = inductor
        for part in path:
            obj = getattr(obj, part)
        value = _value(raw.strip())
        if isinstance(getattr(obj, leaf), bool):
            value = bool(value)
        setattr(obj, leaf, value)
        print(f"largo_tuned: torch._inductor.config.{key.strip()} = {value!r}", flush=True)
    from largo.cli import main as largo_main

    return largo_main()


if __name__ == "__main__":
    sys.exit(main())
