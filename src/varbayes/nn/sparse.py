"""Sparse mean-field layers: the posterior is stored and computed on the active weights only.

`to_sparse(layer, index)` turns a mean-field layer (`varbayes.nn.meanfield`) into its sparse
version in place (same module object, so every parent keeps its reference):

- `weight_mu` and `weight_rho` become vectors of length k (the active coordinates), and the
  buffer `weight_index` holds their flat positions in the weight tensor, sorted ascending
  (row-major, i.e. CSR order for a Linear weight). Inactive weights are exactly zero because
  they do not exist; the KL, the optimiser state and every elementwise operation are O(k).
- Two compute paths, chosen per layer by `compute`:
  * "dense": scatter the active values into a dense weight and call the layer's own op
    (F.linear / F.conv) - the masked dense computation of the reference code, fastest for
    small layers and the only path for convolutions;
  * "csr": Linear layers multiply with a torch.sparse CSR matrix (MKL on CPU) in the LRT mean
    and variance paths and in weight sampling; the backward pass takes the input gradient with
    the transposed CSR matrix and the value gradient with a sampled dense-dense product
    (`torch.sparse.sampled_addmm`), so no dense weight-sized tensor is touched;
  * "auto" (default): "csr" for a Linear layer on the CPU whose size and density fall in the
    region where it measured faster (`CSR_MIN_WEIGHTS`, `CSR_MAX_DENSITY`; see
    docs/methods/ssvi.md for the crossover), else "dense".
- `keep_mean_grad = True` makes the next backward pass also produce the dense gradient of the
  loss with respect to the effective (zero-filled) mean tensor, `dense_mean_grad()`, which
  SSVI's growth criterion ranks; it costs one dense weight-gradient product.
- In state dicts (model files and checkpoints) the positions are stored compactly, in the
  smallest of three encodings (`pack_positions`): `weight_bits`, a packed bit mask (n / 8
  bytes), `weight_gaps`, uint8 gaps between consecutive positions (about k bytes below
  density 1/8), or `weight_index`, int32 positions. Values are vectors of length k, so a
  float32 model file holds 8 bytes per active weight plus at most min(1/8, d) bytes per
  weight of positions.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from varbayes.errors import VarbayesError, one_of
from varbayes.nn.meanfield import LRT_EPS, MeanFieldLayer, MeanFieldLinear

COMPUTES = ("auto", "dense", "csr")
# "auto" uses CSR for Linear layers with at least this many weights and at most this density
# (measured on a 2-core CPU with one thread, batch 128; see benchmarks/ssvi_speed.py).
CSR_MIN_WEIGHTS = 250_000
CSR_MAX_DENSITY = 0.2



def _silence_beta_warning() -> None:
    """torch warns once per process that CSR support is in beta; trigger it silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.sparse_csr_tensor(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1), (1, 1))


_silence_beta_warning()


# ---------------------------------------------------------------------------------------------
# public helpers


def to_sparse(layer: MeanFieldLayer, index: torch.Tensor, compute: str = "auto") -> nn.Module:
    """Make `layer` sparse in place, keeping the coordinates at flat positions `index` (their
    current mu and rho); returns the same module object, now of a sparse subclass."""
    if not isinstance(layer, MeanFieldLayer):
        raise VarbayesError(f"to_sparse needs a mean-field layer, got {type(layer).__name__}")
    if isinstance(layer, SparseWeights):
        raise VarbayesError("the layer is already sparse")
    if compute not in COMPUTES:
        raise one_of("compute", compute, COMPUTES)
    if layer.mask is not None:
        raise VarbayesError("to_sparse expects a dense layer (mask None); drop its mask first")
    shape = tuple(layer.weight_mu.shape)
    index = _check_index(index, math.prod(shape))
    mu = layer.weight_mu.detach().reshape(-1)[index.to(layer.weight_mu.device)]
    rho = layer.weight_rho.detach().reshape(-1)[index.to(layer.weight_rho.device)]
    layer.__class__ = _sparse_class(type(layer))
    layer._init_sparse(shape, index, mu, rho, compute)
    return layer


def is_sparse(layer: nn.Module) -> bool:
    """Whether `layer` stores only its active coordinates."""
    return isinstance(layer, SparseWeights)


def csr_linear(x: torch.Tensor, values: torch.Tensor, pattern: CSRPattern,
               sink: SparseWeights | None = None) -> torch.Tensor:
    """x W^T for the sparse W given by `values` on `pattern`; x is (B, n_in). With `sink`, the
    backward pass also stores the dense gradient dL/dW in `sink._dense_grad`."""
    return _CSRLinear.apply(x, values, pattern, sink)


