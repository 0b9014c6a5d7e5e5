"""Training settings shared by every method that uses the engine (`varbayes.train.fit`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from varbayes.config import Config, setting


@dataclass
class TrainConfig(Config):
    """Optimiser, schedule, validation, checkpoints and devices; a method's Config extends it."""

    epochs: int = setting(100, help="passes over the training data", ge=1)
    batch_size: int = setting(128, help="global batch size (split across DDP ranks)", ge=1)
    lr: float = setting(1e-3, help="learning rate of the main parameter group", gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = setting(
        "adam", help="optimiser (adamw: decoupled weight decay)")
    momentum: float = setting(0.9, help="SGD momentum", ge=0, lt=1)
    weight_decay: float = setting(0.0, help="L2 weight decay (never on standard deviations)",
                                  ge=0)
    lr_schedule: Literal["cosine", "constant", "cosine-epoch"] = setting(
        "cosine", help="cosine annealing per iteration, per epoch, or constant")
    warmup_steps: int = setting(
        0, help="linear learning-rate warm-up over this many iterations before the schedule",
        ge=0)
    grad_clip: float | None = setting(None, help="clip the gradient norm to this value", gt=0)
    val_fraction: float = setting(
        0.1, help="fraction of the training data held out for validation (0: none)",
        ge=0, lt=1)
    early_stopping: int = setting(
        0, help="stop after this many evaluations without validation improvement (0: off)",
        ge=0)
    eval_every: int = setting(1, help="validate every this many epochs", ge=1)
    checkpoint_every: int = setting(
        0, help="write a checkpoint every this many steps (0: at the end of every epoch)", ge=0)
    accelerator: Literal["auto", "cpu", "cuda", "mps"] = setting(
        "cpu", help="device type for Lightning Fabric")
    check_finite: bool = setting(
        True, help="stop with the step and parameter name when a loss or gradient is NaN/Inf")
