"""turbo-vbi: prediction time of a pruned network run three ways, at several batch sizes:
the posterior-mean network at its original dense shapes (masked zeros), its compacted dense
version without the removed neurons (what Turbo-VBI's structure buys on dense hardware), and the
same pruned weights as torch sparse CSR matrices (the usual way to run unstructured sparsity).

No library implements Turbo-VBI, so the peer is the execution format, not another package.
Give the folder of a trained model (`varbayes run turbo-vbi --dataset digits --out DIR`).
"""

from __future__ import annotations

import argparse

import torch
from _timing import machine, markdown, median_times

import varbayes
from varbayes.methods.bnn.turbo_vbi import linear_weights
from varbayes.nn.compact import compact_mlp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="folder written by varbayes run turbo-vbi")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 4096])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    torch.set_num_threads(1)
    model = varbayes.load(args.model_dir)
    weights, biases = linear_weights(model.network)
    full = compact_mlp(weights, biases, remove=False)
    compact = compact_mlp(weights, biases)
    sparse = [w.to_sparse_csr() for w in weights]

    def csr(x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for i, (w, b) in enumerate(zip(sparse, biases)):
            h = (w @ h.T).T + (0 if b is None else b)
            if i < len(sparse) - 1:
                h = torch.relu(h)
        return h

    rows = []
    widths = "-".join(str(m.out_features) for m in compact if isinstance(m, torch.nn.Linear))
    for batch in args.batches:
        x = torch.randn(batch, weights[0].shape[1])
        with torch.no_grad():
            assert torch.allclose(csr(x), full(x), atol=1e-4)
            times = median_times({"dense, original shapes": lambda x=x: full(x),
                                  f"dense, compacted ({widths})": lambda x=x: compact(x),
                                  "CSR sparse, original shapes": lambda x=x: csr(x)},
                                 repeats=args.repeats)
        base = times["dense, original shapes"]
        rows += [[batch, name, t * 1e6, base / t] for name, t in times.items()]
    density = sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    print(f"machine: {machine()}; density {density:.4f}")
    print(markdown(["batch", "network", "microseconds", "speed-up vs original"], rows))


if __name__ == "__main__":
    main()
