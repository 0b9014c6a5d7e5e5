"""`dp-bayes-estimate`: a posterior over a training run's epsilon from a membership-inference
audit (Zanella-Béguelin et al., "Bayesian Estimation of Differential Privacy", ICML 2023).

The audit trains many small models with DP-SGD (Opacus) on a fixed dataset, each with a random
half of the canaries, attacks every (model, canary) pair with a loss threshold, and turns the
attack's confusion counts into the joint-beta posterior over epsilon (`varbayes.privacy`), its
credible interval, the Clopper-Pearson and Jeffreys baselines, and the epsilon the training
guaranteed. More than one canary per model is the paper's multi-sample heuristic: it multiplies
the audit samples per trained model but treats the canaries of one model as independent trials.
The `gaussian-mechanism` problem audits the analytic Gaussian mechanism the same way, with no
training.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from varbayes.config import Config as BaseConfig
from varbayes.config import setting
from varbayes.errors import VarbayesError
from varbayes.io import atomic_write_json, read_json
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
from varbayes.privacy import (
    EpsilonPosterior,
    calibrate_threshold,
    check_counts,
    clopper_pearson_interval,
    confusion_counts,
    jeffreys_interval,
)
from varbayes.privacy.figures import audit_figure
from varbayes.privacy.simulate import (
    analytic_gaussian_sigma,
    gaussian_mechanism_counts,
    gaussian_operating_epsilon,
    interval_study,
    tradeoff_counts,
)
from varbayes.report import markdown_table
from varbayes.train import torch_threads

DATASETS = ("synthetic-canary", "gaussian-mechanism")
"""synthetic-canary: two Gaussian classes generated locally plus one canary coordinate per
canary, models trained by DP-SGD; gaussian-mechanism: a sensitivity-1 sum query with analytic
Gaussian noise, no training."""


@dataclass
class Config(BaseConfig):
    """Settings of one audit."""

    epsilon: float = setting(4.0, gt=0, le=50,
                             help="the epsilon the training (or mechanism) is calibrated to")
    delta: float = setting(1e-5, gt=0, lt=1, help="the delta of the guarantee and the posterior")
    models: int = setting(200, ge=4, le=100_000,
                          help="models trained (mechanism runs for gaussian-mechanism)")
    canaries_per_model: int = setting(1, ge=1, le=1024,
                                      help="canaries per model; > 1 is the multi-sample heuristic")
    calibration_fraction: float = setting(0.5, gt=0, lt=1,
                                          help="share of models that only choose the threshold")
    alpha: float = setting(0.05, gt=0, lt=1, help="1 - alpha is the level of the intervals")
    steps: int = setting(30, ge=1, le=100_000, help="DP-SGD steps per model")
    sample_rate: float = setting(1.0, gt=0, le=1, help="Poisson sampling rate of DP-SGD")
    lr: float = setting(1.0, gt=0, help="learning rate (the step uses the mean clipped gradient)")
    max_grad_norm: float = setting(1.0, gt=0, help="per-example clipping norm")
    hidden: int = setting(0, ge=0, le=1024, help="hidden units; 0 is logistic regression")
    n_train: int = setting(100, ge=2, le=1_000_000, help="training examples besides canaries")
    features: int = setting(10, ge=1, le=10_000, help="input dimensions besides canary ones")
    canary_scale: float = setting(10.0, gt=0, help="norm of a canary's input")
    accountant: Literal["prv", "rdp"] = setting("prv", help="Opacus accountant of the guarantee")
    broken_noise: bool = setting(False, help="train without noise but claim the guarantee anyway "
                                             "(a broken DP-SGD the audit should catch)")

    def validate(self) -> None:
        n_cal = _calibration_models(self)
        if n_cal < 2 or self.models - n_cal < 2:
            raise VarbayesError(
                f"models={self.models} with calibration_fraction={self.calibration_fraction} "
                "leaves fewer than 2 models for calibration or for the audit; raise models"
            )


# ---------------------------------------------------------------------------------------------
# run: one audit


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Run the audit on `ctx.dataset` and report epsilon's posterior next to the baselines."""
    start = time.perf_counter()
    if ctx.dataset == "synthetic-canary":
        trials = _dpsgd_trials(cfg, ctx)
    else:
        trials = _gaussian_trials(cfg, ctx.seed)
    train_seconds = time.perf_counter() - start

    n_cal = _calibration_models(cfg)
    include, scores = trials["include"], trials["scores"]
    cal_in, cal_scores = include[:n_cal], scores[:n_cal]
    threshold = calibrate_threshold(cal_scores[cal_in], cal_scores[~cal_in], cfg.delta, cfg.alpha)
    aud_in, aud_scores = include[n_cal:], scores[n_cal:]
    counts = confusion_counts(aud_scores[aud_in], aud_scores[~aud_in], threshold)
    audit = summarize_audit(counts, cfg.delta, cfg.alpha, trials["guarantee"])

    metrics = {k: v for k, v in audit.items() if isinstance(v, (int, float))}
    metrics.update(models=cfg.models, audit_models=cfg.models - n_cal,
                   audit_samples=counts.members + counts.non_members,
                   train_seconds=round(train_seconds, 3))
    if "accuracy" in trials:
        metrics["accuracy"] = trials["accuracy"]
    post = EpsilonPosterior(counts, cfg.delta)
    fig = audit_figure(
        post, (audit["epsilon_lower"], audit["epsilon_upper"]),
        (audit["epsilon_cp_lower"], audit["epsilon_cp_upper"]), cfg.alpha, trials["guarantee"],
        title=f"audit of {ctx.dataset}: {counts.members} member / {counts.non_members} "
              "non-member trials",
    )
    notes = audit_notes(audit, cfg.alpha, cfg.broken_noise)
    details = {"threshold": threshold, "noise_multiplier": trials["noise"],
               "counts": counts.as_dict(),
               "sampling_interval": list(post.sample_interval(cfg.alpha, 200_000, ctx.seed))}
    return RunOutput(metrics=metrics, figures={"audit": fig},
                     timing={"train_seconds": round(train_seconds, 3)}, details=details,
                     notes=notes)


