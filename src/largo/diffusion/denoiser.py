"""Network + schedule + classifier-free guidance → one denoiser that every sampler calls."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from largo.diffusion import edm
from largo.diffusion.parameterization import check_prediction, to_eps, to_x0
from largo.diffusion.schedules import NoiseSchedule
from largo.errors import LargoError
from largo.runtime import model_num_classes, unwrap_model


@dataclass
class Denoised:
    """A denoiser's answer at x_t = α x0 + σ ε, all float64 (alpha/sigma are (B, 1, …, 1))."""

    x0: Tensor
    eps: Tensor
    alpha: Tensor
    sigma: Tensor

    @property
    def v(self) -> Tensor:
        return self.alpha * self.eps - self.sigma * self.x0


def _param_dtype(net: nn.Module) -> torch.dtype:
    p = next(net.parameters(), None)
    return p.dtype if p is not None else torch.float32


class Denoiser:
    """Wraps a trained network; the one place classifier-free guidance is written.

    Guided noise prediction (LARGO eq. 10):   ε̃ = ε(x, ∅) + w · (ε(x, y) − ε(x, ∅)),   w = `cfg_scale`.
    Eq. 11's form ε̃ = (1 + w′) ε(x, y) − w′ ε(x, ∅) is the same thing with w = 1 + w′ (so w′ = 0 ⇔ w = 1).
    w = 1 is one conditional pass; otherwise the conditional and unconditional inputs are concatenated into ONE
    forward pass of 2B. The formula is applied to the network's own target (ε, x0 or v, per `prediction`) and the
    result converted exactly to ε and x0: at fixed x_t every conversion is affine in the prediction, so this is
    identical to guiding ε, and keeps x0 defined at ᾱ = 0 (zero terminal SNR) for v/x0 networks.

    prediction "edm" (EDM's preconditioned F, `sigma_data` given): the net sees c_in x_σ and c_noise(σ) with
    σ = σ_t/α_t instead of x_t and t, and x0 = c_skip x_σ + c_out F; guidance mixes F (affine in F as well).
    `cfg_interval=(lo, hi)` applies guidance only where lo ≤ t ≤ hi (timesteps, inclusive); elsewhere the plain
    conditional prediction is used.
    Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself"): with `guide`, a
    weaker denoiser of the same data (an earlier snapshot, a smaller net), the guide's conditional x0 replaces the
    unconditional branch: D = D_guide(x, y) + w · (D(x, y) − D_guide(x, y)), mixed on x0 (affine in every target,
    so the same as mixing ε), with the same w (`cfg_scale`), interval and mask; w = 1 is the conditional model. Labels `None` mean unconditional generation (the null class, no guidance).
    A guidance-distilled student (`largo distill`; its net has a `guidance_embed`) takes w as an input: one
    forward pass of B per step, w where guided and 1 elsewhere (the conditional model), no unconditional branch.
    The net is called in its parameter dtype with float32 t; results are float64. The caller puts the net in
    eval mode (dropout) and picks the weights (EMA); the Denoiser changes nothing on it.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: NoiseSchedule,
        prediction: str,
        cfg_scale: float = 1.0,
        cfg_interval: tuple[int, int] | None = None,
        num_classes: int | None = None,
        sigma_data: float | None = None,
        guide: Denoiser | None = None,
    ):
        self.net = net
        self.schedule = schedule
        self.prediction = check_prediction(prediction)
        self.cfg_scale = float(cfg_scale)
        self.num_classes = model_num_classes(net) if num_classes is None else int(num_classes)
        if self.num_classes == 0 and self.cfg_scale != 1.0:
            raise LargoError(f"guidance scale {cfg_scale} needs a class-conditional checkpoint; this one is "
                             "unconditional (use cfg 1)")
        if cfg_interval is not None:
            lo, hi = cfg_interval
            if not 0 <= lo <= hi:
                raise LargoError(f"cfg_interval must be (lo, hi) with 0 <= lo <= hi, got {cfg_interval}")
        self.cfg_interval = cfg_interval
        if self.prediction == "edm" and sigma_data is None:
            raise LargoError("an EDM network needs its sigma_data (the run config's diffusion.sigma_data)")
        self.sigma_data = sigma_data
        if guide is not None:
            if self.num_classes == 0 or guide.num_classes != self.num_classes:
                raise LargoError(f"the guide model has {guide.num_classes} classes and the model {self.num_classes}; "
                                 "autoguidance needs a guide of the same classes")
            if guide.schedule.num_timesteps != schedule.num_timesteps or not torch.equal(
                    guide.schedule.alphas_cumprod.cpu(), schedule.alphas_cumprod.cpu()):
                raise LargoError("the guide model has another noise schedule than the model; autoguidance needs the "
                                 "same schedule (and timesteps)")
        self.guide = guide
        self.guidance_input = getattr(unwrap_model(net), "guidance_embed", None) is not None
        if self.guidance_input and guide is not None:
            raise LargoError("a guidance-distilled student takes w as an input; autoguidance does not apply to it")
        self.evaluations = 0  # network evaluations (images × forward passes of the model and of its guide)

    # -- helpers ---------------------------------------------------------------------------------
    def _labels(self, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if y is None:
            return torch.full((batch,), self.num_classes, dtype=torch.int64, device=device)
        if torch.is_tensor(y) and y.is_floating_point():  # mixing weights over the classes and the null row
            if y.shape != (batch, self.num_classes + 1) or self.num_classes == 0:
                raise LargoError(f"class weights must be ({batch}, {self.num_classes + 1}), got {tuple(y.shape)}")
            return y.to(device, torch.float32)
        y = torch.as_tensor(y, dtype=torch.int64, device=device).reshape(-1)
        if y.shape[0] != batch:
            raise LargoError(f"got {y.shape[0]} labels for a batch of {batch}")
        if bool(((y < 0) | (y > self.num_classes)).any()):
            raise LargoError(f"labels must be in [0, {self.num_classes}] ({self.num_classes} = null class)")
        return y

    def _null(self, y: Tensor) -> Tensor:
        """The null class for every row of y (labels, or one-hot weights for class weights)."""
        if y.is_floating_point():
            return torch.nn.functional.one_hot(torch.full(y.shape[:1], self.num_classes, device=y.device),
                                               self.num_classes + 1).to(y.dtype)
        return torch.full_like(y, self.num_classes)

    def _guided_mask(self, t: Tensor, y: Tensor) -> Tensor:
        """Which samples get guidance: w != 1, a real label, and t inside the interval."""
        mask = y[:, self.num_classes] < 1 if y.is_floating_point() else y != self.num_classes
        if self.cfg_scale == 1.0:
            return torch.zeros_like(mask)
        if self.cfg_interval is not None:
            lo, hi = self.cfg_interval
            mask &= (t >= lo) & (t <= hi)
        return mask

    def _net(self, x_t: Tensor, t: Tensor, y: Tensor, alpha: Tensor, sigma: Tensor,
             guidance: Tensor | None = None) -> Tensor:
        self.evaluations += x_t.shape[0]
        dtype = _param_dtype(self.net)
        if self.prediction == "edm":  # the σ view: x_σ = x_t / α, σ = σ_t / α
            x_sigma, s = x_t / alpha, (sigma / alpha).reshape(-1)
            return edm.call_preconditioned(self.net, x_sigma.to(dtype), s, y, self.sigma_data).to(torch.float64)
        extra = {} if guidance is None else {"guidance": guidance.to(torch.float32)}
        out = self.net(x_t.to(dtype), t.to(torch.float32), y, **extra)
        return out.to(torch.float64)

    # -- the denoiser ----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor | float, y: Tensor | None) -> Denoised:
        """Denoise x_t (B, C, H, W) at timestep(s) t (scalar or (B,), int or float) for labels y (B,) or None."""
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        on_cpu = self.schedule.betas.device.type == "cpu"
        abar = self.schedule.alpha_bar(t.cpu() if on_cpu else t).to(x_t.device)
        return self._denoise(x_t, t, y, abar)

    @torch.no_grad()
    def denoise_sigma(self, x_sigma: Tensor, sigma: float | Tensor, y: Tensor | None) -> Denoised:
        """Denoise in the σ view x_σ = x0 + σ ε (EDM/Karras samplers): x_t = α x_σ with α = 1/sqrt(1 + σ²);
        the net's timestep is schedule.sigma_to_t(σ) (the inverse of the λ interpolation, see schedules.py).
        σ is a scalar or (B,); the returned alpha/sigma are the VP ones, x0 and ε are the same in both views."""
        sig = torch.as_tensor(sigma, dtype=torch.float64)
        t = self.schedule.sigma_to_t(sig.cpu()).to(x_sigma.device).expand(x_sigma.shape[0])
        sig = sig.expand(x_sigma.shape[0])
        abar = (1.0 / (1.0 + sig**2)).to(x_sigma.device)
        shape = (-1,) + (1,) * (x_sigma.ndim - 1)
        return self._denoise(x_sigma.to(torch.float64) * abar.sqrt().reshape(shape), t, y, abar)

    def _denoise(self, x_t: Tensor, t: Tensor, y: Tensor | None, abar: Tensor) -> Denoised:
        b, device = x_t.shape[0], x_t.device
        x_t = x_t.to(torch.float64)
        t = t.to(device)
        y = self._labels(y, b, device)
        shape = (b,) + (1,) * (x_t.ndim - 1)
        alpha, sigma = abar.sqrt().reshape(shape), (1.0 - abar).sqrt().reshape(shape)
        if self.prediction == "eps" and bool((alpha == 0).any()):
            raise LargoError("an eps-prediction network has no x0 at zero SNR (ᾱ = 0): zero_terminal_snr needs "
                             "prediction v or x0, or a sampler grid that skips the last timestep")

        guided = self._guided_mask(t, y)
        if self.guide is not None:
            return self._autoguided(x_t, t, y, abar, alpha, sigma, guided)
        if self.guidance_input and self.cfg_scale != 0.0:  # a distilled student: w is an input, one pass
            w = torch.where(guided, torch.full_like(t, self.cfg_scale, dtype=torch.float32), 1.0)
            pred = self._net(x_t, t, y, alpha, sigma, guidance=w)
        elif self.cfg_scale == 0.0:  # w = 0 is the unconditional model: one pass, null label where guided
            rows = guided.reshape(-1, *(1,) * (y.ndim - 1))
            pred = self._net(x_t, t, torch.where(rows, self._null(y), y), alpha, sigma)
        elif bool(guided.any()):
            null = self._null(y)
            pred_c, pred_u = self._net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null]),
                                       torch.cat([alpha, alpha]), torch.cat([sigma, sigma])).chunk(2)
            # Mixing in the net's own target equals mixing ε (conversions are affine in the prediction).
            pred = torch.where(guided.reshape(shape), pred_u + self.cfg_scale * (pred_c - pred_u), pred_c)
        else:
            pred = self._net(x_t, t, y, alpha, sigma)
        return self._converted(pred, x_t, alpha, sigma)

    def _converted(self, pred: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Denoised:
        if self.prediction == "edm":
            x0 = edm.denoised(pred, x_t / alpha, (sigma / alpha).reshape(-1), self.sigma_data)
            return Denoised(x0=x0, eps=to_eps(x0, "x0", x_t, alpha, sigma), alpha=alpha, sigma=sigma)
        # Both conversions straight from the net's target: exact, and x0 stays defined at α = 0 for v/x0 nets.
        x0 = to_x0(pred, self.prediction, x_t, alpha, sigma)
        eps = to_eps(pred, self.prediction, x_t, alpha, sigma)
        return Denoised(x0=x0, eps=eps, alpha=alpha, sigma=sigma)

    def _autoguided(self, x_t: Tensor, t: Tensor, y: Tensor, abar: Tensor, alpha: Tensor, sigma: Tensor,
                    guided: Tensor) -> Denoised:
        """D = D_guide + w (D − D_guide) on x0 and on ε where guided; the guide runs only where it is needed."""
        main = self._converted(self._net(x_t, t, y, alpha, sigma), x_t, alpha, sigma)
        if not bool(guided.any()):
            return main
        rows = guided.nonzero().reshape(-1)
        weak = self.guide._denoise(x_t[rows], t[rows], y[rows], abar.reshape(-1)[rows])
        w = self.cfg_scale
        for name in ("x0", "eps"):  # both affine in the prediction: mixing either is mixing the other
            mixed = getattr(main, name).clone()
            mixed[rows] = getattr(weak, name) + w * (getattr(main, name)[rows] - getattr(weak, name))
            setattr(main, name, mixed)
        return main

    @property
    def guide_evaluations(self) -> int:
        return 0 if self.guide is None else self.guide.evaluations
