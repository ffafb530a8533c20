"""The released checkpoints in checkpoints/ load by name and draw the classes they are asked for."""

from pathlib import Path

import pytest
import torch

from largo.checkpoint import read_meta, resolve_checkpoint
from largo.metrics.classifier import classifier_outputs, load_classifier
from largo.sampling import generate_images, load_model

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cpu_fashion_checkpoint_draws_recognisable_classes():
    ckpt = resolve_checkpoint("fashion_mnist-32-cpu")
    assert ckpt == REPO / "checkpoints" / "fashion_mnist-32-cpu"
    assert (ckpt / "ema.safetensors").stat().st_size < 10 * 2**20  # the size limit for a Fashion model
    sample_cfg = read_meta(ckpt)["config"]["sample"]
    assert (sample_cfg["sampler"], sample_cfg["sample_steps"]) == ("dpmpp2m", 20)
    model = load_model("fashion_mnist-32-cpu")
    net, cfg, names = model.net, model.cfg, model.class_names
    assert names[1] == "Trouser" and cfg.diffusion.prediction == "v"
    labels = torch.arange(30) % 10
    images = generate_images(net, cfg, labels, sampler="dpmpp2m", steps=10)
    clf, _ = load_classifier(REPO / "checkpoints" / "classifiers" / "fashion_mnist-32")
    accuracy = (classifier_outputs(clf, images)[1].argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.6, accuracy  # 0.86 at N = 500 in docs/SAMPLERS.md; random images score ~0.1


def test_released_checkpoints_are_found_on_the_search_path_from_any_folder(tmp_path, monkeypatch, capsys):
    """$LARGO_CHECKPOINTS comes first on the search path; outputs go under the current folder, not the source tree."""
    import shutil

    from largo.cli import main
    from largo.paths import RELEASED_DIR

    mine = tmp_path / "my-checkpoints"
    shutil.copytree(RELEASED_DIR / "fashion_mnist-32-cpu", mine / "my-model")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("LARGO_CHECKPOINTS", str(mine))
    monkeypatch.chdir(work)
    assert main(["checkpoints"]) == 0
    listed = capsys.readouterr().out
    assert str(mine) in listed.splitlines()[0] and "my-model" in listed and "fashion_mnist-32-cpu" in listed
    assert main(["sample", "my-model", "--classes", "Bag", "--n", "1", "--steps", "2"]) == 0
    assert list((work / "samples" / "my-model").rglob("grid.png"))
    assert not (RELEASED_DIR / "my-model").exists() and not (RELEASED_DIR.parent / "samples" / "my-model").exists()
