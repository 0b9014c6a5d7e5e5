"""deep-ensemble: independent members trained in one run, the mixture predictive, the model
file, quick reproduction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import varbayes
from varbayes.methods.baselines.deep_ensemble import Ensemble, EnsembleLearner
from varbayes.nn.heads import nll_per_example
from varbayes.train import Step


def test_loss_is_the_sum_of_member_losses() -> None:
    torch.manual_seed(0)
    members = [nn.Linear(3, 2) for _ in range(3)]
    learner = EnsembleLearner(Ensemble(members), "classification")
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    loss = learner.training_loss(x, y, Step(1, 1, 1, 1, 1, 10, 10))
    ref = sum(nll_per_example(m(x), y, "classification").mean() for m in members)
    torch.testing.assert_close(loss, ref)


def test_run_trains_distinct_members_and_round_trips(tmp_path: Path) -> None:
    rec = varbayes.run("deep-ensemble", "two-moons", out=tmp_path, quiet=True, epochs=3,
                       val_fraction=0.0, members=3)
    m = rec["metrics"]
    single = 2 * 256 + 256 + 256 * 256 + 256 + 256 * 2 + 2
    assert m["params_total"] == 3 * single
    assert m["accuracy"] > 0.7
    model = varbayes.load(tmp_path)
    w = [member.net[1].weight for member in model.network.members]
    assert not torch.allclose(w[0], w[1])  # independent initialisations
    x = torch.randn(9, 2)
    p = model.predict(x)
    ref = torch.softmax(torch.stack([mem(x) for mem in model.network.members]), -1).mean(0)
    torch.testing.assert_close(p, ref)
    torch.testing.assert_close(varbayes.load(tmp_path).predict(x), p)  # deterministic


@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    rec = varbayes.reproduce("deep-ensemble", quick=True, out=tmp_path, quiet=True)
    assert rec["passed"], rec["claims"]
