"""mfvi: the ELBO scaling and warm-up, a run end to end with its model file, the CLI resume,
the 2-process DDP run and the quick reproduction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import varbayes
from varbayes.cli import main as cli_main
from varbayes.errors import VarbayesError
from varbayes.methods.bnn.mfvi import Config, VariationalLearner
from varbayes.nn import bayesianize, kl_divergence, posterior_mean_sampler
from varbayes.nn.heads import nll_per_example
from varbayes.train import Step
from varbayes.train.engine import TrainingInterrupted

ROOT = Path(__file__).resolve().parents[3]


def _learner(beta: float = 0.3, warmup: float = 0.5) -> VariationalLearner:
    torch.manual_seed(0)
    net = bayesianize(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4)),
                      init_sigma=0.1)
    return VariationalLearner(net, "classification", kl_weight=beta, warmup=warmup)


def test_full_batch_loss_is_minus_elbo_over_n() -> None:
    learner = _learner(beta=0.3)
    x, y = torch.randn(50, 3), torch.randint(0, 4, (50,))
    step = Step(step=1, epoch=10, total_steps=10, steps_per_epoch=1, epochs=10, n_train=50,
                batch_size=50)
    torch.manual_seed(1)
    loss = learner.training_loss(x, y, step)
    torch.manual_seed(1)  # the same LRT noise, by hand: -ELBO_beta = sum NLL + beta KL
    nll_sum = nll_per_example(learner.network(x), y, "classification").sum()
    minus_elbo = nll_sum + 0.3 * kl_divergence(learner.network)
    torch.testing.assert_close(loss, minus_elbo / 50)


@pytest.mark.parametrize("batch", [1, 7, 50])
def test_kl_coefficient_does_not_depend_on_the_batch_size(batch: int) -> None:
    learner = _learner(beta=0.3)
    x, y = torch.randn(batch, 3), torch.randint(0, 4, (batch,))
    step = Step(1, 10, 10, 1, 10, n_train=1000, batch_size=batch)
    torch.manual_seed(2)
    loss = learner.training_loss(x, y, step)
    torch.manual_seed(2)
    nll_mean = nll_per_example(learner.network(x), y, "classification").mean()
    kl_part = loss - nll_mean
    torch.testing.assert_close(kl_part, 0.3 * kl_divergence(learner.network) / 1000)


def test_warmup_factors_follow_min_e_over_fe() -> None:
    learner = _learner(beta=1.0, warmup=0.5)
    x, y = torch.randn(4, 3), torch.randint(0, 4, (4,))
    kl = kl_divergence(learner.network)
    factors = []
    for e in range(1, 9):
        torch.manual_seed(3)
        loss = learner.training_loss(x, y, Step(e, e, 8, 1, 8, 100, 4))
        torch.manual_seed(3)
        nll = nll_per_example(learner.network(x), y, "classification").mean()
        factors.append(float(((loss - nll) * 100 / kl).detach()))
    assert factors == pytest.approx([min(e / (0.5 * 8), 1.0) for e in range(1, 9)], rel=1e-5)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(VarbayesError, match="init_sigma"):
        Config(init_sigma=0.0)
    with pytest.raises(VarbayesError, match="noise"):
        Config.from_settings(["noise=gauss"])
    with pytest.raises(VarbayesError, match="eval_noise=lrt"):
        Config(eval_noise="lrt", model="cnn")


def test_run_writes_costs_and_the_model_round_trips(tmp_path: Path) -> None:
    rec = varbayes.run("mfvi", "two-moons", out=tmp_path, quiet=True, epochs=3,
                       val_fraction=0.0, kl_weight=0.1, eval_samples=8)
    m = rec["metrics"]
    for key in ("accuracy", "nll", "ece", "brier", "auroc", "accuracy_postmean",
                "params_total", "params_active", "train_flops", "model_bytes"):
        assert key in m, key
    assert m["accuracy"] > 0.7
    assert m["params_active"] == m["params_total"] == 2 * (2 * 256 + 256 * 256 + 256 * 2) + \
        256 + 256 + 2
    # 3 epochs of 8 batches (7 of 128, one of 104), LRT: 2 * 3 * 2 FLOPs per MAC
    assert m["train_flops"] == 12 * 3 * 1000 * (2 * 256 + 256 * 256 + 256 * 2)
    model = varbayes.load(tmp_path)
    x = torch.randn(20, 2)
    with torch.no_grad():
        a = posterior_mean_sampler(model.network, x)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["bayes"]["noise"] == "lrt" and meta["n_samples"] == 8
    again = varbayes.load(tmp_path)
    torch.manual_seed(0)
    p1 = model.predict(x)
    torch.manual_seed(0)
    p2 = again.predict(x)
    torch.testing.assert_close(p1, p2)
    assert p1.shape == (20, 2) and torch.allclose(p1.sum(1), torch.ones(20))
    assert a.shape == (1, 20, 2)
    with pytest.raises(VarbayesError, match="shape"):
        model.predict(torch.randn(3, 5))


def test_cli_resume_after_interruption_gives_identical_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["run", "mfvi", "--dataset", "two-moons", "--quiet", "--set", "epochs=3",
            "--set", "checkpoint_every=5", "--set", "eval_samples=5", "--set", "val_samples=3"]
    assert cli_main([*args, "--out", str(tmp_path / "full")]) == 0
    monkeypatch.setenv("VARBAYES_INTERRUPT_AT_STEP", "13")
    with pytest.raises(TrainingInterrupted):
        cli_main([*args, "--out", str(tmp_path / "cut")])
    assert not (tmp_path / "cut" / "result.json").exists()
    monkeypatch.delenv("VARBAYES_INTERRUPT_AT_STEP")
    assert cli_main([*args, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    full = json.loads((tmp_path / "full" / "result.json").read_text())
    cut = json.loads((tmp_path / "cut" / "result.json").read_text())
    drop = ("train_seconds",)
    assert {k: v for k, v in full["metrics"].items() if k not in drop} == \
        {k: v for k, v in cut["metrics"].items() if k not in drop}
    assert full["details"]["param_checksums"] == cut["details"]["param_checksums"]
    assert full["details"]["history"][-1]["val_loss"] == cut["details"]["history"][-1]["val_loss"]


@pytest.mark.distributed
def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    settings = ["--set", "epochs=3", "--set", "val_fraction=0", "--set", "batch_size=100",
                "--set", "eval_samples=10", "--set", "kl_weight=0.1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
           "VARBAYES_QUIET": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "varbayes", "run", "mfvi", "--dataset", "two-moons",
           "--out", str(tmp_path / "ddp"), "--quiet", *settings]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert cli_main(["run", "mfvi", "--dataset", "two-moons", "--out", str(tmp_path / "one"),
                     "--quiet", *settings]) == 0
    ddp = json.loads((tmp_path / "ddp" / "result.json").read_text())
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    assert ddp["details"]["world_size"] == 2 and one["details"]["world_size"] == 1
    sums = ddp["details"]["param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # both ranks hold identical parameters
    assert ddp["details"]["steps"] == one["details"]["steps"] == 30  # same global batches
    # different LRT noise draws, same data, batches and objective: close, not equal
    assert abs(ddp["metrics"]["accuracy"] - one["metrics"]["accuracy"]) <= 0.03
    assert abs(ddp["metrics"]["nll"] - one["metrics"]["nll"]) <= 0.05
    assert ddp["metrics"]["train_flops"] == one["metrics"]["train_flops"]


@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    rec = varbayes.reproduce("mfvi", quick=True, out=tmp_path, quiet=True)
    assert rec["passed"], rec["claims"]
    assert (tmp_path / "predictive_bands.png").is_file()
