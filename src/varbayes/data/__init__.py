"""Offline datasets, split protocols and input validation."""

from varbayes.data.validate import check_arrays

__all__ = ["check_arrays"]
