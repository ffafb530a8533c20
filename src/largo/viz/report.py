"""`largo report`: one self-contained HTML page about a run.

RUN_DIR/report/index.html shows the run's config, training curves, sample grids by class, a reverse-process
trajectory strip and every metrics JSON under RUN_DIR as tables. Its images are embedded as base64 data URIs
(the same PNGs are also written beside it), and it has no external CSS, fonts or scripts, so the single file
opens offline, from any folder, in any browser.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from largo.checkpoint import resolve_checkpoint, run_root
from largo.errors import LargoError
from largo.io import atomic_save_image, atomic_write_text
from largo.sampling import LoadedModel, SamplingOptions, class_grid, grid_classes, load_model, parse_classes
from largo.version import __version__
from largo.viz.curves import curves_image, eval_curves_image, read_evals, read_log
from largo.viz.sampling import trajectory_strip

MAX_JSON_BYTES = 5_000_000
SKIP_DIRS = ("checkpoints", "report", "phema")  # checkpoint meta.json is not a metric (phema/ema-*: rebuilt EMAs)


# -- metrics files ---------------------------------------------------------------------------------
def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts and lists → (dotted key, scalar) pairs in document order: {"a": {"b": 1}, "c": [2]} →
    [("a.b", 1), ("c.0", 2)]. Empty containers stay as one entry."""
    if isinstance(value, dict) and value:
        return [kv for k, v in value.items() for kv in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list) and value:
        return [kv for i, v in enumerate(value) for kv in flatten(v, f"{prefix}.{i}" if prefix else str(i))]
    return [(prefix or "(value)", value)]


def find_metrics(run_dir: Path) -> list[tuple[str, Any]]:
    """(path relative to RUN_DIR, parsed JSON or an error string) for every *.json under RUN_DIR, recursively,
    except config.json (shown as the config) and checkpoints/ and report/."""
    out: list[tuple[str, Any]] = []
    for path in sorted(run_dir.rglob("*.json")):
        rel = path.relative_to(run_dir)
        if rel.parts[0] in SKIP_DIRS or rel == Path("config.json") or not path.is_file():
            continue
        if path.stat().st_size > MAX_JSON_BYTES:
            out.append((rel.as_posix(), f"not shown: larger than {MAX_JSON_BYTES // 1_000_000} MB"))
            continue
        try:
            out.append((rel.as_posix(), json.loads(path.read_text())))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            out.append((rel.as_posix(), f"unreadable JSON: {e}"))
    return out


def value_html(v: Any) -> str:
    """A table cell: floats shortened to 6 significant digits, with the exact JSON value in the title."""
    if isinstance(v, bool) or v is None:
        return html.escape(json.dumps(v))
    if isinstance(v, float):
        exact = json.dumps(v)
        short = f"{v:.6g}" if math.isfinite(v) else exact
        return f'<span title="{exact}">{short}</span>' if short != exact else exact
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return html.escape(v)
    return html.escape(json.dumps(v))  # an empty {} or []


def table_html(pairs: list[tuple[str, Any]], cls: str = "kv") -> str:
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{value_html(v)}</td></tr>" for k, v in pairs)
    return f'<table class="{cls}">\n{rows}\n</table>'


