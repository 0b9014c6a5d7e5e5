"""Checkpoints as safetensors plus JSON, written atomically, for `--resume`.

A checkpoint holds the learner's state dict (parameters and buffers, so masks and counters
kept as buffers come back too), the optimiser state, torch's RNG state, the best validation
state for early stopping, and the loop position. `last.json` names the current tensor file and
is replaced last, so a crash at any moment leaves the previous checkpoint readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from varbayes.io import atomic_write_json, load_tensors, read_json, save_tensors

FORMAT = "varbayes-checkpoint-1"


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loop: dict[str, Any],
    best_state: dict[str, torch.Tensor] | None,
) -> Path:
    """Write one checkpoint; `loop` holds JSON values (step, epoch, history, ...)."""
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        tensors[f"model.{key}"] = value
    for key, value in (best_state or {}).items():
        tensors[f"best.{key}"] = value
    opt = optimizer.state_dict()
    scalar_state: dict[str, dict[str, Any]] = {}
    for idx, state in opt["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalar_state.setdefault(str(idx), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    step = int(loop["step"])
    name = f"state-{step}.safetensors"
    save_tensors(directory / name, tensors)
    meta = {
        "format": FORMAT,
        "tensors": name,
        "loop": loop,
        "optimizer": {"param_groups": opt["param_groups"], "scalar_state": scalar_state},
        "has_best": best_state is not None,
    }
    atomic_write_json(directory / "last.json", meta)
    for old in directory.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return directory / name


def has_checkpoint(directory: Path) -> bool:
    """Whether `directory` holds a readable checkpoint."""
    return (directory / "last.json").is_file()


def load_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Restore model, optimiser and RNG in place; return (loop, best_state)."""
    meta = read_json(directory / "last.json")
    tensors = load_tensors(directory / meta["tensors"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, scalars in meta["optimizer"]["scalar_state"].items():
        state.setdefault(int(idx), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if meta["has_best"] \
        else None
    return meta["loop"], best
