"""Amortized vs per-dataset inference: time to a posterior (predictive) and its quality.

Part 1, GP with hyperpriors (the PFN paper's `fast_gp_mix` prior, 1-D): for N new datasets
(n context points, m query points each), the posterior predictive from
  - a PFN trained on that prior (one batched forward pass for all datasets),
  - GPyTorch exact GP with type-II maximum a posteriori hyperparameters (the hyperpriors as
    priors; Adam, `--mle-steps` steps per dataset),
  - Pyro NUTS over the three hyperparameters (predictive = mixture over posterior draws),
and the query NLL each reaches, plus two references: the GP with the true hyperparameters and
the exact Bayesian posterior predictive (hyperparameters integrated out by importance
sampling, `HyperGPPrior.log_predictive`), which is what both NUTS and the PFN approximate.
Per-dataset NLLs are heavy-tailed (a rare low-noise dataset can cost a few nats), so the NLL
comparison is reported as paired differences with standard errors, and the PFN's expected
excess NLL over the exact PPD is measured on `--gap-datasets` fresh datasets.

Part 2, distribution transformer vs per-instance SVI on the closed-form toy: one batched DT
call on 1000 problems against stochastic VI with a K-component GMM guide per problem
(stratified reparameterised ELBO, Adam), time and reverse KL to the exact posterior.

    python benchmarks/amortized_speed.py                      # trains the amortized models
    varbayes run pfn --dataset gp-hyper --set epochs=30 --out runs/pfn-gp-hyper-seed0
    python benchmarks/amortized_speed.py --pfn-dir runs/pfn-gp-hyper-seed0 --dt-dir runs/dt

Needs the `bench` extra (gpytorch, pyro-ppl). Prints Markdown tables; --out writes JSON.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import torch
from _timing import machine, median_times

from varbayes.distributions.gmm import GMM
from varbayes.io import atomic_write_json
from varbayes.methods.amortized import distribution_transformer as dt
from varbayes.methods.amortized import pfn
from varbayes.priors import HyperGPPrior, gp_predictive
from varbayes.report import markdown_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=100, help="GP datasets (part 1)")
    ap.add_argument("--nuts-datasets", type=int, default=100,
                    help="how many of them NUTS runs on (it is the slow one)")
    ap.add_argument("--context", type=int, default=10)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--mle-steps", type=int, default=100)
    ap.add_argument("--nuts-warmup", type=int, default=200)
    ap.add_argument("--nuts-samples", type=int, default=200)
    ap.add_argument("--nuts-cache", default=None,
                    help="JSON file of per-dataset NUTS NLLs: reused when its settings match "
                    "(same datasets, context, queries, warm-up, draws), written otherwise")
    ap.add_argument("--only-nuts", action="store_true",
                    help="run (or load) NUTS on the datasets, write --nuts-cache, and stop")
    ap.add_argument("--pfn-dir", default=None, help="a PFN saved by `varbayes run pfn "
                    "--dataset gp-hyper` (else one is trained here)")
    ap.add_argument("--compare-pfn-dir", default=None, help="a second saved PFN (e.g. an "
                    "earlier version) reported on the same datasets")
    ap.add_argument("--pfn-epochs", type=int, default=30,
                    help="epochs of 100 steps when the PFN is trained here")
    ap.add_argument("--ppd-draws", type=int, default=2048,
                    help="hyperparameter draws per importance-sampling stage (exact PPD)")
    ap.add_argument("--gap-datasets", type=int, default=1000,
                    help="fresh datasets for the PFN's expected excess NLL over the exact PPD")
    ap.add_argument("--gap-draws", type=int, default=512)
    ap.add_argument("--dt-dir", default=None, help="a saved distribution transformer")
    ap.add_argument("--dt-epochs", type=int, default=5)
    ap.add_argument("--svi-steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip", choices=["gp", "dt"], default=None)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"machine": machine()}
    print(f"machine: {results['machine']}")
    if args.skip != "gp":
        results["gp"] = gp_part(args)
    if args.skip != "dt":
        results["dt"] = dt_part(args)
    if args.out:
        atomic_write_json(Path(args.out), results)


# ---------------------------------------------------------------------------------------------
# part 1: PFN vs GPyTorch MLE-II vs Pyro NUTS


def gp_part(args: argparse.Namespace) -> dict[str, Any]:
    prior = HyperGPPrior(x_dim=1)
    g = torch.Generator().manual_seed(2024)
    x, y, hp = prior.sample_with_hyperparameters(args.datasets, args.context + args.queries, g)
    n = args.context
    xc, yc, xq, yq = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
    k = min(args.nuts_datasets, args.datasets)
    if args.only_nuts:
        nll_nuts, t_nuts, cached = _nuts_all(xc, yc, xq, yq, prior, args, k)
        print(f"NUTS on {k} datasets: {t_nuts:.0f} s{' (from the cache)' if cached else ''}, "
              f"mean NLL {float(nll_nuts.mean()):.4f}, process CPU {_NUTS_CPU[0]:.0f} s")
        return {"nuts_seconds": t_nuts, "nuts_nll": nll_nuts.tolist()}
    model = _pfn_model(args, prior, args.pfn_dir)
    rows: dict[str, dict[str, float]] = {}

    t_pfn = median_times({"pfn": lambda: model.outputs(xc, yc, xq)}, repeats=5, warmup=1)["pfn"]
    nll_pfn = -model.predictive(xc, yc, xq).log_prob(yq).double()
    rows[f"PFN (one batched forward pass, {_steps(model)} steps)"] = _row(
        t_pfn, nll_pfn, args.datasets)
    per = {"pfn": _per_dataset(nll_pfn)}
    other = None
    if args.compare_pfn_dir:
        other = _pfn_model(args, prior, args.compare_pfn_dir)
        t_other = median_times({"pfn": lambda: other.outputs(xc, yc, xq)}, repeats=5,
                               warmup=1)["pfn"]
        nll_other = -other.predictive(xc, yc, xq).log_prob(yq).double()
        rows[f"PFN for comparison ({args.compare_pfn_dir}, {_steps(other)} steps)"] = _row(
            t_other, nll_other, args.datasets)
        per["other"] = _per_dataset(nll_other)

    mean, var = gp_predictive(xc, yc, xq, hp["lengthscale"], hp["outputscale"], hp["noise"],
                              "matern52")
    nll_oracle = _gauss_nll(yq, mean, var)
    rows["GP with the true hyperparameters (oracle)"] = _row(
        float("nan"), nll_oracle, args.datasets)

    start = time.perf_counter()
    lp_ppd, ess = prior.log_predictive(xc, yc, xq, yq, args.ppd_draws,
                                       torch.Generator().manual_seed(7))
    rows[f"exact Bayesian PPD (importance sampling, 2 x {args.ppd_draws} draws)"] = _row(
        time.perf_counter() - start, -lp_ppd, args.datasets)
    per["ppd"] = _per_dataset(-lp_ppd)

    if _have("gpytorch") and args.mle_steps > 0:
        start = time.perf_counter()
        nll_mle = torch.stack([_gpytorch_map2(xc[i], yc[i], xq[i], yq[i], prior,
                                              args.mle_steps) for i in range(args.datasets)])
        rows[f"GPyTorch exact GP, MAP-II ({args.mle_steps} Adam steps)"] = _row(
            time.perf_counter() - start, nll_mle, args.datasets)
    elif args.mle_steps > 0:
        print("skipped GPyTorch (not installed; pip install -e '.[bench]')")
    if _have("pyro") and k > 0:
        nll_nuts, t_nuts, cached = _nuts_all(xc, yc, xq, yq, prior, args, k)
        rows[f"Pyro NUTS over hyperparameters ({args.nuts_warmup}+{args.nuts_samples})"
             f"{' [time from the cache]' if cached else ''}"] = _row(t_nuts, nll_nuts, k)
        if _NUTS_CPU[0] == _NUTS_CPU[0]:  # process CPU time known: the idle-core wall time
            rows["Pyro NUTS, process CPU time (= wall time on an idle core)"] = _row(
                _NUTS_CPU[0], nll_nuts, k)
        per["nuts"] = nll_nuts.double()
        if k < args.datasets:
            rows["PFN on the NUTS datasets"] = _row(t_pfn * k / args.datasets, nll_pfn[:k], k)
            rows["exact PPD on the NUTS datasets"] = _row(float("nan"), -lp_ppd[:k], k)
    elif k > 0:
        print("skipped Pyro NUTS (not installed; pip install -e '.[bench]')")

    per_pfn = t_pfn / args.datasets
    table = markdown_table(
        ["method", "seconds per dataset", "query NLL (mean)", "NLL s.e.", "datasets",
         "speed-up of PFN"],
        [(name, r["seconds_per_dataset"], r["nll"], r["nll_se"], int(r["datasets"]),
          r["seconds_per_dataset"] / per_pfn if math.isfinite(r["seconds_per_dataset"])
          else "-") for name, r in rows.items()])
    print(f"\n## PFN vs per-dataset GP inference ({args.context} context, {args.queries} "
          f"queries)\n\n{table}\n")

    # paired differences (same datasets, same queries): the NLL goal is about these
    paired = {"PFN - exact PPD": _paired(per["pfn"], per["ppd"])}
    if "nuts" in per:
        paired["PFN - NUTS"] = _paired(per["pfn"][:k], per["nuts"])
        paired["NUTS - exact PPD"] = _paired(per["nuts"], per["ppd"][:k])
    if "other" in per:
        paired["comparison PFN - exact PPD"] = _paired(per["other"], per["ppd"])
        if "nuts" in per:
            paired["comparison PFN - NUTS"] = _paired(per["other"][:k], per["nuts"])
    if args.gap_datasets:
        paired["PFN - exact PPD, fresh datasets"] = _expected_gap(model, prior, args)
        if other is not None:
            paired["comparison PFN - exact PPD, fresh datasets"] = _expected_gap(
                other, prior, args)
    print(markdown_table(["paired difference of per-dataset NLL", "mean", "s.e.",
                          "95% bootstrap interval of the mean", "median", "max", "datasets"],
                         [(name, r["mean"], r["se"], f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                           r["median"], r["max"], r["datasets"])
                          for name, r in paired.items()]))
    print(f"\nimportance sampling ESS over the {args.datasets} datasets: min {ess.min():.0f}, "
          f"median {ess.median():.0f}")
    worst = torch.argsort(per["pfn"] - per["ppd"], descending=True)[:5]
    print("\nlargest PFN - exact PPD datasets: " + "; ".join(
        f"#{int(i)}: {float(per['pfn'][i] - per['ppd'][i]):.3f} nats (noise "
        f"{float(hp['noise'][i]):.3g}, outputscale {float(hp['outputscale'][i]):.3g}, "
        f"lengthscale {float(hp['lengthscale'][i, 0]):.3g})" for i in worst))
    return {"rows": rows, "paired": paired,
            "ess": {"min": float(ess.min()), "median": float(ess.median())},
            "per_dataset": {name: v.tolist() for name, v in per.items()}}


def _steps(model: pfn.PFN) -> int:
    return model.cfg.epochs * model.cfg.steps_per_epoch


_NUTS_CPU = [float("nan")]  # process CPU seconds of the last NUTS batch (1 thread)


def _nuts_all(xc: torch.Tensor, yc: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor,
              prior: HyperGPPrior, args: argparse.Namespace, k: int
              ) -> tuple[torch.Tensor, float, bool]:
    """Per-dataset NUTS NLLs on the first k datasets and the seconds they took; reused from
    `--nuts-cache` when it was made with the same settings and data (NUTS is the slow part)."""
    key = {"context": args.context, "queries": args.queries, "warmup": args.nuts_warmup,
           "samples": args.nuts_samples, "datasets": k,
           "data_checksum": round(float(yc[:k].double().abs().sum() + yq[:k].double().abs()
                                        .sum()), 6)}
    cache = Path(args.nuts_cache) if args.nuts_cache else None
    if cache is not None and cache.exists():
        import json

        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            _NUTS_CPU[0] = float(saved.get("cpu_seconds", float("nan")))
            return torch.tensor(saved["nll"], dtype=torch.float64), saved["seconds"], True
        print(f"{cache} was made with other settings; running NUTS again")
    start, cpu = time.perf_counter(), time.process_time()
    nll = torch.stack([_nuts(xc[i], yc[i], xq[i], yq[i], prior, args, seed=i)
                       for i in range(k)]).double()
    seconds = time.perf_counter() - start
    _NUTS_CPU[0] = time.process_time() - cpu
    if cache is not None:
        atomic_write_json(cache, {"key": key, "nll": nll.tolist(), "seconds": seconds,
                                  "cpu_seconds": _NUTS_CPU[0], "machine": machine()})
    return nll, seconds, False


def _expected_gap(model: pfn.PFN, prior: HyperGPPrior, args: argparse.Namespace
                  ) -> dict[str, float]:
    """PFN - exact PPD NLL on `gap_datasets` fresh datasets: the PFN's expected excess NLL
    (= E[KL(PPD || PFN)]) at the benchmark's context size, with a small standard error."""
    g = torch.Generator().manual_seed(2025)
    n, m = args.context, args.queries
    x, y = prior.sample(args.gap_datasets, n + m, g)
    xc, yc, xq, yq = x[:, :n], y[:, :n], x[:, n:], y[:, n:]
    lp, _ = prior.log_predictive(xc, yc, xq, yq, args.gap_draws, g)
    nll = -model.predictive(xc, yc, xq).log_prob(yq).double()
    return _paired(_per_dataset(nll), _per_dataset(-lp))


