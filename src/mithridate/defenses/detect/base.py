"""The Detector contract: ``fit(dataset, model=None)``, ``scores_``, ``flag(budget= | threshold=)``."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError, DataError


class Detector:
    """Base class for sanitisation detectors.

    Subclasses implement ``_score(features, y) -> scores``. Detectors never mutate data and
    never read ``is_poison``. The representation they read is explicit: ``layer`` names a layer
    of the model passed to :meth:`fit`; without a model, the raw (flattened) features are used.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Suspicion per sample; higher means more likely poisoned.
    evidence : {"features", "labels", "subpopulation", "shortcut"}
        Class attribute: what kind of evidence the score reads (see below).
    ids_ : ndarray
        The dataset ids the scores belong to.
    """

    name = "detector"
    layer: Optional[str] = "penultimate"
    #: What the score reads: ``"labels"`` for detectors of labels that disagree with the features
    #: (kNN label consistency, confident learning, data values); ``"subpopulation"`` for detectors
    #: of a class that splits into two groups (spectral signatures, activation clustering);
    #: ``"shortcut"`` for detectors of a prediction that survives what should destroy it (STRIP:
    #: the label kept under superimposition, as a trigger keeps it);
    #: ``"features"`` for the others (a sample unusual in itself: robust distance, outliers).
    #: The ensemble weighs each kind as one voice (see :class:`~mithridate.defenses.detect.ensemble.Ensemble`).
    evidence = "features"

    def features_for(self, dataset: Dataset, model: Any = None) -> np.ndarray:
        if model is None:
            return np.asarray(dataset.X, dtype=np.float32).reshape(len(dataset), -1)
        from mithridate.models.wrap import as_model

        model = as_model(model)  # a plain torch.nn.Module: read through forward hooks
        if self.layer is None:
            raise ConfigError(f"{self.name}: a model was given but no layer to read; pass layer=...")
        feats = np.asarray(model.features(dataset.X, layer=self.layer), dtype=np.float32)
        if feats.shape[0] != len(dataset):
            raise DataError(f"model returned {feats.shape[0]} feature rows for {len(dataset)} samples")
        return feats.reshape(len(dataset), -1)

    def checked_features(self, dataset: Dataset, model: Any = None,
                         features: Optional[np.ndarray] = None) -> np.ndarray:
        """The ``(n, d)`` float32 features :meth:`fit` scores: ``features`` when given, else
        ``model``'s layer ``self.layer`` (or the raw features); checked for shape and NaN."""
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"{self.name}.fit expects a mithridate Dataset, got {type(dataset).__name__}")
        if getattr(dataset, "task", "classification") == "regression" and self.evidence in ("labels", "shortcut"):
            raise ConfigError(f"{self.name} checks class labels; {dataset.name!r} is a regression dataset "
                              "(see docs/regression-poisoning.md for defences of regressors)")
        if features is None:
            features = self.features_for(dataset, model)
        features = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
        if len(features) != len(dataset):
            raise DataError(f"{len(features)} feature rows for {len(dataset)} samples")
        if features.shape[1] == 0:
            raise DataError(f"{self.name}: the features have no columns (shape {features.shape})")
        if not np.all(np.isfinite(features)):
            raise DataError(f"{self.name}: features contain NaN or infinite values")
        return features

    def fit(self, dataset: Dataset, model: Any = None, *, features: Optional[np.ndarray] = None) -> "Detector":
        """Score every sample of ``dataset``.

        Parameters
        ----------
        dataset : Dataset
            The (possibly poisoned) training set.
        model : Model, optional
            A model trained on ``dataset``; its layer ``self.layer`` is read.
        features : ndarray of shape (n_samples, d), optional
            Precomputed features (takes precedence over ``model``), e.g. to share one forward
            pass between several detectors.
        """
        features = self.checked_features(dataset, model, features)
        self.input_kind_ = input_kind(dataset)
        scores = np.asarray(self._score(features, np.asarray(dataset.y)), dtype=np.float64)
        self.scores_ = scores
        self.y_ = np.asarray(dataset.y)
        self.ids_ = np.asarray(dataset.ids)
        return self

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "scores_"):
            raise ConfigError(f"{self.name} is not fitted yet; call fit() first")

    def default_threshold(self) -> float:
        """Threshold used by :meth:`flag` when neither budget nor threshold is given."""
        raise ConfigError(f"{self.name} has no default threshold; pass budget= or threshold=")

    def default_flags(self) -> np.ndarray:
        """Flags of the budget-free rule: ``z_ > z_threshold`` for detectors that compute a
        robust z-score ``z_``, else ``scores_ > default_threshold()``."""
        if hasattr(self, "z_") and getattr(self, "z_threshold", None) is not None:
            return self.z_ > float(self.z_threshold)
        return self.scores_ > float(self.default_threshold())

    def flag(self, budget: Optional[float] = None, threshold: Optional[float] = None) -> np.ndarray:
        """Boolean mask of flagged samples.

        Parameters
        ----------
        budget : float in (0, 1), optional
            Flag the top ``ceil(budget * n)`` scores. Spectral signatures, SPECTRE / robust
            distance and activation clustering apply it per class as their papers do: the top
            ``ceil(1.5 * budget * n_c)`` of each class c (so "5% of my data is poisoned" flags
            about 7.5% of every class); RONI flags whole batches within the budget.
        threshold : float, optional
            Flag scores strictly above it.
        With neither, the detector's :meth:`default_threshold` is used.
        """
        self._check_fitted()
        if budget is not None and threshold is not None:
            raise ConfigError("pass either budget or threshold, not both")
        if budget is not None:
            return self._flag_budget(_check_budget(budget))
        if threshold is None:
            return self.default_flags()
        return self.scores_ > float(threshold)

    def _flag_budget(self, budget: float) -> np.ndarray:
        return top_k_mask(self.scores_, budget_count(budget, len(self.scores_)))


