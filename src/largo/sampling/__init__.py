"""Sampling from trained models: options, generation, loading a model for inference, sample folders."""

from largo.sampling.classes import grid_classes, parse_classes
from largo.sampling.folder import SampleFolder, sample_to_folder
from largo.sampling.generate import class_grid, generate_images, reverse_trajectory, trajectory_length
from largo.sampling.model import LoadedModel, load_model
from largo.sampling.options import SamplingOptions
from largo.sampling.pipeline import Pipeline

__all__ = ["LoadedModel", "Pipeline", "SampleFolder", "SamplingOptions", "class_grid", "generate_images", "grid_classes",
           "load_model", "parse_classes", "reverse_trajectory", "sample_to_folder", "trajectory_length"]
