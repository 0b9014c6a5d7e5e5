"""Bayesian neural network methods."""
