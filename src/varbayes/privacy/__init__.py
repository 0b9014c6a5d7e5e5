"""Bayesian estimation of differential privacy from membership-inference audits.

Given the confusion counts of an attack that guesses whether a record was in a model's
training set, `epsilon_posterior(tp, fn, fp, tn, delta)` is the posterior over the privacy
parameter epsilon (Zanella-Béguelin et al., ICML 2023), with `cdf`, `pdf`, `ppf` and
`interval(alpha)`. The baselines auditors used before, separate Clopper-Pearson or Jeffreys
intervals on the two error rates, are `clopper_pearson_interval` and `jeffreys_interval`;
`implied_epsilon` and `in_region` are the (epsilon, delta) privacy region itself.
"""

from varbayes.privacy.attack import calibrate_threshold, confusion_counts
from varbayes.privacy.baselines import (
    clopper_pearson_interval,
    jeffreys_interval,
    rate_interval,
    separate_interval,
)
from varbayes.privacy.counts import AuditCounts, check_counts
from varbayes.privacy.posterior import EPS_MAX, EpsilonPosterior, epsilon_posterior
from varbayes.privacy.region import fpr_bounds, implied_epsilon, in_region

__all__ = [
    "EPS_MAX",
    "AuditCounts",
    "EpsilonPosterior",
    "calibrate_threshold",
    "check_counts",
    "clopper_pearson_interval",
    "confusion_counts",
    "epsilon_posterior",
    "fpr_bounds",
    "implied_epsilon",
    "in_region",
    "jeffreys_interval",
    "rate_interval",
    "separate_interval",
]
