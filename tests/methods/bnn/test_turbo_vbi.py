"""Turbo-VBI: Module A's closed forms, Module B's wiring, the learner's rounds, pruning, the
compact model, files, bad settings and a quick reproduction."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.distributions import Gamma

import varbayes
from varbayes.errors import VarbayesError
from varbayes.infer.grid_bp import grid_bp
from varbayes.methods.bnn.turbo_prior import PriorSettings, SupportPrior
from varbayes.methods.bnn.turbo_vbi_repro import magnitude_masks, random_mask


def prior(settings: PriorSettings | None = None, shape: tuple[int, int] = (6, 5)) -> SupportPrior:
    p = SupportPrior(shape, settings or PriorSettings())
    p.calibrate(torch.full(shape, 0.04))
    return p


def test_calibration_sets_the_rates_from_the_second_moment() -> None:
    p = prior(PriorSettings(active_shape=2.0, inactive_shape=50.0, slab_scale=2.0,
                            spike_ratio=10.0))
    v_a = 4 * 0.04
    assert p.b == pytest.approx(2.0 * v_a) and p.b_bar == pytest.approx(50.0 * v_a / 10)
    assert bool(p.calibrated)


@pytest.mark.parametrize("rule", ["textbook", "demo"])
def test_tau_update_closed_form(rule: str) -> None:
    p = prior(PriorSettings(tau_update=rule))
    p.post_logit.copy_(torch.randn(6, 5))
    m2 = torch.rand(6, 5) * 0.1
    p.update_tau(m2)
    pi = torch.sigmoid(p.post_logit)
    half = 0.5 if rule == "textbook" else 1.0
    assert torch.allclose(p.tau_shape, pi * p.a + (1 - pi) * p.a_bar + half, atol=1e-5)
    assert torch.allclose(p.tau_rate, pi * p.b + (1 - pi) * p.b_bar + half * m2, atol=1e-6)


def test_evidence_is_the_expected_log_gamma_ratio() -> None:
    """Against a Monte Carlo estimate of E_q[log Gamma(tau; a, b) - log Gamma(tau; a_bar,
    b_bar)] with tau drawn from q(tau) by torch.distributions."""
    p = prior(shape=(1, 3))
    p.tau_shape.copy_(torch.tensor([[1.5, 20.0, 60.0]]))
    p.tau_rate.copy_(torch.tensor([[0.05, 0.2, 0.3]]))
    tau = Gamma(p.tau_shape.double(), p.tau_rate.double()).sample((200_000,))
    active = Gamma(torch.tensor(p.a).double(), torch.tensor(p.b).double()).log_prob(tau)
    inactive = Gamma(torch.tensor(p.a_bar).double(),
                     torch.tensor(p.b_bar).double()).log_prob(tau)
    mc = (active - inactive).mean(0)
    se = (active - inactive).std(0) / math.sqrt(len(tau))
    assert ((p.evidence().double() - mc).abs() < 5 * se + 1e-6).all()


def test_module_a_thresholds_the_second_moment() -> None:
    """With a concentrated spike (a_bar = 100) the support follows E[w^2] against the slab."""
    p = prior(PriorSettings(active_shape=1.0, inactive_shape=100.0, spike_ratio=100.0,
                            slab_scale=1.0),
              shape=(1, 4))
    mean = torch.tensor([[0.0, 0.02, 0.5, 1.0]])
    p.module_a(mean, torch.full_like(mean, 1e-3), iterations=5)
    support = p.support[0]
    assert support[0] < 0.01 and support[1] < 0.01 and support[2] > 0.99 and support[3] > 0.99
    assert torch.allclose(p.post_logit, p.prior_logit + p.evidence())


def test_evidence_cap_clips_the_support_evidence_only() -> None:
    """With evidence_cap the support moves at most cap nats from the prior (so the field can
    overrule a weight); q(tau) and the raw evidence are unchanged."""
    mean = torch.tensor([[0.0, 0.02, 0.5, 1.0]])
    free = prior(PriorSettings(inactive_shape=100.0, spike_ratio=100.0, slab_scale=1.0),
                 shape=(1, 4))
    capped = prior(PriorSettings(inactive_shape=100.0, spike_ratio=100.0, slab_scale=1.0,
                                 evidence_cap=2.0), shape=(1, 4))
    free.module_a(mean, torch.full_like(mean, 1e-3))
    capped.module_a(mean, torch.full_like(mean, 1e-3))
    assert free.evidence().abs().min() > 2.0  # every raw evidence is beyond the cap
    delta = capped.post_logit - capped.prior_logit
    assert torch.allclose(delta.abs(), torch.full_like(delta, 2.0))
    assert torch.equal(delta.sign(), free.evidence().sign())
    with pytest.raises(VarbayesError, match="evidence_cap"):
        PriorSettings(evidence_cap=0.0)


def test_evidence_floor_clips_only_the_evidence_against_a_weight() -> None:
    """evidence_floor bounds the evidence from below only; with evidence_cap too, the tighter
    of the two bounds the negative side."""
    mean = torch.tensor([[0.0, 0.02, 0.5, 1.0]])
    kw = dict(inactive_shape=100.0, spike_ratio=100.0, slab_scale=1.0)
    free = prior(PriorSettings(**kw), shape=(1, 4))
    floored = prior(PriorSettings(**kw, evidence_floor=2.0), shape=(1, 4))
    both = prior(PriorSettings(**kw, evidence_floor=2.0, evidence_cap=3.0), shape=(1, 4))
    for p in (free, floored, both):
        p.module_a(mean, torch.full_like(mean, 1e-3))
    raw = free.evidence()
    assert raw.min() < -2.0 and raw.max() > 3.0
    assert torch.equal(floored.support_evidence(), raw.clamp(min=-2.0))
    assert torch.equal(both.support_evidence(), raw.clamp(-2.0, 3.0))
    with pytest.raises(VarbayesError, match="evidence_floor"):
        PriorSettings(evidence_floor=0.0)


def test_neuron_on_sets_an_absolute_unit_density() -> None:
    """With neuron_on a live unit's P(s = 1 | z = 1) no longer follows the layer's density
    (the ratio model's floor at density 0 made "all off" absorbing under an evidence cap):
    the same factor at every density, the dead unit's rate neuron_on / neuron_contrast."""
    s = PriorSettings(neuron_on=0.95, neuron_contrast=1000.0)
    for density in (0.0, 1e-3, 0.3):
        f = s.neuron(density)
        assert (f.on, f.off) == (0.95, 0.95 / 1000.0)
    assert PriorSettings().neuron(0.0).on == 1e-4  # the ratio model's floor
    with pytest.raises(VarbayesError, match="neuron_on"):
        PriorSettings(neuron_on=1.0)
    with pytest.raises(varbayes.VarbayesError, match="neuron_on"):
        varbayes.run("turbo-vbi", "digits", neuron_on=0.0)


def test_module_b_passes_the_extrinsic_message_through_the_grid() -> None:
    s = PriorSettings(row_p01=0.2, row_p11=0.8, col_p01=0.3, col_p11=0.7, bp_sweeps=7)
    p = prior(s)
    p.post_logit.copy_(torch.randn(6, 5))
    unary = p.post_logit - p.prior_logit
    expected = grid_bp(unary, s.rows(), s.cols(), None, 7, s.bp_damping).extrinsic
    p.module_b()
    assert torch.allclose(p.prior_logit, expected, atol=1e-6)
    assert torch.allclose(p.post_logit, expected + unary, atol=1e-6)


def tiny(**kw: object) -> dict:
    return {"epochs": 4, "first_round": 2, "round_every": 1, "finetune_epochs": 1,
            "batch_size": 256, "eval_samples": 3, "val_samples": 2, "speed_repeats": 2,
            "slab_scale": 1.0, "spike_growth": 3.0, **kw}


def test_learner_rounds_prune_and_compact(tmp_path: Path) -> None:
    rec = varbayes.run("turbo-vbi", "digits", out=tmp_path, quiet=True, **tiny())
    m = rec["metrics"]
    for key in ("accuracy", "accuracy_postmean", "density", "neurons_removed", "compact_macs",
                "speed_ratio", "block_len_ratio", "train_flops_ratio"):
        assert key in m
    assert 0 < m["density"] <= 1 and m["compact_max_abs_diff"] < 1e-4
    assert m["train_flops_ratio"] <= 1.0 + 1e-9  # dense phase, then a sparse one
    assert [r["epoch"] for r in rec["details"]["rounds"]] == [2, 3, 4]
    model = varbayes.load(tmp_path)
    probs = model.predict(varbayes.data.load("digits").x_test[:7])
    assert probs.shape == (7, 10) and torch.allclose(probs.sum(1), torch.ones(7), atol=1e-5)
    layers = varbayes.nn.bayesian_layers(model.network)
    assert all(layer.mask is not None for layer in layers)
    assert sum(int(layer.mask.sum()) for layer in layers) == m["weights_kept"]
    assert (tmp_path / "support.png").is_file()


def test_cli_refuses_bad_settings_with_exit_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from varbayes.cli import main

    assert main(["run", "turbo-vbi", "--dataset", "digits", "--set", "prune_threshold=1",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "prune_threshold" in err and "\n" not in err
    assert not (tmp_path / "result.json").exists()


def test_bad_settings_are_one_line() -> None:
    with pytest.raises(varbayes.VarbayesError, match="row_p11 must be < 1"):
        varbayes.run("turbo-vbi", "digits", row_p11=1.0)
    with pytest.raises(varbayes.VarbayesError, match="unknown dataset"):
        varbayes.run("turbo-vbi", "boston")


def test_baseline_masks() -> None:
    torch.manual_seed(0)
    net = varbayes.nn.bayesianize(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)))
    masks = magnitude_masks(net, keep=7)
    assert sum(int(m.sum()) for m in masks) == 7
    scores = torch.cat([layer.weight_mu.abs().flatten()
                        for layer in varbayes.nn.bayesian_layers(net)])
    kept = torch.cat([m.flatten() for m in masks])
    assert scores[kept].min() >= scores[~kept].max()
    mask = random_mask(torch.Size([5, 4]), 9, torch.Generator().manual_seed(1))
    assert int(mask.sum()) == 9


@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    rec = varbayes.reproduce("turbo-vbi", quick=True, out=tmp_path, quiet=True)
    assert len(rec["claims"]) == 7 and (tmp_path / "reproduction.json").is_file()
    rows = {k: v[0] for k, v in rec["details"]["datasets"]["digits"]["per_seed"].items()}
    kept = rows["Turbo-VBI"]["weights_kept"]
    assert 0 < kept < rows["dense VI"]["weights_kept"]
    assert rows["magnitude pruning"]["weights_kept"] == kept  # compared at the same count
    assert rows["static random mask"]["weights_kept"] == kept
    assert abs(rows["SSVI"]["weights_kept"] - kept) <= 3  # same density, rounded per layer
    assert rows["Turbo-VBI"]["compact_max_abs_diff"] < 1e-4
    assert (tmp_path / "support_digits.png").is_file()


@pytest.mark.filterwarnings("error::UserWarning")  # a layer pruned to nothing would warn
def test_python_api_on_a_user_network() -> None:
    """varbayes.turbo_vbi on a user's nn.Sequential: fit, predict, masks, structure report and
    a compact network that computes what the pruned posterior mean computes; the fitted
    network prunes units yet still separates the classes."""
    torch.manual_seed(0)
    x = torch.randn(512, 6)
    y = (x[:, 0] + x[:, 1] > 0).long()
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 12), nn.Tanh(),
                        nn.Linear(12, 2))
    before = [p.clone() for p in net.parameters()]
    tv = varbayes.turbo_vbi(net, epochs=12, first_round=6, round_every=2, finetune_epochs=3,
                            slab_scale=2.0, lr=1e-2, batch_size=64, eval_samples=2,
                            val_samples=2)
    with pytest.raises(varbayes.VarbayesError, match="not trained yet"):
        tv.predict(x)
    tv.fit(x, y)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # a copy
    probs = tv.predict(x[:5])
    assert probs.shape == (5, 2) and torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)
    masks = tv.masks()
    report = tv.structure()
    assert report["active"] == sum(int(m.sum()) for m in masks)
    compact = tv.compact()
    assert isinstance(compact[2], nn.Tanh)
    widths = [m.out_features for m in compact if isinstance(m, nn.Linear)]
    assert [6, *widths] == report["compact_widths"]
    assert widths[0] * widths[1] > 0 and widths[0] + widths[1] < 16 + 12  # pruned, not emptied
    assert (tv.predict(x).argmax(1) == y).float().mean() > 0.9
    mean_net = varbayes.nn.predictive.posterior_mean_sampler(tv.network, x, 1)[0]
    assert torch.allclose(compact(x), mean_net, atol=1e-5)


