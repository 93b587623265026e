"""Sphere and slab defences (Steinhardt, Koh & Liang, NeurIPS 2017, Sec. 2 and Fig. 1).

For a binary task with class centroids μ_y, the defender keeps a training point (x, y) only
when it lies in the feasible set F_y:

    sphere:  ‖x − μ_y‖₂ ≤ r_y
    slab:    |⟨x − μ_y, μ_y − μ_−y⟩| ≤ s_y

the radii r_y, s_y being a percentile (70 in the paper's experiments) of the same distances over
the clean points of class y. The detectors below score every sample by its distance divided by
the radius of its class, so that ``score > 1`` means "outside the feasible set" and
:meth:`~mithridate.defenses.detect.base.Detector.flag` with no argument drops exactly the
points the paper's defender drops.

Centroids come from one of two places:

* ``"oracle"`` — computed from a clean dataset passed as ``reference=`` (the paper's *oracle*
  defence: the defender knows the true class means and radii; the certificate of
  :mod:`mithridate.defenses.certify.sphere_slab` is stated for it);
* ``"data"`` — from the (possibly poisoned) data itself (the paper's *data-dependent* defence).
  A plain mean can be dragged by the poisons, so a robust estimate is used: the coordinate-wise
  median (default) or a trimmed mean (the mean of the ``1 − trim`` fraction of the class
  closest to the coordinate-wise median). The radii are then the percentile of the poisoned
  data's own distances to that centre.

The shared geometry lives in :class:`FeasibleSet`, which the certificate and the minimax attack
use too, so "inside the feasible set" means one thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

import numpy as np

from mithridate.data.dataset import Dataset
from mithridate.defenses.detect.base import Detector
from mithridate.errors import ConfigError, DataError

__all__ = ["FeasibleSet", "SphereDetector", "SlabDetector", "class_centroids", "parse_defense"]

DEFENSES = ("sphere", "slab", "sphere+slab")
CENTERS = ("mean", "median", "trimmed_mean")


def parse_defense(defense: str) -> Tuple[bool, bool]:
    """``"sphere"``, ``"slab"`` or ``"sphere+slab"`` (``"slab+sphere"``) -> (use_sphere, use_slab)."""
    if not isinstance(defense, str):
        raise ConfigError(f"defense must be one of {DEFENSES}, got {defense!r}")
    parts = {p.strip().lower() for p in defense.replace(" ", "").split("+") if p.strip()}
    if not parts or not parts <= {"sphere", "slab"}:
        raise ConfigError(f"defense must be one of {DEFENSES}, got {defense!r}")
    return "sphere" in parts, "slab" in parts


def _check_percentile(percentile: Any) -> float:
    try:
        p = float(percentile)
    except (TypeError, ValueError):
        raise ConfigError(f"percentile must be a number in (0, 100], got {percentile!r}") from None
    if not 0.0 < p <= 100.0:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile!r} (the paper uses 70)")
    return p


def class_centroids(X: np.ndarray, y: np.ndarray, n_classes: int, center: str = "mean",
                    trim: float = 0.25) -> np.ndarray:
    """Per-class centre of the rows of ``X`` (``n_classes x d``, float64).

    Parameters
    ----------
    center : {"mean", "median", "trimmed_mean"}
        ``"mean"`` is the paper's centroid (used for the oracle defence, on clean data).
        ``"median"`` is the coordinate-wise median; ``"trimmed_mean"`` averages the
        ``1 − trim`` fraction of the class closest (Euclidean) to the coordinate-wise median.
        Both robust choices resist a minority of far-away poisons.
    trim : float in [0, 1)
        Fraction dropped by ``"trimmed_mean"``.
    """
    if center not in CENTERS:
        raise ConfigError(f"center must be one of {CENTERS}, got {center!r}")
    if not 0.0 <= float(trim) < 1.0:
        raise ConfigError(f"trim must be in [0, 1), got {trim!r}")
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros((n_classes, X.shape[1]))
    for c in range(n_classes):
        Xc = X[y == c]
        if len(Xc) == 0:
            raise DataError(f"class index {c} has no samples; a centroid needs at least one per class")
        if center == "mean":
            out[c] = Xc.mean(axis=0)
        elif center == "median":
            out[c] = np.median(Xc, axis=0)
        else:
            med = np.median(Xc, axis=0)
            keep = max(1, int(np.ceil((1.0 - float(trim)) * len(Xc))))
            dist = np.linalg.norm(Xc - med, axis=1)
            out[c] = Xc[np.argsort(dist, kind="stable")[:keep]].mean(axis=0)
    return out


@dataclass(frozen=True)
class FeasibleSet:
    """The defender's feasible sets F_y = sphere_y ∩ slab_y (∩ box), one per class.

    Attributes
    ----------
    centroids : ndarray of shape (n_classes, d)
        μ_y.
    sphere_radii : ndarray of shape (n_classes,)
        r_y.
    slab_radii : ndarray of shape (n_classes,) or None
        s_y, for binary tasks only (``None`` otherwise).
    slab_vector : ndarray of shape (d,) or None
        v = μ_1 − μ_0. The slab of class y uses μ_y − μ_−y = ±v; only |⟨x − μ_y, v⟩| matters.
    box : tuple of two ndarrays of shape (d,), or None
        Per-feature bounds [lo, hi] every point must respect (e.g. pixels in [0, 1]); used by
        the certificate and the attack, not by the detectors' scores.
    percentile : float
        The percentile the radii were taken at.
    """

    centroids: np.ndarray
    sphere_radii: np.ndarray
    slab_radii: Optional[np.ndarray] = None
    slab_vector: Optional[np.ndarray] = None
    box: Optional[Tuple[np.ndarray, np.ndarray]] = None
    percentile: float = 70.0

    @property
    def n_classes(self) -> int:
        return int(len(self.centroids))

    @property
    def n_features(self) -> int:
        return int(self.centroids.shape[1])

    @classmethod
    def from_data(cls, X: Any, y: Any, n_classes: Optional[int] = None, *, percentile: float = 70.0,
                  center: str = "mean", trim: float = 0.25, box: Optional[Tuple[Any, Any]] = None,
                  centroids: Optional[np.ndarray] = None) -> "FeasibleSet":
        """Centroids and radii from the rows of ``X`` (flattened) with class indices ``y``.

        The radii are the ``percentile`` of ‖x − μ_y‖ and |⟨x − μ_y, μ_1 − μ_0⟩| over the
        points of class y. Pass ``centroids`` to measure the radii around given centres.
        """
        percentile = _check_percentile(percentile)
        X = np.asarray(X, dtype=np.float64)
        X = X.reshape(len(X), -1)
        y = np.asarray(y).astype(np.int64)
        if len(X) != len(y):
            raise DataError(f"{len(X)} feature rows for {len(y)} labels")
        if n_classes is None:
            n_classes = int(y.max()) + 1
        if centroids is None:
            centroids = class_centroids(X, y, n_classes, center=center, trim=trim)
        centroids = np.asarray(centroids, dtype=np.float64)
        if centroids.shape != (n_classes, X.shape[1]):
            raise DataError(f"centroids must have shape {(n_classes, X.shape[1])}, got {centroids.shape}")
        sphere = np.zeros(n_classes)
        slab = None
        vec = None
        if n_classes == 2:
            vec = centroids[1] - centroids[0]
            slab = np.zeros(2)
        for c in range(n_classes):
            Xc = X[y == c] - centroids[c]
            if len(Xc) == 0:
                raise DataError(f"class index {c} has no samples; the radii need at least one per class")
            sphere[c] = np.percentile(np.linalg.norm(Xc, axis=1), percentile)
            if vec is not None:
                slab[c] = np.percentile(np.abs(Xc @ vec), percentile)
        box_arr = None
        if box is not None:
            lo, hi = (np.broadcast_to(np.asarray(b, dtype=np.float64), (X.shape[1],)).copy() for b in box)
            if np.any(lo > hi):
                raise ConfigError("box lower bounds must not exceed the upper bounds")
            box_arr = (lo, hi)
        return cls(centroids=centroids, sphere_radii=sphere, slab_radii=slab, slab_vector=vec, box=box_arr,
                   percentile=percentile)

    # -- scores ---------------------------------------------------------------------------
    def _xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        X = X.reshape(len(X), -1)
        y = np.asarray(y).astype(np.int64).reshape(-1)
        if X.shape[1] != self.n_features:
            raise DataError(f"points have {X.shape[1]} features, the feasible set {self.n_features}")
        if len(X) != len(y):
            raise DataError(f"{len(X)} points for {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= self.n_classes):
            raise DataError(f"labels must be class indices in [0, {self.n_classes - 1}]")
        return X, y

    def sphere_distances(self, X: Any, y: Any) -> np.ndarray:
        """‖x − μ_y‖ per point."""
        X, y = self._xy(X, y)
        return np.linalg.norm(X - self.centroids[y], axis=1)

    def slab_distances(self, X: Any, y: Any) -> np.ndarray:
        """|⟨x − μ_y, μ_y − μ_−y⟩| per point (binary tasks only)."""
        if self.slab_vector is None:
            raise ConfigError(
                f"the slab defence needs exactly two classes, this data has {self.n_classes}; "
                "select two with load_dataset(..., classes=[a, b]) or use the sphere defence"
            )
        X, y = self._xy(X, y)
        return np.abs(np.einsum("ij,j->i", X - self.centroids[y], self.slab_vector))

    def sphere_scores(self, X: Any, y: Any) -> np.ndarray:
        """‖x − μ_y‖ / r_y (> 1 outside the sphere)."""
        _, yy = self._xy(X, y)
        return _ratio(self.sphere_distances(X, y), self.sphere_radii[yy])

    def slab_scores(self, X: Any, y: Any) -> np.ndarray:
        """|⟨x − μ_y, μ_y − μ_−y⟩| / s_y (> 1 outside the slab)."""
        dist = self.slab_distances(X, y)
        _, yy = self._xy(X, y)
        return _ratio(dist, self.slab_radii[yy])

    def scores(self, X: Any, y: Any, defense: str = "sphere+slab") -> np.ndarray:
        """The largest score over the constraints of ``defense`` (> 1 outside F_y)."""
        use_sphere, use_slab = parse_defense(defense)
        parts = []
        if use_sphere:
            parts.append(self.sphere_scores(X, y))
        if use_slab:
            parts.append(self.slab_scores(X, y))
        return np.max(np.stack(parts), axis=0)

    def contains(self, X: Any, y: Any, defense: str = "sphere+slab", *, tol: float = 1e-6) -> np.ndarray:
        """Boolean mask of the points inside F_y (and inside the box, when there is one).

        ``tol`` is a relative slack on the radii (and an absolute one on the box), so points
        computed on the boundary in floating point count as inside.
        """
        Xf, yy = self._xy(X, y)
        inside = self.scores(Xf, yy, defense) <= 1.0 + tol
        if self.box is not None:
            lo, hi = self.box
            inside &= np.all((Xf >= lo - tol) & (Xf <= hi + tol), axis=1)
        return inside


def _ratio(dist: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """dist / radius, with a zero radius giving 0 for a zero distance and +inf otherwise."""
    radius = np.asarray(radius, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(radius > 0, dist / np.where(radius > 0, radius, 1.0), np.where(dist > 0, np.inf, 0.0))
    return out


ReferenceLike = Union[Dataset, Tuple[Any, Any], None]


class _CentroidDetector(Detector):
    """Shared fitting of :class:`SphereDetector` and :class:`SlabDetector`."""

    kind = "sphere"

    def __init__(self, percentile: float = 70.0, centroids: Optional[str] = None, reference: ReferenceLike = None,
                 center: str = "median", trim: float = 0.25, layer: Optional[str] = None):
        self.percentile = percentile
        self.centroids = centroids
        self.reference = reference
        self.center = center
        self.trim = trim
        self.layer = layer

    def _mode(self) -> str:
        mode = self.centroids
        if mode is None:
            mode = "oracle" if self.reference is not None else "data"
        if mode not in ("oracle", "data"):
            raise ConfigError(f"centroids must be 'oracle' or 'data' (or None for automatic), got {mode!r}")
        if mode == "oracle" and self.reference is None:
            raise ConfigError(
                f"{self.name}: centroids='oracle' needs the clean data: pass reference=<clean Dataset> "
                "(or a (features, labels) pair), or use centroids='data'"
            )
        return mode

    def _reference_xy(self, model: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        ref = self.reference
        if isinstance(ref, Dataset):
            if ref.is_regression:
                raise ConfigError(f"{self.name}: the reference must be a classification dataset")
            X = self.features_for(ref, model)
            y = np.asarray(ref.y)
        elif isinstance(ref, (tuple, list)) and len(ref) == 2:
            X = np.asarray(ref[0], dtype=np.float64)
            X = X.reshape(len(X), -1)
            y = np.asarray(ref[1]).astype(np.int64)
        else:
            raise ConfigError(
                f"{self.name}: reference must be a clean Dataset or a (features, labels) pair, got {type(ref).__name__}"
            )
        if X.shape[1] != n_features:
            raise DataError(
                f"{self.name}: the reference has {X.shape[1]} features, the data {n_features}; "
                "pass the reference in the same representation (same model layer or precomputed features)"
            )
        return X, y

    def fit(self, dataset: Dataset, model: Any = None, *, features: Optional[np.ndarray] = None) -> "_CentroidDetector":
        """Score every sample of ``dataset`` (see :meth:`Detector.fit`).

        With ``centroids="oracle"`` the centroids and radii come from ``reference``; with
        ``"data"`` from ``dataset`` itself (robust centre, radii at ``percentile``).
        """
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"{self.name}.fit expects a mithridate Dataset, got {type(dataset).__name__}")
        if dataset.is_regression:
            raise ConfigError(f"{self.name} needs class labels; this dataset is a regression set")
        _check_percentile(self.percentile)
        if self.kind == "slab" and dataset.n_classes != 2:
            raise ConfigError(
                f"the slab defence needs exactly two classes (it measures along μ_y − μ_−y), this data has "
                f"{dataset.n_classes}; select two with load_dataset(..., classes=[a, b]) or use the sphere detector"
            )
        self._mode()
        self._n_classes = dataset.n_classes
        self._model = model
        try:
            return super().fit(dataset, model, features=features)
        finally:
            self._model = None

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        mode = self._mode()
        k = self._n_classes
        if mode == "oracle":
            Xr, yr = self._reference_xy(self._model, features.shape[1])
            if len(yr) and (yr.min() < 0 or yr.max() >= k):
                raise DataError(f"{self.name}: reference labels must be class indices in [0, {k - 1}]")
            fs = FeasibleSet.from_data(Xr, yr, k, percentile=self.percentile, center="mean")
        else:
            fs = FeasibleSet.from_data(features, y, k, percentile=self.percentile, center=self.center,
                                       trim=self.trim)
        self.feasible_set_ = fs
        self.centroids_ = fs.centroids
        self.centroid_mode_ = mode
        if self.kind == "sphere":
            self.radii_ = fs.sphere_radii
            return fs.sphere_scores(features, y)
        self.radii_ = fs.slab_radii
        return fs.slab_scores(features, y)

    def default_threshold(self) -> float:
        """1.0: a score above it means the point lies outside its class's feasible set."""
        return 1.0


