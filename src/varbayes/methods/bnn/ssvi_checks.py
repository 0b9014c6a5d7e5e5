"""The exact structural checks S1-S9 of spec 5.4, run on small seeded SSVI trainings.

`structural_suite()` trains a 12-32-32-4 MLP on a synthetic 4-class problem for 32 iterations
with a subspace update every 3 (7 updates) through the real engine, watching every update
from outside the scheduler: it recomputes what each update had to do and compares. It runs in
a few seconds and is part of `varbayes reproduce ssvi --quick`; the unit tests check the same
properties piece by piece.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from varbayes.methods.bnn import ssvi
from varbayes.methods.bnn.ssvi import SSVILearner, ssvi_train_flops
from varbayes.metrics.cost import layer_macs
from varbayes.nn.meanfield import MeanFieldLinear
from varbayes.nn.networks import MLP
from varbayes.nn.sparse import to_sparse
from varbayes.nn.subspace import SubspaceSchedule, sparse_layers
from varbayes.train import Step, fit


def structural_suite() -> dict[str, tuple[bool, str]]:
    """{check: (passed, what it checks)} for S1-S9."""
    x, y = _toy_data()
    cfg = ssvi.Config(epochs=4, batch_size=32, update_every=3, density=0.25, kl_weight=0.1,
                      val_fraction=0.0, checkpoint_every=10**9, eval_samples=2)
    probe = _train(cfg, x, y, _Probe)
    total = 4 * 8
    static = _train(ssvi.Config(**{**cfg.to_dict(), "mask_updates": False}), x, y,
                    ssvi.SSVILearner)
    snr = _train(ssvi.Config(**{**cfg.to_dict(), "drop_criterion": "snr"}), x, y,
                 ssvi.SSVILearner)
    schedule = cfg.schedule()
    log = probe.watch
    return {
        "S1": (bool(log) and all(e["active_before"] == e["active_after"] == probe.k0
                                 for e in log),
               "per-layer active counts constant across all updates"),
        "S2": (_inactive_zero_and_kl(probe), "inactive mu = 0 and only active coordinates "
                                             "in the KL (vs the masked dense layer)"),
        "S3": (int(probe.subspace_updates) == schedule.n_updates(total) == 7
               and all(e["step"] % 3 == 0 and e["step"] < schedule.t_end(total) for e in log),
               "updates = #{t : t mod delta = 0, t < T_end}; none after T_end"),
        "S4": (all(e["new_mu_zero"] and e["new_rho_layer_mean"] for e in log),
               "grown coordinates start at mu = 0 and rho = mean kept rho of their layer"),
        "S5": (all(e["new_state_zero"] for e in log) and probe.no_step_on_updates
               and probe.updates_seen == 7,
               "optimiser state zero at new coordinates; no optimiser change on update "
               "iterations"),
        "S6": (all(e["n_drop"] == e["expected_n_drop"] for e in log),
               "n_drop = floor(k (alpha/2)(1 + cos(pi t / T_end)))"),
        "S7": (int(static.subspace_updates) == 0 and all(
            torch.equal(m.weight_index, i0) for m, i0 in zip(sparse_layers(static.network),
                                                              static.index0)),
               "a static run never changes the mask"),
        "S8": (all(torch.equal(a, b) for a, b in zip(
            [t for t in probe.network.state_dict().values()],
            [t for t in snr.network.state_dict().values()])),
               "snr and snr_abs runs end with identical masks and parameters"),
        "S9": _flops_hand_count(),
    }


def _toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 12, generator=g)
    teacher = torch.randn(12, 4, generator=g)
    return x, (x @ teacher).argmax(1)


def _train(cfg: Any, x: torch.Tensor, y: torch.Tensor, cls: type) -> Any:
    torch.manual_seed(0)
    net = ssvi.build(MLP(12, [32, 32], 4), cfg, seed=0)
    learner = cls(net, "classification", cfg.schedule(), seed=0, kl_weight=cfg.kl_weight,
                  warmup=cfg.kl_warmup, rho_lr_scale=cfg.rho_lr_scale,
                  val_samples=cfg.val_samples)
    learner.index0 = [m.weight_index.clone() for m in sparse_layers(net)]
    learner.k0 = [m.n_active for m in sparse_layers(net)]
    fit(learner, x, y, cfg, seed=0, quiet=True)
    return learner


class _Probe(SSVILearner):
    """An SSVI learner that checks every update from outside the scheduler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch: list[dict[str, Any]] = []
        self.no_step_on_updates = True
        self.updates_seen = 0
        self._after_update: list[torch.Tensor] | None = None

    def training_loss(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> torch.Tensor:
        if self._after_update is not None:  # the iteration after an update: nothing moved
            now = self._state()
            self.no_step_on_updates &= all(torch.equal(a, b)
                                           for a, b in zip(now, self._after_update))
            self._after_update = None
        return super().training_loss(x, y, step)

    def after_backward(self, step: Step) -> bool:
        if not self.schedule.is_update(step.step, step.total_steps):
            return True
        layers = sparse_layers(self.network)
        before = [(m.weight_index.clone(), m.weight_mu.detach().clone(),
                   m.weight_rho.detach().clone()) for m in layers]
        frac = (self.schedule.drop_alpha / 2) * (1 + math.cos(
            math.pi * step.step / math.floor(0.75 * step.total_steps)))
        took_step = super().after_backward(step)
        self.no_step_on_updates &= not took_step
        self.updates_seen += 1
        entry: dict[str, Any] = {"step": step.step, "active_before": [len(b[0]) for b in before],
                                 "active_after": [m.n_active for m in layers],
                                 "n_drop": self.update_log[-1]["n_drop"],
                                 "expected_n_drop": [math.floor(len(b[0]) * frac)
                                                     for b in before],
                                 "new_mu_zero": True, "new_rho_layer_mean": True,
                                 "new_state_zero": True}
        for m, (index, mu, rho), n_drop in zip(layers, before, entry["expected_n_drop"]):
            new = ~torch.isin(m.weight_index, index)
            keep = torch.sort(mu.abs() / m.sigma_of(rho), stable=True).indices[n_drop:]
            entry["new_mu_zero"] &= bool((m.weight_mu[new] == 0).all())
            entry["new_rho_layer_mean"] &= bool(torch.allclose(
                m.weight_rho[new], rho[keep].mean().expand(int(new.sum())), atol=1e-6))
            for p in (m.weight_mu, m.weight_rho):
                for v in self._optimizer.state.get(p, {}).values():
                    if isinstance(v, torch.Tensor) and v.shape == p.shape:
                        entry["new_state_zero"] &= bool((v[new] == 0).all())
        self.watch.append(entry)
        self._after_update = self._state()
        return took_step

    def _state(self) -> list[torch.Tensor]:
        state = [p.detach().clone() for p in self.parameters()]
        for p in self.parameters():
            for v in self._optimizer.state.get(p, {}).values():
                state.append(v.detach().clone() if isinstance(v, torch.Tensor)
                             else torch.tensor(float(v)))
        return state


def _inactive_zero_and_kl(learner: Any) -> bool:
    ok = True
    for m in sparse_layers(learner.network):
        mask = m.weight_mask()
        dense_mu = m.dense_values(m.weight_mu.detach())
        ok &= bool((dense_mu[~mask] == 0).all())
        ref = MeanFieldLinear(m.weight_shape[1], m.weight_shape[0], prior=m.prior,
                              sigma_param=m.sigma_param)
        with torch.no_grad():
            ref.weight_mu.copy_(dense_mu)
            ref.weight_rho.fill_(5.0)  # inactive rho: must not enter the KL
            ref.weight_rho.view(-1)[m.weight_index] = m.weight_rho.detach()
        ref.set_mask(mask)
        ok &= bool(torch.allclose(ref.kl(), m.kl().detach(), rtol=1e-5))
    return ok


def _flops_hand_count() -> tuple[bool, str]:
    """S9: a 3-5-2 network, layer 1 with 6 of 15 weights active, layer 2 dense (10); 10
    examples, batch 4 (batches 4, 4, 2), 2 epochs, an update every 3 iterations up to
    T_end = 6: one update, at t = 3 (batch 2)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(MeanFieldLinear(3, 5), torch.nn.ReLU(), MeanFieldLinear(5, 2))
    to_sparse(net[0], torch.tensor([0, 2, 4, 7, 9, 14]))
    layers = layer_macs(net, torch.randn(1, 3))
    schedule = SubspaceSchedule(update_every=3, t_end_frac=1.0)
    counted = ssvi_train_flops(layers, 10, 4, 6, 6, schedule, lrt_factor=2)
    # every step 2 FLOPs/MAC * 3 passes * 2 products * B * (6 + 10) MACs per example;
    # B = 4 on 4 steps and 2 on 2; the update adds 2 * B * (15 - 6) at B = 2
    hand = 2 * 3 * 2 * (6 + 10) * (4 * 4 + 2 * 2) + 2 * 2 * (15 - 6)
    return counted == hand == 3876, "the FLOPs counter equals a hand count on a 2-layer toy"
