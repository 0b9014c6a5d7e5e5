"""OOD scores and AUROC / AUPR against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import entropy
from sklearn.metrics import average_precision_score, roc_auc_score

from varbayes.metrics import ood_metrics, ood_scores


def sklearn_metrics(s_in: np.ndarray, s_out: np.ndarray) -> tuple[float, float]:
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    s = np.r_[s_in, s_out]
    return roc_auc_score(y, s), average_precision_score(y, s)


@pytest.mark.parametrize("seed", range(3))
def test_auroc_aupr_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s_in, s_out = rng.normal(size=300), rng.normal(1.0, 2.0, size=120)
    got = ood_metrics(torch.tensor(s_in), s_out)
    auroc, aupr = sklearn_metrics(s_in, s_out)
    assert got == pytest.approx({"auroc": auroc, "aupr": aupr}, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-50.0, -1.0, 0.0, 0.3, 1.0, 40.0, 1e3]), min_size=1, max_size=15),
       st.lists(st.sampled_from([-50.0, -1.0, 0.0, 0.3, 1.0, 40.0, 1e3]), min_size=1, max_size=15))
def test_ties_and_large_scores_match_sklearn(s_in: list[float], s_out: list[float]) -> None:
    got = ood_metrics(s_in, s_out)
    auroc, aupr = sklearn_metrics(np.array(s_in), np.array(s_out))
    assert got["auroc"] == pytest.approx(auroc, abs=1e-6)
    assert got["aupr"] == pytest.approx(aupr, abs=1e-6)


def test_large_scores_are_not_squashed() -> None:
    assert ood_metrics([100.0, 101.0], [200.0, 300.0]) == {"auroc": 1.0, "aupr": 1.0}


def test_scores_follow_the_convention() -> None:
    p = np.array([[0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3]])
    mp = ood_scores(p, "max_prob")
    assert mp.tolist() == pytest.approx([-0.9, -1 / 3])
    assert ood_scores(p, "entropy").numpy() == pytest.approx(entropy(p, axis=1))
    assert ood_scores(torch.tensor([[1.0, 0.0]]), "entropy").item() == 0.0


def test_mutual_info() -> None:
    rng = np.random.default_rng(0)
    samples = rng.dirichlet(np.ones(4), size=(8, 30))
    mean = samples.mean(0)
    expected = entropy(mean, axis=1) - entropy(samples, axis=2).mean(0)
    assert ood_scores(samples, "mutual_info").numpy() == pytest.approx(expected, abs=1e-12)
    assert ood_scores(samples, "max_prob").numpy() == pytest.approx(-mean.max(1))
    same = np.repeat(samples[:1], 5, axis=0)
    assert ood_scores(same, "mutual_info").abs().max().item() < 1e-12
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident samples that disagree
    assert ood_scores(disagree, "mutual_info").item() == pytest.approx(np.log(2))
