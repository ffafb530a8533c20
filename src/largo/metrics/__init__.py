"""Evaluation metrics for generated images: FID/KID/IS (standard Inception-v3 via torch-fidelity), FD/KID and
precision/recall in a domain classifier's feature space, class-matched FD/KID, classifier accuracy of
conditional samples, and the pixel variance gap. Each metric works on uint8 image tensors or feature tensors.

Import what you need from the modules (`largo.metrics.fid`, `.kid`, ...); this package imports nothing heavy."""

__all__ = ["defaults", "fid", "kid", "isc", "prc", "class_matched", "variance_gap", "classifier", "inception",
           "features", "refstats", "registry", "evaluate", "folder"]
