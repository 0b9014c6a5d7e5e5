"""Overhead of `varbayes.infer` against hand-written PyTorch and Pyro.

1. One ELBO-gradient estimate (forward + backward) of the digits VAE (encoder 64-200-2x10,
   decoder 10-200-64, Bernoulli likelihood) at batch sizes 64..1024: varbayes / hand-written
   PyTorch (goal <= 1.1) and varbayes / Pyro `Trace_ELBO` (goal <= 0.5), same networks. The
   varbayes step is what a user's loop calls, `infer.estimate(infer.elbo(), model, guide, x,
   plates=1).loss().backward()` (which `infer.fit` runs too). "alone": the hand-written and
   varbayes steps timed again with only each other in the rounds (no Pyro step before them).
2. One epoch (10 minibatches of 100 points, Adam steps) of a Gaussian mixture with a
   categorical assignment per point, with an amortised guide over the assignments:
   REINFORCE (varbayes / Pyro `TraceGraph_ELBO`) and enumeration, parallel and sequential
   (varbayes / Pyro `TraceEnum_ELBO` with guide-side parallel enumeration); goal <= 0.25.
   A hand-written epoch (the exact sum over assignments, or a score-function surrogate)
   shows how much of each ratio is overhead: hand / Pyro bounds what removing it can reach.

Validation of distribution arguments is off on both sides (Pyro: `enable_validation(False)`;
varbayes: `validate_args=False` in the programs), as in a tuned training loop. The varbayes
programs (the library's VAE and the mixture below) build their distributions with
`varbayes.infer.distributions`, torch's classes with cheaper constructors.
Usage: `python benchmarks/vi_overhead.py [--repeats 300] [--quick] [--wall] [--breakdown]
[--compile] [--guards] [--calls] [--mixture] [--fixed]` (`--mixture`: only section 2;
`--breakdown`: only the batch-64 VAE step in stages, to see where its overhead goes;
`--fixed`: the same stages on a VAE with 4 hidden units at batch 2, where a step still takes
about 1 ms of fixed per-step cost, so the microseconds each stage adds over hand-written code
show more clearly than at batch 64; `--calls`: the Python
function calls and bytecodes one batch-64 step executes, hand-written, the floor and varbayes:
counts that a busy machine does not blur;
`--compile`: also the compiled path, `varbayes.infer.compile_loss` with Inductor,
and the hand-written loss under `torch.compile` with the same settings, static shapes, timed
after their first call, whose wall-clock compile time is reported in its own table; `--guards`:
only the compiled batch-64 and batch-1024 VAE steps and the mixture's parallel-enumeration
step (a minibatch of 100) with every TorchDynamo guard, with `compile_loss`'s default guard
filter and without guard evaluation, and the guard trees' sizes).
By default torch runs one thread and the timer counts this process's CPU time
(`time.process_time`), which other processes on a busy machine do not inflate; `--wall` times
wall clock with the default threads instead.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable

import torch
from _timing import machine, markdown, median_times
from torch import nn

from varbayes import infer
from varbayes.infer.distributions import Bernoulli, Categorical, Independent, Normal
from varbayes.methods.vi.vae import VAE

BATCHES = (64, 128, 256, 512, 1024)
CLOCK = time.perf_counter
COMPILE = False
COMPILE_SECONDS: list[list[object]] = []  # [what, wall-clock seconds of the first call]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="30 repeats, batches 64 and 1024")
    parser.add_argument("--wall", action="store_true",
                        help="wall-clock time with torch's default threads")
    parser.add_argument("--breakdown", action="store_true",
                        help="only where a batch-64 VAE step's time goes (1500 repeats)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the compiled path (Inductor; compiles take minutes)")
    parser.add_argument("--guards", action="store_true",
                        help="only the compiled steps' guard cost (Inductor, 400-600 repeats)")
    parser.add_argument("--fixed", action="store_true",
                        help="only the stages on a tiny VAE (hidden 4, batch 2): fixed cost")
    parser.add_argument("--calls", action="store_true",
                        help="only the Python calls and bytecodes of one batch-64 VAE step")
    parser.add_argument("--mixture", action="store_true",
                        help="only the mixture table (median of max(repeats / 10, 5) epochs)")
    args = parser.parse_args()
    global COMPILE
    COMPILE = args.compile
    repeats = 30 if args.quick else args.repeats
    batches = (64, 1024) if args.quick else BATCHES
    global CLOCK
    if not args.wall:
        torch.set_num_threads(1)
        CLOCK = time.process_time
    if args.breakdown or args.fixed:
        print(breakdown_table(2 if args.fixed else 64, 1500 if not args.quick else 100,
                              hidden=4 if args.fixed else 200))
        return
    if args.calls:
        print(calls_table(64))
        return
    if args.guards:
        for b in (64, 1024):
            print(guards_table(b, 400 if not args.quick else 30))
            print()
        print(guards_table(100, 600 if not args.quick else 30, mixture=True))
        return
    pyro = _pyro()
    clock = "wall clock" if args.wall else "process CPU time, 1 thread"
    print(f"machine: {machine()}; pyro {pyro.__version__ if pyro else 'not installed'}; "
          f"timer: {clock}\n")
    if not args.mixture:
        print(vae_table(batches, repeats, pyro))
        print()
    print(mixture_table(max(repeats // 10, 5), pyro))
    if COMPILE_SECONDS:
        print("\nFirst call (compile) of each compiled contender, wall clock\n")
        print(markdown(["contender", "compile s"], COMPILE_SECONDS))


# ---------------------------------------------------------------------------------------------
# 1. the VAE gradient step


def vae_table(batches: tuple[int, ...], repeats: int, pyro: object) -> str:
    torch.manual_seed(0)
    vae = VAE()
    rows = []
    for b in batches:
        x = (torch.rand(b, 64) < 0.3).float()
        contenders = {"hand": lambda x=x: _hand_step(vae, x),
                      "varbayes": lambda x=x: _varbayes_step(vae, x)}
        if pyro is not None:
            elbo = pyro.infer.Trace_ELBO()
            contenders["pyro"] = lambda x=x, elbo=elbo: _pyro_step(pyro, elbo, vae, x)
        if COMPILE:
            loss = infer.compile_loss(infer.elbo(), vae.model, vae.guide, plates=1,
                                      dynamic=False)
            hand = torch.compile(lambda x: _hand_loss(vae, x), fullgraph=True, dynamic=False,
                                 options={"fallback_random": True})
            contenders["compiled"] = _first_call_timed(
                f"varbayes VAE step, batch {b}", lambda x=x, f=loss: _backward(vae, f, x))
            contenders["hand compiled"] = _first_call_timed(
                f"hand-written VAE step, batch {b}", lambda x=x, f=hand: _backward(vae, f, x))
        t = median_times(contenders, repeats=repeats, warmup=10, clock=CLOCK)
        # the eager pair again without Pyro's (and the compiled) steps in the rounds: a step
        # measures slower right after another Python-heavy step, as in a training loop of
        # varbayes steps it is not
        alone_eager = median_times({k: contenders[k] for k in ("hand", "varbayes")},
                                   repeats=repeats, warmup=10, clock=CLOCK)
        row = [b, 1e3 * t["hand"], 1e3 * t["varbayes"], t["varbayes"] / t["hand"],
               alone_eager["varbayes"] / alone_eager["hand"]]
        if pyro is not None:
            row += [1e3 * t["pyro"], t["varbayes"] / t["pyro"]]
        if COMPILE:
            row += [1e3 * t["compiled"], t["compiled"] / t["hand"],
                    t["compiled"] / t["pyro"] if pyro is not None else math.nan,
                    1e3 * t["hand compiled"], t["compiled"] / t["hand compiled"]]
            # the same three without the Python-heavy eager varbayes and Pyro steps between
            # them (a compiled step right after one of those measures slower)
            alone = median_times({k: contenders[k] for k in ("hand", "compiled", "hand compiled")},
                                 repeats=repeats, warmup=10, clock=CLOCK)
            row += [alone["compiled"] / alone["hand"], alone["hand compiled"] / alone["hand"]]
        rows.append(row)
    header = ["batch", "hand-written ms", "varbayes ms", "varbayes / hand",
              "varbayes / hand, alone"]
    if pyro is not None:
        header += ["Pyro Trace_ELBO ms", "varbayes / Pyro"]
    if COMPILE:
        header += ["compiled varbayes ms", "compiled / hand", "compiled / Pyro",
                   "compiled hand-written ms", "compiled / compiled hand",
                   "compiled / hand, alone", "compiled hand / hand, alone"]
    return (f"VAE ELBO-gradient step (median of {repeats})\n\n" + markdown(header, rows))


def _first_call_timed(what: str, fn: Callable[[], None]) -> Callable[[], None]:
    """fn after one call (the compile), whose wall-clock seconds go to COMPILE_SECONDS."""
    start = time.perf_counter()
    fn()
    COMPILE_SECONDS.append([what, time.perf_counter() - start])
    return fn


def _backward(vae: nn.Module, loss: Callable[[torch.Tensor], torch.Tensor],
              x: torch.Tensor) -> None:
    vae.zero_grad(set_to_none=True)
    loss(x).backward()


def _varbayes_step(vae: VAE, x: torch.Tensor) -> None:
    vae.zero_grad(set_to_none=True)
    infer.estimate(infer.elbo(), vae.model, vae.guide, x, plates=1).loss().backward()


def _hand_step(vae: VAE, x: torch.Tensor) -> None:
    vae.zero_grad(set_to_none=True)
    _hand_loss(vae, x).backward()


def _hand_loss(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """The same ELBO written out: reparameterised z, Bernoulli log-likelihood, log p - log q."""
    loc, log_scale = vae.encoder(x).chunk(2, -1)
    scale = log_scale.exp()
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    logits = vae.decoder(z)
    loglik = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    log_prior = (-0.5 * z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    log_q = (-0.5 * eps**2 - log_scale).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    return -(loglik + log_prior - log_q).mean()


def _pyro_step(pyro: object, elbo: object, vae: VAE, x: torch.Tensor) -> None:
    vae.zero_grad(set_to_none=True)
    elbo.differentiable_loss(_pyro_vae_model, _pyro_vae_guide, pyro, vae, x).backward()


def _pyro_vae_model(pyro: object, vae: VAE, x: torch.Tensor) -> None:
    dist = pyro.distributions
    pyro.module("decoder", vae.decoder)
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 10), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=vae.decoder(z)).to_event(1), obs=x)


def _pyro_vae_guide(pyro: object, vae: VAE, x: torch.Tensor) -> None:
    dist = pyro.distributions
    pyro.module("encoder", vae.encoder)
    loc, log_scale = vae.encoder(x).chunk(2, -1)
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def breakdown_table(batch: int, repeats: int, hidden: int = 200) -> str:
    """The VAE step in stages: hand-written; the tensor operations varbayes runs, written out;
    the same through the programs' distribution objects and `varbayes.infer.densities`; the
    full estimate (handlers, traces, estimator). `hidden`: the VAE's hidden width (4 with
    batch 2 leaves the fixed per-step cost, in microseconds above hand-written code)."""
    torch.manual_seed(0)
    vae = VAE(hidden=hidden)
    x = (torch.rand(batch, 64) < 0.3).float()
    _varbayes_step(vae, x)  # the VAE's prior object now exists and is cached
    contenders = {"hand-written": lambda: _hand_step(vae, x),
                  "varbayes' ops written out": lambda: _ops_step(vae, x),
                  "+ distribution objects": lambda: _objects_step(vae, x),
                  "+ the programs, minimal sites (a floor)": lambda: _floor_step(vae, x),
                  "varbayes (+ handlers, traces, estimator)": lambda: _varbayes_step(vae, x)}
    t = median_times(contenders, repeats=repeats, warmup=20, clock=CLOCK)
    base = t["hand-written"]
    rows = [[name, 1e3 * v, v / base, 1e6 * (v - base)] for name, v in t.items()]
    return (f"VAE step (hidden {hidden}) at batch {batch}, in stages (median of {repeats})\n\n"
            + markdown(["stage", "ms", "/ hand-written", "us above hand-written"], rows))


def calls_table(batch: int) -> str:
    """Python function calls and bytecodes executed by one warm VAE step (`sys.settrace`
    with opcode events), for the hand-written step, the floor and varbayes: deterministic
    counts of the interpreter work each adds (torch's C++ work is not counted)."""
    torch.manual_seed(0)
    vae = VAE()
    x = (torch.rand(batch, 64) < 0.3).float()
    steps = {"hand-written": lambda: _hand_step(vae, x),
             "the programs, minimal sites (a floor)": lambda: _floor_step(vae, x),
             "varbayes": lambda: _varbayes_step(vae, x)}
    rows = []
    for name, step in steps.items():
        for _ in range(5):
            step()
        counts = [0, 0]  # calls, opcodes

        def trace(frame: object, event: str, arg: object, counts: list[int] = counts) -> object:
            frame.f_trace_opcodes = True
            counts[event == "opcode"] += event in ("call", "opcode")
            return trace

        sys.settrace(trace)
        try:
            step()
        finally:
            sys.settrace(None)
        rows.append([name, counts[0], counts[1]])
    return (f"Interpreter work of one VAE step at batch {batch}\n\n"
            + markdown(["step", "Python calls", "bytecodes"], rows))


def _ops_step(vae: VAE, x: torch.Tensor) -> None:
    vae.zero_grad(set_to_none=True)
    loc, log_scale = vae.encoder(x).chunk(2, -1)
    scale = log_scale.exp()
    eps = torch.randn(loc.shape)
    z = torch.addcmul(loc, eps, scale)
    logits = vae.decoder(z)
    # log q(z) - log p(z) fused (`densities.log_ratio`): the log sqrt(2 pi) cancel
    log_ratio = torch.addcmul(eps.square().mul_(-0.5), z, z, value=0.5).sub(log_scale).sum(-1)
    loglik = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none"
                                                            ).sum(-1).neg_()
    (-(loglik - log_ratio).mean()).backward()


