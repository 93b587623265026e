"""Tests for the outlier detectors: isolation forest (Liu et al. 2008) and LOF (Breunig et al. 2000).

Synthetic data: Gaussian classes far apart; a few samples of class 0 are pushed 6 standard
deviations from their class centre (planted outliers). For the per-class normalisation test the
second class is ten times wider than the first, so that a single forest over all samples finds
the wide class's ordinary members easier to isolate than the tight class's outliers.
"""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.data import Dataset
from mithridate.defenses.detect.base import robust_z
from mithridate.defenses.detect.outliers import IsolationForestDetector, LOFDetector
from mithridate.errors import ConfigError, DataError
from mithridate.eval.metrics import auroc

D = 6
N_OUT = 8


def _planted(seed=0, sizes=(150, 150, 150), shift=6.0):
    rng = np.random.default_rng(seed)
    X, y, p = [], [], []
    for c, n in enumerate(sizes):
        F = rng.normal(size=(n, D)) + 12.0 * c
        pc = np.zeros(n, bool)
        if c == 0:
            d = rng.normal(size=(N_OUT, D))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            F[:N_OUT] += shift * d
            pc[:N_OUT] = True
        X.append(F)
        y += [c] * n
        p.append(pc)
    return Dataset.from_arrays(np.concatenate(X), y, is_poison=np.concatenate(p))


def _two_scales(seed=0, n=150, n_out=6, shift=5.0, wide=10.0):
    """Class 0 ~ N(0, I) with ``n_out`` points pushed ``shift`` away; class 1 ~ N(30, wide² I)."""
    rng = np.random.default_rng(seed)
    X0 = rng.normal(size=(n, 5))
    d = rng.normal(size=(n_out, 5))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    X0[:n_out] += shift * d
    X1 = 30.0 + wide * rng.normal(size=(n, 5))
    p = np.zeros(2 * n, bool)
    p[:n_out] = True
    return Dataset.from_arrays(np.r_[X0, X1], np.r_[np.zeros(n, int), np.ones(n, int)], is_poison=p)


@pytest.fixture(scope="module")
def planted():
    return _planted(0)


def _detectors(seed=0, **kw):
    return [IsolationForestDetector(random_state=seed, **kw), LOFDetector(**kw)]


# -- ranking -------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_class", [True, False])
def test_planted_outliers_rank_above_inliers(seed, per_class):
    # measured: AUROC 0.992-1.000 over seeds 0-4 for both detectors, both modes
    ds = _planted(seed)
    for det in _detectors(seed, per_class=per_class):
        det.fit(ds.without_ground_truth())
        assert det.scores_.shape == (len(ds),)
        assert auroc(det.scores_, ds.is_poison) >= 0.98, det.name
        assert det.ids_.tolist() == ds.ids.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_flags_catch_planted_outliers(seed):
    ds = _planted(seed)
    for det in _detectors(seed):
        flags = det.fit(ds).flag()
        np.testing.assert_array_equal(flags, det.z_ > 3.0)
        assert flags[ds.is_poison].sum() >= N_OUT - 1, det.name
    # isolation forest's robust z > 3 is precise on Gaussian classes (measured 1-7 false flags of 442);
    # LOF's right-skewed raw score flags more (measured 15-29)
    iso = IsolationForestDetector(random_state=seed).fit(ds)
    assert iso.flag()[~ds.is_poison].sum() <= 0.03 * (~ds.is_poison).sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_normalisation_keeps_a_wide_class_from_dominating(seed):
    # A forest fitted to both classes at once finds the wide class's ordinary members easier to
    # isolate than the tight class's outliers (measured AUROC 0.67-0.88, the top 6 all from the
    # wide class); one forest per class plus a robust z per class puts the outliers on top.
    ds = _two_scales(seed)
    per_class = IsolationForestDetector(random_state=seed).fit(ds)
    assert auroc(per_class.scores_, ds.is_poison) >= 0.98
    top = np.argsort(-per_class.scores_)[: int(ds.is_poison.sum())]
    assert (ds.y[top] == 1).sum() <= 2
    one_forest = IsolationForestDetector(random_state=seed, per_class=False).fit(ds)
    assert auroc(one_forest.scores_, ds.is_poison) < auroc(per_class.scores_, ds.is_poison) - 0.05
    top = np.argsort(-one_forest.scores_)[: int(ds.is_poison.sum())]
    assert (ds.y[top] == 1).sum() >= 4
    lof = LOFDetector().fit(ds)
    assert auroc(lof.scores_, ds.is_poison) >= 0.98