def test_pruning_a_whole_layer_warns() -> None:
    """If every unit of a hidden layer falls below the threshold, pruning says so in one
    warning (the network would otherwise silently predict a constant)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    tv = varbayes.turbo_vbi(net, epochs=1, batch_size=16, eval_samples=2, val_samples=2)
    tv.learner.priors[0].unit_logit.fill_(-10.0)
    with pytest.warns(UserWarning, match="left no unit in hidden layer 1"):
        tv.learner.prune()
    masks = [layer.mask for layer in tv.learner.layers]
    assert not masks[0].any() and not masks[1].any()


@pytest.mark.filterwarnings("error::UserWarning")  # a layer pruned to nothing would warn
def test_python_model_saves_and_reloads(tmp_path: Path) -> None:
    """A Turbo-VBI model fitted from Python round-trips through safetensors + JSON:
    varbayes.load gives the same masks, weights and (same-seed) predictions."""
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    net = nn.Sequential(nn.Flatten(), nn.Linear(5, 12), nn.GELU(), nn.Linear(12, 3))
    tv = varbayes.turbo_vbi(net, epochs=3, first_round=1, round_every=1, finetune_epochs=1,
                            slab_scale=1.5, batch_size=32, eval_samples=4, val_samples=2)
    tv.fit(x, y)
    _assert_reloads(tv, tmp_path, x, nn.GELU)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "model.json"}


def _assert_reloads(tv: Any, folder: Path, x: torch.Tensor, third: type[nn.Module]) -> None:
    """Save `tv`, load it back: the network's third module is a `third`, the masks are the
    same, and same-seed predictions agree."""
    tv.save(folder)
    model = varbayes.load(folder)
    assert isinstance(model.network[2], third)
    layers = varbayes.nn.bayesian_layers(model.network)
    assert all(torch.equal(a.mask, b) for a, b in zip(layers, tv.masks()))
    torch.manual_seed(3)
    ours = tv.predict(x[:9])
    torch.manual_seed(3)
    theirs = model.predict(x[:9])
    assert torch.allclose(torch.as_tensor(ours), torch.as_tensor(theirs), atol=1e-6)


def test_python_api_refuses_bad_input() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    tv = varbayes.turbo_vbi(net, epochs=1, finetune_epochs=0)
    x = torch.randn(10, 4)
    with pytest.raises(varbayes.VarbayesError, match="labels"):
        tv.fit(x, torch.full((10,), 3))
    with pytest.raises(varbayes.VarbayesError, match="NaN"):
        tv.fit(x.masked_fill(x > 1, float("nan")), torch.zeros(10, dtype=torch.long))
    with pytest.raises(varbayes.VarbayesError, match="reads 4 input features"):
        tv.fit(torch.randn(10, 5), torch.zeros(10, dtype=torch.long))
    with pytest.raises(varbayes.VarbayesError, match="nn.Sequential"):
        varbayes.turbo_vbi(nn.Linear(4, 3))
    with pytest.raises(varbayes.VarbayesError, match="parameter-free activation"):
        varbayes.turbo_vbi(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 3)))
    with pytest.raises(varbayes.VarbayesError, match="2 numbers"):
        varbayes.turbo_vbi(net, task="regression")
    with pytest.raises(varbayes.VarbayesError, match="prune_threshold"):
        varbayes.turbo_vbi(net, prune_threshold=1.5)


def test_saved_comparisons_are_reused_only_with_the_same_settings(tmp_path: Path) -> None:
    from varbayes.methods.bnn import turbo_vbi as tv
    from varbayes.methods.bnn.turbo_vbi_repro import _load_comparison, _save_comparison

    masks = [torch.rand(3, 4) > 0.5, torch.rand(2, 3) > 0.5]
    result = {"metrics": {"Turbo-VBI": {"accuracy": 0.9, "block_len_ratio": float("nan")}},
              "masks": {"Turbo-VBI": masks}, "rounds": [{"epoch": 2, "density": 0.5}]}
    cfg = tv.Config(epochs=3)
    _save_comparison(tmp_path, cfg, result)
    again = _load_comparison(tmp_path, cfg)
    assert again is not None and again["rounds"] == result["rounds"]
    assert all(torch.equal(a, b) for a, b in zip(again["masks"]["Turbo-VBI"], masks))
    assert again["metrics"]["Turbo-VBI"]["accuracy"] == 0.9
    assert math.isnan(again["metrics"]["Turbo-VBI"]["block_len_ratio"])
    assert _load_comparison(tmp_path, tv.Config(epochs=4)) is None


@pytest.mark.parametrize("calibration", ["layer", "global"])
def test_calibration_per_layer_or_pooled(calibration: str) -> None:
    from varbayes.methods.bnn import turbo_vbi as tv

    torch.manual_seed(0)
    net = varbayes.nn.bayesianize(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)),
                                  init_sigma=1e-3)
    with torch.no_grad():
        net[2].weight_mu.mul_(10)  # the layers' weights differ in size
    learner = tv.TurboLearner(net, "classification", tv.Config(calibration=calibration,
                                                               slab_scale=2.0))
    learner.refresh_prior()
    layers = varbayes.nn.bayesian_layers(net)
    m2 = [(m.weight_mu**2 + m.weight_sigma()**2).detach().double() for m in layers]
    pooled = torch.cat([t.flatten() for t in m2]).mean()
    for layer_m2, prior in zip(m2, learner.priors):
        v_a = 4.0 * float(layer_m2.mean() if calibration == "layer" else pooled)  # slab 2
        assert prior.b == pytest.approx(1.0 * v_a, rel=1e-5)


def test_spike_growth_tightens_the_inactive_prior_after_the_first_round() -> None:
    """The first round calibrates the rates; every later one divides b_bar by spike_growth
    (the inactive precision's mean grows by that factor), leaving b alone."""
    from varbayes.methods.bnn import turbo_vbi as tv

    torch.manual_seed(0)
    net = varbayes.nn.bayesianize(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)),
                                  init_sigma=1e-3)
    learner = tv.TurboLearner(net, "classification", tv.Config(spike_growth=4.0))
    learner.refresh_prior()
    first = [(p.b, p.b_bar) for p in learner.priors]
    learner.refresh_prior()
    learner.refresh_prior()
    for (b, b_bar), p in zip(first, learner.priors):
        assert p.b == pytest.approx(b) and p.b_bar == pytest.approx(b_bar / 16)


