"""The names each choice accepts: one list per choice, used by the config, the CLI and the diffusion code."""

SCHEDULES = ("linear", "cosine", "sigmoid", "karras")
PREDICTIONS = ("eps", "x0", "v", "edm")
WEIGHTINGS = ("uniform", "min_snr", "uncertainty")
CLASS_EMBEDDINGS = ("concat", "add")
UPSAMPLES = ("nearest_conv", "transposed")
SAMPLERS = ("ddpm", "ddim", "dpmpp2m", "dpmpp3m", "euler", "heun")
SPACINGS = ("leading", "linspace", "trailing")
SAMPLE_PRECISIONS = ("auto", "fp32", "bf16")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LATENT_NORMS = ("std", "channel")
RECONSTRUCTION_LOSSES = ("l1", "l2")
SPLITS = ("train", "test", "all")  # a dataset's split: its training images, its test images, or both
WEIGHTS = ("ema", "online")  # which weights of a checkpoint sample: the EMA or the online network
RERANK_CRITICS = ("classifier", "clip")  # who rates the candidates of --rerank
