"""Mean-field Gaussian Bayesian layers: Linear, Conv1d and Conv2d with q(W) = N(mu, sigma^2).

Each weight has a mean `weight_mu` and an unconstrained `weight_rho` with
sigma = softplus(rho) (default; rho initialised to log(expm1(sigma0))) or sigma = exp(rho).
Biases are deterministic unless `bayesian_bias=True`. How a forward pass samples (`noise`):

- "lrt" (local reparameterisation, Kingma et al. 2015): the pre-activations are sampled,
  mean op(x, mu) + b and variance op(x^2, sigma^2), so every example gets its own weight draw
  (exact in distribution for an MLP; an approximation for convolutions, whose positions
  share a kernel);
- "flipout" (Wen et al. 2018): one weight perturbation per batch, decorrelated across
  examples by random sign flips of its inputs and outputs;
- "weights": one weight draw W = mu + sigma * eps shared by the whole batch (exact for any
  architecture; what the MC predictive uses at evaluation).

`layer.sample = False` (or the `posterior_mean` context) gives the posterior-mean pass W = mu.
Sampling does not depend on train/eval mode, so BatchNorm keeps its running statistics at
evaluation while weights are still drawn.

The weights' sigma is computed once per value of rho: the forward pass keeps the values (no
graph) and `kl()` and later passes reuse them, with the derivative of sigma attached, until rho
changes in place (optimiser steps, `load_state_dict`, any in-place op bumps the tensor's
version). Writing through `rho.data` bypasses the version counter: write to the parameter
under `torch.no_grad()` instead.

Sparse posteriors (SSVI): an optional boolean `mask` buffer (None when dense) of the weight's
shape restricts q to the active coordinates. The forward uses mu * mask and sigma * mask, so
inactive weights are exactly 0 and get no gradient; the KL sums over active coordinates only;
`set_mask` / `apply_mask_` keep mu exactly 0 where the mask is False. Activity is never inferred
from parameter values. Setting `keep_mean_grad = True` retains the gradient of the effective
mean mu * mask (dense, non-zero at inactive positions) in `effective_mean.grad`, for growth
criteria.

Cost protocol of `varbayes.metrics.cost`: `cost_info(output) -> (n, a, P)` (weights, active
weights, output positions per example) and `active_parameter_count()` (2 per active weight
plus the biases).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from varbayes.errors import VarbayesError, one_of
from varbayes.nn.priors import GaussianPrior, Prior, gaussian_kl

Noise = Literal["lrt", "flipout", "weights"]
SigmaParam = Literal["softplus", "exp"]
NOISES = ("lrt", "flipout", "weights")
SIGMA_PARAMS = ("softplus", "exp")
LRT_EPS = 1e-8  # added to the LRT variance before the square root (the reference's value)


def inverse_sigma(sigma: float, sigma_param: str = "softplus") -> float:
    """The rho giving standard deviation `sigma`: log(expm1(sigma)) for softplus, log(sigma)
    for exp."""
    if not (sigma > 0 and math.isfinite(sigma)):
        raise VarbayesError(f"initial sigma must be finite and > 0; got {sigma}")
    if sigma_param == "exp":
        return math.log(sigma)
    return sigma + math.log(-math.expm1(-sigma))  # = log(expm1(sigma)), stable for any sigma


class MeanFieldLayer(nn.Module):
    """Shared machinery of the mean-field layers; subclasses define `_op` (the linear map)."""

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        out_features: int,
        bias: bool,
        *,
        prior: Prior | None = None,
        init_sigma: float = 0.01,
        sigma_param: SigmaParam = "softplus",
        noise: Noise = "lrt",
        bayesian_bias: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if sigma_param not in SIGMA_PARAMS:
            raise one_of("sigma_param", sigma_param, SIGMA_PARAMS)
        if noise not in NOISES:
            raise one_of("noise", noise, NOISES)
        kw = {"device": device, "dtype": dtype}
        self.prior: Prior = prior if prior is not None else GaussianPrior()
        self.sigma_param = sigma_param
        self.noise: str = noise
        self.sample = True
        self.keep_mean_grad = False
        self.effective_mean: torch.Tensor | None = None
        self.init_sigma = init_sigma
        rho0 = inverse_sigma(init_sigma, sigma_param)
        self.weight_mu = nn.Parameter(torch.empty(weight_shape, **kw))
        self.weight_rho = nn.Parameter(torch.full(weight_shape, rho0, **kw))
        self.bayesian_bias = bool(bias and bayesian_bias)
        if bias and bayesian_bias:
            self.bias_mu = nn.Parameter(torch.zeros(out_features, **kw))
            self.bias_rho = nn.Parameter(torch.full((out_features,), rho0, **kw))
            self.register_parameter("bias", None)
        elif bias:
            self.bias = nn.Parameter(torch.zeros(out_features, **kw))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("mask", None)
        self._sigma_cache: tuple[tuple[Any, ...], torch.Tensor] | None = None
        self.register_buffer("prior_precision", None)

    # --- the posterior ----------------------------------------------------------------------

    def sigma_of(self, rho: torch.Tensor) -> torch.Tensor:
        """Standard deviation from the unconstrained parameter."""
        return F.softplus(rho) if self.sigma_param == "softplus" else torch.exp(rho)

    def weight_mean(self) -> torch.Tensor:
        """mu, with inactive coordinates exactly 0 when a mask is set."""
        mu = self.weight_mu if self.mask is None else self.weight_mu * self.mask
        if self.keep_mean_grad and mu.requires_grad:
            if mu is self.weight_mu:
                mu = mu * 1.0  # a separate tensor, so its gradient is the effective one
            mu.retain_grad()
            self.effective_mean = mu
        return mu

    def weight_sigma(self) -> torch.Tensor:
        """sigma, 0 at inactive coordinates."""
        sigma = self._weight_sigma_unmasked()
        return sigma if self.mask is None else sigma * self.mask

    def _weight_sigma_unmasked(self) -> torch.Tensor:
        """sigma of every weight, computed once per value of rho (see the module doc): a
        training step pays the transcendental functions once, for the sample and the KL."""
        rho = self.weight_rho
        key = (rho._version, rho.data_ptr(), rho.dtype, rho.device, self.sigma_param)
        if self._sigma_cache is not None and self._sigma_cache[0] == key:
            return _with_sigma_gradient(rho, self._sigma_cache[1], self.sigma_param)
        sigma = self.sigma_of(rho)
        self._sigma_cache = (key, sigma.detach())
        return sigma

    def kl(self) -> torch.Tensor:
        """KL(q || prior) summed over the active weights (and Bayesian biases); with a
        per-weight `prior_precision` set, the weights' prior is N(0, 1 / precision)."""
        mu, sigma = self.weight_mu, self._weight_sigma_unmasked()
        precision = self.prior_precision
        if self.mask is not None:
            mu, sigma = mu[self.mask], sigma[self.mask]
            precision = None if precision is None else precision[self.mask]
        if precision is None:
            total = self.prior.kl_sum(mu, sigma)
        else:
            total = gaussian_kl(mu, sigma, 0.0, precision.rsqrt()).sum()
        if self.bayesian_bias:
            total = total + self.prior.kl_sum(self.bias_mu, self.sigma_of(self.bias_rho))
        return total

    # --- the forward pass -------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = self.weight_mean()
        b_mu = self.bias_mu if self.bayesian_bias else self.bias
        if not self.sample:
            return self._op(x, mu, b_mu)
        sigma = self.weight_sigma()
        b_sigma = self.sigma_of(self.bias_rho) if self.bayesian_bias else None
        if self.noise == "lrt":
            mean = self._op(x, mu, b_mu)
            var = self._op(x * x, sigma * sigma, None if b_sigma is None else b_sigma**2)
            return torch.addcmul(mean, torch.sqrt(var + LRT_EPS), torch.randn_like(mean))
        if self.noise == "weights":
            w = torch.addcmul(mu, sigma, torch.randn_like(sigma))
            b = b_mu if b_sigma is None else torch.addcmul(b_mu, b_sigma,
                                                           torch.randn_like(b_sigma))
            return self._op(x, w, b)
        # flipout
        mean = self._op(x, mu, b_mu)
        s_in, s_out = self._signs(x, mean)
        out = mean + self._op(x * s_in, sigma * torch.randn_like(sigma), None) * s_out
        if b_sigma is not None:
            out = out + self._expand_bias(b_sigma * torch.randn_like(b_sigma)) * s_out
        return out

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _signs(self, x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random +-1 per example and input / output channel (broadcast over positions)."""
        extra = (1,) * (x.dim() - 2)
        s_in = _rademacher((x.shape[0], x.shape[1], *extra), x)
        s_out = _rademacher((out.shape[0], out.shape[1], *extra), x)
        return s_in, s_out

    def _expand_bias(self, b: torch.Tensor) -> torch.Tensor:
        return b.reshape(-1, *((1,) * (self.weight_mu.dim() - 2)))

    def set_prior_precision(self, precision: torch.Tensor | None) -> None:
        """A per-weight Gaussian prior N(0, 1 / precision) for the weights (weight-shaped,
        > 0), replacing `prior` in the KL (hierarchical priors such as Turbo-VBI's update it
        between epochs); None returns to `prior`. Bayesian biases keep `prior`."""
        if precision is None:
            self.prior_precision = None
            return
        if precision.shape != self.weight_mu.shape or not bool((precision > 0).all()):
            raise VarbayesError(f"prior precision must be > 0 with the weight shape "
                                f"{tuple(self.weight_mu.shape)}; got {tuple(precision.shape)}")
        self.prior_precision = precision.detach().to(self.weight_mu).clone()

    # --- masks (sparse subspaces) -----------------------------------------------------------

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Restrict the posterior to `mask` (bool, weight-shaped; None: dense). mu is set to
        exactly 0 at inactive coordinates."""
        if mask is None:
            self.mask = None
            return
        if mask.shape != self.weight_mu.shape:
            raise VarbayesError(f"mask shape {tuple(mask.shape)} does not match the weight "
                                f"shape {tuple(self.weight_mu.shape)}")
        self.mask = mask.to(device=self.weight_mu.device, dtype=torch.bool).clone()
        self.apply_mask_()

    @torch.no_grad()
    def apply_mask_(self) -> None:
        """Keep mu exactly 0 where the mask is False (call after optimiser steps)."""
        if self.mask is not None:
            self.weight_mu.masked_fill_(~self.mask, 0.0)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        # A saved mask is adopted even when this layer was built dense (rebuilding a model).
        key = prefix + "mask"
        if key in state_dict and self.mask is None:
            self.mask = torch.ones_like(self.weight_mu, dtype=torch.bool)
        if prefix + "prior_precision" in state_dict and self.prior_precision is None:
            self.prior_precision = torch.ones_like(self.weight_mu)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- cost protocol (varbayes.metrics.cost) ----------------------------------------------

    @property
    def n_weights(self) -> int:
        return self.weight_mu.numel()

    @property
    def n_active(self) -> int:
        return self.n_weights if self.mask is None else int(self.mask.sum())

    def cost_info(self, output: torch.Tensor) -> tuple[int, int, int]:
        """(n weights, a active weights, P output positions per example) of this call."""
        return self.n_weights, self.n_active, math.prod(self._positions(output))

    def active_parameter_count(self) -> int:
        """Variational parameters in use: mu and rho per active weight, plus the biases."""
        bias = 0
        if self.bayesian_bias:
            bias = 2 * self.bias_mu.numel()
        elif self.bias is not None:
            bias = self.bias.numel()
        return 2 * self.n_active + bias

    def _positions(self, output: torch.Tensor) -> tuple[int, ...]:
        return tuple(output.shape[2:])

    def extra_repr(self) -> str:
        mask = "" if self.mask is None else f", density={self.n_active / self.n_weights:.3g}"
        return (f"weight={tuple(self.weight_mu.shape)}, noise={self.noise}, "
                f"sigma_param={self.sigma_param}, prior={self.prior}{mask}")


class MeanFieldLinear(MeanFieldLayer):
    """y = x W^T + b with a mean-field Gaussian W (n_out x n_in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 **kwargs: Any) -> None:
        super().__init__((out_features, in_features), out_features, bias, **kwargs)
        self.in_features, self.out_features = in_features, out_features
        _init_like_torch(self, in_features)

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b)

    def _signs(self, x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _rademacher(x.shape, x), _rademacher(out.shape, x)

    def _expand_bias(self, b: torch.Tensor) -> torch.Tensor:
        return b

    def _positions(self, output: torch.Tensor) -> tuple[int, ...]:
        return tuple(output.shape[1:-1])


class _MeanFieldConv(MeanFieldLayer):
    _conv: Any = None

    def __init__(self, dims: int, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, ...], stride: int | tuple[int, ...] = 1,
                 padding: int | str | tuple[int, ...] = 0, dilation: int | tuple[int, ...] = 1,
                 groups: int = 1, bias: bool = True, **kwargs: Any) -> None:
        ks = _tuple(kernel_size, dims)
        if in_channels % groups or out_channels % groups:
            raise VarbayesError(f"channels ({in_channels}, {out_channels}) must be divisible "
                                f"by groups ({groups})")
        super().__init__((out_channels, in_channels // groups, *ks), out_channels, bias,
                         **kwargs)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, ks
        self.stride, self.dilation = _tuple(stride, dims), _tuple(dilation, dims)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, dims)
        self.groups = groups
        _init_like_torch(self, (in_channels // groups) * math.prod(ks))

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return type(self)._conv(x, w, b, self.stride, self.padding, self.dilation, self.groups)


class MeanFieldConv1d(_MeanFieldConv):
    """1-D convolution with a mean-field Gaussian kernel (zero padding)."""

    _conv = staticmethod(F.conv1d)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int],
                 **kwargs: Any) -> None:
        super().__init__(1, in_channels, out_channels, kernel_size, **kwargs)


class MeanFieldConv2d(_MeanFieldConv):
    """2-D convolution with a mean-field Gaussian kernel (zero padding)."""

    _conv = staticmethod(F.conv2d)

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], **kwargs: Any) -> None:
        super().__init__(2, in_channels, out_channels, kernel_size, **kwargs)


# ---------------------------------------------------------------------------------------------
# whole-model helpers


def bayesian_layers(module: nn.Module) -> list[MeanFieldLayer]:
    """Every mean-field layer inside `module` (each once)."""
    return [m for m in module.modules() if isinstance(m, MeanFieldLayer)]


def kl_divergence(module: nn.Module) -> torch.Tensor:
    """KL(q || prior) of all Bayesian weights in `module` (0 when there are none)."""
    layers = bayesian_layers(module)
    if not layers:
        p = next(module.parameters(), None)
        return torch.zeros((), device=None if p is None else p.device)
    return torch.stack([layer.kl() for layer in layers]).sum()


@contextmanager
def sampling(module: nn.Module, *, sample: bool = True,
             noise: Noise | None = None) -> Iterator[nn.Module]:
    """Temporarily set how every Bayesian layer in `module` samples (restored on exit)."""
    if noise is not None and noise not in NOISES:
        raise one_of("noise", noise, NOISES)
    layers = bayesian_layers(module)
    saved = [(layer.sample, layer.noise) for layer in layers]
    try:
        for layer in layers:
            layer.sample = sample
            if noise is not None:
                layer.noise = noise
        yield module
    finally:
        for layer, (s, n) in zip(layers, saved):
            layer.sample, layer.noise = s, n


def posterior_mean(module: nn.Module) -> Any:
    """Context in which every Bayesian layer uses its posterior mean (W = mu)."""
    return sampling(module, sample=False)


def apply_masks_(module: nn.Module) -> None:
    """Re-zero mu at inactive coordinates of every masked layer."""
    for layer in bayesian_layers(module):
        layer.apply_mask_()


def variational_param_groups(module: nn.Module, rho_lr_scale: float = 1.0,
                             weight_decay: float | None = None) -> list[dict[str, Any]]:
    """Optimiser groups: the means and every deterministic parameter, then the rho
    parameters with their own learning-rate scale and never any weight decay."""
    rho_ids = {id(p) for layer in bayesian_layers(module)
               for p in (layer.weight_rho, getattr(layer, "bias_rho", None)) if p is not None}
    params = [p for p in module.parameters() if p.requires_grad]
    main = {"params": [p for p in params if id(p) not in rho_ids]}
    if weight_decay is not None:
        main["weight_decay"] = weight_decay
    rho = {"params": [p for p in params if id(p) in rho_ids], "lr_scale": rho_lr_scale,
           "weight_decay": 0.0}
    return [main, rho]


def _init_like_torch(layer: MeanFieldLayer, fan_in: int) -> None:
    """Means initialised as torch initialises nn.Linear / nn.ConvNd (Kaiming uniform)."""
    nn.init.kaiming_uniform_(layer.weight_mu, a=math.sqrt(5))
    if layer.bias is not None and fan_in > 0:
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(layer.bias, -bound, bound)


def _with_sigma_gradient(rho: torch.Tensor, values: torch.Tensor, sigma_param: str
                         ) -> torch.Tensor:
    """`values` (sigma already computed from this rho) with the gradient of sigma(rho)
    attached: rho - rho.detach() is exactly 0, so the value is unchanged, and its derivative
    is sigmoid(rho) for softplus or sigma for exp. One sigmoid instead of a softplus forward
    and backward."""
    if not (torch.is_grad_enabled() and rho.requires_grad):
        return values.clone()
    slope = values if sigma_param == "exp" else torch.sigmoid(rho.detach())
    return values + (rho - rho.detach()) * slope


def _rademacher(shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, 2, tuple(shape), device=like.device, dtype=like.dtype) * 2 - 1


def _tuple(v: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * dims
    t = tuple(int(i) for i in v)
    if len(t) != dims:
        raise VarbayesError(f"expected {dims} values, got {v!r}")
    return t
