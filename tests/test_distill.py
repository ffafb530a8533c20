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
from largo.diffusion.samplers import ImageNoise, sample
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
    assert (record["teacher_solver"], record["teacher_substeps"]) == ("dpmpp2m", 4)  # the default first teacher
    model = load_model(students)  # the run itself: the last (1-step) student
    assert model.meta["distill"]["steps"] == 1 and model.meta["distill"]["teacher_steps"] == 2
    assert (model.meta["distill"]["teacher_solver"], model.meta["distill"]["teacher_substeps"]) == ("ddim", 2)
    assert model.cfg.model.guidance_input and model.cfg.sample.sampler == "ddim"
    assert (model.cfg.sample.sample_steps, model.cfg.sample.cfg) == (1, 3.0)
    two = load_model(students, steps=2)
    assert two.meta["distill"]["steps"] == 2 and two.meta["distill"]["teacher"] == str(teacher)
    assert (two.meta["distill"]["teacher_solver"], two.meta["distill"]["teacher_substeps"]) == ("dpmpp2m", 4)
    assert two.meta["distill"]["teacher_steps"] == 8
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


def _toy_config():
    cfg = tiny_config()
    cfg.model = dataclasses.replace(cfg.model, image_channels=1, num_classes=2, input_size=16)
    cfg.diffusion = dataclasses.replace(cfg.diffusion, prediction="v")
    return cfg


def _toy_student_gap(tmp_path, monkeypatch, make_task):
    """Distil the point-mass toy teacher into a 1-step student (w drawn from [1, 5], 800 steps) with the task that
    `make_task(student_config, teacher)` builds; (mean, worst) absolute gap between the student's one DDIM step and
    the teacher's guided 2-step DDIM walk over w = 1, 3 and 5."""
    monkeypatch.setattr(Trainer, "sample_grid", lambda self, writer=None: None)
    cfg = _toy_config()
    settings = DistillSettings(1, 1, (1.0, 5.0), iters_per_round=800, batch_size=128, lr=1e-2, pool=512)
    scfg = student_config(cfg, settings, 1, "cpu", "fp32")
    scfg.train = dataclasses.replace(scfg.train, checkpoint_every=800, log_every=800, ema_decay=0.9, grad_clip=0.0)
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    teacher = ToyTeacher(schedule)
    pool = ImageSet(torch.tensor([-0.5, 0.5]).repeat(256).view(-1, 1, 1, 1), torch.arange(512) % 2, ["a", "b"])
    task = make_task(scfg, teacher)
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
    return mean, worst


def test_the_guided_student_reproduces_the_teachers_guided_ddim_steps_on_a_toy_problem(tmp_path, monkeypatch):
    """1 student DDIM step at w reproduces the teacher's 2 guided DDIM steps (clipped x0, outputs in [-1, 1]; data
    at ±0.5, w drawn from [1, 5]): mean absolute error <= 0.03 and every image within 0.1, at w = 1, 3 and 5."""
    mean, worst = _toy_student_gap(tmp_path, monkeypatch,
                                   lambda scfg, teacher: ToyTask(scfg, torch.device("cpu"), teacher, True,
                                                                 (1.0, 5.0), {"steps": 1}))
    assert mean <= 0.03 and worst <= 0.1, (mean, worst)


class GaussianTeacher(nn.Module):
    """v-prediction of the exact denoiser of class y ~ N(μ_y, s²) (1 pixel; the null class is class 0 too, so
    guidance changes nothing): the probability-flow ODE is solved in closed form, x_t'' = α''μ + (x_t − αμ) ·
    sqrt(α''²s² + σ''²) / sqrt(α²s² + σ²)."""

    num_classes, s = 2, 0.2

    def __init__(self, schedule: NoiseSchedule):
        super().__init__()
        self.abar = schedule.alphas_cumprod.to(torch.float64)
        self.anchor = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def mu(self, y):
        return torch.where(y == 1, 0.5, -0.5).to(torch.float64).view(-1, 1, 1, 1)

    def forward(self, x, t, y, guidance=None):
        a = self.abar[t.round().long()].view(-1, 1, 1, 1)
        alpha, sigma, mu = a.sqrt(), (1 - a).sqrt(), self.mu(y)
        x0 = mu + alpha * self.s**2 / (a * self.s**2 + 1 - a) * (x - alpha * mu)
        return (alpha * x - x0) / sigma


