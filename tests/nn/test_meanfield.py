"""Mean-field layers: LRT / flipout moments against explicit weight sampling, numerical range,
the posterior-mean limit, masks, the cost protocol and the optimiser groups."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from varbayes.errors import VarbayesError
from varbayes.nn import (
    MeanFieldConv1d,
    MeanFieldConv2d,
    MeanFieldLinear,
    ScaleMixturePrior,
    inverse_sigma,
    kl_divergence,
    mc_sampler,
    posterior_mean_sampler,
    sampling,
    variational_param_groups,
)
from varbayes.nn.priors import GaussianPrior


def _layer(kind: str, **kw: object) -> nn.Module:
    if kind == "linear":
        return MeanFieldLinear(4, 3, **kw)
    if kind == "conv1d":
        return MeanFieldConv1d(2, 3, 3, padding=1, **kw)
    return MeanFieldConv2d(2, 3, 3, stride=2, padding=1, **kw)


def _input(kind: str, n: int, scale: float = 1.0) -> torch.Tensor:
    shape = {"linear": (n, 4), "conv1d": (n, 2, 5), "conv2d": (n, 2, 5, 5)}[kind]
    return torch.randn(shape) * scale


def test_sigma_parameterisation_and_init() -> None:
    assert inverse_sigma(0.01) == pytest.approx(-4.600, abs=1e-3)
    assert inverse_sigma(0.5) == pytest.approx(-0.433, abs=1e-3)
    for param, sigma0 in (("softplus", 0.01), ("softplus", 1e-8), ("exp", 0.3), ("softplus", 10)):
        layer = MeanFieldLinear(5, 2, init_sigma=sigma0, sigma_param=param)
        torch.testing.assert_close(layer.weight_sigma(), torch.full((2, 5), float(sigma0)),
                                   rtol=1e-5, atol=0)
    with pytest.raises(VarbayesError, match="noise"):
        MeanFieldLinear(2, 2, noise="gauss")  # type: ignore[arg-type]


def _explicit(layer: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """n outputs for the single input x, each with an explicitly sampled weight tensor."""
    mu, sigma = layer.weight_mean().detach(), layer.weight_sigma().detach()
    w = mu + sigma * torch.randn(n, *mu.shape)
    if isinstance(layer, MeanFieldLinear):
        return torch.einsum("i,noi->no", x[0], w) + layer.bias.detach()
    # a conv with n weight draws is a grouped conv over n copies of the input
    xs = x.expand(n, *x.shape[1:]).reshape(1, -1, *x.shape[2:])
    ws = w.reshape(-1, *w.shape[2:])
    out = type(layer)._conv(xs, ws, None, layer.stride, layer.padding, layer.dilation,
                            n * layer.groups)
    out = out.reshape(n, layer.out_channels, *out.shape[2:])
    return out + layer.bias.detach().reshape(-1, *([1] * (out.dim() - 2)))


@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
@pytest.mark.parametrize("noise", ["lrt", "flipout"])
def test_sampled_moments_match_closed_form_and_explicit_weight_sampling(kind: str,
                                                                        noise: str) -> None:
    torch.manual_seed(0)
    layer = _layer(kind, init_sigma=0.3, noise=noise)
    with torch.no_grad():
        layer.weight_rho.add_(0.5 * torch.randn_like(layer.weight_rho))  # unequal sigmas
    x = _input(kind, 1)
    n = 100_000
    with torch.no_grad():
        if noise == "lrt":  # one independent draw per row
            z = layer(x.expand(n, *x.shape[1:]))
            draws = n
        else:  # flipout: one perturbation per call, decorrelated across the batch by signs
            calls, batch = 1_000, 100
            zb = torch.stack([layer(x.expand(batch, *x.shape[1:])) for _ in range(calls)])
            z, draws = zb.flatten(0, 1), calls
        m = layer._op(x, layer.weight_mean(), layer.bias)[0]
        if noise == "flipout":  # examples of one batch do not share noise
            a, b = (zb[:, 0] - m).flatten(), (zb[:, 1] - m).flatten()
            assert abs(float((a * b).mean() / (a * a).mean())) < 5 / math.sqrt(calls)
        v = layer._op(x * x, layer.weight_sigma() ** 2, None)[0]
        ref = _explicit(layer, x, n)
    sd = v.sqrt()
    # means within 5 standard errors (flipout's draws are uncorrelated, so n counts)
    assert ((z.mean(0) - m).abs() <= 5 * sd / math.sqrt(n) + 1e-6).all()
    assert ((ref.mean(0) - m).abs() <= 5 * sd / math.sqrt(n) + 1e-6).all()
    # variances within 5 standard errors of a variance estimate (independent draws only)
    assert ((z.var(0) - v).abs() <= 5 * v * math.sqrt(2 / draws) + 1e-5).all()
    assert ((ref.var(0) - v).abs() <= 5 * v * math.sqrt(2 / n) + 1e-5).all()


def test_lrt_gives_each_example_its_own_draw_and_weights_mode_shares_one() -> None:
    torch.manual_seed(1)
    layer = MeanFieldLinear(3, 2, init_sigma=0.5)
    x = torch.ones(2, 3)
    with torch.no_grad():
        lrt = layer(x)
        with sampling(layer, noise="weights"):
            shared = layer(x)
    assert not torch.allclose(lrt[0], lrt[1])
    torch.testing.assert_close(shared[0], shared[1])


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["linear", "conv1d", "conv2d"]),
       noise=st.sampled_from(["lrt", "flipout", "weights"]),
       log_sigma=st.floats(math.log(1e-8), math.log(10.0)),
       scale=st.floats(1e-3, 1e4), param=st.sampled_from(["softplus", "exp"]))
def test_values_and_gradients_are_finite_over_the_whole_range(
        kind: str, noise: str, log_sigma: float, scale: float, param: str) -> None:
    torch.manual_seed(0)
    layer = _layer(kind, init_sigma=math.exp(log_sigma), noise=noise, sigma_param=param,
                   prior=GaussianPrior(0.0, 1.0))
    x = _input(kind, 3, scale).clamp(-1e4, 1e4).requires_grad_(True)
    out = layer(x)
    kl = layer.kl()
    (out.sum() + kl).backward()
    assert torch.isfinite(out).all() and torch.isfinite(kl) and float(kl.detach()) >= 0
    for p in (layer.weight_mu, layer.weight_rho, x):
        assert torch.isfinite(p.grad).all()


def test_kl_of_a_layer_is_the_sum_of_elementwise_kls() -> None:
    torch.manual_seed(0)
    prior = GaussianPrior(0.0, 0.5)
    layer = MeanFieldConv2d(2, 4, 3, init_sigma=0.1, prior=prior, bayesian_bias=True)
    q = torch.distributions.Normal(layer.weight_mu, layer.weight_sigma())
    p = torch.distributions.Normal(0.0, 0.5)
    qb = torch.distributions.Normal(layer.bias_mu, layer.sigma_of(layer.bias_rho))
    ref = torch.distributions.kl_divergence(q, p).sum() + \
        torch.distributions.kl_divergence(qb, p).sum()
    torch.testing.assert_close(layer.kl(), ref)
    mix = MeanFieldLinear(3, 2, prior=ScaleMixturePrior())
    assert float(mix.kl().detach()) > 0


def test_sigma_to_zero_mc_predictive_equals_posterior_mean_pass() -> None:
    from varbayes.nn import bayesianize
    from varbayes.nn.networks import MLP

    torch.manual_seed(0)
    net = bayesianize(MLP(5, [16, 16], 3), init_sigma=1e-20)
    x = torch.randn(8, 5)
    mean = posterior_mean_sampler(net, x, 1)
    torch.testing.assert_close(mc_sampler("weights")(net, x, 1), mean, rtol=0, atol=1e-6)
    # LRT adds its epsilon of 1e-8 to the variance: noise of sd 1e-4 per unit at most
    torch.testing.assert_close(mc_sampler("lrt")(net, x, 1), mean, rtol=0, atol=2e-3)
    assert mc_sampler("weights")(net, x, 4).shape == (4, 8, 3)


def test_mask_keeps_inactive_weights_at_zero_without_gradient_or_kl() -> None:
    torch.manual_seed(0)
    layer = MeanFieldLinear(6, 4, init_sigma=0.2, prior=GaussianPrior(0.0, 0.3))
    dense_kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(layer.weight_mu, layer.weight_sigma()),
        torch.distributions.Normal(0.0, 0.3))
    mask = torch.rand(4, 6) < 0.4
    layer.set_mask(mask)
    assert (layer.weight_mu[~mask] == 0).all() and (layer.weight_sigma()[~mask] == 0).all()
    torch.testing.assert_close(layer.kl(), dense_kl[mask].sum())
    layer.keep_mean_grad = True
    for noise in ("lrt", "flipout", "weights"):
        layer.zero_grad()
        layer.noise = noise
        (layer(torch.randn(5, 6)) ** 2).sum().backward()
        assert (layer.weight_mu.grad[~mask] == 0).all()
        assert (layer.weight_rho.grad[~mask] == 0).all()
        assert (layer.effective_mean.grad[~mask] != 0).any()  # the dense growth signal
    with torch.no_grad():
        layer.weight_mu.add_(1.0)
    layer.apply_mask_()
    assert (layer.weight_mu[~mask] == 0).all()
    n_active = int(mask.sum())
    assert layer.cost_info(torch.zeros(5, 4)) == (24, n_active, 1)
    assert layer.active_parameter_count() == 2 * n_active + 4
    with pytest.raises(VarbayesError, match="mask shape"):
        layer.set_mask(torch.ones(3, 3, dtype=torch.bool))


def test_saved_mask_is_adopted_by_a_dense_layer() -> None:
    torch.manual_seed(0)
    src = MeanFieldConv1d(2, 3, 3)
    src.set_mask(torch.rand(3, 2, 3) < 0.5)
    dst = MeanFieldConv1d(2, 3, 3)
    dst.load_state_dict(src.state_dict())
    torch.testing.assert_close(dst.mask, src.mask)
    x = torch.randn(2, 2, 7)
    torch.testing.assert_close(posterior_mean_sampler(dst, x), posterior_mean_sampler(src, x))


def test_cost_info_counts_output_positions() -> None:
    conv = MeanFieldConv2d(2, 3, 3, stride=2, padding=1)
    out = conv(torch.randn(1, 2, 8, 8))
    assert conv.cost_info(out) == (54, 54, 16)
    conv1 = MeanFieldConv1d(2, 3, 5)
    assert conv1.cost_info(conv1(torch.randn(1, 2, 9))) == (30, 30, 5)


def test_posterior_mean_pass_equals_a_plain_layer_with_the_means() -> None:
    torch.manual_seed(0)
    layer = MeanFieldConv2d(3, 4, 3, padding=1, groups=1, init_sigma=0.5)
    x = torch.randn(2, 3, 6, 6)
    ref = F.conv2d(x, layer.weight_mu, layer.bias, padding=1)
    torch.testing.assert_close(posterior_mean_sampler(layer, x)[0], ref)


def test_param_groups_separate_rho_without_weight_decay() -> None:
    net = nn.Sequential(MeanFieldLinear(3, 4), nn.ReLU(), MeanFieldLinear(4, 2))
    main, rho = variational_param_groups(net, rho_lr_scale=10.0, weight_decay=1e-4)
    assert {id(p) for p in rho["params"]} == {id(net[0].weight_rho), id(net[2].weight_rho)}
    assert rho["weight_decay"] == 0.0 and rho["lr_scale"] == 10.0
    assert main["weight_decay"] == 1e-4 and len(main["params"]) == 4
    with torch.no_grad():
        assert float(kl_divergence(net)) == pytest.approx(float(net[0].kl() + net[2].kl()))


@pytest.mark.parametrize("sigma_param", ["softplus", "exp"])
def test_reused_sigma_has_the_value_and_gradient_of_a_fresh_one(sigma_param: str) -> None:
    rho = torch.tensor([-40.0, -5.0, -0.3, 0.0, 2.0, 19.9, 20.5, 60.0])
    if sigma_param == "exp":
        rho = rho.clamp_max(30.0)
    layer = MeanFieldLinear(len(rho), 1, sigma_param=sigma_param)
    with torch.no_grad():
        layer.weight_rho.copy_(rho[None])
    g = torch.linspace(-1.0, 2.0, len(rho))[None]
    fresh = layer.weight_sigma()  # computes sigma and keeps its values
    reused = layer.weight_sigma()  # the kept values with the derivative attached
    (fresh_grad,) = torch.autograd.grad((fresh * g).sum(), layer.weight_rho)
    (reused_grad,) = torch.autograd.grad((reused * g).sum(), layer.weight_rho)
    ref = rho.clone().requires_grad_()
    want = F.softplus(ref) if sigma_param == "softplus" else torch.exp(ref)
    (want * g[0]).sum().backward()
    assert torch.equal(reused, fresh)
    torch.testing.assert_close(reused[0], want.detach(), rtol=0.0, atol=0.0)
    torch.testing.assert_close(reused_grad[0], ref.grad, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(fresh_grad[0], ref.grad)


def test_kl_reuses_the_forward_sigma_and_stays_exact_after_updates() -> None:
    torch.manual_seed(0)
    layer = MeanFieldLinear(6, 4, noise="weights", bayesian_bias=True, init_sigma=0.3)
    x = torch.randn(5, 6)

    def reference() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The KL and its gradients computed without the layer's cache."""
        mu = layer.weight_mu.detach().clone().requires_grad_()
        rho = layer.weight_rho.detach().clone().requires_grad_()
        kl = (GaussianPrior().kl_sum(mu, F.softplus(rho))
              + GaussianPrior().kl_sum(layer.bias_mu, F.softplus(layer.bias_rho)).detach())
        kl.backward()
        return kl.detach(), mu.grad, rho.grad

    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        layer(x).sum().backward()  # a graph of its own: the KL must not depend on it
        layer.weight_mu.grad = layer.weight_rho.grad = None
        kl = layer.kl()
        kl.backward()
        want, g_mu, g_rho = reference()
        torch.testing.assert_close(kl.detach(), want)
        torch.testing.assert_close(layer.weight_mu.grad, g_mu)
        torch.testing.assert_close(layer.weight_rho.grad, g_rho)
        opt.step()  # rho changes in place: the next KL must see the new values
    with torch.no_grad():
        layer.weight_rho.fill_(-1.0)
    torch.testing.assert_close(layer.weight_sigma(), torch.full((4, 6), F.softplus(
        torch.tensor(-1.0)).item()))
