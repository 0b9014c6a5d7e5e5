"""Baselines every Bayesian method is compared with."""
