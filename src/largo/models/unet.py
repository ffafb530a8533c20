"""The LARGO U-Net: residual blocks with time + class embeddings, self-attention at low resolutions.

Layout (Ho et al. 2020, as the LARGO report describes it): per level `num_res_blocks` residual blocks and an
attention block where the feature map's side is in `attention_resolutions`, then a strided-conv downsample;
a middle of res-attn-res; the decoder mirrors it with skip concatenation and nearest + conv upsampling (or a
transposed convolution, `upsample: transposed`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from largo.config import ModelConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in the Transformer and DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


def _zero(module: nn.Module) -> nn.Module:
    # Residual branches start as the identity, which keeps early training stable.
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _augment_map(augment_dim: int, emb_dim: int) -> nn.Linear:
    """Non-leaking augmentation (data/augment.py): its parameters enter the block embedding through a linear map
    without bias, so "no augmentation" (zeros, as sampling passes) adds exactly nothing. Initialised N(0, 1), like
    the class rows beside it: zero-initialised, it stayed too small to be used in 800 steps and the transforms
    leaked into the samples (docs/FINETUNE.md)."""
    layer = nn.Linear(augment_dim, emb_dim, bias=False)
    nn.init.normal_(layer.weight)
    return layer


# w → the sinusoidal features' argument: w in [0, 10] spans the same range as the timesteps (0 … 1000).
GUIDANCE_SCALE = 100.0


def _guidance_map(channels: int, emb_dim: int) -> nn.Sequential:
    """A guidance-distilled student's w input (Meng et al. 2023): sinusoidal features of w → MLP whose output
    layer starts at zero, so a student initialised from its teacher computes exactly the teacher's network."""
    return nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(), _zero(nn.Linear(emb_dim, emb_dim)))


