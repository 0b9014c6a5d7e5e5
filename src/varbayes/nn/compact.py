"""The physically smaller dense network left after structured pruning of an MLP.

Given the weight matrices (out, in) and biases of a chain of linear layers with one
activation between them, every hidden unit that `varbayes.metrics.structure_report` counts as
removable is deleted (the same one-pass rule, so the widths agree with the report):

- a unit with no incoming weights outputs the constant act(b_j); its effect
  W_next[:, j] * act(b_j) is folded into the next layer's bias;
- a unit with no outgoing weights contributes nothing.

What is left is kept dense: smaller `nn.Linear` layers that compute exactly what the pruned
network computes, and that run faster on ordinary dense hardware.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from varbayes.errors import VarbayesError


def compact_mlp(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None],
                activation: Callable[[], nn.Module] = nn.ReLU,
                remove: bool = True) -> nn.Sequential:
    """A dense `nn.Sequential` (Flatten, Linear, act, ..., Linear) without the removable
    hidden units of the chain `weights` (zeros = pruned) with `biases` (None = no bias);
    `remove=False` keeps every unit (the same network at its original shapes)."""
    if not weights or len(weights) != len(biases):
        raise VarbayesError("compact_mlp needs one bias (or None) per weight matrix")
    ws = [w.detach().clone().float() for w in weights]
    bs = [torch.zeros(w.shape[0]) if b is None else b.detach().clone().float()
          for w, b in zip(ws, biases)]
    for l, (w, nxt) in enumerate(zip(ws, ws[1:])):
        if w.ndim != 2 or nxt.ndim != 2 or nxt.shape[1] != w.shape[0]:
            raise VarbayesError(f"layer {l + 1} reads {nxt.shape[1]} inputs but layer {l} has "
                                f"{w.shape[0]} outputs; give (out, in) matrices in order")
    act = activation()
    keeps = [((w != 0).any(1) & (nxt != 0).any(0)) if remove
             else torch.ones(w.shape[0], dtype=torch.bool) for w, nxt in zip(ws, ws[1:])]
    for l, keep in enumerate(keeps):
        gone = ~keep
        if gone.any():  # constant outputs of removed units go into the next bias
            bs[l + 1] = bs[l + 1] + ws[l + 1][:, gone] @ act(bs[l][gone])
    layers: list[nn.Module] = [nn.Flatten()]
    for l, (w, b) in enumerate(zip(ws, bs)):
        rows = keeps[l] if l < len(keeps) else torch.ones(w.shape[0], dtype=torch.bool)
        cols = keeps[l - 1] if l > 0 else torch.ones(w.shape[1], dtype=torch.bool)
        with warnings.catch_warnings():  # a layer pruned to nothing has zero width: its
            # initialisation is a no-op (torch says so), and the weights are copied below
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            lin = nn.Linear(int(cols.sum()), int(rows.sum()))
        with torch.no_grad():
            lin.weight.copy_(w[rows][:, cols])
            lin.bias.copy_(b[rows])
        layers.append(lin)
        if l < len(ws) - 1:
            layers.append(activation())
    return nn.Sequential(*layers).eval()
