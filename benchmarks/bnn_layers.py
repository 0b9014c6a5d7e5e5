"""Forward + KL + backward time of varbayes' mean-field Linear and Conv2d against the peers.

Peers (the `bench` extra): bayesian-torch's `LinearReparameterization` / `Conv2dReparameterization`
and torch-uncertainty's `BayesLinear` / `BayesConv2d`. All of them draw one weight sample per
batch, so the like-for-like row of ours is `noise="weights"`; ours with the local
reparameterisation trick (`noise="lrt"`, two matrix products per layer, the training default)
is shown as well. Every layer has a Bayesian bias and a Gaussian prior; one timed call is a
training step: forward, the layer's KL term (closed form for ours and bayesian-torch,
torch-uncertainty's one-sample log q - log p), backward of out.sum() + KL and an SGD update of
the parameters (learning rate 0, so every call sees the same values; the update still changes
the parameters in place, so nothing computed from them in one call is reused in the next,
which is what a real training step does). Implementations alternate inside
each round so they share the machine's conditions; the table reports medians and the ratios
ours / peer (goal <= 1.0).

torch-uncertainty's package `__init__` imports torchvision (which needs a torchvision build
matching the installed torch); its layer files need only torch, so they are loaded directly.
With a CPU-only torch build (`torch==X+cpu`), install the peers without their dependencies,
`pip install --no-deps bayesian-torch torch-uncertainty`: their PyPI torchvision dependency is
built for the default torch and does not load against the CPU build.

Times are this process's CPU time by default (`--clock cpu`; every layer runs in the calling
thread with OMP_NUM_THREADS=1): on a shared machine, wall time mostly measures how often the
process was preempted. `--clock wall` gives wall-clock time.

    OMP_NUM_THREADS=1 python benchmarks/bnn_layers.py [--repeats 20] [--clock cpu|wall]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from _timing import machine, markdown, median_times

from varbayes.nn import MeanFieldConv2d, MeanFieldLinear

LINEAR_SIZES = [(128, 256, 256), (128, 1024, 1024), (256, 2048, 2048)]  # batch, in, out
CONV_SIZES = [(32, 16, 32, 32), (32, 64, 64, 16), (16, 128, 128, 16)]  # batch, c_in, c_out, hw
SIGMA0 = 0.01
RHO0 = -4.6  # softplus^-1(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="process CPU time or wall-clock time")
    parser.add_argument("--json", default=None, help="also write the measurements here")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    peers = load_peers()
    rows = []
    for kind, sizes in (("Linear", LINEAR_SIZES), ("Conv2d", CONV_SIZES)):
        for size in sizes:
            impls = make_layers(kind, size, peers)
            x = make_input(kind, size)
            seconds = median_times({name: _call(step, x) for name, step in impls.items()},
                                   repeats=args.repeats, clock=clock)
            rows.append({"layer": kind, "size": size,
                         "ms": {k: v * 1e3 for k, v in seconds.items()}})
    print(table(rows, peers))
    print(f"\n{machine()}; {args.clock} time, median of {args.repeats} interleaved calls "
          "after warm-up")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def load_peers() -> dict[str, types.ModuleType | None]:
    """The peer layer modules that import, or None with the reason printed."""
    peers: dict[str, types.ModuleType | None] = {}
    try:
        import bayesian_torch.layers as bt

        peers["bayesian-torch"] = bt
    except Exception as e:  # noqa: BLE001 - a missing peer is reported, not fatal
        print(f"bayesian-torch unavailable: {e}", file=sys.stderr)
        peers["bayesian-torch"] = None
    peers["torch-uncertainty"] = _load_torch_uncertainty_layers()
    return peers


def _load_torch_uncertainty_layers() -> types.ModuleType | None:
    spec = importlib.util.find_spec("torch_uncertainty")
    if spec is None or not spec.submodule_search_locations:
        print("torch-uncertainty unavailable: not installed", file=sys.stderr)
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "layers" / "bayesian"
    name = "_tu_bayesian_layers"
    pkg_spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(pkg_spec)
    sys.modules[name] = module
    try:
        pkg_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001
        print(f"torch-uncertainty layers unavailable: {e}", file=sys.stderr)
        return None
    return module


Step = Callable[[torch.Tensor], torch.Tensor]


def make_layers(kind: str, size: tuple[int, ...],
                peers: dict[str, types.ModuleType | None]) -> dict[str, Step]:
    """name -> a function running forward + KL and returning the loss to backpropagate."""
    impls: dict[str, Step] = {}
    for noise in ("weights", "lrt"):
        if kind == "Linear":
            ours = MeanFieldLinear(size[1], size[2], init_sigma=SIGMA0, noise=noise,
                                   bayesian_bias=True)
        else:
            ours = MeanFieldConv2d(size[1], size[2], 3, padding=1, init_sigma=SIGMA0,
                                   noise=noise, bayesian_bias=True)
        impls[f"varbayes ({noise})"] = _with_update(ours, _ours_step(ours))
    bt = peers.get("bayesian-torch")
    if bt is not None:
        if kind == "Linear":
            layer = bt.LinearReparameterization(size[1], size[2], posterior_rho_init=RHO0)
        else:
            layer = bt.Conv2dReparameterization(size[1], size[2], 3, padding=1,
                                                posterior_rho_init=RHO0)
        impls["bayesian-torch"] = _with_update(layer, _bt_step(layer))
    tu = peers.get("torch-uncertainty")
    if tu is not None:
        if kind == "Linear":
            layer = tu.BayesLinear(size[1], size[2], prior_sigma_1=1.0, prior_pi=1.0,
                                   sigma_init=RHO0)
        else:
            layer = tu.BayesConv2d(size[1], size[2], 3, padding=1, prior_sigma_1=1.0,
                                   prior_pi=1.0, sigma_init=RHO0)
        impls["torch-uncertainty"] = _with_update(layer, _tu_step(layer))
    return impls


def _with_update(layer: torch.nn.Module, step: Step) -> Step:
    """`step` preceded by an SGD update (learning rate 0) with the previous call's gradients:
    the parameters change in place as in training, so no implementation can reuse values it
    computed from them in the previous call."""
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)

    def stepped(x: torch.Tensor) -> torch.Tensor:
        opt.step()
        opt.zero_grad(set_to_none=True)
        return step(x)

    return stepped


def _ours_step(layer: torch.nn.Module) -> Step:
    return lambda x: layer(x).sum() + layer.kl()


def _bt_step(layer: torch.nn.Module) -> Step:
    def step(x: torch.Tensor) -> torch.Tensor:
        out, kl = layer(x)
        return out.sum() + kl

    return step


def _tu_step(layer: torch.nn.Module) -> Step:
    def step(x: torch.Tensor) -> torch.Tensor:
        out = layer(x)
        return out.sum() + layer.log_variational_posterior - layer.log_prior

    return step


def make_input(kind: str, size: tuple[int, ...]) -> torch.Tensor:
    if kind == "Linear":
        return torch.randn(size[0], size[1])
    return torch.randn(size[0], size[1], size[3], size[3])


def _call(step: Step, x: torch.Tensor) -> Callable[[], None]:
    return lambda: step(x).backward()


def table(rows: list[dict], peers: dict[str, types.ModuleType | None]) -> str:
    """Markdown: times per implementation and the ratios ours / peer."""
    present = [p for p, mod in peers.items() if mod is not None]
    head = ["layer", "size", "ours (weights) ms", "ours (LRT) ms"]
    head += [f"{p} ms" for p in present]
    head += [f"ours / {p} (weights, LRT)" for p in present]
    out = []
    for r in rows:
        ms = r["ms"]
        ours_w, ours_l = ms["varbayes (weights)"], ms["varbayes (lrt)"]
        cells: list[object] = [r["layer"], "x".join(map(str, r["size"])), ours_w, ours_l]
        cells += [ms[p] for p in present]
        cells += [f"{ours_w / ms[p]:.2f}, {ours_l / ms[p]:.2f}" for p in present]
        out.append(cells)
    return markdown(head, out)


if __name__ == "__main__":
    main()
