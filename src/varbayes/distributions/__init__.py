"""Distribution utilities shared by methods: Gaussian mixtures (`gmm`)."""

from varbayes.distributions.gmm import (
    GMM,
    cholesky_to_vector,
    kl_monte_carlo,
    linear_gaussian_posterior,
    vector_to_cholesky,
)

__all__ = ["GMM", "cholesky_to_vector", "kl_monte_carlo", "linear_gaussian_posterior",
           "vector_to_cholesky"]