def _objects_step(vae: VAE, x: torch.Tensor) -> None:
    from varbayes.infer import densities

    vae.zero_grad(set_to_none=True)
    loc, log_scale = vae.encoder(x).chunk(2, -1)
    q = Independent(Normal.from_log_scale(loc, log_scale, validate_args=False), 1)
    z, eps = densities.rsample(q)
    lik = Independent(Bernoulli(logits=vae.decoder(z), validate_args=False), 1)
    log_ratio = densities.log_ratio(q, vae.prior(x), z, eps)
    (-(densities.log_prob(lik, x) - log_ratio).mean()).backward()


def _floor_step(vae: VAE, x: torch.Tensor) -> None:
    """The VAE's own programs with the least site bookkeeping there can be: `infer.sample`
    swapped for a function that keeps a `Site` per choice in a list and hands the guide's z
    to the model (no handlers, traces, scope, strategies or checks), then the ELBO of those
    sites. Not a usable path: a floor under what any site machinery costs."""
    from varbayes.infer.sites import Site

    drawn: list[Site] = []
    values: dict[str, torch.Tensor] = {}

    def minimal_sample(name: str, fn: object, *, obs: torch.Tensor | None = None,
                       strategy: object = None) -> torch.Tensor:
        site = Site(name, fn)
        if obs is not None:
            site.value, site.observed = obs, True
        elif name in values:
            site.value = values[name]
        else:
            site.rsample()
        drawn.append(site)
        return site.value

    vae.zero_grad(set_to_none=True)
    real, infer.sample = infer.sample, minimal_sample
    try:
        vae.guide(x)
        q = drawn[0]
        values["z"] = q.value
        vae.model(x)
    finally:
        infer.sample = real
    p_z, lik = drawn[1], drawn[2]
    (-(lik.log_prob - q.log_ratio(p_z)).mean()).backward()


