"""SSVI subspaces: the random initial subspace, the removal criteria against closed forms and
Monte Carlo, the SNR(|theta|) = g(|mu|/sigma) equivalence, the schedule (S3, S6) and one
drop/grow update (S1, S4, S5) with Adam and SGD state."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from varbayes.errors import VarbayesError
from varbayes.nn.meanfield import MeanFieldLinear, bayesian_layers
from varbayes.nn.sparse import is_sparse, to_sparse
from varbayes.nn.subspace import (
    SubspaceSchedule,
    density_report,
    exp_abs_moment,
    expected_abs,
    removal_scores,
    snr_abs_value,
    snr_exp_abs,
    sparsify,
    subspace_update,
    update_layer,
)


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


# --- the initial subspace ------------------------------------------------------------------


def test_sparsify_keeps_the_same_density_in_every_layer_from_a_seed():
    net = sparsify(_mlp(), 0.1, seed=3)
    layers = bayesian_layers(net)
    assert all(is_sparse(m) for m in layers)
    assert [m.n_active for m in layers] == [2560 - math.floor(0.9 * 2560),
                                            640 - math.floor(0.9 * 640)]
    again = sparsify(_mlp(), 0.1, seed=3)
    other = sparsify(_mlp(), 0.1, seed=4)
    assert torch.equal(layers[0].weight_index, bayesian_layers(again)[0].weight_index)
    assert not torch.equal(layers[0].weight_index, bayesian_layers(other)[0].weight_index)
    rep = density_report(net)
    assert rep["active"] == 256 + 64 and rep["total"] == 3200


def test_kaiming_density_init_keeps_the_preactivation_scale():
    net = sparsify(_mlp(), 0.05, seed=0)
    first = bayesian_layers(net)[0]
    expected = math.sqrt(2 / (first.density * 40))
    assert abs(float(first.weight_mu.detach().std()) / expected - 1) < 0.15
    x = torch.randn(4000, 40)
    with torch.no_grad():
        pre = x @ first.dense_values(first.weight_mu).T
    assert abs(float(pre.var()) / 2.0 - 1) < 0.2  # E[(w x)^2] = d fan_in * 2 / (d fan_in)


def test_kaiming_density_init_zeroes_the_biases_of_sparse_layers_only():
    net = sparsify(_mlp(), 0.1, dense_layers=("2",), seed=0)  # spec 2.4: biases 0
    first, last = bayesian_layers(net)
    assert is_sparse(first) and torch.equal(first.bias, torch.zeros(64))
    assert not is_sparse(last) and torch.equal(last.bias, _mlp()[2].bias)  # kept dense: as is
    ref = bayesian_layers(sparsify(_mlp(), 0.1, mu_init="normal-0.01", seed=0))[0]
    assert torch.equal(ref.bias, _mlp()[0].bias)  # the reference init keeps PyTorch's biases


def test_reference_init_and_dense_layers():
    net = sparsify(_mlp(), 0.1, dense_layers=("0",), mu_init="normal-0.01",
                   sigma_init="reference", seed=0)
    first, last = bayesian_layers(net)
    assert not is_sparse(first) and is_sparse(last)
    assert abs(float(last.weight_mu.detach().std()) - 0.01) < 0.002
    sigma = last.sigma_of(last.weight_rho.detach())
    assert bool((sigma > 0).all()) and abs(float(sigma.mean()) - 6.8e-4) < 1.5e-4


def test_density_one_leaves_the_model_untouched():
    net = _mlp()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    out = sparsify(net, 1.0)
    assert not any(is_sparse(m) for m in bayesian_layers(out))
    assert torch.equal(bayesian_layers(out)[0].weight_mu, state["0.weight"])


def test_sparsify_errors():
    with pytest.raises(VarbayesError, match="density"):
        sparsify(_mlp(), 0.0)
    with pytest.raises(VarbayesError, match="matches no Bayesian layer; layers: 0, 2"):
        sparsify(_mlp(), 0.5, dense_layers=("fc",))
    with pytest.raises(VarbayesError, match="mu_init"):
        sparsify(_mlp(), 0.5, mu_init="xavier")
    with pytest.raises(VarbayesError, match="already Bayesian"):
        sparsify(sparsify(_mlp(), 1.0), 0.5, init_sigma=0.1)


# --- removal criteria ------------------------------------------------------------------------


def _mc(mu: float, sigma: float, n: int = 2_000_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (mu + sigma * torch.randn(n, generator=g, dtype=torch.float64)).abs()


@pytest.mark.parametrize(("mu", "sigma"), [(0.3, 0.2), (-1.0, 0.5), (0.05, 0.4), (2.0, 0.1)])
def test_criteria_match_monte_carlo(mu, sigma):
    a = _mc(mu, sigma)
    m, s = torch.tensor([mu], dtype=torch.float64), torch.tensor([sigma], dtype=torch.float64)
    assert float(expected_abs(m, s)) == pytest.approx(float(a.mean()), rel=2e-3)
    r = torch.tensor([abs(mu) / sigma])
    assert float(snr_abs_value(r)) == pytest.approx(float(a.mean() / a.std()), rel=3e-3)
    e = torch.exp(a)
    assert float(exp_abs_moment(m, s, 1.0)) == pytest.approx(float(e.mean()), rel=2e-3)
    assert float(snr_exp_abs(m, s, 1.0)) == pytest.approx(float(e.mean() / e.std()), rel=1e-2)


def test_g_values_and_strict_monotonicity():
    expected = {0.0: math.sqrt(2 / (math.pi - 2)), 0.5: 1.3382, 1.0: 1.4595, 2.0: 2.0895,
                3.0: 3.0077}
    for r, g in expected.items():
        assert float(snr_abs_value(torch.tensor([r]))) == pytest.approx(g, abs=1e-4)
    grid = torch.linspace(0, 60, 200_001, dtype=torch.float64)
    g = snr_abs_value(grid)
    assert bool((g[1:] - g[:-1] > -1e-15).all())  # increasing up to the last ulp near g = r
    assert bool((g[1:] > g[:-1])[grid[1:] < 7.5].all())  # strictly, where g differs from r


def test_literal_snr_abs_formula_cancels_in_float32_but_ours_is_stable():
    """Spec section 3: mu^2 + sigma^2 - (E|theta|)^2 cancels in float32 for large r."""
    mu = torch.tensor([1.0, 1.0, 1.0])
    sigma = torch.tensor([1e-3, 2e-4, 1e-5])
    e = expected_abs(mu, sigma)  # float32
    literal = e / torch.sqrt(mu * mu + sigma * sigma - e * e)
    ours = snr_abs_value(mu.double() / sigma.double())
    assert not bool(torch.isfinite(literal[2])) or abs(float(literal[2]) / 1e5 - 1) > 0.05
    torch.testing.assert_close(ours, mu.double() / sigma.double(), rtol=1e-12, atol=0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(-6, 4), st.integers(5, 200))
def test_snr_and_snr_abs_rank_identically(seed, log_scale, k):
    """The property of spec section 3: SNR(|theta|) ranks weights exactly as |mu|/sigma,
    including very large r, so both names drop the same coordinates."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(k, generator=g, dtype=torch.float64) * 10**log_scale
    sigma = torch.rand(k, generator=g, dtype=torch.float64) * 10 ** (log_scale - 3) + 1e-30
    r = mu.abs() / sigma
    by_g = torch.sort(snr_abs_value(r), stable=True).indices
    by_r = torch.sort(r, stable=True).indices
    small = r < 7.5  # where g is strictly increasing in float64, the orders agree exactly
    assert torch.equal(by_g[small[by_g]], by_r[small[by_r]])
    assert torch.equal(removal_scores(mu, sigma, "snr"), removal_scores(mu, sigma, "snr_abs"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-7, 7), st.floats(-3, 3)), min_size=2, max_size=40))
