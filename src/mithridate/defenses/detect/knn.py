"""k-nearest-neighbour label consistency: a label its neighbours disagree with is suspicious.

A flipped label sits among points of another class. For training sample i with label y_i and
its k nearest other training samples N_k(i) (faiss; exact up to 200,000 samples),

    score_i = Σ_{j ∈ N_k(i)} w_ij · 1[y_j ≠ y_i] / Σ_{j ∈ N_k(i)} w_ij

with w_ij = 1 (``weights="uniform"``: the share of disagreeing neighbours) or
w_ij = 1 / d(x_i, x_j) (``weights="distance"``). This is the leave-one-out error signal of a
k-NN classifier, the editing rule of Wilson (1972) used as a score.

The module also holds the exact neighbour search shared by the label detectors.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from mithridate.defenses.detect.base import Detector, resolve_standardize
from mithridate.errors import ConfigError, DataError

METRICS = ("l2", "cosine")


def check_labels(y: np.ndarray, who: str) -> None:
    """Label detectors need at least two classes among the labels they read."""
    if len(np.unique(y)) < 2:
        raise DataError(f"{who}: the labels hold a single class; label-noise detection needs at least two")


def check_n_neighbors(k: int, n: int, who: str, what: str = "n_neighbors") -> int:
    """``k`` must be a positive int and leave at least one sample outside a point's neighbours."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"{who}: {what} must be a positive int, got {k!r}")
    if k >= n:
        raise ConfigError(
            f"{who}: {what}={k} needs at least {k + 1} samples (each sample's neighbours exclude itself), "
            f"got {n}; lower {what} below {n}"
        )
    return int(k)


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Centre and scale every column by the training mean and std (constant columns keep scale 1)."""
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[~(std > 1e-12)] = 1.0
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def _prepare(a: np.ndarray, metric: str) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(a, axis=1, keepdims=True)
        a = np.ascontiguousarray(a / np.maximum(norms, 1e-12), dtype=np.float32)
    return a


#: ``search="auto"`` is exact up to this many base rows and a graph index (HNSW) above.
EXACT_SEARCH_LIMIT = 200_000
SEARCHES = ("auto", "exact", "hnsw")


def _hnsw_index(base: np.ndarray, metric: str, k: int):
    """A faiss HNSW graph over ``base`` (Malkov & Yashunin 2018): 32 links per node.

    Built with ``efConstruction=40`` and searched with ``efSearch=max(32, 2k)``. Measured on two
    cores with 1,000,000 standardised 50-d rows: on the table of ``benchmarks/audit_scale.py``
    (8 latent factors) the whole kNN detector took 92-111 s in the audit runs, and every exact
    10-nearest neighbour of 2,000 sampled rows was found; on isotropic 50-d Gaussian classes (the
    hard case) building and querying took 125 s and found 78%, the rest
    being slightly farther points (an inverted-file index probing 16 of 1,000 cells took 175 s
    for 69% there). The graph is built by several threads, so the neighbours of a few points
    may differ between runs.
    """
    import faiss

    d = base.shape[1]
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.IndexHNSWFlat(d, 32, faiss_metric)
    index.hnsw.efConstruction = 40
    index.add(base)
    index.hnsw.efSearch = max(32, 2 * int(k))
    return index


def knn_search(base: np.ndarray, queries: Optional[np.ndarray], k: int, *, metric: str = "l2",
               n_threads: Optional[int] = None, search: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of ``queries`` among ``base`` rows (faiss).

    With ``queries=None`` the queries are the base rows themselves and each row's own index is
    excluded from its neighbours (a duplicate of the row is still a neighbour).

    ``search="exact"`` scans every base row (flat index); ``"hnsw"`` walks a graph index
    (:func:`_hnsw_index`: approximate, for millions of rows); ``"auto"`` (default) is exact up to
    :data:`EXACT_SEARCH_LIMIT` base rows and HNSW above. An approximate search may return a
    slightly farther point in place of a true neighbour, never a wrong distance; a query for
    which it finds fewer than k points gets index -1 and distance inf in the missing slots.

    Returns
    -------
    dist : ndarray of shape (n_queries, k)
        Euclidean distances (``metric="l2"``) or cosine distances ``1 - cos`` (``"cosine"``,
        rows normalised to unit length), ascending.
    index : ndarray of shape (n_queries, k)
        Row numbers into ``base``.
    """
    import faiss

    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {METRICS}, got {metric!r}")
    if search not in SEARCHES:
        raise ConfigError(f"search must be one of {SEARCHES}, got {search!r}")
    base = _prepare(base, metric)
    self_query = queries is None
    q = base if self_query else _prepare(queries, metric)
    old_threads = faiss.omp_get_max_threads()
    if n_threads is not None:
        faiss.omp_set_num_threads(int(n_threads))
    try:
        if search == "hnsw" or (search == "auto" and len(base) > EXACT_SEARCH_LIMIT):
            index = _hnsw_index(base, metric, k + 1 if self_query else k)
        else:
            index = faiss.IndexFlatL2(base.shape[1]) if metric == "l2" else faiss.IndexFlatIP(base.shape[1])
            index.add(base)
        D, I = index.search(q, k + 1 if self_query else k)
    finally:
        faiss.omp_set_num_threads(old_threads)
    if self_query:
        rows = np.arange(len(q))[:, None]
        is_self = I == rows
        # drop the row itself; when it is not among the k + 1 returned (k + 1 exact duplicates
        # tie at distance 0), drop the last column instead
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
        keep = np.ones_like(I, dtype=bool)
        keep[np.arange(len(q)), drop] = False
        D, I = D[keep].reshape(len(q), k), I[keep].reshape(len(q), k)
    missing = I < 0
    if metric == "l2":
        D = np.sqrt(np.maximum(D, 0.0))
    else:
        D = np.maximum(1.0 - D, 0.0)
    D = D.astype(np.float64)
    if missing.any():
        D[missing] = np.inf
    return D, I.astype(np.int64)