def input_kind(dataset: Dataset) -> str:
    """``"text"`` (features derived from a ``text`` metadata column, e.g. :func:`~mithridate.data.text.load_jsonl`),
    ``"image"`` or ``"table"``: detectors use it to pick defaults such as column standardisation,
    which suits raw table columns but wrecks unit-length text embeddings."""
    if "text" in dataset.meta.columns:
        return "text"
    return "image" if dataset.is_image else "table"


def resolve_standardize(value: Any, detector: "Detector") -> bool:
    """``standardize="auto"``: standardise columns unless the input is text."""
    if isinstance(value, str):
        if value != "auto":
            raise ConfigError(f"{detector.name}: standardize must be True, False or 'auto', got {value!r}")
        return getattr(detector, "input_kind_", "table") != "text"
    return bool(value)


def _check_budget(budget: Any) -> float:
    try:
        b = float(budget)
    except (TypeError, ValueError):
        raise ConfigError(f"budget must be a number in (0, 1), got {budget!r}") from None
    if not 0.0 < b < 1.0:
        raise ConfigError(f"budget must be in (0, 1), got {budget!r}")
    return b


def budget_count(fraction: float, n: int) -> int:
    """ceil(fraction * n) without floating-point noise (1.5 * 0.1 * 200 is 30, not 31)."""
    return int(min(n, math.ceil(round(fraction * n, 9))))


def per_class_budget_mask(scores: np.ndarray, y: np.ndarray, fraction: float) -> np.ndarray:
    """In every class, flag the top ``ceil(fraction * n_c)`` scores."""
    mask = np.zeros(len(scores), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        mask[idx[top_k_mask(scores[idx], budget_count(fraction, len(idx)))]] = True
    return mask


def robust_z(values: np.ndarray, reference: Optional[np.ndarray] = None, axis: Optional[int] = None) -> np.ndarray:
    """Robust z-score: (v - median) / (1.4826 * MAD), falling back to the std (or 1) when MAD is 0.

    The median and MAD are those of ``reference`` when it is given (e.g. the clean-looking group
    of a class), else of ``values`` themselves. ``axis=0`` scores each column of a 2-D array
    against its own median and MAD."""
    ref = values if reference is None else reference
    if axis is None:
        med = np.median(ref)
        mad = 1.4826 * np.median(np.abs(ref - med))
        if not mad > 1e-12:
            mad = float(np.std(ref)) or 1.0
        return (values - med) / mad
    med = np.median(ref, axis=axis, keepdims=True)
    mad = 1.4826 * np.median(np.abs(ref - med), axis=axis, keepdims=True)
    sd = np.std(ref, axis=axis, keepdims=True)
    return (values - med) / np.where(mad > 1e-12, mad, np.where(sd > 0, sd, 1.0))


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` highest scores (stable order breaks ties by position)."""
    mask = np.zeros(len(scores), bool)
    k = int(min(max(k, 0), len(scores)))
    if k:
        mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def check_validation_set(dataset: Dataset, validation: Dataset) -> None:
    """A validation set given to a detector must be a Dataset with the training set's label encoding."""
    if not isinstance(validation, Dataset):
        raise ConfigError(f"validation must be a mithridate Dataset, got {type(validation).__name__}")
    if validation.classes != dataset.classes:
        raise DataError(
            f"validation classes {validation.classes} differ from the training classes {dataset.classes}; "
            "both sets must share one label encoding"
        )
