"""Noise schedules, target parameterizations, the training loss, the CFG denoiser and the samplers."""

from largo.config import PREDICTIONS, SAMPLERS, SPACINGS
from largo.diffusion.denoiser import Denoised, Denoiser
from largo.diffusion.loss import diffusion_loss, min_snr_weight
from largo.diffusion.parameterization import convert, to_eps, to_v, to_x0, training_target
from largo.diffusion.samplers import ImageNoise, sample
from largo.diffusion.schedules import NoiseSchedule

__all__ = [
    "Denoised",
    "Denoiser",
    "ImageNoise",
    "NoiseSchedule",
    "PREDICTIONS",
    "SAMPLERS",
    "SPACINGS",
    "convert",
    "diffusion_loss",
    "min_snr_weight",
    "sample",
    "to_eps",
    "to_v",
    "to_x0",
    "training_target",
]
