"""`distribution-transformer`: amortized Bayesian updates of Gaussian-mixture priors
(Whittle, Ziomek, Rawling, Osborne, "Distribution Transformers: Fast Approximate Bayesian
Inference With On-The-Fly Prior Adaptation", arXiv 2502.02463, 2025).

A transformer maps a prior given as a K-component Gaussian mixture plus a set of observations
to a K-component Gaussian-mixture posterior. Because it is trained on priors drawn from a
meta-prior, a new prior at test time needs no retraining, and because prior and posterior are
the same family the posterior can be fed back as the next prior (`filter`): sequential
inference is a first-class use.

Network: each prior component becomes a token [logit w, mu, log diag L, strict-lower L] -> MLP;
each observation a token; a decoder with full self-attention over components and
cross-attention to the observations; a shared de-embedding MLP back to component parameters
(weights by sigmoid then renormalised, Cholesky diagonal by exp + 1e-6). Loss: NLL of the
latent under the posterior plus NLL under the de-embedded prior (reconstruction).

Two additions against heavy-tailed problems (spec B.7), both on by default and switchable:
`standardize` maps every problem to the prior's own location and scale (mixture mean and
standard deviation; the observation noise becomes a feature log(noise / scale)) and maps the
output back, so the network sees O(1) numbers whatever the prior's scale; `relative` predicts
each output component as its prior component plus a correction (zero-initialised, so an
untrained network returns the prior).

Python:

    from varbayes.methods.amortized import distribution_transformer as dt
    model = dt.train(dt.Config())[0]
    post = model.posterior(prior_gmm, z)          # z: (B, M, obs_dim)
    posteriors = model.filter(prior_gmm, zs)      # zs: (B, T, obs_dim), one update per step
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from varbayes.config import setting
from varbayes.distributions.gmm import GMM, linear_gaussian_posterior
from varbayes.errors import VarbayesError
from varbayes.io import atomic_write_json, save_tensors
from varbayes.method import (
    ReproduceContext,
    Reproduction,
    RunContext,
    RunOutput,
    at_most,
    holds,
)
from varbayes.models import FORMAT, restore_network
from varbayes.nn.set_transformer import SetDecoder
from varbayes.priors.base import numpy_rng
from varbayes.train import Learner, Step, TrainConfig, fit

DATASETS = ("gmm-toy",)  # the closed-form toy: GMM prior, z = x + N(0, noise)


@dataclass
class Config(TrainConfig):
    """Settings; defaults are the spec's small-scale closed-form toy (B.5)."""

    epochs: int = setting(15, help="epochs of `steps_per_epoch` steps on fresh problems", ge=1)
    steps_per_epoch: int = setting(100, help="optimiser steps per epoch", ge=1)
    batch_size: int = setting(2048, help="(prior, observation) problems per step", ge=1)
    lr: float = setting(1e-3, help="AdamW learning rate", gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = setting(
        "adamw", help="optimiser (AdamW as in the reference)")
    warmup_steps: int = setting(50, help="linear warm-up steps before cosine decay", ge=0)
    val_fraction: float = setting(0.0, help="unused: every step sees fresh problems", ge=0, lt=1)
    grad_value_clamp: float = setting(1e4, help="clamp every gradient entry to +-this", gt=0)
    d_model: int = setting(32, help="transformer width", ge=4)
    n_heads: int = setting(4, help="attention heads", ge=1)
    d_ff: int = setting(128, help="feed-forward width", ge=4)
    n_layers: int = setting(4, help="decoder layers", ge=1)
    mlp_hidden: int = setting(64, help="hidden width of the embedding MLPs", ge=4)
    n_components: int = setting(2, help="K, mixture components of prior and posterior", ge=1)
    dim: int = setting(1, help="latent dimension d", ge=1)
    obs_noise: float = setting(1.0, help="observation noise standard deviation", gt=0)
    n_observations: int = setting(1, help="observations per training problem", ge=1)
    meta_mean_std: float = setting(1.0, help="std of the meta-prior's component means", gt=0)
    recon_weight: float = setting(1.0, help="weight of the prior-reconstruction NLL", ge=0)
    standardize: bool = setting(True, help="work in each prior's own location and scale")
    relative: bool = setting(True, help="predict posterior components as prior + correction")
    eval_problems: int = setting(1000, help="test problems in `run`", ge=1)
    mc_samples: int = setting(10_000, help="Monte-Carlo samples per KL estimate", ge=10)

    def validate(self) -> None:
        if self.d_model % self.n_heads:
            raise VarbayesError(f"d_model {self.d_model} must be divisible by n_heads "
                                f"{self.n_heads}")


# ---------------------------------------------------------------------------------------------
# the meta-prior of the toy and its exact posterior


def sample_meta_prior(n: int, cfg: Config, generator: torch.Generator | None = None,
                      mean_std: float | None = None) -> GMM:
    """n GMM priors: w ~ Dir(1/K), mu_k ~ N(0, mean_std^2 I), precision ~ Wishart(d + 1, I)
    (+ 1e-6 I), covariance its inverse."""
    rng = numpy_rng(generator)
    k, d = cfg.n_components, cfg.dim
    w = rng.dirichlet(np.full(k, 1.0 / k), size=n)
    w = np.clip(w, 1e-12, None)
    w = w / w.sum(-1, keepdims=True)
    mu = (mean_std or cfg.meta_mean_std) * rng.standard_normal((n, k, d))
    prec = _wishart_identity(rng, d + 1, d, (n, k)) + 1e-6 * np.eye(d)
    cov = np.linalg.inv(prec)
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    chol = np.linalg.cholesky(cov)
    return GMM(torch.as_tensor(w, dtype=torch.float32), torch.as_tensor(mu, dtype=torch.float32),
               torch.as_tensor(chol, dtype=torch.float32))


def _wishart_identity(rng: np.random.Generator, df: int, d: int, batch: tuple[int, ...]
                      ) -> np.ndarray:
    """Wishart(df, I) draws by the Bartlett decomposition: W = A A^T with A lower-triangular,
    A_ii = sqrt(chi^2(df - i)), A_ij ~ N(0, 1) below the diagonal."""
    a = np.zeros((*batch, d, d))
    for i in range(d):
        a[..., i, i] = np.sqrt(rng.chisquare(df - i, size=batch))
        a[..., i, :i] = rng.standard_normal((*batch, i))
    return a @ np.swapaxes(a, -1, -2)


def simulate(prior: GMM, n_obs: int, noise: float, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent x ~ prior (B, d) and observations z = x + N(0, noise^2 I): (B, n_obs, d)."""
    x = prior.sample(1, generator)[0]
    eps = torch.randn(x.shape[0], n_obs, x.shape[1], generator=generator, dtype=x.dtype)
    return x, x.unsqueeze(1) + noise * eps


def exact_posterior(prior: GMM, z: torch.Tensor, noise: float) -> GMM:
    """The exact posterior (float64) after observations z (B, M, d) of x + N(0, noise^2 I),
    folded in one at a time."""
    post = GMM(prior.weights.double(), prior.means.double(), prior.scale_tril.double())
    for j in range(z.shape[1]):
        post = linear_gaussian_posterior(post, z[:, j].double(), obs_cov=noise**2)
    return post


# ---------------------------------------------------------------------------------------------
# the network


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                         nn.GELU(), nn.Linear(hidden, n_out))


class DistributionTransformer(nn.Module):
    """GMM prior (B, K) + observations (B, M, obs_dim) -> GMM posterior (B, K)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        d = cfg.dim
        self.dim, self.noise = d, cfg.obs_noise
        self.standardize, self.relative = cfg.standardize, cfg.relative
        self.n_params = 1 + d + d + d * (d - 1) // 2
        self.embed_prior = _mlp(self.n_params + 1, cfg.mlp_hidden, cfg.d_model)
        self.embed_obs = _mlp(d + 1, cfg.mlp_hidden, cfg.d_model)
        self.decoder = SetDecoder(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.n_layers)
        self.de_embed = _mlp(cfg.d_model, cfg.mlp_hidden, self.n_params)
        if self.relative:  # start as the identity map prior -> prior
            nn.init.zeros_(self.de_embed[-1].weight)
            nn.init.zeros_(self.de_embed[-1].bias)

    # ---- coordinates ---------------------------------------------------------------------

    def frame(self, prior: GMM) -> tuple[torch.Tensor, torch.Tensor]:
        """Location (B, d) and scale (B,) of each problem: the prior mixture's mean and
        standard deviation (sqrt of the mean variance over dimensions) when standardising."""
        b = prior.weights.shape[0]
        if not self.standardize:
            return torch.zeros(b, self.dim), torch.ones(b)
        c = prior.mean()
        second = prior.covariance + prior.means.unsqueeze(-1) * prior.means.unsqueeze(-2)
        total = (prior.weights[..., None, None] * second).sum(1) - c.unsqueeze(-1) * \
            c.unsqueeze(-2)
        s = torch.sqrt(torch.diagonal(total, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12))
        return c, s

    @staticmethod
    def to_frame(g: GMM, c: torch.Tensor, s: torch.Tensor) -> GMM:
        return GMM(g.weights, (g.means - c.unsqueeze(1)) / s[:, None, None],
                   g.scale_tril / s[:, None, None, None])

    @staticmethod
    def from_frame(g: GMM, c: torch.Tensor, s: torch.Tensor) -> GMM:
        return GMM(g.weights, c.unsqueeze(1) + g.means * s[:, None, None],
                   g.scale_tril * s[:, None, None, None])

    # ---- forward -------------------------------------------------------------------------

    def _prior_tokens(self, prior_n: GMM, log_noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        vec = prior_n.to_vectors()                                  # (B, K, p)
        feats = _squash(vec, self.dim)
        k = vec.shape[1]
        feats = torch.cat([feats, log_noise[:, None, None].expand(-1, k, 1)], dim=-1)
        return self.embed_prior(feats), vec

    def _decode(self, tokens: torch.Tensor, prior_vec: torch.Tensor) -> GMM:
        out = self.de_embed(tokens)
        if self.relative:
            out = prior_vec + out
        return GMM.from_vectors(out, self.dim)

    def forward_normalized(self, prior: GMM, z: torch.Tensor) -> tuple[GMM, GMM, tuple]:
        """Posterior and reconstructed prior in the problem's frame, and the frame (c, s)."""
        c, s = self.frame(prior)
        prior_n = self.to_frame(prior, c, s)
        z_n = (z - c.unsqueeze(1)) / s[:, None, None]
        log_noise = torch.log(self.noise / s)
        tokens, vec = self._prior_tokens(prior_n, log_noise)
        m = z.shape[1]
        obs = torch.cat([torch.asinh(z_n), log_noise[:, None, None].expand(-1, m, 1)], dim=-1)
        memory = self.embed_obs(obs)
        post = self._decode(self.decoder(tokens, memory), vec)
        recon = self._decode(tokens, vec)
        return post, recon, (c, s)

    def forward(self, prior: GMM, z: torch.Tensor) -> GMM:
        post, _, (c, s) = self.forward_normalized(prior, z)
        return self.from_frame(post, c, s)


def _squash(vec: torch.Tensor, d: int) -> torch.Tensor:
    """Token features with bounded range: asinh on logits, means and off-diagonals (log
    diagonals are already logarithmic)."""
    return torch.cat([torch.asinh(vec[..., :1 + d]), vec[..., 1 + d:1 + 2 * d],
                      torch.asinh(vec[..., 1 + 2 * d:])], dim=-1)


# ---------------------------------------------------------------------------------------------
# training


class DTLearner(Learner):
    """Each step: priors from the meta-prior, a latent from each prior, observations of it;
    minimise -log q_post(x) - recon_weight * log q_recon(x) in each problem's frame (the frame
    only shifts the loss by a constant per problem)."""

    def __init__(self, network: DistributionTransformer, cfg: Config, seed: int) -> None:
        super().__init__()
        self.network, self.cfg, self.seed = network, cfg, seed

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step.step)
        prior = sample_meta_prior(self.cfg.batch_size, self.cfg, g)
        latent, z = simulate(prior, self.cfg.n_observations, self.cfg.obs_noise, g)
        post, recon, (c, s) = self.network.forward_normalized(prior, z)
        x_n = (latent - c) / s[:, None]
        loss = -post.log_prob(x_n)
        if self.cfg.recon_weight > 0:
            loss = loss - self.cfg.recon_weight * recon.log_prob(x_n)
        return loss.mean()

    def after_backward(self, step: Step) -> bool:
        for p in self.parameters():
            if p.grad is not None:
                p.grad.clamp_(-self.cfg.grad_value_clamp, self.cfg.grad_value_clamp)
        return True


def train(cfg: Config, *, seed: int = 0, checkpoint_dir: Path | None = None,
          resume: bool = False, quiet: bool = True) -> tuple[DTModel, Any]:
    """Train a distribution transformer on the toy meta-prior with the shared engine."""
    torch.manual_seed(seed)
    network = DistributionTransformer(cfg)
    learner = DTLearner(network, cfg, seed)
    steps = torch.arange(cfg.steps_per_epoch, dtype=torch.float32).unsqueeze(-1)
    engine_cfg = replace(cfg, batch_size=1, val_fraction=0.0, early_stopping=0)
    result = fit(learner, steps, steps.squeeze(-1), engine_cfg, seed=seed,
                 checkpoint_dir=checkpoint_dir, resume=resume, quiet=quiet,
                 description="distribution transformer")
    return DTModel(network.eval(), cfg), result


# ---------------------------------------------------------------------------------------------
# the trained model


class DTModel:
    """A trained distribution transformer: `posterior` for one update, `filter` for a
    sequence of updates with each posterior fed back as the next prior."""

    def __init__(self, network: DistributionTransformer, cfg: Config) -> None:
        self.network, self.cfg = network.eval(), cfg

    @torch.no_grad()
    def posterior(self, prior: GMM, observations: torch.Tensor) -> GMM:
        """The approximate posterior after all `observations` (B, M, obs_dim) at once."""
        prior, z = self._check(prior, observations)
        return self.network(prior, z)

    def predict(self, prior: GMM, observations: torch.Tensor) -> GMM:
        """Same as `posterior` (the contract's predict for an amortized-inference model)."""
        return self.posterior(prior, observations)

    def filter(self, prior: GMM, observations: torch.Tensor) -> list[GMM]:
        """Sequential inference: observations (B, T, obs_dim) are applied one at a time, each
        posterior becoming the next prior; returns the T posteriors."""
        prior, z = self._check(prior, observations)
        out = []
        for t in range(z.shape[1]):
            prior = self.posterior(prior, z[:, t:t + 1])
            out.append(prior)
        return out

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        save_tensors(directory / "model.safetensors", self.network.state_dict())
        atomic_write_json(directory / "model.json", {
            "format": FORMAT, "method": "distribution-transformer",
            "config": self.cfg.to_dict()})

    def _check(self, prior: GMM, z: Any) -> tuple[GMM, torch.Tensor]:
        k, d = self.cfg.n_components, self.cfg.dim
        w, mu, tril = (torch.as_tensor(t, dtype=torch.float32) for t in
                       (prior.weights, prior.means, prior.scale_tril))
        if w.dim() != 2 or w.shape[1] != k or mu.shape != (*w.shape, d) or \
                tril.shape != (*w.shape, d, d):
            raise VarbayesError(
                f"prior must have weights (B, {k}), means (B, {k}, {d}) and scale_tril "
                f"(B, {k}, {d}, {d}); got {tuple(w.shape)}, {tuple(mu.shape)}, "
                f"{tuple(tril.shape)}")
        if not all(bool(torch.isfinite(t).all()) for t in (w, mu, tril)):
            raise VarbayesError("prior contains NaN or Inf values")
        if bool((w < 0).any()) or bool(((w.sum(-1) - 1).abs() > 1e-3).any()):
            raise VarbayesError("prior weights must be non-negative and sum to 1 per problem")
        diag = torch.diagonal(tril, dim1=-2, dim2=-1)
        if bool((diag <= 0).any()) or bool((torch.triu(tril, 1) != 0).any()):
            raise VarbayesError("prior scale_tril must be lower-triangular with a positive "
                                "diagonal")
        zt = torch.as_tensor(z, dtype=torch.float32)
        if zt.dim() == 2:
            zt = zt.unsqueeze(-1) if d == 1 else zt.unsqueeze(1)
        if zt.dim() != 3 or zt.shape[0] != w.shape[0] or zt.shape[-1] != d:
            raise VarbayesError(f"observations must have shape ({w.shape[0]}, M, {d}); got "
                                f"{tuple(torch.as_tensor(z).shape)}")
        if not bool(torch.isfinite(zt).all()):
            raise VarbayesError("observations contain NaN or Inf values")
        return GMM(w / w.sum(-1, keepdim=True), mu, tril), zt


def load_model(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> DTModel:
    cfg = Config.from_values(meta["config"])
    network = restore_network(DistributionTransformer(cfg), tensors)
    return DTModel(network, cfg)


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def kl_both(q: GMM, p: GMM, n_samples: int, generator: torch.Generator | None = None,
            chunk: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse KL(q || p) with samples from q and forward KL(p || q) with samples from p, per
    problem, both densities evaluated on the same samples (float64)."""
    q = GMM(q.weights.double(), q.means.double(), q.scale_tril.double())
    p = GMM(p.weights.double(), p.means.double(), p.scale_tril.double())
    rev, fwd = [], []
    for i in range(0, q.weights.shape[0], chunk):
        qi, pi = q[i:i + chunk], p[i:i + chunk]
        xq = qi.sample(n_samples, generator)
        rev.append((qi.log_prob(xq) - pi.log_prob(xq)).mean(0))
        xp = pi.sample(n_samples, generator)
        fwd.append((pi.log_prob(xp) - qi.log_prob(xp)).mean(0))
    return torch.cat(rev), torch.cat(fwd)


def summary(values: torch.Tensor) -> dict[str, float]:
    v = values.double()
    return {"mean": float(v.mean()), "median": float(v.median()),
            "p90": float(torch.quantile(v, 0.9)), "max": float(v.max())}


def evaluate(model: DTModel, cfg: Config, n_problems: int, seed: int, mean_std: float | None
             = None, n_sequential: int = 1) -> dict[str, Any]:
    """KL statistics of the DT posterior and of the no-update baseline against the exact
    posterior after `n_sequential` observations (applied one by one through `filter`)."""
    g = torch.Generator().manual_seed(seed)
    prior = sample_meta_prior(n_problems, cfg, g, mean_std)
    _, z = simulate(prior, n_sequential, cfg.obs_noise, g)
    start = time.perf_counter()
    post = model.filter(prior, z)[-1]
    seconds = time.perf_counter() - start
    exact = exact_posterior(prior, z, cfg.obs_noise)
    rev, fwd = kl_both(post, exact, cfg.mc_samples, g)
    rev0, fwd0 = kl_both(prior, exact, cfg.mc_samples, g)
    big = (prior.covariance.flatten(1).max(-1).values > 10)
    return {"reverse": summary(rev), "forward": summary(fwd), "no_update_reverse": summary(rev0),
            "no_update_forward": summary(fwd0), "seconds": seconds,
            "reverse_small_variance_mean": float(rev[~big].double().mean()) if (~big).any()
            else float("nan"), "share_variance_over_10": float(big.double().mean()),
            "_tensors": (prior, z, post, exact, rev)}


def time_batched_call(model: DTModel, cfg: Config, n_problems: int = 1000, repeats: int = 20
                      ) -> dict[str, float]:
    """Seconds of one batched posterior call on `n_problems` problems on one CPU core (torch
    single-threaded while timing): the fastest wall-clock time of `repeats` and the fastest
    CPU time of the process. On a machine shared with other jobs the wall time measures the
    scheduler as much as the call; the CPU time is the call's own cost."""
    g = torch.Generator().manual_seed(99)
    prior = sample_meta_prior(n_problems, cfg, g)
    _, z = simulate(prior, 1, cfg.obs_noise, g)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.posterior(prior, z)
        wall, cpu = [], []
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            model.posterior(prior, z)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    finally:
        torch.set_num_threads(threads)
    return {"wall": float(np.min(wall)), "cpu": float(np.min(cpu))}


def density_figure(result: dict[str, Any], n_panels: int = 4) -> Any:
    """Prior, DT posterior and exact posterior densities for a few test problems (d = 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prior, z, post, exact, rev = result["_tensors"]
    order = torch.argsort(rev)
    picks = [int(order[int(q * (len(order) - 1))]) for q in (0.25, 0.5, 0.75, 0.95)][:n_panels]
    fig, axes = plt.subplots(1, len(picks), figsize=(3.4 * len(picks), 3))
    for ax, i in zip(np.atleast_1d(axes), picks):
        e = exact[i]
        sd = float(e.covariance[0].max().sqrt())
        centre = float(e.mean()[0, 0])
        pr_sd = float(prior[i].covariance[0].max().sqrt())
        span = 4 * max(sd, 0.3 * pr_sd)
        grid = torch.linspace(centre - span, centre + span, 400, dtype=torch.float64)
        xs = grid.reshape(-1, 1, 1)
        ax.plot(grid, _density(prior[i], xs), c="0.5", ls=":", label="prior")
        ax.plot(grid, _density(e, xs), c="C1", lw=2, label="exact posterior")
        ax.plot(grid, _density(post[i], xs), c="C0", ls="--", label="DT posterior")
        for zi in z[i, :, 0]:
            ax.axvline(float(zi), c="k", lw=0.6, alpha=0.5)
        ax.set_title(f"KL(q||p) = {float(rev[i]):.3g}", fontsize=9)
        ax.set_xlabel("x")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle("distribution transformer: prior, exact and DT posterior (z: vertical lines)")
    fig.tight_layout()
    return fig


def _density(g: GMM, xs: torch.Tensor) -> np.ndarray:
    g64 = GMM(g.weights.double(), g.means.double(), g.scale_tril.double())
    return g64.log_prob(xs)[:, 0].exp().numpy()


# ---------------------------------------------------------------------------------------------
# run and reproduce


def run(cfg: Config, ctx: RunContext) -> RunOutput:
    """Train on the toy meta-prior and report reverse/forward KL to the exact posterior."""
    model, result = train(cfg, seed=ctx.seed, checkpoint_dir=ctx.checkpoint_dir,
                          resume=ctx.resume, quiet=ctx.quiet)
    res = evaluate(model, cfg, cfg.eval_problems, seed=ctx.seed + 1000)
    metrics = {"kl_reverse_mean": res["reverse"]["mean"],
               "kl_reverse_median": res["reverse"]["median"],
               "kl_forward_mean": res["forward"]["mean"],
               "kl_no_update_mean": res["no_update_reverse"]["mean"],
               "train_seconds": round(result.train_seconds, 3),
               "params_total": sum(p.numel() for p in model.network.parameters())}
    from varbayes.report.figures import training_curve

    figures = {"densities": density_figure(res),
               "training_curve": training_curve(result.history, "distribution transformer")}
    details = {k: v for k, v in res.items() if not k.startswith("_")}
    return RunOutput(metrics, model, figures, {"train_seconds": result.train_seconds},
                     {"evaluation": details, "history": result.history})


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """Spec B.5 on the closed-form toy (K = 2, d = 1, z = x + N(0, 1)), 1000 fresh problems:
    median reverse KL <= 0.01 and mean <= 10 % of the no-update KL; the same ratio on a
    shifted meta-prior (mu ~ N(0, 2^2)); median KL after 5 sequential updates <= 0.05; one
    batched call on 1000 problems < 50 ms. Quick: 300 steps, mean KL <= 30 % of no-update."""
    from varbayes.report import markdown_table

    cfg = Config(epochs=3) if ctx.quick else Config()
    n_test = 1000
    if ctx.quick:
        cfg = replace(cfg, mc_samples=2000)
    with ctx.step(f"training ({cfg.epochs * cfg.steps_per_epoch} steps, batch "
                  f"{cfg.batch_size})"):
        start = time.perf_counter()
        model, result = train(cfg, seed=0, quiet=ctx.quiet)
        train_seconds = time.perf_counter() - start
    with ctx.step("evaluating on fresh problems"):
        base = evaluate(model, cfg, n_test, seed=1)
        shifted = evaluate(model, cfg, n_test, seed=2, mean_std=2.0)
        seq = evaluate(model, cfg, n_test, seed=3, n_sequential=5)
        call = time_batched_call(model, cfg)
    ratio = base["reverse"]["mean"] / base["no_update_reverse"]["mean"]
    ratio_shift = shifted["reverse"]["mean"] / shifted["no_update_reverse"]["mean"]
    claims = []
    if ctx.quick:
        claims.append(at_most("quick: mean reverse KL / no-update KL", ratio, 0.30,
                              baseline=1.0))
    else:
        claims += [
            at_most("median reverse KL(q || exact) (nats)", base["reverse"]["median"], 0.01,
                    baseline=base["no_update_reverse"]["median"]),
            at_most("mean reverse KL / no-update mean KL", ratio, 0.10, baseline=1.0),
            at_most("shifted meta-prior (mu ~ N(0, 2^2)): mean KL / no-update", ratio_shift,
                    0.10, baseline=1.0),
            at_most("median reverse KL after 5 sequential updates", seq["reverse"]["median"],
                    0.05, baseline=seq["no_update_reverse"]["median"]),
        ]
        claims.append(holds("one batched call on 1000 problems, one core (ms CPU time)",
                            call["cpu"] < 0.05, call["cpu"] * 1000, "< 50"))
    rows = []
    for name, res in (("toy meta-prior", base), ("shifted meta-prior", shifted),
                      ("5 sequential updates", seq)):
        for key, label in (("reverse", "DT reverse KL(q||p)"), ("forward", "DT forward KL(p||q)"),
                           ("no_update_reverse", "no-update reverse KL"),
                           ("no_update_forward", "no-update forward KL")):
            s = res[key]
            rows.append((name, label, s["mean"], s["median"], s["p90"], s["max"]))
    table = markdown_table(["test set", "estimate", "mean", "median", "p90", "max"], rows)
    mean_ok = base["reverse"]["mean"] <= 0.05
    notes = [
        f"Trained {result.steps} steps (batch {cfg.batch_size}) in {train_seconds:.0f} s; "
        f"{n_test} fresh problems per test set, {cfg.mc_samples} Monte-Carlo samples per KL "
        "(the same samples for both densities).",
        f"standardize={cfg.standardize}, relative={cfg.relative} (spec B.7's fixes for the "
        "heavy tail of Wishart-drawn variances). Mean reverse KL "
        f"{base['reverse']['mean']:.4g} is {'under' if mean_ok else 'not under'} the 0.05 "
        "stretch target; over problems whose prior variances are all <= 10 "
        f"({100 * (1 - base['share_variance_over_10']):.0f} %) it is "
        f"{base['reverse_small_variance_mean']:.4g}.",
        f"One batched call on 1000 problems, torch on one thread: {1000 * call['cpu']:.3g} ms "
        f"of CPU time, {1000 * call['wall']:.3g} ms wall clock (fastest of 20; the wall time "
        "includes waiting for the CPU on a shared machine).",
    ]
    details = {"train_seconds": train_seconds, "batched_call_seconds": call,
               "config": cfg.to_dict()}
    for name, res in (("base", base), ("shifted", shifted), ("sequential5", seq)):
        details[name] = {k: v for k, v in res.items() if not k.startswith("_")}
    return Reproduction(claims, {"densities": density_figure(base)},
                        {"KL statistics (nats)": table}, details, notes)
