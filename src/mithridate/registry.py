"""Name -> class for attacks, detectors and models: the one lookup used by the CLI and configs."""

from __future__ import annotations

from typing import Any, Callable, Dict

from mithridate.errors import ConfigError


def _attacks() -> Dict[str, Callable[..., Any]]:
    from mithridate.attacks.backdoor import BadNets, Blend

    return {"badnets": BadNets, "blend": Blend}


def _detectors() -> Dict[str, Callable[..., Any]]:
    from mithridate.defenses.detect.spectral import SpectralSignatures
    from mithridate.defenses.detect.spectre import RobustDistance, Spectre

    return {"spectral": SpectralSignatures, "spectre": Spectre, "robust-distance": RobustDistance}


def _models() -> Dict[str, Callable[..., Any]]:
    from mithridate.models.linear import SklearnClassifier
    from mithridate.models.nets import TorchClassifier

    return {
        "auto": lambda **kw: TorchClassifier(arch="auto", **kw),
        "cnn": lambda **kw: TorchClassifier(arch="cnn", **kw),
        "mlp": lambda **kw: TorchClassifier(arch="mlp", **kw),
        "logreg": lambda **kw: SklearnClassifier("logreg", **kw),
        "linear_svm": lambda **kw: SklearnClassifier("linear_svm", **kw),
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


def create(kind: str, name: str, **params: Any) -> Any:
    """Instantiate a registered component with keyword parameters."""
    factory = get(kind, name)
    try:
        return factory(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for {kind} {name!r}: {exc}") from None
