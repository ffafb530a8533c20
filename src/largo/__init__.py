"""largo: class-conditional image generation with denoising diffusion models."""

__version__ = "0.1.0"
