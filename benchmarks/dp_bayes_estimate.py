"""dp-bayes-estimate: time to the joint-beta credible interval for epsilon, varbayes against the
paper's package `privacy-estimates` (its `compute_eps_lo_hi(method="joint-beta")`), on the
package README's counts (TP=487, FN=0, FP=512, TN=1, delta=1e-5, alpha=0.1).

The peer integrates with nested adaptive quadrature and takes minutes per interval, so each
contender runs once per round (`--repeats`, default 1), interleaved.
"""

from __future__ import annotations

import argparse

from _timing import machine, markdown, median_times

from varbayes.privacy import epsilon_posterior

COUNTS = {"tp": 487, "fn": 0, "fp": 512, "tn": 1}
DELTA, ALPHA = 1e-5, 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    results: dict[str, tuple[float, float]] = {}

    def ours() -> None:
        results["varbayes (quadrature)"] = epsilon_posterior(**COUNTS, delta=DELTA).interval(ALPHA)

    def ours_mc() -> None:
        post = epsilon_posterior(**COUNTS, delta=DELTA)
        results["varbayes (20k-draw push-forward)"] = post.sample_interval(ALPHA, 20_000)

    contenders = {"varbayes (quadrature)": ours, "varbayes (20k-draw push-forward)": ours_mc}
    try:
        from privacy_estimates import AttackResults, compute_eps_lo_hi

        counts = AttackResults(FN=COUNTS["fn"], FP=COUNTS["fp"], TN=COUNTS["tn"], TP=COUNTS["tp"])

        def peer() -> None:
            results["privacy-estimates 0.1 (joint-beta)"] = tuple(
                compute_eps_lo_hi(count=counts, delta=DELTA, alpha=ALPHA, method="joint-beta"))

        contenders["privacy-estimates 0.1 (joint-beta)"] = peer
    except ImportError:
        print("privacy-estimates is not installed: peer skipped (pip install -e '.[bench]')")

    times = median_times(contenders, repeats=args.repeats, warmup=0)
    base = times["varbayes (quadrature)"]
    rows = [[name, f"[{results[name][0]:.4f}, {results[name][1]:.4f}]", t, t / base]
            for name, t in times.items()]
    print(f"machine: {machine()}")
    print(markdown(["implementation", "90 % interval", "seconds", "time / varbayes"], rows))


if __name__ == "__main__":
    main()
