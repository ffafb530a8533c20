"""Inception Score: exp E_x KL(p(y|x) || p(y)), mean ± std over splits (torch-fidelity's definition, on the
Inception logits without the bias of the last layer)."""

from __future__ import annotations

import torch

from largo.metrics import defaults


def inception_score(logits: torch.Tensor, splits: int = defaults.ISC_SPLITS) -> dict:
    logits = logits.to(torch.float64)
    n = logits.shape[0]
    splits = max(1, min(splits, n))
    log_p = torch.log_softmax(logits, dim=1)
    p = log_p.exp()
    scores = []
    for idx in torch.arange(n).chunk(splits):
        lp, pp = log_p[idx], p[idx]
        log_marginal = torch.logsumexp(lp, dim=0) - torch.log(torch.tensor(float(len(idx)), dtype=torch.float64))
        kl = (pp * (lp - log_marginal)).sum(dim=1).mean()
        scores.append(kl.exp())
    s = torch.stack(scores)
    return {"mean": float(s.mean()), "std": float(s.std(unbiased=False)) if len(scores) > 1 else 0.0,
            "splits": splits}
