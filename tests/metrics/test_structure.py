"""structure_report on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from varbayes.errors import VarbayesError
from varbayes.metrics import max_neurons_removed, structure_report
from varbayes.metrics.structure import _grid


def test_mlp_chain_by_hand() -> None:
    w0 = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.5, -2.0]])  # unit 1: no incoming weights
    w1 = np.array([[True, False, False], [True, True, False]])  # unit 2: no outgoing weights
    r = structure_report({"fc1": w0, "fc2": w1})
    assert (r["active"], r["total"], r["density"]) == (6, 12, 0.5)
    assert r["hidden"] == [{"after": "fc1", "units": 3, "removed": 2, "removed_fraction": 2 / 3,
                            "no_incoming": 1, "no_outgoing": 1}]
    assert (r["neurons_removed"], r["neurons_total"]) == (2, 3)
    assert r["compact_widths"] == [2, 1, 2]
    # used: weights between kept units: fc1 row 0 (1), fc2 column 0 (2)
    assert (r["used"], r["layers"][0]["used"], r["layers"][1]["used"]) == (3, 1, 2)
    assert (r["dense_macs"], r["nnz_macs"], r["compact_macs"]) == (12, 6, 2 + 2)
    fc1 = r["layers"][0]
    assert (fc1["name"], fc1["shape"], fc1["density"]) == ("fc1", [3, 2], 0.5)
    # rows 10 / 00 / 11 -> 2 runs; columns 101 / 001 -> 3 runs
    assert fc1["n_blocks"] == 5 and fc1["mean_block_len"] == pytest.approx(6 / 5)
    expected_runs = (0.75 + 0 + 1) + (2 / 3 + 2 * 2 / 9) + (1 / 3 + 2 * 2 / 9)
    assert fc1["random_mean_block_len"] == pytest.approx(6 / expected_runs)
    assert fc1["block_len_ratio"] == pytest.approx((6 / 5) / (6 / expected_runs))
    assert fc1["csr_index_bytes"] == 4 * (3 + 3 + 1)
    assert fc1["block_index_bytes"] == 4 * (2 * 2 + 3 + 1)
    fc2 = r["layers"][1]  # rows 100 / 110 -> 2 runs; columns 11 / 01 / 00 -> 2 runs
    assert fc2["n_blocks"] == 4
    assert r["n_blocks"] == 9 and r["mean_block_len"] == pytest.approx(2 * 6 / 9)
    expected_all = expected_runs + 2 * 3 / fc2["random_mean_block_len"]
    assert r["block_len_ratio"] == pytest.approx(expected_all / 9)
    assert r["csr_index_bytes"] == fc1["csr_index_bytes"] + fc2["csr_index_bytes"]
    assert r["block_index_bytes"] == fc1["block_index_bytes"] + fc2["block_index_bytes"]


def test_conv_then_flattened_linear() -> None:
    conv = torch.ones(3, 1, 3)
    conv[1] = 0  # channel 1: all-zero filter
    lin = torch.ones(4, 15)  # 3 channels x 5 positions, channel-major
    lin[:, 0:5] = 0  # channel 0: read by nobody
    r = structure_report([conv, lin], positions=[5, 1])
    assert r["hidden"][0]["removed"] == 2 and r["compact_widths"] == [1, 1, 4]
    assert r["layers"][0]["compact_macs"] == 1 * 1 * 3 * 5
    assert r["layers"][1]["compact_macs"] == 4 * 5
    assert r["nnz_macs"] == 6 * 5 + 40


def test_conv2d_grid_layout() -> None:
    mask = torch.zeros(2, 3, 2, 2, dtype=torch.bool)  # (c_out, c_in, kh, kw)
    mask[1, 2, 1, 0] = True
    grid = _grid(mask)
    assert grid.shape == (2 * 3, 2 * 2)
    assert grid.nonzero().tolist() == [[1 * 3 + 2, 0 * 2 + 1]]


def test_nothing_active() -> None:
    r = structure_report([torch.zeros(2, 2), torch.zeros(1, 2)])
    assert r["density"] == 0.0 and r["compact_widths"] == [2, 0, 1]
    assert r["layers"][0]["block_len_ratio"] is None and r["layers"][0]["n_blocks"] == 0
    assert r["block_len_ratio"] is None and r["mean_block_len"] == 0.0


def _brute_force_ceiling(widths: list[int]) -> dict[int, int]:
    """Every mask of a tiny MLP: for each number of used weights (those not touching a
    removed unit), the most hidden units removed by a mask using exactly that many."""
    shapes = [(b, a) for a, b in zip(widths, widths[1:])]
    n = sum(a * b for a, b in shapes)
    bits = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    layers, start = [], 0
    for out, inp in shapes:
        layers.append(bits[:, start:start + out * inp].reshape(-1, out, inp))
        start += out * inp
    removed_units = [~mask.any(2) | ~nxt.any(1) for mask, nxt in zip(layers, layers[1:])]
    used = np.zeros(len(bits), dtype=int)
    for l, mask in enumerate(layers):
        live = mask.copy()
        if l < len(layers) - 1:  # into a kept unit
            live &= ~removed_units[l][:, :, None]
        if l > 0:  # out of a kept unit
            live &= ~removed_units[l - 1][:, None, :]
        used += live.sum((1, 2))
    removed = sum(r.sum(1) for r in removed_units)
    exact: dict[int, int] = {}
    for k, r in zip(used, removed):
        exact[int(k)] = max(exact.get(int(k), -1), int(r))
    # the removal rule and used count above are structure_report's: check a few masks
    for i in np.random.default_rng(0).integers(0, len(bits), 20):
        report = structure_report([m[i] for m in layers])
        assert (report["neurons_removed"], report["used"]) == (removed[i], used[i])
    return exact


@pytest.mark.parametrize("widths", [[3, 3, 2, 2], [2, 2, 2, 2, 1], [2, 2, 1, 2, 1], [3, 2, 3]])
def test_max_neurons_removed_matches_brute_force(widths: list[int]) -> None:
    exact = _brute_force_ceiling(widths)
    total = sum(a * b for a, b in zip(widths, widths[1:]))
    for kept in range(total + 1):
        at_least = max(r for k, r in exact.items() if k >= kept)
        assert max_neurons_removed(widths, kept) == at_least, kept
        if kept in exact:  # on these shapes a mask using exactly `kept` weights reaches it
            assert exact[kept] == at_least, kept


def test_max_neurons_removed_on_the_reproductions_mlps() -> None:
    # digits 64-256-256-10 at 4800 weights: 74 hidden units (e.g. 70 and 4) hold them
    assert max_neurons_removed([64, 256, 256, 10], 4800) == 438
    assert max_neurons_removed([64, 256, 256, 10], 64 * 256 + 256 * 256 + 2560) == 0
    assert max_neurons_removed([64, 256, 256, 10], 0) == 512
    values = [max_neurons_removed([40, 256, 256, 10], k) for k in range(3000, 9000, 500)]
    assert values == sorted(values, reverse=True)  # more weights, fewer units removable
    assert max_neurons_removed([5, 7, 3], 16) == 7 - 2  # one hidden layer: 8 per unit
    for bad in ([64, 10], [64, -1, 10]):
        with pytest.raises(VarbayesError):
            max_neurons_removed(bad, 10)
    with pytest.raises(VarbayesError, match="more than"):
        max_neurons_removed([2, 2, 2], 9)