class KNNLabelConsistency(Detector):
    """Score each sample by the share of its k nearest neighbours whose label disagrees.

    Parameters
    ----------
    n_neighbors : int, default=10
        Neighbours per sample (the sample itself excluded). Needs at least ``n_neighbors + 1``
        samples.
    weights : {"uniform", "distance"}, default="uniform"
        ``"distance"`` weighs each neighbour by 1 / distance (a tiny floor keeps exact duplicates
        finite), so the closest neighbours count most.
    metric : {"l2", "cosine"}, default="l2"
        Euclidean distance (faiss ``IndexFlatL2``) or cosine distance (``IndexFlatIP`` on rows
        normalised to unit length). Both searches are exact.
    standardize : bool or "auto", default="auto"
        Scale every feature column to zero mean and unit variance first, so that no single
        large-valued column decides the neighbours (raw tabular features); turn it off for
        representations whose scale is meaningful. ``"auto"`` standardises unless the data is
        text (unit-length embeddings from :func:`~mithridate.data.text.load_jsonl`).
    layer : str, default="penultimate"
        Model layer read when :meth:`fit` gets a model; without one, the raw flattened features.
    n_threads : int, optional
        Threads faiss may use for the search (default: faiss's own setting, restored afterwards).
    search : {"auto", "exact", "hnsw"}, default="auto"
        Exact neighbour search up to 200,000 samples, a faiss HNSW graph above (see
        :func:`knn_search`): a million 50-d rows take about two minutes on 2 cores.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        (Weighted) share of disagreeing neighbours, in [0, 1]; higher = more likely mislabelled.
    neighbors_ : ndarray of shape (n_samples, n_neighbors)
        Row numbers of each sample's neighbours, nearest first.
    distances_ : ndarray of shape (n_samples, n_neighbors)
        Their distances.

    Notes
    -----
    :meth:`flag` with no argument flags scores above 0.5: samples whose own label loses the
    (weighted) vote of their neighbours, i.e. that a leave-one-out k-NN classifier mislabels.
    ``flag(budget=b)`` flags the top ``ceil(b * n)`` scores over the whole set.

    Examples
    --------
    >>> import numpy as np
    >>> from mithridate.data import Dataset
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(0, 1, (50, 2)), rng.normal(6, 1, (50, 2))]
    >>> y = np.r_[np.zeros(50, int), np.ones(50, int)]
    >>> y[:3] = 1                                     # three flipped labels
    >>> det = KNNLabelConsistency(n_neighbors=5).fit(Dataset.from_arrays(X, y))
    >>> np.flatnonzero(det.flag()).tolist()
    [0, 1, 2]

    References
    ----------
    Wilson. "Asymptotic Properties of Nearest Neighbor Rules Using Edited Data."
    IEEE Trans. Systems, Man, and Cybernetics, 1972.
    """

    name = "knn"
    evidence = "labels"

    def __init__(self, n_neighbors: int = 10, weights: str = "uniform", metric: str = "l2",
                 standardize: Union[bool, str] = "auto", layer: str = "penultimate", n_threads: Optional[int] = None,
                 search: str = "auto"):
        self.search = search
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.metric = metric
        self.standardize = standardize
        self.layer = layer
        self.n_threads = n_threads

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.weights not in ("uniform", "distance"):
            raise ConfigError(f"weights must be 'uniform' or 'distance', got {self.weights!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}, got {self.metric!r}")
        k = check_n_neighbors(self.n_neighbors, len(features), self.name)
        check_labels(y, self.name)
        if resolve_standardize(self.standardize, self):
            (features,) = standardize(features)
        dist, idx = knn_search(features, None, k, metric=self.metric, n_threads=self.n_threads,
                               search=self.search)
        found = idx >= 0  # an approximate search may come back short of k neighbours
        disagree = (y[idx] != y[:, None]) & found
        if self.weights == "uniform":
            w = found.astype(np.float64)
        else:
            positive = dist[(dist > 0) & found]
            floor = 1e-6 * (float(np.median(positive)) if positive.size else 1.0)
            w = np.where(found, 1.0 / np.maximum(dist, floor), 0.0)
        self.neighbors_, self.distances_ = idx, dist
        return (w * disagree).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-300)

    def default_threshold(self) -> float:
        """0.5: the sample's own label loses the (weighted) vote of its neighbours."""
        return 0.5