def _per_dataset(nll: torch.Tensor) -> torch.Tensor:
    return nll.double().reshape(nll.shape[0], -1).mean(-1)


def _paired(a: torch.Tensor, b: torch.Tensor, resamples: int = 10_000) -> dict[str, float]:
    """Mean, standard error, 95 % percentile-bootstrap interval of the mean (datasets
    resampled), median and max of the paired per-dataset differences a - b."""
    d = a.double() - b.double()
    idx = torch.randint(0, len(d), (resamples, len(d)),
                        generator=torch.Generator().manual_seed(0))
    boot = d[idx].mean(-1)
    lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return {"mean": float(d.mean()), "se": float(d.std() / math.sqrt(len(d))),
            "ci_low": float(lo), "ci_high": float(hi),
            "median": float(d.median()), "max": float(d.max()), "datasets": len(d)}


def _pfn_model(args: argparse.Namespace, prior: HyperGPPrior, directory: str | None
               ) -> pfn.PFN:
    if directory:
        from varbayes.models import load

        reg = load(directory)
        return reg.model
    cfg = pfn.Config(epochs=args.pfn_epochs)
    print(f"training a PFN on the hyperprior GP ({cfg.epochs * cfg.steps_per_epoch} steps)...")
    model, res = pfn.train(prior, cfg, seed=0)
    print(f"  trained in {res.train_seconds:.0f} s")
    return model


