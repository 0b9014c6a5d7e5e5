"""Cost counters: parameters, bytes on disk, per-layer MACs and analytic training FLOPs.

Two small duck-typed protocols let layers written elsewhere (Bayesian, masked, sparse) report
their own cost without this module knowing their classes.

Parameter counting (`count_parameters(active_only=True)`), checked per module:
- a module that defines `active_parameter_count() -> int` is counted by it, with everything
  inside it (its submodules are not visited);
- otherwise each parameter `p` it owns counts its numel, or the number of True / non-zero
  entries of a buffer named `p_mask` (for a parameter `w_orig`, a buffer `w_mask`, as
  `torch.nn.utils.prune` stores them) when the module has one.

Weight layers (`layer_macs`): a weight layer l reports n_l (weights), a_l (active weights) and
P_l (output positions per example, so its forward pass costs a_l * P_l MACs per example):
- a module that defines `cost_info(output) -> (n_l, a_l, P_l)` reports them itself, given its
  forward output (batch dimension first); this takes precedence;
- else a module with an int attribute `weight_numel` (and optionally `active_numel`, default
  `weight_numel`) gets P_l = the product of the output's dims after (batch, channel): 1 for
  (B, F), L_out for (B, C, L_out), H_out * W_out for (B, C, H_out, W_out);
- else `nn.Linear`, `nn.Conv1d` and `nn.Conv2d` count n_l = weight.numel(), a_l = the non-zero
  entries of a `weight_mask` buffer if present (else n_l), and P_l = the positions of the
  output (every leading dim but the batch for Linear; L_out or H_out * W_out for conv).
A weight layer's submodules are not visited, so a Bayesian layer wrapping an `nn.Linear`
counts once. Biases are elementwise work and are not counted as MACs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from varbayes.errors import VarbayesError
from varbayes.metrics._inputs import as_count

FLOPS_PER_MAC = 2
PASSES = 3  # forward, plus the two backward products: the input gradient and the weight gradient


@dataclass(frozen=True)
class LayerCost:
    """One weight layer's call: n weights, a of them active, P output positions per example."""

    name: str
    kind: str
    n: int
    a: int
    positions: int

    @property
    def macs(self) -> int:
        """Forward MACs per example counting active weights only: a * P."""
        return self.a * self.positions

    @property
    def dense_macs(self) -> int:
        """Forward MACs per example with every weight active: n * P."""
        return self.n * self.positions


def count_parameters(module: nn.Module, active_only: bool = False) -> int:
    """All parameters (each shared tensor once), or only the active ones by the protocol above."""
    if not active_only:
        return sum(p.numel() for p in module.parameters())
    total, seen = 0, set()
    for _, m in _walk(module, lambda m: hasattr(m, "active_parameter_count")):
        if hasattr(m, "active_parameter_count"):
            total += int(m.active_parameter_count())
            continue
        for name, p in m.named_parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                total += _active_entries(m, name, p)
    return total


def model_bytes(path_or_paths: str | os.PathLike | Iterable[str | os.PathLike]) -> int:
    """Bytes on disk (file sizes) of one saved model file or a list of them.

    A folder is refused: a run folder also holds results and reports, so name the files.
    """
    paths = ([path_or_paths] if isinstance(path_or_paths, (str, os.PathLike))
             else list(path_or_paths))
    if not paths:
        raise VarbayesError("model_bytes needs at least one file path")
    total = 0
    for p in map(Path, paths):
        if p.is_dir():
            raise VarbayesError(f"{p} is a folder; pass the model files in it")
        if not p.is_file():
            raise VarbayesError(f"model file {p} is missing or not a regular file")
        total += p.stat().st_size
    return total


def _to_model_device(model: nn.Module, example_input: Any) -> Any:
    """`example_input` (tensor, tuple/list or dict of tensors) on the device of `model`'s first
    parameter or buffer; unchanged when the model holds no tensors."""
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    if first is None:
        return example_input

    def move(v: Any) -> Any:
        return v.to(first.device) if isinstance(v, torch.Tensor) else v
    if isinstance(example_input, Mapping):
        return {k: move(v) for k, v in example_input.items()}
    if isinstance(example_input, (tuple, list)):
        return type(example_input)(move(v) for v in example_input)
    return move(example_input)


def layer_macs(model: nn.Module, example_input: Any) -> list[LayerCost]:
    """Weight layers in call order, with n_l, a_l and P_l, found by one forward pass.

    `example_input` is a tensor, a tuple of positional inputs or a dict of keyword inputs, with
    a leading batch dimension (one example is enough: costs are per example). The pass runs
    under `torch.no_grad()` in eval mode (so BatchNorm statistics do not move); every
    module's train/eval flag is restored afterwards. A layer called twice appears twice.
    Tensor inputs are moved to the model's device first (a model trained on a GPU is counted
    with CPU data).
    """
    example_input = _to_model_device(model, example_input)
    found: list[LayerCost] = []
    hooks = []
    for name, m in _walk(model, _is_weight_layer):
        if _is_weight_layer(m):
            hooks.append(m.register_forward_hook(_recorder(name or type(m).__name__, found)))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, Mapping):
                model(**example_input)
            elif isinstance(example_input, (tuple, list)):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return found