def test_neuron_model_prunes_switched_off_units_as_a_whole() -> None:
    """A round sets every hidden unit's q(z) (network BP); a unit with q(z = 1) < 0.5 loses
    its whole row in the layer before and its whole column in the layer after."""
    from varbayes.methods.bnn import turbo_vbi as tv

    torch.manual_seed(0)
    net = varbayes.nn.bayesianize(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5),
                                                nn.ReLU(), nn.Linear(5, 3)), init_sigma=1e-3)
    learner = tv.TurboLearner(net, "classification", tv.Config(slab_scale=1.0))
    learner.refresh_prior()
    assert [tuple(z.shape) for z in learner.units] == [(6,), (5,)]
    for prior, z in zip(learner.priors, learner.units):
        assert torch.allclose(prior.unit_logit, z)
    for prior in learner.priors:
        prior.post_logit.fill_(10.0)  # every weight active on its own
    learner.priors[0].unit_logit.copy_(torch.tensor([5.0, -5.0, 5.0, 5.0, 5.0, 5.0]))
    learner.priors[1].unit_logit.copy_(torch.tensor([5.0, 5.0, 5.0, -5.0, 5.0]))
    masks = learner.masks()
    assert not masks[0][1].any() and not masks[1][:, 1].any()
    assert not masks[1][3].any() and not masks[2][:, 3].any()
    assert int(sum(m.sum() for m in masks)) == 24 - 4 + 30 - 5 - 6 + 1 + 15 - 3


