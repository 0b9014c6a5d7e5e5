"""attr-cvae / varbayes.latent: one training step of the attribute CVAE against Pyro.

The CVAE of `attr-cvae` (recognition q(z | x, a), prior network p(z | a), decoder p(x | z, a),
one hidden layer of 128 units each, d_z = 4, Bernoulli pixels) on a minibatch of 64 digits:
one beta-ELBO gradient step (forward, backward, Adam) with

- varbayes: `varbayes.latent.CVAE` programs under `infer.elbo(kl_weight=beta, analytic_kl=True)`;
- hand-written PyTorch: the same networks and loss written out (the floor);
- Pyro: the same networks in a Pyro model/guide pair with `pyro.poutine.scale` on the latent
  site for beta, `TraceMeanField_ELBO` (analytic KL, as ours) and `Trace_ELBO`.

Goal: varbayes within 1.5x of hand-written PyTorch and no slower than Pyro. Argument
validation is off everywhere. By default torch runs one thread and the timer counts this
process's CPU time, which other processes on a busy machine do not inflate (`--wall`: wall
clock with torch's default threads). Usage: `python benchmarks/latent_cvae.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import machine, markdown, median_times
from torch.distributions import Bernoulli, Independent, kl_divergence

from varbayes import infer
from varbayes.latent import CVAE, VAESpec

BETA = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--wall", action="store_true", help="wall clock, default threads")
    args = parser.parse_args()
    clock = time.perf_counter
    if not args.wall:
        torch.set_num_threads(1)
        clock = time.process_time
    torch.manual_seed(0)
    x = (torch.rand(args.batch, 64) < 0.3).float() * torch.rand(args.batch, 64)
    a = torch.zeros(args.batch, 11)
    a[torch.arange(args.batch), torch.randint(0, 10, (args.batch,))] = 1.0
    a[:, 10] = (torch.rand(args.batch) < 0.5).float()
    spec = VAESpec(x_dim=64, c_dim=11, d_z=4, hidden=(128,), prior="conditional")

    contenders = {}
    ours = CVAE(spec)
    opt_ours = torch.optim.Adam(ours.parameters(), 1e-3)
    objective = infer.elbo(kl_weight=BETA, analytic_kl=True)

    def step_ours() -> None:
        opt_ours.zero_grad()
        infer.estimate(objective, ours.model, ours.guide, x, a, plates=1,
                       data_size=1347).loss().backward()
        opt_ours.step()

    contenders["varbayes.infer + varbayes.latent"] = step_ours

    hand = CVAE(spec)
    opt_hand = torch.optim.Adam(hand.parameters(), 1e-3)

    def step_hand() -> None:
        opt_hand.zero_grad()
        q = hand.encoder(x, a)
        z = q.rsample()
        logits = hand.decoder(z, a)
        loglik = Independent(Bernoulli(logits=logits, validate_args=False), 1).log_prob(x)
        kl = kl_divergence(q, hand.prior_net(a)).sum(-1)
        (-(loglik - BETA * kl).mean()).backward()
        opt_hand.step()

    contenders["hand-written PyTorch"] = step_hand

    try:
        import pyro
        from pyro import poutine
        from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
        from pyro.optim import Adam

        pyro.enable_validation(False)
        for name, loss in (("Pyro TraceMeanField_ELBO", TraceMeanField_ELBO()),
                           ("Pyro Trace_ELBO", Trace_ELBO())):
            contenders[name] = _pyro_step(pyro, poutine, SVI, Adam, loss, CVAE(spec), x, a)
    except ImportError:
        print("pyro-ppl is not installed: peer skipped (pip install pyro-ppl)")

    times = median_times(contenders, args.repeats, warmup=10, clock=clock)
    base = times["varbayes.infer + varbayes.latent"]
    hand_t = times["hand-written PyTorch"]
    rows = [[name, t * 1e3, t / hand_t, t / base] for name, t in times.items()]
    print(f"machine: {machine()}; clock: {'wall' if args.wall else 'process CPU'}; "
          f"batch {args.batch}, {args.repeats} interleaved repeats (median)")
    print(markdown(["implementation", "ms per step", "/ hand-written", "/ varbayes"], rows))


def _pyro_step(pyro, poutine, SVI, Adam, loss, net: CVAE, x: torch.Tensor,  # noqa: ANN001, N803
               a: torch.Tensor):  # noqa: ANN202
    """The same CVAE as a Pyro model/guide pair; beta scales the latent site's log-densities
    in both programs, which multiplies its KL by beta (the likelihood is unscaled)."""
    import pyro.distributions as dist

    pyro.clear_param_store()

    def model(x_: torch.Tensor, a_: torch.Tensor) -> None:
        pyro.module("cvae", net)
        with pyro.plate("data", len(x_)):
            prior = net.prior_net(a_)
            with poutine.scale(scale=BETA):
                z = pyro.sample("z", dist.Normal(prior.loc, prior.scale).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=net.decoder(z, a_)).to_event(1), obs=x_)

    def guide(x_: torch.Tensor, a_: torch.Tensor) -> None:
        pyro.module("cvae", net)
        with pyro.plate("data", len(x_)), poutine.scale(scale=BETA):
            q = net.encoder(x_, a_)
            pyro.sample("z", dist.Normal(q.loc, q.scale).to_event(1))

    svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=loss)
    return lambda: svi.step(x, a)


if __name__ == "__main__":
    main()