# -- page ------------------------------------------------------------------------------------------
CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #222; background: #fafafa; }
header { background: #24303f; color: #fff; padding: 14px 24px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; color: #cfd8e3; }
nav { padding: 8px 24px; background: #eef1f5; border-bottom: 1px solid #dde3ea; }
nav a { margin-right: 16px; color: #24507a; text-decoration: none; }
main { padding: 8px 24px 40px; max-width: 1400px; }
section { margin: 22px 0; }
h2 { font-size: 17px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 16px 0 6px; font-family: ui-monospace, monospace; }
figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }
img.pixels { image-rendering: pixelated; }
figcaption { color: #666; font-size: 12px; margin-top: 4px; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
th, td { border: 1px solid #e2e2e2; padding: 3px 8px; text-align: left; vertical-align: top; }
th { font-weight: normal; color: #555; font-family: ui-monospace, monospace; }
td { font-variant-numeric: tabular-nums; }
.config { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.config h3 { margin-top: 0; }
.muted { color: #777; }
"""

# Marks the page once it has loaded: data-check="ok" when every image decoded and no script error happened.
CHECK_JS = """
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message || e)); });
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
    var b = document.body;
    b.setAttribute("data-images", String(imgs.length));
    b.setAttribute("data-images-broken", String(broken.length));
    b.setAttribute("data-js-errors", String(errors.length));
    b.setAttribute("data-check", broken.length === 0 && errors.length === 0 ? "ok" : "failed");
  });
})();
"""


def _png_data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(image: Image.Image, alt: str, caption: str, pixels: bool = False) -> str:
    cls = ' class="pixels"' if pixels else ""
    return (f'<figure><img{cls} src="{_png_data_uri(image)}" alt="{html.escape(alt)}" width="{image.width}" '
            f'height="{image.height}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _log_summary(records: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    last = records[-1]
    speeds = sorted(r["images_per_s"] for r in records if isinstance(r.get("images_per_s"), (int, float)))
    out: list[tuple[str, Any]] = [("last logged step", last["step"]), ("last loss", last["loss"]),
                                  ("min loss", min(r["loss"] for r in records))]
    if isinstance(last.get("lr"), (int, float)):
        out.append(("last lr", last["lr"]))
    if speeds:
        out.append(("median images/s", round(speeds[len(speeds) // 2], 1)))
    return out


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, *, per_class: int = 8, seed: int = 0,
                 trajectory_class: str | int | None = None, sampling: dict | None = None, every: int | None = None,
                 weights: str = "ema", device: Any = "cpu", label: Callable[[str], str] = str) -> Path:
    """Write OUT_DIR (default RUN_DIR/report)/index.html and its PNGs; returns the HTML path. `sampling` holds
    `SamplingOptions.resolve` overrides; `trajectory_class` is a class name or index (default: the first)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LargoError(f"run directory not found: {run_dir}")
    ckpt = resolve_checkpoint(run_dir)  # LargoError when the run has no complete checkpoint
    if run_root(ckpt) is not None and run_root(ckpt).resolve() != run_dir.resolve():
        raise LargoError(f"{run_dir} is a checkpoint folder; pass its run directory {run_root(ckpt)}")
    records = read_log(run_dir)  # LargoError when there is no log
    if per_class < 1:
        raise LargoError("--n must be >= 1")
    model = load_model(ckpt, device, weights)
    options = SamplingOptions.resolve(model.cfg, **(sampling or {}), label=label)
    classes = grid_classes(len(model.class_names)) if model.class_names else []
    picked = parse_classes([trajectory_class] if trajectory_class is not None else [], model.class_names)
    if trajectory_class is not None and len(picked) != 1:
        raise LargoError(f"--class takes one class, got {trajectory_class!r}")
    trajectory = picked[0] if trajectory_class is not None else (classes[0] if classes else 0)

    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, Image.Image] = {"curves": curves_image(run_dir)}
    evals = eval_curves_image(run_dir)
    if evals is not None:
        pictures["evaluation"] = evals
    pictures["samples"] = class_grid(model.net, model.cfg, model.class_names, per_class=per_class, classes=classes,
                                     seed=seed, device=device, options=options, latent=model.latent)
    with torch.no_grad():
        pictures["trajectory"] = trajectory_strip(model, trajectory, [seed], options, every=every, device=device)
    for name, image in pictures.items():
        atomic_save_image(out / f"{name}.png", image)
    sampling_text = (f"{options.sampler}, {options.steps} steps, w={options.cfg:g}, seed {seed}, "
                     f"{weights} weights")
    index = out / "index.html"
    atomic_write_text(index, _page(run_dir, model, records, pictures, per_class, seed, sampling_text, trajectory))
    return index


