"""Latent-variable building blocks shared by the VAE-family methods.

    from varbayes.latent import CVAE, VAESpec, diagnose_collapse, log_likelihood
    vae = CVAE(VAESpec(x_dim=64, d_z=4, c_dim=11, prior="conditional"))
    infer.fit(infer.elbo(kl_weight=2.0, analytic_kl=True), vae.model, vae.guide, (x, a))
    diagnose_collapse(vae, x, a).collapsed          # latent dimensions with mean KL <= 0.01
    log_likelihood(vae, x_test, a_test, samples=1000)  # importance-sampled log p(x | a)

Likelihoods (Bernoulli, Gaussian with fixed or learned std), MLP and conv encoders/decoders,
standard and learned conditional priors, the per-dimension Gaussian KL, both active-unit
statistics, the importance-sampled held-out log-likelihood, and plots (sample grids,
per-dimension KL bars). Objectives come from `varbayes.infer`.
"""

from varbayes.latent.collapse import CollapseReport, collapse_report, diagnose_collapse
from varbayes.latent.kl import gaussian_kl_per_dim
from varbayes.latent.likelihoods import (
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    make_likelihood,
)
from varbayes.latent.loglik import Programs, log_likelihood, programs
from varbayes.latent.model import CVAE, VAESpec
from varbayes.latent.networks import (
    ConditionalPrior,
    ConvFeatures,
    ConvOutput,
    Decoder,
    GaussianEncoder,
    StandardPrior,
    mlp,
)
from varbayes.latent.plots import kl_bars, predicted_vs_measured, samples_grid

__all__ = [
    "CVAE", "BernoulliLikelihood", "CollapseReport", "ConditionalPrior", "ConvFeatures",
    "ConvOutput", "Decoder", "GaussianEncoder", "GaussianLikelihood", "Likelihood", "Programs",
    "StandardPrior", "VAESpec", "collapse_report", "diagnose_collapse", "gaussian_kl_per_dim",
    "kl_bars", "log_likelihood", "make_likelihood", "mlp", "predicted_vs_measured", "programs",
    "samples_grid",
]