def _gpytorch_map2(xc: torch.Tensor, yc: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor,
                   prior: HyperGPPrior, steps: int) -> torch.Tensor:
    """Mean query NLL of one GPyTorch exact GP with hyperparameters by MAP-II."""
    import gpytorch
    from gpytorch.priors import GammaPrior

    class ExactGP(gpytorch.models.ExactGP):
        def __init__(self, x: torch.Tensor, y: torch.Tensor, lik: Any) -> None:
            super().__init__(x, y, lik)
            self.mean = gpytorch.means.ZeroMean()
            self.cov = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=x.shape[-1],
                                              lengthscale_prior=GammaPrior(
                                                  *prior.lengthscale_prior)),
                outputscale_prior=GammaPrior(*prior.outputscale_prior))

        def forward(self, x: torch.Tensor) -> Any:
            return gpytorch.distributions.MultivariateNormal(self.mean(x), self.cov(x))

    xc, yc, xq, yq = xc.double(), yc.double(), xq.double(), yq.double()
    lik = gpytorch.likelihoods.GaussianLikelihood(noise_prior=GammaPrior(*prior.noise_prior))
    model = ExactGP(xc, yc, lik).double()
    model.train()
    lik.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
    for _ in range(steps):
        opt.zero_grad()
        loss = -mll(model(xc), yc)
        loss.backward()
        opt.step()
    model.eval()
    lik.eval()
    with torch.no_grad():
        out = lik(model(xq))
        return _gauss_nll(yq, out.mean, out.variance).mean()


