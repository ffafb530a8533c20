"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", §3).

A power-function EMA averages the weights of steps τ ≤ t with weight ∝ τ^γ: its length, the relative standard
deviation σ_rel of that profile over [0, t], stays a fixed fraction of the run, whatever t is:

    σ_rel² = (γ + 1) / ((γ + 2)² (γ + 3))        (eq. 123; σ_rel 0.05 ↔ γ ≈ 16.97, 0.10 ↔ γ ≈ 6.94)

It is tracked with β_t = (1 − 1/t)^(γ+1) at update t (eq. 127; the first update copies the weights). Training keeps
two of them (σ_rel 0.05 and 0.10, as EDM2 does) and writes both every `phema_every` steps as safetensors
snapshots under RUN/phema/. After training, the weights of *any* power-function EMA length σ at the last snapshot's
step T are the least-squares combination of the snapshots whose profiles best match the profile wanted: with the
profiles' inner products ⟨p_i, p_j⟩ in closed form (eq. 151), solve A x = b, A_ij = ⟨p_i, p_j⟩,
b_i = ⟨p_i, p_(T, σ)⟩, and sum the snapshots with the weights x (normalised to sum to 1). `largo ema RUN --length
0.05,0.1,0.2` writes one sampleable folder per length.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from largo.checkpoint import export_release, latest_checkpoint, read_meta
from largo.errors import LargoError
from largo.io import atomic_write, atomic_write_json

TRACKED = (0.05, 0.10)  # σ_rel of the two EMAs kept while training (EDM2's choice)
SNAPSHOT = re.compile(r"phema-(\d{8,})-(\d+\.\d{3})\.safetensors")


# -- the maths -------------------------------------------------------------------------------------------
def exponent(sigma_rel: float) -> float:
    """γ of the power function whose relative standard deviation is σ_rel: the largest real root of
    γ³ + 7γ² + (16 − σ⁻²)γ + (12 − σ⁻²) = 0 (eq. 123 rearranged)."""
    s = float(sigma_rel) ** -2
    return float(max(np.roots([1.0, 7.0, 16.0 - s, 12.0 - s]).real))


def sigma_rel(gamma: float) -> float:
    return float(np.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))))


def beta(sigma: float, t: int) -> float:
    """The decay of update t (1-based) that keeps a power-function EMA of length σ_rel (t = 1: 0, a copy)."""
    return (1.0 - 1.0 / t) ** (exponent(sigma) + 1.0)


def profile_inner(t_a: np.ndarray, s_a: np.ndarray, t_b: np.ndarray, s_b: np.ndarray) -> np.ndarray:
    """⟨p_a, p_b⟩ of the normalised power-function profiles p(τ) = (γ+1) τ^γ / t^(γ+1) on [0, t] (eq. 151)."""
    g_a = np.vectorize(exponent)(s_a)
    g_b = np.vectorize(exponent)(s_b)
    t_a, t_b = np.asarray(t_a, np.float64), np.asarray(t_b, np.float64)
    # ∫0^min (γa+1)(γb+1) τ^(γa+γb) / (ta^(γa+1) tb^(γb+1)) dτ
    lo = np.minimum(t_a, t_b)
    return ((g_a + 1) * (g_b + 1) / (g_a + g_b + 1) * (lo / t_a) ** (g_a + 1) * (lo / t_b) ** (g_b + 1) / lo)


def coefficients(steps: list[int], sigmas: list[float], step: int, sigma: float) -> np.ndarray:
    """Weights of the snapshots (taken at `steps` with lengths `sigmas`) whose sum best matches the power-function
    EMA of length `sigma` at `step`, in the L2 sense of the profiles; they sum to 1."""
    t = np.asarray(steps, np.float64)
    s = np.asarray(sigmas, np.float64)
    a = profile_inner(t[:, None], s[:, None], t[None, :], s[None, :])
    b = profile_inner(t, s, np.full_like(t, step), np.full_like(s, sigma))
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    return x / x.sum()


def response(steps: list[int], sigmas: list[float], x: np.ndarray, length: int) -> np.ndarray:
    """The averaging profile (weight of each training step 1..length) of the combination `x` of the snapshots."""
    tau = np.arange(1, length + 1, dtype=np.float64)
    out = np.zeros(length)
    for t, s, w in zip(steps, sigmas, x):
        g = exponent(s)
        p = np.where(tau <= t, tau ** g, 0.0)
        out += w * p / p.sum()
    return out


