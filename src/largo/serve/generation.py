"""What the worker of `largo serve` computes: a generation in batches (images arrive as the grid fills) with the
domain classifier's verdict on each image, PNGs that carry their settings, a reverse trajectory strip, a zip."""

from __future__ import annotations

import functools
import io
import json
import zipfile
from dataclasses import dataclass

import torch
from PIL.PngImagePlugin import PngInfo

from largo.data import load_images
from largo.draw.grid import Section, annotated_grid
from largo.images import safe_name, to_pil, to_uint8
from largo.runtime import sampling_autocast
from largo.sampling import SamplingOptions, image_to_image, inpaint, reverse_trajectory, trajectory_length
from largo.serve.catalog import ModelCache, ModelEntry
from largo.serve.jobs import Job
from largo.version import __version__

TRAJECTORY_FRAMES = 8
BINARY = ("png", "trajectory")  # the image records' keys that hold bytes


@dataclass(frozen=True)
class Plan:
    """A checked request: which model, images (label, seed) in order, how to sample, and the batch size."""
    entry: ModelEntry
    labels: list[int]
    seeds: list[int]
    options: SamplingOptions
    batch: int

    def settings(self, k: int) -> dict:
        """What image k's PNG records about how it was made."""
        return {"model": self.entry.id, "class": self.entry.class_names[self.labels[k]], "class_index": self.labels[k],
                "seed": self.seeds[k], **self.options.to_dict(), "largo_version": __version__}


def png_bytes(image: torch.Tensor, settings: dict | None = None) -> bytes:
    """One uint8 (C, H, W) image as PNG bytes; `settings` go into text chunks (one per key, and all as JSON)."""
    info = PngInfo()
    for key, value in (settings or {}).items():
        info.add_text(f"largo:{key}", str(value))
    if settings:
        info.add_text("largo", json.dumps(settings))
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _verdicts(cache: ModelCache, entry: ModelEntry, images: torch.Tensor) -> list[dict | None]:
    found = cache.classifier(entry, images.shape[1])
    if found is None:
        return [None] * len(images)
    net, names = found
    device = next(net.parameters()).device
    with torch.no_grad():
        probs = net(images.to(device)).float().softmax(1).cpu()
    conf, top = probs.max(1)
    return [{"class": names[int(t)], "confidence": round(float(c), 4)} for t, c in zip(top, conf)]


def run_generation(job: Job, plan: Plan, cache: ModelCache) -> None:
    """Draw the plan's images batch by batch into `job.images`; stops between steps once the job is cancelled."""
    job.check_cancelled()
    model = cache.model(plan.entry, plan.options.steps)
    n = len(plan.labels)
    batches = -(-n // plan.batch)
    per_batch = trajectory_length(model.cfg, plan.options)
    job.total = batches * per_batch
    for b, start in enumerate(range(0, n, plan.batch)):
        labels = torch.tensor(plan.labels[start:start + plan.batch], dtype=torch.long)
        images = model.generate(labels, plan.seeds[start:start + plan.batch], plan.options,
                                callback=lambda done, _n, b=b: job.progress(b * per_batch + done, job.total))
        verdicts = _verdicts(cache, plan.entry, images)
        for j, (image, verdict) in enumerate(zip(images, verdicts)):
            k = start + j
            job.images.append({"index": k, **plan.settings(k), "verdict": verdict,
                               "png": png_bytes(image, plan.settings(k))})
        job.check_cancelled()


@dataclass(frozen=True)
class EditPlan(Plan):
    """A checked edit request: the plan of one image, with the decoded input (uint8 (1, C, H, W)), the mask
    (bool (1, 1, H, W), True = fill; None for image-to-image) and the edit's own settings."""
    image: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    edit: dict | None = None

    def settings(self, k: int) -> dict:
        return {**super().settings(k), **(self.edit or {})}


def run_edit(job: Job, plan: EditPlan, cache: ModelCache) -> None:
    """One edited image (image-to-image or inpainting) into `job.images`, with the classifier's verdict."""
    job.check_cancelled()
    model = cache.model(plan.entry, plan.options.steps)
    kind = plan.edit["edit"]
    if kind == "img2img":
        result = image_to_image(model.net, model.cfg, plan.image, plan.labels, plan.edit["strength"], plan.seeds,
                                plan.options, callback=job.progress)
    else:
        result = inpaint(model.net, model.cfg, plan.image, plan.mask, plan.labels, plan.seeds, plan.options,
                         method=plan.edit["method"], callback=job.progress)
    job.total = job.done = max(job.total, 1)
    verdict = _verdicts(cache, plan.entry, result.images)[0]
    settings = {**plan.settings(0), "evaluations_per_image": result.evaluations}
    job.images.append({"index": 0, **settings, "verdict": verdict, "png": png_bytes(result.images[0], settings)})


@functools.lru_cache(maxsize=2)
def _test_split(dataset: str, resolution: int, data_root: str):
    return load_images(dataset, "test", resolution, data_root)


def test_images(entry: ModelEntry):
    """The held-out test split of a model's dataset at its resolution (the page's "load a test image")."""
    return _test_split(entry.cfg.data.dataset, entry.cfg.data.resolution, entry.cfg.data.data_root or "")


def _frames(n_steps: int, frames: int = TRAJECTORY_FRAMES) -> list[int]:
    if n_steps <= frames:
        return list(range(n_steps))
    return sorted({round(i * (n_steps - 1) / (frames - 1)) for i in range(frames)})


def trajectory_strip(plan: Plan, k: int, cache: ModelCache) -> bytes:
    """PNG: x_t and the predicted x̂₀ at ~8 of the reverse steps of image k and its output, drawn again from
    its seed, label and settings (the same image as the grid's)."""
    model = cache.model(plan.entry, plan.options.steps)
    n = trajectory_length(model.cfg, plan.options)
    idx = _frames(n)
    labels = torch.tensor([plan.labels[k]], dtype=torch.long)
    with sampling_autocast(next(model.net.parameters()).device, plan.options.precision):  # as the grid's image
        final, traj = reverse_trajectory(model.net, model.cfg, labels, [plan.seeds[k]], plan.options,
                                         latent=model.latent)
    out = to_uint8(final.cpu())[0]
    sec = Section(f"{plan.entry.class_names[plan.labels[k]]} · seed {plan.seeds[k]} · {plan.options.describe()}",
                  [f"step {i + 1}/{n}" for i in idx] + ["output"])
    sec.add("x_t", [to_uint8(traj[i]["x_t"][0]) for i in idx] + [out])
    sec.add("x̂₀", [to_uint8(traj[i]["x0_hat"][0]) for i in idx] + [out])
    buf = io.BytesIO()
    annotated_grid([sec]).save(buf, format="PNG")
    return buf.getvalue()


def image_name(record: dict) -> str:
    return f"{record['index']:02d}_{safe_name(record['class'])}_seed{record['seed']}.png"


def zip_bytes(job: Job) -> bytes:
    """The job's PNGs (settings in their text chunks) and settings.json, as one zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for record in list(job.images):
            z.writestr(image_name(record), record["png"])
        z.writestr("settings.json", json.dumps({"request": job.request, "images": [
            {k: v for k, v in r.items() if k not in BINARY} for r in list(job.images)]}, indent=1))
    return buf.getvalue()

