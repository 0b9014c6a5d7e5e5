"""The CLI contract: result files, one-line errors with exit code 2, reproduce exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from varbayes.cli import main

RESULT_KEYS = {"method", "dataset", "seed", "config", "metrics", "timing", "versions"}


def test_run_writes_the_contract_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    code = main(["run", "deterministic", "--dataset", "two-moons", "--out", str(out),
                 "--set", "epochs=2", "--quiet"])
    assert code == 0
    record = json.loads((out / "result.json").read_text())
    assert set(record) >= RESULT_KEYS
    assert {"accuracy", "nll", "ece", "brier", "auroc", "aupr", "train_seconds"} <= set(
        record["metrics"])
    assert record["config"]["epochs"] == 2
    for name in ("report.md", "model.json", "model.safetensors", "reliability.png",
                 "training_curve.png"):
        assert (out / name).is_file(), name
    assert "accuracy=" in capsys.readouterr().out


def test_list_shows_settings(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "deterministic"]) == 0
    text = capsys.readouterr().out
    assert "epochs" in text and "two-moons" in text


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "nope"], "unknown method 'nope'; valid:"),
        (["run", "deterministic", "--dataset", "mnist2d"], "unknown dataset for deterministic"),
        (["run", "deterministic", "--set", "epoch=3"], "unknown setting 'epoch'"),
        (["run", "deterministic", "--set", "lr=-1"], "setting lr must be > 0"),
        (["run", "deterministic", "--set", "model=transformer"], "setting model must be one of"),
        (["run", "deterministic", "--dataset", "boston", "--split", "20"], "out of range"),
        (["run", "deterministic", "--dataset", "mnist1d", "--split", "all"], "several splits"),
        (["run", "deterministic", "--dataset", "cifar10", "--set", "data_dir=/nonexistent"],
         "no CIFAR-10 python batches"),
        (["run", "dp-bayes-estimate", "--seed", "-1"], "seed must be a non-negative integer"),
        (["reproduce", "nope"], "unknown method"),
        (["bench", "nope", "--dir", "benchmarks"], "unknown benchmark"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    assert main([*argv] if argv[0] != "run" else [*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "result.json").exists()


def test_argparse_errors_exit_2_in_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "varbayes", "frobnicate"], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "invalid choice" in proc.stderr


def test_bad_model_file_is_refused_from_the_cli_path(tmp_path: Path) -> None:
    import varbayes
    from varbayes.errors import VarbayesError

    (tmp_path / "model.json").write_text('{"format": "varbayes-model-1", "method": "x"}')
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(VarbayesError, match="not a safetensors file"):
        varbayes.load(tmp_path)


@pytest.mark.reproduce
def test_reproduce_quick_writes_reproduction_json(tmp_path: Path) -> None:
    assert main(["reproduce", "deterministic", "--quick", "--out", str(tmp_path), "--quiet"]) == 0
    rec = json.loads((tmp_path / "reproduction.json").read_text())
    assert {"method", "quick", "passed", "claims", "seconds"} <= set(rec)
    assert rec["quick"] is True and rec["passed"] is True
    assert all({"claim", "measured", "baseline", "threshold", "passed"} == set(c)
               for c in rec["claims"])
    assert (tmp_path / "report.md").is_file()
