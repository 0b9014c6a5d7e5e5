"""NIW-Meta and its MAML baselines: closed forms against Monte Carlo and direct solves, the
one-time update, MAML's first/second-order gradients, save/load, bad input, quick repro."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.methods.amortized import niw_meta as nm
from varbayes.methods.amortized.maml import MAMLLearner, adapt, task_mse
from varbayes.models import load
from varbayes.nn.functional import FunctionalMLP
from varbayes.priors.tasks import SineLineTasks

CFG = nm.Config(epochs=1, steps_per_epoch=20, hidden=(8, 8))


def _nig_draws(n: int, m0: torch.Tensor, l0: float, lam: torch.Tensor, n0: float,
               g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, sigma^2) draws of the per-coordinate NIG."""
    gamma = torch.distributions.Gamma(torch.full_like(lam, n0 / 2), lam / 2)
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
    sigma2 = 1 / gamma.sample((n,))
    mu = m0 + torch.sqrt(sigma2 / l0) * torch.randn(n, *m0.shape, generator=g,
                                                     dtype=m0.dtype)
    return mu, sigma2


def test_expected_kl_matches_monte_carlo() -> None:
    g = torch.Generator().manual_seed(0)
    d = torch.float64
    m, v = torch.tensor([0.3, -1.0], dtype=d), torch.tensor([0.2, 0.05], dtype=d)
    m0, lam = torch.tensor([0.0, -0.5], dtype=d), torch.tensor([0.8, 0.3], dtype=d)
    l0, n0 = torch.tensor(2.0, dtype=d), torch.tensor(5.0, dtype=d)
    mu, s2 = _nig_draws(400_000, m0, 2.0, lam, 5.0, g)
    kl = 0.5 * (v / s2 + (m - mu) ** 2 / s2 - 1 - torch.log(v / s2))
    closed = nm.expected_kl(m, v, m0, lam, l0, n0)
    assert abs(float(kl.sum(-1).mean()) - float(closed)) < 0.01
    full = nm.expected_kl_full(m[None], torch.diag(v)[None], m0, lam, l0, n0)
    assert torch.allclose(full[0], closed)


def test_nig_kl_is_zero_for_equal_and_positive_otherwise() -> None:
    one = torch.ones(3, dtype=torch.float64)
    assert float(nm.nig_kl(0 * one, one, one, one, 0.0, 1.0, 1.0, 1.0)) == pytest.approx(0)
    assert float(nm.nig_kl(0.5 * one, 2 * one, 3 * one, 4 * one, 0.0, 1.0, 1.0, 1.0)) > 0


def test_output_layer_posterior_is_bayesian_linear_regression() -> None:
    learner = nm.NIWMetaLearner(CFG, 0)
    batch = SineLineTasks().sample(3, torch.Generator().manual_seed(1))
    m, cov = learner.head_posterior(batch)
    with torch.no_grad():
        phi = learner.features(batch.x_support).double()
        _, _, _, prec = learner.hyper()
        p, m0 = prec.double(), learner.m0.double()
        a = phi.transpose(-1, -2) @ phi / 0.09 + torch.diag(p)
        want = torch.linalg.solve(a, (phi.transpose(-1, -2) @ batch.y_support.double())[..., 0]
                                  / 0.09 + p * m0)
    assert torch.allclose(m.double(), want, atol=1e-3, rtol=1e-3)
    assert torch.allclose(cov.double(), torch.linalg.inv(a), atol=1e-4, rtol=1e-3)


def test_diag_gauss_newton_matches_per_example_jacobians() -> None:
    net = FunctionalMLP((1, 4, 1))
    theta = net.flatten(net.init(torch.Generator().manual_seed(0))).expand(2, -1).clone()
    x, y = torch.randn(2, 3, 1), torch.randn(2, 3, 1)
    gn, grad = nm.diag_gauss_newton(net, theta, x, y, 0.5)
    for t in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda th, t=t: net.forward(net.unflatten(th), x[t:t + 1])[0, :, 0], theta[t])
        assert torch.allclose(gn[t], (jac**2).sum(0) / 0.25, atol=1e-5)
        resid = net.forward(net.unflatten(theta[t]), x[t:t + 1])[0, :, 0] - y[t, :, 0]
        assert torch.allclose(grad[t], (resid[:, None] * jac).sum(0) / 0.25, atol=1e-5)


