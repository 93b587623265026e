"""Tests for the data-valuation detectors: exact KNN-Shapley (Jia et al. 2019) and Data-OOB.

KNN-Shapley is checked against the definition: brute-force Shapley values of the K-NN utility
U(S) = (1/K) Σ_{k ≤ min(K,|S|)} 1[y_{α_k(S)} = y_t], by subset enumeration (and, once, by all
permutations), on small random problems.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mithridate.data import Dataset
from mithridate.defenses.detect.valuation import DataOOB, KNNShapley, knn_shapley_sorted
from mithridate.errors import ConfigError, DataError
from mithridate.eval.metrics import auroc, f1_score


# -- brute force from the definition ---------------------------------------------------------------
def _utility(S, order_rank, y, y_t, K):
    """K-NN utility of subset S for one validation point (order_rank: rank of each player)."""
    if not S:
        return 0.0
    nearest = sorted(S, key=lambda j: order_rank[j])[:K]
    return sum(y[j] == y_t for j in nearest) / K


def _shapley_subsets(dist, y, y_t, K):
    """φ_i = Σ_{S ⊆ N∖{i}} |S|! (N-|S|-1)! / N! · (U(S ∪ {i}) - U(S))."""
    N = len(y)
    rank = np.argsort(np.argsort(dist))
    phi = np.zeros(N)
    for i in range(N):
        others = [j for j in range(N) if j != i]
        for r in range(N):
            w = math.factorial(r) * math.factorial(N - r - 1) / math.factorial(N)
            for S in itertools.combinations(others, r):
                phi[i] += w * (_utility(S + (i,), rank, y, y_t, K) - _utility(S, rank, y, y_t, K))
    return phi


def _shapley_permutations(dist, y, y_t, K):
    """φ_i = mean over all orderings of i's marginal contribution to its predecessors."""
    N = len(y)
    rank = np.argsort(np.argsort(dist))
    phi = np.zeros(N)
    perms = list(itertools.permutations(range(N)))
    for p in perms:
        for pos, i in enumerate(p):
            phi[i] += _utility(p[: pos + 1], rank, y, y_t, K) - _utility(p[:pos], rank, y, y_t, K)
    return phi / len(perms)


def _problem(seed, n_train, n_val, n_classes=2, d=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_train, d))
    y = rng.integers(0, n_classes, n_train)
    y[:n_classes] = np.arange(n_classes)  # every class present
    Xv = rng.normal(size=(n_val, d))
    yv = rng.integers(0, n_classes, n_val)
    train = Dataset.from_arrays(X, y, classes=list(range(n_classes)))
    val = Dataset.from_arrays(Xv, yv, classes=list(range(n_classes)), min_classes=1)
    return train, val