class ResBlock(nn.Module):
    """GN→SiLU→Conv3×3 → + projected embedding → GN→SiLU→Dropout→Conv3×3, with a 1×1 skip when widths differ."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(in_ch), nn.SiLU(), nn.Conv2d(in_ch, out_ch, 3, padding=1))
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_ch))
        self.out_layers = nn.Sequential(_norm(out_ch), nn.SiLU(), nn.Dropout(dropout),
                                        _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1)))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_proj(emb)[:, :, None, None].to(h.dtype)
        return self.skip(x) + self.out_layers(h)


# At or below this many tokens, bf16 attention on the CPU runs as plain matmul + softmax: there torch's fused SDPA
# kernel is 3-5x slower (fwd+bwd, 49 tokens: 50 ms against 11 ms; 64: 35 against 12; equal at 256; docs/SPEED.md).
CPU_BF16_MATH_TOKENS = 64


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over (B, heads, tokens, d); the softmax is taken in fp32 on the math path."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.shape[-2] <= CPU_BF16_MATH_TOKENS:
        weights = (q @ k.transpose(-1, -2)).float().mul(q.shape[-1] ** -0.5).softmax(-1)
        return weights.to(v.dtype) @ v
    return F.scaled_dot_product_attention(q, k, v)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H×W positions (`attention`: the fused kernel, or plain matmuls where that
    is faster)."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The 1×1 convs run as matmuls on (B, HW, C) tokens (same weights, a view of the conv kernels), so q, k, v
        # come out with head_dim contiguous: SDPA's fused (flash) CPU kernel needs that and otherwise falls back
        # to the slow math path; this halves the attention block's fwd+bwd time at 16×16 on the CPU.
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        qkv = F.linear(tokens, self.qkv.weight.flatten(1), self.qkv.bias)
        q, k, v = qkv.unflatten(-1, (3, self.num_heads, c // self.num_heads)).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v)  # (B, heads, HW, head_dim)
        out = F.linear(out.transpose(1, 2).flatten(2), self.proj.weight.flatten(1), self.proj.bias)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TransposedUpsample(nn.Module):
    """×2 by a 2×2 stride-2 transposed convolution: each input pixel writes its own 2×2 output patch."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Level(nn.Module):
    """One resolution of the encoder or decoder: residual blocks, each optionally followed by attention."""

    def __init__(self, blocks: list[ResBlock], attention: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attention = nn.ModuleList(attention)


class UNet(nn.Module):
    """`net(x, t, y)`: x (B, C, H, W), timesteps t (B,), labels y (B,) where y == num_classes is the null class, or
    float weights y (B, num_classes + 1) that mix the class embeddings (rows of one-hot weights = those labels)."""

    def __init__(self, cfg: ModelConfig, resolution: int):
        super().__init__()
        if cfg.image_channels < 1:
            raise ValueError("ModelConfig.image_channels must be set (it comes from the dataset)")
        ch = cfg.base_channels
        emb_dim = 4 * ch
        self.num_classes = cfg.num_classes
        self.base_channels = ch
        self.resolution = resolution
        # "concat" (LARGO eq. 12): time and class embeddings are concatenated, then an MLP mixes them; "add" (ADM,
        # diffusers): a class embedding of the blocks' width is added to the time MLP's output.
        self.class_embedding = cfg.class_embedding
        concat = cfg.class_embedding == "concat"
        self.class_embed = (nn.Embedding(cfg.num_classes + 1, ch if concat else emb_dim)
                            if cfg.num_classes > 0 else None)
        in_emb = 2 * ch if self.class_embed is not None and concat else ch
        self.embed_mlp = nn.Sequential(nn.Linear(in_emb, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.augment_dim = cfg.augment_dim
        self.augment_embed = _augment_map(cfg.augment_dim, emb_dim) if cfg.augment_dim else None
        self.guidance_embed = _guidance_map(ch, emb_dim) if cfg.guidance_input else None

        def attn(width: int, res: int) -> nn.Module:
            return AttentionBlock(width, cfg.num_heads) if res in cfg.attention_resolutions else nn.Identity()

        self.input_conv = nn.Conv2d(cfg.image_channels, ch, 3, padding=1)
        widths = [ch * m for m in cfg.channel_mult]
        skip_widths = [ch]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        res, width = resolution, ch
        for i, out in enumerate(widths):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(width, out, emb_dim, cfg.dropout))
                attns.append(attn(out, res))
                width = out
                skip_widths.append(width)
            self.down.append(Level(blocks, attns))
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else Downsample(width))
            if not last:
                skip_widths.append(width)
                res //= 2
        self.mid_block1 = ResBlock(width, width, emb_dim, cfg.dropout)
        self.mid_attn = AttentionBlock(width, cfg.num_heads)
        self.mid_block2 = ResBlock(width, width, emb_dim, cfg.dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        upsample = TransposedUpsample if cfg.upsample == "transposed" else Upsample
        for i, out in reversed(list(enumerate(widths))):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(width + skip_widths.pop(), out, emb_dim, cfg.dropout))
                attns.append(attn(out, res))
                width = out
            self.up.append(Level(blocks, attns))
            self.upsample.append(upsample(width) if i > 0 else nn.Identity())
            if i > 0:
                res *= 2
        self.out = nn.Sequential(_norm(width), nn.SiLU(), _zero(nn.Conv2d(width, cfg.image_channels, 3, padding=1)))

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, augment_labels: torch.Tensor | None = None,
              guidance: torch.Tensor | None = None) -> torch.Tensor:
        emb = timestep_embedding(t, self.base_channels).to(self.embed_mlp[0].weight.dtype)  # e.g. a float64 net
        if self.class_embed is None:
            out = self.embed_mlp(emb)
        else:
            if y is None:
                y = torch.full_like(t, self.num_classes, dtype=torch.long)
            # float y (B, num_classes + 1): weights over the class rows and the null row, mixed (class interpolation)
            c = (y.to(self.class_embed.weight.dtype) @ self.class_embed.weight if y.is_floating_point()
                 else self.class_embed(y))
            out = self.embed_mlp(emb) + c if self.class_embedding == "add" else self.embed_mlp(torch.cat([emb, c], dim=-1))
        if augment_labels is not None and self.augment_embed is not None:
            out = out + self.augment_embed(augment_labels.to(out.dtype))
        if guidance is not None and self.guidance_embed is not None:
            w = timestep_embedding(guidance.to(t.device).expand(t.shape[0]) * GUIDANCE_SCALE, self.base_channels)
            out = out + self.guidance_embed(w.to(out.dtype))
        return out

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None, guidance: torch.Tensor | None = None) -> torch.Tensor:
        """`augment_labels` (B, augment_dim): the augmentation applied to x in training; None (sampling) = none.
        `guidance` (B,) or scalar: the guidance scale w of a guidance-distilled net (ignored by others; None = no
        w term, the network it was initialised from)."""
        emb = self.embed(t.to(x.device), y, augment_labels, guidance)
        h = self.input_conv(x)
        skips = [h]
        for level, down in zip(self.down, self.downsample):
            for block, attn in zip(level.blocks, level.attention):
                h = attn(block(h, emb))
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                skips.append(h)
        h = self.mid_block2(self.mid_attn(self.mid_block1(h, emb)), emb)
        for level, up in zip(self.up, self.upsample):
            for block, attn in zip(level.blocks, level.attention):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
            h = up(h)
        return self.out(h)


def build_unet(cfg: ModelConfig, resolution: int) -> UNet:
    return UNet(cfg, resolution)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
