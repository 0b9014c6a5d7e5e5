"""Top-label calibration: ECE, adaptive (equal-mass) ECE, per-bin data and reliability diagrams.

ECE values differ between libraries because of binning choices, so they are fixed here and
stated in every docstring: the top label (the most probable class, ties to the lowest index),
its confidence c_i = max_c p_ic and correctness a_i = 1[argmax_c p_ic = y_i]; bins B_b; and

    ECE = sum over non-empty bins b of (|B_b| / N) * | mean_{i in B_b} a_i - mean_{i in B_b} c_i |

(the L1 norm, weights = fraction of examples in the bin, empty bins skipped).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from varbayes.errors import VarbayesError, one_of
from varbayes.io import atomic_write_bytes
from varbayes.metrics._inputs import as_bins, as_number, as_probs, probs_and_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Binning = Literal["equal_width", "equal_mass"]


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label L1 ECE over `n_bins` equal-width bins on (0, 1].

    Bin b (b = 0 .. n_bins-1) is the interval (b/n_bins, (b+1)/n_bins]: the right edge is
    inclusive, the left one exclusive, so a confidence of exactly 1 falls in the last bin
    (edges are the float64 quotients b / n_bins, compared in float64). Empty bins are skipped;
    each bin's weight is the fraction of the N examples in it. This equals torchmetrics'
    `MulticlassCalibrationError(norm="l1")` up to its float32 arithmetic, except for
    confidences exactly on an edge, which torchmetrics puts in the bin to the right (and a
    confidence of 1 into a bin of its own).
    """
    return calibration_bins(probs, labels, n_bins, "equal_width").error()


def adaptive_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label L1 ECE over `n_bins` equal-mass bins.

    Examples are sorted by confidence (a stable sort, so ties keep their input order) and bin b
    takes sorted positions floor(b N / n_bins) .. floor((b+1) N / n_bins) - 1, so bin sizes
    differ by at most one; tied confidences may be split across two bins. When N < n_bins some
    bins are empty and are skipped. Weights are bin fractions, as in
    `expected_calibration_error`.
    """
    return calibration_bins(probs, labels, n_bins, "equal_mass").error()


def ece_settings(n_bins: int = 15) -> dict[str, Any]:
    """The binning behind `ece`, to write next to it in result.json."""
    return {"ece": {"label": "top-label", "norm": "l1", "bins": "equal-width",
                    "n_bins": as_bins(n_bins), "edges": "b / n_bins", "bin_interval": "(lo, hi]",
                    "empty_bins": "skipped", "weights": "fraction of examples"}}


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin top-label data; empty bins have count 0 and NaN accuracy and confidence.

    For equal-width bins `lower`/`upper` are the bin edges; for equal-mass bins they are the
    smallest and largest confidence in the bin (NaN when empty).
    """

    binning: str
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    count: tuple[int, ...]
    accuracy: tuple[float, ...]
    confidence: tuple[float, ...]

    def error(self) -> float:
        """The L1 error: sum over non-empty bins of (count / N) * |accuracy - confidence|."""
        n = sum(self.count)
        return sum(k / n * abs(a - c)
                   for k, a, c in zip(self.count, self.accuracy, self.confidence) if k > 0)


def calibration_bins(probs: Any, labels: Any, n_bins: int = 15,
                     binning: Binning = "equal_width") -> CalibrationBins:
    """Per-bin counts, accuracy and mean confidence of the top label (binning as documented in
    `expected_calibration_error` and `adaptive_calibration_error`)."""
    p, y = probs_and_labels(probs, labels)
    return top_label_bins(p, y, as_bins(n_bins), binning)


