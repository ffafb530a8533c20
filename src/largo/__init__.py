"""largo: class-conditional image generation with denoising diffusion models.

The Python API, the same library functions the `largo` command calls:

    import largo
    pipe = largo.Pipeline.from_pretrained("fashion_mnist-32-cpu")      # a released name, a run or a checkpoint
    images = pipe(["Sneaker", "Bag"], per_class=4, steps=20)            # 8 PIL images
    sandal = pipe.edit(images[0], "Sandal", strength=0.6)               # editing: also pipe.inpaint, interpolate
    cfg = largo.preset_config("demo")                                   # typed dataclass config
    summary = largo.train(cfg, "runs/mine")                             # a run directory with checkpoints
    largo.distill("runs/mine", "runs/fast", largo.DistillSettings(8, 1, (3, 3), iters_per_round=400))  # 8…1 steps
    metrics = largo.evaluate_images(pipe(per_class=50, output="tensor"), labels, dataset="fashion_mnist")

Names are imported on first use, so `import largo` (and `largo --help`) does not load torch.
"""

from __future__ import annotations

from largo.lazy import lazy_exports
from largo.version import __version__

# Public name → the module that defines it.
_EXPORTS = {
    "Pipeline": "largo.sampling",
    "SamplingOptions": "largo.sampling",
    "load_model": "largo.sampling",
    "generate_images": "largo.sampling",
    "image_to_image": "largo.sampling",
    "inpaint": "largo.sampling",
    "interpolate_classes": "largo.sampling",
    "interpolate_seeds": "largo.sampling",
    "RunConfig": "largo.config",
    "preset_config": "largo.config",
    "PRESETS": "largo.config",
    "train": "largo.train",
    "distill": "largo.train",
    "DistillSettings": "largo.train",
    "Trainer": "largo.train",
    "post_hoc_ema": "largo.train",
    "EvalSettings": "largo.evaluation",
    "evaluate_images": "largo.evaluation",
    "evaluate_folder": "largo.evaluation",
    "evaluate_run": "largo.evaluation",
    "LargoError": "largo.errors",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
