"""Issue 24, your own small dataset: fine-tuning with remapped classes, non-leaking augmentation, evaluation while
training (bit-exact resume), post-hoc EMA."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from helpers import tiny_config
from largo.checkpoint import latest_checkpoint
from largo.cli import main
from largo.data import load_images
from largo.data.augment import AUG_DIM, apply_augment, augment, draw_labels
from largo.errors import LargoError
from largo.models import build_unet
from largo.train import finetune, phema
from largo.train.monitor import TrainingEval
from largo.train.run import new_run_config
from largo.train.trainer import Trainer


def _weights(run, name="model.safetensors"):
    return load_file(str(latest_checkpoint(run) / name))


def _gray_folder(root, classes, per_class=6, side=16):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), "L").save(root / c / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def small_reference(monkeypatch):
    """The judge's reference is 2,000 held-out images; 200 keep these tests fast and test the same code."""
    from largo.train import monitor

    monkeypatch.setattr(monitor, "REFERENCE_N", 200)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, data_root):
    run = tmp_path_factory.mktemp("source")
    Trainer(tiny_config(steps=2, checkpoint_every=2), run, progress=False).fit()
    return run


# -- 1. fine-tuning ------------------------------------------------------------------------------------------
def test_remap_keeps_matching_rows_draws_new_ones_among_the_old_and_drops_the_rest():
    table = torch.randn(41, 64, generator=torch.Generator().manual_seed(1))  # 40 classes and the null row
    old = ["T-shirt", "Bag"] + [f"c{i}" for i in range(38)]
    out, report = finetune.remap_classes(table, old, ["bag", "new", "t_shirt", "other"], seed=0)
    assert torch.equal(out[[0, 2, 4]], table[[1, 0, 40]])  # kept rows, and the null row last
    assert report == {"kept": ["bag", "t_shirt"], "new": ["new", "other"], "dropped": old[2:]}
    new = out[[1, 3]]
    assert not torch.equal(new[0], new[1])  # two new classes can be told apart from the first step
    centre = table[:40].mean(0)  # as far from the classes' centre as the old classes are
    ratio = (new - centre).norm(dim=1) / (table[:40] - centre).norm(dim=1).mean()
    assert ((ratio > 0.7) & (ratio < 1.3)).all(), ratio
    again, _ = finetune.remap_classes(table, old, ["bag", "new", "t_shirt", "other"], seed=0)
    assert torch.equal(out, again)  # seeded: the online network and the EMA get the same new rows


def test_fine_tuning_loads_weights_and_ema_with_classes_remapped(source_run, tmp_path):
    folder = _gray_folder(tmp_path / "data", ["Trouser", "cat", "sneaker"])
    cfg = tiny_config(steps=1)
    cfg.data = dataclasses.replace(cfg.data, dataset=f"folder:{folder}", data_root="")
    cfg.train = dataclasses.replace(cfg.train, init_from=str(source_run))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    src_model, src_ema = _weights(source_run), _weights(source_run, "ema.safetensors")
    for net, src in ((trainer.net, src_model), (trainer.ema.net, src_ema)):
        state = net.state_dict()
        rows, got = src["class_embed.weight"], state["class_embed.weight"]
        assert torch.equal(got[[0, 2, 3]], rows[[1, 7, 10]]) and not any(torch.equal(got[1], r) for r in rows)
        assert all(torch.equal(state[k], v) for k, v in src.items() if k != "class_embed.weight")
    trainer.fit()
    event = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert event["event"] == "init_from" and event["kept"] == ["Trouser", "sneaker"] and event["new"] == ["cat"]
    assert len(event["dropped"]) == 8


def test_the_cli_takes_the_source_network_and_refuses_another_resolution_in_one_line(source_run, tmp_path, capsys):
    cfg = new_run_config("finetune", overrides={"init_from": str(source_run), "dataset": "mnist"})
    assert cfg.data.resolution == 16 and cfg.model.base_channels == 32 and cfg.model.channel_mult == (1, 2)
    assert cfg.train.lr == 2e-4  # the finetune preset's
    code = main(["train", "--preset", "finetune", "--init-from", str(source_run), "--resolution", "32",
                 "--steps", "1", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "resolution" in err and "16" in err, err
    folder = tmp_path / "rgb"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (i * 40, 10, 200)).save(folder / c / f"{i}.png")
    cfg = tiny_config(steps=1)
    cfg.data = dataclasses.replace(cfg.data, dataset=f"folder:{folder}", data_root="")
    cfg.train = dataclasses.replace(cfg.train, init_from=str(source_run))
    with pytest.raises(LargoError, match="same channel count"):
        Trainer(cfg, tmp_path / "rgb-run", progress=False)


# -- 2. non-leaking augmentation ---------------------------------------------------------------------------------
def test_augmentation_labels_say_what_was_done_and_zeros_mean_none():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 16, 16) * 2 - 1
    assert torch.equal(apply_augment(x, torch.zeros(64, AUG_DIM, dtype=torch.float64)), x)
    none, labels = augment(x, 0.0, g)
    assert torch.equal(none, x) and not labels.any()
    out, labels = augment(x, 1.0, g)
    assert labels.shape == (64, AUG_DIM) and labels[:, 5].abs().min() > 0  # every image scaled, etc.
    assert not torch.allclose(out, x)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    full = draw_labels(8, 0.5, g1, 1)
    assert torch.equal(augment(torch.zeros(4, 1, 8, 8), 0.5, g2, shard=(1, 2))[1], full[1::2].float())


