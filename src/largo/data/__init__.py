"""Datasets as cached uint8 tensors, and the seeded batch stream used for training."""

from largo.data.datasets import DATASETS, ImageSet, load_images, long_tailed, random_subset
from largo.data.loader import BatchStream, class_balanced_weights

__all__ = ["DATASETS", "ImageSet", "load_images", "long_tailed", "random_subset", "BatchStream", "class_balanced_weights"]