def test_all_weights_posterior_tends_to_the_sgd_fit_without_a_prior() -> None:
    cfg = replace(CFG, local="all", prior_var_init=1e8, expansion="minimum")
    learner = nm.NIWMetaLearner(cfg, 0)
    batch = SineLineTasks().sample(2, torch.Generator().manual_seed(2))
    m, v = learner.local_posterior(batch)
    params = {k: p.detach().requires_grad_(True) for k, p in
              learner.net.unflatten(learner.m0.detach()).items()}
    sgd = adapt(learner.net, params, batch.x_support, batch.y_support, cfg.inner_steps,
                cfg.inner_lr, create_graph=False)
    flat = learner.net.flatten({k: t.detach() for k, t in sgd.items()})
    big = (1 / v) > 1e-2  # coordinates the support constrains at all
    assert torch.allclose(m[big], flat[big], atol=1e-3)
    m.sum().backward()  # the one-time update: gradients reach m0 without an inner graph
    assert learner.m0.grad is not None and bool((learner.m0.grad != 0).any())


def test_maml_second_order_gradient_differs_from_first_order() -> None:
    net = FunctionalMLP((1, 8, 1))
    tasks = SineLineTasks()
    grads = {}
    for variant in ("second-order", "first-order"):
        learner = MAMLLearner(net, tasks, variant, 2, 0.05, 4, seed=0)
        from varbayes.train import Step

        learner.training_loss(torch.zeros(1), torch.zeros(1), Step(1, 1, 1, 1, 1, 1, 1)
                              ).backward()
        grads[variant] = torch.cat([p.grad.flatten() for p in learner.params.values()])
    assert not torch.allclose(grads["second-order"], grads["first-order"])
    cos = torch.nn.functional.cosine_similarity(grads["second-order"], grads["first-order"], 0)
    assert cos > 0.5  # close but not equal


def test_training_improves_over_the_initialisation() -> None:
    test = nm.fixed_tasks(CFG, 100, 1)
    before = nm.evaluate_niw(nm.NIWMetaLearner(CFG, 0), test)
    learner, _ = nm.train_niw(replace(CFG, steps_per_epoch=150))
    after = nm.evaluate_niw(learner, test)
    assert after["mse"] < before["mse"] and after["nll"] < before["nll"]


def test_model_save_load_and_bad_input(tmp_path: Path) -> None:
    learner, _ = nm.train_niw(replace(CFG, steps_per_epoch=3))
    model = nm.NIWMetaModel(learner)
    model.save(tmp_path)
    loaded = load(tmp_path)
    xs, ys, xq = torch.rand(2, 5, 1), torch.rand(2, 5, 1), torch.rand(2, 7, 1)
    a, b = model.predict(xs, ys, xq), loaded.predict(xs, ys, xq)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    assert a[0].shape == (2, 7) and bool((a[1] > 0).all())
    with pytest.raises(VarbayesError, match="NaN"):
        model.predict(xs, ys * math.nan, xq)
    with pytest.raises(VarbayesError, match="same"):
        model.predict(xs, ys[:, :3], xq)
    with pytest.raises(VarbayesError, match="tasks"):
        model.predict(xs, ys, xq[:1])
    with pytest.raises(VarbayesError, match=r"x_support must be numbers .*got str"):
        model.predict("a", ys, xq)
    with pytest.raises(VarbayesError, match=r"read as \(tasks, points\)"):
        model.predict(torch.rand(5, 1), torch.rand(5, 1), torch.rand(7, 1))


def test_maml_uses_validation_noise() -> None:
    learner = MAMLLearner(FunctionalMLP((1, 8, 1)), SineLineTasks(), "first-order", 1, 0.01,
                          4, seed=0)
    res = nm.evaluate_maml(learner, nm.fixed_tasks(CFG, 20, 1), nm.fixed_tasks(CFG, 20, 2), 0.3)
    assert res["noise_std_fitted"] > 0.3 and res["nll"] < res["nll_true_noise"]
    mse = float(task_mse(learner.net, {k: v.detach() for k, v in learner.params.items()},
                         *(lambda b: (b.x_query, b.y_query))(nm.fixed_tasks(CFG, 20, 1))).mean())
    assert mse > 0


@pytest.mark.slow
@pytest.mark.reproduce
def test_quick_reproduction(tmp_path: Path) -> None:
    from varbayes.runner import reproduce

    record = reproduce("niw-meta", quick=True, out=tmp_path, quiet=True)
    assert record["passed"], record["claims"]
    assert (tmp_path / "episodes.png").is_file()


def test_cli_run(tmp_path: Path) -> None:
    import json

    from varbayes.cli import main

    args = ["run", "niw-meta", "--out", str(tmp_path), "--quiet", "--set", "epochs=1",
            "--set", "steps_per_epoch=5", "--set", "test_tasks=20", "--set", "hidden=8,8"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "result.json").read_text())["metrics"]
    assert metrics["mse"] > 0 and metrics["nll"] > 0
    assert isinstance(load(tmp_path), nm.NIWMetaModel)
    assert main(["run", "niw-meta", "--set", "local=everything"]) == 2