def summarize_audit(counts: Any, delta: float, alpha: float, guarantee: float) -> dict[str, Any]:
    """The numbers an audit reports: the credible interval and median, the baselines at the
    same level, the guarantee, and whether a lower end exceeds it."""
    c = check_counts(**counts.as_dict())
    post = EpsilonPosterior(c, delta)
    lo, hi = post.interval(alpha)
    cp = clopper_pearson_interval(**c.as_dict(), delta=delta, alpha=alpha)
    jf = jeffreys_interval(**c.as_dict(), delta=delta, alpha=alpha)
    return {
        "epsilon_lower": lo, "epsilon_upper": hi, "epsilon_median": post.median(),
        "epsilon_prob_zero": float(post.cdf(0.0)),
        "epsilon_cp_lower": cp[0], "epsilon_cp_upper": cp[1],
        "epsilon_jeffreys_lower": jf[0], "epsilon_jeffreys_upper": jf[1],
        "epsilon_theoretical": guarantee,
        "lower_exceeds_guarantee": float(lo > guarantee),
        "cp_lower_exceeds_guarantee": float(cp[0] > guarantee),
        **{k: float(v) for k, v in c.as_dict().items()},
    }


def audit_notes(audit: dict[str, Any], alpha: float, broken_noise: bool) -> list[str]:
    """What a reader must know about this audit's result, in sentences."""
    level = f"{100 * (1 - alpha):g} %"
    notes = [
        f"Joint-beta {level} credible interval for epsilon: [{audit['epsilon_lower']:.4g}, "
        f"{audit['epsilon_upper']:.4g}]; Clopper-Pearson: [{audit['epsilon_cp_lower']:.4g}, "
        f"{audit['epsilon_cp_upper']:.4g}]; the training guaranteed epsilon = "
        f"{audit['epsilon_theoretical']:.4g}.",
        "A single-threshold attack certifies only the epsilon of its own operating point, so a "
        "lower end far below the guarantee is expected and does not mean the guarantee is loose.",
    ]
    if audit["lower_exceeds_guarantee"]:
        notes.append(
            f"WARNING: the lower end {audit['epsilon_lower']:.4g} exceeds the guaranteed epsilon "
            f"{audit['epsilon_theoretical']:.4g}. A sound audit of a correct (epsilon, delta)-DP "
            f"training reports that only rarely (about {alpha / 2:g} of audits, the tail the "
            "interval leaves out): either a rare draw or the training is not as private as "
            "claimed"
            + (" (expected here: broken_noise=true trains without noise)." if broken_noise
               else ".")
        )
    if broken_noise:
        notes.append("broken_noise=true: the models were trained with no noise while the "
                     "guarantee of the configured noise is reported, to show the audit catching "
                     "a broken DP-SGD.")
    return notes