def _nuts(xc: torch.Tensor, yc: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor,
          prior: HyperGPPrior, args: argparse.Namespace, seed: int) -> torch.Tensor:
    """Mean query NLL of the NUTS posterior predictive (mixture over hyperparameter draws)."""
    import pyro
    import pyro.distributions as pdist
    from pyro.infer import MCMC, NUTS

    from varbayes.priors import kernel_matrix

    xc, yc, xq, yq = xc.double(), yc.double(), xq.double(), yq.double()

    def model() -> None:
        noise = pyro.sample("noise", pdist.Gamma(*map(_t, prior.noise_prior)))
        ls = pyro.sample("lengthscale", pdist.Gamma(*map(_t, prior.lengthscale_prior)))
        os_ = pyro.sample("outputscale", pdist.Gamma(*map(_t, prior.outputscale_prior)))
        k = kernel_matrix(xc[None], xc[None], ls.reshape(1), os_.reshape(1), "matern52")[0]
        k = k + (noise + 1e-6) * torch.eye(len(xc), dtype=torch.float64)
        pyro.sample("y", pdist.MultivariateNormal(torch.zeros_like(yc), covariance_matrix=k),
                    obs=yc)

    pyro.set_rng_seed(seed)
    mcmc = MCMC(NUTS(model), num_samples=args.nuts_samples, warmup_steps=args.nuts_warmup,
                disable_progbar=True)
    mcmc.run()
    s = mcmc.get_samples()
    m = len(s["noise"])
    mean, var = gp_predictive(xc[None].expand(m, -1, -1), yc[None].expand(m, -1),
                              xq[None].expand(m, -1, -1), s["lengthscale"], s["outputscale"],
                              s["noise"], "matern52")
    log_mix = torch.logsumexp(-_gauss_nll(yq[None], mean, var), 0) - math.log(m)
    return -log_mix.mean()


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _t(v: float) -> torch.Tensor:
    return torch.tensor(float(v), dtype=torch.float64)


