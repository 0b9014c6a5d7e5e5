"""varbayes: variational and amortized Bayesian deep learning for PyTorch.

The public API: `run` and `reproduce` a method (as the CLI does), `load` and `save` models,
`fit` a learner with the shared engine; subpackages `data`, `metrics`, `nn`, `infer`, `train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from varbayes.errors import VarbayesError
from varbayes.models import load
from varbayes.runner import reproduce, run
from varbayes.train import fit

__version__ = "0.1.0"


def save(model: Any, directory: str | Path) -> None:
    """Save a trained model as safetensors plus JSON into `directory`."""
    model.save(directory)


def bayescap(frozen_model: Any, **settings: Any) -> Any:
    """BayesCap around a frozen `nn.Module`: `cap = varbayes.bayescap(model, fraction=0.3)`,
    `cap.fit((x, y))`, `mean, var = cap.predict(x)` (settings: `bayescap.CapConfig`)."""
    from varbayes.methods.bnn.bayescap import BayesCap

    return BayesCap(frozen_model, **settings)


def turbo_vbi(network: Any, task: str = "classification", **settings: Any) -> Any:
    """Turbo-VBI structured compression of your own MLP: `tv = varbayes.turbo_vbi(net)`,
    `tv.fit(x, y)`, `tv.predict(x)`, `tv.structure()`, `tv.compact()` (settings:
    `turbo_vbi.Config`)."""
    from varbayes.methods.bnn.turbo_vbi import TurboVBI

    return TurboVBI(network, task, **settings)


def predict(model: Any, x: Any) -> Any:
    """`model.predict(x)`: class probabilities, or (mean, variance) for regression."""
    return model.predict(x)


_SUBMODULES = ("data", "metrics", "nn", "infer", "train", "registry", "report", "ssvi")


def __getattr__(name: str) -> Any:
    """Subpackages on first use (`varbayes.data.load(...)`), keeping `import varbayes` light."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"varbayes.{name}")
    raise AttributeError(f"module 'varbayes' has no attribute {name!r}")


__all__ = ["VarbayesError", "bayescap", "fit", "load", "predict", "reproduce", "run", "save",
           "turbo_vbi"]
