"""SSVI from Python, on any model: sparse subspace variational inference in three calls.

    import varbayes
    from varbayes import ssvi

    net = ssvi.sparsify(MyNet(), density=0.05, seed=0)   # bayesianize + random subspace
    learner = ssvi.Learner(net, "classification", ssvi.Schedule(), kl_weight=1.0)
    with ssvi.flush_denormals():
        varbayes.fit(learner, x_train, y_train, varbayes.train.TrainConfig(epochs=150))
    probs = ssvi.predict(net, x_test)                     # MC predictive, 30 weight draws

`sparsify` converts every nn.Linear / nn.Conv1d / nn.Conv2d (wherever it sits in the module
tree) into a mean-field Gaussian layer and keeps a uniformly random `density` of its weights,
stored and computed compactly; `Learner` is the ELBO learner with the alternating
drop/grow schedule; the engine (`varbayes.fit`) supplies the optimiser, checkpoints and DDP.
`varbayes run ssvi` / `varbayes reproduce ssvi` are the same code on the default networks.
"""

from __future__ import annotations

import torch
from torch import nn

from varbayes.errors import inputs_for
from varbayes.methods.bnn.ssvi import Config, SSVILearner, make_learner, ssvi_train_flops
from varbayes.nn.predictive import mc_sampler
from varbayes.nn.sparse import is_sparse, pack_positions, to_sparse, unpack_positions
from varbayes.nn.subspace import (
    CRITERIA,
    SubspaceSchedule,
    density_report,
    removal_scores,
    snr_abs_value,
    sparse_layers,
    sparsify,
    subspace_update,
)
from varbayes.train.denormals import flush_denormals

Learner = SSVILearner
Schedule = SubspaceSchedule


def predict(network: nn.Module, x: torch.Tensor, n_samples: int = 30) -> torch.Tensor:
    """Class probabilities averaged over `n_samples` full weight draws (the MC predictive)."""
    from varbayes.data import check_arrays

    x, _ = check_arrays(x)  # NaN, empty or scalar inputs: one line, not NaN probabilities
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), inputs_for("the network", tuple(x.shape), network):
            return torch.softmax(mc_sampler("weights")(network, x, n_samples), -1).mean(0)
    finally:
        network.train(was_training)


__all__ = ["CRITERIA", "Config", "Learner", "SSVILearner", "Schedule", "SubspaceSchedule",
           "density_report", "flush_denormals", "is_sparse", "make_learner", "pack_positions",
           "predict", "removal_scores", "snr_abs_value", "sparse_layers", "sparsify",
           "ssvi_train_flops", "subspace_update", "to_sparse", "unpack_positions"]
