r"""Exact and near-duplicate groups, scored for poisoning campaigns and label conflicts.

Two traces of poisoning show up as duplicates:

* a **campaign** inserts many copies (exact, or with a little noise to dodge exact-hash
  deduplication) of a few samples, all with the label the attacker wants, so that the copies
  out-vote the clean data around them (Truth Serum inserts r mislabelled copies of a target;
  a crowdsourcing attacker resubmits one image many times);
* a **label conflict**: near-identical samples that carry different labels. One of the labels is
  wrong, a flip or a poison placed on top of a clean sample.

Groups
------
Sample i and j are *duplicates* when their content hashes are equal (exact; the Dataset's
BLAKE2b :attr:`~mithridate.data.dataset.Dataset.content_hashes` of the feature bytes, or the same
hash of the feature rows passed as ``features=``) or when their cosine similarity is at least
``similarity`` (near; default 0.99) in the scored representation after ``scaling``: the columns
are centred on the set's mean, so that the shared offset of non-negative data (pixels, ReLU
activations) does not make every pair look alike, and the raw columns of tables are also divided
by their standard deviation, without which one large-valued column (breast_cancer's ``area``)
makes nearly every pair of rows 0.999-similar. Images are only centred: standardising
near-constant pixel columns would turn a copy's faint noise into large differences (on digits,
copies with pixel noise σ = 0.005 fall from 0.9998 to 0.84 similarity). The near edges come from
an exact faiss search (``IndexFlatIP`` on L2-normalised rows, each sample's ``n_neighbors`` most
similar others). Groups are the connected components of the graph of all these edges
(``scipy.sparse.csgraph.connected_components``), so a group larger than ``n_neighbors`` is still
found whole, and a chain of near-duplicates ends up in one group.

Score
-----
For sample i in a group g of size n_g holding m_{g,y} samples with label y,

    size_i     = max(0, log2(n_g / n_typ))                       (doublings above typical)
    conflict_i = (n_g - m_{g,y_i}) / (n_g - 1)                   (0 for singletons)
    score_i    = size_i + conflict_weight · conflict_i

n_typ is the median, over samples, of the size of the group a sample belongs to (1 when most
samples are unique, 2 when the data normally comes in pairs): a median over samples is not moved
by a campaign holding fewer than half of them. size_i says how many times the group doubles the
size that is normal in this data set (a group of 32 copies in a set of unique samples: 5).
conflict_i is the share of the *other* members of the group whose label differs from i's: 0 in a
consistent group, 1 for both members of a conflicting pair, and in a larger group highest for the
members whose label disagrees with the group's majority (the minority). With the default
``conflict_weight=3`` a sample in a conflicting pair (1 + 3 = 4) ranks with a consistent group of
16 copies; a consistent pair scores 1, a unique sample 0.

The majority is not necessarily the correct label: when a campaign adds many mislabelled copies
of a clean sample, the clean original is the minority of its group and gets the highest score of
the group, its copies the size score plus a small conflict term. This is why the default rule
does not pick a side: ``flag()`` with no argument flags every member of a group that holds more
than one label (``conflicting_``) and every member of a group at least ``2 ** size_threshold``
times the typical size (default 8×). The group ids in ``groups_`` let an analyst review a group
as a whole; ``flag(budget=...)`` / ``flag(threshold=...)`` follow the score instead (minorities
first).

Text
----
By default a text dataset is grouped like any other, by the cosine of its feature vectors (the
TF-IDF + SVD rows of :mod:`mithridate.data.text`). ``text="minhash"`` groups the texts
themselves instead: each text (lower-cased, its ``\w+`` words joined by single spaces) is the set
of its character ``shingle_size``-grams, and two texts are near-duplicates when the Jaccard
similarity of their sets, estimated by MinHash (Broder 1997; ``num_perm`` permutations,
datasketch), is at least ``jaccard``. Candidate pairs come from MinHash locality-sensitive hashing
(datasketch's ``MinHashLSH``, banded at that threshold), so the search stays near-linear; each
candidate is then checked with the estimate. Exact duplicates are equal texts; texts without
words have no shingles and no near-duplicate. It reads only the texts, so it does not depend on
a featurizer (or on a vocabulary fitted to the data), and its threshold is on the texts' overlap,
which a reviewer can check. Measured on a user's support tickets with templated spam (one
template, 1-3 words changed per copy; their own generator): 4,000 tickets with 50 spam, MinHash
at the default 0.8 grouped 44 of the 50 (0.7: 48), the default cosine on the TF-IDF + SVD
features all 50; 20,000 tickets with 250 spam: 238 (0.7: 250) against 250; no clean ticket
grouped by either. Character shingles, because a changed word breaks every word 3-gram it is in:
word 3-grams at 0.8 grouped 26 of the 50.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Optional

import numpy as np

from mithridate.data.dataset import Dataset
from mithridate.defenses.detect.base import Detector
from mithridate.defenses.detect.knn import knn_search, standardize
from mithridate.defenses.detect.outliers import resolve_auto, reads_raw_table
from mithridate.errors import ConfigError

__all__ = ["DuplicateDetector", "row_hashes"]

SCALINGS = ("standardize", "center", "none")
TEXT_MODES = ("features", "minhash")
_WORD = re.compile(r"\w+")


def row_hashes(features: np.ndarray) -> np.ndarray:
    """BLAKE2b-128 hex digest of each row's float32 bytes (the same hash as ``Dataset.content_hashes``)."""
    flat = np.ascontiguousarray(np.asarray(features, dtype=np.float32).reshape(len(features), -1))
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in flat])