def _metrics_html(run_dir: Path) -> str:
    metrics = find_metrics(run_dir)
    if not metrics:
        return ('<p class="muted">No metrics JSON under this run yet; <code>largo eval RUN_DIR</code> '
                "writes RUN_DIR/eval/&lt;name&gt;.json.</p>")
    return "".join(
        f"<h3>{html.escape(rel)}</h3>"
        + (table_html(flatten(data)) if not (isinstance(data, str) and data.startswith(("unreadable", "not shown")))
           else f'<p class="muted">{html.escape(data)}</p>')
        for rel, data in metrics)


def _evaluation_html(run_dir: Path, pictures: dict[str, Image.Image]) -> str:
    """The in-training evaluations (`--eval-every N`): curves, the last record and checkpoints/best."""
    if "evaluation" not in pictures:
        return ""
    last = read_evals(run_dir)[-1]
    best_meta = run_dir / "checkpoints" / "best" / "meta.json"
    best = json.loads(best_meta.read_text()).get("best") if best_meta.is_file() else None
    best_html = (f"<p>checkpoints/best: step {best['step']}, {html.escape(best['metric'])} = "
                 f"{value_html(best['value'])}</p>" if best else '<p class="muted">no checkpoints/best (no judge)</p>')
    shown = [(k, v) for k, v in last.items() if k != "event"]
    return f"""<section id="evaluation"><h2>In-training evaluation</h2>
{_figure(pictures["evaluation"], "accuracy, FD, recall and memorisation against step",
         f"log.jsonl eval records: {last.get('n', '?')} seeded samples per evaluation (image i from seed i), scored "
         "by the domain classifier against the held-out split; memorised = share of samples nearer a training "
         "image than the held-out images' 1st percentile (pixels).")}
{best_html}{table_html(shown)}</section>"""


def _page(run_dir: Path, model: LoadedModel, records: list[dict], pictures: dict[str, Image.Image], per_class: int,
          seed: int, sampling: str, trajectory_class: int) -> str:
    """The HTML of the report (every image embedded)."""
    cfg, class_names = model.cfg, model.class_names
    name = run_dir.resolve().name
    config_html = "".join(
        f'<div><h3>{html.escape(sec)}</h3>{table_html(flatten(vals) if isinstance(vals, dict) else [(sec, vals)])}'
        f"</div>" for sec, vals in cfg.to_dict().items() if not (sec == "preset" and not vals))
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    trajectory_name = class_names[trajectory_class] if class_names else trajectory_class
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>largo report · {html.escape(name)}</title>
<style>{CSS}</style>
<script>{CHECK_JS}</script>
</head>
<body>
<header><h1>largo report · {html.escape(name)}</h1>
<p>{html.escape(cfg.data.dataset)} at {cfg.data.resolution}×{cfg.data.resolution}, {len(class_names)} classes ·
checkpoint step {model.meta.get("step", "?")} · generated {html.escape(now)} by largo {__version__}</p></header>
<nav><a href="#config">Config</a><a href="#curves">Training curves</a><a href="#evaluation">Evaluation</a><a href="#samples">Samples</a>
<a href="#trajectory">Trajectory</a><a href="#metrics">Metrics</a></nav>
<main>
<section id="config"><h2>Config</h2><div class="config">{config_html}</div></section>
<section id="curves"><h2>Training curves</h2>
{_figure(pictures["curves"], "training loss and learning rate", "log.jsonl: loss per logged window (raw and "
         "smoothed) and learning rate, by optimizer step.")}
{table_html(_log_summary(records))}</section>
{_evaluation_html(run_dir, pictures)}
<section id="samples"><h2>Samples by class</h2>
{_figure(pictures["samples"], "class-conditional samples, one row per class",
         f"{per_class} per class; {sampling}; image i uses seed {seed}+i.", pixels=True)}</section>
<section id="trajectory"><h2>Reverse-process trajectory</h2>
{_figure(pictures["trajectory"], "reverse trajectory",
         f"class {trajectory_name}; x_t and the predicted x̂₀ along the reverse process ({sampling}).",
         pixels=True)}</section>
<section id="metrics"><h2>Metrics</h2>{_metrics_html(run_dir)}</section>
</main>
</body>
</html>
"""
