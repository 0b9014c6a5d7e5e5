"""Latent-variable methods: posterior collapse (collapse-cvae), attribute CVAE (attr-cvae)."""