@pytest.mark.parametrize("K", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_shapley_equals_brute_force(K, seed):
    n_train = (5, 7, 8)[seed]
    train, val = _problem(seed, n_train, 4, n_classes=2 + seed % 2)
    det = KNNShapley(n_neighbors=K, truncate=None, standardize=False).fit(train, validation=val)
    X, Xv = train.X.astype(np.float64), val.X.astype(np.float64)
    expected = np.mean([
        _shapley_subsets(np.linalg.norm(X - Xv[t], axis=1), train.y, val.y[t], K) for t in range(len(val))
    ], axis=0)
    np.testing.assert_allclose(det.values_, expected, atol=1e-12)
    np.testing.assert_allclose(det.scores_, -expected, atol=1e-12)
    # efficiency: the values add up to U(N) - U(∅), the mean K-NN likelihood of the right label
    assert det.values_.sum() == pytest.approx(np.mean([
        _utility(tuple(range(n_train)), np.argsort(np.argsort(np.linalg.norm(X - Xv[t], axis=1))), train.y,
                 val.y[t], K) for t in range(len(val))]))


def test_knn_shapley_permutation_definition_and_recursion():
    """One game checked three ways: all 6! orderings, the literal recursion (1), the closed form."""
    rng = np.random.default_rng(7)
    N, K = 6, 2
    dist = rng.random(N)
    y = rng.integers(0, 2, N)
    phi = _shapley_permutations(dist, y, 1, K)
    order = np.argsort(dist)
    m = (y[order] == 1).astype(float)
    s = np.zeros(N)
    s[N - 1] = m[N - 1] / N
    for i in range(N - 1, 0, -1):  # rank i (1-based) from i + 1
        s[i - 1] = s[i] + (m[i - 1] - m[i]) / K * min(K, i) / i
    np.testing.assert_allclose(s, phi[order], atol=1e-12)
    np.testing.assert_allclose(knn_shapley_sorted(m[None, :], K)[0], s, atol=1e-12)


def test_knn_shapley_fewer_players_than_k():
    """N < K: every player is always among the K nearest; closed form still exact."""
    rng = np.random.default_rng(3)
    dist, y = rng.random(4), np.array([0, 1, 1, 0])
    m = (y[np.argsort(dist)] == 1).astype(float)
    np.testing.assert_allclose(knn_shapley_sorted(m[None, :], 6)[0], _shapley_subsets(dist, y, 1, 6)[np.argsort(dist)],
                               atol=1e-12)


def test_knn_shapley_leave_one_out_matches_per_point_games():
    """validation=None: point t's game is played by the N-1 others; values average over N-1 games."""
    train, _ = _problem(4, 7, 1)
    K = 2
    det = KNNShapley(n_neighbors=K, truncate=None, standardize=False).fit(train)
    X = train.X.astype(np.float64)
    totals = np.zeros(len(train))
    for t in range(len(train)):
        others = np.delete(np.arange(len(train)), t)
        totals[others] += _shapley_subsets(np.linalg.norm(X[others] - X[t], axis=1), train.y[others], train.y[t], K)
    np.testing.assert_allclose(det.values_, totals / (len(train) - 1), atol=1e-12)


def _clusters(seed, n_per=150, n_flip=30, d=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(3, d))
    X = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centres])
    y = np.repeat(np.arange(3), n_per)
    flip = rng.choice(len(y), n_flip, replace=False)
    y_noisy = y.copy()
    y_noisy[flip] = (y[flip] + rng.integers(1, 3, n_flip)) % 3
    gt = np.zeros(len(y), bool)
    gt[flip] = True
    return Dataset.from_arrays(X, y_noisy, is_poison=gt)


def test_knn_shapley_truncated_within_documented_bound():
    ds = _clusters(0)
    exact = KNNShapley(n_neighbors=5, truncate=None).fit(ds)
    corr = {}
    for M in (20, 150):
        trunc = KNNShapley(n_neighbors=5, truncate=M).fit(ds)
        assert trunc.truncated_at_ == M and trunc.error_bound_ == pytest.approx(1 / M)
        err = np.abs(trunc.values_ - exact.values_).max()
        assert err <= trunc.error_bound_
        assert err < 0.35 / M  # inside the worst case on clustered data (measured 0.10/M, 0.24/M)
        corr[M] = np.corrcoef(trunc.values_, exact.values_)[0, 1]
        assert auroc(trunc.scores_, ds.is_poison) > 0.99  # the flips still rank first
    assert corr[150] > 0.99 and corr[20] > 0.75  # measured 0.997 and 0.83 (N = 450 players)
    # a top-M search holding every player is the exact computation
    full = KNNShapley(n_neighbors=5, truncate=len(ds) - 1).fit(ds)
    assert full.truncated_at_ is None
    np.testing.assert_allclose(full.values_, exact.values_, atol=1e-12)
    # so is the top-M search with the true tail T_M supplied: the only unknown is T_M
    from mithridate.defenses.detect.knn import knn_search, standardize

    (Z,) = standardize(np.asarray(ds.X, np.float32))
    _, idx = knn_search(Z, None, len(ds) - 1)
    m = ds.y[idx] == ds.y[:, None]
    M, N = 30, len(ds) - 1
    ranks = np.arange(M + 1, N + 1)
    tail = (m[:, M:] / (ranks * (ranks - 1.0))).sum(axis=1)
    head = knn_shapley_sorted(m[:, :M], 5, n_players=N, tail=tail)
    np.testing.assert_allclose(head, knn_shapley_sorted(m, 5)[:, :M], atol=1e-12)


