"""Amortized inference: PFNs, distribution transformers, NIW hierarchical meta-learning."""
