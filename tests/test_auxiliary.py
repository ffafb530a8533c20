"""Auxiliary perceptual and feature-matching losses on x̂0: they change the gradient where they apply, are exactly
zero (and leave the gradient alone) where they do not, and a tiny run trains with them."""

import dataclasses
import json

import pytest
import torch

from largo.config import preset_config
from largo.diffusion.loss import diffusion_loss
from largo.diffusion.schedules import NoiseSchedule
from largo.errors import LargoError
from largo.models import build_unet
from largo.train import Trainer
from largo.train.auxiliary import AuxiliaryLoss
from largo.train.perceptual import load_feature_net
from helpers import tiny_config


def _grads(aux_max_t: float, weights=(0.1, 0.05)):
    cfg = preset_config("demo")
    d = dataclasses.replace(cfg.diffusion, perceptual_weight=weights[0], feature_match_weight=weights[1],
                            aux_net="classifier:fashion_mnist-32-critic", aux_max_t=aux_max_t)
    cfg.model = dataclasses.replace(cfg.model, image_channels=1, num_classes=10)
    torch.manual_seed(0)
    net = build_unet(cfg.model, 32)
    x0, y = torch.rand(4, 1, 32, 32) * 2 - 1, torch.arange(4)
    schedule = NoiseSchedule.from_config(d)
    torch.manual_seed(1)
    plain = diffusion_loss(net, x0, y, schedule, d)
    g_plain = torch.autograd.grad(plain, list(net.parameters()))
    torch.manual_seed(1)
    loss, parts = diffusion_loss(net, x0, y, schedule, d, parts=True)
    aux, logs = AuxiliaryLoss(d, load_feature_net(d.aux_net))(parts)
    g_total = torch.autograd.grad(loss + aux, list(net.parameters()))
    assert torch.equal(loss, plain)  # parts=True draws nothing extra
    return aux, logs, g_plain, g_total


def test_auxiliary_losses_change_the_gradient_where_they_apply():
    aux, logs, g_plain, g_total = _grads(aux_max_t=1.0)
    assert aux > 0 and logs["perceptual"] > 0 and logs["feature_match"] > 0 and logs["aux_fraction"] == 1.0
    assert any(not torch.allclose(a, b) for a, b in zip(g_plain, g_total))


def test_auxiliary_losses_are_zero_outside_their_noise_range():
    aux, logs, g_plain, g_total = _grads(aux_max_t=1e-9)  # no t < 1e-9 · T: nothing applies
    assert aux == 0 and logs["aux_fraction"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(g_plain, g_total))


@pytest.mark.slow
def test_a_tiny_run_trains_with_auxiliary_losses(tmp_path, data_root):
    cfg = tiny_config(steps=4, log_every=2)
    cfg.diffusion = dataclasses.replace(cfg.diffusion, perceptual_weight=0.1, feature_match_weight=0.05,
                                        aux_net="classifier:fashion_mnist-32-critic", aux_max_t=1.0)
    Trainer(cfg, tmp_path / "run", progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 4 and records[-1]["perceptual"] > 0 and records[-1]["feature_match"] > 0


def test_auxiliary_weights_need_a_network():
    cfg = tiny_config()
    cfg.diffusion = dataclasses.replace(cfg.diffusion, perceptual_weight=0.1)
    with pytest.raises(LargoError, match="--aux-net"):
        cfg.validate()
    cfg.diffusion = dataclasses.replace(cfg.diffusion, aux_net="vgg19:/no/such/vgg.pth")
    with pytest.raises(LargoError, match="VGG19 weights not found"):
        load_feature_net(cfg.diffusion.aux_net)
