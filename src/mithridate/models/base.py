"""The one Model protocol every attack, detector and defence talks to.

A model is fit on arrays (or a :class:`~mithridate.data.Dataset`), predicts class indices,
gives class probabilities and per-sample losses, and exposes the activations of a *named*
layer so that detectors state exactly which representation they read.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from mithridate.errors import ConfigError


@runtime_checkable
class Model(Protocol):
    """What mithridate needs from a classifier.

    Attributes
    ----------
    n_classes_ : int
        Number of classes seen by ``fit`` (labels are indices ``0..n_classes_-1``).
    layer_names : list of str
        Layers whose activations :meth:`features` can return; always includes
        ``"penultimate"`` and ``"logits"`` aliases for networks, ``"input"`` for linear models.
    """

    n_classes_: int

    def fit(self, X: Any, y: Optional[np.ndarray] = None, *, sample_weight: Optional[np.ndarray] = None) -> "Model": ...

    def predict(self, X: Any) -> np.ndarray: ...

    def predict_proba(self, X: Any) -> np.ndarray: ...

    def per_sample_loss(self, X: Any, y: np.ndarray) -> np.ndarray: ...

    def features(self, X: Any, layer: str = "penultimate") -> np.ndarray: ...

    @property
    def layer_names(self) -> Sequence[str]: ...


def as_xy(X: Any, y: Optional[np.ndarray] = None) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Accept ``(Dataset)`` or ``(X, y)`` and return plain arrays."""
    from mithridate.data.dataset import Dataset

    if isinstance(X, Dataset):
        if y is not None:
            raise ConfigError("pass either a Dataset or (X, y), not both")
        return np.asarray(X.X), np.asarray(X.y)
    return np.asarray(X), (None if y is None else np.asarray(y))


def check_layer(layer: str, names: Sequence[str]) -> None:
    if layer not in names:
        raise ConfigError(f"model has no layer named {layer!r}; available layers: {', '.join(names)}")