@pytest.mark.parametrize("cls", [IsolationForestDetector, LOFDetector])
def test_scores_are_a_robust_z_within_each_class(planted, cls):
    det = cls().fit(planted)
    for c in range(planted.n_classes):
        s = det.scores_[planted.y == c]
        np.testing.assert_allclose(np.median(s), 0.0, atol=1e-9)
        np.testing.assert_allclose(1.4826 * np.median(np.abs(s)), 1.0, rtol=1e-9)
        np.testing.assert_allclose(s, robust_z(det.raw_scores_[planted.y == c]), rtol=1e-12)
    np.testing.assert_array_equal(det.z_, det.scores_)
    assert det.groups_fitted_ == [0, 1, 2]


def test_global_mode_normalises_over_the_whole_set(planted):
    det = LOFDetector(per_class=False).fit(planted)
    np.testing.assert_allclose(det.scores_, robust_z(det.raw_scores_), rtol=1e-12)
    assert det.groups_fitted_ == ["all"]


def test_lof_raw_score_is_scikit_learns_local_outlier_factor(planted):
    from sklearn.neighbors import LocalOutlierFactor

    det = LOFDetector(n_neighbors=15, standardize=False).fit(planted)
    for c in range(planted.n_classes):
        idx = planted.y == c
        lof = LocalOutlierFactor(n_neighbors=15).fit(np.asarray(planted.X[idx], np.float32))
        np.testing.assert_allclose(det.raw_scores_[idx], -lof.negative_outlier_factor_, rtol=1e-6)
        assert np.median(det.raw_scores_[idx]) == pytest.approx(1.0, abs=0.1)  # LOF ≈ 1 inside a cluster


def test_isolation_forest_raw_score_is_the_anomaly_score(planted):
    det = IsolationForestDetector(random_state=0).fit(planted)
    assert np.all((det.raw_scores_ > 0) & (det.raw_scores_ <= 1))
    # Liu et al.: s well below 0.5 for normal points, above 0.5 for anomalies (measured: inlier
    # median 0.44, planted outliers >= 0.557)
    assert det.raw_scores_[planted.is_poison].min() > 0.5
    assert np.median(det.raw_scores_[~planted.is_poison]) < 0.47


def test_isolation_forest_is_seeded(planted):
    a = IsolationForestDetector(random_state=3).fit(planted).scores_
    b = IsolationForestDetector(random_state=3).fit(planted).scores_
    c = IsolationForestDetector(random_state=4).fit(planted).scores_
    g = IsolationForestDetector(random_state=np.random.default_rng(3)).fit(planted).scores_
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, g)
    assert not np.array_equal(a, c)


def test_flag_budget_and_threshold(planted):
    det = IsolationForestDetector(random_state=0).fit(planted)
    flags = det.flag(budget=0.02)  # ceil(0.02 * 450) = 9, over the whole set
    assert flags.sum() == 9
    assert det.scores_[flags].min() >= det.scores_[~flags].max()
    np.testing.assert_array_equal(det.flag(threshold=1.0), det.scores_ > 1.0)
    assert IsolationForestDetector(z_threshold=10.0, random_state=0).fit(planted).flag().sum() <= \
        det.flag().sum()


# -- scaling of LOF ------------------------------------------------------------------------------
def test_lof_standardize_auto_resolves_by_representation(planted):
    assert LOFDetector().fit(planted).standardize_ is True  # raw table columns
    assert LOFDetector().fit(planted, features=np.asarray(planted.X)).standardize_ is False
    img = Dataset.from_arrays(np.random.default_rng(0).random((60, 1, 4, 4)), np.arange(60) % 2)
    assert LOFDetector(n_neighbors=10).fit(img).standardize_ is False
    assert LOFDetector(standardize=True).fit(planted, features=np.asarray(planted.X)).standardize_ is True


