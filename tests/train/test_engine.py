"""The training engine: learning, resume to identical results, NaN errors, hooks, schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from varbayes.errors import VarbayesError
from varbayes.train import (
    Learner,
    NonFiniteError,
    Step,
    TrainConfig,
    fit,
    kl_warmup,
    lr_factor,
    shard_bounds,
)
from varbayes.train.engine import TrainingInterrupted


class Regression(Learner):
    def __init__(self, nan_at: int | None = None, grad_nan_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
        self.nan_at, self.grad_nan_at = nan_at, grad_nan_at
        self.skipped: list[int] = []

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        noise = 0.01 * torch.randn(())  # consumes RNG, so resume must restore it
        loss = ((self.net(x).squeeze(-1) - y) ** 2).mean() + noise * 0
        if step.step == self.nan_at:
            loss = loss * float("nan")
        if step.step == self.grad_nan_at:
            loss = loss + torch.sqrt((self.net[0].weight - self.net[0].weight.detach()).sum())
        return loss


def data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(n, generator=g)


def cfg(**kw: object) -> TrainConfig:
    base = {"epochs": 6, "batch_size": 32, "lr": 1e-2, "val_fraction": 0.0}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_loss_decreases_and_history_has_every_epoch() -> None:
    x, y = data()
    result = fit(Regression(), x, y, cfg(), quiet=True)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert result.steps == 6 * 7


def test_resume_after_interruption_is_bit_identical(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = data()
    torch.manual_seed(5)
    full = Regression()
    fit(full, x, y, cfg(checkpoint_every=5), quiet=True)

    torch.manual_seed(5)
    monkeypatch.setenv("VARBAYES_INTERRUPT_AT_STEP", "23")
    with pytest.raises(TrainingInterrupted):
        fit(Regression(), x, y, cfg(checkpoint_every=5), checkpoint_dir=tmp_path, quiet=True)
    monkeypatch.delenv("VARBAYES_INTERRUPT_AT_STEP")
    torch.manual_seed(99)  # a different process state: the checkpoint must restore the RNG
    resumed = Regression()
    result = fit(resumed, x, y, cfg(checkpoint_every=5), checkpoint_dir=tmp_path, resume=True,
                 quiet=True)
    assert result.steps == 42
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "state-40.safetensors"]


def test_nan_loss_names_the_step() -> None:
    x, y = data()
    with pytest.raises(NonFiniteError, match=r"training loss became NaN/Inf at step 3 \(epoch 1\)"):
        fit(Regression(nan_at=3), x, y, cfg(), quiet=True)


@pytest.mark.parametrize("which", ["x", "y"])
def test_nan_in_the_data_is_one_line_before_any_step(which: str) -> None:
    x, y = data()
    if which == "x":
        x[7, 1] = float("nan")
    else:
        y[7] = float("nan")
    learner = Regression()
    before = [p.detach().clone() for p in learner.parameters()]
    with pytest.raises(VarbayesError, match=f"{which}_train contains 1 NaN .*example 7"):
        fit(learner, x, y, cfg(), quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.parameters()))


def test_nan_gradient_names_the_parameter() -> None:
    x, y = data()
    with pytest.raises(NonFiniteError, match=r"gradient of parameter 'net.0.weight'.*step 4"):
        fit(Regression(grad_nan_at=4), x, y, cfg(), quiet=True)


def test_after_backward_false_skips_the_update() -> None:
    class Frozen(Regression):
        def after_backward(self, step: Step) -> bool:
            return step.step % 2 == 0

        def after_optimizer_step(self, step: Step, optimizer: torch.optim.Optimizer) -> None:
            self.skipped.append(step.step)

    x, y = data(64)
    learner = Frozen()
    fit(learner, x, y, cfg(epochs=2, batch_size=16), quiet=True)
    assert learner.skipped == [2, 4, 6, 8]


def test_early_stopping_restores_the_best_epoch() -> None:
    x, y = data()
    xv, yv = data(50)
    learner = Regression()
    result = fit(learner, x, y, cfg(epochs=40, lr=0.3, early_stopping=2), x_val=xv, y_val=yv,
                 quiet=True)
    vals = [h["val_loss"] for h in result.history]
    best = min(range(len(vals)), key=vals.__getitem__)
    assert result.best_epoch == best + 1
    assert learner.validation_loss(xv, yv) == pytest.approx(vals[best], rel=1e-5)


def test_param_groups_scale_lr_and_skip_empty() -> None:
    class Groups(Regression):
        def param_groups(self, cfg: TrainConfig) -> list[dict]:
            return [{"params": list(self.net[0].parameters())},
                    {"params": list(self.net[2].parameters()), "lr_scale": 0.0},
                    {"params": []}]

    x, y = data(64)
    learner = Groups()
    before = [p.clone() for p in learner.net[2].parameters()]
    fit(learner, x, y, cfg(epochs=1), quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.net[2].parameters()))


def test_schedules() -> None:
    assert [kl_warmup(e, 10, 0.5) for e in range(1, 7)] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    assert kl_warmup(1, 10, 0.0) == 1.0
    assert lr_factor("cosine", 0, 100, 0, 10) == 1.0
    assert lr_factor("cosine", 50, 100, 0, 10) == pytest.approx(0.5)
    assert lr_factor("cosine-epoch", 99, 100, 5, 10) == pytest.approx(0.5)
    assert lr_factor("constant", 99, 100, 9, 10) == 1.0


@given(st.integers(0, 500), st.integers(1, 9))
def test_shards_cover_each_index_once(n: int, world: int) -> None:
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    covered = [i for a, b in bounds for i in range(a, b)]
    assert covered == list(range(n))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_inputs_of_the_wrong_width_are_one_line_naming_shape_and_first_layer() -> None:
    x, y = data(40)
    with pytest.raises(VarbayesError) as e:
        fit(Regression(), torch.cat([x, x[:, :2]], 1), y, cfg(epochs=1), quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and "(40, 5)" in msg
    assert "its first layer, Linear, takes 3 input features" in msg


def test_an_error_after_the_first_step_is_not_called_bad_input() -> None:
    class FailsLater(Regression):
        def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
            if step.step == 2:
                raise RuntimeError("a bug in the learner")
            return super().training_loss(x, y, step)

    x, y = data(64)
    with pytest.raises(RuntimeError, match="a bug in the learner") as e:
        fit(FailsLater(), x, y, cfg(epochs=1), quiet=True)
    assert not isinstance(e.value, VarbayesError)
