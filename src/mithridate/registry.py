"""Name -> class for attacks, detectors and models: the one lookup used by the CLI and configs."""

from __future__ import annotations

from typing import Any, Callable, Dict

from mithridate.errors import ConfigError


def _attacks() -> Dict[str, Callable[..., Any]]:
    from mithridate.attacks.backdoor import BadNets, Blend
    from mithridate.attacks.gradient import GradientPoisoning
    from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip, TargetedFlip
    from mithridate.attacks.minimax import MinimaxAttack
    from mithridate.attacks.regression import OptP, StatP

    return {"badnets": BadNets, "blend": Blend, "statp": StatP, "optp": OptP, "gradient": GradientPoisoning,
            "random-flip": RandomFlip, "targeted-flip": TargetedFlip, "adversarial-flip": AdversarialFlip,
            "minimax": MinimaxAttack}


def _detectors() -> Dict[str, Callable[..., Any]]:
    from mithridate.defenses.detect.activation_clustering import ActivationClustering
    from mithridate.defenses.detect.confident import ConfidentLearning
    from mithridate.defenses.detect.duplicates import DuplicateDetector
    from mithridate.defenses.detect.ensemble import Ensemble
    from mithridate.defenses.detect.influence import InfluenceDetector
    from mithridate.defenses.detect.knn import KNNLabelConsistency
    from mithridate.defenses.detect.loss_dynamics import LossDynamics
    from mithridate.defenses.detect.outliers import IsolationForestDetector, LOFDetector
    from mithridate.defenses.detect.roni import RONIDetector
    from mithridate.defenses.detect.sphere_slab import SlabDetector, SphereDetector
    from mithridate.defenses.detect.spectral import SpectralSignatures
    from mithridate.defenses.detect.spectre import RobustDistance, Spectre
    from mithridate.defenses.detect.strip import StripDetector
    from mithridate.defenses.detect.valuation import DataOOB, KNNShapley

    return {"spectral": SpectralSignatures, "spectre": Spectre, "robust-distance": RobustDistance,
            "knn": KNNLabelConsistency, "confident-learning": ConfidentLearning, "knn-shapley": KNNShapley,
            "data-oob": DataOOB, "isolation-forest": IsolationForestDetector, "lof": LOFDetector,
            "duplicates": DuplicateDetector, "sphere": SphereDetector, "slab": SlabDetector,
            "influence": InfluenceDetector, "roni": RONIDetector, "ensemble": Ensemble,
            "activation-clustering": ActivationClustering, "loss-dynamics": LossDynamics,
            "strip": StripDetector}


# Detectors that read the labels and work best on the raw features (no trained network needed);
# the CLI's ``--input auto`` uses this to decide whether to train a model first.
RAW_INPUT_DETECTORS = frozenset({"knn", "confident-learning", "knn-shapley", "data-oob", "isolation-forest", "lof",
                                 "duplicates", "sphere", "slab", "influence", "roni"})
# Detectors that train a network of their own (a model given to them only lends its configuration):
# the CLI trains none for them.
OWN_NETWORK_DETECTORS = frozenset({"loss-dynamics"})


def _models() -> Dict[str, Callable[..., Any]]:
    from mithridate.models.linear import SklearnClassifier
    from mithridate.models.nets import TorchClassifier
    from mithridate.models.regression import LinearRegressor

    return {
        "auto": lambda **kw: TorchClassifier(arch="auto", **kw),
        "cnn": lambda **kw: TorchClassifier(arch="cnn", **kw),
        "mlp": lambda **kw: TorchClassifier(arch="mlp", **kw),
        "logreg": lambda **kw: SklearnClassifier("logreg", **kw),
        "linear_svm": lambda **kw: SklearnClassifier("linear_svm", **kw),
        "ridge": lambda **kw: LinearRegressor("ridge", **kw),
        "lasso": lambda **kw: LinearRegressor("lasso", **kw),
        "elasticnet": lambda **kw: LinearRegressor("elasticnet", **kw),
    }


_KINDS = {"attack": _attacks, "detector": _detectors, "model": _models}


def names(kind: str) -> list[str]:
    """Registered names of one kind ("attack", "detector" or "model")."""
    if kind not in _KINDS:
        raise ConfigError(f"unknown registry kind {kind!r}; use one of {sorted(_KINDS)}")
    return sorted(_KINDS[kind]())


def get(kind: str, name: str) -> Callable[..., Any]:
    """The class (or factory) registered under ``name``; a clear error lists the known names."""
    if kind not in _KINDS:
        raise ConfigError(f"unknown registry kind {kind!r}; use one of {sorted(_KINDS)}")
    table = _KINDS[kind]()
    key = name.lower().replace("-", "_") if name.lower().replace("-", "_") in table else name.lower()
    if key not in table:
        raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    return table[key]


def describe(kind: str) -> Dict[str, str]:
    """Name -> the first line of the component's docstring (for ``--list`` outputs)."""
    out = {}
    for name in names(kind):
        obj = get(kind, name)
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        out[name] = doc[0].strip() if doc else ""
    return out


def create(kind: str, name: str, **params: Any) -> Any:
    """Instantiate a registered component with keyword parameters."""
    factory = get(kind, name)
    try:
        return factory(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for {kind} {name!r}: {exc}") from None
