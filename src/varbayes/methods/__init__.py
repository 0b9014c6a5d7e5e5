"""One module per method, grouped by family; `varbayes.registry` maps names to them."""
