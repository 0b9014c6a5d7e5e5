"""Structured sparsity of a chain of weight layers (spec 6.4), for every sparse method.

The input is the chain's weights or masks in forward order, as a list or a name -> tensor
mapping: linear weights (out, in), conv1d (out, in, k), conv2d (out, in, kh, kw). A weight is
active when it is non-zero (True for a boolean mask). Layer l's output units are layer l+1's
input units; after a conv, a linear layer may take the flattened (C, *spatial) output in
channel-major order (PyTorch's `flatten`), so channel j owns a run of in_features / C columns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from varbayes.errors import VarbayesError
from varbayes.metrics._inputs import as_count, as_float

INDEX_BYTES = 4  # int32 indices for the CSR and block encodings


def structure_report(weights: Sequence[Any] | Mapping[str, Any],
                     positions: Sequence[int] | None = None) -> dict[str, Any]:
    """Density, removable hidden units, compacted widths and MACs, and contiguous blocks.

    - density: active / total, per layer and overall.
    - hidden unit j between layers l and l+1 is removable when all its incoming weights are
      zero (row j of layer l; for conv, output filter j) or all its outgoing weights are zero
      (column j of layer l+1; for conv, input-channel slice j of every filter). One pass: a
      removal does not cascade. Network inputs and outputs are not hidden units.
    - compact_widths: [inputs, kept units per hidden layer..., outputs]; used: the active
      weights between kept units (the others touch a removed unit: the compacted network
      drops them), per layer and overall.
    - macs (per example, `positions[l]` = P_l output positions of layer l, default 1 each):
      dense n_l P_l, nnz a_l P_l, and compact = the weights left after deleting removable
      units, kept dense, times P_l.
    - blocks, on the grid the structured prior uses ((out, in) for linear; (k*c_in, c_out) for
      conv1d; (kh*c_in, kw*c_out) for conv2d, row index kh_i*c_in + c, column kw_i*c_out + o):
      n_blocks = maximal runs of consecutive active entries along rows plus along columns;
      mean_block_len = 2 * active / n_blocks (each entry lies in one row run and one column
      run); random_mean_block_len = the same under independent Bernoulli entries with each
      row's (column's) own density, 2 * active / sum E[runs], with E[runs] = p + (m-1) p (1-p)
      for a line of m entries; block_len_ratio = mean / random (None when nothing is active).
    - index bytes (int32, row-wise on the grid): CSR 4 (active + rows + 1); block encoding
      4 (2 row_runs + rows + 1), a (start, length) pair per run.
    The top level repeats the block numbers over all layers together (n_blocks,
    mean_block_len, random_mean_block_len, block_len_ratio, csr/block_index_bytes).
    """
    names, masks = _masks(weights)
    pos = [1] * len(masks) if positions is None else list(positions)
    if len(pos) != len(masks):
        raise VarbayesError(f"positions has {len(pos)} entries for {len(masks)} layers")
    pos = [as_count(p, "each position count", 0) for p in pos]

    keep_out, hidden = [], []
    for l, (mask, nxt) in enumerate(zip(masks, masks[1:])):
        no_in = ~mask.flatten(1).any(1)
        no_out = ~_outgoing(mask, nxt, names[l], names[l + 1]).any(0)
        removable = no_in | no_out
        keep_out.append(~removable)
        hidden.append({"after": names[l], "units": len(removable), "removed": int(removable.sum()),
                       "removed_fraction": removable.double().mean().item(),
                       "no_incoming": int(no_in.sum()), "no_outgoing": int(no_out.sum())})
    keep_out.append(torch.ones(masks[-1].shape[0], dtype=torch.bool))

    layers, totals = [], {"dense_macs": 0, "nnz_macs": 0, "compact_macs": 0}
    for l, (name, mask, p) in enumerate(zip(names, masks, pos)):
        keep_in = (torch.ones(mask.shape[1], dtype=torch.bool) if l == 0
                   else _columns(keep_out[l - 1], mask, masks[l - 1]))
        kernel = mask[0, 0].numel()
        entry = {"name": name, "shape": list(mask.shape), "total": mask.numel(),
                 "active": int(mask.sum()), "used": int(mask[keep_out[l]][:, keep_in].sum()),
                 "density": mask.double().mean().item(),
                 "dense_macs": mask.numel() * p, "nnz_macs": int(mask.sum()) * p,
                 "compact_macs": int(keep_out[l].sum()) * int(keep_in.sum()) * kernel * p}
        entry.update(_blocks(_grid(mask)))
        layers.append(entry)
        for k in totals:
            totals[k] += entry[k]

    units = sum(h["units"] for h in hidden)
    removed = sum(h["removed"] for h in hidden)
    active, total = sum(e["active"] for e in layers), sum(e["total"] for e in layers)
    return {
        "density": active / total, "active": active, "total": total,
        "used": sum(e["used"] for e in layers),
        "neurons_removed": removed, "neurons_total": units,
        "neurons_removed_fraction": removed / units if units else 0.0,
        "compact_widths": [masks[0].shape[1]] + [int(k.sum()) for k in keep_out],
        **totals, **_overall_blocks(layers), "layers": layers, "hidden": hidden,
    }


def max_neurons_removed(widths: Sequence[int], kept: int) -> int:
    """The most hidden units a mask of an MLP with layer sizes `widths` ([inputs, hidden...,
    outputs]) can remove (as `structure_report` counts them) while its compacted network still
    uses at least `kept` weights: the ceiling of any "neurons removed" comparison at `kept`
    weights.

    A weight on a removed unit does nothing the compacted network needs (no outgoing weights:
    the unit's output is unused; no incoming ones: it is a constant the next bias absorbs), so
    the used weights lie between kept units: with h_l hidden units kept per layer, at most
    C(h) = sum_l h_{l-1} h_l (inputs and outputs count as kept). The answer is
    sum(hidden) - min sum(h) over 0 <= h_l <= hidden_l with C(h) >= kept. The search is exact:
    C grows with the last hidden width, so for each choice of the others the smallest last
    width with C >= kept is best (prod(hidden widths + 1 but the last) cases). The tests check it
    against every mask of small MLPs.
    """
    sizes = [as_count(w, "each layer size") for w in widths]
    if len(sizes) < 3:
        raise VarbayesError(f"widths needs inputs, at least one hidden layer and outputs; "
                            f"got {sizes}")
    hidden = sizes[1:-1]
    kept = as_count(kept, "kept", 0)
    dense = sum(a * b for a, b in zip(sizes, sizes[1:]))
    if kept > dense:
        raise VarbayesError(f"kept={kept} is more than the {dense} weights of an MLP {sizes}")
    cases = math.prod(h + 1 for h in hidden[:-1])
    if cases > 10**7:
        raise VarbayesError(f"max_neurons_removed would search {cases} width choices; "
                            f"too many for an exact answer")
    fewest = sum(hidden)
    for first in itertools.product(*(range(h + 1) for h in hidden[:-1])):
        chain = [sizes[0], *first]
        before = sum(a * b for a, b in zip(chain, chain[1:]))  # weights up to the last hidden
        last = max(0, -(-(kept - before) // (chain[-1] + sizes[-1])))  # each unit adds this
        if last <= hidden[-1]:
            fewest = min(fewest, sum(first) + last)
    return sum(hidden) - fewest


def _overall_blocks(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The block statistics over all layers together: 2 * active / runs, its random-mask
    expectation (expected runs summed over layers), their ratio, and the index bytes."""
    active = sum(e["active"] for e in layers)
    runs = sum(e["n_blocks"] for e in layers)
    expected = sum(2 * e["active"] / e["random_mean_block_len"] for e in layers if e["active"])
    return {"n_blocks": runs, "mean_block_len": 2 * active / runs if runs else 0.0,
            "random_mean_block_len": 2 * active / expected if expected else 0.0,
            "block_len_ratio": expected / runs if runs else None,
            "csr_index_bytes": sum(e["csr_index_bytes"] for e in layers),
            "block_index_bytes": sum(e["block_index_bytes"] for e in layers)}


def _masks(weights: Sequence[Any] | Mapping[str, Any]) -> tuple[list[str], list[torch.Tensor]]:
    items = (list(weights.items()) if isinstance(weights, Mapping)
             else [(f"layer{i}", w) for i, w in enumerate(weights)])
    if not items:
        raise VarbayesError("structure_report needs at least one weight tensor or mask")
    names, masks = [], []
    for name, w in items:
        t = as_float(w, f"weights[{name}]")
        if t.ndim not in (2, 3, 4) or t.numel() == 0:
            raise VarbayesError(f"weights[{name}] must be a non-empty (out, in), (out, in, k) or "
                                f"(out, in, kh, kw) tensor; got shape {tuple(t.shape)}")
        names.append(str(name))
        masks.append(t != 0)
    return names, masks


def _outgoing(mask: torch.Tensor, nxt: torch.Tensor, name: str, next_name: str) -> torch.Tensor:
    """(rows, units): next layer's active entries grouped by the unit of `mask` they read."""
    units, fan_in = mask.shape[0], nxt.shape[1]
    if fan_in == units:
        return nxt.transpose(0, 1).flatten(1).transpose(0, 1)
    if nxt.ndim == 2 and mask.ndim > 2 and fan_in % units == 0:  # flattened conv output
        return nxt.reshape(nxt.shape[0], units, fan_in // units).transpose(1, 2).flatten(0, 1)
    raise VarbayesError(f"{next_name} reads {fan_in} inputs but {name} has {units} outputs; "
                        f"list the layers in forward order")


def _columns(keep: torch.Tensor, mask: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Which input columns of `mask` survive, given which units of the previous layer do."""
    return keep.repeat_interleave(mask.shape[1] // prev.shape[0])


def _grid(mask: torch.Tensor) -> torch.Tensor:
    if mask.ndim == 2:
        return mask
    if mask.ndim == 3:  # (c_out, c_in, k) -> (k * c_in, c_out)
        return mask.permute(2, 1, 0).reshape(-1, mask.shape[0])
    kh, c_in, kw, c_out = mask.shape[2], mask.shape[1], mask.shape[3], mask.shape[0]
    return mask.permute(2, 1, 3, 0).reshape(kh * c_in, kw * c_out)


def _blocks(grid: torch.Tensor) -> dict[str, Any]:
    active = int(grid.sum())
    row_runs, col_runs = _runs(grid), _runs(grid.T)
    n_blocks = row_runs + col_runs
    expected = _expected_runs(grid) + _expected_runs(grid.T)
    mean = 2 * active / n_blocks if n_blocks else 0.0
    random = 2 * active / expected if expected else 0.0
    rows = grid.shape[0]
    return {"n_blocks": n_blocks, "mean_block_len": mean, "random_mean_block_len": random,
            "block_len_ratio": mean / random if active else None,
            "csr_index_bytes": INDEX_BYTES * (active + rows + 1),
            "block_index_bytes": INDEX_BYTES * (2 * row_runs + rows + 1)}


def _runs(grid: torch.Tensor) -> int:
    """Maximal runs of True along each row, summed: a run starts where x[k] and not x[k-1]."""
    starts = grid[:, 1:] & ~grid[:, :-1]
    return int(grid[:, 0].sum() + starts.sum())


def _expected_runs(grid: torch.Tensor) -> float:
    m = grid.shape[1]
    p = grid.double().mean(1)
    return (p + (m - 1) * p * (1 - p)).sum().item()
