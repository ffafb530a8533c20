"""`largo distill`: a tiny teacher distilled through the CLI and sampled, the guided student reproducing the
teacher's guided DDIM steps on a toy problem, bit-exact resume, the w input starting as the identity, one-line
errors."""

import dataclasses
import json

import pytest
import torch
from helpers import tiny_config
from safetensors.torch import load_file
from torch import nn

from largo.cli import main
from largo.data import ImageSet
from largo.diffusion.denoiser import Denoiser
from largo.diffusion.samplers import sample
from largo.diffusion.schedules import NoiseSchedule
from largo.models import build_unet
from largo.sampling import load_model
from largo.sampling.generate import make_denoiser
from largo.sampling.guide import load_network
from largo.sampling.options import SamplingOptions
from largo.train.distill import DistillSettings, student_config
from largo.train.distill_task import DistillTask
from largo.train.trainer import Trainer

TINY = ["--iters-per-round", "2", "--pool", "8", "--pool-steps", "2", "--batch-size", "4", "--quiet"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_root):
    run = tmp_path_factory.mktemp("teacher")
    Trainer(tiny_config(steps=2, checkpoint_every=2), run, progress=False).fit()
    return run


@pytest.fixture(scope="module")
def students(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("distilled") / "out"
    assert main(["distill", str(teacher), "--steps", "2", "--to", "1", "--cfg", "3", "--out", str(out), *TINY]) == 0
    return out


def test_distill_through_the_cli_writes_a_run_that_samples_in_one_pass_per_step(students, teacher, tmp_path):
    record = json.loads((students / "distill.json").read_text())
    assert record["teacher"] == str(teacher) and record["plan"] == [2, 1] and record["cfg_range"] == [3.0, 3.0]
    assert set(record["rounds"]) == {"2", "1"} and all(m >= 0 for m in record["minutes"].values())
    model = load_model(students)  # the run itself: the last (1-step) student
    assert model.meta["distill"]["steps"] == 1 and model.meta["distill"]["teacher_steps"] == 2
    assert model.cfg.model.guidance_input and model.cfg.sample.sampler == "ddim"
    assert (model.cfg.sample.sample_steps, model.cfg.sample.cfg) == (1, 3.0)
    two = load_model(students, steps=2)
    assert two.meta["distill"]["steps"] == 2 and two.meta["distill"]["teacher"] == str(teacher)
    assert two.meta["distill"] != model.meta["distill"]
    options = SamplingOptions.resolve(two.cfg)
    denoiser = make_denoiser(two.net, two.cfg, options)
    sample(denoiser, (3, 1, 16, 16), torch.tensor([0, 1, 2]), sampler="ddim", steps=options.steps)
    assert denoiser.evaluations == 3 * 2  # guided, yet one forward pass per image and step
    assert main(["sample", str(students), "--n", "1", "--steps", "2", "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "grid.png").stat().st_size > 0


def test_the_w_input_starts_as_the_identity(teacher):
    net, cfg, _, _ = load_network(teacher)
    student = build_unet(dataclasses.replace(cfg.model, guidance_input=True), cfg.net_size)
    missing, unexpected = student.load_state_dict(net.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("guidance_embed.") for k in missing)
    x, t, y = torch.randn(4, 1, 16, 16), torch.tensor([999.0, 500.0, 20.0, 0.0]), torch.tensor([0, 3, 9, 10])
    with torch.no_grad():
        assert torch.equal(student.eval()(x, t, y, guidance=torch.tensor([1.0, 3.0, 5.0, 7.0])), net(x, t, y))


class ToyTeacher(nn.Module):
    """v-prediction of the exact denoiser of two classes, each a point mass at ±0.5 (1 pixel), with the null class
    their mixture: the guided DDIM walk is a smooth, known function of the noise."""

    num_classes = 2

    def __init__(self, schedule: NoiseSchedule):
        super().__init__()
        self.abar = schedule.alphas_cumprod.float()
        self.anchor = nn.Parameter(torch.zeros(1))  # a parameter for its dtype and device

    def forward(self, x, t, y, guidance=None):
        a = self.abar[t.round().long()].view(-1, 1, 1, 1)
        alpha, sigma = a.sqrt(), (1 - a).sqrt()
        mu = torch.tensor([-0.5, 0.5])
        logits = -(x.view(-1, 1) - alpha.view(-1, 1) * mu) ** 2 / (2 * sigma.view(-1, 1) ** 2)
        mixture = (logits.softmax(-1) * mu).sum(-1).view(-1, 1, 1, 1)
        x0 = torch.where((y < 2).view(-1, 1, 1, 1), mu[y.clamp(max=1)].view(-1, 1, 1, 1), mixture)
        return (alpha * x - x0) / sigma


class ToyStudent(nn.Module):
    """An MLP of (x_t, t, w, class) with the U-Net's call signature and a `guidance_embed` (a w-input net)."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.guidance_embed = nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(6, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 1))

    def forward(self, x, t, y, guidance=None):
        w = torch.ones_like(t) if guidance is None else guidance.expand(t.shape[0])
        feats = torch.stack([x.flatten(1)[:, 0], t / 1000, w / 5, (y == 0).float(), (y == 1).float(),
                             torch.ones_like(t)], 1)
        return self.mlp(feats).view_as(x)


class ToyTask(DistillTask):
    def build_net(self):
        torch.manual_seed(0)
        return ToyStudent()

    def grid(self, ema_net, class_names):
        return None


def test_the_guided_student_reproduces_the_teachers_guided_ddim_steps_on_a_toy_problem(tmp_path, monkeypatch):
    """1 student DDIM step at w reproduces the teacher's 2 guided DDIM steps (clipped x0, outputs in [-1, 1]; data
    at ±0.5, w drawn from [1, 5]): mean absolute error <= 0.03 and every image within 0.1, at w = 1, 3 and 5."""
    monkeypatch.setattr(Trainer, "sample_grid", lambda self, writer=None: None)
    cfg = tiny_config()
    cfg.model = dataclasses.replace(cfg.model, image_channels=1, num_classes=2, input_size=16)
    cfg.diffusion = dataclasses.replace(cfg.diffusion, prediction="v")
    settings = DistillSettings(1, 1, (1.0, 5.0), iters_per_round=800, batch_size=128, lr=1e-2, pool=512)
    scfg = student_config(cfg, settings, 1, "cpu", "fp32")
    scfg.train = dataclasses.replace(scfg.train, checkpoint_every=800, log_every=800, ema_decay=0.9,
                                       grad_clip=0.0)
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    teacher = ToyTeacher(schedule)
    pool = ImageSet(torch.tensor([-0.5, 0.5]).repeat(256).view(-1, 1, 1, 1), torch.arange(512) % 2, ["a", "b"])
    task = ToyTask(scfg, torch.device("cpu"), teacher, True, (1.0, 5.0), {"steps": 1})
    trainer = Trainer(scfg, tmp_path / "toy", progress=False, data=pool, task=task)
    trainer.fit()
    student = trainer.ema.net.eval()
    worst, mean = 0.0, 0.0
    for w in (1.0, 3.0, 5.0):
        y = torch.arange(64) % 2
        ref = sample(Denoiser(teacher, schedule, "v", cfg_scale=w, num_classes=2), (64, 1, 1, 1), y,
                     sampler="ddim", steps=2, clip_x0=True)
        got = sample(Denoiser(student, schedule, "v", cfg_scale=w, num_classes=2), (64, 1, 1, 1), y,
                     sampler="ddim", steps=1)
        worst, mean = max(worst, float((got - ref).abs().max())), max(mean, float((got - ref).abs().mean()))
    assert mean <= 0.03 and worst <= 0.1, (mean, worst)


def _weights(run):
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    return load_file(ckpt / "model.safetensors"), load_file(ckpt / "ema.safetensors")


def test_resume_mid_round_reaches_bitwise_identical_weights(teacher, tmp_path):
    net, tcfg, _, _ = load_network(teacher)
    pool = ImageSet(torch.rand(8, 1, 16, 16) * 2 - 1, torch.arange(8) % 10, [str(i) for i in range(10)])

    def trainer(run, iters, resume=False):
        scfg = student_config(tcfg, DistillSettings(2, 2, (1.0, 5.0), iters, batch_size=4, pool=8), 2, "cpu", "fp32")
        scfg.train = dataclasses.replace(scfg.train, checkpoint_every=2)
        task = DistillTask(scfg, torch.device("cpu"), net, True, (1.0, 5.0), {"steps": 2, "teacher": "t"})
        return Trainer(scfg, run, resume=resume, progress=False, data=pool, task=task)

    trainer(tmp_path / "full", 4).fit()
    trainer(tmp_path / "part", 2).fit()
    resumed = trainer(tmp_path / "part", 4, resume=True)
    assert resumed.step == 2
    resumed.fit()
    for full, part in zip(_weights(tmp_path / "full"), _weights(tmp_path / "part")):
        assert all(torch.equal(full[k], part[k]) for k in full)


def test_rerunning_the_command_continues_and_keeps_finished_rounds(students, teacher, capsys):
    before = json.loads((students / "distill.json").read_text())
    assert main(["distill", str(teacher), "--steps", "2", "--to", "1", "--cfg", "3", "--out", str(students),
                 *TINY]) == 0
    assert json.loads((students / "distill.json").read_text()) == before
    assert "1-step student" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--steps", "3"], "--steps must be a power of two"),
    (["--steps", "2", "--to", "4"], "rounds halve the steps"),
    (["--steps", "2", "--cfg", "0.5"], "guidance range"),
    (["--steps", "2", "--out", "EXISTING"], "not a distillation run"),
    (["--steps", "4", "--out", "STUDENTS"], "holds another distillation"),
])
def test_one_line_errors(args, message, teacher, students, tmp_path, capsys):
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "notes.txt").write_text("mine")
    where = {"EXISTING": str(tmp_path / "existing"), "STUDENTS": str(students)}
    args = [where.get(a, a) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "new")]
    assert main(["distill", str(teacher), *args, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unknown_teacher_and_student_teacher_are_one_line_errors(students, tmp_path, capsys):
    assert main(["distill", "no-such-model", "--steps", "2", "--out", str(tmp_path / "a"), *TINY]) == 2
    assert "no run, checkpoint or released checkpoint named no-such-model" in capsys.readouterr().err
    assert main(["distill", str(students), "--steps", "2", "--out", str(tmp_path / "b"), *TINY]) == 2
    assert "already a distilled student" in capsys.readouterr().err


def test_the_playground_offers_the_students_step_counts(students):
    from largo.serve.catalog import ModelCache, discover

    entry = discover(students.parent, released=False)["out"]
    assert entry.describe()["step_choices"] == [2, 1] and entry.describe()["defaults"]["steps"] == 1
    cache = ModelCache(torch.device("cpu"))
    assert cache.model(entry, 2).meta["distill"]["steps"] == 2
    assert cache.model(entry, 1).meta["distill"]["steps"] == cache.model(entry, 7).meta["distill"]["steps"] == 1


def test_the_student_is_trained_on_the_samplers_own_grid():
    from largo.errors import LargoError
    from largo.train.distill_task import nested_grid

    schedule = NoiseSchedule.make("linear", 1000)
    for steps in (1, 2, 4, 8, 16, 32):
        fine, abar = nested_grid(schedule, steps, "trailing")
        assert torch.equal(fine[::2], schedule.timesteps(steps, "trailing")) and abar[-1] == 1.0
    with pytest.raises(LargoError, match="nested grids"):
        nested_grid(schedule, 4, "leading")
