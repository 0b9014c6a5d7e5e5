"""`dp-bayes-estimate`: settings, the audit pipeline on both problems, resume, the CLI, and the
--quick reproduction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from varbayes.cli import main
from varbayes.errors import VarbayesError
from varbayes.methods.statistics import dp_bayes_estimate as dp
from varbayes.runner import reproduce, run

TINY = {"models": 12, "canaries_per_model": 4, "steps": 5, "n_train": 30, "features": 3}


def test_config_defaults_and_errors() -> None:
    cfg = dp.Config()
    assert (cfg.models, cfg.canaries_per_model, cfg.alpha, cfg.delta) == (200, 1, 0.05, 1e-5)
    with pytest.raises(VarbayesError, match="leaves fewer than 2 models"):
        dp.Config(models=4, calibration_fraction=0.8)
    with pytest.raises(VarbayesError, match="setting epsilon must be > 0"):
        dp.Config(epsilon=0.0)


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "dp-bayes-estimate", "--set", "models=2", "--out", str(tmp_path)]) == 2
    assert main(["run", "dp-bayes-estimate", "--dataset", "mnist1d"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("varbayes: error:") for line in err)
    assert not (tmp_path / "result.json").exists()


def test_gaussian_mechanism_audit(tmp_path: Path) -> None:
    rec = run("dp-bayes-estimate", "gaussian-mechanism", out=tmp_path, quiet=True,
              models=400, canaries_per_model=4, epsilon=2.0)
    m = rec["metrics"]
    assert 0 <= m["epsilon_lower"] < m["epsilon_median"] < m["epsilon_upper"]
    assert m["epsilon_lower"] <= m["epsilon_theoretical"] == 2.0
    assert m["epsilon_cp_upper"] - m["epsilon_cp_lower"] > m["epsilon_upper"] - m["epsilon_lower"]
    assert m["tp"] + m["fn"] + m["fp"] + m["tn"] == m["audit_samples"] == 200 * 4
    assert m["lower_exceeds_guarantee"] == 0.0
    for name in ("result.json", "report.md", "audit.png"):
        assert (tmp_path / name).is_file()


def test_smallest_audit_has_members_and_non_members_in_both_parts(tmp_path: Path) -> None:
    rec = run("dp-bayes-estimate", "gaussian-mechanism", out=tmp_path, quiet=True, models=4)
    m = rec["metrics"]
    assert m["tp"] + m["fn"] == 1 and m["fp"] + m["tn"] == 1


def test_broken_mechanism_is_flagged(tmp_path: Path) -> None:
    rec = run("dp-bayes-estimate", "gaussian-mechanism", out=tmp_path, quiet=True,
              models=200, canaries_per_model=4, epsilon=1.0, broken_noise=True)
    assert rec["metrics"]["lower_exceeds_guarantee"] == 1.0
    assert "WARNING: the lower end" in (tmp_path / "report.md").read_text()


def test_dpsgd_audit_runs_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opacus")
    full = run("dp-bayes-estimate", "synthetic-canary", out=tmp_path / "full", quiet=True,
               **TINY)
    m = full["metrics"]
    assert m["audit_samples"] == 6 * 4 and 0 < m["accuracy"] <= 1
    assert m["epsilon_theoretical"] == pytest.approx(4.0, abs=0.05)

    # stop after 11 models (the trial file holds 10), then resume: the same result
    from varbayes.privacy import dpsgd

    real, calls = dpsgd.train_dpsgd, []

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 11:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dpsgd, "train_dpsgd", failing)
    with pytest.raises(KeyboardInterrupt):
        run("dp-bayes-estimate", "synthetic-canary", out=tmp_path / "cut", quiet=True, **TINY)
    saved = json.loads((tmp_path / "cut" / "checkpoints" / "audit-trials.json").read_text())
    assert len(saved["losses"]) == 10
    monkeypatch.setattr(dpsgd, "train_dpsgd", real)
    resumed = run("dp-bayes-estimate", "synthetic-canary", out=tmp_path / "cut", quiet=True,
                  resume=True, **TINY)
    assert resumed["metrics"] == pytest.approx({**m, "train_seconds": resumed["metrics"][
        "train_seconds"]})


@pytest.mark.reproduce
@pytest.mark.slow
def test_quick_reproduction(tmp_path: Path) -> None:
    pytest.importorskip("opacus")
    rec = reproduce("dp-bayes-estimate", quick=True, out=tmp_path, quiet=True)
    assert rec["passed"], [c for c in rec["claims"] if not c["passed"]]
    assert len(rec["claims"]) == 9
    assert (tmp_path / "reproduction.json").is_file()
    assert (tmp_path / "readme-example.png").is_file()
