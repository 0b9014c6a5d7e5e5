"""Variational-inference methods built directly on `varbayes.infer`."""
