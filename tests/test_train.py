"""A tiny run end to end: train, checkpoint, resume exactly, sample with DDPM and DDIM."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import tiny_config
from largo.checkpoint import latest_checkpoint
from largo.cli import main
from largo.sampling import load_model
from largo.train.trainer import Trainer


TIMESTEPS = 50  # the tiny runs here diffuse over 50 timesteps: DDPM's full chain costs a twentieth of 1000's


def _config(**train_overrides):
    cfg = tiny_config(**train_overrides)
    cfg.diffusion = dataclasses.replace(cfg.diffusion, timesteps=TIMESTEPS)
    return cfg


def _weights(run_dir):
    ckpt = latest_checkpoint(run_dir)
    return load_file(str(ckpt / "model.safetensors")), load_file(str(ckpt / "ema.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_root):
    run = tmp_path_factory.mktemp("full")
    summary = Trainer(_config(), run, progress=False).fit()
    return run, summary


def test_run_directory_has_config_log_checkpoint_and_grid(uninterrupted):
    run, summary = uninterrupted
    assert summary["step"] == 6 and summary["stop_reason"] == "steps"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["num_classes"] == 10 and cfg["model"]["image_channels"] == 1
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000006"
    assert (run / "samples" / "step_00000006.png").stat().st_size > 0


def test_resume_reaches_bitwise_identical_weights(uninterrupted, tmp_path):
    run, _ = uninterrupted
    part = tmp_path / "part"
    Trainer(_config(steps=3), part, progress=False).fit()  # stops after the step-3 checkpoint
    resumed = Trainer(_config(steps=6), part, resume=True, progress=False)
    assert resumed.step == 3
    resumed.fit()
    full_model, full_ema = _weights(run)
    part_model, part_ema = _weights(part)
    assert all(torch.equal(full_model[k], part_model[k]) for k in full_model)
    assert all(torch.equal(full_ema[k], part_ema[k]) for k in full_ema)
    steps = [json.loads(line)["step"] for line in (part / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 6]  # 3 ended the first process; no step is logged twice


@pytest.mark.parametrize("sampler,steps", [pytest.param("ddpm", TIMESTEPS, marks=pytest.mark.slow),  # full chain
                                           ("ddim", 5)])
def test_sample_cli_writes_grid_and_one_png_per_image(uninterrupted, tmp_path, sampler, steps):
    run, _ = uninterrupted
    out = tmp_path / sampler
    code = main(["sample", str(run), "--classes", "Trouser,9", "--n", "2", "--sampler", sampler,
                 "--steps", str(steps), "--cfg", "2", "--out", str(out), "--device", "cpu"])
    assert code == 0
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == ["00000_Trouser.png", "00001_Trouser.png", "00002_Ankle_boot.png", "00003_Ankle_boot.png"]
    assert (out / "grid.png").exists()


def test_sampling_is_reproducible_and_independent_of_batch_size(uninterrupted):
    from largo.sampling import generate_images

    run, _ = uninterrupted
    model = load_model(run)
    net, cfg, _ = model.net, model.cfg, model.class_names
    labels = torch.tensor([0, 1, 2, 3])
    a = generate_images(net, cfg, labels, [5, 6, 7, 8], sampler="ddim", steps=4, batch_size=4)
    b = generate_images(net, cfg, labels, [5, 6, 7, 8], sampler="ddim", steps=4, batch_size=3)
    assert torch.equal(a, b)


def test_cosine_lr_ends_with_the_time_budget(monkeypatch):
    """Under a time budget the cosine decay reaches zero where the budget runs out (estimated from the speed so
    far), not at a step count the budget never reaches; without a budget it ends at `steps`."""
    import largo.train.schedule as schedule

    clock = [1000.0]
    monkeypatch.setattr(schedule.time, "time", lambda: clock[0])
    s = schedule.LRSchedule(1e-3, warmup=10, kind="cosine", total_steps=100_000)
    assert s.lr_at(0) == pytest.approx(1e-4) and s.lr_at(9) == pytest.approx(1e-3, rel=1e-6)
    s.start_budget(0, deadline=1100.0)  # 100 s
    for step in range(1, 41):  # 2 steps per second
        clock[0] += 0.5
        s.observe(step)
    assert s.horizon == 40 + 2 * 80  # 80 s left at 2 steps/s
    assert s.lr_at(100) == pytest.approx(0.5e-3, rel=1e-6)  # halfway
    assert s.lr_at(200) == 0.0 and s.lr_at(250) == 0.0
    fixed = schedule.LRSchedule(1e-3, warmup=0, kind="cosine", total_steps=400)
    fixed.start_budget(0, deadline=float("inf"))
    fixed.observe(300)
    assert fixed.horizon == 400 and fixed.lr_at(200) == pytest.approx(0.5e-3)
    constant = schedule.LRSchedule(1e-3, warmup=0, kind="constant", total_steps=400)
    assert constant.lr_at(399) == 1e-3


def test_the_caller_injects_the_data_and_the_task(tmp_path):
    """`Trainer(data=, task=)`: the caller's images and network are trained, without touching any dataset (no
    data_root needed) or patching the library; a task that subclasses TrainTask gets the no-op hooks."""
    from largo.data import ImageSet
    from largo.train import DiffusionTask, TrainTask
    from largo.train.trainer import make_task

    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (32, 1, 16, 16), dtype=torch.uint8, generator=g), torch.arange(32) % 4,
                    ["a", "b", "c", "d"])
    cfg = tiny_config(steps=2, checkpoint_every=2)
    cfg.data.data_root = str(tmp_path / "nothing-here")

    class Counting(DiffusionTask):
        built = 0

        def build_net(self):
            Counting.built += 1
            return super().build_net()

    task = Counting(cfg, torch.device("cpu"))
    trainer = Trainer(cfg, tmp_path / "run", progress=False, data=data, task=task)
    assert trainer.task is task and Counting.built == 1 and trainer.class_names == ["a", "b", "c", "d"]
    assert trainer.cfg.model.num_classes == 4 and trainer.cfg.model.image_channels == 1
    assert trainer.fit()["step"] == 2
    assert type(make_task(cfg, torch.device("cpu"))) is DiffusionTask and TrainTask in DiffusionTask.__mro__

    class Minimal(TrainTask):  # only what has no default; the hooks are TrainTask's no-ops
        kind = "diffusion"

    hooks = Minimal()
    assert (hooks.meta(), hooks.state_dict(), hooks.setup(None, False), hooks.after_step(0, None),
            hooks.check_resume({}), hooks.load_state_dict(None)) == ({}, {}, None, None, None, None)


def test_epochs_set_the_length_of_a_run_whose_steps_is_0(tmp_path):
    """`epochs` counts passes over the training images (with `steps` 0; both set is refused, test_config.py)."""
    from largo.data import ImageSet

    data = ImageSet(torch.zeros(20, 1, 16, 16, dtype=torch.uint8), torch.arange(20) % 2, ["a", "b"])
    cfg = tiny_config(steps=0, epochs=2, batch_size=8, checkpoint_every=100, log_every=1)
    summary = Trainer(cfg, tmp_path / "run", progress=False, data=data).fit()
    assert summary["step"] == 5 and summary["stop_reason"] == "steps"  # ceil(2 · 20 / 8)
