"""The `varbayes` command: list | run | reproduce | bench.

User errors (unknown names, bad settings, bad data) print one line and exit 2, with no
traceback; a reproduction whose claim fails exits 1.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from varbayes import registry
from varbayes.errors import VarbayesError, one_of


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"varbayes: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="varbayes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="list methods (or one method's settings)")
    p.add_argument("method", nargs="?", help="show this method's settings and datasets")
    p.add_argument("--markdown", action="store_true", help="the README's table of methods")

    p = sub.add_parser("run", help="train or run a method once")
    p.add_argument("method")
    p.add_argument("--dataset", default=None, help="dataset name (default: the method's first)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="0", help="UCI split 0..19, or 'all'")
    p.add_argument("--out", default=None, help="output folder (default runs/METHOD-DATASET-seedN)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the method's Config (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("reproduce", help="reproduce a method's paper claim at small scale")
    p.add_argument("method")
    p.add_argument("--quick", action="store_true", help="the about-a-minute version (CI)")
    p.add_argument("--out", default=None)
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("bench", help="run a benchmark script from benchmarks/")
    p.add_argument("name", nargs="?", help="benchmark name (file stem); none lists them")
    p.add_argument("--dir", default="benchmarks", help="folder holding the benchmark scripts")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except VarbayesError as e:
        print(f"varbayes: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("varbayes: interrupted", file=sys.stderr)
        return 130


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.markdown:
        print(methods_markdown())
        return 0
    console = Console()
    if args.method:
        mod = registry.module(args.method)
        table = Table(title=f"{args.method} settings (datasets: {', '.join(mod.DATASETS)})")
        for col in ("setting", "type", "default", "help"):
            table.add_column(col)
        for name, tp, default, help_text in mod.Config.describe():
            table.add_row(name, tp, str(default), help_text)
        console.print(table)
        return 0
    table = Table(title="varbayes methods")
    for col in ("method", "family", "status", "claim reproduced"):
        table.add_column(col)
    for m in registry.METHODS:
        table.add_row(m.name, m.family, m.status, m.claim)
    console.print(table)
    return 0


def methods_markdown() -> str:
    """The README's table of methods, generated from the registry."""
    from varbayes.report import markdown_table

    rows = [(f"[`{m.name}`]({m.docs})", m.paper, m.status, m.claim) for m in registry.METHODS]
    return markdown_table(["method", "paper", "status", "claim it reproduces"], rows)


def _run(args: argparse.Namespace) -> int:
    from varbayes.runner import run

    record = run(args.method, args.dataset, seed=args.seed, split=args.split, out=args.out,
                 settings=args.settings, resume=args.resume, quiet=args.quiet)
    if int(os.environ.get("RANK", "0") or 0) != 0:  # under DDP only rank 0 reports
        return 0
    out = args.out or f"runs/{args.method}-{record['dataset']}-seed{args.seed}"
    shown = {k: v for k, v in record["metrics"].items() if isinstance(v, (int, float))}
    print(" ".join(f"{k}={v:.4g}" for k, v in list(shown.items())[:8]))
    print(f"wrote {Path(out) / 'result.json'} and {Path(out) / 'report.md'}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from varbayes.runner import reproduce

    record = reproduce(args.method, quick=args.quick, out=args.out, quiet=args.quiet)
    table = Table(title=f"reproduce {args.method}" + (" --quick" if args.quick else ""))
    for col in ("claim", "measured", "baseline", "threshold", "pass"):
        table.add_column(col)
    for c in record["claims"]:
        base = "-" if c["baseline"] is None else f"{c['baseline']:.4g}"
        table.add_row(c["claim"], f"{c['measured']:.4g}", base, c["threshold"],
                      "[green]PASS[/green]" if c["passed"] else "[red]FAIL[/red]")
    Console().print(table)
    out = args.out or f"runs/reproduce-{args.method}"
    print(f"{'PASSED' if record['passed'] else 'FAILED'} in {record['seconds']:.1f} s; "
          f"wrote {Path(out) / 'reproduction.json'}")
    return 0 if record["passed"] else 1


def _bench(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    scripts = sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))
    if not args.name:
        print("\n".join(scripts) if scripts else f"no benchmarks in {folder}")
        return 0
    if args.name not in scripts:
        raise one_of(f"benchmark in {folder}", args.name, scripts)
    sys.argv = [str(folder / f"{args.name}.py"), *args.args]
    sys.path.insert(0, str(folder.resolve()))  # as `python benchmarks/NAME.py` would
    runpy.run_path(sys.argv[0], run_name="__main__")
    return 0


_COMMANDS = {"list": _list, "run": _run, "reproduce": _reproduce, "bench": _bench}

if __name__ == "__main__":
    raise SystemExit(main())
