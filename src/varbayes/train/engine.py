"""The training loop every method shares: `fit(learner, data, cfg)` on Lightning Fabric.

A `Learner` is an `nn.Module` that knows its loss; the engine owns the rest: devices and DDP,
the seeded data order, optimiser and learning-rate schedule, gradient clipping, NaN/Inf
checks that name the step and parameter, inputs the network cannot take (the first step's
error becomes one line naming the shape and what the first layer takes), validation with
early stopping, progress bars, and atomic checkpoints from which `resume=True` continues to
the same result as an uninterrupted run (same seed, CPU).

Under DDP every step takes one global batch of the seeded permutation and each rank a strided
slice of it; the loss is reweighted by the slice size so the averaged gradient equals the
gradient of the global-batch loss, whatever the ranks' share. The global torch RNG is reseeded
per rank at the start of every epoch, so ranks draw independent noise (a DDP run resumes
exactly from a checkpoint taken at an epoch's end, the default).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from varbayes.data.validate import check_finite
from varbayes.errors import VarbayesError, input_error
from varbayes.progress import progress
from varbayes.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from varbayes.train.config import TrainConfig
from varbayes.train.distributed import make_fabric
from varbayes.train.schedule import lr_factor


class NonFiniteError(VarbayesError):
    """A loss or gradient became NaN or infinite; the message names the step and parameter."""


class TrainingInterrupted(RuntimeError):
    """Raised by the test hook VARBAYES_INTERRUPT_AT_STEP to simulate a killed run."""


@dataclass(frozen=True)
class Step:
    """Where the loop is: iteration `step` (from 1) of `total_steps`, epoch (from 1) of
    `epochs`, the training-set size `n_train` (all ranks) and this step's global batch size."""

    step: int
    epoch: int
    total_steps: int
    steps_per_epoch: int
    epochs: int
    n_train: int
    batch_size: int


