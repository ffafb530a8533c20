"""The one place for the evaluation defaults (as torch-fidelity keeps them in `defaults.py`)."""

from __future__ import annotations

from pathlib import Path

from largo.paths import cache_dir, released_dirs

# -- KID: unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³ ---------------------
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # lowered to the smaller side when not given explicitly
KID_DEGREE = 3
KID_COEF = 1.0

# -- Inception Score ---------------------------------------------------------------------------------
ISC_SPLITS = 10

# -- Precision / recall (Kynkäänniemi et al. 2019) ---------------------------------------------------
PRC_K = 3
PRC_MAX_SAMPLES = 10_000  # per side; larger sets are subsampled (seeded) because the k-NN is O(N²)

# -- Variance gap ------------------------------------------------------------------------------------
HIST_BINS = 256

# -- Feature extraction ------------------------------------------------------------------------------
FEATURE_BATCH_SIZE = 64
SEED = 0  # seeds KID subsets and precision/recall subsampling
REF_SPLIT = "train"

# -- Inception-v3 (the FID network, converted from TensorFlow's 2015-12-05 graph) ---------------------
INCEPTION_NAME = "inception-v3-compat"
INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
# pytorch-fid's file name, then torch-fidelity's: both are looked for in the torch hub cache
INCEPTION_WEIGHTS_FILES = (INCEPTION_WEIGHTS_FILE, "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_SHA256_PREFIX = "6726825d"  # torch hub's convention: the file name carries its sha256 prefix
INCEPTION_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_WEIGHTS_FILE
INCEPTION_RESIZE = "tf1x-bilinear-299"  # torch-fidelity's TensorFlow-1.x-compatible bilinear upsampling
INCEPTION_FEATURE = "2048"
INCEPTION_LOGITS = "logits_unbiased"

# -- Domain classifiers ------------------------------------------------------------------------------
CLASSIFIER_WEIGHTS = "model.safetensors"
CLASSIFIER_CONFIG = "config.json"
CLASSIFIER_EPOCHS = 10
CLASSIFIER_BATCH_SIZE = 256
CLASSIFIER_LR = 3e-3
CLASSIFIER_WEIGHT_DECAY = 5e-4
CLASSIFIER_WIDTHS = (32, 64, 128)
CLASSIFIER_GROUPS = 8
NO_HFLIP_DATASETS = ("mnist",)
# `largo eval --images` without --resolution: the resolution the shipped classifiers score (folder datasets: 64).
EVAL_RESOLUTIONS = {"fashion_mnist": 32, "mnist": 32, "cifar10": 32, "flowers102": 64}
DEFAULT_EVAL_RESOLUTION = 64
# Without a classifier at the evaluated resolution, the shipped one at the largest of these below it is used on
# downsampled images (the result says so in its `resize` field).
CLASSIFIER_FALLBACK_SIZES = (64, 32)
# The data pipeline zero-pads 28×28 Fashion-MNIST and MNIST to 32×32 (largo.data); a model trained at their native
# 28 px is judged by the 32-px classifiers after that same padding (`resize`: "zero-pad-28-to-32").
PADDED_DATASETS = ("fashion_mnist", "mnist")
PAD_28_TO = 32  # flipping a digit changes what it is


def classifier_dirname(dataset: str, resolution: int) -> str:
    safe = dataset.replace(":", "_").replace("/", "_")
    return f"{safe}-{resolution}"


def classifier_search_dirs() -> list[Path]:
    """Where `largo eval` looks for `<dataset>-<res>/`: the repository's checkpoints, then the cache."""
    return [d / "classifiers" for d in released_dirs()] + [cache_dir("classifiers")]


def refstats_dir() -> Path:
    return cache_dir("refstats")


def judged_size(dataset: str, resolution: int) -> int:
    """The classifier resolution that judges `dataset` images of side `resolution` (28 → 32 for padded data)."""
    if resolution == 28 and dataset.lower().replace("-", "_") in PADDED_DATASETS:
        return PAD_28_TO
    return resolution
