"""mc-dropout: sampling with only Dropout switched on, a run with its model file, quick
reproduction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import varbayes
from varbayes.errors import VarbayesError
from varbayes.methods.baselines.mc_dropout import Config, dropout_sampler


def test_sampler_switches_on_dropout_only_and_restores_modes() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(16, 3)).eval()
    x = torch.randn(6, 4)
    samples = dropout_sampler(net, x, 5)
    assert samples.shape == (5, 6, 3)
    assert not torch.allclose(samples[0], samples[1])  # masks differ between passes
    assert not net.training and not net[1].training and not net[3].training
    stats = net[1].running_mean.clone()
    dropout_sampler(net, x, 2)
    torch.testing.assert_close(net[1].running_mean, stats)  # BatchNorm stayed in eval mode


def test_config_bounds() -> None:
    with pytest.raises(VarbayesError, match="dropout"):
        Config(dropout=1.0)


def test_run_and_load(tmp_path: Path) -> None:
    rec = varbayes.run("mc-dropout", "toy-regression", out=tmp_path, quiet=True, epochs=5,
                       val_fraction=0.0, eval_samples=4)
    assert {"rmse", "nll", "params_total", "train_flops"} <= set(rec["metrics"])
    model = varbayes.load(tmp_path)
    mean, var = model.predict(torch.linspace(-1, 1, 7)[:, None])
    assert mean.shape == var.shape == (7,) and (var > 0).all()
    assert any(isinstance(m, nn.Dropout) for m in model.network.modules())


@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    rec = varbayes.reproduce("mc-dropout", quick=True, out=tmp_path, quiet=True)
    assert rec["passed"], rec["claims"]
