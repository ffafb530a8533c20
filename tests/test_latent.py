"""Latent diffusion end to end, small: an autoencoder trained on real images through the shared trainer (its loss
falls; killed and resumed it ends bit-identical), a latent U-Net trained, sampled, evaluated and exported through
the CLI with the encoded dataset cached, a diffusers AutoencoderKL as the latent space, and bad input answered
with one line and exit code 2 without harming earlier files."""

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from largo.cli import main
from largo.config import AutoencoderRunConfig
from largo.train import Trainer
from helpers import SHARED_DATA, make_folder

pytestmark = pytest.mark.slow  # end to end: an autoencoder trained on real images, then a latent U-Net

AE_FLAGS = ["--dataset", "fashion_mnist", "--resolution", "32", "--base-channels", "32", "--channel-mult", "1,2,2",
            "--num-res-blocks", "1", "--latent-channels", "2", "--batch-size", "16", "--device", "cpu",
            "--disc-start", "4", "--disc-layers", "1", "--log-every", "2", "--lr", "1e-3", "--quiet",
            "--subset", "512", "--data-root", str(SHARED_DATA)]
LATENT_FLAGS = ["--dataset", "fashion_mnist", "--resolution", "32", "--base-channels", "32", "--channel-mult", "1,2",
                "--num-res-blocks", "1", "--attention-resolutions", "4", "--num-heads", "2", "--batch-size", "16",
                "--device", "cpu", "--log-every", "2", "--sample-steps", "3", "--grid-per-class", "1",
                "--clip-x0", "false", "--quiet", "--subset", "256", "--data-root", str(SHARED_DATA)]


