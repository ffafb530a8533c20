"""Learned critics of generated images: scores by a pretrained network and re-ranking of candidate samples."""

from largo.critics.clip import ClipCritic, clip_scores
from largo.critics.rerank import ClassifierCritic, check_candidates, generate_reranked, load_critic

__all__ = ["ClipCritic", "clip_scores", "ClassifierCritic", "check_candidates", "generate_reranked", "load_critic"]
