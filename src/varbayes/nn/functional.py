"""An MLP whose weights are passed in, with an optional leading task dimension.

Meta-learning adapts a separate copy of the weights per task (MAML's inner loop, NIW-Meta's
episode posteriors). Writing the network as batched matrix products over a (T, ...) stack of
weights makes T tasks one graph: the gradient of the summed task losses is every task's own
gradient, and MAML's second-order terms come from differentiating through it.
"""

from __future__ import annotations

import math

import torch

Params = dict[str, torch.Tensor]


class FunctionalMLP:
    """ReLU MLP with layer sizes `sizes` (e.g. (1, 40, 40, 1)); parameters are a dict of
    tensors `w{i}` (in, out) and `b{i}` (out,), each optionally with a leading task dim."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self.sizes = tuple(sizes)

    @property
    def names(self) -> list[str]:
        return [f"{k}{i}" for i in range(len(self.sizes) - 1) for k in ("w", "b")]

    def init(self, generator: torch.Generator | None = None) -> Params:
        """PyTorch's default Linear initialisation (uniform +-1/sqrt(fan_in))."""
        out: Params = {}
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            bound = 1 / math.sqrt(a)
            out[f"w{i}"] = (torch.rand(a, b, generator=generator) * 2 - 1) * bound
            out[f"b{i}"] = (torch.rand(b, generator=generator) * 2 - 1) * bound
        return out

    def n_params(self) -> int:
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """x (T, N, in) with params of shape (T, ...) or unbatched -> (T, N, out)."""
        h = x
        n_layers = len(self.sizes) - 1
        for i in range(n_layers):
            w, b = params[f"w{i}"], params[f"b{i}"]
            h = h @ w + (b.unsqueeze(-2) if b.dim() == 2 else b)
            if i < n_layers - 1:
                h = torch.relu(h)
        return h

    def flatten(self, params: Params) -> torch.Tensor:
        """(T, P) or (P,) vector of all parameters, in `names` order."""
        lead = params["w0"].shape[:-2]
        return torch.cat([params[k].reshape(*lead, -1) for k in self.names], dim=-1)

    def unflatten(self, vec: torch.Tensor) -> Params:
        """Inverse of `flatten` for (T, P) or (P,)."""
        lead = vec.shape[:-1]
        out: Params = {}
        i = 0
        for layer, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            out[f"w{layer}"] = vec[..., i:i + a * b].reshape(*lead, a, b)
            i += a * b
            out[f"b{layer}"] = vec[..., i:i + b].reshape(*lead, b)
            i += b
        return out