def _run(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.err.strip().splitlines()


def _snapshot(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory, data_root):
    run = tmp_path_factory.mktemp("ae")
    assert main(["autoencoder", "train", *AE_FLAGS, "--steps", "24", "--checkpoint-every", "24",
                 "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory, autoencoder):
    run = tmp_path_factory.mktemp("latent")
    assert main(["train", *LATENT_FLAGS, "--autoencoder", str(autoencoder), "--steps", "4", "--checkpoint-every", "4",
                 "--run-dir", str(run)]) == 0
    return run


def _records(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def test_autoencoder_trains_on_real_images_and_its_reconstruction_loss_falls(autoencoder):
    rec = [r["rec"] for r in _records(autoencoder) if "rec" in r]
    assert len(rec) >= 10 and rec[-1] < 0.7 * rec[0], rec
    gan = [r for r in _records(autoencoder) if r["step"] > 4 and "d_loss" in r]
    assert gan and all(r["d_loss"] > 0 for r in gan), "the discriminator never trained after disc_start"
    meta = json.loads((autoencoder / "checkpoints" / "step_00000024" / "meta.json").read_text())
    assert meta["kind"] == "autoencoder" and meta["downsample_factor"] == 4 and meta["latent_channels"] == 2
    assert (autoencoder / "samples" / "step_00000024.png").is_file()


def test_autoencoder_eval_measures_reconstructions(autoencoder, tmp_path):
    out = tmp_path / "ae.json"
    assert main(["autoencoder", "eval", str(autoencoder), "--n", "64", "--device", "cpu", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["n"] == 64 and r["latents"]["shape"] == [2, 8, 8] and len(r["latents"]["std"]) == 2
    assert 5 < r["pixels"]["psnr_db"] < 60 and 0 < r["pixels"]["ssim"] <= 1
    assert r["rfd_classifier"]["value"] > 0 and r["rfd_classifier"]["extractor"].startswith("classifier:fashion")
    assert abs(r["latents"]["scale_factor"] - 1 / r["latents"]["std_all"]) < 1e-9
    assert out.with_suffix(".png").is_file()


def test_autoencoder_killed_and_resumed_ends_bit_identical(tmp_path, data_root):
    cfg = AutoencoderRunConfig()
    cfg.data = dataclasses.replace(cfg.data, dataset="fashion_mnist", resolution=16, data_root=str(SHARED_DATA),
                                   subset=256)
    cfg.autoencoder = dataclasses.replace(cfg.autoencoder, base_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                                          latent_channels=2)
    cfg.loss = dataclasses.replace(cfg.loss, disc_start=2, disc_layers=1)
    cfg.train = dataclasses.replace(cfg.train, steps=6, batch_size=8, checkpoint_every=3, log_every=3, device="cpu")
    Trainer(dataclasses.replace(cfg), tmp_path / "straight", progress=False).fit()
    first = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=3))
    Trainer(first, tmp_path / "resumed", progress=False).fit()  # "killed" after its step-3 checkpoint
    Trainer(dataclasses.replace(cfg), tmp_path / "resumed", resume=True, progress=False).fit()
    a, b = (tmp_path / r / "checkpoints" / "step_00000006" for r in ("straight", "resumed"))
    for name in ("model.safetensors", "ema.safetensors"):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert all(torch.equal(x[k], y[k]) for k in x), name
    da = torch.load(a / "state.pt", weights_only=True)["task"]["discriminator"]
    db = torch.load(b / "state.pt", weights_only=True)["task"]["discriminator"]
    assert da and all(torch.equal(da[k], db[k]) for k in da), "discriminator weights differ after resume"


def test_latent_model_trains_samples_evaluates_and_exports(capsys, tmp_path, autoencoder, latent_run):
    meta = json.loads((latent_run / "checkpoints" / "step_00000004" / "meta.json").read_text())
    ae_sha = meta["latent"]["autoencoder"]["sha256"]
    assert meta["latent"]["autoencoder"]["path"].startswith("/")  # absolute: the run loads from any folder
    assert meta["config"]["model"]["input_size"] == 8 and meta["config"]["model"]["image_channels"] == 2
    assert [r["cache"] for r in _records(latent_run) if r.get("event") == "latents"] == ["miss"]
    # a second run on the same data and autoencoder reads the encoded dataset from the cache
    again = tmp_path / "again"
    assert main(["train", *LATENT_FLAGS, "--autoencoder", str(autoencoder), "--steps", "2", "--run-dir",
                 str(again)]) == 0
    assert [r["cache"] for r in _records(again) if r.get("event") == "latents"] == ["hit"]

    out = tmp_path / "samples"
    assert main(["sample", str(latent_run), "--classes", "0,Sneaker", "--n", "2", "--steps", "3", "--out",
                 str(out)]) == 0
    from PIL import Image

    pngs = sorted((out / "images").glob("*.png"))
    assert len(pngs) == 4 and Image.open(pngs[0]).size == (32, 32)  # pixels out, not 8×8 latents
    assert main(["eval", str(latent_run), "--n", "8", "--steps", "2", "--ref-n", "50", "--no-inception",
                 "--quiet", "--out", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["resolution"] == 32 and "classifier:fashion_mnist-32" in evaluated["feature_spaces"]
    assert main(["export", str(latent_run), "--out", str(tmp_path / "export")]) == 0
    exported = json.loads((tmp_path / "export" / "meta.json").read_text())["latent"]["autoencoder"]
    assert exported["path"] == "autoencoder" and exported["sha256"] == ae_sha
    shutil.copytree(tmp_path / "export", tmp_path / "moved")  # the export loads wherever it is, alone
    assert main(["sample", str(tmp_path / "moved"), "--n", "1", "--steps", "2", "--classes", "0", "--out",
                 str(tmp_path / "from-export")]) == 0


def test_diffusers_autoencoder_serves_as_the_latent_space(tmp_path, data_root):
    diffusers = pytest.importorskip("diffusers")
    vae = diffusers.AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 32),
                                  layers_per_block=1, latent_channels=2, norm_num_groups=32, sample_size=32)
    vae.save_pretrained(tmp_path / "vae")
    from largo.autoencoder.load import load_autoencoder

    ae = load_autoencoder(tmp_path / "vae")
    assert (ae.kind, ae.downsample_factor, ae.latent_channels) == ("diffusers", 2, 2)
    run = tmp_path / "run"
    # f = 2: 16×16 latents, whose U-Net levels are 16 and 8 (LATENT_FLAGS' attention at 4 is for f = 4)
    assert main(["train", *LATENT_FLAGS, "--autoencoder", str(tmp_path / "vae"), "--steps", "2", "--run-dir",
                 str(run), "--attention-resolutions", "8"]) == 0
    assert main(["sample", str(run), "--n", "1", "--steps", "2", "--classes", "3", "--out", str(tmp_path / "s")]) == 0


def test_bad_autoencoder_input_is_one_line_and_harms_nothing(capsys, tmp_path, autoencoder, latent_run):
    before = _snapshot(latent_run)
    rgb = make_folder(tmp_path / "rgb")  # a few RGB images: any 3-channel dataset meets the 1-channel autoencoder
    cases = [  # (16 px: the resolution the other tests' runs already decoded, so the refusal costs no decode)
        (["train", *LATENT_FLAGS, "--resolution", "16", "--autoencoder", str(autoencoder), "--steps", "1",
          "--run-dir", str(tmp_path / "r1")], "trained at 32x32"),
        (["train", *LATENT_FLAGS[:-2], "--dataset", f"folder:{rgb}", "--autoencoder", str(autoencoder), "--steps",
          "1", "--run-dir", str(tmp_path / "r2")], "1-channel images"),  # a folder has no --data-root
        (["train", *LATENT_FLAGS, "--autoencoder", str(tmp_path / "nope"), "--steps", "1",
          "--run-dir", str(tmp_path / "r3")], "not found"),
        (["train", *LATENT_FLAGS, "--autoencoder", str(latent_run), "--steps", "1",
          "--run-dir", str(tmp_path / "r4")], "not an autoencoder checkpoint"),
    ]
    for argv, needle in cases:
        code, err = _run(capsys, argv)
        assert code == 2 and len(err) == 1 and err[0].startswith("largo: error:") and needle in err[0], (argv, err)

    ae_copy = tmp_path / "ae"
    shutil.copytree(autoencoder, ae_copy)
    run_copy = tmp_path / "latent"
    shutil.copytree(latent_run, run_copy)
    meta_path = run_copy / "checkpoints" / "step_00000004" / "meta.json"
    meta = json.loads(meta_path.read_text())
    ckpt = ae_copy / "checkpoints" / "step_00000024"
    meta["latent"]["autoencoder"]["path"] = str(ckpt)
    meta_path.write_text(json.dumps(meta))
    weights = ckpt / "ema.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-8] + bytes(8))  # changed: same size, other bytes
    code, err = _run(capsys, ["sample", str(run_copy), "--n", "1"])
    assert code == 2 and len(err) == 1 and "has changed" in err[0], err
    weights.write_bytes(data[: len(data) // 2])  # corrupt
    code, err = _run(capsys, ["sample", str(run_copy), "--n", "1"])
    assert code == 2 and len(err) == 1 and ("corrupt" in err[0] or "changed" in err[0]), err
    shutil.rmtree(ckpt)  # missing
    code, err = _run(capsys, ["sample", str(run_copy), "--n", "1"])
    assert code == 2 and len(err) == 1 and "missing" in err[0], err
    assert _snapshot(latent_run) == before


def test_pictures_reports_and_sweeps_work_on_a_latent_checkpoint(tmp_path, latent_run):
    """The pictures, the report and a sampling sweep run on a latent model, scored on its decoded 32-px images."""
    import csv

    grid, trajectory = tmp_path / "grid.png", tmp_path / "trajectory.png"
    assert main(["viz", "grid", str(latent_run), "--classes", "0,1", "--n", "2", "--steps", "2", "--out",
                 str(grid)]) == 0
    assert main(["viz", "trajectory", str(latent_run), "--steps", "3", "--out", str(trajectory)]) == 0
    assert grid.is_file() and trajectory.is_file()
    assert main(["report", str(latent_run), "--n", "1", "--steps", "2", "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "index.html").is_file()
    spec = tmp_path / "sweep.json"
    spec.write_text(json.dumps({"checkpoint": str(latent_run), "n": 10, "out": str(tmp_path / "sweep"),
                                "ref_n": 50, "inception": False, "grid": {"steps": [2], "cfg": [1, 3]}}))
    assert main(["sweep", str(spec)]) == 0
    with open(tmp_path / "sweep" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(0 <= float(r["class_acc"]) <= 1 and float(r["fd_cls"]) > 0 for r in rows)
