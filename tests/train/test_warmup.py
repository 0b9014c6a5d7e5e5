"""Learning-rate warm-up and the AdamW choice of the shared engine."""

from __future__ import annotations

import pytest
import torch

from varbayes.train import TrainConfig, lr_factor
from varbayes.train.engine import Learner, _make_optimizer


def test_warmup_rises_linearly_then_cosine_spans_the_rest() -> None:
    assert lr_factor("cosine", 0, 100, 0, 1, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor("cosine", 9, 100, 0, 1, warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor("cosine", 10, 100, 0, 1, warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor("cosine", 55, 100, 0, 1, warmup_steps=10) == pytest.approx(0.5)
    assert lr_factor("constant", 50, 100, 0, 1, warmup_steps=10) == 1.0
    assert lr_factor("cosine", 50, 100, 0, 1) == pytest.approx(0.5)  # no warm-up: unchanged


def test_adamw_is_available() -> None:
    learner = Learner()
    learner.w = torch.nn.Parameter(torch.zeros(3))
    opt = _make_optimizer(learner, TrainConfig(optimizer="adamw", weight_decay=0.1))
    assert isinstance(opt, torch.optim.AdamW)
