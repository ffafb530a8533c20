"""Sampling from trained models: options, generation, loading a model for inference, sample folders.

Names are imported on first use, so `largo.sampling.options` (the vocabulary the CLI declares its flags from)
loads without torch."""

from largo.lazy import lazy_exports

# Public name → the module that defines it.
_EXPORTS = {
    "grid_classes": "largo.sampling.classes", "parse_classes": "largo.sampling.classes",
    "SampleFolder": "largo.sampling.folder", "sample_to_folder": "largo.sampling.folder",
    "class_grid": "largo.sampling.generate", "generate_images": "largo.sampling.generate",
    "reverse_trajectory": "largo.sampling.generate", "trajectory_length": "largo.sampling.generate",
    "LoadedModel": "largo.sampling.model", "load_model": "largo.sampling.model",
    "SamplingOptions": "largo.sampling.options",
    "EditResult": "largo.sampling.editing", "INPAINT_METHODS": "largo.sampling.editing",
    "image_to_image": "largo.sampling.editing", "inpaint": "largo.sampling.editing",
    "interpolate_classes": "largo.sampling.editing", "interpolate_seeds": "largo.sampling.editing",
    "load_guide": "largo.sampling.guide",
    "Pipeline": "largo.sampling.pipeline",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