def test_snr_of_abs_theta_from_its_definition_depends_on_r_only_and_increases(pairs):
    """Spec section 3 from the definition: SNR(|theta|) = E|theta| / sd|theta| computed from
    (mu, sigma) - folded-normal mean, E theta^2 = mu^2 + sigma^2 - equals g(|mu|/sigma) whatever
    the scale sigma, so it orders any weights exactly as |mu|/sigma does."""
    r_signed = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    sigma = 10.0 ** torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    mu = r_signed * sigma
    e = expected_abs(mu, sigma)
    literal = e / torch.sqrt(mu * mu + sigma * sigma - e * e)  # float64, r <= 7: no cancelling
    r = mu.abs() / sigma
    torch.testing.assert_close(literal, snr_abs_value(r), rtol=1e-7, atol=0)
    i, j = torch.triu_indices(len(pairs), len(pairs), 1)
    lo, hi = torch.where(r[i] <= r[j], i, j), torch.where(r[i] <= r[j], j, i)
    assert bool((literal[lo] <= literal[hi] * (1 + 1e-12)).all())  # never out of order
    # strictly increasing wherever float64 can resolve it (g(r) - g(0) is O(r^4) near 0)
    apart = (r[hi] - r[lo] > 1e-3) & (r[hi] > 0.1)
    assert bool((literal[lo] < literal[hi])[apart].all())


