"""`programmable-vi`: objectives as programs with a gradient strategy per sample site (Becker,
Lew, Wang et al., "Probabilistic Programming with Programmable Variational Inference", PLDI 2024).

The method is the `varbayes.infer` core itself; this module runs its experiments. On the
`cone` problem it trains the noisy-cone guides with the chosen objective (ELBO, IWELBO, HVI,
IWHVI, DIWHVI) at the artifact's exact settings; on `digits` it trains the VAE of
`varbayes.methods.vi.vae` with ELBO or IWELBO(K). `reproduce` checks the paper's cone table,
the unbiasedness of REINFORCE, enumeration and MVD gradients, and the IWAE behaviour of the VAE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from varbayes import infer
from varbayes.config import setting
from varbayes.errors import VarbayesError
from varbayes.method import (
    Claim,
    ReproduceContext,
    Reproduction,
    RunContext,
    RunOutput,
    at_least,
    at_most,
    holds,
    within,
)
from varbayes.methods.vi import cone, estimators
from varbayes.methods.vi.vae import VAE, VAEModel, binarize, load_vae
from varbayes.report import markdown_table
from varbayes.train import TrainConfig, torch_threads

DATASETS = ("cone", "digits")
VAE_OBJECTIVES = ("elbo", "iwelbo")


@dataclass
class Config(TrainConfig):
    """Settings of the cone (objective, k, n, steps, samples, replicates) and of the digits
    VAE (objective elbo/iwelbo, k, the engine's epochs/batch_size/lr, eval_k)."""

    objective: Literal["elbo", "iwelbo", "hvi", "iwhvi", "diwhvi"] = setting(
        "elbo", help="objective to maximise (digits: elbo or iwelbo)")
    k: int = setting(5, help="particles K of iwelbo and diwhvi", ge=1)
    n: int = setting(5, help="auxiliary samples N of iwhvi and diwhvi", ge=1)
    steps: int = setting(5000, help="cone: gradient-ascent steps (step size 1e-3)", ge=1)
    samples: int | None = setting(
        None, help="cone: gradient samples per step (none: the artifact's 64, or 1 for iwelbo)",
        ge=1)
    eval_samples: int = setting(5000, help="cone: fresh samples for the final value", ge=2)
    replicates: int = setting(1, help="cone: independent runs trained side by side", ge=1)
    eval_k: tuple[int, ...] = setting((1, 5, 50, 500),
                                      help="digits: K of the held-out IWELBO(K) reported")
    epochs: int = setting(100, help="digits: passes over the training images", ge=1)
    batch_size: int = setting(64, help="digits: minibatch size", ge=1)
    lr_schedule: Literal["cosine", "constant", "cosine-epoch"] = setting(
        "constant", help="digits: learning-rate schedule")
    val_fraction: float = setting(0.0, help="digits: fraction held out for validation",
                                  ge=0, lt=1)

    def validate(self) -> None:
        if any(k < 1 for k in self.eval_k) or not self.eval_k:
            raise VarbayesError("setting eval_k must list positive particle counts, e.g. 1,5,50")


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """The cone with one objective, or the digits VAE with ELBO/IWELBO(k)."""
    with torch_threads(1):
        if ctx.dataset == "cone":
            return _run_cone(cfg, ctx)
        return _run_vae(cfg, ctx)




def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> VAEModel:
    """Rebuild a saved digits VAE."""
    return load_vae(meta, tensors)


# ---------------------------------------------------------------------------------------------
# runs


def _run_cone(cfg: Config, ctx: RunContext) -> RunOutput:
    r = cone.run_cone(cfg.objective, steps=cfg.steps, samples=cfg.samples,
                      eval_samples=cfg.eval_samples, replicates=cfg.replicates, seed=ctx.seed,
                      k=cfg.k, n=cfg.n, quiet=ctx.quiet)
    oracle = cone.oracle_log_evidence()
    se = math.sqrt(sum(s**2 for s in r.stderrs)) / len(r.stderrs)
    metrics = {"objective": r.value, "objective_se": se, "log_evidence_oracle": oracle,
               "gap_to_oracle": oracle - r.value,
               "initial_objective": sum(r.initial) / len(r.initial),
               "train_seconds": round(r.seconds, 3)}
    figures = {"cone_guide": cone_figure({cfg.objective: r.guide}),
               "training_curve": _curve_figure({cfg.objective: r.curve}, cfg.steps)}
    notes = [f"Paper (Table 4): {cone.PAPER[cfg.objective]}; oracle log p(z=5) = {oracle:.4f} "
             "by quadrature." if (cfg.k, cfg.n) == (5, 5) else
             f"Oracle log p(z=5) = {oracle:.4f} by quadrature."]
    details = {"values": r.values, "stderrs": r.stderrs, "phi": r.phi, "curve": r.curve}
    return RunOutput(metrics, None, figures, {"train_seconds": r.seconds}, details, notes)


def _run_vae(cfg: Config, ctx: RunContext) -> RunOutput:
    if cfg.objective not in VAE_OBJECTIVES:
        raise VarbayesError(f"objective {cfg.objective} needs an auxiliary guide; the digits VAE "
                            f"trains with {' or '.join(VAE_OBJECTIVES)}")
    ds = ctx.load_data()
    x_train, x_test = binarize(ds.x_train, ds.meta), binarize(ds.x_test, ds.meta)
    vae, result = train_vae(cfg, x_train, seed=ctx.seed, quiet=ctx.quiet,
                            checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume)
    metrics: dict[str, float] = {}
    for k in cfg.eval_k:
        mean, se = infer.evaluate(infer.iwelbo(k), vae.model, vae.guide, x_test, batch_size=150)
        metrics[f"test_iwelbo_{k}"], metrics[f"test_iwelbo_{k}_se"] = mean, se
    metrics["train_seconds"] = round(result.train_seconds, 3)
    meta = {"method": ctx.method, "dataset": ds.name, "objective": cfg.objective, "k": cfg.k,
            "config": cfg.to_dict()}
    from varbayes.report.figures import training_curve

    figures = {"training_curve": training_curve(result.history, f"VAE ({_label(cfg)})")}
    return RunOutput(metrics, VAEModel(vae, meta), figures,
                     {"train_seconds": result.train_seconds},
                     {"history": result.history, "n_train": len(x_train)})


def train_vae(cfg: Config, x_train: torch.Tensor, *, seed: int = 0, quiet: bool = True,
              checkpoint_dir: Any = None, resume: bool = False) -> tuple[VAE, Any]:
    """Train the digits VAE with ELBO or IWELBO(k) through `infer.fit` (the shared engine)."""
    torch.manual_seed(seed)
    vae = VAE(n_in=x_train.shape[1])
    objective = infer.elbo() if cfg.objective == "elbo" else infer.iwelbo(cfg.k)
    train_cfg = TrainConfig.from_values(
        {f: getattr(cfg, f) for f in TrainConfig.__dataclass_fields__})
    _, result = infer.fit(objective, vae.model, vae.guide, x_train, cfg=train_cfg, seed=seed,
                          quiet=quiet, checkpoint_dir=checkpoint_dir, resume=resume,
                          description=f"VAE {_label(cfg)}")
    return vae, result


def _label(cfg: Config) -> str:
    return "ELBO" if cfg.objective == "elbo" else f"IWELBO({cfg.k})"


# ---------------------------------------------------------------------------------------------
# reproduction


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """The cone table, the estimator check and the VAE's IWAE behaviour (see the docs page)."""
    with torch_threads(1):
        return _reproduce(ctx)


def _reproduce(ctx: ReproduceContext) -> Reproduction:
    claims: list[Claim] = []
    tables: dict[str, str] = {}
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {}
    with ctx.step("noisy cone"):
        c, t, f, d = _reproduce_cone(ctx)
        claims += c
        tables.update(t)
        figures.update(f)
        details["cone"] = d
    with ctx.step("gradient estimators"):
        c, t, d = _reproduce_estimators(ctx)
        claims += c
        tables.update(t)
        details["estimators"] = d
    with ctx.step("digits VAE"):
        c, t, d = _reproduce_vae(ctx)
        claims += c
        tables.update(t)
        details["vae"] = d
    notes = ["The cone's replicates are independent runs (own parameters and random numbers) "
             "trained side by side in one vectorised loop; their mean is the reported value."]
    return Reproduction(claims, figures, tables, details, notes)


def _reproduce_cone(ctx: ReproduceContext) -> tuple[list[Claim], dict, dict, dict]:
    oracle = cone.oracle_log_evidence()
    claims = [within("oracle log p(z=5) by quadrature", oracle, -5.3233, -5.3231)]
    if ctx.quick:
        return _quick_cone(ctx, oracle, claims)
    results = {name: cone.run_cone(name, replicates=3, seed=0, quiet=ctx.quiet)
               for name in cone.OBJECTIVES}
    v = {name: r.value for name, r in results.items()}
    for name, r in results.items():
        lo, hi = cone.INTERVALS[name]
        claims.append(within(f"cone {cone.LABELS[name]} (mean of 3 runs)", r.value, lo, hi,
                             baseline=cone.PAPER[name]))
    order = v["hvi"] < min(v["elbo"], v["iwhvi"]) and max(v["elbo"], v["iwhvi"]) < v[
        "iwelbo"] < v["diwhvi"]
    claims.append(holds("cone ordering HVI < ELBO ~ IWHVI < IWELBO < DIWHVI", order,
                        v["diwhvi"] - v["hvi"], "strict order (measured: DIWHVI - HVI)"))
    highest = max(max(r.values) for r in results.values())
    claims.append(at_most("cone: every run's value below log p(z=5)", highest, oracle))
    rows = [(cone.LABELS[n], f"{r.value:.3f}", " ".join(f"{x:.3f}" for x in r.values),
             cone.PAPER[n], cone.PYRO.get(n, "unsupported"),
             f"[{cone.INTERVALS[n][0]}, {cone.INTERVALS[n][1]}]") for n, r in results.items()]
    table = markdown_table(["objective", "varbayes (mean)", "3 runs", "paper", "Pyro (paper)",
                            "interval"], rows)
    figures = {"cone_guides": cone_figure({n: r.guide for n, r in results.items()}),
               "cone_training": _curve_figure({n: r.curve for n, r in results.items()}, 5000)}
    details = {n: {"values": r.values, "stderrs": r.stderrs, "phi": r.phi,
                   "seconds": r.seconds} for n, r in results.items()}
    return claims, {f"noisy cone (oracle {oracle:.4f})": table}, figures, details


def _quick_cone(ctx: ReproduceContext, oracle: float,
                claims: list[Claim]) -> tuple[list[Claim], dict, dict, dict]:
    """1000 steps, 16 samples: bound orderings at the trained parameters (any fixed parameters
    must satisfy them), each within 2 Monte Carlo standard errors, all below the oracle."""
    naive = cone.run_cone("elbo", steps=1000, samples=16, quiet=ctx.quiet).guide
    angle = cone.run_cone("iwhvi", steps=1000, samples=16, quiet=ctx.quiet).guide
    at = {n: cone.evaluate_at(cone.setting(n).objective,
                              naive if cone.setting(n).guide == "naive" else angle, 5000)
          for n in cone.OBJECTIVES}
    v = {n: (m[0], s[0]) for n, (m, s) in at.items()}

    def below(a: str, b: str) -> Claim:
        gap = v[b][0] - v[a][0]
        tol = 2 * math.hypot(v[a][1], v[b][1])
        return holds(f"cone quick: {cone.LABELS[a]} <= {cone.LABELS[b]} at the same guide",
                     gap >= -tol, gap, f">= -2 MC SE ({-tol:.3g})")

    claims += [below("elbo", "iwelbo"), below("hvi", "iwhvi"), below("iwhvi", "diwhvi"),
               at_most("cone quick: every value below log p(z=5)",
                       max(m for m, _ in v.values()), oracle)]
    rows = [(cone.LABELS[n], f"{m:.3f} ± {s:.3f}") for n, (m, s) in v.items()]
    table = markdown_table(["objective at the quick-trained guide", "value ± SE"], rows)
    return claims, {"noisy cone (quick)": table}, {}, {n: list(x) for n, x in v.items()}


def _reproduce_estimators(ctx: ReproduceContext) -> tuple[list[Claim], dict, dict]:
    n, z = (10_000, 4.0) if ctx.quick else (100_000, 3.0)
    exact = estimators.exact_gradient().tolist()
    torch.manual_seed(0)
    stats = {s: estimators.gradient_estimates(s, n) for s in estimators.STRATEGIES}
    claims = []
    for s, st in stats.items():
        worst = max(abs(m - e) / se for m, e, se in zip(st.mean, exact, st.stderr))
        claims.append(at_most(f"{s} gradient mean within {z:g} SE of exact (worst coordinate, "
                              "in SE)", worst, z))
    var = {s: st.variance[0] for s, st in stats.items()}
    claims.append(holds("d/dp variance: MVD <= REINFORCE and ENUM <= REINFORCE",
                        var["mvd"] <= var["reinforce"] and var["enum"] <= var["reinforce"],
                        var["reinforce"] / max(var["mvd"], var["enum"]),
                        "ratio REINFORCE / max(MVD, ENUM) >= 1"))
    # With shared downstream noise, ENUM and MVD differ in theory only by the variance of the
    # direct term d/dp log q(v), 1/(p(1-p)) ~ 4 on ~6e5: compare up to 3 SE of the difference
    se_diff = math.hypot(stats["enum"].variance_se[0], stats["mvd"].variance_se[0])
    z_diff = (var["enum"] - var["mvd"]) / se_diff
    claims.append(at_most("d/dp variance: ENUM <= MVD (difference in SE of the variance "
                          "estimates)", z_diff, 3.0))
    rows = [("exact", *[f"{e:.2f}" for e in exact], "-")]
    rows += [(s, *[f"{m:.2f} ± {se:.2f}" for m, se in zip(st.mean, st.stderr)],
              f"{st.variance[0]:.4g} ± {st.variance_se[0]:.2g}") for s, st in stats.items()]
    table = markdown_table(["estimator", "dELBO/dp", "dELBO/dmu1", "dELBO/dmu2",
                            "Var d/dp"], rows)
    details = {"exact": exact, "n": n, **{s: st.__dict__ for s, st in stats.items()}}
    return claims, {f"gradient estimators ({n} estimates, mean ± SE)": table}, details


def _reproduce_vae(ctx: ReproduceContext) -> tuple[list[Claim], dict, dict]:
    from varbayes.data import load

    ds = load("digits")
    x_train, x_test = binarize(ds.x_train, ds.meta), binarize(ds.x_test, ds.meta)
    epochs, eval_k = (25, (1, 5, 50)) if ctx.quick else (100, (1, 5, 50, 500))
    values: dict[str, dict[int, tuple[float, float]]] = {}
    paired: dict[str, torch.Tensor] = {}
    for objective in VAE_OBJECTIVES:
        cfg = Config(objective=objective, k=5, epochs=epochs)
        vae, _ = train_vae(cfg, x_train, quiet=ctx.quiet)
        values[objective] = {}
        for k in eval_k:
            torch.manual_seed(1)
            with torch.no_grad():
                v = infer.estimate(infer.iwelbo(k), vae.model, vae.guide, x_test, plates=1).value
            values[objective][k] = (float(v.mean()), float(v.std() / math.sqrt(len(v))))
            paired[f"{objective}-{k}"] = v
    claims = []
    for objective in VAE_OBJECTIVES:
        steps = [float((paired[f"{objective}-{b}"] - paired[f"{objective}-{a}"]).mean())
                 for a, b in zip(eval_k, eval_k[1:])]
        claims.append(at_least(f"VAE ({objective}-trained): held-out IWELBO(K) increases in K "
                               f"(K = {', '.join(map(str, eval_k))}; smallest step)",
                               min(steps), 0.0))
    k5 = 5
    diff = paired[f"iwelbo-{k5}"] - paired[f"elbo-{k5}"]
    se = float(diff.std() / math.sqrt(len(diff)))
    claims.append(at_least("VAE: held-out IWELBO(5), IWELBO(5)-trained minus ELBO-trained "
                           "(nats; > 2 paired SE)", float(diff.mean()), 2 * se,
                           baseline=0.0))
    kmax = eval_k[-1]
    rows = [(f"IWELBO({k})", *[f"{values[o][k][0]:.3f} ± {values[o][k][1]:.3f}"
                               for o in VAE_OBJECTIVES]) for k in eval_k]
    table = markdown_table(["held-out bound", "ELBO-trained", "IWELBO(5)-trained"], rows)
    details = {"epochs": epochs, "values": {o: {str(k): v for k, v in d.items()}
                                            for o, d in values.items()},
               f"loglik_gain_iwelbo_{kmax}": float((paired[f"iwelbo-{kmax}"]
                                                    - paired[f"elbo-{kmax}"]).mean())}
    return claims, {f"digits VAE, held-out bounds ({epochs} epochs)": table}, details


# ---------------------------------------------------------------------------------------------
# figures


def cone_figure(guides: dict[str, torch.nn.Module], n: int = 1500) -> Any:
    """Samples of each trained guide (first replicate) with the ridge x^2 + y^2 = 5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(guides), figsize=(3 * len(guides), 3.1), squeeze=False)
    angle = torch.linspace(0, 2 * math.pi, 200)
    for ax, (name, guide) in zip(axes[0], guides.items()):
        with torch.no_grad(), infer.scope(plates=1), infer.particles(n):
            trace = infer.simulate(guide)
        x, y = trace["x"][..., 0], trace["y"][..., 0]
        ax.scatter(x.numpy(), y.numpy(), s=2, alpha=0.4)
        ax.plot(math.sqrt(5) * angle.cos(), math.sqrt(5) * angle.sin(), "k-", lw=1)
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_aspect("equal")
        ax.set_title(cone.LABELS.get(name, name))
    fig.tight_layout()
    return fig


def _curve_figure(curves: dict[str, list[float]], steps: int) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, curve in curves.items():
        xs = [steps * (i + 0.5) / len(curve) for i in range(len(curve))]
        ax.plot(xs, curve, label=cone.LABELS.get(name, name))
    ax.set_ylim(-15, -5)
    ax.set_xlabel("step")
    ax.set_ylabel("training objective")
    ax.legend()
    fig.tight_layout()
    return fig
