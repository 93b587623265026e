"""scikit-learn linear models behind the :class:`~mithridate.models.base.Model` protocol."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from mithridate.errors import ConfigError
from mithridate.models.base import as_xy, check_layer
from mithridate.utils import RandomState, check_random_state, seed_from


class SklearnClassifier:
    """Wrap a scikit-learn linear classifier (standardised inputs) as a mithridate Model.

    Parameters
    ----------
    kind : {"logreg", "linear_svm"}, default="logreg"
        Logistic regression (log loss) or a linear SVM (hinge loss).
    C : float, default=1.0
        Inverse regularisation strength.
    random_state : int or Generator, default=0

    Notes
    -----
    Layers: ``"input"`` (the raw flattened features), ``"standardized"`` (what the linear model
    sees) and ``"logits"`` (decision values). ``predict_proba`` of the SVM is a softmax of its
    decision values, documented as a score, not a calibrated probability.

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> splits = load_dataset("breast_cancer")
    >>> clf = SklearnClassifier("linear_svm").fit(splits.train)
    >>> (clf.predict(splits.test.X) == splits.test.y).mean() > 0.9
    True
    """

    def __init__(self, kind: str = "logreg", C: float = 1.0, random_state: RandomState = 0, max_iter: int = 2000):
        self.kind = kind
        self.C = C
        self.random_state = random_state
        self.max_iter = max_iter

    def _estimator(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        seed = seed_from(check_random_state(self.random_state))
        if self.kind == "logreg":
            return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=seed)
        if self.kind == "linear_svm":
            return LinearSVC(C=self.C, max_iter=self.max_iter, random_state=seed)
        raise ConfigError(f"unknown linear model {self.kind!r}; use 'logreg' or 'linear_svm'")

    def fit(self, X: Any, y: Optional[np.ndarray] = None, *, sample_weight: Optional[np.ndarray] = None,
            n_classes: Optional[int] = None) -> "SklearnClassifier":
        from sklearn.preprocessing import StandardScaler

        X, y = as_xy(X, y)
        if y is None:
            raise ConfigError("fit needs labels: pass a Dataset or (X, y)")
        flat = X.reshape(len(X), -1)
        self.input_shape_ = tuple(X.shape[1:])
        self.n_classes_ = int(n_classes) if n_classes is not None else int(np.max(y)) + 1
        self.scaler_ = StandardScaler().fit(flat)
        self.estimator_ = self._estimator().fit(self.scaler_.transform(flat), y, sample_weight=sample_weight)
        return self

    def _flat(self, X: Any) -> np.ndarray:
        X, _ = as_xy(X)
        if not hasattr(self, "estimator_"):
            raise ConfigError("this model is not fitted yet; call fit() first")
        return X.reshape(len(X), -1)

    def logits(self, X: Any) -> np.ndarray:
        flat = self._flat(X)  # checks fitted before touching estimator_
        d = self.estimator_.decision_function(self.scaler_.transform(flat))
        if d.ndim == 1:
            d = np.stack([-d / 2, d / 2], axis=1)
        full = np.full((len(d), self.n_classes_), -1e9)
        full[:, self.estimator_.classes_] = d
        return full

    def predict(self, X: Any) -> np.ndarray:
        return self.logits(X).argmax(axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.kind == "logreg":
            flat = self._flat(X)
            p = self.estimator_.predict_proba(self.scaler_.transform(flat))
            full = np.zeros((len(p), self.n_classes_))
            full[:, self.estimator_.classes_] = p
            return full
        z = self.logits(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def per_sample_loss(self, X: Any, y: np.ndarray) -> np.ndarray:
        """Log loss (logreg) or multiclass hinge loss (SVM) per sample."""
        y = np.asarray(y)
        if self.kind == "logreg":
            p = self.predict_proba(X)[np.arange(len(y)), y]
            return -np.log(np.clip(p, 1e-12, 1.0))
        z = self.logits(X)
        true = z[np.arange(len(y)), y]
        other = z.copy()
        other[np.arange(len(y)), y] = -np.inf
        return np.maximum(0.0, 1.0 - true + other.max(axis=1))

    @property
    def layer_names(self) -> list[str]:
        return ["input", "standardized", "logits"]

    def features(self, X: Any, layer: str = "standardized") -> np.ndarray:
        check_layer(layer, self.layer_names)
        flat = self._flat(X)
        if layer == "input":
            return flat.astype(np.float32)
        if layer == "standardized":
            return self.scaler_.transform(flat).astype(np.float32)
        return self.logits(X).astype(np.float32)


def make_linear_model(kind: str = "logreg", **kwargs: Any) -> SklearnClassifier:
    return SklearnClassifier(kind=kind, **kwargs)
