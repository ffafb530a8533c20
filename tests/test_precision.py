"""The fast paths give the fp32 answers on the CPU: bf16 autocast and channels_last in the U-Net, channels_last
and bf16 in a Trainer step (whose loss, optimizer state and EMA stay fp32), and fp16 on the CPU is a one-line
user error. Synthetic data, so no dataset is needed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import largo.train.trainer as trainer_mod
from helpers import tiny_config
from largo.cli import main
from largo.config import ModelConfig
from largo.data.datasets import ImageSet
from largo.models import build_unet


def _net(channels_last: bool = False) -> torch.nn.Module:
    cfg = ModelConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
                      num_heads=2, image_channels=3, num_classes=5, dropout=0.0)
    torch.manual_seed(0)
    net = build_unet(cfg, 16).eval()
    with torch.no_grad():
        for p in net.parameters():  # the zero-initialised output layers would make every path agree trivially
            if not p.count_nonzero():
                torch.nn.init.normal_(p, std=0.05)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _inputs(batch: int = 4):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 3, 16, 16, generator=g), torch.tensor([0.0, 10.0, 500.0, 999.0])[:batch],
            torch.tensor([0, 1, 4, 5])[:batch])


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def test_channels_last_forward_and_backward_match_contiguous():
    x, t, y = _inputs()
    ref_net, cl_net = _net(), _net(channels_last=True)
    x_ref = x.clone().requires_grad_(True)
    x_cl = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out_ref, out_cl = ref_net(x_ref, t, y), cl_net(x_cl, t, y)
    assert _rel_err(out_cl, out_ref) < 1e-5
    out_ref.square().sum().backward()
    out_cl.square().sum().backward()
    assert _rel_err(x_cl.grad, x_ref.grad) < 1e-4
    # All parameter gradients as one vector: a conv bias right before a GroupNorm has a gradient that is 0 up to
    # rounding, so element- or tensor-wise relative checks would compare noise.
    grads = [torch.cat([p.grad.flatten() for p in net.parameters()]) for net in (cl_net, ref_net)]
    assert _rel_err(*grads) < 1e-4


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_autocast_forward_is_close_to_fp32(channels_last):
    x, t, y = _inputs()
    net = _net(channels_last)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = net(x, t, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x, t, y)
    assert low.dtype == torch.bfloat16  # autocast really ran the convolutions in bf16
    assert torch.isfinite(low).all()
    assert _rel_err(low, ref) < 0.03, _rel_err(low, ref)  # bf16 has an 8-bit mantissa (≈ 0.4 % per rounding)


def _synthetic(*args, **kwargs) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8, generator=g)
    return ImageSet(images, torch.arange(64) % 10, [f"c{i}" for i in range(10)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three optimizer steps of the same tiny run (same seed, same batches) in fp32, channels_last and bf16."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_mod, "load_images", _synthetic)
        for name, train in {"fp32": {"precision": "fp32"}, "channels_last": {"channels_last": True, "precision": "fp32"},
                            "bf16": {"precision": "bf16"}}.items():
            cfg = tiny_config(device="cpu", **train)
            cfg.model = dataclasses.replace(cfg.model, dropout=0.0)
            tr = trainer_mod.Trainer(cfg, tmp_path_factory.mktemp(name), progress=False)
            start = [p.detach().clone() for p in tr.net.parameters()]
            # The first loss only sees the zero-initialised output layer; the later ones see AdamW's updates.
            losses = [tr.train_step()[0] for _ in range(3)]
            updates = [p.detach() - p0 for p, p0 in zip(tr.net.parameters(), start)]
            out[name] = (losses, tr, updates)
    return out


def test_trainer_steps_with_channels_last_give_the_same_loss(runs):
    ref, _, ref_updates = runs["fp32"]
    cl, tr, cl_updates = runs["channels_last"]
    assert tr.net.input_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert cl == pytest.approx(ref, rel=1e-4)
    # Adam's first steps are ≈ lr·sign(g), so compare whole updates, not elements whose gradient is ~0.
    assert _rel_err(torch.cat([u.flatten() for u in cl_updates]), torch.cat([u.flatten() for u in ref_updates])) < 0.02


def test_trainer_bf16_steps_on_cpu_keep_fp32_state_and_a_close_loss(runs):
    ref, _, _ = runs["fp32"]
    low, tr, _ = runs["bf16"]
    assert tr.amp_dtype == torch.bfloat16
    assert low == pytest.approx(ref, rel=0.03)
    assert all(p.dtype == torch.float32 for p in tr.net.parameters())
    assert all(p.dtype == torch.float32 for p in tr.ema.net.parameters())
    state = tr.opt.state[next(tr.net.parameters())]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32


def test_fp16_on_cpu_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--preset", "demo", "--device", "cpu", "--precision", "fp16", "--run-dir", str(run),
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("largo: error:") and "fp16" in err[0] and "CUDA" in err[0], err
    assert not run.exists()


@pytest.fixture(scope="module")
def tiny_sampling_run(tiny_run):
    return tiny_run  # only read


def test_bf16_sampling_on_cpu_is_close_to_fp32(tiny_sampling_run):
    """--precision bf16 runs the network under autocast (a real change: the images differ) but the sampler's
    arithmetic stays fp32/fp64, so images stay within a few grey levels of the fp32 ones."""
    from largo.sampling import generate_images, load_model

    model = load_model(tiny_sampling_run)

    net, cfg, _ = model.net, model.cfg, model.class_names
    labels = torch.arange(2)  # bf16 is emulated on CPUs without bf16 units: 25x fp32's time there
    a = generate_images(net, cfg, labels, sampler="ddim", steps=4, precision="fp32").float()
    b = generate_images(net, cfg, labels, sampler="ddim", steps=4, precision="bf16").float()
    diff = (a - b).abs().mean().item()
    assert 0 < diff < 6, diff


def test_unknown_sample_precision_is_refused(tiny_sampling_run):
    from largo.errors import LargoError
    from largo.sampling import generate_images, load_model

    model = load_model(tiny_sampling_run)

    net, cfg, _ = model.net, model.cfg, model.class_names
    with pytest.raises(LargoError, match="unknown precision 'fp8'"):
        generate_images(net, cfg, torch.zeros(1, dtype=torch.long), steps=2, precision="fp8")


def test_unsupported_precision_or_compile_is_one_clear_error(monkeypatch):
    import shutil

    from largo.errors import LargoError
    from largo.runtime import check_compile, resolve_precision

    with pytest.raises(LargoError, match="fp16 training needs a CUDA GPU"):
        resolve_precision("fp16", torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(LargoError, match="no bfloat16 support"):
        resolve_precision("bf16", torch.device("cuda"))
    assert resolve_precision("auto", torch.device("cuda")) == torch.float16  # older GPUs: fp16 + loss scaling
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LargoError, match="needs a C\\+\\+ compiler"):
        check_compile(torch.device("cpu"))


def test_auto_precision_on_the_cpu_follows_its_bf16_units(monkeypatch):
    """`auto` trains in bf16 on CPUs with native bf16 (AMX / AVX512-BF16, where it is faster) and fp32 elsewhere,
    and the run's first line says which and why."""
    import largo.runtime.precision as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("avx512_bf16",))
    assert precision.resolve_precision("auto", cpu) == torch.bfloat16
    assert precision.describe_precision(torch.bfloat16, cpu) == "bf16; CPU bf16 units: avx512_bf16"
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ())
    assert precision.resolve_precision("auto", cpu) == torch.float32
    assert precision.describe_precision(torch.float32, cpu) == "fp32; CPU bf16 units: none"
    assert precision.resolve_precision("bf16", cpu) == torch.bfloat16  # an explicit choice is kept
    assert precision.resolve_precision("fp32", cpu) == torch.float32


def test_cpu_bf16_features_match_what_linux_reports():
    import platform
    from pathlib import Path

    from largo.runtime.precision import NATIVE_BF16_FLAGS, cpu_bf16_features

    found = cpu_bf16_features()
    assert set(found) <= set(NATIVE_BF16_FLAGS)
    if platform.system() == "Linux" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        assert set(found) == {f for f in NATIVE_BF16_FLAGS if f in flags.split()}
