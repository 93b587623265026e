"""Tests for TRIM, trimmed-loss linear regression (Jagielski et al. 2018, Sec. V)."""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.attacks.regression import OptP
from mithridate.data import Dataset, load_dataset
from mithridate.data.transforms import minmax_scale
from mithridate.defenses.train.trim import TrimRegressor
from mithridate.errors import ConfigError
from mithridate.models.regression import LinearRegressor, Regressor, _mse


def _planted(n_clean=200, n_out=50, d=5, seed=0):
    """A clean linear relation plus 20% far-off outliers (responses pushed to the far end)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n_clean + n_out, d))
    w = rng.normal(size=d)
    y = 0.5 + 0.15 * (X - 0.5) @ w + 0.03 * rng.normal(size=len(X))
    bad = np.zeros(len(X), bool)
    bad[rng.choice(len(X), n_out, replace=False)] = True
    y[bad] = np.where(y[bad] < 0.5, 1.0, 0.0) - 0.05 * (y[bad] - 0.5)
    return X, y, bad


@pytest.mark.parametrize("kwargs", [{}, {"n_clean": 200}, {"clean_fraction": 0.8}, {"base": "lasso", "alpha": 1e-4}])
def test_trim_recovers_planted_clean_set(kwargs):
    X, y, bad = _planted()
    trim = TrimRegressor(**kwargs, random_state=0).fit(X, y)
    assert trim.kept_.shape == (len(y),)
    assert trim.kept_[~bad].mean() >= 0.95  # almost every clean row kept
    assert not trim.kept_[bad].any()  # no outlier kept
    kind = kwargs.get("base", "ridge")
    ref = LinearRegressor(kind, alpha=kwargs.get("alpha", 1e-3)).fit(X[~bad], y[~bad])
    naive = LinearRegressor(kind, alpha=kwargs.get("alpha", 1e-3)).fit(X, y)
    assert np.abs(trim.coef_ - ref.coef_).max() < 0.02 < np.abs(naive.coef_ - ref.coef_).max()
    assert trim.n_clean_ == trim.kept_.sum()
    if "n_clean" in kwargs or "clean_fraction" in kwargs:
        assert trim.n_clean_ == 200
    assert isinstance(trim, Regressor)


def test_trim_auto_keeps_nearly_everything_without_poison():
    X, y, bad = _planted()
    trim = TrimRegressor(random_state=1).fit(X[~bad], y[~bad])
    assert trim.kept_.mean() >= 0.95
    assert trim.scale_ == pytest.approx(0.03, rel=0.2)  # the planted noise level


def test_trim_is_deterministic_and_reaches_a_low_trimmed_loss():
    X, y, bad = _planted(seed=2)
    a = TrimRegressor(n_clean=200, random_state=3).fit(X, y)
    b = TrimRegressor(n_clean=200, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.kept_, b.kept_)
    # no worse than TRIM started from the true clean set
    ref = LinearRegressor().fit(X[~bad], y[~bad])
    r2 = np.sort((ref.predict(X) - y) ** 2)[:200]
    assert a.loss_ <= 0.5 * r2.mean() + 0.5e-3 * float(ref.coef_ @ ref.coef_) + 1e-12
    assert a.n_iter_ >= 1


def test_trim_undoes_optp_on_diabetes():
    splits, _ = minmax_scale(load_dataset("diabetes"))
    tr, te = splits.train, splits.test
    poisoned = OptP(poison_rate=0.2, max_iter=10).poison(tr, random_state=0).dataset
    clean = _mse(te.y, LinearRegressor().fit(tr).predict(te.X))
    attacked = _mse(te.y, LinearRegressor().fit(poisoned).predict(te.X))
    trim = TrimRegressor().fit(poisoned)
    assert attacked > 2.5 * clean
    assert _mse(te.y, trim.predict(te.X)) <= 1.15 * clean
    assert not trim.kept_[poisoned.is_poison].any()
    assert trim.per_sample_loss(te).shape == (len(te),)


def test_trim_sample_weight_of_ones_changes_nothing():
    X, y, _ = _planted(seed=4)
    a = TrimRegressor(n_clean=200).fit(X, y)
    b = TrimRegressor(n_clean=200).fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-10)


def test_trim_errors():
    X, y, _ = _planted()
    with pytest.raises(ConfigError, match="not both"):
        TrimRegressor(n_clean=100, clean_fraction=0.5).fit(X, y)
    with pytest.raises(ConfigError, match="n_clean"):
        TrimRegressor(n_clean=10_000).fit(X, y)
    with pytest.raises(ConfigError, match="clean_fraction"):
        TrimRegressor(clean_fraction=1.5).fit(X, y)
    with pytest.raises(ConfigError, match="n_init"):
        TrimRegressor(n_init=0).fit(X, y)
    with pytest.raises(ConfigError, match="not fitted"):
        TrimRegressor().predict(X)
    with pytest.raises(ConfigError, match="regression"):
        TrimRegressor().fit(load_dataset("iris").train)
    ds = Dataset.from_arrays(X, y, task="regression")
    assert TrimRegressor(clean_fraction=1.0).fit(ds).kept_.all()