def test_lof_standardisation_makes_column_units_irrelevant():
    # the same data with one column in other units (x 1000): standardised, LOF does not change;
    # unscaled, that column alone decides the neighbours and most outliers disappear
    ds = _planted(0)
    X = np.asarray(ds.X, dtype=np.float64).copy()
    X[:, 0] *= 1000.0
    ds2 = Dataset.from_arrays(X, ds.y, is_poison=ds.is_poison)
    base = LOFDetector().fit(ds).scores_
    np.testing.assert_allclose(LOFDetector().fit(ds2).scores_, base, rtol=1e-3, atol=1e-3)
    assert auroc(base, ds.is_poison) >= 0.98
    assert auroc(LOFDetector(standardize=False).fit(ds2).scores_, ds.is_poison) < 0.9


def test_model_layer_is_read():
    class Stub:
        def __init__(self):
            self.layers = []

        def features(self, X, layer):
            self.layers.append(layer)
            return np.asarray(X).reshape(len(X), -1)[:, :3] * 2.0

    ds = _planted(0)
    stub = Stub()
    det = LOFDetector(layer="hidden").fit(ds, model=stub)
    assert stub.layers == ["hidden"]
    assert det.standardize_ is False  # a model layer keeps its scale under "auto"


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [IsolationForestDetector, LOFDetector])
def test_nan_features_are_refused(planted, cls):
    X = np.asarray(planted.X, dtype=np.float64).copy()
    X[5, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        cls().fit(planted, features=X)
    with pytest.raises(DataError, match="NaN"):
        Dataset.from_arrays(X, planted.y)


def test_lof_class_smaller_than_n_neighbors_is_a_clear_error():
    ds = _planted(0, sizes=(150, 150, 12))
    with pytest.raises(ConfigError, match=r"class index 2 has 12.*n_neighbors <= 11.*per_class=False"):
        LOFDetector(n_neighbors=20).fit(ds)
    assert LOFDetector(n_neighbors=11).fit(ds).scores_.shape == (len(ds),)
    assert LOFDetector(n_neighbors=20, per_class=False).fit(ds).scores_.shape == (len(ds),)
    tiny = Dataset.from_arrays(np.random.default_rng(0).normal(size=(10, 2)), np.arange(10) % 2)
    with pytest.raises(ConfigError, match="the data set has 10"):
        LOFDetector(n_neighbors=20, per_class=False).fit(tiny)


@pytest.mark.parametrize("kwargs", [{"n_neighbors": 0}, {"n_neighbors": 2.5}, {"n_neighbors": True},
                                    {"standardize": "yes"}, {"per_class": "no"}, {"z_threshold": "x"}])
def test_lof_bad_parameters(planted, kwargs):
    with pytest.raises(ConfigError):
        LOFDetector(**kwargs).fit(planted)


@pytest.mark.parametrize("kwargs", [{"n_estimators": 0}, {"max_samples": -3}, {"per_class": 1},
                                    {"random_state": "seed"}, {"random_state": -1}])
def test_isolation_forest_bad_parameters(planted, kwargs):
    with pytest.raises(ConfigError):
        IsolationForestDetector(**kwargs).fit(planted)


def test_small_classes_still_score_with_isolation_forest():
    X = np.random.default_rng(0).normal(size=(41, 3))
    y = np.r_[np.zeros(40, int), 1]
    det = IsolationForestDetector(random_state=0, max_samples=256).fit(Dataset.from_arrays(X, y))
    assert np.isfinite(det.scores_).all() and det.scores_[40] == 0.0


def test_not_fitted_and_not_a_dataset():
    with pytest.raises(ConfigError, match="not fitted"):
        LOFDetector().flag()
    with pytest.raises(ConfigError, match="Dataset"):
        IsolationForestDetector().fit(np.zeros((10, 2)))