# -- training: two tracked EMAs and their snapshots ----------------------------------------------------------
class PowerEMA:
    """The power-function EMAs of `TRACKED` lengths, in fp32, updated after every optimizer step."""

    def __init__(self, net: nn.Module, sigmas: tuple[float, ...] = TRACKED):
        self.sigmas = sigmas
        self.params = {s: [p.detach().float().clone() for p in net.parameters()] for s in sigmas}
        self.names = [n for n, _ in net.named_parameters()]

    @torch.no_grad()
    def update(self, net: nn.Module, t: int) -> None:
        """Update number t (1-based: the step count after this optimizer step)."""
        current = [p.detach().float() for p in net.parameters()]
        for s, params in self.params.items():
            torch._foreach_lerp_(params, current, 1.0 - beta(s, t))

    def state_dict(self) -> dict:
        return {f"{s:.3f}": {n: p for n, p in zip(self.names, params)} for s, params in self.params.items()}

    def load_state_dict(self, state: dict | None) -> None:
        if not state or any(f"{s:.3f}" not in state for s in self.sigmas):
            raise LargoError("cannot resume: the checkpoint has no post-hoc EMA state (phema_every was 0 when it "
                             "was written)")
        for s, params in self.params.items():
            saved = state[f"{s:.3f}"]
            for n, p in zip(self.names, params):
                p.copy_(saved[n])

    def snapshot(self, run_dir: Path, step: int) -> list[Path]:
        """RUN/phema/phema-<step>-<σ_rel>.safetensors, one per tracked length."""
        paths = []
        for s, params in self.params.items():
            path = Path(run_dir) / "phema" / f"phema-{step:08d}-{s:.3f}.safetensors"
            tensors = {n: p.contiguous().cpu() for n, p in zip(self.names, params)}
            atomic_write(path, lambda tmp, t=tensors, s=s: save_file(t, tmp, metadata={"step": str(step),
                                                                                        "sigma_rel": f"{s:.3f}"}))
            paths.append(path)
        return paths


# -- after training: reconstruction ----------------------------------------------------------------------
def snapshots(run_dir: Path) -> list[tuple[int, float, Path]]:
    """(step, σ_rel, path) of every snapshot under RUN/phema/, by step."""
    found = []
    for path in sorted((Path(run_dir) / "phema").glob("phema-*.safetensors")):
        m = SNAPSHOT.fullmatch(path.name)
        if m:
            found.append((int(m.group(1)), float(m.group(2)), path))
    return sorted(found)


def reconstruct(run_dir: str | Path, sigma: float, step: int | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The fp32 weights of the power-function EMA of length `sigma` at `step` (default: the last snapshot's),
    from the snapshots up to that step; and a record (step, σ_rel, γ, snapshots used, their weights)."""
    if not 0 < sigma < 0.28:  # σ_rel → 0.2887 as γ → 0 (a plain average): longer profiles do not exist
        raise LargoError(f"EMA length {sigma:g} is out of range: σ_rel must be in (0, 0.28]")
    found = snapshots(Path(run_dir))
    if not found:
        raise LargoError(f"{run_dir} has no post-hoc EMA snapshots (train with --phema-every N)")
    step = step or found[-1][0]
    used = [f for f in found if f[0] <= step]
    if not used or used[-1][0] != step:
        raise LargoError(f"no post-hoc EMA snapshot at step {step} in {run_dir}/phema")
    x = coefficients([u[0] for u in used], [u[1] for u in used], step, sigma)
    total: dict[str, torch.Tensor] = {}
    for weight, (_, _, path) in zip(x, used):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                value = f.get_tensor(name).double() * float(weight)
                total[name] = total[name] + value if name in total else value
    record = {"step": step, "sigma_rel": sigma, "gamma": exponent(sigma), "snapshots": len(used),
              "weights": [round(float(w), 6) for w in x]}
    return {k: v.float() for k, v in total.items()}, record


def post_hoc_ema(run_dir: str | Path, lengths: list[float], out_root: str | Path | None = None) -> list[Path]:
    """One sampleable folder per length (ema.safetensors + meta.json, like `largo export`'s), default
    RUN/phema/ema-<σ_rel>/; its meta is the latest checkpoint's plus a "phema" record."""
    run_dir = Path(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise LargoError(f"{run_dir} is not a run directory with a checkpoint")
    meta = read_meta(ckpt)
    out_root = Path(out_root) if out_root is not None else run_dir / "phema"
    written = []
    for sigma in lengths:
        weights, record = reconstruct(run_dir, sigma)
        out = out_root / f"ema-{sigma:.3f}"
        atomic_write(out / "ema.safetensors", lambda tmp, w=weights: save_file(w, tmp))
        atomic_write_json(out / "meta.json", {**meta, "step": record["step"], "phema": record,
                                              "exported_from": str(run_dir)})
        written.append(out)
    return written


def export_post_hoc(run_dir: str | Path, sigma: float, out: str | Path, dtype: str = "fp16") -> dict:
    """`largo export RUN --ema-length σ`: the reconstructed EMA of length σ as a release folder (`export_release`)."""
    with tempfile.TemporaryDirectory() as tmp:
        return export_release(post_hoc_ema(run_dir, [sigma], tmp)[0], out, dtype)
