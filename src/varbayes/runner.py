"""Runs a method the way the contract says: settings checked, seeded, result files written.

`run` and `reproduce` are what the CLI calls and what Python users call
(`varbayes.run("ssvi", dataset="mnist1d", density=0.05)`). Methods never write result.json,
reproduction.json, report.md or figures themselves; they return them here.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from varbayes import registry
from varbayes.errors import VarbayesError, one_of
from varbayes.io import atomic_write_json
from varbayes.method import ReproduceContext, RunContext, RunOutput
from varbayes.progress import announce
from varbayes.report import (
    reproduction_record,
    result_record,
    save_figure,
    write_reproduction_report,
    write_run_report,
)
from varbayes.train.seeding import seed_everything


def run(
    method: str,
    dataset: str | None = None,
    *,
    seed: int = 0,
    split: int | str = 0,
    out: str | Path | None = None,
    settings: tuple[str, ...] | list[str] = (),
    resume: bool = False,
    quiet: bool = False,
    **values: Any,
) -> dict[str, Any]:
    """Run `method` once and write result.json, the model, report.md and figures into `out`.

    Settings come as Python keywords (`epochs=5`) and/or CLI strings (`settings=["epochs=5"]`);
    `split="all"` on a UCI dataset runs every split and reports mean and standard error.
    Returns the result record.
    """
    from varbayes.data.validate import check_seed  # here: `import varbayes` stays light

    mod = registry.module(method)
    cfg = mod.Config.from_settings(list(settings), base=mod.Config.from_values(values))
    dataset = dataset or mod.DATASETS[0]
    if dataset not in mod.DATASETS:
        raise one_of(f"dataset for {method}", dataset, list(mod.DATASETS))
    out = Path(out) if out is not None else Path("runs") / f"{method}-{dataset}-seed{seed}"
    seed = check_seed(seed)
    if split == "all":
        return _run_all_splits(mod, method, dataset, cfg, seed, out, resume, quiet)
    split = _check_split(dataset, split)
    ctx = RunContext(method, dataset, seed, split, out, resume, quiet)
    with _output_folder(out):
        if resume and not _has_checkpoints(ctx.checkpoint_dir):
            # a run stopped before its first checkpoint resumes by starting again (same seed, same
            # result), so a job script can always pass --resume
            announce(f"--resume: no checkpoint in {ctx.checkpoint_dir} yet; starting from the "
                     "beginning", disable=quiet)
            ctx = RunContext(method, dataset, seed, split, out, False, quiet)
        seed_everything(seed)
        start = time.perf_counter()
        output: RunOutput = mod.run(cfg, ctx)
        total = time.perf_counter() - start
        extra = {"split": split} if _splits(dataset) > 1 else {}
        record = result_record(
            method, dataset, seed, cfg.to_dict(), output.metrics,
            {**output.timing, "total_seconds": round(total, 3)},
            **extra, details=output.details,
        )
        if _is_main_process():
            _write_run(out, record, output)
    return record


def reproduce(
    method: str,
    *,
    quick: bool = False,
    out: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the method's reproduction, print its claim table and write reproduction.json."""
    mod = registry.module(method)
    out = Path(out) if out is not None else Path("runs") / f"reproduce-{method}"
    with _output_folder(out):
        ctx = ReproduceContext(method, quick, out, quiet=quiet)
        seed_everything(0)
        start = time.perf_counter()
        rep = mod.reproduce(ctx)
        seconds = time.perf_counter() - start
    record = reproduction_record(method, quick, rep, seconds)
    if _is_main_process():
        figures = [save_figure(f, out / f"{name}.png").name for name, f in rep.figures.items()]
        atomic_write_json(out / "reproduction.json", record)
        write_reproduction_report(out / "report.md", method, quick, rep, seconds, figures)
    return record


# ---------------------------------------------------------------------------------------------


def _write_run(out: Path, record: dict[str, Any], output: RunOutput) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if output.model is not None:
        output.model.save(out)
    figures = [save_figure(f, out / f"{name}.png").name for name, f in output.figures.items()]
    atomic_write_json(out / "result.json", record)
    write_run_report(out / "report.md", record, figures, output.notes)


