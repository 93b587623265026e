"""Data valuation detectors: exact KNN-Shapley (Jia et al. 2019) and Data-OOB (Kwon & Zou 2023).

A training point that lowers the accuracy of models trained with it has a low value; a flipped
label is the typical case. Both detectors score ``-value`` (higher = more suspicious).

KNN-Shapley
-----------
The game of one validation point (x_t, y_t): the players are the N training points, sorted by
distance to x_t as α_1 (nearest) .. α_N, and the utility of a subset S is the K-NN likelihood of
the right label, U(S) = (1/K) Σ_{k ≤ min(K, |S|)} 1[y_{α_k(S)} = y_t]. Jia et al. (Theorem 1)
give its exact Shapley values by the recursion, with m_i = 1[y_{α_i} = y_t] and c_i = min(K, i)/(i K),

    s_N = m_N · c_N   (= m_N / N when N ≥ K, the paper's start)
    s_i = s_{i+1} + (m_i - m_{i+1}) · c_i.                                         (1)

(The paper's start s_N = m_N / N holds for N ≥ K; when N < K the utility is additive and
s_i = m_i / K, which is what m_N · c_N starts.)

Closed form (worked out here). Summing (1) by parts, s_i = m_i c_i + Σ_{j>i} m_j (c_j - c_{j-1}),
and c_j - c_{j-1} is 0 for j ≤ K and -1/(j (j - 1)) for j > K, so

    s_i = m_i · min(K, i) / (i K) - T_{max(i, K)},   T_i = Σ_{j=i+1}^{N} m_j / (j (j - 1)).   (2)

The K nearest share one tail T_K; all values of a game come from one cumulative sum over its
sorted labels, vectorised over a block of validation points. Two consequences matter for scaling:

* only T_M links the M nearest points to the rest: for i ≤ M (M ≥ K), (2) uses the labels of
  ranks ≤ M plus the one scalar T_M = Σ_{j>M} m_j/(j(j-1)) ∈ [0, 1/M - 1/N];
* beyond rank M, |s_i| ≤ 1/i ≤ 1/(M+1) (because 0 ≤ T_i ≤ 1/i - 1/N).

So with an exact faiss top-M search, the values of the M nearest are exact up to T_M, which the
truncated mode replaces by its expectation when the labels beyond rank M come in random order,
T̂_M = q_t (1/M - 1/N) (q_t the share of label y_t among the players beyond rank M), and the
values beyond rank M are set to 0 (as in Jia et al.'s approximation, which keeps only the
K* = max(K, ⌈1/ε⌉) nearest). Every per-game value, hence
every averaged value, is then within 1/M of the exact one (``error_bound_``).

Data-OOB
--------
Bagging: B bootstrap samples S_b, a model f̂_b on each; the value of point i is the accuracy of
the models that did not see it,

    ψ_i = Σ_b 1[i ∉ S_b] · 1[f̂_b(x_i) = y_i] / Σ_b 1[i ∉ S_b]     (Kwon & Zou, with T(y, ŷ) = 1[y = ŷ]).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np

from mithridate.data.dataset import Dataset
from mithridate.defenses.detect.base import Detector, check_validation_set, resolve_standardize
from mithridate.defenses.detect.confident import build_model, fit_model
from mithridate.defenses.detect.knn import (
    METRICS,
    check_labels,
    check_n_neighbors,
    knn_search,
    standardize,
)
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, check_random_state, progress_iter, seed_from

# exact mode: entries (validation points x training points) sorted per block; ~50 bytes each
_BLOCK_ENTRIES = 1 << 21
# truncate="auto" switches from exact sorting to a faiss top-M search above this many entries
AUTO_EXACT_MAX = 10**9
AUTO_TRUNCATE = 200


def knn_shapley_sorted(match: np.ndarray, k: int, n_players: Optional[int] = None,
                       tail: Optional[np.ndarray] = None) -> np.ndarray:
    """KNN-Shapley values of the players in rank order, for a block of validation points.

    Parameters
    ----------
    match : ndarray of shape (n_games, M)
        ``match[t, i-1] = 1[y_{α_i} = y_t]``: whether the i-th nearest player of game t carries
        the validation label.
    k : int
        K of the K-NN utility.
    n_players : int, optional
        N, the number of players of each game (default ``M``: ``match`` holds every player).
    tail : ndarray of shape (n_games,), optional
        T_M = Σ_{j>M} m_j / (j (j - 1)) for players beyond column M (default 0, exact when
        ``M == n_players``).

    Returns
    -------
    ndarray of shape (n_games, M)
        s_i of equation (2) of the module docstring, column i-1 for rank i.
    """
    m = np.asarray(match, dtype=np.float64)
    M = m.shape[1]
    k = int(k)
    N = M if n_players is None else int(n_players)
    if M < min(k, N):
        raise ConfigError(f"KNN-Shapley needs the labels of the {min(k, N)} nearest players, got {M}")
    rank = np.arange(1, M + 1, dtype=np.float64)
    # T_i = sum_{j>i} w_j with w_j = m_j / (j (j - 1)) for j > K and 0 for j <= K (so T_i = T_K
    # for i <= K), computed as sum(w) - cumsum(w): two passes over the block
    w_of_rank = np.zeros(M)
    w_of_rank[k:] = 1.0 / (rank[k:] * (rank[k:] - 1.0))
    cum = np.cumsum(m * w_of_rank, axis=1)
    total = cum[:, -1:].copy()
    if tail is not None:
        total += np.asarray(tail, dtype=np.float64)[:, None]
    s = m * (np.minimum(rank, k) / (rank * k))
    s += cum
    s -= total
    return s


class KNNShapley(Detector):
    """Exact Shapley value of each training point for a K-NN classifier (Jia et al. 2019).

    Each validation point defines a game whose players are the training points; the value of
    a training point is its Shapley value averaged over the games, computed exactly by the
    recursion (1) of the module docstring through its closed form (2). Points whose label
    misleads the K-NN classifier on the validation points near them get negative values.

    Parameters
    ----------
    n_neighbors : int, default=10
        K of the K-NN utility.
    truncate : int, None or "auto", default="auto"
        ``None``: exact, every game sorts all training points by distance (O(N log N) per
        validation point). An int M ≥ K: exact faiss search of the M nearest training points;
        their values use the exact labels and the expected tail T̂_M, the rest count 0, every
        value within 1/M of the exact one (see the module docstring). ``"auto"``: exact while
        n_validation × n_train ≤ 10⁹ (about 30 s on one core), else M = 200.
    metric : {"l2", "cosine"}, default="l2"
        Distance that orders the players.
    standardize : bool or "auto", default="auto"
        Scale feature columns by the training mean and std (applied to validation points too);
        ``"auto"`` does so unless the data is text (unit-length embeddings).
    layer : str, default="penultimate"
        Model layer read when :meth:`fit` gets a model; without one, the raw flattened features.
    n_threads : int, optional
        Threads for the exact sort (blocks of validation points side by side; default 1) and for
        the faiss search in truncated mode (default: faiss's own setting).

    Attributes
    ----------
    values_ : ndarray of shape (n_samples,)
        KNN-Shapley value of each training point (mean over the validation games it plays).
    scores_ : ndarray of shape (n_samples,)
        ``-values_``; higher = more likely harmful.
    truncated_at_ : int or None
        M used (None: exact).
    error_bound_ : float
        Bound on ``|values_ - exact values|``: 0 when exact, 1/M when truncated.
    n_validation_ : int
        Number of validation games.

    Notes
    -----
    Validation set: ``fit(dataset, validation=other)`` values the training points on another
    labelled set (``validation_features=`` gives its precomputed features, as ``features=``
    does for the training set). Without one, the training set values itself leave-one-out:
    every training point t is a validation point of a game played by the N - 1 others, and a
    point's value is its mean over the N - 1 games it plays. :meth:`flag` with no argument flags
    negative values (points that lower the K-NN accuracy on average).

    Examples
    --------
    >>> import numpy as np
    >>> from mithridate.data import Dataset
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (50, 2)), rng.normal(6, 1, (50, 2))]
    >>> y = np.r_[np.zeros(50, int), np.ones(50, int)]
    >>> y[:3] = 1                                     # three flipped labels
    >>> det = KNNShapley(n_neighbors=5).fit(Dataset.from_arrays(X, y))
    >>> sorted(np.argsort(det.values_)[:3].tolist())  # the three lowest values
    [0, 1, 2]

    References
    ----------
    Jia, Dao, Wang, Hubis, Gurel, Li, Zhang, Spanos, Song. "Efficient Task-Specific Data
    Valuation for Nearest Neighbor Algorithms." PVLDB 12(11), 2019 (Theorem 1: recursion (1);
    the approximation that keeps the K* = max(K, ⌈1/ε⌉) nearest).
    """

    name = "knn-shapley"
    evidence = "labels"

    def __init__(self, n_neighbors: int = 10, truncate: Union[int, None, str] = "auto", metric: str = "l2",
                 standardize: Union[bool, str] = "auto", layer: str = "penultimate", n_threads: Optional[int] = None):
        self.n_neighbors = n_neighbors
        self.truncate = truncate
        self.metric = metric
        self.standardize = standardize
        self.layer = layer
        self.n_threads = n_threads

    def fit(self, dataset: Dataset, model: Any = None, *, features: Optional[np.ndarray] = None,
            validation: Optional[Dataset] = None, validation_features: Optional[np.ndarray] = None) -> "KNNShapley":
        """Value every training point of ``dataset`` (see :meth:`Detector.fit`).

        Parameters
        ----------
        validation : Dataset, optional
            Labelled validation points defining the games; default: leave-one-out on ``dataset``.
        validation_features : ndarray of shape (n_validation, d), optional
            Precomputed validation features (default: the same layer of ``model``, or the raw
            features, as for the training set).
        """
        self._validation = None
        if validation is None and validation_features is not None:
            raise ConfigError("validation_features given without validation= (the labels of those points)")
        if validation is not None:
            check_validation_set(dataset, validation)
            if validation_features is None:
                validation_features = self.features_for(validation, model)
            vf = np.asarray(validation_features, dtype=np.float32).reshape(len(validation_features), -1)
            if len(vf) != len(validation):
                raise DataError(f"{len(vf)} validation feature rows for {len(validation)} validation samples")
            if not np.all(np.isfinite(vf)):
                raise DataError(f"{self.name}: validation features contain NaN or infinite values")
            self._validation = (vf, np.asarray(validation.y))
        try:
            return super().fit(dataset, model, features=features)
        finally:
            self._validation = None

    def _mode(self, n_train: int, n_val: int, k: int) -> Optional[int]:
        t = self.truncate
        if t is None:
            return None
        if isinstance(t, str):
            if t != "auto":
                raise ConfigError(f"truncate must be None, 'auto' or an int >= n_neighbors, got {t!r}")
            return None if n_train * n_val <= AUTO_EXACT_MAX else AUTO_TRUNCATE
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < k:
            raise ConfigError(f"truncate must be None, 'auto' or an int >= n_neighbors={k}, got {t!r}")
        return int(t)

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}, got {self.metric!r}")
        loo = self._validation is None
        n = len(features)
        k = check_n_neighbors(self.n_neighbors, n, self.name)
        check_labels(y, self.name)
        if loo:
            vf, vy = features, y
        else:
            vf, vy = self._validation
            if vf.shape[1] != features.shape[1]:
                raise DataError(
                    f"validation features have {vf.shape[1]} columns, training features {features.shape[1]}; "
                    "read both from the same layer"
                )
        if resolve_standardize(self.standardize, self):
            features, vf = standardize(features, vf)
        n_players = n - 1 if loo else n
        M = self._mode(n, len(vf), k)
        if M is not None and M >= n_players:
            M = None  # the top-M search would hold every player: sort them all
        if M is None:
            totals = self._exact(features, vf, y, vy, k, loo)
        else:
            totals = self._truncated(features, vf, y, vy, k, M, loo)
        self.truncated_at_ = M
        self.error_bound_ = 0.0 if M is None else 1.0 / M
        self.n_validation_ = len(vf)
        self.values_ = totals / (n - 1 if loo else len(vf))
        return -self.values_

    def _prepared(self, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        if self.metric == "cosine":
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        return a

    def _exact(self, X: np.ndarray, V: np.ndarray, y: np.ndarray, vy: np.ndarray, k: int, loo: bool) -> np.ndarray:
        X, V = self._prepared(X), self._prepared(V)
        n = len(X)
        sq = (X.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
        block = max(1, _BLOCK_ENTRIES // n)

        def block_totals(start: int) -> np.ndarray:
            Vb = V[start : start + block]
            # the query's own norm does not change its order
            D = -(Vb @ X.T) if self.metric == "cosine" else sq[None, :] - 2.0 * (Vb @ X.T)
            if loo:
                rows = np.arange(len(Vb))
                D[rows, start + rows] = -np.inf  # a point is not a player of its own game: sorts first
            order = np.argsort(D, axis=1)
            if loo:
                order = order[:, 1:]
            s = knn_shapley_sorted(y[order] == vy[start : start + block, None], k)
            return np.bincount(order.ravel(), weights=s.ravel(), minlength=n)

        starts = range(0, len(V), block)
        threads = 1 if self.n_threads is None else int(self.n_threads)
        if threads <= 1 or len(starts) == 1:
            return sum((block_totals(b) for b in starts), np.zeros(n))
        from concurrent.futures import ThreadPoolExecutor

        # GEMM, sorting and the cumulative sums release the GIL: blocks run side by side
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return sum(pool.map(block_totals, starts), np.zeros(n))

    def _truncated(self, X: np.ndarray, V: np.ndarray, y: np.ndarray, vy: np.ndarray, k: int, M: int,
                   loo: bool) -> np.ndarray:
        n = len(X)
        _, idx = knn_search(X, None if loo else V, M, metric=self.metric, n_threads=self.n_threads,
                            search="exact")
        n_players = n - 1 if loo else n
        match = y[idx] == vy[:, None]
        # expected tail T_M when the labels beyond rank M come in random order
        same = np.bincount(y, minlength=int(max(y.max(), vy.max())) + 1)[vy] - (1 if loo else 0)
        q = (same - match.sum(axis=1)) / (n_players - M)
        tail = q * (1.0 / M - 1.0 / n_players)
        s = knn_shapley_sorted(match, k, n_players=n_players, tail=tail)
        return np.bincount(idx.ravel(), weights=s.ravel(), minlength=n)

    def default_threshold(self) -> float:
        """0: flag negative values (points that lower the K-NN accuracy on average)."""
        return 0.0


class DataOOB(Detector):
    """Data-OOB: each point's value is the accuracy of the bagged models that did not see it.

    Parameters
    ----------
    n_estimators : int, default=100
        Bootstrap models B.
    base_estimator : str, callable or Model, default="tree"
        ``"tree"``: a fully grown scikit-learn decision tree (as in the paper); another string:
        a registered mithridate model name (``"logreg"`` ...); or a callable returning a fresh
        unfitted model / an unfitted model instance (deep-copied), with ``fit(X, y)`` and
        ``predict(X)``.
    max_samples : float, default=1.0
        Bootstrap size as a fraction of the training set (drawn with replacement).
    layer : str, default="penultimate"
        Model layer read when :meth:`fit` gets a model; without one, the raw flattened features.
    random_state : int or Generator, default=0
        Seeds the bootstrap draws and the base models.

    Attributes
    ----------
    values_ : ndarray of shape (n_samples,)
        Out-of-bag accuracy ψ_i in [0, 1]. A point that no bootstrap left out (probability
        about 0.632^B) gets the mean value of the others.
    scores_ : ndarray of shape (n_samples,)
        ``-values_``; higher = more likely mislabelled.
    n_oob_ : ndarray of int, shape (n_samples,)
        Number of models for which each point was out of bag.
    oob_votes_ : ndarray of int, shape (n_samples, n_classes)
        How many out-of-bag models predicted each class for each point.

    Notes
    -----
    :meth:`flag` with no argument flags the points whose out-of-bag ensemble (the plurality
    vote of the models that did not see them) prefers another class to their label, ties kept.
    It is not a cut on the value alone: single deep trees are weak on many classes, so clean
    points often score below 1/2 while their ensemble still votes their label (random 20% flips
    on digits: F1 0.89 for the plurality rule, 0.64 for "value < 0.5", at the same AUROC).

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> train = load_dataset("wine").train
    >>> rng = np.random.default_rng(0)
    >>> flip = rng.choice(len(train), 10, replace=False)
    >>> y = train.y.copy(); y[flip] = (y[flip] + 1) % 3
    >>> det = DataOOB(n_estimators=50).fit(train.replace(y=y))
    >>> bool(det.values_[flip].mean() < np.delete(det.values_, flip).mean())
    True

    References
    ----------
    Kwon, Zou. "Data-OOB: Out-of-bag Estimate as a Simple and Efficient Data Value." ICML 2023
    (the out-of-bag value ψ_i of the module docstring, with T(y, ŷ) = 1[y = ŷ]).
    """

    name = "data-oob"
    evidence = "labels"

    def __init__(self, n_estimators: int = 100, base_estimator: Union[str, Callable[[], Any], Any] = "tree",
                 max_samples: float = 1.0, layer: str = "penultimate", random_state: RandomState = 0):
        self.n_estimators = n_estimators
        self.base_estimator = base_estimator
        self.max_samples = max_samples
        self.layer = layer
        self.random_state = random_state

    def _new_model(self, rng: np.random.Generator) -> Any:
        if isinstance(self.base_estimator, str) and self.base_estimator == "tree":
            from sklearn.tree import DecisionTreeClassifier

            return DecisionTreeClassifier(random_state=seed_from(rng))
        return build_model(self.base_estimator, rng, who="base_estimator", needs=("fit", "predict"))

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        B = self.n_estimators
        if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
            raise ConfigError(f"n_estimators must be a positive int, got {B!r}")
        try:
            frac = float(self.max_samples)
        except (TypeError, ValueError):
            frac = float("nan")
        if not 0.0 < frac <= 1.0:
            raise ConfigError(f"max_samples must be a fraction in (0, 1], got {self.max_samples!r}")
        check_labels(y, self.name)
        n = len(y)
        size = max(1, int(round(frac * n)))
        n_classes = int(y.max()) + 1
        rng = check_random_state(self.random_state)
        correct = np.zeros(n)
        n_oob = np.zeros(n, dtype=np.int64)
        votes = np.zeros((n, n_classes), dtype=np.int64)
        for _ in progress_iter(range(int(B)), int(B), f"{self.name}: bootstrap models"):
            boot = rng.integers(0, n, size)
            oob = np.bincount(boot, minlength=n) == 0
            model = self._new_model(rng)
            if not oob.any():
                continue
            seen = np.unique(y[boot])
            if len(seen) == 1:  # a one-class bootstrap: the fitted model is that constant
                pred = np.full(int(oob.sum()), seen[0])
            else:
                pred = np.asarray(fit_model(model, features[boot], y[boot], n_classes).predict(features[oob]))
                if pred.shape != (int(oob.sum()),) or not np.isin(pred, np.arange(n_classes)).all():
                    raise ConfigError(
                        f"{self.name}: the base model must predict one class index in [0, {n_classes - 1}] "
                        f"per sample, got {pred.dtype} array of shape {pred.shape}"
                    )
            correct[oob] += pred == y[oob]
            n_oob[oob] += 1
            votes[np.flatnonzero(oob), pred.astype(np.int64)] += 1
        values = np.divide(correct, n_oob, out=np.zeros(n), where=n_oob > 0)
        if not (n_oob > 0).any():
            raise DataError(f"{self.name}: no point was ever out of bag; raise n_estimators")
        values[n_oob == 0] = values[n_oob > 0].mean()
        self.n_oob_ = n_oob
        self.oob_votes_ = votes
        self.values_ = values
        return -values

    def default_flags(self) -> np.ndarray:
        """Points whose out-of-bag plurality vote prefers another class to their own label."""
        own = self.oob_votes_[np.arange(len(self.y_)), self.y_]
        return own < self.oob_votes_.max(axis=1)
