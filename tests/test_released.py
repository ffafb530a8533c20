"""The released checkpoints in checkpoints/ load by name and draw the classes they are asked for."""

from pathlib import Path

import torch

from largo.checkpoint import read_meta, resolve_checkpoint
from largo.metrics.classifier import classifier_outputs, load_classifier
from largo.sampling import generate_images, load_model

REPO = Path(__file__).resolve().parents[1]


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
