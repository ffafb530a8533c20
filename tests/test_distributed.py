"""Two CPU processes (gloo, launched by torchrun) behave like one: same losses, one checkpoint, and a sharded
generation that returns exactly the N images a single process would."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from helpers import SHARED_DATA

pytestmark = pytest.mark.slow  # torchrun launches: three process groups, each importing torch

TINY = ["--preset", "demo", "--resolution", "16", "--base-channels", "32", "--channel-mult", "1,2",
        "--num-res-blocks", "1", "--attention-resolutions", "8", "--num-heads", "2", "--batch-size", "8",
        "--steps", "4", "--log-every", "1", "--checkpoint-every", "2", "--lr-warmup", "0", "--max-minutes", "0",
        "--sample-steps", "2", "--grid-per-class", "1", "--quiet",
        "--precision", "fp32"]  # the equivalence is exact arithmetic; bf16 rounding would blur it


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(nproc, *args, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    from largo.cli import main

    root = tmp_path_factory.mktemp("ddp")  # the one-process run trains here (one thread, as the workers)
    assert main(["train", *TINY, "--data-root", str(SHARED_DATA), "--run-dir", str(root / "one")]) == 0
    two = _torchrun(2, "-m", "largo", "train", *TINY, "--data-root", str(SHARED_DATA), "--run-dir", str(root / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    return root / "one", root / "two"


def test_two_processes_follow_the_one_process_loss_trajectory(runs):
    one, two = runs
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, rel=1e-4, abs=1e-6)


def test_two_processes_write_one_set_of_checkpoints_with_the_same_weights(runs):
    one, two = runs
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["latest", "step_00000002", "step_00000004"]
    wa = load_file(str(one / "checkpoints" / "step_00000004" / "model.safetensors"))
    wb = load_file(str(two / "checkpoints" / "step_00000004" / "model.safetensors"))
    # Not bitwise: gloo sums gradients in another order, and Adam's normalisation amplifies that rounding
    # for near-zero gradients; the whole weight vector still agrees to ~1e-6 relative.
    diff = sum(((wa[k] - wb[k]) ** 2).sum() for k in wa) ** 0.5
    norm = sum((wa[k] ** 2).sum() for k in wa) ** 0.5
    assert diff / norm < 1e-4
    assert max((wa[k] - wb[k]).abs().max() for k in wa) < 1e-3


def test_sharded_generation_returns_each_image_once(runs, tmp_path):
    one, _ = runs
    script = tmp_path / "gen.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        from largo.sampling import generate_images
        from largo.sampling import load_model
        from largo.runtime.distributed import init_distributed, shutdown
        info = init_distributed(torch.device("cpu"))
        model = load_model({str(one)!r})
        net, cfg, _ = model.net, model.cfg, model.class_names
        labels = torch.arange(7) % 10
        images = generate_images(net, cfg, labels, [100 + i for i in range(7)], sampler="ddim", steps=3,
                                 batch_size=2, dist_info=info)
        if info.is_main:
            torch.save(images, {str(tmp_path / 'two.pt')!r})
        shutdown(info)
    """))
    result = _torchrun(2, str(script))
    assert result.returncode == 0, result.stderr[-3000:]
    from largo.sampling import generate_images, load_model

    model = load_model(one)

    net, cfg, _ = model.net, model.cfg, model.class_names
    single = generate_images(net, cfg, torch.arange(7) % 10, [100 + i for i in range(7)], sampler="ddim", steps=3)
    sharded = torch.load(tmp_path / "two.pt", weights_only=True)
    assert sharded.shape[0] == 7 and torch.equal(sharded, single)


def test_batch_not_divisible_by_world_size_is_a_clear_error(data_root, tmp_path):
    args = list(TINY)
    args[args.index("--batch-size") + 1] = "7"  # batch 7 over 2 processes
    result = _torchrun(2, "-m", "largo", "train", *args, "--data-root", str(SHARED_DATA), "--run-dir", str(tmp_path / "r"))
    assert result.returncode != 0
    assert "largo: error: batch_size 7 is not divisible by the 2 processes" in result.stderr
    # torchrun prints its own launcher traceback for a failed worker; none of our frames may appear in it.
    assert "src/largo/" not in result.stderr
