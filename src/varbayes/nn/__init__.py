"""Networks, likelihood heads and Bayesian layers.

Mean-field Gaussian layers (`MeanFieldLinear`, `MeanFieldConv1d`, `MeanFieldConv2d`) with LRT,
flipout or weight sampling and optional sparse masks; priors with their KL; `bayesianize` to
convert any model in place; predictive samplers for `SupervisedModel`.
"""

from varbayes.nn.bayesianize import BayesSettings, bayesianize
from varbayes.nn.meanfield import (
    MeanFieldConv1d,
    MeanFieldConv2d,
    MeanFieldLayer,
    MeanFieldLinear,
    apply_masks_,
    bayesian_layers,
    inverse_sigma,
    kl_divergence,
    posterior_mean,
    sampling,
    variational_param_groups,
)
from varbayes.nn.predictive import mc_sampler, posterior_mean_sampler
from varbayes.nn.priors import (
    GaussianPrior,
    ScaleMixturePrior,
    gaussian_kl,
    gaussian_kl_sum,
    prior_from_dict,
)

__all__ = [
    "BayesSettings",
    "GaussianPrior",
    "MeanFieldConv1d",
    "MeanFieldConv2d",
    "MeanFieldLayer",
    "MeanFieldLinear",
    "ScaleMixturePrior",
    "apply_masks_",
    "bayesian_layers",
    "bayesianize",
    "gaussian_kl",
    "gaussian_kl_sum",
    "inverse_sigma",
    "kl_divergence",
    "mc_sampler",
    "posterior_mean",
    "posterior_mean_sampler",
    "prior_from_dict",
    "sampling",
    "variational_param_groups",
]