def pack_positions(index: torch.Tensor, n: int) -> tuple[str, torch.Tensor]:
    """The smallest of three encodings of sorted flat positions among n:

    - "bits": a packed mask, ceil(n / 8) uint8 bytes (bit j of byte i is position 8i + j);
    - "gaps": uint8 gaps between consecutive positions (the first from -1); a gap g >= 255 is
      written as g // 255 bytes of 255 and one byte g % 255 - about k bytes when d < 1/8;
    - "index": the positions as int32, 4k bytes.
    """
    index = index.cpu()
    gaps = torch.diff(index, prepend=torch.tensor([-1]))
    n_gap_bytes = int((gaps // 255).sum()) + len(index)
    sizes = {"bits": math.ceil(n / 8), "gaps": n_gap_bytes, "index": 4 * len(index)}
    kind = min(sizes, key=lambda key: (sizes[key], key))
    if kind == "bits":
        bits = torch.zeros(math.ceil(n / 8) * 8, dtype=torch.int32)
        bits[index] = 1
        weights = torch.tensor([1 << j for j in range(8)], dtype=torch.int32)
        return "bits", (bits.view(-1, 8) * weights).sum(1).to(torch.uint8)
    if kind == "gaps":
        q, r = gaps // 255, gaps % 255
        codes = torch.stack([torch.full_like(r, 255), r], 1).reshape(-1)
        counts = torch.stack([q, torch.ones_like(q)], 1).reshape(-1)
        return "gaps", codes.repeat_interleave(counts).to(torch.uint8)
    return "index", index.to(torch.int32)


def unpack_positions(kind: str, data: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted int64 flat positions from `pack_positions`' encoding."""
    if kind == "bits":
        if data.dtype != torch.uint8 or data.numel() != math.ceil(n / 8):
            raise VarbayesError(f"a packed mask for {n} weights must be {math.ceil(n / 8)} "
                                f"uint8 bytes; got {data.numel()} of {data.dtype}")
        shifts = torch.arange(8, dtype=torch.int32)
        bits = (data.to(torch.int32).unsqueeze(1) >> shifts) & 1
        return bits.reshape(-1)[:n].nonzero().squeeze(1)
    if kind == "gaps":
        if data.dtype != torch.uint8 or data.numel() == 0 or int(data[-1]) == 255:
            raise VarbayesError("gap-encoded positions must be uint8 ending in a byte < 255")
        codes = data.to(torch.int64)
        ends = (codes < 255).nonzero().squeeze(1)
        totals = codes.cumsum(0)[ends]  # the sum of each gap's bytes, cumulated
        return _check_index(totals - 1, n)
    return _check_index(data.to(torch.int64), n)


# ---------------------------------------------------------------------------------------------
# the CSR structure of a Linear weight and the sparse matrix product


class CSRPattern:
    """Row pointers and columns of a sparse (n_out, n_in) weight and of its transpose, built
    once per topology; `matrix(values)` wraps a value vector without copying it."""

    def __init__(self, index: torch.Tensor, shape: tuple[int, int]) -> None:
        n_out, n_in = shape
        self.shape = (n_out, n_in)
        rows, cols = index // n_in, index % n_in
        # int32 indices: MKL's sparse BLAS takes them without a conversion copy per call
        self.crow = _row_pointers(rows, n_out)
        self.col = cols.to(torch.int32)
        self.t_perm = torch.argsort(cols * n_out + rows)  # CSR order of the transpose
        self.t_crow = _row_pointers(cols, n_in)
        self.t_col = rows.index_select(0, self.t_perm).to(torch.int32)

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The (n_out, n_in) CSR matrix with these values (in `index` order)."""
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape,
                                       check_invariants=False)

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        """The (n_in, n_out) CSR matrix of the transpose."""
        return torch.sparse_csr_tensor(self.t_crow, self.t_col, values.index_select(0, self.t_perm),
                                       self.shape[::-1], check_invariants=False)


class _CSRLinear(torch.autograd.Function):
    """y = x W^T with W sparse. Forward: (W x^T)^T. Backward: dx = (W^T g^T)^T and, at the
    active coordinates only, dW = (g^T x) sampled on W's pattern."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, values: torch.Tensor, pattern: CSRPattern,
                sink: SparseWeights | None) -> torch.Tensor:
        ctx.save_for_backward(x, values)
        ctx.pattern, ctx.sink = pattern, sink
        return (pattern.matrix(values) @ x.t().contiguous()).t().contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, values = ctx.saved_tensors
        pattern: CSRPattern = ctx.pattern
        gt = grad.t().contiguous()  # (n_out, B)
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_x = (pattern.matrix_t(values) @ gt).t().contiguous()
        if ctx.needs_input_grad[1]:
            zeros = pattern.matrix(torch.zeros_like(values))
            grad_values = torch.sparse.sampled_addmm(zeros, gt, x).values()
        if ctx.sink is not None:
            ctx.sink._dense_grad = gt @ x
        return grad_x, grad_values, None, None


# ---------------------------------------------------------------------------------------------
# the sparse layer


class SparseWeights:
    """Mixin placed before a mean-field layer class: weights stored on the active coordinates
    only. See the module doc; created by `to_sparse`, never directly."""

    weight_shape: tuple[int, ...]
    compute: str
    weight_index: torch.Tensor

    def _init_sparse(self, shape: tuple[int, ...], index: torch.Tensor, mu: torch.Tensor,
                     rho: torch.Tensor, compute: str) -> None:
        self.weight_shape = shape
        self.compute = compute
        self.weight_mu = nn.Parameter(mu.clone())
        self.weight_rho = nn.Parameter(rho.clone())
        self.register_buffer("weight_index", index.to(mu.device).clone(), persistent=False)
        self._pattern: CSRPattern | None = None
        self._dense_grad: torch.Tensor | None = None
        self.effective_mean = None

    # --- topology ---------------------------------------------------------------------------

    @property
    def n_weights(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def n_active(self) -> int:
        return int(self.weight_index.numel())

    @property
    def density(self) -> float:
        return self.n_active / self.n_weights

    def weight_mask(self) -> torch.Tensor:
        """The active set as a dense boolean tensor of the weight's shape."""
        mask = torch.zeros(self.n_weights, dtype=torch.bool, device=self.weight_index.device)
        mask[self.weight_index] = True
        return mask.view(self.weight_shape)

    @torch.no_grad()
    def set_index(self, index: torch.Tensor) -> None:
        """Replace the active positions (same count); values are not touched."""
        index = _check_index(index, self.n_weights)
        if index.numel() != self.n_active:
            raise VarbayesError(f"a sparse layer keeps {self.n_active} active weights; got "
                                f"{index.numel()} positions")
        self.weight_index.copy_(index.to(self.weight_index.device))
        self._pattern = None

    def set_mask(self, mask: torch.Tensor | None) -> None:
        raise VarbayesError("a sparse layer's active set changes through its subspace "
                            "updates (set_index); set_mask applies to dense layers")

    def apply_mask_(self) -> None:
        """Nothing to do: inactive weights are not stored."""

    def dense_values(self, values: torch.Tensor) -> torch.Tensor:
        """Scatter a length-k vector into a zero-filled tensor of the weight's shape."""
        dense = values.new_zeros(self.n_weights).index_copy(0, self.weight_index, values)
        return dense.view(self.weight_shape)

    def csr_pattern(self) -> CSRPattern:
        if self._pattern is None:
            self._pattern = CSRPattern(self.weight_index, self.weight_shape)  # type: ignore
        return self._pattern

    def uses_csr(self, device: torch.device | None = None) -> bool:
        """Whether a call on `device` (default: the weights') takes the CSR path (Linear
        layers only; "auto" picks it on the CPU for large, sparse enough layers)."""
        if not isinstance(self, MeanFieldLinear) or self.compute == "dense":
            return False
        if self.compute == "csr":
            return True
        device = torch.device(device) if device is not None else self.weight_mu.device
        return (device.type == "cpu" and self.n_weights >= CSR_MIN_WEIGHTS
                and self.density <= CSR_MAX_DENSITY)

    # --- the posterior as the base class sees it -----------------------------------------

    def weight_mean(self) -> torch.Tensor:
        """Dense mu (zeros at inactive coordinates); with keep_mean_grad its gradient is
        retained for `dense_mean_grad`."""
        mu = self.dense_values(self.weight_mu)
        if self.keep_mean_grad and mu.requires_grad:
            mu.retain_grad()
            self.effective_mean = mu
        return mu

    def weight_sigma(self) -> torch.Tensor:
        return self.dense_values(self.sigma_of(self.weight_rho))

    def dense_mean_grad(self) -> torch.Tensor | None:
        """dL/d(mu * mask) of the last backward pass taken with keep_mean_grad, dense."""
        if self._dense_grad is not None:
            return self._dense_grad.view(self.weight_shape)
        if self.effective_mean is not None and self.effective_mean.grad is not None:
            return self.effective_mean.grad
        return None

    def clear_mean_grad(self) -> None:
        self._dense_grad, self.effective_mean = None, None

    # --- forward ----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clear_mean_grad()
        if not self.uses_csr(x.device) or (self.sample and self.noise == "flipout"):
            return super().forward(x)  # type: ignore[misc]
        n_out, n_in = self.weight_shape
        x2 = x.reshape(-1, n_in)
        pattern = self.csr_pattern()
        sink = self if self.keep_mean_grad and torch.is_grad_enabled() else None
        b_mu = self.bias_mu if self.bayesian_bias else self.bias
        if not self.sample:
            out = _add_bias(csr_linear(x2, self.weight_mu, pattern, sink), b_mu)
        elif self.noise == "lrt":
            sigma = self.sigma_of(self.weight_rho)
            mean = _add_bias(csr_linear(x2, self.weight_mu, pattern, sink), b_mu)
            var = csr_linear(x2 * x2, sigma * sigma, pattern)
            if self.bayesian_bias:
                var = var + self.sigma_of(self.bias_rho) ** 2
            out = mean + torch.sqrt(var + LRT_EPS) * torch.randn_like(mean)
        else:  # one weight draw for the batch
            sigma = self.sigma_of(self.weight_rho)
            w = self.weight_mu + sigma * torch.randn_like(sigma)
            b = b_mu
            if self.bayesian_bias:
                b_sigma = self.sigma_of(self.bias_rho)
                b = b_mu + b_sigma * torch.randn_like(b_sigma)
            out = _add_bias(csr_linear(x2, w, pattern, sink), b)
        return out.reshape(*x.shape[:-1], n_out)

    def _expand_bias(self, b: torch.Tensor) -> torch.Tensor:
        return b.reshape(-1, *((1,) * (len(self.weight_shape) - 2)))

    # --- state dict: compact positions ------------------------------------------------------

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str,
                            keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)  # type: ignore[misc]
        kind, data = pack_positions(self.weight_index, self.n_weights)
        destination[prefix + _POSITION_KEYS[kind]] = data

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              local_metadata: Any, strict: bool, missing_keys: list[str],
                              unexpected_keys: list[str], error_msgs: list[str]) -> None:
        keys = {kind: prefix + name for kind, name in _POSITION_KEYS.items()}
        found = [kind for kind, key in keys.items() if key in state_dict]
        if found:
            index = unpack_positions(found[0], state_dict[keys[found[0]]], self.n_weights)
            if index.numel() != self.n_active:
                error_msgs.append(f"{prefix}: the file has {index.numel()} active weights, the "
                                  f"layer {self.n_active}")
            else:
                self.set_index(index)
        elif strict:
            missing_keys.append(keys["index"])
        super()._load_from_state_dict(state_dict, prefix, local_metadata,  # type: ignore
                                      strict, missing_keys, unexpected_keys, error_msgs)
        for key in keys.values():
            if key in unexpected_keys:
                unexpected_keys.remove(key)

    def extra_repr(self) -> str:
        return (f"weight={self.weight_shape}, active={self.n_active} "
                f"(density={self.density:.3g}), compute={self.compute}, noise={self.noise}, "
                f"sigma_param={self.sigma_param}, prior={self.prior}")


_POSITION_KEYS = {"bits": "weight_bits", "gaps": "weight_gaps", "index": "weight_index"}
_SPARSE_CLASSES: dict[type, type] = {}


def _sparse_class(base: type) -> type:
    """The sparse subclass of a mean-field layer class (made once per class)."""
    if base not in _SPARSE_CLASSES:
        _SPARSE_CLASSES[base] = type(f"Sparse{base.__name__}", (SparseWeights, base),
                                     {"__module__": __name__, "__doc__": base.__doc__})
    return _SPARSE_CLASSES[base]


def _check_index(index: torch.Tensor, n: int) -> torch.Tensor:
    index = torch.as_tensor(index).reshape(-1).to(torch.int64)
    if index.numel() == 0:
        raise VarbayesError("a sparse layer needs at least one active weight")
    if int(index.min()) < 0 or int(index.max()) >= n:
        raise VarbayesError(f"active positions must lie in [0, {n}); got "
                            f"[{int(index.min())}, {int(index.max())}]")
    if index.numel() > 1 and not bool((index[1:] > index[:-1]).all()):
        raise VarbayesError("active positions must be sorted and distinct")
    return index


def _row_pointers(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    ptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    ptr[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return ptr.to(torch.int32)


def _add_bias(out: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return out if b is None else out + b


__all__ = ["COMPUTES", "CSRPattern", "SparseWeights", "csr_linear", "is_sparse",
           "pack_positions", "to_sparse", "unpack_positions"]
