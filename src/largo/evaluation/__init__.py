"""Evaluation pipelines over `largo.metrics`: sample-then-evaluate (`eval`, `sweep`), folders and image sets, and
an autoencoder's reconstructions."""

from largo.evaluation.autoencoder import evaluate_autoencoder
from largo.evaluation.recognisability import recognisability
from largo.evaluation.pipeline import (EvalSettings, Judge, SampledEval, evaluate_folder, evaluate_images,
                                       evaluate_run, make_judge, run_source, sample_and_evaluate)

__all__ = ["EvalSettings", "Judge", "SampledEval", "evaluate_autoencoder", "evaluate_folder", "evaluate_images",
           "evaluate_run", "make_judge", "recognisability", "run_source", "sample_and_evaluate"]