def test_knn_shapley_faiss_search_agrees_with_exact_sort_on_validation_set():
    train, val = _problem(5, 300, 40, n_classes=3, d=4)
    exact = KNNShapley(n_neighbors=3, truncate=None).fit(train, validation=val)
    trunc = KNNShapley(n_neighbors=3, truncate=50).fit(train, validation=val)
    assert np.abs(trunc.values_ - exact.values_).max() <= 1 / 50
    # cosine metric: ordering by angle (scale of a row does not matter)
    a = KNNShapley(n_neighbors=3, truncate=None, metric="cosine", standardize=False).fit(train, validation=val)
    b = KNNShapley(n_neighbors=3, truncate=None, metric="cosine", standardize=False).fit(
        train, features=train.X * 7.0, validation=val, validation_features=val.X * 0.5)
    np.testing.assert_allclose(a.values_, b.values_, atol=1e-9)


def test_knn_shapley_ranks_flipped_labels_lowest():
    ds = _clusters(1)
    det = KNNShapley(n_neighbors=5).fit(ds)
    assert det.truncated_at_ is None  # "auto" is exact at this size
    assert auroc(det.scores_, ds.is_poison) > 0.97
    flags = det.flag()
    assert flags[ds.is_poison].mean() > 0.9 and flags[~ds.is_poison].mean() < 0.1


def test_knn_shapley_bad_input():
    train, val = _problem(0, 6, 3)
    with pytest.raises(ConfigError, match="n_neighbors"):
        KNNShapley(n_neighbors=6).fit(train)
    with pytest.raises(ConfigError, match="truncate"):
        KNNShapley(n_neighbors=3, truncate=2).fit(train)
    with pytest.raises(ConfigError, match="validation="):
        KNNShapley(n_neighbors=2).fit(train, validation_features=val.X)
    with pytest.raises(DataError, match="columns"):
        KNNShapley(n_neighbors=2).fit(train, validation=val, validation_features=np.zeros((3, 5)))
    with pytest.raises(DataError, match="NaN"):
        KNNShapley(n_neighbors=2).fit(train, features=np.full((6, 3), np.nan))
    one_class = Dataset.from_arrays(np.random.default_rng(0).normal(size=(6, 2)), [0] * 6, min_classes=1)
    with pytest.raises(DataError, match="single class"):
        KNNShapley(n_neighbors=2).fit(one_class)
    other = Dataset.from_arrays(val.X, ["a", "b", "a"])
    with pytest.raises(DataError, match="classes"):
        KNNShapley(n_neighbors=2).fit(train, validation=other)


# -- Data-OOB -------------------------------------------------------------------------------------
class NearestNeighbour:
    """1-NN on the bootstrap sample: deterministic, so the definition can be replayed."""

    def fit(self, X, y):
        self.X_, self.y_ = np.asarray(X), np.asarray(y)
        return self

    def predict(self, X):
        d = ((np.asarray(X)[:, None, :] - self.X_[None]) ** 2).sum(axis=2)
        return self.y_[d.argmin(axis=1)]