def test_units_keep_their_weights_at_pruning() -> None:
    """unit_keeps_weights: pruning keeps every weight between live units whatever its own
    q(s) (s = z), still removes the dead units' rows and columns, and gives the kept weights
    the slab's precision prior (tau's closed form at support 1) for fine-tuning."""
    from varbayes.methods.bnn import turbo_vbi as tv
    from varbayes.methods.bnn.turbo_prior import units_on

    torch.manual_seed(0)
    net = varbayes.nn.bayesianize(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5),
                                                nn.ReLU(), nn.Linear(5, 3)), init_sigma=1e-3)
    learner = tv.TurboLearner(net, "classification",
                              tv.Config(slab_scale=1.0, unit_keeps_weights=True))
    learner.refresh_prior()
    for prior in learner.priors:
        prior.post_logit.fill_(-10.0)  # every weight inactive on its own
    z0 = torch.tensor([5.0, -5.0, 5.0, 5.0, 5.0, 5.0])
    z1 = torch.tensor([5.0, 5.0, 5.0, -5.0, 5.0])
    learner.priors[0].unit_logit.copy_(z0)
    learner.priors[1].unit_logit.copy_(z1)
    on = units_on(list(learner.priors))
    assert torch.allclose(on[1], torch.sigmoid(z1)[:, None] * torch.sigmoid(z0)[None, :])
    assert torch.allclose(on[0], torch.sigmoid(z0)[:, None].expand(6, 4))
    assert torch.allclose(on[2], torch.sigmoid(z1)[None, :].expand(3, 5))
    masks = learner.masks()
    assert [int(m.sum()) for m in masks] == [5 * 4, 4 * 5, 3 * 4]
    assert not masks[0][1].any() and not masks[1][3].any() and not masks[1][:, 1].any()
    learner.prune()
    for layer, prior, mask in zip(learner.layers, learner.priors, masks):
        second = layer.weight_mu.double() ** 2 + layer.weight_sigma().double() ** 2
        a = prior.a + 0.5
        b = prior.b + 0.5 * second
        assert torch.allclose(prior.tau_shape[mask].double(), torch.full_like(b[mask], a))
        assert torch.allclose(prior.tau_rate[mask].double(), b[mask], rtol=1e-5)
    plain = tv.TurboLearner(net, "classification", tv.Config(slab_scale=1.0))
    inputs = tv.TurboLearner(net, "classification", tv.Config(
        slab_scale=1.0, unit_keeps_weights=True, unit_keeps_inputs=False))
    for other in (plain, inputs):
        for prior, source in zip(other.priors, learner.priors):
            prior.load_state_dict(source.state_dict())
    assert sum(int(m.sum()) for m in plain.masks()) == 0
    # the inputs' weights keep their own support (all inactive here), the others as above
    assert [int(m.sum()) for m in inputs.masks()] == [0, 4 * 5, 3 * 4]


