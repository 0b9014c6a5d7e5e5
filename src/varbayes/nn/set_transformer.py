"""Transformer blocks over sets: no positional encoding, custom attention masks.

Amortized inference networks read a *set* of observations, so their output must not depend on
the order of the tokens. These blocks therefore add no positional encoding; which token may
attend to which is given by a mask instead. They are the standard post-LayerNorm GELU layers of
`torch.nn` with the output projections of self-attention and feed-forward zero-initialised, so every
residual branch starts as the identity (training is much more stable early on).

- `SetEncoder`: a stack of self-attention layers with an arbitrary boolean mask; with
  `pfn_attention_mask` it is the PFN encoder (context tokens attend to the context, each query
  to the context and itself only, so queries are independent of each other).
- `SetDecoder`: target tokens with full self-attention (permutation-equivariant over targets)
  and cross-attention to a memory set (the distribution transformer's decoder).
"""

from __future__ import annotations

import torch
from torch import nn


def pfn_attention_mask(n_context: int, n_query: int, device: torch.device | None = None
                       ) -> torch.Tensor:
    """Boolean mask (True = may attend) for a sequence of `n_context` context tokens followed
    by `n_query` query tokens: every token attends to all context tokens, a query additionally
    to itself and to no other query."""
    n = n_context + n_query
    allowed = torch.zeros(n, n, dtype=torch.bool, device=device)
    allowed[:, :n_context] = True
    idx = torch.arange(n_context, n, device=device)
    allowed[idx, idx] = True
    return allowed


def _post_ln_stack(layer_cls: type[nn.Module], d_model: int, n_heads: int, d_ff: int,
                   n_layers: int, dropout: float) -> nn.ModuleList:
    """`n_layers` post-LN GELU transformer layers of one kind, output projections zeroed."""
    layers = nn.ModuleList()
    for _ in range(n_layers):
        layer = layer_cls(d_model, n_heads, d_ff, dropout, activation="gelu", batch_first=True,
                          norm_first=False)
        _zero_init_outputs(layer)
        layers.append(layer)
    return layers


def _zero_init_outputs(layer: nn.Module) -> None:
    """Zero the output projections of self-attention and feed-forward of a torch layer
    (cross-attention keeps its default initialisation, as in the distribution transformer)."""
    nn.init.zeros_(layer.self_attn.out_proj.weight)
    nn.init.zeros_(layer.self_attn.out_proj.bias)
    nn.init.zeros_(layer.linear2.weight)
    nn.init.zeros_(layer.linear2.bias)


class SetEncoder(nn.Module):
    """`n_layers` post-LN GELU self-attention layers over (B, N, d) tokens, masked by a (N, N)
    boolean mask where True means "row may attend to column" (None: full attention)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = _post_ln_stack(nn.TransformerEncoderLayer, d_model, n_heads, d_ff, n_layers,
                                     dropout)

    def forward(self, tokens: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        # torch's masks say where attention is *forbidden*
        mask = None if allowed is None else ~allowed
        for layer in self.layers:
            tokens = layer(tokens, src_mask=mask)
        return tokens


class SetDecoder(nn.Module):
    """`n_layers` post-LN GELU decoder layers: full self-attention over the (B, K, d) target
    tokens (no causal mask) and cross-attention to the (B, M, d) memory tokens, whose padding
    can be hidden with a (B, M) boolean `memory_padding` (True = ignore)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, n_layers: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = _post_ln_stack(nn.TransformerDecoderLayer, d_model, n_heads, d_ff, n_layers,
                                     dropout)

    def forward(self, targets: torch.Tensor, memory: torch.Tensor,
                memory_padding: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            targets = layer(targets, memory, memory_key_padding_mask=memory_padding)
        return targets