def test_scores_are_finite_for_extreme_inputs():
    mu = torch.tensor([0.0, 1e-30, 5.0, -300.0, 1e-3])
    sigma = torch.tensor([1e-30, 1e-8, 1e-8, 2.0, 1.0])
    for criterion in ("abs_mean", "snr_abs", "e_abs", "e_exp_abs", "snr_exp_abs"):
        s = removal_scores(mu, sigma, criterion)
        assert s.dtype == torch.float64 and not bool(torch.isnan(s).any()), criterion
    with pytest.raises(VarbayesError, match="removal criterion"):
        removal_scores(mu, sigma, "random")


# --- the schedule ------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "every"), [(4800, 25), (1600, 25), (78200, 100), (10, 3),
                                              (7, 1)])
def test_number_of_updates_and_no_update_after_t_end(total, every):
    """S3: #updates = #{t : t mod delta = 0, t < T_end}."""
    s = SubspaceSchedule(update_every=every)
    steps = [t for t in range(1, total + 1) if s.is_update(t, total)]
    assert len(steps) == s.n_updates(total)
    assert len(steps) == len([t for t in range(1, total + 1)
                              if t % every == 0 and t < math.floor(0.75 * total)])
    assert all(t < s.t_end(total) for t in steps)
    assert SubspaceSchedule(mask_updates=False).n_updates(total) == 0


def test_reference_counts_and_drop_fraction():
    s = SubspaceSchedule(update_every=100)
    assert s.t_end(78200) == 58650 and s.n_updates(78200) == 586
    assert SubspaceSchedule().n_updates(4800) == 143
    quick = SubspaceSchedule()
    assert quick.n_updates(1600) == 47
    assert quick.drop_fraction(0, 4800) == pytest.approx(0.3)
    assert quick.drop_fraction(1800, 4800) == pytest.approx(0.15)  # T_end / 2
    assert quick.drop_fraction(3600, 4800) == pytest.approx(0.0, abs=1e-15)


def test_schedule_errors():
    with pytest.raises(VarbayesError, match="drop_criterion"):
        SubspaceSchedule(drop_criterion="median")
    with pytest.raises(VarbayesError, match="update_every"):
        SubspaceSchedule(update_every=0)


# --- one update ----------------------------------------------------------------------------