def test_selection_rule_follows_the_claims() -> None:
    """Within 1 point of dense VI at >= 10x: the most neurons removed wins; if no point is
    that accurate, the most accurate point with >= 10x; never a point below 10x."""
    from varbayes.methods.bnn.turbo_vbi_repro import _choose

    def row(acc: float, comp: float, neurons: int, nll: float = 0.1) -> dict[str, float]:
        return {"val_accuracy": acc, "compression": comp, "neurons_removed": neurons,
                "val_nll": nll}

    rows = [row(0.980, 8.0, 400), row(0.975, 12.0, 100), row(0.972, 20.0, 250),
            row(0.960, 40.0, 450)]
    assert _choose(rows, dense_accuracy=0.98) is rows[2]  # 0.972 >= 0.97, most neurons
    assert _choose(rows, dense_accuracy=0.99) is rows[1]  # none within 1 point: most accurate
    assert _choose(rows[:1], dense_accuracy=0.9) is rows[0]  # none reaches 10x: most compressed
    tied = [row(0.97, 40.0, 250, nll=0.18), row(0.97, 17.0, 235, nll=0.12)]
    assert _choose(tied, dense_accuracy=0.99) is tied[1]  # accuracy tie: the lower NLL


def test_selection_tie_survives_rounding_of_the_seed_means() -> None:
    """Equal mean accuracies whose float means differ in the last bit (a tie on the
    validation splits) are still a tie: the lower NLL decides, not the rounding."""
    import statistics

    from varbayes.methods.bnn.turbo_vbi_repro import _choose

    a = statistics.fmean([0.5875, 0.6025, 0.63])
    b = statistics.fmean([0.61, 0.5825, 0.6275])
    assert a != b and abs(a - b) < 1e-12  # the case: equal in exact arithmetic
    rows = [{"val_accuracy": a, "compression": 21.0, "neurons_removed": 358, "val_nll": 1.09},
            {"val_accuracy": b, "compression": 14.0, "neurons_removed": 286, "val_nll": 1.08}]
    assert _choose(rows, dense_accuracy=0.6233) is rows[1]  # none within 1 point: lower NLL