def _run_all_splits(
    mod: Any, method: str, dataset: str, cfg: Any, seed: int, out: Path, resume: bool,
    quiet: bool,
) -> dict[str, Any]:
    """Every split into out/split-K, then the mean and standard error into out."""
    total = _splits(dataset)
    if total == 1:
        raise VarbayesError(f"--split all needs a dataset with several splits; {dataset} has one")
    folders = [out / f"split-{k}" for k in range(total)]
    started = [_has_checkpoints(RunContext(method, dataset, out=f).checkpoint_dir)
               for f in folders]
    records = []
    for k in range(total):
        announce(f"{method} on {dataset}: split {k + 1}/{total}", disable=quiet)
        records.append(
            run(method, dataset, seed=seed, split=k, out=folders[k],
                settings=[f"{f}={_as_setting(v)}" for f, v in cfg.to_dict().items()],
                resume=resume and started[k], quiet=quiet)
        )
    metrics: dict[str, float] = {}
    for key in records[0]["metrics"]:
        vals = [r["metrics"][key] for r in records
                if isinstance(r["metrics"].get(key), (int, float))]
        if len(vals) == len(records):
            mean = sum(vals) / len(vals)
            var = sum((v - mean) ** 2 for v in vals) / max(len(vals) - 1, 1)
            metrics[key] = mean
            metrics[f"{key}_se"] = math.sqrt(var / len(vals))
    timing = {"total_seconds": sum(r["timing"]["total_seconds"] for r in records)}
    record = result_record(method, dataset, seed, cfg.to_dict(), metrics, timing,
                           split="all", n_splits=len(records))
    if _is_main_process():
        atomic_write_json(out / "result.json", record)
        write_run_report(out / "report.md", record, [], [
            f"Mean and standard error over {len(records)} splits; each split's run is in "
            "split-K/."
        ])
    return record


@contextmanager
def _output_folder(out: Path) -> Iterator[None]:
    """Check and create `out` before the method runs (`_check_out`); if the run then fails,
    remove the folders this call created as long as nothing was written into them, so a
    refused setting leaves no empty folder behind. Folders that existed are never touched."""
    created = _check_out(out)
    try:
        yield
    except BaseException:
        _remove_if_empty(created)
        raise


def _check_out(out: Path) -> Path | None:
    """Create the output folder now, so that a bad --out fails before anything runs. Returns
    the topmost folder this call created (None when `out` already existed)."""
    if out.exists() and not out.is_dir():
        raise VarbayesError(f"--out {out} is an existing file; valid: a folder, new or existing")
    created = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        created = folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VarbayesError(f"--out {out} cannot be created ({e.strerror}); valid: a folder "
                            "in a writable place") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise VarbayesError(f"--out {out} is not writable; valid: a folder in a writable place")
    return created


def _remove_if_empty(created: Path | None) -> None:
    """Remove `created` and the folders below it, only if none holds anything but folders
    (rmdir refuses a non-empty folder, so nothing written can be lost)."""
    if created is None or created.is_symlink() or not created.is_dir():
        return
    inside = list(created.rglob("*"))
    if any(p.is_symlink() or not p.is_dir() for p in inside):
        return
    try:
        for folder in sorted(inside, key=lambda p: len(p.parts), reverse=True) + [created]:
            folder.rmdir()
    except OSError:
        pass  # another process (a DDP rank) removed or wrote into it first: leave it


def _has_checkpoints(folder: Path) -> bool:
    """Whether a run left anything to resume from in its checkpoint folder."""
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _check_split(dataset: str, split: int | str) -> int:
    try:
        k = int(split)
        if isinstance(split, bool) or (isinstance(split, float) and split != k):
            raise ValueError
    except (TypeError, ValueError):
        raise VarbayesError(f"--split expects an integer or 'all', got {split!r}") from None
    n = _splits(dataset)
    if not 0 <= k < n:
        valid = f"0..{n - 1} or all" if n > 1 else "0 (this dataset has one fixed split)"
        raise VarbayesError(f"--split {k} is out of range for {dataset}; valid: {valid}")
    return k


def _splits(dataset: str) -> int:
    """Number of train/test splits of a standard dataset (1 for a method's own problems)."""
    from varbayes import data

    return data.n_splits(dataset) if dataset in data.names() else 1


def _as_setting(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return "none" if v is None else str(v)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0