def guards_table(batch: int, repeats: int, mixture: bool = False) -> str:
    """The compiled VAE step (or, `mixture`, the mixture's parallel-enumeration step on a
    minibatch of `batch`) with every guard, with `compile_loss`'s guard filter, and both
    without guard evaluation (`skip_guard_eval_unsafe`: what the guards cost), next to the
    compiled hand-written step and the hand-written eager step; guard-tree sizes."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    torch.manual_seed(0)
    opts = {"fallback_random": True}
    if mixture:
        module: nn.Module = Mixture()
        x = mixture_data()[:batch]
        kw = {"plates": 1, "data_size": 1000, "strategies": _mixture_strategy("enum-parallel"),
              "dynamic": False}
        args = (infer.elbo(), module.model, module.guide)

        def hand_loss(x: torch.Tensor) -> torch.Tensor:
            return _hand_mixture_loss(module, x, "enum-parallel")

        def eager_step() -> None:
            _backward(module, hand_loss, x)
        what = f"Compiled mixture step (parallel enumeration) on a minibatch of {batch}"
    else:
        module = VAE()
        x = (torch.rand(batch, 64) < 0.3).float()
        kw = {"plates": 1, "dynamic": False}
        args = (infer.elbo(), module.model, module.guide)

        def hand_loss(x: torch.Tensor) -> torch.Tensor:
            return _hand_loss(module, x)

        def eager_step() -> None:
            _hand_step(module, x)
        what = f"Compiled VAE step at batch {batch}"
    every = infer.compile_loss(*args, **kw, options={**opts, "guard_filter_fn": None})
    filtered = infer.compile_loss(*args, **kw)
    hand = torch.compile(hand_loss, fullgraph=True, dynamic=False, options=opts)

    def lines(fn: object) -> int:
        code = getattr(fn, "_compiled", fn)._torchdynamo_orig_callable.__code__
        return len(str(_debug_get_cache_entry_list(code)[0].guard_manager).splitlines())

    def unguarded(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def step() -> None:
            with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
                _backward(module, fn, x)
        return step

    contenders = {"hand-written eager": eager_step,
                  "compiled, every guard": lambda: _backward(module, every, x),
                  "compiled, library_guards": lambda: _backward(module, filtered, x),
                  "compiled, no guard evaluation": unguarded(filtered),
                  "compiled hand-written": lambda: _backward(module, hand, x),
                  "compiled hand-written, no guard evaluation": unguarded(hand)}
    for fn in list(contenders.values())[1:]:
        fn()  # the compiles
    sizes = {"compiled, every guard": lines(every), "compiled, library_guards": lines(filtered),
             "compiled hand-written": lines(hand)}
    t = median_times(contenders, repeats=repeats, warmup=20, clock=CLOCK)
    bare = {"compiled, every guard": t["compiled, no guard evaluation"],
            "compiled, library_guards": t["compiled, no guard evaluation"],
            "compiled hand-written": t["compiled hand-written, no guard evaluation"]}
    rows = [[name, 1e3 * v, v / t["hand-written eager"],
             1e3 * (v - bare[name]) if name in bare else math.nan, sizes.get(name, math.nan)]
            for name, v in t.items()]
    return (f"{what}: guard cost (median of {repeats})\n\n"
            + markdown(["step", "ms", "/ hand-written eager", "guards ms", "guard-tree lines"],
                       rows))


# ---------------------------------------------------------------------------------------------
# 2. a discrete latent: a Gaussian mixture with an assignment per point


class Mixture(nn.Module):
    """Means of K components (point estimates) and an amortised guide over assignments."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(k, 2))
        self.encoder = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, k))

    def model(self, x: torch.Tensor) -> None:
        k = self.means.shape[0]
        c = infer.sample("c", Categorical(logits=x.new_zeros(x.shape[0], k),
                                          validate_args=False))
        infer.sample("x", Independent(Normal(self.means[c], 1.0, validate_args=False), 1),
                     obs=x)

    def guide(self, x: torch.Tensor) -> None:
        infer.sample("c", Categorical(logits=self.encoder(x), validate_args=False))


