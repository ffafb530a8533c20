"""Image grids with row labels, drawn with Pillow only."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def labelled_grid(images: torch.Tensor, per_row: int, row_labels: list[str] | None = None, *,
                  scale: int = 0, pad: int = 2) -> Image.Image:
    """uint8 images (N, C, H, W) in rows of `per_row`, upscaled (nearest) so small images stay legible."""
    n, c, h, w = images.shape
    rows = (n + per_row - 1) // per_row
    scale = scale or max(1, 64 // h)
    ch, cw = h * scale, w * scale
    font_size = 14
    label_w = 0
    if row_labels:
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        label_w = 8 + max(int(probe.textlength(t, font=_font(font_size))) for t in row_labels)
    canvas = Image.new("RGB", (label_w + per_row * (cw + pad) + pad, rows * (ch + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        arr = images[i].permute(1, 2, 0).numpy()
        tile = Image.fromarray(arr[:, :, 0] if c == 1 else arr, "L" if c == 1 else "RGB").convert("RGB")
        tile = tile.resize((cw, ch), Image.Resampling.NEAREST)
        r, k = divmod(i, per_row)
        canvas.paste(tile, (label_w + pad + k * (cw + pad), pad + r * (ch + pad)))
    for r, text in enumerate(row_labels or []):
        draw.text((4, pad + r * (ch + pad) + ch // 2), text, fill="black", font=_font(font_size), anchor="lm")
    return canvas
