"""Wall-clock of SSVI against dense mean-field VI on a wide MLP (40-2048-2048-10, mnist1d).

Contenders, all trained by the engine (`varbayes.fit`, Adam, batch 128, LRT) for one epoch of
the 4000 mnist1d training sequences (32 iterations):

- dense VI: `mfvi`'s learner on the bayesianized network (every weight active);
- SSVI d = 0.1 and d = 0.05: `ssvi`'s learner with compact storage and `sparse_compute=auto`
  (the 2048 x 2048 layer multiplies with CSR matrices, the small first and last layers with
  masked dense kernels), one subspace update per epoch (`update_every=16`, `t_end_frac=1`),
  about the rate of the spec's 150-epoch schedule (143 updates);
- SSVI d = 0.1 compact + dense kernels: compact storage with `sparse_compute=dense` (the
  active values are scattered into a zero-filled weight for dense matrix products);
- masked dense d = 0.1: what the paper's code does - dense mu and rho tensors, a boolean mask,
  dense kernels, dense optimiser state (the shared mean-field layers with `set_mask`, a static
  random mask, so it is not charged for subspace updates).

Prediction: one `model.predict` call (30 full weight draws) on a batch of 128 test sequences.
Rounds interleave the contenders (benchmarks/_timing.py); the table gives medians and the
ratios to dense VI measured in the same run, plus the analytic training-FLOPs and model-file
ratios. Run with OMP_NUM_THREADS=1 for single-core numbers.

`--crossover` instead times one sparse Linear layer (LRT forward, KL and backward, batch 128)
with the CSR kernels against the dense kernels on the same compact storage, for square layers
of 256 to 2048 units and densities 0.02 to 0.2: the measurement behind `sparse_compute=auto`
(`CSR_MIN_WEIGHTS`, `CSR_MAX_DENSITY` in varbayes.nn.sparse).

    python benchmarks/ssvi_speed.py [--repeats 3] [--json out.json] [--crossover]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
from _timing import machine, markdown, median_times

from varbayes.data import load
from varbayes.methods.bnn import mfvi, ssvi
from varbayes.metrics.cost import layer_macs
from varbayes.models import SupervisedModel
from varbayes.nn.bayesianize import bayesianize
from varbayes.nn.meanfield import bayesian_layers
from varbayes.nn.networks import MLP
from varbayes.nn.predictive import mc_sampler
from varbayes.nn.subspace import sparse_layers
from varbayes.train import fit
from varbayes.train.denormals import flush_denormals

WIDTH = 2048
PREDICT_BATCH = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the measurements here")
    parser.add_argument("--crossover", action="store_true",
                        help="time one layer, CSR vs dense kernels, over sizes and densities")
    args = parser.parse_args()
    if args.crossover:
        return crossover(args.repeats)
    ds = load("mnist1d")
    x, y = ds.x_train, ds.y_train
    x_pred = ds.x_test[:PREDICT_BATCH]
    cfg = ssvi.Config(epochs=1, val_fraction=0.0, update_every=16, t_end_frac=1.0,
                      checkpoint_every=10**9, kl_weight=1.0)
    contenders = {
        "dense VI": _dense(cfg),
        "SSVI d=0.1": _sparse(cfg, 0.1, "auto"),
        "SSVI d=0.05": _sparse(cfg, 0.05, "auto"),
        "SSVI d=0.1 compact + dense kernels": _sparse(cfg, 0.1, "dense"),
        "masked dense d=0.1 (paper's code)": _masked(cfg, 0.1),
    }
    with flush_denormals():
        train = median_times(
            {name: (lambda lr=lr: fit(lr, x, y, cfg, quiet=True)) for name, lr in
             contenders.items()}, repeats=args.repeats, warmup=0)
        models = {name: SupervisedModel(lr.network, {"task": "classification"}, 30,
                                        sampler=mc_sampler("weights"))
                  for name, lr in contenders.items()}
        predict = median_times({name: (lambda m=m: m.predict(x_pred))
                                for name, m in models.items()}, repeats=args.repeats,
                               warmup=1)
    rows, record = [], []
    dense_flops = _flops(layer_macs(contenders["dense VI"].network, x[:1]), cfg, None)
    dense_bytes = _bytes(contenders["dense VI"].network)
    for name, learner in contenders.items():
        layers = layer_macs(learner.network, x[:1])
        schedule = cfg.schedule() if name.startswith("SSVI") else None
        flops = _flops(layers, cfg, schedule)
        row = {"contender": name,
               "train_s_per_epoch": train[name], "train_ratio": train[name] / train["dense VI"],
               "predict_s_per_batch": predict[name],
               "predict_ratio": predict[name] / predict["dense VI"],
               "flops_ratio": flops / dense_flops,
               "bytes_ratio": _bytes(learner.network) / dense_bytes,
               "compute": {str(tuple(m.weight_shape)): "csr" if m.uses_csr() else "dense"
                           for m in sparse_layers(learner.network)}}
        record.append(row)
        rows.append([name, row["train_s_per_epoch"], row["train_ratio"],
                     row["predict_s_per_batch"], row["predict_ratio"], row["flops_ratio"],
                     row["bytes_ratio"]])
    print(markdown(["contender", "train s / epoch", "ratio", f"predict s / {PREDICT_BATCH} "
                    "x 30 draws", "ratio", "analytic train FLOPs ratio", "model bytes ratio"],
                   rows))
    print(f"\nMLP 40-{WIDTH}-{WIDTH}-10 on mnist1d (4000 x 40), batch 128, 32 iterations "
          f"per epoch; {machine()}; median of {args.repeats} interleaved rounds")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


def crossover(repeats: int) -> None:
    """CSR / dense-kernel time of one layer step, per size and density."""
    from varbayes.nn.meanfield import MeanFieldLinear
    from varbayes.nn.sparse import to_sparse

    densities = (0.02, 0.05, 0.1, 0.2)
    rows = []
    for width in (256, 512, 1024, 2048):
        x = torch.randn(128, width)
        row: list[object] = [f"{width} x {width}"]
        for d in densities:
            n = width * width
            idx = torch.randperm(n)[:max(1, int(d * n))].sort().values
            layers = {c: to_sparse(MeanFieldLinear(width, width), idx, c)
                      for c in ("dense", "csr")}

            t = median_times({c: (lambda m=m, x=x: _layer_step(m, x))
                              for c, m in layers.items()},
                             repeats=max(repeats, 5), warmup=1)
            row.append(t["csr"] / t["dense"])
        rows.append(row)
    print(markdown(["layer", *[f"CSR / dense kernels at d={d:g}" for d in densities]], rows))
    print(f"\none LRT step (forward, KL, backward), batch 128; {machine()}")


def _layer_step(layer: Any, x: torch.Tensor) -> None:
    layer.zero_grad()
    (layer(x).sum() + layer.kl()).backward()


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return MLP(40, [WIDTH, WIDTH], 10)


def _dense(cfg: Any) -> mfvi.VariationalLearner:
    net = bayesianize(_network(), **cfg.bayes_settings().to_dict())
    return mfvi.VariationalLearner(net, "classification", cfg.kl_weight, cfg.kl_warmup,
                                   cfg.rho_lr_scale, cfg.val_samples)


def _sparse(cfg: Any, density: float, compute: str) -> ssvi.SSVILearner:
    c = ssvi.Config(**{**cfg.to_dict(), "density": density, "sparse_compute": compute})
    return ssvi.make_learner(ssvi.build(_network(), c, seed=0), "classification", c, 0)


def _masked(cfg: Any, density: float) -> mfvi.VariationalLearner:
    net = bayesianize(_network(), **cfg.bayes_settings().to_dict())
    gen = torch.Generator().manual_seed(0)
    for layer in bayesian_layers(net):
        n = layer.weight_mu.numel()
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.randperm(n, generator=gen)[:n - math.floor((1 - density) * n)]] = True
        layer.set_mask(mask.view_as(layer.weight_mu))
    return mfvi.VariationalLearner(net, "classification", cfg.kl_weight, cfg.kl_warmup,
                                   cfg.rho_lr_scale, cfg.val_samples)


def _flops(layers: Any, cfg: Any, schedule: Any) -> int:
    n = 4000
    steps = -(-n // cfg.batch_size)
    return ssvi.ssvi_train_flops(layers, n, cfg.batch_size, steps, steps, schedule)


def _bytes(network: torch.nn.Module) -> int:
    from safetensors.torch import save

    return len(save({k: v.detach().contiguous() for k, v in network.state_dict().items()}))


if __name__ == "__main__":
    sys.exit(main())