class SphereDetector(_CentroidDetector):
    """Score each sample by its distance to its class centroid, in units of the class radius.

    score_i = ‖x_i − μ_{y_i}‖₂ / r_{y_i}, with r_y the ``percentile`` of the clean distances of
    class y (Steinhardt et al. 2017, the *sphere* defence). ``flag()`` flags score > 1.

    Parameters
    ----------
    percentile : float, default=70
        Radius percentile (the paper uses the 70th).
    centroids : {"oracle", "data"} or None, default=None
        ``"oracle"``: centroids and radii from the clean ``reference``; ``"data"``: a robust
        centre (see ``center``) and the percentile of the scored data's own distances. ``None``
        picks ``"oracle"`` when a reference is given, else ``"data"``.
    reference : Dataset or (features, labels), optional
        Clean data for the oracle defence, in the same representation as what is scored.
    center : {"median", "trimmed_mean", "mean"}, default="median"
        Centre estimate of the data-dependent mode (the oracle mode always uses the clean mean).
    trim : float, default=0.25
        Fraction dropped by ``center="trimmed_mean"``.
    layer : str or None, default=None
        Model layer to read; ``None`` scores the raw (flattened) features.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        ‖x − μ_y‖ / r_y.
    centroids_ : ndarray of shape (n_classes, d)
    radii_ : ndarray of shape (n_classes,)
    feasible_set_ : FeasibleSet
        The full geometry (sphere and, for two classes, slab radii).

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> splits = load_dataset("digits", classes=[1, 7])
    >>> det = SphereDetector(reference=splits.train).fit(splits.train)
    >>> round(float((det.scores_ <= 1).mean()), 1)    # 70% of the clean points are inside
    0.7
    >>> dropped = det.flag()                          # outside the sphere

    References
    ----------
    Steinhardt, Koh, Liang. "Certified Defenses for Data Poisoning Attacks." NeurIPS 2017.
    """

    name = "sphere"
    kind = "sphere"


class SlabDetector(_CentroidDetector):
    """Score each sample by its offset along the line between the two class centroids.

    score_i = |⟨x_i − μ_{y_i}, μ_{y_i} − μ_{−y_i}⟩| / s_{y_i}, with s_y the ``percentile`` of the
    clean offsets of class y (Steinhardt et al. 2017, the *slab* defence). Binary tasks only.
    ``flag()`` flags score > 1.

    Parameters
    ----------
    percentile : float, default=70
    centroids : {"oracle", "data"} or None, default=None
    reference : Dataset or (features, labels), optional
    center : {"median", "trimmed_mean", "mean"}, default="median"
    trim : float, default=0.25
    layer : str or None, default=None
        See :class:`SphereDetector`.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
    centroids_ : ndarray of shape (2, d)
    radii_ : ndarray of shape (2,)
        s_y.
    feasible_set_ : FeasibleSet

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> splits = load_dataset("digits", classes=[1, 7])
    >>> det = SlabDetector(centroids="data").fit(splits.train)
    >>> det.radii_.shape
    (2,)

    References
    ----------
    Steinhardt, Koh, Liang. "Certified Defenses for Data Poisoning Attacks." NeurIPS 2017.
    """

    name = "slab"
    kind = "slab"
