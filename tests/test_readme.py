"""The README's Python quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no Python quickstart"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README quickstart", "exec"), namespace)  # noqa: S102
    assert namespace["probs"].shape[1] == 10
    assert (tmp_path / "runs" / "digits" / "result.json").is_file()


def test_infer_example_finds_the_posterior(capsys: pytest.CaptureFixture) -> None:
    """The README's `varbayes.infer` example trains its guide to the exact Gaussian posterior
    N(1.04, 0.447^2), and both printed bounds lie below log p(x) = -1.7065 (up to MC noise)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
                 if "infer.estimate" in b)
    namespace: dict = {}
    exec(compile(block, "README programmable VI", "exec"), namespace)  # noqa: S102
    assert abs(namespace["m"].item() - 1.04) < 0.1
    assert abs(namespace["log_s"].exp().item() - 0.447) < 0.05
    elbo, iwelbo = (float(v) for v in capsys.readouterr().out.split()[2:4])
    assert elbo < iwelbo + 0.002 and iwelbo < -1.7065 + 0.002


def test_every_dotted_varbayes_name_in_the_docs_resolves() -> None:
    """`varbayes.a.b` in README.md and docs/ is reachable by attribute access (as a snippet
    after `import varbayes` would reach it) or as a module: `varbayes.infer.elbo` is the
    objective function, so `varbayes.infer.elbo.elbo_loss` is not a name."""
    import importlib

    import varbayes

    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        names = set(re.findall(r"(?<![\w/.])varbayes(?:\.[A-Za-z_]\w*)+", path.read_text()))
        for name in sorted(names):
            parts, obj = name.split("."), varbayes
            for i in range(1, len(parts)):
                try:
                    obj = getattr(obj, parts[i])
                except AttributeError:
                    try:
                        obj = importlib.import_module(".".join(parts[: i + 1]))
                    except ImportError:
                        broken.append(f"{path.relative_to(ROOT)}: {name}")
                        break
    assert broken == []
