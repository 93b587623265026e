"""Feature-space outliers: isolation forest (Liu et al. 2008) and local outlier factor (Breunig et al. 2000).

A poison that looks unlike the rest of its (claimed) class — a stamped trigger on raw pixels, a
feature vector pushed far from its class, an adversarial point on the boundary of the data box —
is an outlier among the samples that carry its label. Both detectors fit an unsupervised outlier
model to each class separately (``per_class=True``, default) or to the whole set, read a raw
outlier score o_i (higher = more abnormal) and normalise it within the fitted group G(i):

    score_i = z_i = (o_i - median_{G(i)}(o)) / (1.4826 · MAD_{G(i)}(o))          (robust z)

so that the clean majority of every class sits near 0 with unit spread, whatever the class's
size, scale or shape, and one global ranking (one threshold, one budget) compares classes fairly.
``flag()`` with no argument flags ``z > 3``.

Raw scores
----------
* **Isolation forest**: o(x) = s(x, ψ) = 2^{-E[h(x)] / c(ψ)} (Liu et al. 2008, Eq. 2), where
  h(x) is the path length of x in a random isolation tree grown on ψ sub-sampled points and
  c(ψ) = 2 H(ψ - 1) - 2 (ψ - 1)/ψ the average path length of an unsuccessful BST search. Points
  that random axis-aligned cuts isolate quickly are anomalous; s is in (0, 1]. scikit-learn's
  ``IsolationForest.score_samples`` returns -s. Per-feature scaling does not change the trees.
* **Local outlier factor**: o(x) = LOF_k(x) = mean_{p ∈ N_k(x)} lrd_k(p) / lrd_k(x)
  (Breunig et al. 2000, Def. 7), with lrd_k the inverse of the mean reachability distance
  max(k-distance(p), d(x, p)) to the k nearest neighbours. About 1 inside a cluster, much larger
  for points in sparser regions than their neighbours. scikit-learn's ``LocalOutlierFactor``
  (``novelty=False``: every training sample is scored against the others) exposes
  ``negative_outlier_factor_ = -LOF``.

Per class or not
----------------
Per class, a sample is compared with the samples that carry its label: outliers of a tight class
are not hidden by a wide one, and on well-separated classes a flipped label is an outlier of its
claimed class (digits, 20% random flips: AUROC 0.96 on raw pixels for both detectors). A
dirty-label backdoor, however, puts all its poisons into the target class, where they are a large
minority (5% BadNets on digits: a third of class 0) and no longer rare; one model over the whole
set then sees the trigger as the rare thing (isolation forest AUROC 0.985 with
``per_class=False`` against 0.82 per class).

What they do not see: label flips between overlapping classes (breast_cancer: AUROC 0.56–0.64)
and with ``per_class=False`` (≈0.5); copy campaigns (a tight cluster of copies is the densest,
most "normal" region; LOF ranks it *below* clean data) — use
:class:`~mithridate.defenses.detect.duplicates.DuplicateDetector`; clean-label poisons built to
sit inside their class. Use the label detectors (:mod:`~mithridate.defenses.detect.knn`,
confident learning) and spectral methods for those.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from mithridate.data.dataset import Dataset
from mithridate.defenses.detect.base import Detector, robust_z
from mithridate.defenses.detect.knn import standardize
from mithridate.errors import ConfigError
from mithridate.utils import RandomState, check_random_state, seed_from

__all__ = ["IsolationForestDetector", "LOFDetector", "reads_raw_table"]


def reads_raw_table(detector: Detector, dataset: Any, model: Any = None, features: Any = None) -> bool:
    """True when ``fit`` will score the raw columns of a table (no image, no model layer, no
    precomputed features): the case where per-column standardisation is the right default."""
    if features is not None or not isinstance(dataset, Dataset) or dataset.is_image:
        return False
    if "text" in dataset.meta.columns:  # text embeddings (load_jsonl): unit-length rows, not raw columns
        return False
    return model is None or getattr(detector, "layer", None) is None


def resolve_auto(value: Any, what: str, who: str, choices: tuple, raw_table: bool, table: Any, other: Any) -> Any:
    """Resolve an ``"auto"`` option: ``table`` for raw tabular columns, ``other`` otherwise."""
    if isinstance(value, str) and value == "auto":
        return table if raw_table else other
    if value not in choices:
        raise ConfigError(f"{who}: {what} must be one of {('auto',) + choices}, got {value!r}")
    return value


class _OutlierDetector(Detector):
    """Shared logic: fit an outlier model per class (or globally), robust-z the raw scores."""

    per_class: bool = True
    z_threshold: float = 3.0

    def _groups(self, y: np.ndarray) -> list[tuple[object, np.ndarray]]:
        if not isinstance(self.per_class, (bool, np.bool_)):
            raise ConfigError(f"{self.name}: per_class must be True or False, got {self.per_class!r}")
        if self.per_class:
            return [(int(c), np.flatnonzero(y == c)) for c in np.unique(y)]
        return [("all", np.arange(len(y)))]

    def _check_params(self, features: np.ndarray, groups: list) -> None:  # pragma: no cover - hook
        pass

    def _raw(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _prepare(self, features: np.ndarray) -> np.ndarray:
        return features

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        try:
            z_thr = float(self.z_threshold)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.name}: z_threshold must be a number, got {self.z_threshold!r}") from None
        if not np.isfinite(z_thr):
            raise ConfigError(f"{self.name}: z_threshold must be finite, got {self.z_threshold!r}")
        groups = self._groups(y)
        self._check_params(features, groups)
        rng = check_random_state(self.random_state)
        X = self._prepare(features)
        raw = np.zeros(len(X))
        z = np.zeros(len(X))
        for _, idx in groups:
            raw[idx] = self._raw(X[idx], rng)
            z[idx] = robust_z(raw[idx])
        self.raw_scores_ = raw
        self.z_ = z
        self.groups_fitted_ = [g for g, _ in groups]
        return z


class IsolationForestDetector(_OutlierDetector):
    """Score each sample by how easily random axis-aligned cuts isolate it from its class.

    The raw score is the isolation-forest anomaly score s(x) = 2^{-E[h(x)]/c(ψ)} (scikit-learn's
    ``-IsolationForest.score_samples``), fitted on the samples of each class (or on all samples
    with ``per_class=False``) and turned into a robust z-score within that group.

    Parameters
    ----------
    n_estimators : int, default=100
        Isolation trees per forest (the paper's t = 100).
    max_samples : int, float or "auto", default="auto"
        Sub-sample size ψ per tree; ``"auto"`` is min(256, n_group) (the paper's ψ = 256).
    max_features : int or float, default=1.0
        Features drawn per tree (scikit-learn semantics).
    per_class : bool, default=True
        Fit one forest per class (a sample is compared with the samples carrying its label); with
        ``False`` one forest over the whole set. Per class suits outliers within a class and
        classes of different spread (over the whole set, a wide class's ordinary members outrank
        a tight class's outliers); ``False`` suits dirty-label backdoors, whose poisons crowd the
        target class (see the module docstring for measured AUROCs).
    z_threshold : float, default=3.0
        :meth:`flag` with no argument flags robust z-scores above it.
    layer : str, default="penultimate"
        Model layer read when :meth:`fit` gets a model; without one, the raw flattened features.
    random_state : int, numpy Generator or None, default=0
        Seeds the forests (each group gets a seed drawn from it); the default int makes scores
        reproducible (None draws fresh randomness).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Robust z-score of the anomaly score within the sample's class (or the whole set).
    z_ : ndarray of shape (n_samples,)
        Same as ``scores_`` (used by the default flag rule).
    raw_scores_ : ndarray of shape (n_samples,)
        The anomaly score s(x) in (0, 1] before normalisation; only comparable within a group.
    groups_fitted_ : list
        Class indices that got a forest (``["all"]`` with ``per_class=False``).

    Examples
    --------
    >>> import numpy as np
    >>> from mithridate.data import Dataset
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (100, 5)), rng.normal(0, 10, (100, 5))]
    >>> y = np.r_[np.zeros(100, int), np.ones(100, int)]
    >>> X[:3] += 8.0                           # three far points in the tight class 0
    >>> det = IsolationForestDetector(random_state=0).fit(Dataset.from_arrays(X, y))
    >>> sorted(np.argsort(-det.scores_)[:3].tolist())
    [0, 1, 2]
    >>> flagged = det.flag()                   # robust z > 3, no budget needed

    References
    ----------
    Liu, Ting, Zhou. "Isolation Forest." ICDM 2008.
    """

    name = "isolation-forest"

    def __init__(self, n_estimators: int = 100, max_samples="auto", max_features=1.0, per_class: bool = True,
                 z_threshold: float = 3.0, layer: str = "penultimate", random_state: RandomState = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.per_class = per_class
        self.z_threshold = z_threshold
        self.layer = layer
        self.random_state = random_state

    def _check_params(self, features: np.ndarray, groups: list) -> None:
        n = self.n_estimators
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"{self.name}: n_estimators must be a positive int, got {n!r}")

    def _raw(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from sklearn.ensemble import IsolationForest

        seed = seed_from(rng)
        if len(X) < 2:  # a lone sample: nothing to isolate it from
            return np.zeros(len(X))
        max_samples = self.max_samples
        if isinstance(max_samples, (int, np.integer)) and not isinstance(max_samples, bool):
            max_samples = min(int(max_samples), len(X))  # a small class: use all of it
        try:
            forest = IsolationForest(n_estimators=int(self.n_estimators), max_samples=max_samples,
                                     max_features=self.max_features, random_state=seed)
            forest.fit(X)
        except ValueError as exc:  # scikit-learn's own parameter validation
            raise ConfigError(f"{self.name}: {exc}") from None
        return -forest.score_samples(X)


class LOFDetector(_OutlierDetector):
    """Score each sample by its local outlier factor among the samples of its class.

    The raw score is LOF_k(x) (scikit-learn's ``-LocalOutlierFactor(novelty=False)
    .negative_outlier_factor_``): how much sparser x's neighbourhood is than its neighbours'.
    It is computed per class (or over the whole set with ``per_class=False``) and turned into a
    robust z-score within that group.

    Parameters
    ----------
    n_neighbors : int, default=20
        k, the neighbourhood size (Breunig et al. recommend 10–50; 20 is scikit-learn's default).
        Every fitted group needs at least ``n_neighbors + 1`` samples: a smaller class raises
        :class:`~mithridate.errors.ConfigError` naming the class and the largest k that fits
        (k is never lowered silently, since that changes what the score means for that class
        only). Lower ``n_neighbors`` or use ``per_class=False`` for tiny classes.
    metric : str, default="euclidean"
        Any metric scikit-learn's ``NearestNeighbors`` accepts (e.g. ``"cosine"``).
    standardize : bool or "auto", default="auto"
        Scale every feature column to zero mean and unit variance over the whole set first (as
        :class:`~mithridate.defenses.detect.knn.KNNLabelConsistency` does), so that no single
        large-valued column (breast_cancer's ``area``) decides the neighbours. ``"auto"``
        standardises the raw columns of tables and leaves images, model layers and
        precomputed ``features=`` as they are (their scale is meaningful; standardising
        near-constant pixel columns amplifies noise). The choice made is ``standardize_``.
    per_class : bool, default=True
        One LOF per class; ``False`` fits one over the whole set.
    z_threshold : float, default=3.0
        :meth:`flag` with no argument flags robust z-scores above it.
    layer : str, default="penultimate"
        Model layer read when :meth:`fit` gets a model; without one, the raw flattened features.
    random_state : int, numpy Generator or None, default=None
        Unused (LOF is deterministic); accepted so every detector is built the same way.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Robust z-score of LOF within the sample's class (or the whole set).
    z_ : ndarray of shape (n_samples,)
        Same as ``scores_`` (used by the default flag rule).
    raw_scores_ : ndarray of shape (n_samples,)
        LOF_k(x) itself (≈ 1 for inliers).
    standardize_ : bool
        Whether the columns were standardised (``standardize`` resolved).
    groups_fitted_ : list
        Class indices that got a LOF model (``["all"]`` with ``per_class=False``).

    Examples
    --------
    >>> import numpy as np
    >>> from mithridate.data import Dataset
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (100, 5)), rng.normal(0, 10, (100, 5))]
    >>> y = np.r_[np.zeros(100, int), np.ones(100, int)]
    >>> X[:3] += 8.0
    >>> det = LOFDetector(n_neighbors=20).fit(Dataset.from_arrays(X, y))
    >>> sorted(np.argsort(-det.scores_)[:3].tolist())
    [0, 1, 2]

    References
    ----------
    Breunig, Kriegel, Ng, Sander. "LOF: Identifying Density-Based Local Outliers." SIGMOD 2000.
    """

    name = "lof"

    def __init__(self, n_neighbors: int = 20, metric: str = "euclidean", standardize: Union[bool, str] = "auto",
                 per_class: bool = True, z_threshold: float = 3.0, layer: str = "penultimate",
                 random_state: RandomState = None):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.standardize = standardize
        self.per_class = per_class
        self.z_threshold = z_threshold
        self.layer = layer
        self.random_state = random_state

    def _check_params(self, features: np.ndarray, groups: list) -> None:
        k = self.n_neighbors
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"{self.name}: n_neighbors must be a positive int, got {k!r}")
        for g, idx in groups:
            if len(idx) <= self.n_neighbors:
                where = "the data set" if g == "all" else f"class index {g}"
                fixes = [f"pass n_neighbors <= {len(idx) - 1}"] if len(idx) > 1 else []
                if g != "all":
                    fixes.append("use per_class=False")
                raise ConfigError(
                    f"{self.name}: n_neighbors={k} needs at least {k + 1} samples per fitted group "
                    f"(each sample's neighbours exclude itself), but {where} has {len(idx)}; "
                    + " or ".join(fixes + ["add samples"])
                )

    def fit(self, dataset: Dataset, model: Any = None, *, features: Optional[np.ndarray] = None) -> "LOFDetector":
        """Score every sample of ``dataset`` (see :meth:`Detector.fit`)."""
        self._raw_table = reads_raw_table(self, dataset, model, features)
        return super().fit(dataset, model, features=features)

    def _prepare(self, features: np.ndarray) -> np.ndarray:
        self.standardize_ = bool(resolve_auto(self.standardize, "standardize", self.name, (True, False),
                                              getattr(self, "_raw_table", False), True, False))
        if self.standardize_:
            (features,) = standardize(features)
        return features

    def _raw(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from sklearn.neighbors import LocalOutlierFactor

        try:
            lof = LocalOutlierFactor(n_neighbors=int(self.n_neighbors), metric=self.metric, novelty=False)
            lof.fit(X)
        except ValueError as exc:
            raise ConfigError(f"{self.name}: {exc}") from None
        return -lof.negative_outlier_factor_
