"""How far a PFN trained on the GP-with-hyperpriors prior is from the exact Bayesian posterior
predictive, as training goes on: PFN - exact-PPD NLL per query point (an estimate of
E[KL(PPD || PFN)]) on fresh datasets, for saved models and for the engine's training
checkpoints (`state-STEP.safetensors`, e.g. copied out of a run's checkpoints folder while it
trains). The exact PPD integrates the hyperparameters out by importance sampling
(`HyperGPPrior.log_predictive`) and is computed once for all models.

    varbayes run pfn --dataset gp-hyper --set epochs=30 --out runs/pfn-gp-hyper-seed0
    python benchmarks/pfn_learning_curve.py --run-dir runs/pfn-gp-hyper-seed0 \\
        --checkpoints snapshots/state-*.safetensors
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

import torch
from _timing import machine

from varbayes.io import atomic_write_json, load_tensors
from varbayes.methods.amortized import pfn
from varbayes.models import load, restore_network
from varbayes.priors import HyperGPPrior
from varbayes.report import markdown_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True, help="a saved gp-hyper PFN (its settings are "
                    "used for the checkpoints; its final weights are the last row)")
    ap.add_argument("--checkpoints", nargs="*", default=[], help="engine checkpoint files")
    ap.add_argument("--context", type=int, nargs="+", default=[10])
    ap.add_argument("--datasets", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--draws", type=int, default=512, help="importance draws per stage")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    final = load(args.run_dir).model
    prior = final.prior
    assert isinstance(prior, HyperGPPrior), "the learning curve needs a gp-hyper PFN"
    models: list[tuple[str, pfn.PFN]] = []
    for path in sorted(args.checkpoints, key=_step):
        models.append((f"step {_step(path)} (checkpoint)", _from_checkpoint(final, path)))
    models.append((f"final ({final.cfg.epochs * final.cfg.steps_per_epoch} steps)", final))
    results: dict[str, Any] = {"machine": machine(), "rows": []}
    for n in args.context:
        g = torch.Generator().manual_seed(4000 + n)
        x, y = prior.sample(args.datasets, n + args.queries, g)
        xc, yc, xq, yq = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
        lp, ess = prior.log_predictive(xc, yc, xq, yq, args.draws, g)
        ppd = -lp.mean(-1)
        for name, model in models:
            nll = -model.predictive(xc, yc, xq).log_prob(yq).double().mean(-1)
            d = nll - ppd
            results["rows"].append({
                "model": name, "context": n, "nll_pfn": float(nll.mean()),
                "nll_ppd": float(ppd.mean()), "gap": float(d.mean()),
                "gap_se": float(d.std() / math.sqrt(len(d))), "gap_median": float(d.median()),
                "gap_p99": float(d.quantile(0.99)), "gap_max": float(d.max()),
                "ess_min": float(ess.min())})
    print(markdown_table(["model", "context", "NLL PFN", "NLL exact PPD", "gap", "s.e.",
                          "median", "p99", "max"],
                         [(r["model"], r["context"], r["nll_pfn"], r["nll_ppd"], r["gap"],
                           r["gap_se"], r["gap_median"], r["gap_p99"], r["gap_max"])
                          for r in results["rows"]]))
    if args.out:
        atomic_write_json(Path(args.out), results)


def _step(path: str) -> int:
    m = re.search(r"state-(\d+)", Path(path).name)
    return int(m.group(1)) if m else -1


def _from_checkpoint(final: pfn.PFN, path: str) -> pfn.PFN:
    """The network of `final`'s architecture with the weights of one training checkpoint."""
    tensors = load_tensors(Path(path))
    net = pfn.build_network(final.cfg, final.prior.x_dim, final.cfg.n_buckets)
    restore_network(net, {k[len("model.network."):]: v for k, v in tensors.items()
                          if k.startswith("model.network.")})
    return pfn.PFN(net, final.bar, final.prior, final.cfg)


if __name__ == "__main__":
    main()
