"""models/widen.py: a k-times wider U-Net that starts as the narrow one's function, with its copies free to part."""

import dataclasses

import pytest
import torch

from largo.config import ModelConfig
from largo.models import build_unet
from largo.models.widen import widened_state

CFG = ModelConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,), num_heads=2,
                  dropout=0.0, image_channels=1, num_classes=3, input_size=16, guidance_input=True)


def _random_narrow(**changes):
    torch.manual_seed(0)
    net = build_unet(dataclasses.replace(CFG, **changes), 16)
    with torch.no_grad():  # trained-like weights: no zero-initialised layer left to hide a wrong mapping
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net


@pytest.mark.parametrize("k, embedding, upsample", [(2, "add", "nearest_conv"), (2, "concat", "transposed"),
                                                   (3, "concat", "nearest_conv")])
def test_the_wide_net_computes_the_narrow_nets_function(k, embedding, upsample):
    narrow = _random_narrow(class_embedding=embedding, upsample=upsample)
    wide = build_unet(dataclasses.replace(CFG, base_channels=32 * k, class_embedding=embedding, upsample=upsample), 16)
    wide.load_state_dict(widened_state(narrow, wide))
    x, t, y = torch.randn(4, 1, 16, 16), torch.tensor([0.0, 20.0, 500.0, 999.0]), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        a, b = narrow(x, t, y, guidance=torch.tensor(3.0)), wide(x, t, y, guidance=torch.tensor(3.0))
    assert a.abs().mean() > 0.1 and torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in narrow.parameters())


def test_the_copies_of_a_channel_get_different_gradients():
    narrow = _random_narrow()
    wide = build_unet(dataclasses.replace(CFG, base_channels=64), 16)
    wide.load_state_dict(widened_state(narrow, wide))
    x, t, y = torch.randn(4, 1, 16, 16), torch.tensor([0.0, 20.0, 500.0, 999.0]), torch.tensor([0, 1, 2, 3])
    wide(x, t, y).square().mean().backward()
    w, g = wide.input_conv.weight, wide.input_conv.weight.grad  # channel c's copies are rows 2c and 2c + 1
    assert torch.equal(w[0::2], w[1::2])  # copied outputs
    assert not torch.allclose(g[0::2], g[1::2])  # their inputs' split weights downstream part them
    with pytest.raises(ValueError, match="not a multiple"):
        widened_state(wide, narrow)