def reliability_diagram(probs: Any, labels: Any, n_bins: int = 15,
                        path: str | Path | None = None) -> Figure:
    """A reliability diagram (accuracy per equal-width bin against the diagonal, with the count
    per bin below); written to `path` as a PNG, atomically, when one is given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bins = calibration_bins(probs, labels, n_bins)
    width = 1.0 / len(bins.count)
    left = [b * width for b in range(len(bins.count))]
    acc = [0.0 if math.isnan(a) else a for a in bins.accuracy]
    conf = [0.0 if math.isnan(c) else c for c in bins.confidence]

    fig = Figure(figsize=(4.5, 5.5))
    FigureCanvasAgg(fig)  # the Agg canvas: no display and no pyplot global state
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(left, acc, width=width, align="edge", edgecolor="black", label="accuracy")
    top.bar(left, [c - a for a, c in zip(acc, conf)], bottom=acc, width=width, align="edge",
            color="tab:red", alpha=0.3, hatch="//", label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
            title=f"ECE = {bins.error():.4f} ({len(bins.count)} equal-width bins, top label)")
    top.legend(loc="upper left")
    bottom.bar(left, bins.count, width=width, align="edge", edgecolor="black")
    bottom.set(xlabel="confidence", ylabel="count")
    fig.tight_layout()
    if path is not None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        atomic_write_bytes(path, buf.getvalue())
    return fig


def top_label_bins(p: torch.Tensor, y: torch.Tensor, n_bins: int,
                   binning: str) -> CalibrationBins:
    """`calibration_bins` on already checked float64 probabilities and int64 labels."""
    conf, pred = p.max(1)  # max returns the first maximal index, as argmax does
    correct = (pred == y).to(p.dtype)
    if binning == "equal_width":
        index, lower, upper = _equal_width(conf, n_bins)
    elif binning == "equal_mass":
        index, lower, upper = _equal_mass(conf, n_bins)
    else:
        raise one_of("binning", binning, ["equal_width", "equal_mass"])
    count = torch.zeros(n_bins, dtype=p.dtype).index_add_(0, index, torch.ones_like(conf))
    acc = torch.zeros(n_bins, dtype=p.dtype).index_add_(0, index, correct) / count
    mean_conf = torch.zeros(n_bins, dtype=p.dtype).index_add_(0, index, conf) / count
    return CalibrationBins(binning, tuple(lower), tuple(upper),
                           tuple(int(k) for k in count.tolist()), tuple(acc.tolist()),
                           tuple(mean_conf.tolist()))


def _equal_width(conf: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, list[float], list[float]]:
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    # right=False: index i with edges[i-1] < conf <= edges[i], i.e. bins (lo, hi]
    index = (torch.bucketize(conf, edges, right=False) - 1).clamp(0, n_bins - 1)
    return index, edges[:-1].tolist(), edges[1:].tolist()


def _equal_mass(conf: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, list[float], list[float]]:
    n = conf.shape[0]
    order = torch.sort(conf, stable=True).indices
    # bin b holds sorted positions starts[b] .. starts[b+1] - 1
    starts = torch.arange(n_bins + 1) * n // n_bins
    sorted_bin = torch.bucketize(torch.arange(n), starts, right=True) - 1
    index = torch.empty(n, dtype=torch.long)
    index[order] = sorted_bin
    lower, upper = [], []
    for b in range(n_bins):
        members = conf[index == b]
        lower.append(members.min().item() if len(members) else math.nan)
        upper.append(members.max().item() if len(members) else math.nan)
    return index, lower, upper



# ---------------------------------------------------------------------------------------------
# temperature scaling of a predictive


TEMPERATURE_BOUNDS = (0.05, 20.0)


def temper(probs: Any, temperature: float) -> torch.Tensor:
    """The predictive tempered by `temperature` T: p_T ∝ p^(1/T), row by row.

    It acts on predictive probabilities (for a Bayesian model the MC average), i.e. it is
    softmax(log p / T); T > 1 flattens, T < 1 sharpens, T = 1 returns p (up to the clamp of
    zero probabilities at `NLL_FLOOR`). The most probable class never changes, so accuracy does
    not either. Returns float64 (N, C).
    """
    p = as_probs(probs)
    t = as_number(temperature, "temperature", positive=True)
    return torch.softmax(_log_probs(p) / t, dim=1)


def fit_temperature(probs: Any, labels: Any,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature T in `bounds` that minimises the mean NLL of `temper(probs, T)`.

    With z = log p and b = 1/T the NLL, mean_i [logsumexp(b z_i) - b z_iy], is convex in b and
    its derivative, mean_i [E_{softmax(b z_i)} z - z_iy], is non-decreasing, so the optimum is
    the root of the derivative, found by bisection on b to float64 precision (or a bound, when
    the root lies outside). Fit it on held-out (validation) predictions, never on the data the
    tempered predictive is evaluated on.
    """
    p, y = probs_and_labels(probs, labels)
    lo_t, hi_t = (as_number(b, "temperature bound", positive=True) for b in bounds)
    if lo_t >= hi_t:
        raise VarbayesError(f"temperature bounds must be increasing; got {bounds}")
    z = _log_probs(p)
    zy = z.gather(1, y[:, None]).squeeze(1)

    def slope(b: float) -> float:
        w = torch.softmax(b * z, dim=1)
        return float(((w * z).sum(1) - zy).mean())

    lo, hi = 1.0 / hi_t, 1.0 / lo_t  # bounds on b = 1/T
    if slope(lo) >= 0:
        return hi_t
    if slope(hi) <= 0:
        return lo_t
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if slope(mid) > 0:
            hi = mid
        else:
            lo = mid
    return 1.0 / (0.5 * (lo + hi))


def _log_probs(p: torch.Tensor) -> torch.Tensor:
    from varbayes.metrics.classification import NLL_FLOOR  # (classification imports this module)

    return p.clamp_min(NLL_FLOOR).log()
