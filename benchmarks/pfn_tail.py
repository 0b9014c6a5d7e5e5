"""Where a hyperprior-GP PFN loses NLL: excess over the exact posterior predictive by noise level.

For one or more saved PFNs (`varbayes run pfn --dataset gp-hyper`), draws datasets from the
GP-with-hyperpriors prior (10 context points, 20 queries) and reports, per bin of the
dataset's true noise variance: the PFN's excess NLL over the exact Bayesian PPD (hyperparameters
integrated out by importance sampling, float64), each bin's share of the overall mean, the
oracle predictive standard deviation (GP with the true hyperparameters) against the width of
the bucket at its mean (in y units), and the discretisation floor (the oracle predictive
projected onto the buckets minus the oracle's NLL). Two samples: datasets from the prior as it
is, and datasets whose noise is drawn from the hyperprior restricted to noise < `--low-noise`
(the rare region; the exact PPD is still the one under the full prior), so the tail is measured
with many datasets rather than a handful.

    python benchmarks/pfn_tail.py runs/pfn-old runs/pfn-new --datasets 1000
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import numpy as np
import torch

from varbayes.io import atomic_write_json
from varbayes.methods.amortized.pfn import PFN
from varbayes.priors import HyperGPPrior, gp_predictive
from varbayes.priors.base import numpy_rng
from varbayes.priors.gp import sample_gp
from varbayes.report import markdown_table

BINS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, math.inf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="saved PFN folders")
    ap.add_argument("--datasets", type=int, default=1000)
    ap.add_argument("--context", type=int, default=10)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--draws", type=int, default=512, help="importance-sampling draws per stage")
    ap.add_argument("--low-noise", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from varbayes.models import load

    models = {}
    for d in args.models:
        m = load(d)
        models[Path(d).name] = m.model if hasattr(m, "model") else m
    prior = HyperGPPrior(x_dim=1)
    results = {}
    for sample in ("prior", "low-noise"):
        data = draw(prior, args, sample)
        results[sample] = {name: analyse(model, prior, data, args) for name, model in
                           models.items()}
        print(f"\n## datasets drawn from the {sample} "
              f"{'' if sample == 'prior' else f'(noise < {args.low_noise}) '}"
              f"({args.datasets} datasets, {args.context} context, {args.queries} queries)\n")
        for name, r in results[sample].items():
            print(f"### {name} ({r['steps']} steps, y_normalize={r['y_normalize']}): "
                  f"excess {r['mean']:.4f} +- {r['se']:.4f}, median {r['median']:.4f}, "
                  f"max {r['max']:.3f}, floor {r['floor']:.4f}\n")
            print(markdown_table(
                ["noise variance", "datasets", "excess NLL", "s.e.", "share of the mean",
                 "oracle sd (median)", "bucket width at mean (median)", "sd / width",
                 "floor"],
                [(b["bin"], b["n"], b["mean"], b["se"], b["share"], b["sd"], b["width"],
                  b["ratio"], b["floor"]) for b in r["bins"]]))
            print()
    if args.out:
        atomic_write_json(Path(args.out), results)


def draw(prior: HyperGPPrior, args: argparse.Namespace, sample: str
         ) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(31 if sample == "prior" else 32)
    hp = prior.sample_hyperparameters(args.datasets, g)
    if sample == "low-noise":  # the hyperprior restricted to noise < low_noise, by rejection
        rng = numpy_rng(g)
        conc, rate = prior.noise_prior
        draws = rng.gamma(conc, 1.0 / rate, size=2_000_000)
        keep = draws[draws < args.low_noise][:args.datasets]
        if len(keep) < args.datasets:
            raise SystemExit("too few low-noise draws; raise --low-noise")
        hp["noise"] = torch.as_tensor(np.maximum(keep, 1e-4), dtype=torch.float64)
    x = prior.sample_x(args.datasets, args.context + args.queries, g)
    y = sample_gp(x, hp["lengthscale"], hp["outputscale"], hp["noise"], prior.kernel, g)
    n = args.context
    lp, _ = prior.log_predictive(x[:, :n], y[:, :n], x[:, n:], y[:, n:], args.draws, g)
    return x, y, hp, lp


@torch.no_grad()
def analyse(model: PFN, prior: HyperGPPrior, data: tuple[torch.Tensor, ...],
            args: argparse.Namespace) -> dict:
    x, y, hp, lp = data
    n = args.context
    xc, yc, xq, yq = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
    pred = model.predictive(xc, yc, xq)
    excess = (-pred.log_prob(yq).double() + lp).mean(-1)
    mean, var = gp_predictive(xc, yc, xq, hp["lengthscale"], hp["outputscale"], hp["noise"],
                              "matern52")
    sd = var.sqrt()
    loc = torch.as_tensor(pred.loc, dtype=torch.float64)
    scale = torch.as_tensor(pred.scale, dtype=torch.float64)
    bar = copy.deepcopy(model.bar).double()
    z = (mean - loc) / scale
    k = bar.bucket_index(z)
    width = bar.widths[k] * scale
    oracle = 0.5 * (torch.log(2 * math.pi * var) + (yq.double() - mean) ** 2 / var)
    floor_nll = bar.nll(bar.logits_from_normal(z, sd / scale), (yq.double() - loc) / scale) \
        + torch.log(scale)
    floor = (floor_nll - oracle).mean(-1)
    noise = hp["noise"]
    total = float(excess.sum())
    bins = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        sel = (noise >= lo) & (noise < hi)
        m = int(sel.sum())
        if m == 0:
            continue
        e = excess[sel]
        bins.append({"bin": f"[{lo:g}, {hi:g})", "n": m, "mean": float(e.mean()),
                     "se": float(e.std() / math.sqrt(m)) if m > 1 else float("nan"),
                     "share": float(e.sum()) / total if total else float("nan"),
                     "sd": float(sd[sel].median()), "width": float(width[sel].median()),
                     "ratio": float((sd[sel] / width[sel]).median()),
                     "floor": float(floor[sel].mean())})
    return {"steps": model.cfg.epochs * model.cfg.steps_per_epoch,
            "y_normalize": getattr(model.cfg, "y_normalize", "none"),
            "mean": float(excess.mean()), "se": float(excess.std() / math.sqrt(len(excess))),
            "median": float(excess.median()), "max": float(excess.max()),
            "floor": float(floor.mean()), "bins": bins, "per_dataset": excess.tolist()}


if __name__ == "__main__":
    main()