def _calibration_models(cfg: Config) -> int:
    return int(round(cfg.calibration_fraction * cfg.models))


def _inclusion(cfg: Config, seed: int) -> np.ndarray:
    """(models, canaries) membership: each canary in half of the calibration models and half of
    the audit models, at random, so both parts always hold members and non-members."""
    rng = np.random.default_rng([seed, 7])
    n_cal = _calibration_models(cfg)

    def half(n: int) -> np.ndarray:
        return rng.permutation(n) < n // 2

    return np.stack([np.concatenate([half(n_cal), half(cfg.models - n_cal)])
                     for _ in range(cfg.canaries_per_model)], axis=1)


def _dpsgd_trials(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    """Train the models and score every (model, canary) pair by minus the canary's loss."""

    from varbayes.privacy import dpsgd

    k = cfg.canaries_per_model
    data = dpsgd.make_canary_data(cfg.n_train, cfg.features, k, cfg.canary_scale, ctx.seed)
    noise = dpsgd.noise_multiplier(cfg.epsilon, cfg.delta, cfg.sample_rate, cfg.steps,
                                   cfg.accountant)
    guarantee = dpsgd.guaranteed_epsilon(noise, cfg.delta, cfg.sample_rate, cfg.steps,
                                         cfg.accountant)
    include = _inclusion(cfg, ctx.seed)
    with torch_threads(1):  # the models are tiny: more threads only add overhead
        losses, accs = _train_models(cfg, ctx, data, include, noise)
    return {"include": include, "scores": -np.asarray(losses), "guarantee": guarantee,
            "noise": noise, "accuracy": float(np.mean(accs))}


def _train_models(cfg: Config, ctx: RunContext, data: Any, include: np.ndarray,
                  noise: float) -> tuple[list[list[float]], list[float]]:
    """Canary losses and test accuracy of every model, continuing from the checkpoint file on
    --resume (each model's seed depends only on the run seed and its index)."""
    import torch

    from varbayes.privacy import dpsgd

    ckpt = ctx.checkpoint_dir / "audit-trials.json"
    losses: list[list[float]] = []
    accs: list[float] = []
    if ctx.resume and ckpt.is_file():
        saved = read_json(ckpt)
        if saved.get("config") == cfg.to_dict() and saved.get("seed") == ctx.seed:
            losses, accs = saved["losses"], saved["accuracy"]
    expected_batch = max(1, round(cfg.sample_rate * cfg.n_train))
    with ctx.progress(cfg.models, "training DP-SGD models") as bar:
        bar.advance(len(losses))
        for m in range(len(losses), cfg.models):
            x = torch.cat([data.x, data.canary_x[include[m]]])
            y = torch.cat([data.y, data.canary_y[include[m]]])
            model = dpsgd.train_dpsgd(
                x, y, noise=0.0 if cfg.broken_noise else noise, max_grad_norm=cfg.max_grad_norm,
                sample_rate=cfg.sample_rate, steps=cfg.steps, lr=cfg.lr, hidden=cfg.hidden,
                init_seed=ctx.seed, seed=_model_seed(ctx.seed, m),
                expected_batch_size=expected_batch,
            )
            losses.append(dpsgd.example_losses(model, data.canary_x, data.canary_y).tolist())
            accs.append(dpsgd.accuracy(model, data.x_test, data.y_test))
            bar.advance()
            if (m + 1) % _CHECKPOINT_EVERY == 0 or m + 1 == cfg.models:
                atomic_write_json(ckpt, {"config": cfg.to_dict(), "seed": ctx.seed,
                                         "losses": losses, "accuracy": accs})
    return losses, accs


_CHECKPOINT_EVERY = 10  # models between saves of the trial file


def _model_seed(seed: int, model: int) -> int:
    """The torch seed of one model's sampling and noise (independent streams per model)."""
    return int(np.random.SeedSequence([seed, model]).generate_state(1)[0])


def _gaussian_trials(cfg: Config, seed: int) -> dict[str, Any]:
    """Runs of a sensitivity-1 sum query, one output coordinate per canary, with the analytic
    Gaussian mechanism's noise for (epsilon, delta); the score is the output."""
    sigma = analytic_gaussian_sigma(cfg.epsilon, cfg.delta)
    include = _inclusion(cfg, seed)
    rng = np.random.default_rng([seed, 11])
    noise = 0.0 if cfg.broken_noise else sigma
    scores = include.astype(float) + noise * rng.standard_normal(include.shape)
    return {"include": include, "scores": scores, "guarantee": cfg.epsilon, "noise": sigma}


# ---------------------------------------------------------------------------------------------
# reproduce

README_COUNTS = {"tp": 487, "fn": 0, "fp": 512, "tn": 1}
README_DELTA, README_ALPHA = 1e-5, 0.1
README_INTERVAL = (0.145, 6.399)  # the package README's joint-beta interval for these counts


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """(iii) the published example, (i) simulated audits on a known trade-off curve, (ii) the
    Gaussian mechanism (full only), and DP-SGD audits that must not exceed, resp. must catch,
    the claimed guarantee."""
    claims: list[Claim] = []
    tables: dict[str, str] = {}
    figures: dict[str, Any] = {}
    details: dict[str, Any] = {}

    with ctx.step("the published example"):
        claims += _readme_claims(details, figures)

    # 200 repeats in both versions: coverage from 50 repeats has a standard error of 0.04, too
    # coarse for a 0.90 threshold. Quick uses the push-forward interval (20k draws per audit),
    # the full run the quadrature reference.
    repeats, method = 200, ("sampling" if ctx.quick else "quadrature")
    settings = [(1.0, 500), (2.0, 500)] + ([] if ctx.quick else [(1.0, 2000), (4.0, 1000)])
    rows = []
    for i, (eps, n) in enumerate(settings):
        with ctx.step(f"simulated audits: eps = {eps:g}, n = {n}, {repeats} repeats ({method})"):
            study = interval_study(tradeoff_counts(eps, n, repeats, seed=100 + i), eps, 0.0, 0.05,
                                   method=method)
        rows.append((f"trade-off eps={eps:g} n={n}", study))
    if not ctx.quick:
        with ctx.step(f"Gaussian mechanism (2, 1e-5): {repeats} repeats ({method})"):
            sigma = analytic_gaussian_sigma(2.0, 1e-5)
            eps_op = gaussian_operating_epsilon(sigma, 1e-5)
            study = interval_study(gaussian_mechanism_counts(sigma, 1000, repeats, seed=200),
                                   eps_op, 1e-5, 0.05, method=method)
        rows.append((f"Gaussian mechanism eps_op={eps_op:.3f} n=1000", study))
        details["gaussian_mechanism"] = {"sigma": sigma, "epsilon_op": eps_op}
    details["interval_method"] = method
    for name, study in rows:
        claims.append(at_most(f"{name}: mean width joint-beta / Clopper-Pearson",
                              study.width_ratio, 0.75, baseline=1.0))
        claims.append(at_least(f"{name}: coverage of the true eps by the 95 % interval",
                               study.coverage["joint-beta"], 0.90,
                               baseline=study.coverage["clopper-pearson"]))
    title = f"Simulated audits (alpha = 0.05, equal-tailed, joint-beta by {method})"
    tables[title] = markdown_table(
        ["setting", "true eps", "repeats", "width jB", "width CP", "width Jeffreys",
         "ratio jB/CP", "coverage jB", "coverage CP", "coverage Jeffreys"],
        [(name, s.truth, s.repeats, s.width["joint-beta"], s.width["clopper-pearson"],
          s.width["jeffreys"], s.width_ratio, s.coverage["joint-beta"],
          s.coverage["clopper-pearson"], s.coverage["jeffreys"]) for name, s in rows],
    )
    details["simulated"] = {name: vars(s) for name, s in rows}

    claims += _dpsgd_claims(ctx, tables, figures, details)
    notes = [
        "The published example uses the quadrature (the reference); the push-forward of 200k "
        "posterior samples is recorded next to it in details.",
        "The DP-SGD rows are project checks, not paper claims: a sound audit's lower end stays "
        "below the guarantee of a correct DP-SGD, and exceeds the claim of a broken one.",
    ]
    return Reproduction(claims, figures=figures, tables=tables, details=details, notes=notes)


def _readme_claims(details: dict[str, Any], figures: dict[str, Any]) -> list[Claim]:
    post = EpsilonPosterior(check_counts(**README_COUNTS), README_DELTA)
    lo, hi = post.interval(README_ALPHA)
    cp = clopper_pearson_interval(**README_COUNTS, delta=README_DELTA, alpha=README_ALPHA)
    jf = jeffreys_interval(**README_COUNTS, delta=README_DELTA, alpha=README_ALPHA)
    details["readme_example"] = {
        "counts": README_COUNTS, "delta": README_DELTA, "alpha": README_ALPHA,
        "joint_beta": [lo, hi], "published": list(README_INTERVAL),
        "sampling_200k": list(post.sample_interval(README_ALPHA, 200_000)),
        "clopper_pearson": list(cp), "jeffreys": list(jf),
    }
    figures["readme-example"] = audit_figure(
        post, (lo, hi), cp, README_ALPHA, title="published example: TP=487 FN=0 FP=512 TN=1")
    pub_lo, pub_hi = README_INTERVAL
    return [
        within("published example: lower end of the 90 % interval (paper 0.145)", lo,
               pub_lo - 0.02, pub_lo + 0.02, baseline=cp[0]),
        within("published example: upper end of the 90 % interval (paper 6.399)", hi,
               pub_hi - 0.02, pub_hi + 0.02, baseline=cp[1]),
        holds("published example: Clopper-Pearson gives [0, inf]",
              cp[0] == 0.0 and math.isinf(cp[1]), cp[1], "== inf", baseline=cp[0]),
    ]


def _dpsgd_claims(ctx: ReproduceContext, tables: dict[str, str], figures: dict[str, Any],
                  details: dict[str, Any]) -> list[Claim]:
    """Two DP-SGD audits with the multi-sample heuristic: a correct one at eps = 4 and a broken
    one (no noise) that claims eps = 2."""
    from varbayes.runner import run as run_method

    models, k = (40, 16) if ctx.quick else (120, 32)
    audits = {
        "correct DP-SGD (eps = 4)": {"epsilon": 4.0},
        "broken DP-SGD, claims eps = 2": {"epsilon": 2.0, "broken_noise": True},
    }
    rows, claims = [], []
    for i, (name, extra) in enumerate(audits.items()):
        with ctx.step(f"audit of {name}: {models} models x {k} canaries"):
            rec = run_method("dp-bayes-estimate", "synthetic-canary", out=ctx.out / f"audit-{i}",
                             quiet=ctx.quiet, models=models, canaries_per_model=k, **extra)
        m = rec["metrics"]
        rows.append((name, m["epsilon_theoretical"], m["audit_samples"], m["epsilon_lower"],
                     m["epsilon_upper"], m["epsilon_cp_lower"], m["epsilon_cp_upper"],
                     m["accuracy"]))
        details[f"dpsgd_audit_{i}"] = m
        if extra.get("broken_noise"):
            claims.append(at_least(f"{name}: joint-beta lower end exceeds the claim (flagged)",
                                   m["epsilon_lower"], m["epsilon_theoretical"],
                                   baseline=m["epsilon_cp_lower"]))
        else:
            claims.append(at_most(f"{name}: joint-beta lower end within the guarantee",
                                  m["epsilon_lower"], m["epsilon_theoretical"],
                                  baseline=m["epsilon_cp_lower"]))
    tables["DP-SGD audits (multi-sample heuristic, 95 % intervals)"] = markdown_table(
        ["audit", "guarantee", "audit samples", "jB lower", "jB upper", "CP lower", "CP upper",
         "test accuracy"], rows)
    return claims
