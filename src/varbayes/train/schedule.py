"""Learning-rate and KL warm-up schedules as plain functions of the step (no hidden state)."""

from __future__ import annotations

import math


def lr_factor(
    schedule: str, step: int, total_steps: int, epoch: int, epochs: int, warmup_steps: int = 0
) -> float:
    """Multiplier of the base learning rate before iteration `step` (0-based) of `total_steps`.

    "cosine" anneals per iteration from 1 to 0, "cosine-epoch" per epoch (as the SSVI
    reference code steps it; `epoch` is 0-based), "constant" stays at 1. With `warmup_steps`
    the factor first rises linearly to 1 (transformers train unstably without it) and the
    per-iteration cosine then spans the remaining iterations.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if warmup_steps > 0 and schedule == "cosine":
        step, total_steps = step - warmup_steps, total_steps - warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))
    if schedule == "cosine-epoch":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


def kl_warmup(epoch: int, epochs: int, fraction: float) -> float:
    """Linear KL warm-up factor min(e / (fraction * E), 1) for epoch e counted from 1.

    fraction = 0 turns warm-up off (factor 1). The SSVI reference uses fraction 0.5.
    """
    if fraction <= 0:
        return 1.0
    return min(epoch / (fraction * epochs), 1.0)