def test_selection_over_seeds_chooses_on_the_means() -> None:
    """Seed 0 alone would pick the point removing the most neurons; on the mean over seeds
    that point is more than 1 point below dense VI, so the rule takes the other one."""
    from varbayes.methods.bnn.turbo_vbi_repro import KNOBS, _choose, choose_over_seeds

    def score(acc: float, neurons: int, comp: float = 14.0) -> dict[str, float]:
        return {"val_accuracy": acc, "val_nll": 1.0 - acc, "compression": comp,
                "neurons_removed": neurons}

    unit = {"neuron_ratio": 4.0, "neuron_contrast": 100.0, "unit_keeps_weights": False,
            "unit_keeps_inputs": True}
    grid = [{"slab_scale": 2.0, "spike_growth": 3.0, **unit},
            {"slab_scale": 2.5, "spike_growth": 3.0, **unit}]
    dense = [score(0.61, 0), score(0.63, 0), score(0.62, 0)]  # mean 0.62
    scores = [[score(0.61, 290), score(0.58, 286), score(0.60, 288)],  # mean 0.5967
              [score(0.60, 250), score(0.62, 240), score(0.615, 245)]]  # mean 0.6117
    assert _choose([{**grid[i], **scores[i][0]} for i in range(2)],
                   dense[0]["val_accuracy"])["slab_scale"] == 2.0  # seed 0 only
    out = choose_over_seeds(grid, dense, scores)
    assert out["chosen"] == {k: grid[1][k] for k in KNOBS}
    assert out["dense_val_accuracy"] == pytest.approx(0.62)
    assert out["dense_per_seed"] == [0.61, 0.63, 0.62]
    first = out["grid"][0]
    assert first["val_accuracy"] == pytest.approx(1.79 / 3)
    assert first["neurons_removed"] == pytest.approx(288)
    assert first["val_accuracy_per_seed"] == [0.61, 0.58, 0.60]
    assert first["slab_scale"] == 2.0 and first["spike_growth"] == 3.0
    # a single seed reduces to _choose on that seed
    one = choose_over_seeds(grid, dense[:1], [s[:1] for s in scores])
    assert one["chosen"] == {k: grid[0][k] for k in KNOBS}


def test_grid_is_the_union_of_its_products() -> None:
    """A dataset's GRID entry is one product of axes or a list of them; every point sets
    every knob, and the folder names of the saved scores follow KNOBS."""
    from varbayes.methods.bnn import turbo_vbi_repro as repro

    for dataset, parts in repro.GRID.items():
        parts = parts if isinstance(parts, list) else [parts]
        points = repro._grid(dataset)
        assert len(points) == sum(math.prod(len(p[k]) for k in repro.KNOBS) for p in parts)
        assert all(set(p) == set(repro.KNOBS) for p in points)
        assert len({tuple(p.values()) for p in points}) == len(points)