def test_data_oob_equals_its_definition():
    """ψ_i = Σ_b 1[i ∉ S_b] 1[f_b(x_i) = y_i] / Σ_b 1[i ∉ S_b], replaying the seeded bootstraps."""
    ds = _clusters(2, n_per=12, n_flip=4, d=2)
    B = 15
    det = DataOOB(n_estimators=B, base_estimator=NearestNeighbour, random_state=5).fit(ds)
    X, y, n = ds.X.astype(np.float64), ds.y, len(ds)
    rng = np.random.default_rng(5)
    hits, outs, votes = np.zeros(n), np.zeros(n), np.zeros((n, 3), int)
    for _ in range(B):
        S = rng.integers(0, n, n)  # a bootstrap sample (with replacement) of the n points
        for i in range(n):
            if i not in S:
                pred = NearestNeighbour().fit(X[S], y[S]).predict(X[i : i + 1])[0]
                hits[i] += pred == y[i]
                outs[i] += 1
                votes[i, pred] += 1
    assert outs.min() > 0
    np.testing.assert_allclose(det.values_, hits / outs)
    np.testing.assert_array_equal(det.n_oob_, outs)
    np.testing.assert_array_equal(det.scores_, -hits / outs)
    np.testing.assert_array_equal(det.flag(), votes[np.arange(n), y] < votes.max(axis=1))


def test_data_oob_ranks_flipped_points_lowest():
    ds = _clusters(2, n_per=20, n_flip=6, d=2)
    det = DataOOB(n_estimators=30, random_state=5).fit(ds)
    assert np.all((det.values_ >= 0) & (det.values_ <= 1))
    flipped, clean = det.values_[ds.is_poison], det.values_[~ds.is_poison]
    assert flipped.mean() < 0.35 < 0.85 < clean.mean()
    assert auroc(det.scores_, ds.is_poison) > 0.95
    again = DataOOB(n_estimators=30, random_state=5).fit(ds)
    np.testing.assert_array_equal(again.values_, det.values_)


def test_data_oob_constant_learner_by_hand():
    """A base model that always predicts class 0: a point's value is 1[y_i = 0] exactly."""

    class Zero:
        def fit(self, X, y):
            return self

        def predict(self, X):
            return np.zeros(len(X), int)

    ds = Dataset.from_arrays(np.arange(12.0)[:, None], [0, 1] * 6)
    det = DataOOB(n_estimators=40, base_estimator=Zero).fit(ds)
    np.testing.assert_array_equal(det.values_, (ds.y == 0).astype(float))
    np.testing.assert_array_equal(det.flag(), ds.y == 1)


def test_data_oob_flags_flips_with_trees_and_with_linear_base_model():
    ds = _clusters(3, n_per=60, n_flip=18)
    trees = DataOOB(n_estimators=30, random_state=5).fit(ds)
    assert auroc(trees.scores_, ds.is_poison) > 0.99
    assert f1_score(trees.flag(), ds.is_poison) > 0.75  # measured 0.80: a few clean points sit among flips
    linear = DataOOB(n_estimators=20, base_estimator="logreg").fit(ds)
    assert auroc(linear.scores_, ds.is_poison) > 0.95


def test_data_oob_bad_input():
    ds = _clusters(0, n_per=10, n_flip=2)
    with pytest.raises(ConfigError, match="n_estimators"):
        DataOOB(n_estimators=0).fit(ds)
    with pytest.raises(ConfigError, match="max_samples"):
        DataOOB(max_samples=1.5).fit(ds)
    with pytest.raises(ConfigError, match="base_estimator"):
        DataOOB(base_estimator=3).fit(ds)
    with pytest.raises(ConfigError, match="class index"):
        DataOOB(n_estimators=2, base_estimator=lambda: type("Bad", (), {
            "fit": lambda self, X, y: self, "predict": lambda self, X: np.full(len(X), 7)})()).fit(ds)
    with pytest.raises(DataError, match="NaN"):
        DataOOB().fit(ds, features=np.full((len(ds), 2), np.nan))
    one_class = Dataset.from_arrays(np.zeros((5, 2)), [1] * 5, min_classes=1)
    with pytest.raises(DataError, match="single class"):
        DataOOB().fit(one_class)