def forward_backward_flops(model: nn.Module, example_input: Any, batch_size: int) -> int:
    """FLOPs of one training step of a deterministic network: 2 * 3 * B * sum_l a_l P_l.

    That is `train_flops(layer_macs(model, example_input), 1, batch_size, lrt_factor=1)`; see
    `train_flops` for what is ignored.
    """
    return train_flops(layer_macs(model, example_input), 1, batch_size, lrt_factor=1)


def train_flops(layers: Iterable[LayerCost], steps: int, batch_size: int, lrt_factor: int,
                update_steps: int = 0) -> int:
    """Analytic training FLOPs, the project convention of spec section 2.9.

    Every one of the `steps` iterations costs F = 2 * 3 * c * B * sum_l a_l P_l (2 FLOPs per
    MAC; 3 = forward plus the input- and weight-gradient products; c = `lrt_factor`: 2 for the
    local reparameterisation trick, which runs a mean and a variance path, 1 for a
    deterministic network). Each of the `update_steps` subspace-update iterations adds the
    dense mean-gradient at the inactive coordinates, G = 2 * B * sum_l (n_l - a_l) P_l. Dense
    layers count with a_l = n_l. Ignored: elementwise work (squares, square roots, noise,
    activations, biases, BatchNorm), KL terms and optimiser updates, scores and top-k
    selection, evaluation. For a ragged last batch, call once per batch size and add.
    The ratio to dense VI is `train_flops(...) / train_flops(as_dense(layers), steps, B, 2)`.
    """
    layers = list(layers)
    steps, batch_size = as_count(steps, "steps", 0), as_count(batch_size, "batch_size")
    c, update_steps = as_count(lrt_factor, "lrt_factor"), as_count(update_steps, "update_steps", 0)
    if update_steps > steps:
        raise VarbayesError(f"update_steps ({update_steps}) cannot exceed steps ({steps})")
    active = sum(layer.a * layer.positions for layer in layers)
    inactive = sum((layer.n - layer.a) * layer.positions for layer in layers)
    per_step = FLOPS_PER_MAC * PASSES * c * batch_size * active
    per_update = FLOPS_PER_MAC * batch_size * inactive
    return steps * per_step + update_steps * per_update


def as_dense(layers: Iterable[LayerCost]) -> list[LayerCost]:
    """The same layers with every weight active (a_l = n_l): the dense-VI baseline of a ratio."""
    return [replace(layer, a=layer.n) for layer in layers]


def _walk(module: nn.Module, is_leaf: Any, prefix: str = "",
          seen: set[int] | None = None) -> Iterable[tuple[str, nn.Module]]:
    """Modules top-down with qualified names, each once (as `named_modules`), not descending
    below those where is_leaf holds."""
    seen = set() if seen is None else seen
    if id(module) in seen:
        return
    seen.add(id(module))
    yield prefix, module
    if is_leaf(module):
        return
    for name, child in module.named_children():
        yield from _walk(child, is_leaf, f"{prefix}.{name}" if prefix else name, seen)


def _active_entries(module: nn.Module, name: str, p: torch.Tensor) -> int:
    base = name[: -len("_orig")] if name.endswith("_orig") else name
    mask = dict(module.named_buffers(recurse=False)).get(f"{base}_mask")
    return int(torch.count_nonzero(mask)) if mask is not None else p.numel()


_BUILTIN = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _is_weight_layer(m: nn.Module) -> bool:
    return hasattr(m, "cost_info") or hasattr(m, "weight_numel") or isinstance(m, _BUILTIN)


def _recorder(name: str, found: list[LayerCost]) -> Any:
    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        n, a, positions = _cost_of(module, output)
        if not 0 <= a <= n or positions < 0:
            raise VarbayesError(f"layer {name} reports n={n}, a={a}, P={positions}; "
                                f"need 0 <= a <= n and P >= 0")
        found.append(LayerCost(name, type(module).__name__, n, a, positions))

    return hook


def _cost_of(m: nn.Module, output: Any) -> tuple[int, int, int]:
    if hasattr(m, "cost_info"):
        n, a, positions = m.cost_info(output)
        return int(n), int(a), int(positions)
    out = _first_tensor(output)
    if hasattr(m, "weight_numel"):
        n = int(m.weight_numel)
        return n, int(getattr(m, "active_numel", n)), math.prod(out.shape[2:])
    n = m.weight.numel()
    mask = dict(m.named_buffers(recurse=False)).get("weight_mask")
    a = int(torch.count_nonzero(mask)) if mask is not None else n
    if isinstance(m, nn.Linear):
        batch = out.shape[0] if out.ndim > 1 else 1
        return n, a, out.numel() // (batch * m.out_features)
    batched = out.ndim == m.weight.ndim  # conv accepts unbatched (C, L) / (C, H, W) input
    return n, a, math.prod(out.shape[2:] if batched else out.shape[1:])


def _first_tensor(output: Any) -> torch.Tensor:
    while isinstance(output, (tuple, list)):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise VarbayesError(f"a weight layer returned {type(output).__name__}, not a tensor; "
                            f"define cost_info(output) on it")
    return output