def _task(teacher_net, steps, solver, substeps, clip=False):
    cfg = _toy_config()
    scfg = student_config(cfg, DistillSettings(steps, steps, (1.0, 1.0), iters_per_round=1), steps, "cpu", "fp32")
    return DistillTask(scfg, torch.device("cpu"), teacher_net, clip, (1.0, 1.0), {"steps": steps}, solver=solver,
                       substeps=substeps)


def test_the_first_teachers_target_converges_to_the_ode_solution_with_its_substeps():
    """On a Gaussian toy problem whose ODE is solved in closed form, the x̃ of each of 4 student intervals
    approaches the exact one as the substeps grow: at second order with dpmpp2m (error / 16 from 8 to 32
    substeps), first order with ddim (/ 8 from 4 to 32). The last interval ends with a first-order step to σ = 0
    (x0 itself, as the sampler does), so only its convergence is checked. The default (dpmpp2m, 4 substeps) is
    closer than progressive distillation's two DDIM steps (the old first teacher) in every interval."""
    schedule = NoiseSchedule.from_config(_toy_config().diffusion)
    teacher = GaussianTeacher(schedule)
    y = torch.arange(64) % 2
    x = torch.randn(64, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    err = {}
    for solver, substeps in [("ddim", 2), ("ddim", 4), ("ddim", 32), ("dpmpp2m", 2), ("dpmpp2m", 4),
                             ("dpmpp2m", 8), ("dpmpp2m", 32)]:
        task = _task(teacher, 4, solver, substeps)
        err[solver, substeps] = []
        for i in range(4):
            a0, a2 = task.abar[substeps * i], task.abar[substeps * (i + 1)]
            x_t = a0.sqrt() * teacher.mu(y) + (1 - a0).sqrt() * x  # a point on the noisy marginal at t
            scale = ((a2 * teacher.s**2 + 1 - a2) / (a0 * teacher.s**2 + 1 - a0)).sqrt()
            landing = a2.sqrt() * teacher.mu(y) + scale * (x_t - a0.sqrt() * teacher.mu(y))
            ratio = (1 - a2).sqrt() / (1 - a0).sqrt()
            exact = (landing - ratio * x_t) / (a2.sqrt() - ratio * a0.sqrt())
            got = task.target(x_t, torch.full((64,), i), y, torch.ones(64))
            err[solver, substeps].append(float((got - exact).abs().max()))
    for i in range(4):
        e = {k: v[i] for k, v in err.items()}
        assert e["dpmpp2m", 2] > e["dpmpp2m", 4] > e["dpmpp2m", 8] > e["dpmpp2m", 32], (i, err)
        assert e["ddim", 2] > e["ddim", 4] > e["ddim", 32] and e["dpmpp2m", 4] < e["ddim", 2], (i, err)
        if i < 3:
            assert e["dpmpp2m", 8] / e["dpmpp2m", 32] > 12 and e["dpmpp2m", 32] < 1e-4, (i, err)  # second order
            assert 6 < e["ddim", 4] / e["ddim", 32] < 10, (i, err)  # first order
            assert e["dpmpp2m", 4] < e["ddim", 2] / 4, (i, err)
    assert err["dpmpp2m", 32][3] < 0.01, err


def test_a_one_step_students_dpmpp2m_teacher_is_the_teachers_own_sampler():
    """N = 1: the K substeps span the whole trajectory, so the target is `sample(..., "dpmpp2m", steps=K)` from the
    same noise, guided at w with x0 clipped (the point-mass toy teacher, whose x0 leaves [-1, 1] never)."""
    schedule = NoiseSchedule.from_config(_toy_config().diffusion)
    teacher = ToyTeacher(schedule)
    y = torch.arange(8) % 2
    for w in (1.0, 3.0):
        for substeps in (3, 5):
            task = _task(teacher, 1, "dpmpp2m", substeps, clip=True)
            x_T = ImageNoise(range(8), (1, 1, 1), "cpu").draw()
            got = task.target(x_T, torch.zeros(8, dtype=torch.long), y, torch.full((8,), w))
            ref = sample(Denoiser(teacher, schedule, "v", cfg_scale=w, num_classes=2), (8, 1, 1, 1), y,
                         sampler="dpmpp2m", steps=substeps, clip_x0=True)
            assert torch.allclose(got.float(), ref, atol=1e-5), (w, substeps, (got.float() - ref).abs().max())


def test_old_records_mean_the_plain_first_teacher(tmp_path):
    from largo.errors import LargoError
    from largo.train.distill import _open_out

    legacy = {"teacher": "t", "plan": [2, 1], "rounds": {"2": "rounds/steps-2"}, "minutes": {"2": 1.0}}
    (tmp_path / "distill.json").write_text(json.dumps(legacy))
    record = {"teacher": "t", "plan": [2, 1], "teacher_solver": "ddim", "teacher_substeps": 2}
    assert _open_out(tmp_path, record)["rounds"] == {"2": "rounds/steps-2"}
    with pytest.raises(LargoError, match="holds another distillation"):
        _open_out(tmp_path, {**record, "teacher_solver": "dpmpp2m", "teacher_substeps": 4})


def test_the_plain_first_teacher_and_a_reused_pool_through_the_cli(students, teacher, tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["distill", str(teacher), "--steps", "2", "--cfg", "3", "--teacher-solver", "ddim",
                 "--teacher-substeps", "2", "--pool-from", str(students), "--out", str(out), *TINY]) == 0
    assert "reused from" in capsys.readouterr().out
    record = json.loads((out / "distill.json").read_text())
    assert (record["teacher_solver"], record["teacher_substeps"]) == ("ddim", 2)
    assert record["pool_from"] == str(students)
    assert (out / "teacher_samples.pt").read_bytes() == (students / "teacher_samples.pt").read_bytes() or \
        all(torch.equal(a, b) for a, b in zip(torch.load(out / "teacher_samples.pt").values(),
                                              torch.load(students / "teacher_samples.pt").values()))
    meta = load_model(out, steps=2).meta["distill"]
    assert (meta["teacher_solver"], meta["teacher_substeps"], meta["teacher_steps"]) == ("ddim", 2, 4)
    bad = ["distill", str(teacher), "--steps", "2", "--cfg", "3", "--out", str(tmp_path / "bad"), *TINY]
    assert main([*bad, "--pool-from", str(students), "--pool", "4"]) == 2  # 8 samples in it, not 4
    err = capsys.readouterr().err.strip()
    assert "is not a pool of 4 teacher samples" in err and len(err.splitlines()) == 1


def test_distilling_on_the_teachers_dataset_samples_no_pool(teacher, tmp_path, capsys, monkeypatch):
    seen = []
    real_loss = DistillTask.loss

    def spy(self, model_fn, net, x, y, step, shard):
        seen.append(x.detach().clone())
        return real_loss(self, model_fn, net, x, y, step, shard)

    monkeypatch.setattr(DistillTask, "loss", spy)
    out = tmp_path / "on-data"
    assert main(["distill", str(teacher), "--steps", "2", "--to", "1", "--cfg", "3", "--data", "--out", str(out),
                 *TINY]) == 0
    assert not (out / "teacher_samples.pt").exists()  # nothing sampled from the teacher up front
    record = json.loads((out / "distill.json").read_text())
    assert record["data"] is True and set(record["rounds"]) == {"2", "1"}
    for steps in (2, 1):
        assert load_model(out, steps=steps).meta["distill"]["x0_from"] == "fashion_mnist"
    # the x0 the task saw are dataset images: uint8 levels scaled to [-1, 1], not a sampler's continuous output
    x = torch.cat(seen)
    assert len(seen) == 4 and torch.allclose((x + 1) * 127.5, ((x + 1) * 127.5).round(), atol=1e-4)
    # the same folder without --data is another distillation; --data with --pool-from, or --data-root alone, refused
    capsys.readouterr()
    again = ["distill", str(teacher), "--steps", "2", "--to", "1", "--cfg", "3", *TINY]
    assert main([*again, "--out", str(out)]) == 2
    assert "holds another distillation" in capsys.readouterr().err
    for extra in (["--data", "--pool-from", str(out)], ["--data-root", str(tmp_path)]):
        assert main([*again, *extra, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--data" in err
    assert not (tmp_path / "bad").exists()


def test_a_wider_student_starts_as_the_teacher_and_samples_like_any_run(teacher, tmp_path, capsys):
    net, tcfg, _, _ = load_network(teacher)
    settings = DistillSettings(2, 2, (3.0, 3.0), iters_per_round=2, width=2)
    scfg = student_config(tcfg, settings, 2, "cpu", "fp32")
    assert scfg.model.base_channels == 2 * tcfg.model.base_channels
    student = DistillTask(scfg, torch.device("cpu"), net, True, (3.0, 3.0), {}).build_net().eval()
    x, t, y = torch.randn(4, 1, 16, 16), torch.tensor([999.0, 500.0, 20.0, 0.0]), torch.tensor([0, 3, 9, 10])
    with torch.no_grad():
        assert torch.allclose(student(x, t, y, guidance=torch.tensor(3.0)), net(x, t, y), atol=1e-5)
    out = tmp_path / "wide"
    assert main(["distill", str(teacher), "--steps", "2", "--to", "1", "--cfg", "3", "--width", "2", "--out",
                 str(out), *TINY]) == 0
    assert json.loads((out / "distill.json").read_text())["width"] == 2
    for steps in (2, 1):  # the 1-step round's teacher is the wide 2-step student: same width, no widening
        assert load_model(out, steps=steps).cfg.model.base_channels == 2 * tcfg.model.base_channels
    assert main(["sample", str(out), "--n", "1", "--out", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    assert main(["distill", str(teacher), "--steps", "2", "--width", "5", "--out", str(tmp_path / "w5"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "--width" in err and len(err.splitlines()) == 1 and not (tmp_path / "w5").exists()


def test_consistency_distillation_through_the_cli_serves_every_step_count(teacher, students, tmp_path):
    out = tmp_path / "cd"
    assert main(["distill", str(teacher), "--steps", "2", "--to", "1", "--cfg", "3", "--method", "consistency",
                 "--cd-grid", "4", "--pool-from", str(students), "--out", str(out), *TINY]) == 0
    record = json.loads((out / "distill.json").read_text())
    assert record["method"] == "consistency" and record["cd_grid"] == 4 and set(record["minutes"]) == {"consistency"}
    assert record["rounds"] == {"2": "rounds/consistency", "1": "rounds/consistency"}
    for steps in (2, 1):
        model = load_model(out, steps=steps)
        assert model.meta["distill"]["method"] == "consistency" and model.meta["distill"]["step_counts"] == [2, 1]
        options = SamplingOptions.resolve(model.cfg, steps=steps)
        denoiser = make_denoiser(model.net, model.cfg, options)
        sample(denoiser, (2, 1, 16, 16), torch.tensor([0, 1]), sampler="ddim", steps=steps)
        assert denoiser.evaluations == 2 * steps
    assert main(["distill", str(teacher), "--steps", "4", "--to", "1", "--cfg", "3", "--method", "consistency",
                 "--cd-grid", "6", "--out", str(tmp_path / "bad"), *TINY]) == 2


def test_consistency_resume_mid_run_is_bit_exact_including_the_target_network(teacher, tmp_path):
    from largo.train.consistency_task import ConsistencyTask

    net, tcfg, _, _ = load_network(teacher)
    pool = ImageSet(torch.rand(8, 1, 16, 16) * 2 - 1, torch.arange(8) % 10, [str(i) for i in range(10)])

    def trainer(run, iters, resume=False):
        scfg = student_config(tcfg, DistillSettings(2, 1, (1.0, 5.0), iters, batch_size=4, pool=8), 1, "cpu", "fp32")
        scfg.train = dataclasses.replace(scfg.train, checkpoint_every=2)
        task = ConsistencyTask(scfg, torch.device("cpu"), net, True, (1.0, 5.0), {"steps": 1, "teacher": "t"},
                               grid_steps=4, target_decay=0.5, step_counts=(2, 1))
        return Trainer(scfg, run, resume=resume, progress=False, data=pool, task=task), task

    full, full_task = trainer(tmp_path / "full", 4)
    full.fit()
    trainer(tmp_path / "part", 2)[0].fit()
    resumed, task = trainer(tmp_path / "part", 4, resume=True)
    assert resumed.step == 2
    resumed.fit()
    for a, b in zip(_weights(tmp_path / "full"), _weights(tmp_path / "part")):
        assert all(torch.equal(a[k], b[k]) for k in a)
    full_target, part_target = full_task.target_net.state_dict(), task.target_net.state_dict()
    assert all(torch.equal(full_target[k], part_target[k]) for k in full_target)
    assert not all(torch.equal(full_target[k], full.net.state_dict()[k]) for k in full_target)  # θ⁻ lags θ


def test_the_consistency_student_reproduces_the_teachers_ode_on_a_toy_problem(tmp_path, monkeypatch):
    """Consistency distillation on the point-mass toy problem (w drawn from [1, 5]): the student's one DDIM step at
    w lands where the teacher's DDIM walk over the whole 2-point grid does (one bootstrapped interval and the
    boundary one): mean absolute error <= 0.03 and every image within 0.1, at w = 1, 3 and 5. (On a 4-point grid
    the same 800 steps leave a mean error of 0.16: consistency distillation converges slowly, see DISTILL.md.)"""
    from largo.train.consistency_task import ConsistencyTask

    class ToyCD(ConsistencyTask):
        build_net, grid = ToyTask.build_net, ToyTask.grid

    mean, worst = _toy_student_gap(tmp_path, monkeypatch,
                                   lambda scfg, teacher: ToyCD(scfg, torch.device("cpu"), teacher, True, (1.0, 5.0),
                                                               {"steps": 1}, grid_steps=2, target_decay=0.9))
    assert mean <= 0.03 and worst <= 0.1, (mean, worst)


class ExactConsistency(nn.Module):
    """The Gaussian toy's exact consistency function (the ODE's endpoint from (x, t)), as a v-prediction; `shift`
    evaluates it at the wrong time (t + shift)."""

    guidance_embed = None

    def __init__(self, teacher: GaussianTeacher, shift: int = 0):
        super().__init__()
        self.teacher, self.shift = teacher, shift
        self.anchor = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x, t, y, guidance=None):
        a = self.teacher.abar[(t.round().long() + self.shift).clamp(max=999)].view(-1, 1, 1, 1)
        s, mu = self.teacher.s, self.teacher.mu(y)
        x0 = mu + s / (a * s**2 + 1 - a).sqrt() * (x.double() - a.sqrt() * mu)
        return (a.sqrt() * x - x0) / (1 - a).sqrt()


def test_the_exact_consistency_function_is_the_fixed_point_of_the_consistency_loss():
    """On the Gaussian toy (ODE in closed form), the loss of the exact consistency function is only the teacher's
    one-DDIM-step error: it vanishes as the grid is refined (4 → 32 points), and the same function evaluated 50
    timesteps off scores far worse."""
    from largo.train.consistency_task import ConsistencyTask

    cfg = _toy_config()
    teacher = GaussianTeacher(NoiseSchedule.from_config(cfg.diffusion))
    scfg = student_config(cfg, DistillSettings(1, 1, (1.0, 1.0), iters_per_round=1), 1, "cpu", "fp32")
    x, y = torch.tensor([-0.5, 0.5], dtype=torch.float64).repeat(256).view(-1, 1, 1, 1), torch.arange(512) % 2
    losses = {}
    for grid in (4, 32):
        task = ConsistencyTask(scfg, torch.device("cpu"), teacher, False, (1.0, 1.0), {"steps": 1},
                               grid_steps=grid, target_decay=0.0)
        for shift in (0, 50):
            student = ExactConsistency(teacher, shift)
            task.setup(student, False)
            torch.manual_seed(0)
            losses[grid, shift] = float(task.loss(student, student, x, y, 0, (0, 1)))
    assert losses[32, 0] < 1e-5 and losses[32, 0] < losses[4, 0] / 100, losses
    assert losses[32, 50] > 4 * losses[32, 0], losses


def _weights(run):
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    return load_file(ckpt / "model.safetensors"), load_file(ckpt / "ema.safetensors")


@pytest.mark.parametrize("solver, substeps, reuse", [("ddim", 2, 1), ("dpmpp2m", 3, 1), ("dpmpp2m", 3, 2)])
def test_resume_mid_round_reaches_bitwise_identical_weights(teacher, tmp_path, solver, substeps, reuse):
    net, tcfg, _, _ = load_network(teacher)
    pool = ImageSet(torch.rand(8, 1, 16, 16) * 2 - 1, torch.arange(8) % 10, [str(i) for i in range(10)])

    def trainer(run, iters, resume=False):
        scfg = student_config(tcfg, DistillSettings(2, 2, (1.0, 5.0), iters, batch_size=4, pool=8), 2, "cpu", "fp32")
        scfg.train = dataclasses.replace(scfg.train, checkpoint_every=2)
        task = DistillTask(scfg, torch.device("cpu"), net, True, (1.0, 5.0), {"steps": 2, "teacher": "t"},
                           solver=solver, substeps=substeps, reuse=reuse)
        return Trainer(scfg, run, resume=resume, progress=False, data=pool, task=task)

    trainer(tmp_path / "full", 4).fit()
    trainer(tmp_path / "part", 2).fit()
    resumed = trainer(tmp_path / "part", 4, resume=True)
    assert resumed.step == 2
    resumed.fit()
    for full, part in zip(_weights(tmp_path / "full"), _weights(tmp_path / "part")):
        assert all(torch.equal(full[k], part[k]) for k in full)


def test_reuse_asks_the_teacher_for_a_fraction_of_each_batch_and_trains_on_banked_targets(teacher):
    net, tcfg, _, _ = load_network(teacher)
    scfg = student_config(tcfg, DistillSettings(2, 2, (1.0, 5.0), 3, batch_size=8, pool=8, reuse=4), 2, "cpu", "fp32")
    task = DistillTask(scfg, torch.device("cpu"), net, True, (1.0, 5.0), {"steps": 2, "teacher": "t"},
                       solver="dpmpp2m", substeps=3, reuse=4)
    teacher_batches, student_inputs, target = [], [], task.target
    task.target = lambda x_t, i, y, w: teacher_batches.append(len(i)) or target(x_t, i, y, w)
    student = task.build_net()

    def model_fn(x, t, y, guidance):
        student_inputs.append(x.detach().clone())
        return student(x, t, y, guidance=guidance)

    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 16, 16) * 2 - 1, torch.arange(8) % 10
    for step in range(3):
        assert torch.isfinite(task.loss(model_fn, student, x, y, step, (0, 1)))
    assert teacher_batches == [8, 2, 2]  # a whole batch to fill the bank, then B / reuse fresh pairs a step
    assert task.banked == 12 and len(task.bank["i"]) == 8 * 8  # 12 of the ring's 64 slots filled, next one 12
    bank = {k: v[:12] for k, v in task.bank.items()}
    for inputs in student_inputs:  # the student trains on banked pairs: each input row is one of the bank's
        assert len(inputs) == 8 and all((bank["x_t"] == row).flatten(1).all(1).any() for row in inputs)
    assert len(torch.cat(student_inputs[1:]).unique(dim=0)) > 2  # drawn from the whole bank, not the fresh pairs only
    again = target(bank["x_t"].double(), bank["i"], bank["y"], bank["w"]).float()  # banked x̃: the teacher's target
    assert torch.allclose(again, bank["x_tilde"], atol=1e-4)
    state = task.state_dict()
    assert state["banked"] == 12 and torch.equal(state["bank"]["x_tilde"], task.bank["x_tilde"])


def test_reuse_is_recorded_and_part_of_the_distillations_identity(teacher, tmp_path):
    out = tmp_path / "reuse"
    cmd = ["distill", str(teacher), "--steps", "2", "--cfg", "3", "--reuse", "2", "--out", str(out), *TINY]
    assert main(cmd) == 0
    assert json.loads((out / "distill.json").read_text())["reuse"] == 2
    assert load_model(out).meta["distill"]["reuse"] == 2
    assert main([*cmd, "--reuse", "1"]) == 2  # another distillation: its targets were not drawn the same way


def test_rerunning_the_command_continues_and_keeps_finished_rounds(students, teacher, capsys):
    before = json.loads((students / "distill.json").read_text())
    assert main(["distill", str(teacher), "--steps", "2", "--to", "1", "--cfg", "3", "--out", str(students),
                 *TINY]) == 0
    assert json.loads((students / "distill.json").read_text()) == before
    assert "1-step student" in capsys.readouterr().out


def test_a_smaller_to_adds_halving_rounds_and_keeps_the_finished_ones(teacher, tmp_path):
    out = tmp_path / "out"
    cmd = ["distill", str(teacher), "--steps", "2", "--cfg", "3", "--teacher-substeps", "3", "--out", str(out), *TINY]
    assert main(cmd) == 0
    before, first = json.loads((out / "distill.json").read_text()), _weights(out / "rounds" / "steps-2")
    assert main([*cmd, "--to", "1"]) == 0
    record = json.loads((out / "distill.json").read_text())
    assert record["plan"] == [2, 1] and set(record["rounds"]) == {"2", "1"}
    assert record["minutes"]["2"] == before["minutes"]["2"]  # the 2-step round was kept, not trained again
    for a, b in zip(first, _weights(out / "rounds" / "steps-2")):
        assert all(torch.equal(a[k], b[k]) for k in a)
    meta = load_model(out).meta["distill"]
    assert meta["steps"] == 1 and meta["teacher"] == "out/rounds/steps-2" and meta["teacher_solver"] == "ddim"
    assert main([*cmd, "--to", "1", "--teacher-substeps", "4"]) == 2  # other settings: another distillation
    assert main(["distill", str(teacher), "--steps", "4", "--cfg", "3", "--teacher-substeps", "3", "--out",
                 str(out), *TINY]) == 2  # [4] does not start with [2, 1]


@pytest.mark.parametrize("args, message", [
    (["--steps", "3"], "--steps must be a power of two"),
    (["--steps", "2", "--to", "4"], "rounds halve the steps"),
    (["--steps", "2", "--cfg", "0.5"], "guidance range"),
    (["--steps", "2", "--out", "EXISTING"], "not a distillation run"),
    (["--steps", "4", "--out", "STUDENTS"], "holds another distillation"),
    (["--steps", "2", "--reuse", "3"], "divide the batch size 4"),
    (["--steps", "2", "--method", "consistency", "--reuse", "2"], "takes no --reuse"),
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
