"""Image grids with row labels, drawn with Pillow only."""

from __future__ import annotations

import functools

import torch
from PIL import Image, ImageDraw, ImageFont

from largo.images import to_pil


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
        tile = to_pil(images[i]).convert("RGB").resize((cw, ch), Image.Resampling.NEAREST)
        r, k = divmod(i, per_row)
        canvas.paste(tile, (label_w + pad + k * (cw + pad), pad + r * (ch + pad)))
    for r, text in enumerate(row_labels or []):
        draw.text((4, pad + r * (ch + pad) + ch // 2), text, fill="black", font=_font(font_size), anchor="lm")
    return canvas


# -- annotated grids with a fixed geometry ---------------------------------------------------------
# Every picture below is laid out from these constants, so its pixel size follows from its contents alone:
#   width  = LABEL_W + cols * (cell_w + PAD) + PAD
#   height = Σ over sections of [TITLE_H if titled] + header_lines * LINE_H + rows * (cell_h + PAD) + PAD
# with cell = image side × max(1, 64 // image side) (nearest-neighbour upscaling, as in `labelled_grid`).
LABEL_W = 128  # row-label column; longer labels are cut with an ellipsis
TITLE_H = 22  # a section's title band
LINE_H = 14  # one line of column header
PAD = 2


@functools.lru_cache(maxsize=None)
def font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans when the system has it (Greek letters, subscripts), else Pillow's default font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return _font(size)


@functools.lru_cache(maxsize=None)
def has_greek() -> bool:
    """Whether `font` draws ᾱ, σ, x̂: Pillow's built-in font does not, so labels fall back to ASCII."""
    try:
        ImageFont.truetype("DejaVuSans.ttf", 10)
        return True
    except OSError:
        return False


def symbols(text: str) -> str:
    """`text` as `font` can draw it: Greek and sub/superscripts spelled out when the font lacks them."""
    if has_greek():
        return text
    for a, b in (("ᾱ", "abar"), ("α", "alpha"), ("σ", "sigma"), ("ε", "eps"), ("μ", "mu"), ("x̂₀", "x0_hat"),
                 ("₀", "0"), ("·", "-"), ("…", "..."), ("×", "x")):
        text = text.replace(a, b)
    return text


def fit_text(text: str, width: int, fnt: ImageFont.ImageFont) -> str:
    """`text` cut with an ellipsis so it is at most `width` pixels wide."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    if probe.textlength(text, font=fnt) <= width:
        return text
    ell = symbols("…")
    while text and probe.textlength(text + ell, font=fnt) > width:
        text = text[:-1]
    return text + ell


def tile(image: torch.Tensor, scale: int) -> Image.Image:
    """One uint8 (C, H, W) image as an RGB PIL image, upscaled by `scale` (nearest)."""
    _, h, w = image.shape
    return to_pil(image).convert("RGB").resize((w * scale, h * scale), Image.Resampling.NEAREST)


def cell_scale(side: int) -> int:
    return max(1, 64 // side)


class Section:
    """A titled block of rows that share column headers: rows are (label, [uint8 (C,H,W) image or None])."""

    def __init__(self, title: str = "", col_labels: list[str] | None = None,
                 rows: list[tuple[str, list[torch.Tensor | None]]] | None = None):
        self.title = title
        self.col_labels = col_labels or []
        self.rows = rows or []

    def add(self, label: str, images: list[torch.Tensor | None]) -> None:
        self.rows.append((label, list(images)))

    @property
    def header_lines(self) -> int:
        return max((len(c.split("\n")) for c in self.col_labels), default=0)


def annotated_grid(sections: list[Section], *, pad: int = PAD) -> Image.Image:
    """Sections stacked vertically: a title band, column headers (lines split on "\\n"), and rows of images
    with a label on the left. All images have one size; `None` leaves a cell blank."""
    images = [im for s in sections for _, row in s.rows for im in row if im is not None]
    if not images:
        raise ValueError("annotated_grid needs at least one image")
    _, h, w = images[0].shape
    scale = cell_scale(h)
    ch, cw = h * scale, w * scale
    cols = max(max(len(row) for s in sections for _, row in s.rows), max(len(s.col_labels) for s in sections))
    width = LABEL_W + cols * (cw + pad) + pad
    heights = [(TITLE_H if s.title else 0) + s.header_lines * LINE_H + len(s.rows) * (ch + pad) + pad
               for s in sections]
    canvas = Image.new("RGB", (width, sum(heights)), "white")
    draw = ImageDraw.Draw(canvas)
    f_title, f_head, f_row = font(14), font(11), font(12)
    y = 0
    for s, sh in zip(sections, heights):
        top = y
        if s.title:
            draw.text((6, y + TITLE_H // 2), fit_text(symbols(s.title), width - 12, f_title), fill="black",
                      font=f_title, anchor="lm")
            y += TITLE_H
        for k, label in enumerate(s.col_labels):
            x_mid = LABEL_W + pad + k * (cw + pad) + cw // 2
            for j, line in enumerate(label.split("\n")):
                draw.text((x_mid, y + j * LINE_H + LINE_H // 2), fit_text(symbols(line), cw + pad, f_head),
                          fill=(60, 60, 60), font=f_head, anchor="mm")
        y += s.header_lines * LINE_H
        for r, (label, row) in enumerate(s.rows):
            y_row = y + pad + r * (ch + pad)
            lines = label.split("\n")
            for j, line in enumerate(lines):
                y_text = y_row + ch // 2 + (j - (len(lines) - 1) / 2) * LINE_H
                draw.text((6, y_text), fit_text(symbols(line), LABEL_W - 10, f_row), fill="black", font=f_row,
                          anchor="lm")
            for k, im in enumerate(row):
                if im is not None:
                    if tuple(im.shape[1:]) != (h, w):
                        raise ValueError("annotated_grid: all images must have the same size")
                    canvas.paste(tile(im, scale), (LABEL_W + pad + k * (cw + pad), y_row))
        y = top + sh
    return canvas