class Learner(nn.Module):
    """A model together with its training objective; subclass and define `training_loss`."""

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        """The scalar minimised on one batch (a mean over the batch plus any scaled penalty)."""
        raise NotImplementedError

    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Lower is better; drives early stopping. Default: the training loss without grad."""
        with torch.no_grad():
            n = len(x)
            step = Step(1, 1, 1, 1, 1, n, n)
            return float(self.training_loss(x, y, step))

    def param_groups(self, cfg: TrainConfig) -> list[dict[str, Any]]:
        """Optimiser groups; a group may set `lr_scale` (times cfg.lr) and `weight_decay`."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called once by `fit` with the optimiser it built, before the first step and after
        a resume has restored its state (for learners that edit optimiser state, such as
        SSVI's subspace updates, which zero the state of coordinates that change)."""

    def after_backward(self, step: Step) -> bool:
        """Called with gradients in place; return False to skip this step's optimiser update."""
        return True

    def after_optimizer_step(self, step: Step, optimizer: torch.optim.Optimizer) -> None:
        """Called after each optimiser update (re-masking, projections...)."""


@dataclass
class FitResult:
    """What `fit` returns: per-epoch history, the Fabric used (for sharded evaluation),
    steps taken, training seconds, and the epoch whose state was kept."""

    history: list[dict[str, float]]
    fabric: Any
    steps: int
    train_seconds: float
    best_epoch: int | None = None
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def fit(
    learner: Learner,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    cfg: TrainConfig,
    *,
    seed: int = 0,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    description: str = "training",
) -> FitResult:
    """Train `learner` on (x_train, y_train) with the settings in `cfg`; see the module doc."""
    if len(x_train) == 0:
        raise VarbayesError("cannot train on an empty training set")
    for name, t in (("x_train", x_train), ("y_train", y_train), ("x_val", x_val),
                    ("y_val", y_val)):
        if t is not None:  # NaN data is one line here, not a NaN loss some steps later
            check_finite(t, name)
    fabric = make_fabric(cfg.accelerator)
    world, rank = fabric.world_size, fabric.global_rank
    optimizer = _make_optimizer(learner, cfg)
    model, optimizer = fabric.setup(learner, optimizer)
    model.mark_forward_method("training_loss")
    x_train, y_train = x_train.to(fabric.device), y_train.to(fabric.device)
    if x_val is not None and y_val is not None:
        x_val, y_val = x_val.to(fabric.device), y_val.to(fabric.device)

    n = len(x_train)
    batch = min(cfg.batch_size, n)
    steps_per_epoch = -(-n // batch)
    total = cfg.epochs * steps_per_epoch
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None

    loop: dict[str, Any] = {"step": 0, "history": [], "best_val": None, "best_epoch": None,
                            "since_best": 0, "epoch_loss": 0.0, "epoch_batches": 0,
                            "seconds": 0.0, "stopped_early": False}
    best_state: dict[str, torch.Tensor] | None = None
    if resume and ckpt is not None and has_checkpoint(ckpt):
        loop, best_state = load_checkpoint(ckpt, learner, optimizer.optimizer)
    learner.attach_optimizer(optimizer.optimizer)
    interrupt_at = int(os.environ.get("VARBAYES_INTERRUPT_AT_STEP", "0") or 0)

    start_time = time.perf_counter() - loop["seconds"]
    t = loop["step"]
    first = t + 1  # the step whose input error is bad input, not a bug in training
    with progress(total, description, disable=quiet) as bar:
        bar.advance(t)
        while t < total and not loop["stopped_early"]:
            epoch0, b = divmod(t, steps_per_epoch)
            if world > 1 and b == 0:
                torch.manual_seed(_rank_seed(seed, epoch0, rank))
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(
                seed * 1_000_003 + epoch0)).to(fabric.device)
            idx = perm[b * batch:(b + 1) * batch]
            local = idx[rank::world]
            t += 1
            info = Step(t, epoch0 + 1, total, steps_per_epoch, cfg.epochs, n, len(idx))
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * lr_factor(
                    cfg.lr_schedule, t - 1, total, epoch0, cfg.epochs, cfg.warmup_steps)
            optimizer.zero_grad(set_to_none=True)
            learner.train()
            try:  # free when nothing is raised; only the first step's error is rewritten
                loss = model.training_loss(x_train[local], y_train[local], info)
            except RuntimeError as e:
                if t != first or isinstance(e, (NotImplementedError, torch.OutOfMemoryError)):
                    raise
                raise input_error("the network", tuple(x_train.shape), e, learner) from None
            if cfg.check_finite and not torch.isfinite(loss):
                raise NonFiniteError(_nonfinite_message("training loss", learner, info, cfg))
            weight = len(local) * world / len(idx)
            fabric.backward(loss * weight if weight != 1.0 else loss)
            if cfg.check_finite:
                _check_gradients(learner, info, cfg)
            if learner.after_backward(info):
                if cfg.grad_clip is not None:
                    fabric.clip_gradients(model, optimizer, max_norm=cfg.grad_clip)
                optimizer.step()
                learner.after_optimizer_step(info, optimizer.optimizer)
            loop["epoch_loss"] += float(loss.detach())
            loop["epoch_batches"] += 1
            bar.advance(1, loss=float(loss.detach()))

            if t % steps_per_epoch == 0 or t == total:
                best_state = _end_epoch(learner, fabric, cfg, loop, info, x_val, y_val,
                                        best_state)
            loop["step"] = t
            loop["seconds"] = time.perf_counter() - start_time
            due = (cfg.checkpoint_every and t % cfg.checkpoint_every == 0) or (
                not cfg.checkpoint_every and t % steps_per_epoch == 0)
            if ckpt is not None and due and rank == 0:
                save_checkpoint(ckpt, learner, optimizer.optimizer, loop, best_state)
            if interrupt_at and t == interrupt_at:
                raise TrainingInterrupted(f"interrupted at step {t} (VARBAYES_INTERRUPT_AT_STEP)")

    if cfg.early_stopping and best_state is not None:
        learner.load_state_dict(best_state)
    seconds = time.perf_counter() - start_time
    return FitResult(loop["history"], fabric, t, seconds, loop["best_epoch"],
                     loop["stopped_early"])


# ---------------------------------------------------------------------------------------------


def _rank_seed(seed: int, epoch0: int, rank: int) -> int:
    """Seed of the global torch RNG on `rank` for epoch `epoch0` under DDP: each rank draws
    its own noise (weight samples, dropout masks), so examples on different ranks do not share
    it. Anything that must agree across ranks must come from its own generator or rank 0."""
    return (seed * 1_000_003 + epoch0 * 7_919 + rank * 104_729 + 1) % 2**63


def _make_optimizer(learner: Learner, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = []
    for g in learner.param_groups(cfg):
        g = dict(g)
        g["base_lr"] = cfg.lr * g.pop("lr_scale", 1.0)
        g["lr"] = g["base_lr"]
        g.setdefault("weight_decay", cfg.weight_decay)
        if g["params"]:
            groups.append(g)
    if not groups:
        raise VarbayesError("the model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr)


def _end_epoch(
    learner: Learner, fabric: Any, cfg: TrainConfig, loop: dict[str, Any], info: Step,
    x_val: torch.Tensor | None, y_val: torch.Tensor | None,
    best_state: dict[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor] | None:
    """Record the epoch, validate when due, track the best state and early stopping."""
    record = {"epoch": info.epoch, "train_loss": loop["epoch_loss"] / max(loop["epoch_batches"], 1)}
    loop["epoch_loss"], loop["epoch_batches"] = 0.0, 0
    if x_val is not None and y_val is not None and len(x_val) and info.epoch % cfg.eval_every == 0:
        learner.eval()
        val = learner.validation_loss(x_val, y_val)
        if fabric.world_size > 1:  # ranks may differ in MC noise; decide on one number
            val = float(fabric.all_reduce(torch.tensor(val, device=fabric.device), "mean"))
        record["val_loss"] = val
        if loop["best_val"] is None or val < loop["best_val"]:
            loop["best_val"], loop["best_epoch"], loop["since_best"] = val, info.epoch, 0
            if cfg.early_stopping:
                best_state = copy.deepcopy(learner.state_dict())
        else:
            loop["since_best"] += 1
            if cfg.early_stopping and loop["since_best"] >= cfg.early_stopping:
                loop["stopped_early"] = True
    loop["history"].append(record)
    return best_state


def _check_gradients(learner: nn.Module, info: Step, cfg: TrainConfig) -> None:
    grads = [p.grad for p in learner.parameters() if p.grad is not None]
    if not grads:
        return
    norms = torch.stack(torch._foreach_norm(grads))
    if bool(torch.isfinite(norms).all()):
        return
    for name, p in learner.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            raise NonFiniteError(
                f"gradient of parameter {name!r} became NaN/Inf at step {info.step} "
                f"(epoch {info.epoch}); lower lr (now {cfg.lr:g}) or set grad_clip"
            )


def _nonfinite_message(what: str, learner: nn.Module, info: Step, cfg: TrainConfig) -> str:
    bad = [name for name, p in learner.named_parameters() if not bool(torch.isfinite(p).all())]
    where = f"; parameter {bad[0]!r} is already NaN/Inf" if bad else ""
    return (f"{what} became NaN/Inf at step {info.step} (epoch {info.epoch}){where}; "
            f"lower lr (now {cfg.lr:g}) or set grad_clip")