def _layer_with_state(optimizer: str):
    torch.manual_seed(0)
    layer = MeanFieldLinear(10, 6)
    idx = torch.randperm(60)[:20].sort().values
    to_sparse(layer, idx)
    with torch.no_grad():
        layer.weight_rho.uniform_(-6, -3)
    params = [layer.weight_mu, layer.weight_rho]
    opt = (torch.optim.Adam(params, lr=1e-2) if optimizer == "adam"
           else torch.optim.SGD(params, lr=1e-2, momentum=0.9))
    x = torch.randn(16, 10)
    for _ in range(3):
        opt.zero_grad()
        layer(x).pow(2).sum().backward()
        opt.step()
    layer.keep_mean_grad = True
    opt.zero_grad()
    (layer(x).pow(2).sum() + 0.1 * layer.kl()).backward()
    return layer, opt


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_update_drops_lowest_scores_grows_largest_gradients_and_resets_state(optimizer):
    layer, opt = _layer_with_state(optimizer)
    old_index = layer.weight_index.clone()
    mu, rho = layer.weight_mu.detach().clone(), layer.weight_rho.detach().clone()
    states = {name: t.clone() for name, t in opt.state[layer.weight_mu].items()
              if isinstance(t, torch.Tensor) and t.shape == mu.shape}
    grad = layer.dense_mean_grad().clone()
    mu_grad = layer.weight_mu.grad.clone()
    schedule = SubspaceSchedule()
    n_drop = math.floor(20 * 0.3)

    up = update_layer(layer, 0.3, schedule, grad=grad, optimizer=opt)

    # drop set: the n_drop lowest |mu|/sigma; grow set: largest |grad| among the rest
    r = mu.abs() / layer.sigma_of(rho)
    keep = torch.sort(r, stable=True).indices[n_drop:]
    score = grad.reshape(-1).abs().clone()
    score[old_index] = mu_grad.abs()
    score[old_index[keep]] = -1
    grown = torch.topk(score, n_drop).indices
    expected = torch.cat([old_index[keep], grown]).sort().values
    assert torch.equal(layer.weight_index, expected)
    assert layer.n_active == 20 and up.active == 20 and up.n_drop == n_drop  # S1
    assert up.changed + up.regrown == n_drop and up.checks

    new_pos = ~torch.isin(layer.weight_index, old_index)
    rho_mean = float(rho[keep].mean())
    assert bool((layer.weight_mu[new_pos] == 0).all())  # S4
    torch.testing.assert_close(layer.weight_rho[new_pos],
                               torch.full((int(new_pos.sum()),), rho_mean))
    for name in states:  # S5: zero state for new coordinates, moved state for the others
        state = opt.state[layer.weight_mu][name]
        assert bool((state[new_pos] == 0).all()), name
        old_slots = torch.searchsorted(old_index, layer.weight_index[~new_pos])
        torch.testing.assert_close(state[~new_pos], states[name][old_slots])
    old_slots = torch.searchsorted(old_index, layer.weight_index[~new_pos])
    assert torch.equal(layer.weight_mu[~new_pos], mu[old_slots])  # kept / regrown keep values


def test_just_dropped_coordinates_can_be_regrown():
    layer, opt = _layer_with_state("adam")
    grad = torch.zeros(6, 10)  # no inactive coordinate has a gradient: all drops come back
    layer.weight_mu.grad = torch.ones_like(layer.weight_mu)
    before = layer.weight_index.clone(), layer.weight_mu.detach().clone()
    up = update_layer(layer, 0.3, SubspaceSchedule(), grad=grad, optimizer=opt)
    assert up.regrown == up.n_drop and up.changed == 0
    assert torch.equal(layer.weight_index, before[0])
    assert torch.equal(layer.weight_mu.detach(), before[1])


@pytest.mark.parametrize("criterion", ["abs_mean", "e_abs", "e_exp_abs", "snr_exp_abs",
                                       "random"])
def test_every_criterion_and_random_growth_keep_the_count(criterion):
    layer, opt = _layer_with_state("adam")
    schedule = SubspaceSchedule(drop_criterion=criterion, grow_criterion="random",
                                grow_sigma="eps")
    [up] = subspace_update([layer], schedule, 25, 4800, opt, seed=0)
    assert layer.n_active == 20 and up.checks
    new = layer.weight_rho.detach()[layer.weight_mu.detach() == 0]
    assert float(layer.sigma_of(new).max()) == pytest.approx(1e-6, rel=1e-3)


def test_growth_without_a_gradient_is_an_error():
    layer, opt = _layer_with_state("adam")
    with pytest.raises(VarbayesError, match="keep_mean_grad"):
        update_layer(layer, 0.3, SubspaceSchedule(), grad=None, optimizer=opt)


def test_sparsify_refuses_what_it_cannot_make_sparse() -> None:
    with pytest.raises(VarbayesError, match="expects a torch.nn.Module; got str"):
        sparsify("net", 0.5)  # type: ignore[arg-type]
    with pytest.raises(VarbayesError, match="no nn.Linear"):
        sparsify(torch.nn.Sequential(torch.nn.ReLU()), 0.5)
