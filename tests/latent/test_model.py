"""The CVAE's programs under varbayes.infer, generation, input checks and model files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributions import kl_divergence

from varbayes import infer
from varbayes.errors import VarbayesError
from varbayes.latent import CVAE, VAESpec
from varbayes.latent.model import CVAEModel, load_cvae
from varbayes.models import read_model


def _cvae(**kw) -> CVAE:
    torch.manual_seed(0)
    return CVAE(VAESpec(**{"x_dim": 8, "d_z": 3, "c_dim": 2, "hidden": (16,),
                           "prior": "conditional", "prior_hidden": (16,), **kw}))


def test_beta_elbo_of_the_programs_is_loglik_minus_beta_kl() -> None:
    vae = _cvae()
    x, c = torch.rand(5, 8), torch.rand(5, 2)
    torch.manual_seed(1)
    value = infer.estimate(infer.elbo(kl_weight=2.5, analytic_kl=True), vae.model, vae.guide,
                           x, c, plates=1).value
    torch.manual_seed(1)
    q = vae.posterior(x, c)
    z = q.rsample()
    loglik = vae.likelihood.distribution(vae.decode(z, c)).log_prob(x)
    manual = loglik - 2.5 * kl_divergence(q, vae.prior(c)).sum(-1)
    assert torch.allclose(value, manual, atol=1e-5)


def test_unconditional_vae_and_conv_blocks_train_one_step() -> None:
    vae = CVAE(VAESpec(x_dim=64, d_z=2, encoder="conv", decoder="conv", image_shape=(1, 8, 8),
                       hidden=(16,)))
    x = torch.rand(4, 64)
    est = infer.estimate(infer.elbo(), vae.model, vae.guide, x, plates=1)
    est.loss().backward()
    assert all(p.grad is not None for p in vae.encoder.parameters())
    assert vae.generate(None, 3, n=2).shape == (3, 2, 64)
    assert vae.reconstruct(x).shape == (4, 64)


def test_generation_draws_from_the_prior_network() -> None:
    vae = _cvae()
    with torch.no_grad():  # push the prior mean far away for condition (1, 0)
        vae.prior_net.net[-1].bias[:3] = torch.tensor([30.0, 0.0, 0.0])
        vae.prior_net.net[-1].bias[3:] = -20.0
    c = torch.tensor([[0.0, 0.0]])
    p = vae.prior(c)
    torch.manual_seed(2)
    samples = vae.generate(c, 4)
    expected = torch.sigmoid(vae.decode(p.mean.expand(4, 1, 3), c))
    assert torch.allclose(samples, expected, atol=1e-3)  # prior std ~ e^-10: z = prior mean


def test_check_inputs_one_line_errors() -> None:
    vae = _cvae()
    vae.check_inputs(torch.rand(3, 8), torch.rand(3, 2))
    with pytest.raises(VarbayesError, match=r"c has shape \(3, 5\); valid: \(n, 2\)"):
        vae.check_inputs(torch.rand(3, 8), torch.rand(3, 5))
    with pytest.raises(VarbayesError, match=r"valid: \(n, 8\)"):
        vae.check_inputs(torch.rand(3, 7), torch.rand(3, 2))
    with pytest.raises(VarbayesError, match=r"\[0, 1\]"):
        vae.check_inputs(torch.rand(3, 8) * 2, torch.rand(3, 2))
    with pytest.raises(VarbayesError, match="has none"):
        vae.check_inputs(torch.rand(3, 8), None)
    with pytest.raises(VarbayesError, match="3 rows but c has 4"):
        vae.check_inputs(torch.rand(3, 8), torch.rand(4, 2))
    nan_x, nan_c = torch.rand(3, 8), torch.rand(3, 2)
    nan_x[1, 2] = nan_c[0, 0] = float("nan")  # NaN passed the [0, 1] support check before
    with pytest.raises(VarbayesError, match="x contains 1 NaN"):
        vae.check_inputs(nan_x, torch.rand(3, 2))
    with pytest.raises(VarbayesError, match="c contains 1 NaN"):
        vae.check_inputs(torch.rand(3, 8), nan_c)
    with pytest.raises(VarbayesError, match="unknown prior"):
        VAESpec(x_dim=2, d_z=1, prior="flow")


def test_model_file_round_trip(tmp_path: Path) -> None:
    vae = _cvae(likelihood="gaussian", learn_std=True)
    CVAEModel(vae, {"method": "attr-cvae", "note": "test"}).save(tmp_path)
    meta, tensors = read_model(tmp_path)
    loaded = load_cvae(meta, tensors)
    assert loaded.meta["note"] == "test"
    c = torch.rand(3, 2)
    torch.manual_seed(3)
    a = loaded.predict(c, 2)
    torch.manual_seed(3)
    b = vae.generate(c, 2)
    assert torch.allclose(a, b)
    with pytest.raises(VarbayesError, match="condition has shape"):
        loaded.predict(torch.rand(3, 4))
