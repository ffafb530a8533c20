"""Small line and histogram plots drawn with Pillow (largo has no matplotlib dependency).

Two kinds of picture need plots: training curves and pixel histograms. Both are a few panels of lines over
linear or log axes, which ~150 lines of Pillow draw deterministically (fixed pixel size, no font cache, no
backend), so largo keeps its dependency list short. Everything is drawn at 2× and downsampled for smooth lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from PIL import Image, ImageDraw

from largo.draw.grid import font, symbols

SS = 2  # supersampling factor
MARGIN = {"left": 72, "right": 16, "top": 34, "bottom": 46}

BLUE = (31, 119, 180)
ORANGE = (255, 127, 14)
GREEN = (44, 160, 44)
RED = (214, 39, 40)
GREY = (150, 150, 150)
LIGHT_BLUE = (174, 199, 232)
LIGHT_GREY = (200, 200, 200)


@dataclass
class Series:
    """A line through (x, y); with `edges=True`, x holds len(y) + 1 bin edges and the line is a histogram step
    outline (filled when `fill`). Non-finite points (and y <= 0 on a log axis) break the line."""

    x: Sequence[float]
    y: Sequence[float]
    color: tuple[int, int, int] = BLUE
    label: str = ""
    width: float = 1.5
    edges: bool = False
    fill: tuple[int, int, int] | None = None


@dataclass
class Panel:
    title: str
    series: list[Series]
    xlabel: str = ""
    ylabel: str = ""
    logy: bool = False
    y_from_zero: bool = False
    notes: list[str] = field(default_factory=list)  # extra lines under the legend


def _finite(v: float) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round values (1, 2, 5 × 10^k steps) covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over [lo, hi] (both > 0): decades, with 2 and 5 when there are few decades."""
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mults in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [m * 10 ** k for k in range(k0, k1 + 1) for m in mults if lo <= m * 10 ** k <= hi * (1 + 1e-9)]
        if len(ticks) >= 3:
            return ticks[:: max(1, len(ticks) // 8)]
    return [v for v in nice_ticks(lo, hi) if v > 0]


def fmt(v: float) -> str:
    if v != 0 and abs(v) >= 10_000 and float(v).is_integer():
        return f"{v / 1000:g}k"
    return f"{v:.3g}"


def _data_range(panel: Panel) -> tuple[float, float, float, float]:
    xs, ys = [], []
    for s in panel.series:
        xs += [v for v in s.x if _finite(v)]
        ys += [v for v in s.y if _finite(v) and (v > 0 or not panel.logy)]
    if not xs or not ys:
        return 0.0, 1.0, (0.1, 1.0) if panel.logy else (0.0, 1.0)
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = min(ys), max(ys)
    if panel.logy:
        a, b = math.log10(y0), math.log10(y1)
        if b - a < 1e-9:
            a, b = a - 0.5, b + 0.5
        span = b - a
        return x0, x1, 10 ** (a - 0.04 * span), 10 ** (b + 0.06 * span)
    if panel.y_from_zero:
        y0 = min(0.0, y0)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - (abs(y0) * 0.1 or 0.5), y1 + (abs(y1) * 0.1 or 0.5)
    span = y1 - y0
    return x0, x1, (y0 if panel.y_from_zero and y0 == 0 else y0 - 0.04 * span), y1 + 0.08 * span


# long function: one panel is drawn top to bottom (frame, ticks, series, legend) from one set of layout values;
# split, those values would have to travel between the pieces.
def _draw_panel(image: Image.Image, box: tuple[int, int, int, int], panel: Panel) -> None:
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    px0, py0 = left + MARGIN["left"] * SS, top + MARGIN["top"] * SS
    px1, py1 = right - MARGIN["right"] * SS, bottom - MARGIN["bottom"] * SS
    x0, x1, y0, y1 = _data_range(panel)
    ty = (lambda v: math.log10(v)) if panel.logy else (lambda v: v)
    t0, t1 = ty(y0), ty(y1)

    def X(v: float) -> float:
        return px0 + (v - x0) / (x1 - x0) * (px1 - px0)

    def Y(v: float) -> float:
        return py1 - (ty(v) - t0) / (t1 - t0) * (py1 - py0)

    f_tick, f_label, f_title = font(11 * SS), font(12 * SS), font(14 * SS)
    draw.text(((left + right) / 2, top + 16 * SS), symbols(panel.title), fill="black", font=f_title, anchor="mm")
    # grid and ticks
    yt = log_ticks(y0, y1) if panel.logy else nice_ticks(y0, y1)
    for v in yt:
        y = Y(v)
        if py0 - 1 <= y <= py1 + 1:
            draw.line([(px0, y), (px1, y)], fill=(232, 232, 232), width=SS)
            draw.text((px0 - 6 * SS, y), fmt(v), fill=(70, 70, 70), font=f_tick, anchor="rm")
    for v in nice_ticks(x0, x1, 6):
        x = X(v)
        if px0 - 1 <= x <= px1 + 1:
            draw.line([(x, py0), (x, py1)], fill=(240, 240, 240), width=SS)
            draw.text((x, py1 + 6 * SS), fmt(v), fill=(70, 70, 70), font=f_tick, anchor="mt")
    draw.rectangle([px0, py0, px1, py1], outline=(120, 120, 120), width=SS)
    if panel.xlabel:
        draw.text(((px0 + px1) / 2, bottom - 10 * SS), symbols(panel.xlabel), fill="black", font=f_label,
                  anchor="mb")
    if panel.ylabel:
        label = Image.new("L", (int(draw.textlength(symbols(panel.ylabel), font=f_label)) + 4, 16 * SS), 0)
        ImageDraw.Draw(label).text((2, 0), symbols(panel.ylabel), fill=255, font=f_label)
        rot = label.rotate(90, expand=True)
        image.paste((0, 0, 0), (left + 4 * SS, int((py0 + py1 - rot.height) / 2)), rot)
    # series
    for s in panel.series:
        pts: list[tuple[float, float]] = []
        if s.edges:
            for i, v in enumerate(s.y):
                pts += [(s.x[i], v), (s.x[i + 1], v)]
        else:
            pts = list(zip(s.x, s.y))
        segments, cur = [], []
        for x, y in pts:
            if _finite(x) and _finite(y) and (y > 0 or not panel.logy):
                cur.append((X(x), min(max(Y(y), py0), py1)))
            elif s.edges and _finite(x) and _finite(y):  # an empty bin on a log axis: down to the floor
                cur.append((X(x), py1))
            elif cur:
                segments.append(cur)
                cur = []
        if cur:
            segments.append(cur)
        for seg in segments:
            if s.fill is not None and len(seg) > 1:
                draw.polygon([(seg[0][0], py1), *seg, (seg[-1][0], py1)], fill=s.fill)
            if len(seg) > 1:
                draw.line(seg, fill=s.color, width=max(1, round(s.width * SS)), joint="curve")
            else:
                (x, y), r = seg[0], 2 * SS
                draw.ellipse([x - r, y - r, x + r, y + r], fill=s.color)
    # legend and notes, top right inside the axes
    lines = [(s.label, s.fill or s.color) for s in panel.series if s.label] + [(n, None) for n in panel.notes]
    if lines:
        w = max(draw.textlength(symbols(t), font=f_tick) for t, _ in lines) + 34 * SS
        lx, ly = px1 - w - 6 * SS, py0 + 6 * SS
        draw.rectangle([lx, ly, px1 - 6 * SS, ly + len(lines) * 15 * SS + 6 * SS], fill="white",
                       outline=(210, 210, 210), width=SS)
        for i, (text, color) in enumerate(lines):
            y = ly + 3 * SS + i * 15 * SS + 7 * SS
            if color is not None:
                draw.line([(lx + 6 * SS, y), (lx + 24 * SS, y)], fill=color, width=3 * SS)
            draw.text((lx + 30 * SS, y), symbols(text), fill="black", font=f_tick, anchor="lm")


def plot(panels: list[Panel], panel_size: tuple[int, int] = (550, 400), title: str = "") -> Image.Image:
    """Panels side by side; the image is exactly (len(panels) × width, height (+ 28 with a title)) pixels."""
    pw, ph = panel_size
    head = 28 if title else 0
    big = Image.new("RGB", (len(panels) * pw * SS, (ph + head) * SS), "white")
    draw = ImageDraw.Draw(big)
    if title:
        draw.text((big.width / 2, 14 * SS), symbols(title), fill="black", font=font(15 * SS), anchor="mm")
    for i, panel in enumerate(panels):
        _draw_panel(big, (i * pw * SS, head * SS, (i + 1) * pw * SS, (ph + head) * SS), panel)
    return big.resize((len(panels) * pw, ph + head), Image.Resampling.LANCZOS)
