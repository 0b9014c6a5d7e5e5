"""The runner's checks before anything runs: seed, output folder and `--resume`."""

from __future__ import annotations

from pathlib import Path

import pytest

import varbayes
from varbayes.method import RunOutput


def test_negative_seed_is_one_line_before_running(tmp_path: Path) -> None:
    # dp-bayes-estimate seeds numpy generators with the seed directly (numpy refuses < 0)
    with pytest.raises(varbayes.VarbayesError, match="seed must be a non-negative integer"):
        varbayes.run("dp-bayes-estimate", out=tmp_path / "run", seed=-1, quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_out_that_cannot_be_a_folder_is_refused_before_running(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from varbayes.methods.baselines import deterministic

    def must_not_run(cfg: object, ctx: object) -> RunOutput:
        raise AssertionError("the method ran before --out was checked")

    monkeypatch.setattr(deterministic, "run", must_not_run)
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "run"
    with pytest.raises(varbayes.VarbayesError, match=f"--out {out} "):
        varbayes.run("deterministic", "two-moons", out=out, quiet=True)
    with pytest.raises(varbayes.VarbayesError, match="--out"):
        varbayes.reproduce("deterministic", out=out, quiet=True)


def test_resume_with_nothing_to_resume_starts_from_the_beginning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped before its first checkpoint resumes by starting again, with a notice,
    and ends with the result of a run started without --resume."""
    from varbayes import runner

    said: list[str] = []
    monkeypatch.setattr(runner, "announce", lambda message, disable=False: said.append(message))
    fresh = varbayes.run("deterministic", "two-moons", out=tmp_path / "a", quiet=True, epochs=1)
    assert not said
    resumed = varbayes.run("deterministic", "two-moons", out=tmp_path / "b", resume=True,
                           quiet=True, epochs=1)
    assert len(said) == 1 and "no checkpoint in" in said[0]
    timed = {"train_seconds"}
    assert ({k: v for k, v in resumed["metrics"].items() if k not in timed}
            == {k: v for k, v in fresh["metrics"].items() if k not in timed})


def test_resume_of_all_splits_resumes_only_the_started_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from varbayes.methods.baselines import deterministic

    resumed: dict[int, bool] = {}

    def fake_run(cfg: object, ctx: object) -> RunOutput:
        resumed[ctx.split] = ctx.resume  # type: ignore[attr-defined]
        return RunOutput({"rmse": 1.0})

    monkeypatch.setattr(deterministic, "run", fake_run)
    (tmp_path / "split-3" / "checkpoints").mkdir(parents=True)
    (tmp_path / "split-3" / "checkpoints" / "last.json").write_text("{}")
    varbayes.run("deterministic", "boston", split="all", out=tmp_path, resume=True, quiet=True)
    assert [k for k, r in resumed.items() if r] == [3] and len(resumed) == 20


@pytest.mark.parametrize("split", [1.5, True])
def test_a_split_that_is_not_an_integer_is_refused(split: object, tmp_path: Path) -> None:
    with pytest.raises(varbayes.VarbayesError, match="--split expects an integer"):
        varbayes.run("deterministic", "boston", split=split, out=tmp_path, quiet=True)  # type: ignore[arg-type]


def test_a_refused_run_removes_the_empty_folder_it_created_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from varbayes.methods.baselines import deterministic

    def refuses(cfg: object, ctx: object) -> RunOutput:
        raise varbayes.VarbayesError("a method-level check failed")

    monkeypatch.setattr(deterministic, "run", refuses)
    new = tmp_path / "new" / "deeper" / "run"  # parents created by this call go too
    with pytest.raises(varbayes.VarbayesError, match="method-level"):
        varbayes.run("deterministic", "two-moons", out=new, quiet=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(varbayes.VarbayesError, match="method-level"):
        varbayes.reproduce("deterministic", out=new, quiet=True)
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "existing"  # a folder that was there before is kept, even empty
    existing.mkdir()
    with pytest.raises(varbayes.VarbayesError):
        varbayes.run("deterministic", "two-moons", out=existing, quiet=True)
    assert existing.is_dir()


def test_a_failed_run_keeps_a_new_folder_that_has_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from varbayes.methods.baselines import deterministic

    def writes_then_fails(cfg: object, ctx: object) -> RunOutput:
        (ctx.out / "checkpoints").mkdir()  # type: ignore[attr-defined]
        (ctx.out / "checkpoints" / "last.pt").write_text("state")  # type: ignore[attr-defined]
        raise RuntimeError("killed after a checkpoint")

    monkeypatch.setattr(deterministic, "run", writes_then_fails)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed"):
        varbayes.run("deterministic", "two-moons", out=out, quiet=True)
    assert (out / "checkpoints" / "last.pt").read_text() == "state"