def _gauss_nll(y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.log(2 * math.pi * var) + (y - mean) ** 2 / var)


def _row(seconds: float, nll: torch.Tensor, n: int) -> dict[str, float]:
    per = nll.double().reshape(n, -1).mean(-1)
    return {"seconds_per_dataset": seconds / n, "nll": float(per.mean()),
            "nll_se": float(per.std() / math.sqrt(n)), "datasets": n}


# ---------------------------------------------------------------------------------------------
# part 2: distribution transformer vs per-instance SVI


def dt_part(args: argparse.Namespace, n_problems: int = 1000) -> dict[str, Any]:
    if args.dt_dir:
        from varbayes.models import load

        model = load(args.dt_dir)
    else:
        cfg = dt.Config(epochs=args.dt_epochs)
        print(f"training a distribution transformer ({cfg.epochs * cfg.steps_per_epoch} "
              "steps)...")
        model, res = dt.train(cfg, seed=0)
        print(f"  trained in {res.train_seconds:.0f} s")
    cfg = model.cfg
    g = torch.Generator().manual_seed(77)
    prior = dt.sample_meta_prior(n_problems, cfg, g)
    _, z = dt.simulate(prior, 1, cfg.obs_noise, g)
    exact = dt.exact_posterior(prior, z, cfg.obs_noise)
    call = median_times({"dt": lambda: model.posterior(prior, z)}, repeats=20)["dt"]
    post = model.posterior(prior, z)
    rev_dt, _ = dt.kl_both(post, exact, 4000, g)
    start = time.perf_counter()
    svi = svi_gmm(prior, z, cfg.obs_noise, cfg.n_components, args.svi_steps)
    t_svi = time.perf_counter() - start
    rev_svi, _ = dt.kl_both(svi, exact, 4000, g)
    rev_0, _ = dt.kl_both(prior, exact, 4000, g)
    one = prior[0:1], z[0:1]
    start = time.perf_counter()
    svi_gmm(*one, cfg.obs_noise, cfg.n_components, args.svi_steps)
    t_svi_one = time.perf_counter() - start
    rows = [
        ("distribution transformer, one batched call", call / n_problems * 1e3, call * 1e3,
         float(rev_dt.mean()), float(rev_dt.median())),
        (f"SVI, GMM guide, {args.svi_steps} Adam steps, all problems batched",
         t_svi / n_problems * 1e3, t_svi * 1e3, float(rev_svi.mean()), float(rev_svi.median())),
        (f"SVI, GMM guide, {args.svi_steps} Adam steps, one problem alone", t_svi_one * 1e3,
         float("nan"), float("nan"), float("nan")),
        ("no update (prior as posterior)", 0.0, 0.0, float(rev_0.mean()), float(rev_0.median())),
    ]
    table = markdown_table(["method", "ms per posterior", "ms for 1000", "reverse KL mean",
                            "reverse KL median"], rows)
    print(f"\n## Distribution transformer vs per-instance SVI ({n_problems} toy problems)\n\n"
          f"{table}\n")
    return {"rows": rows}


