import dataclasses

import pytest
import torch

from largo.config import ModelConfig
from largo.models import build_unet


@pytest.mark.parametrize("resolution,channels,mult", [(28, 1, (1, 2, 2)), (32, 1, (1, 2, 2)), (32, 3, (1, 2, 2)),
                                                      (64, 3, (1, 2, 2, 2))])
def test_output_shape_matches_input(resolution, channels, mult):
    cfg = ModelConfig(base_channels=32, channel_mult=mult, num_res_blocks=1, attention_resolutions=(16, 8),
                      num_heads=4, image_channels=channels, num_classes=5)
    net = build_unet(cfg, resolution)
    x = torch.randn(2, channels, resolution, resolution)
    out = net(x, torch.tensor([0.0, 999.0]), torch.tensor([1, 5]))
    assert out.shape == x.shape


def test_null_class_is_a_learned_row_and_changes_the_output():
    cfg = ModelConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
                      num_heads=2, image_channels=1, num_classes=3, dropout=0.0)
    net = build_unet(cfg, 16).eval()
    assert net.class_embed.num_embeddings == 4  # 3 classes + the null class
    for p in net.parameters():  # zero-initialised output layers would hide the label's effect
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(1, 1, 16, 16), torch.tensor([10.0])
    assert not torch.allclose(net(x, t, torch.tensor([0])), net(x, t, torch.tensor([3])))
    assert torch.allclose(net(x, t, None), net(x, t, torch.tensor([3])))


def test_attention_appears_only_at_requested_resolutions():
    cfg = ModelConfig(base_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attention_resolutions=(16, 8),
                      image_channels=3, num_classes=10)
    net = build_unet(cfg, 64)
    from largo.models.unet import AttentionBlock
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
             for m in net.modules() if isinstance(m, AttentionBlock)]
    net(torch.randn(1, 3, 64, 64), torch.tensor([5]), torch.tensor([1]))
    for h in hooks:
        h.remove()
    assert set(seen) == {16, 8}
    assert dataclasses.asdict(cfg)["num_heads"] == 4


@pytest.mark.parametrize("upsample", ["nearest_conv", "transposed"])
def test_upsample_kinds_keep_the_shape_and_learn(upsample):
    cfg = ModelConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(),
                      num_heads=2, image_channels=1, num_classes=3, upsample=upsample)
    net = build_unet(cfg, 14)  # an odd side below the top level (7) must come back to 14
    from largo.models.unet import TransposedUpsample, Upsample
    kind = TransposedUpsample if upsample == "transposed" else Upsample
    assert isinstance(net.upsample[0], kind)
    for p in net.parameters():  # zero-initialised output layers would stop the gradient
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(2, 1, 14, 14)
    out = net(x, torch.tensor([3.0, 500.0]), torch.tensor([0, 2]))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert net.upsample[0].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("tokens", [49, 64, 256])
def test_cpu_bf16_attention_matches_the_fused_kernel(tokens):
    # the math path that small bf16 attention takes on the CPU computes the same softmax(qk^T/sqrt(d))v
    from largo.models.unet import attention
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, tokens, 16) for _ in range(3))
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    got = attention(q.bfloat16(), k.bfloat16(), v.bfloat16()).float()
    assert got.dtype == torch.float32 and got.shape == exact.shape
    assert (got - exact).abs().max() < 0.05  # bf16 keeps 8 bits of mantissa
    assert torch.equal(attention(q, k, v), exact)  # fp32 keeps the fused kernel