def test_oriented_data_gets_no_mirrors_or_quarter_turns_and_the_same_stream():
    """hflip off (digits): x-flips and 90° turns never drawn; the other transforms and the generator's stream are
    what they would be with them."""
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    free, oriented = draw_labels(512, 1.0, g1, 1), draw_labels(512, 1.0, g2, 1, mirror=False)
    assert free[:, 0].any() and free[:, 1:3].any() and not oriented[:, :3].any()
    assert torch.equal(free[:, 3:], oriented[:, 3:]) and torch.equal(g1.get_state(), g2.get_state())


@pytest.mark.parametrize("hflip", [True, False])
def test_the_network_sees_augmentation_only_in_training_and_none_when_sampling(tmp_path, data_root, monkeypatch,
                                                                                hflip):
    cfg = tiny_config(steps=2, checkpoint_every=2)
    cfg.data = dataclasses.replace(cfg.data, augment=1.0, hflip=hflip)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert cfg.model.augment_dim == AUG_DIM
    seen = []
    forward = type(trainer.net).forward

    def spy(self, x, t, y=None, augment_labels=None):
        seen.append(augment_labels)
        return forward(self, x, t, y, augment_labels)

    monkeypatch.setattr(type(trainer.net), "forward", spy)
    trainer.fit()  # two training steps, then the final sample grid
    training, sampling = seen[:2], seen[2:]
    assert all(a is not None and a.shape[1] == AUG_DIM for a in training) and any(a.any() for a in training)
    assert torch.cat(training)[:, :3].any() == hflip  # x-flips and quarter turns only where the run mirrors
    assert sampling and all(a is None for a in sampling)
    net = build_unet(cfg.model, 16).eval()
    x, t, y = torch.randn(2, 1, 16, 16), torch.tensor([10, 500]), torch.tensor([1, 2])
    assert torch.equal(net(x, t, y), net(x, t, y, augment_labels=torch.zeros(2, AUG_DIM)))
    assert not torch.allclose(net.embed(t, y), net.embed(t, y, torch.ones(2, AUG_DIM)))


# -- 3. evaluation while training; resume stays bit-exact -------------------------------------------------------
def _eval_config(**train):
    cfg = tiny_config(**{"steps": 6, "checkpoint_every": 3, **train})
    cfg.data = dataclasses.replace(cfg.data, resolution=28, subset=200, augment=0.3)  # judged by the 32-px classifier
    cfg.model = dataclasses.replace(cfg.model, attention_resolutions=(14,))
    return cfg


@pytest.mark.slow
def test_evaluation_while_training_logs_keeps_best_and_leaves_resume_bit_exact(tmp_path, data_root, capsys):
    plain = tmp_path / "plain"
    Trainer(_eval_config(), plain, progress=False).fit()
    full = tmp_path / "full"
    Trainer(_eval_config(eval_every=2, eval_n=20, phema_every=2), full, progress=False).fit()
    part = tmp_path / "part"
    Trainer(_eval_config(steps=3, eval_every=2, eval_n=20, phema_every=2), part, progress=False).fit()
    Trainer(_eval_config(eval_every=2, eval_n=20, phema_every=2), part, resume=True, progress=False).fit()
    for name in ("model.safetensors", "ema.safetensors"):
        reference = _weights(plain, name)
        for run in (full, part):
            assert all(torch.equal(reference[k], v) for k, v in _weights(run, name).items()), (run, name)
    # three evaluating Trainers, one judge pass over the reference images at most: the rest come from the cache
    assert capsys.readouterr().out.count("computing reference features") <= 1
    evals = [json.loads(ln) for ln in (full / "log.jsonl").read_text().splitlines() if '"eval"' in ln]
    assert [e["step"] for e in evals] == [2, 4, 6]
    assert all(0 <= e["accuracy"] <= 1 and e["fd"] > 0 and 0 <= e["memorised"] <= 1 for e in evals)
    assert evals[0]["judge"].startswith("classifier:fashion_mnist-32")
    best = json.loads((full / "checkpoints" / "best" / "meta.json").read_text())["best"]
    assert best["metric"] == "fd" and best["value"] == min(e["fd"] for e in evals)
    assert latest_checkpoint(full).name == "step_00000006"
    windows = [json.loads(ln) for ln in (full / "log.jsonl").read_text().splitlines() if '"loss"' in ln]
    assert all(w["eta_min"] >= 0 for w in windows)  # the ETA, evaluations included, is logged
    assert sorted(p.name for p in (full / "phema").iterdir())[:2] == ["phema-00000002-0.050.safetensors",
                                                                      "phema-00000002-0.100.safetensors"]
    assert [e["step"] for e in (json.loads(ln) for ln in (part / "log.jsonl").read_text().splitlines())
            if e.get("event") == "eval"] == [2, 3, 4, 6]  # 3: the end of the first process