def svi_gmm(prior: GMM, z: torch.Tensor, noise: float, k: int, steps: int, lr: float = 0.05,
            n_samples: int = 16) -> GMM:
    """Per-problem stochastic VI with a k-component GMM guide (d = 1): the ELBO
    sum_k w_k E_{N_k}[log p(x) + log p(z | x) - log q(x)] with reparameterised draws per
    component; all problems optimised together, each with its own parameters."""
    b = z.shape[0]
    init = prior.means[..., 0] + 0.1 * torch.randn(b, k)
    loc = init.clone().requires_grad_(True)
    log_scale = torch.log(prior.scale_tril[..., 0, 0].clamp_min(1e-3)).clone().requires_grad_()
    logits = torch.zeros(b, k, requires_grad=True)
    opt = torch.optim.Adam([loc, log_scale, logits], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        q = GMM(torch.softmax(logits, -1), loc.unsqueeze(-1),
                log_scale.exp()[..., None, None])
        eps = torch.randn(n_samples, b, k)
        x = loc + log_scale.exp() * eps                                  # (S, B, K)
        xs = x.permute(2, 0, 1).unsqueeze(-1)                            # (K, S, B, 1)
        log_joint = prior.log_prob(xs) - 0.5 * ((z[:, 0, 0] - xs[..., 0]) / noise) ** 2
        elbo = (q.weights.T[:, None, :] * (log_joint - q.log_prob(xs))).sum(0).mean(0)
        (-elbo.sum()).backward()
        opt.step()
    with torch.no_grad():
        return GMM(torch.softmax(logits, -1), loc.unsqueeze(-1).clone(),
                   log_scale.exp()[..., None, None].clone())


if __name__ == "__main__":
    main()