def test_unit_ceiling_in_the_claims() -> None:
    """The ceiling counts the used weights of Turbo-VBI's masks, and a neurons claim whose
    2x baseline is above it says it is unreachable (and fails)."""
    from varbayes.methods.bnn.turbo_vbi_repro import _claims, unit_ceiling
    from varbayes.metrics import max_neurons_removed

    masks = [torch.zeros(6, 4, dtype=torch.bool), torch.zeros(5, 6, dtype=torch.bool),
             torch.zeros(3, 5, dtype=torch.bool)]
    masks[0][:2] = True  # units 0, 1 of the first hidden layer
    masks[1][:2, :2] = True  # units 0, 1 of the second
    masks[1][4, 5] = True  # unit 5 of the first layer has no input: this weight is not used
    masks[2][:, :2] = True
    assert unit_ceiling(masks) == max_neurons_removed([4, 6, 5, 3], 8 + 4 + 6)

    def row(neurons: float) -> dict[str, float]:
        return {"accuracy": 0.9, "compression": 12.0, "neurons_removed": neurons,
                "speed_ratio": 2.0, "block_len_ratio": 1.0, "weights_used": 100}

    m = {"Turbo-VBI": row(300), "dense VI": row(0), "magnitude pruning": row(160),
         "static random mask": row(10), "SSVI": row(140)}
    claims = {c.claim.split(" (")[0]: c for c in _claims("d", m, ceiling=310.0)}
    magnitude = [c for c in _claims("d", m, 310.0) if "magnitude" in c.claim][0]
    assert "unreachable" in magnitude.claim and not magnitude.passed  # 320 > 310
    assert "ceiling 310" in magnitude.threshold
    ssvi = claims["d: neurons removed >= 2x SSVI's"]
    assert ssvi.passed and "unreachable" not in ssvi.claim  # 280 <= 300 <= 310


@pytest.mark.filterwarnings("error::UserWarning")  # a layer pruned to nothing would warn
def test_python_api_on_a_conv_network(tmp_path: Path) -> None:
    """Conv2d layers: the prior lives on (out_channels, in_channels x kernel) grids, a channel
    switched off loses its filter and its slices in the next layer (conv taps, or flattened
    positions in the linear layer), and the model saves and reloads."""
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 2),
                        nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 2))
    tv = varbayes.turbo_vbi(net, epochs=4, first_round=1, round_every=1, finetune_epochs=1,
                            slab_scale=1.5, batch_size=32, eval_samples=2, val_samples=2)
    assert [p.post_logit.shape for p in tv.learner.priors] == [(4, 9), (6, 16), (2, 24)]
    tv.fit(x, y)
    probs = tv.predict(x[:5])
    assert probs.shape == (5, 2) and torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)
    masks = tv.masks()
    assert [m.shape for m in masks] == [m.shape for m in net.parameters() if m.ndim > 1]
    assert tv.structure()["active"] == sum(int(m.sum()) for m in masks)
    learner = tv.learner
    learner.priors[0].unit_logit.fill_(10.0)
    learner.priors[1].unit_logit.fill_(10.0)
    for prior in learner.priors:
        prior.post_logit.fill_(10.0)  # every weight active on its own
    learner.priors[0].unit_logit[1] = -10.0  # channel 1 of conv 1 off
    learner.priors[1].unit_logit[2] = -10.0  # channel 2 of conv 2 off
    m = learner.masks()
    assert not m[0][1].any() and not m[1][:, 1].any() and m[1][0, 0].all()
    assert not m[1][2].any() and not m[2][:, 8:12].any() and m[2][:, :8].all()
    assert int(sum(mm.sum() for mm in m)) == (36 - 9) + (96 - 6 * 4 - 16 + 4) + (48 - 8)
    with pytest.raises(varbayes.VarbayesError, match="MLPs only"):
        tv.compact()
    with pytest.raises(varbayes.VarbayesError, match="cannot read examples"):
        tv.fit(torch.randn(8, 1, 5, 5), torch.zeros(8, dtype=torch.long))
    tv.fit(x, y)
    _assert_reloads(tv, tmp_path, x, nn.MaxPool2d)