class DuplicateDetector(Detector):
    """Group exact and near-duplicate samples; score large one-label groups and label conflicts.

    See the module docstring for the groups and the score formula.

    Parameters
    ----------
    similarity : float in (0, 1] or None, default=0.99
        Cosine similarity at or above which two samples are near-duplicates. ``None`` keeps only
        exact duplicates (equal content hashes) and skips the neighbour search. Lower it (0.95)
        to catch copies with stronger noise, at the risk of grouping samples that are merely
        alike; :attr:`nearest_similarity_` shows the distribution to choose from.
    n_neighbors : int, default=32
        Most similar samples searched per sample (capped at n - 1). Groups are connected
        components, so groups larger than this are still found whole.
    scaling : {"auto", "standardize", "center", "none"}, default="auto"
        Column preprocessing before the cosine similarity: ``"center"`` subtracts the column
        means, ``"standardize"`` also divides by the column standard deviations, ``"none"``
        keeps the rows. ``"auto"`` standardises the raw columns of tables and centres images,
        model layers and precomputed ``features=`` (see the module docstring). The choice made
        is ``scaling_``.
    conflict_weight : float, default=3.0
        Weight of the label-conflict term in the score, in units of group-size doublings.
    size_threshold : float, default=3.0
        The default flag rule flags groups at least ``2 ** size_threshold`` times the typical
        group size.
    layer : str or None, default=None
        Model layer read when :meth:`fit` gets a model. ``None`` (default) scores the raw
        inputs even when a model is passed: near-identical *inputs* are what a campaign leaves,
        and a trained classifier's penultimate layer maps many distinct samples of a class to
        nearly the same direction. Pass ``layer="penultimate"`` (or an embedding as
        ``features=``) to group samples by meaning instead.
    n_threads : int, optional
        Threads faiss may use for the search.
    text : {"features", "minhash"}, default="features"
        Text datasets (``meta["text"]``): ``"features"`` groups them by the cosine of their feature
        vectors like any other data; ``"minhash"`` by the Jaccard similarity of the texts'
        character shingles (module docstring, "Text"; ``features=`` are then not read).
    jaccard : float in (0, 1], default=0.8
        MinHash: estimated Jaccard similarity of the shingle sets at or above which two texts are
        near-duplicates.
    shingle_size : int, default=5
        MinHash: characters per shingle.
    num_perm : int, default=128
        MinHash: permutations (the estimate's standard error is about sqrt(J(1-J)/num_perm)).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        ``size_i + conflict_weight · conflict_i``; 0 for unique samples.
    groups_ : ndarray of int64, shape (n_samples,)
        Group id per sample (0, 1, ... in order of first appearance), -1 for samples without a
        duplicate.
    group_sizes_ : ndarray of int64, shape (n_samples,)
        Size of each sample's group (1 for singletons).
    conflicting_ : ndarray of bool, shape (n_samples,)
        The sample's group holds more than one label.
    conflict_ : ndarray of shape (n_samples,)
        conflict_i, the share of the other group members with another label.
    exact_duplicate_ : ndarray of bool, shape (n_samples,)
        The sample's content hash occurs more than once.
    nearest_similarity_ : ndarray of shape (n_samples,)
        Cosine similarity to the most similar other sample (1 for exact duplicates; NaN when
        ``similarity=None``).
    typical_size_ : float
        n_typ, the median group size over samples.
    n_groups_ : int
        Number of groups with at least two members.
    size_scores_ : ndarray of shape (n_samples,)
        size_i, the group-size term of the score.
    scaling_ : str
        The column preprocessing used (``scaling`` resolved).
    method_ : str
        ``"minhash"`` (texts) or ``"cosine"`` (feature vectors).

    Examples
    --------
    >>> import numpy as np
    >>> from mithridate.data import Dataset
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 8))
    >>> y = rng.integers(0, 2, 100)
    >>> X[90:] = X[0] + 1e-3 * rng.normal(size=(10, 8))   # ten near-copies of sample 0 ...
    >>> y[90:] = 1 - y[0]                                 # ... with the other label
    >>> det = DuplicateDetector().fit(Dataset.from_arrays(X, y))
    >>> int(det.group_sizes_[0]), bool(det.conflicting_[0])
    (11, True)
    >>> np.flatnonzero(det.flag()).tolist() == [0] + list(range(90, 100))   # the whole group
    True
    >>> int(np.argmax(det.scores_))                       # the outvoted original scores highest
    0

    References
    ----------
    Johnson, Douze, Jégou. "Billion-scale similarity search with GPUs." IEEE Trans. Big Data
    2019 (faiss). Broder. "On the resemblance and containment of documents." SEQUENCES 1997
    (MinHash). Leskovec, Rajaraman, Ullman. *Mining of Massive Datasets*, ch. 3 (LSH banding). Tramèr et al. "Truth Serum: Poisoning Machine Learning Models to Reveal Their
    Secrets." CCS 2022 (campaigns of mislabelled copies).
    """

    name = "duplicates"

    def __init__(self, similarity: Optional[float] = 0.99, n_neighbors: int = 32, scaling: str = "auto",
                 conflict_weight: float = 3.0, size_threshold: float = 3.0, layer: Optional[str] = None,
                 n_threads: Optional[int] = None, text: str = "features", jaccard: float = 0.8, shingle_size: int = 5,
                 num_perm: int = 128):
        self.similarity = similarity
        self.n_neighbors = n_neighbors
        self.scaling = scaling
        self.conflict_weight = conflict_weight
        self.size_threshold = size_threshold
        self.layer = layer
        self.n_threads = n_threads
        self.text = text
        self.jaccard = jaccard
        self.shingle_size = shingle_size
        self.num_perm = num_perm

    def features_for(self, dataset: Dataset, model: Any = None) -> np.ndarray:
        if model is not None and self.layer is None:
            model = None  # raw inputs by default, see ``layer``
        return super().features_for(dataset, model)

    def fit(self, dataset: Dataset, model: Any = None, *, features: Optional[np.ndarray] = None) -> "DuplicateDetector":
        """Group and score every sample of ``dataset``.

        Exact duplicates are found by the dataset's content hashes, or by the hashes of the
        ``features`` rows when those are given.
        """
        self._hashes = None
        self._texts = None
        self._raw_table = reads_raw_table(self, dataset, model, features)
        if self.text not in TEXT_MODES:
            raise ConfigError(f"{self.name}: text must be one of {', '.join(TEXT_MODES)}, got {self.text!r}")
        has_text = isinstance(dataset, Dataset) and "text" in dataset.meta.columns
        if self.text == "minhash" and not has_text:
            raise ConfigError(f"{self.name}: text='minhash' needs a text dataset (meta['text'], e.g. load_jsonl)")
        if features is None and isinstance(dataset, Dataset):
            self._hashes = np.asarray(dataset.content_hashes)
        if has_text and self.text == "minhash":
            self._texts = ["" if t is None else str(t) for t in dataset.meta["text"].tolist()]
            self._hashes = np.array([hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
                                     for t in self._texts])
        try:
            return super().fit(dataset, model, features=features)
        finally:
            del self._hashes, self._raw_table, self._texts

    def _check_params(self) -> Optional[float]:
        sim = self.similarity
        if sim is not None:
            try:
                sim = float(sim)
            except (TypeError, ValueError):
                raise ConfigError(f"{self.name}: similarity must be a number in (0, 1] or None, got {sim!r}") from None
            if not 0.0 < sim <= 1.0:
                raise ConfigError(
                    f"{self.name}: similarity must be in (0, 1] (a cosine similarity; 0.99 = near-identical), "
                    f"got {self.similarity!r}"
                )
        k = self.n_neighbors
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"{self.name}: n_neighbors must be a positive int, got {k!r}")
        for what in ("conflict_weight", "size_threshold"):
            v = getattr(self, what)
            try:
                ok = np.isfinite(float(v)) and float(v) >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(f"{self.name}: {what} must be a non-negative number, got {v!r}")
        self.scaling_ = resolve_auto(self.scaling, "scaling", self.name, SCALINGS,
                                     getattr(self, "_raw_table", False), "standardize", "center")
        return sim

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        sim = self._check_params()
        n = len(features)
        hashes = getattr(self, "_hashes", None)
        if hashes is None or len(hashes) != n:
            hashes = row_hashes(features)
        # exact duplicates: link every member of a hash class to its first occurrence
        _, first, inverse, counts = np.unique(hashes, return_index=True, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        rows = [np.arange(n)]
        cols = [first[inverse]]
        self.exact_duplicate_ = counts[inverse] > 1
        nearest = np.full(n, np.nan)
        texts = getattr(self, "_texts", None)
        self.method_ = "cosine"
        if texts is not None and len(texts) == n:
            self.method_ = "minhash"
            r, c, nearest = self._minhash_edges(texts)
            nearest[self.exact_duplicate_] = 1.0
            rows.append(r)
            cols.append(c)
        elif sim is not None and n > 1:
            if self.scaling_ == "standardize":
                (X,) = standardize(features)
            elif self.scaling_ == "center":
                X = (features - features.mean(axis=0, dtype=np.float64)).astype(np.float32)
            else:
                X = features
            k = int(min(self.n_neighbors, n - 1))
            dist, idx = knn_search(X, None, k, metric="cosine", n_threads=self.n_threads)
            simil = 1.0 - dist
            nearest = simil[:, 0].copy()
            nearest[self.exact_duplicate_] = 1.0
            # float32 inner products of identical unit rows can fall a hair below 1
            edge = (simil >= sim - 1e-6) & (idx >= 0)
            r, c = np.nonzero(edge)
            rows.append(r)
            cols.append(idx[r, c])
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n)).tocsr()
        _, comp = connected_components(graph, directed=False)
        comp_sizes = np.bincount(comp)
        sizes = comp_sizes[comp].astype(np.int64)

        # group ids 0, 1, ... in order of first appearance; singletons -1
        groups = np.full(n, -1, dtype=np.int64)
        multi = sizes > 1
        if multi.any():
            _, first_pos = np.unique(comp[multi], return_index=True)
            order = np.argsort(first_pos, kind="stable")
            comp_ids = np.unique(comp[multi])[order]
            remap = np.full(len(comp_sizes), -1, dtype=np.int64)
            remap[comp_ids] = np.arange(len(comp_ids))
            groups = remap[comp]

        # labels within groups: m_{g, y_i}, and how many labels each group holds
        pairs, pair = np.unique(np.stack([comp, np.asarray(y).astype(np.int64)], axis=1), axis=0,
                                return_inverse=True)
        pair = pair.reshape(-1)
        same_label = np.bincount(pair)[pair]
        conflict = np.where(sizes > 1, (sizes - same_label) / np.maximum(sizes - 1, 1), 0.0)
        n_labels = np.bincount(pairs[:, 0], minlength=len(comp_sizes))

        typical = float(np.median(sizes))
        size_score = np.maximum(0.0, np.log2(sizes / typical))
        self.groups_ = groups
        self.group_sizes_ = sizes
        self.conflicting_ = n_labels[comp] > 1
        self.conflict_ = conflict
        self.nearest_similarity_ = nearest
        self.typical_size_ = typical
        self.n_groups_ = int(groups.max() + 1) if multi.any() else 0
        self.size_scores_ = size_score
        return size_score + float(self.conflict_weight) * conflict

    def _minhash_edges(self, texts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Near-duplicate pairs of texts by MinHash LSH (module docstring, "Text"): (rows, cols) of
        the edges and each text's highest estimated Jaccard similarity to a candidate (0 without
        candidates)."""
        from datasketch import MinHash, MinHashLSH

        jac, k, perm = self.jaccard, self.shingle_size, self.num_perm
        try:
            jac = float(jac)
        except (TypeError, ValueError):
            jac = float("nan")
        if not 0.0 < jac <= 1.0:
            raise ConfigError(f"{self.name}: jaccard must be in (0, 1], got {self.jaccard!r}")
        for what, v, lo in (("shingle_size", k, 1), ("num_perm", perm, 16)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ConfigError(f"{self.name}: {what} must be an int >= {lo}, got {v!r}")
        n = len(texts)
        shingles = []
        for t in texts:
            norm = " ".join(_WORD.findall(t.lower()))  # words only, lower-cased, single spaces
            if not norm:
                sh = set()
            elif len(norm) <= k:
                sh = {norm}
            else:
                sh = {norm[i:i + k] for i in range(len(norm) - k + 1)}
            shingles.append([w.encode("utf-8", "surrogatepass") for w in sorted(sh)])
        has = np.array([bool(sh) for sh in shingles])
        nearest = np.zeros(n)
        if has.sum() < 2:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), nearest
        keep = np.flatnonzero(has)
        minhashes = MinHash.bulk([shingles[i] for i in keep.tolist()], num_perm=int(perm), seed=1)
        H = np.stack([m.hashvalues for m in minhashes])
        # LSH banding tuned to the threshold; a threshold of 1 is banded just below it
        lsh = MinHashLSH(threshold=min(jac, 0.99), num_perm=int(perm))
        with lsh.insertion_session() as session:
            for pos, m in enumerate(minhashes):
                session.insert(pos, m, check_duplication=False)
        cap = int(self.n_neighbors)
        rows, cols = [], []
        for pos, m in enumerate(minhashes):
            cand = np.array(sorted(c for c in lsh.query(m) if c != pos), dtype=np.int64)
            if not len(cand):
                continue
            est = (H[cand] == H[pos]).mean(axis=1)
            nearest[keep[pos]] = float(est.max())
            ok = cand[est >= jac - 1e-12]
            if len(ok) > cap:  # a huge group: each member links to some, components still join it whole
                ok = ok[np.argsort(-est[est >= jac - 1e-12], kind="stable")[:cap]]
            rows.append(np.full(len(ok), keep[pos], dtype=np.int64))
            cols.append(keep[ok])
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), nearest
        return np.concatenate(rows), np.concatenate(cols), nearest

    def default_flags(self) -> np.ndarray:
        """Members of groups ≥ ``2 ** size_threshold`` × the typical size and of groups that hold
        more than one label."""
        big = self.size_scores_ >= float(self.size_threshold)
        return big | self.conflicting_