def mixture_data(n: int = 1000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    return centres[torch.randint(0, 3, (n,), generator=g)] + torch.randn(n, 2, generator=g)


def mixture_table(repeats: int, pyro: object) -> str:
    x = mixture_data()
    rows = []
    for strategy, peer in (("reinforce", "TraceGraph_ELBO"), ("enum-parallel", "TraceEnum_ELBO"),
                           ("enum-sequential", "TraceEnum_ELBO")):
        torch.manual_seed(0)
        mix = Mixture()
        opt = torch.optim.Adam(mix.parameters(), lr=1e-2)
        hmix = Mixture()
        hmix.load_state_dict(mix.state_dict())
        hopt = torch.optim.Adam(hmix.parameters(), lr=1e-2)
        contenders = {"varbayes": lambda s=strategy, m=mix, o=opt: _varbayes_epoch(m, o, x, s),
                      "hand": lambda s=strategy, m=hmix, o=hopt: _hand_epoch(m, o, x, s)}
        if pyro is not None:
            pmix = Mixture()
            pmix.load_state_dict(mix.state_dict())
            popt = torch.optim.Adam(pmix.parameters(), lr=1e-2)
            loss = (pyro.infer.TraceGraph_ELBO() if strategy == "reinforce"
                    else pyro.infer.TraceEnum_ELBO(max_plate_nesting=1))
            contenders["pyro"] = lambda s=strategy, lo=loss, m=pmix, o=popt: _pyro_epoch(
                pyro, lo, m, o, x, s)
        compiled = COMPILE and strategy != "enum-sequential"  # re-execution: not capturable
        if compiled:
            cmix, chmix = Mixture(), Mixture()
            cmix.load_state_dict(mix.state_dict())
            chmix.load_state_dict(mix.state_dict())
            copt = torch.optim.Adam(cmix.parameters(), lr=1e-2)
            chopt = torch.optim.Adam(chmix.parameters(), lr=1e-2)
            closs = infer.compile_loss(infer.elbo(), cmix.model, cmix.guide, plates=1,
                                       data_size=len(x), strategies=_mixture_strategy(strategy),
                                       dynamic=False)
            chloss = torch.compile(lambda xb, s=strategy, m=chmix: _hand_mixture_loss(m, xb, s),
                                   fullgraph=True, dynamic=False, options={"fallback_random": True})
            contenders["compiled"] = _first_call_timed(
                f"varbayes mixture epoch, {strategy}",
                lambda m=cmix, o=copt, f=closs: _epoch(m, o, x, f))
            contenders["hand compiled"] = _first_call_timed(
                f"hand-written mixture epoch, {strategy}",
                lambda m=chmix, o=chopt, f=chloss: _epoch(m, o, x, f))
        t = median_times(contenders, repeats=repeats, warmup=2, clock=CLOCK)
        row = [strategy, 1e3 * t["hand"], 1e3 * t["varbayes"], t["varbayes"] / t["hand"]]
        if pyro is not None:
            row += [peer, 1e3 * t["pyro"], t["varbayes"] / t["pyro"], t["hand"] / t["pyro"]]
        if COMPILE:
            nan = math.nan
            row += ([1e3 * t["compiled"], t["compiled"] / t["hand"],
                     t["compiled"] / t["pyro"] if pyro is not None else nan,
                     1e3 * t["hand compiled"], t["compiled"] / t["hand compiled"]]
                    if compiled else [nan] * 5)
        rows.append(row)
    header = ["estimator", "hand-written ms/epoch", "varbayes ms/epoch", "varbayes / hand"]
    if pyro is not None:
        header += ["Pyro", "Pyro ms/epoch", "varbayes / Pyro", "hand / Pyro"]
    if COMPILE:
        header += ["compiled varbayes ms/epoch", "compiled / hand", "compiled / Pyro",
                   "compiled hand-written ms/epoch", "compiled / compiled hand"]
    return (f"Gaussian mixture, one epoch of 10 minibatches of 100 (median of {repeats})\n\n"
            + markdown(header, rows))


def _batches(n: int, size: int = 100) -> list[torch.Tensor]:
    return list(torch.randperm(n).split(size))


def _mixture_strategy(strategy: str) -> dict[str, infer.strategies.Strategy]:
    return {"c": infer.reinforce() if strategy == "reinforce"
            else infer.enum(parallel=strategy == "enum-parallel")}


def _varbayes_epoch(mix: Mixture, opt: torch.optim.Optimizer, x: torch.Tensor,
                    strategy: str) -> None:
    strategies = _mixture_strategy(strategy)
    for idx in _batches(len(x)):
        opt.zero_grad(set_to_none=True)
        est = infer.estimate(infer.elbo(), mix.model, mix.guide, x[idx], plates=1,
                             data_size=len(x), strategies=strategies)
        est.loss().backward()
        opt.step()


def _epoch(mix: Mixture, opt: torch.optim.Optimizer, x: torch.Tensor,
           loss: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """An epoch of Adam steps on `loss(minibatch)` (a compiled loss of either side)."""
    for idx in _batches(len(x)):
        opt.zero_grad(set_to_none=True)
        loss(x[idx]).backward()
        opt.step()


def _hand_epoch(mix: Mixture, opt: torch.optim.Optimizer, x: torch.Tensor,
                strategy: str) -> None:
    _epoch(mix, opt, x, lambda xb: _hand_mixture_loss(mix, xb, strategy))


def _hand_mixture_loss(mix: Mixture, xb: torch.Tensor, strategy: str) -> torch.Tensor:
    """The same loss written out: the exact sum over the 3 assignments (both enumeration
    rows), or one sampled assignment per point with the score-function surrogate."""
    log_prior = -math.log(mix.means.shape[0])
    log_q = torch.log_softmax(mix.encoder(xb), -1)  # (B, K)
    if strategy == "reinforce":
        c = torch.multinomial(log_q.detach().exp(), 1).squeeze(-1)
        lq = log_q.gather(-1, c[:, None]).squeeze(-1)
        ll = -0.5 * ((xb - mix.means[c]) ** 2).sum(-1) - math.log(2 * math.pi)
        w = ll + log_prior - lq
        return -(w + w.detach() * lq).mean()
    ll = -0.5 * ((xb[:, None, :] - mix.means) ** 2).sum(-1) - math.log(2 * math.pi)
    return -(log_q.exp() * (ll + log_prior - log_q)).sum(-1).mean()


def _pyro_epoch(pyro: object, loss: object, mix: Mixture, opt: torch.optim.Optimizer,
                x: torch.Tensor, strategy: str) -> None:
    dist = pyro.distributions
    n = len(x)

    def model(xb: torch.Tensor, idx: torch.Tensor) -> None:
        pyro.module("mixture", mix)
        with pyro.plate("data", n, subsample=idx):
            c = pyro.sample("c", dist.Categorical(logits=xb.new_zeros(len(xb), 3)))
            pyro.sample("x", dist.Normal(mix.means[c], 1.0).to_event(1), obs=xb)

    def guide(xb: torch.Tensor, idx: torch.Tensor) -> None:
        pyro.module("mixture", mix)
        infer_opts = {"enumerate": "parallel"} if strategy.startswith("enum") else {}
        with pyro.plate("data", n, subsample=idx):
            pyro.sample("c", dist.Categorical(logits=mix.encoder(xb)), infer=infer_opts)

    for idx in _batches(n):
        opt.zero_grad(set_to_none=True)
        loss.loss_and_grads(model, guide, x[idx], idx)
        opt.step()


def _pyro() -> object:
    try:
        import pyro
        import pyro.infer  # noqa: F401
    except ImportError:
        print("pyro-ppl is not installed (pip install -e '.[bench]'); Pyro columns skipped",
              file=sys.stderr)
        return None
    pyro.enable_validation(False)
    return pyro


if __name__ == "__main__":
    main()