def test_best_epoch_criterion_is_the_error_rate_then_nll() -> None:
    """`select_by_accuracy`: error rate of the MC predictive + 1e-3 x its NLL, checked
    against a direct computation with the same weight draws."""
    from varbayes.methods.bnn import turbo_vbi as tv
    from varbayes.methods.bnn.mfvi import VariationalLearner
    from varbayes.nn.bayesianize import bayesianize
    from varbayes.nn.meanfield import sampling

    torch.manual_seed(0)
    net = bayesianize(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)),
                      init_sigma=0.1)
    learner = tv.select_by_accuracy(VariationalLearner(net, "classification", val_samples=5))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    torch.manual_seed(1)
    value = learner.validation_loss(x, y)
    torch.manual_seed(1)
    with torch.no_grad(), sampling(net, sample=True, noise="weights"):
        probs = torch.stack([torch.softmax(net(x), -1) for _ in range(5)]).mean(0)
    error = float((probs.argmax(-1) != y).float().mean())
    nll = float(-probs[torch.arange(40), y].log().mean())
    assert value == pytest.approx(error + 1e-3 * nll, rel=1e-5)
    # a more accurate epoch always wins, whatever its NLL (one example of 40 = 0.025 > 1e-3 x 5)
    assert tv.ACCURACY_FIRST * 5 < 1 / 40


def test_best_epoch_restores_the_most_accurate_fine_tuning_epoch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With best_epoch the fine-tuning ends in the state of its epoch with the lowest
    criterion (recorded at every evaluation), not the last one; the turbo phase is not cut."""
    from varbayes.methods.bnn import turbo_vbi as tv

    seen: list[tuple[float, dict[str, torch.Tensor]]] = []
    install = tv.select_by_accuracy

    def recording(learner: Any) -> Any:
        install(learner)
        criterion = learner.validation_loss

        def record(x: torch.Tensor, y: torch.Tensor) -> float:
            value = criterion(x, y)
            seen.append((value, {k: v.clone() for k, v in learner.network.state_dict().items()}))
            return value
        object.__setattr__(learner, "validation_loss", record)
        return learner

    monkeypatch.setattr(tv, "select_by_accuracy", recording)
    ds = varbayes.data.load("digits")
    cfg = tv.Config(**{**tiny(), "finetune_epochs": 4, "best_epoch": True})
    assert cfg.phase("finetune").early_stopping == 4 and cfg.phase("turbo").early_stopping == 0
    torch.manual_seed(0)
    learner, _ = tv.build(cfg, ds)
    x, y = ds.x_train[:300], ds.y_train[:300]
    out = tv.train_arrays(learner, x, y, cfg, x_val=ds.x_train[300:400],
                          y_val=ds.y_train[300:400])
    assert len(seen) == 4 and len(out["history"]) == cfg.epochs + 4
    best = min(range(4), key=lambda i: seen[i][0])  # the engine keeps the first minimum
    for key, value in learner.network.state_dict().items():
        assert torch.equal(value, seen[best][1][key]), key


def test_turbo_kl_weight_reaches_the_turbo_phase_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """`turbo_kl_weight` is the KL weight of every turbo-phase step and of none of the
    fine-tuning steps (those keep `kl_weight`); unset, both phases use `kl_weight`."""
    from varbayes.methods.bnn import turbo_vbi as tv

    seen: list[tuple[bool, float]] = []
    real = tv.elbo_loss

    def recording(nll: torch.Tensor, kl: torch.Tensor, n: int, kl_weight: float,
                  w: float) -> torch.Tensor:
        seen.append((learner.turbo, kl_weight))
        return real(nll, kl, n, kl_weight, w)

    monkeypatch.setattr(tv, "elbo_loss", recording)
    ds = varbayes.data.load("digits")
    x, y = ds.x_train[:300], ds.y_train[:300]
    for turbo_beta, expected in ((0.0025, 0.0025), (None, 0.01)):
        seen.clear()
        cfg = tv.Config(**tiny(finetune_epochs=2, kl_weight=0.01, turbo_kl_weight=turbo_beta))
        torch.manual_seed(0)
        learner, _ = tv.build(cfg, ds)
        tv.train_arrays(learner, x, y, cfg)
        turbo = [b for phase, b in seen if phase]
        finetune = [b for phase, b in seen if not phase]
        assert len(turbo) == cfg.epochs * 2 and len(finetune) == 2 * 2  # 2 batches an epoch
        assert set(turbo) == {expected} and set(finetune) == {0.01}
    # the loss itself: same draws, only the KL term's weight differs between the phases
    cfg = tv.Config(**tiny(kl_weight=0.01, turbo_kl_weight=0.0025))
    learner, _ = tv.build(cfg, ds)
    step = tv.Step(1, 1, 1, 1, 1, 300, 300)
    losses = []
    for turbo in (True, False):
        learner.turbo = turbo
        torch.manual_seed(1)
        with torch.no_grad():
            losses.append(float(learner.training_loss(x, y, step)))
        kl = float(varbayes.nn.meanfield.kl_divergence(learner.network).detach())
    assert losses[0] - losses[1] == pytest.approx((0.0025 - 0.01) * kl / 300, rel=1e-4)
    with pytest.raises(varbayes.VarbayesError, match="turbo_kl_weight"):
        tv.Config(turbo_kl_weight=0.0)
