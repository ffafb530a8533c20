"""A model trained at Fashion-MNIST's native 28×28 is judged by the shipped 32-px classifiers after the zero-padding
the data pipeline applies to their training images: the same numbers as judging the padded images themselves."""

from __future__ import annotations

import torch

from largo.data import load_images
from largo.metrics import defaults
from largo.metrics.classifier import classifier_outputs, find_classifier, load_classifier
from largo.metrics.evaluate import classifier_space, default_classifier


def test_28px_images_are_judged_as_their_padded_32px_selves(data_root):
    native = load_images("fashion_mnist", "test", 28, str(data_root)).images[:64]
    padded = load_images("fashion_mnist", "test", 32, str(data_root)).images[:64]
    assert torch.equal(torch.nn.functional.pad(native, (2, 2, 2, 2)), padded)  # what the pipeline does
    path = find_classifier("fashion_mnist", 28)
    assert path is not None and path == find_classifier("fashion_mnist", 32)
    model, _ = load_classifier(path)
    f28, l28 = classifier_outputs(model, native)
    f32, l32 = classifier_outputs(model, padded)
    assert torch.equal(f28, f32) and torch.equal(l28, l32)
    space = classifier_space("fashion_mnist", 28)
    assert space.resize == "zero-pad-28-to-32"
    assert torch.equal(space(native)["logits"], l32)
    assert default_classifier("fashion_mnist", 28)[1] == 32
    assert defaults.judged_size("cifar10", 28) == 28  # only the datasets the pipeline pads