def test_evaluation_on_a_small_folder_says_its_held_out_set_is_small(tmp_path):
    folder = _gray_folder(tmp_path / "data", ["a", "b"], per_class=30)  # 60 images: 3 held out (5 %)
    cfg = tiny_config(eval_n=4)
    cfg.data = dataclasses.replace(cfg.data, dataset=f"folder:{folder}", data_root="", resolution=16, hflip=False)
    cfg.model = dataclasses.replace(cfg.model, num_classes=2)
    lines: list[str] = []
    TrainingEval(cfg, load_images(cfg.data.dataset, "train", 16), torch.device("cpu"), log=lines.append)
    note = [ln for ln in lines if "held-out images" in ln]
    assert len(note) == 1 and "compares with 3 held-out images" in note[0] and "--ref-split all`" in note[0]


@pytest.mark.slow
def test_report_draws_the_evaluations_and_ema_lengths_sample(tmp_path, data_root):
    run = tmp_path / "run"
    Trainer(_eval_config(steps=4, eval_every=2, eval_n=20, phema_every=1), run, progress=False).fit()
    assert main(["report", str(run), "--n", "1", "--steps", "2", "--device", "cpu"]) == 0
    page = (run / "report" / "index.html").read_text()
    assert 'id="evaluation"' in page and "checkpoints/best: step" in page
    assert main(["ema", str(run), "--length", "0.05,0.2"]) == 0
    assert main(["sample", str(run / "phema" / "ema-0.200"), "--n", "1", "--steps", "2", "--out",
                 str(tmp_path / "s"), "--device", "cpu"]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "x"), "--ema-length", "0.1"]) == 0


# -- 4. post-hoc EMA ----------------------------------------------------------------------------------------------
def test_sigma_rel_and_exponent_are_inverse():
    for s in (0.01, 0.05, 0.1, 0.2):
        assert phema.sigma_rel(phema.exponent(s)) == pytest.approx(s, rel=1e-9)
    assert phema.exponent(0.05) == pytest.approx(16.97, abs=0.01) and phema.exponent(0.1) == pytest.approx(6.94, abs=0.01)


def test_post_hoc_ema_reconstructs_a_profile_it_never_tracked(tmp_path):
    """A toy 'network' whose weights follow a known path: the EMA of length 0.15 rebuilt from the 0.05/0.10
    snapshots matches the one tracked directly, far closer than either tracked EMA is to it."""
    net = torch.nn.Linear(4, 1, bias=False)
    tracked = phema.PowerEMA(net)
    truth = phema.PowerEMA(net, sigmas=(0.15,))
    steps = 600
    g = torch.Generator().manual_seed(0)
    walk = torch.zeros(4)
    for t in range(1, steps + 1):
        walk += 0.05 * torch.randn(4, generator=g)
        with torch.no_grad():
            net.weight.copy_((torch.tensor([np.sin(t / 40), np.cos(t / 90), t / steps, 0.0]) + walk)[None])
        tracked.update(net, t)
        truth.update(net, t)
        if t % 20 == 0:
            tracked.snapshot(tmp_path, t)
    weights, record = phema.reconstruct(tmp_path, 0.15)
    want = truth.params[0.15][0]
    error = (weights["weight"] - want).abs().max()
    assert record["step"] == steps and record["snapshots"] == 2 * steps // 20
    assert error < 0.02 * want.abs().max()
    assert error < 0.2 * min((tracked.params[s][0] - want).abs().max() for s in phema.TRACKED)
    same, _ = phema.reconstruct(tmp_path, 0.10)  # a tracked length comes back as its own last snapshot
    assert torch.allclose(same["weight"], tracked.params[0.10][0], atol=1e-5)
    with pytest.raises(LargoError, match="out of range"):
        phema.reconstruct(tmp_path, 0.5)
