"""Method name -> the module that implements it, with what the README's table shows.

Adding a method means writing its module (see `varbayes.method` for what it defines) and one
`Method(...)` line below; the CLI, `varbayes list` and the README's table pick it up.
`status` says how the method's reproduction came out in its full run, as its docs page records.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from varbayes.errors import one_of


@dataclass(frozen=True)
class Method:
    """A registry entry."""

    name: str
    module: str
    family: str
    paper: str
    claim: str
    status: str  # baseline | reproduced | partly reproduced | not reproduced | in progress
    docs: str


METHODS: tuple[Method, ...] = (
    Method(
        "deterministic", "varbayes.methods.baselines.deterministic", "baselines",
        "-", "the non-Bayesian network every claim is measured against", "baseline",
        "docs/methods/deterministic.md",
    ),
    Method("programmable-vi", "varbayes.methods.vi.programmable_vi", "vi", "Becker et al., PLDI 2024", "noisy-cone objective table (3 runs); unbiased REINFORCE/ENUM/MVD gradients; IWAE VAE", "reproduced", "docs/methods/programmable-vi.md"),  # noqa: E501
    Method("mfvi", "varbayes.methods.bnn.mfvi", "bnn", "Blundell et al. 2015; Kingma et al. 2015", "uncertainty grows away from the data; lower NLL than the deterministic network", "reproduced", "docs/methods/mfvi.md"),  # noqa: E501
    Method("mc-dropout", "varbayes.methods.baselines.mc_dropout", "baselines", "Gal & Ghahramani 2016", "uncertainty grows away from the data; lower NLL than the deterministic network", "reproduced", "docs/methods/mc-dropout.md"),  # noqa: E501
    Method("deep-ensemble", "varbayes.methods.baselines.deep_ensemble", "baselines", "Lakshminarayanan et al. 2017", "uncertainty grows away from the data; lower NLL than the deterministic network", "reproduced", "docs/methods/deep-ensemble.md"),  # noqa: E501
    Method(
        "dp-bayes-estimate", "varbayes.methods.statistics.dp_bayes_estimate", "statistics",
        "Zanella-Béguelin et al., ICML 2023",
        "posterior over epsilon from a membership-inference audit, narrower than Clopper-Pearson",
        "reproduced", "docs/methods/dp-bayes-estimate.md",
    ),
    Method("turbo-vbi", "varbayes.methods.bnn.turbo_vbi", "bnn", "Xia, Tsang, Lau, IEEE TSP 2023", "regular (structured) sparsity: far fewer weights and more whole neurons removed than unstructured pruning at the same accuracy", "partly reproduced", "docs/methods/turbo-vbi.md"),  # noqa: E501
    Method("bayescap", "varbayes.methods.bnn.bayescap", "bnn", "Upadhyay et al., ECCV 2022", "calibrated per-element uncertainty for a frozen network from a cap trained on a fraction of the data", "partly reproduced", "docs/methods/bayescap.md"),  # noqa: E501
    Method(
        "collapse-cvae", "varbayes.methods.latent.collapse_cvae", "latent",
        "Dang et al. 2024", "linear theory predicts which CVAE/HVAE latents collapse",
        "reproduced", "docs/methods/collapse-cvae.md",
    ),
    Method(
        "attr-cvae", "varbayes.methods.latent.attr_cvae", "latent",
        "Debbagh 2023; Sohn et al. 2015",
        "a KL weight on the CVAE bound improves samples from the conditional prior",
        "partly reproduced", "docs/methods/attr-cvae.md",
    ),
    Method("pfn", "varbayes.methods.amortized.pfn", "amortized", "Müller et al., ICLR 2022", "a transformer trained on prior data matches the exact GP posterior predictive", "reproduced", "docs/methods/pfn.md"),  # noqa: E501
    Method("distribution-transformer", "varbayes.methods.amortized.distribution_transformer", "amortized", "Whittle et al., arXiv 2502.02463", "GMM prior + data -> GMM posterior in one call, close to the exact posterior", "reproduced", "docs/methods/distribution-transformer.md"),  # noqa: E501
    Method("niw-meta", "varbayes.methods.amortized.niw_meta", "amortized", "Kim & Hospedales, ICLR 2024", "one-time closed-form episode posteriors beat MAML on few-shot regression", "partly reproduced", "docs/methods/niw-meta.md"),  # noqa: E501
    Method("ssvi", "varbayes.methods.bnn.ssvi", "bnn", "Li et al. 2024 (ICLR), arXiv 2402.11025", "a BNN sparse throughout training: 10-20x smaller, up to 20x fewer training FLOPs, < 3 points accuracy loss vs dense VI", "partly reproduced", "docs/methods/ssvi.md"),  # noqa: E501
)

_BY_NAME = {m.name: m for m in METHODS}


def names() -> list[str]:
    """All method names, in registry order."""
    return [m.name for m in METHODS]


def get(name: str) -> Method:
    """The registry entry for `name`, or a one-line error listing the valid names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise one_of("method", name, names()) from None


def module(name: str) -> ModuleType:
    """Import the module that implements `name`."""
    return importlib.import_module(get(name).module)
