"""Tests for linear regressors and regression poisoning (StatP, OptP; Jagielski et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.attacks.regression import OptP, StatP, n_poison_for_rate, poisoning_gradient
from mithridate.data import Dataset, load_dataset
from mithridate.data.transforms import minmax_scale
from mithridate.errors import ConfigError, DataError
from mithridate.models.regression import LinearRegressor, Regressor, _mse


@pytest.fixture(scope="module")
def diabetes():
    splits, _ = minmax_scale(load_dataset("diabetes"))
    return splits


def _toy(n=60, d=4, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    w = rng.normal(size=d)
    y = np.clip(0.5 + 0.2 * (X - 0.5) @ w + noise * rng.normal(size=n), 0, 1)
    return X, y


def _mse_after_training(kind, alpha, X, y, Xp, yp, Xv, yv, l1_ratio=0.5):
    reg = LinearRegressor(kind, alpha=alpha, l1_ratio=l1_ratio, tol=1e-14)
    reg.fit(np.vstack([X, Xp]), np.concatenate([y, yp]))
    return _mse(yv, reg.predict(Xv))


# -- the regressors ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ridge", "lasso", "elasticnet"])
def test_linear_regressor_matches_scikit_learn(kind):
    from sklearn.linear_model import ElasticNet, Lasso, Ridge

    X, y = _toy(80, 5, seed=1)
    sw = np.random.default_rng(2).uniform(0.5, 2.0, size=len(y))
    alpha = 2e-3
    ours = LinearRegressor(kind, alpha=alpha, l1_ratio=0.3).fit(X, y, sample_weight=sw)
    if kind == "ridge":
        ref = Ridge(alpha=alpha * sw.sum()).fit(X, y, sample_weight=sw)  # Ridge has no 1/N
    elif kind == "lasso":
        ref = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y, sample_weight=sw)
    else:
        ref = ElasticNet(alpha=alpha, l1_ratio=0.3, tol=1e-12, max_iter=100_000).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-7)
    assert ours.intercept_ == pytest.approx(ref.intercept_, abs=1e-7)
    assert isinstance(ours, Regressor)
    np.testing.assert_allclose(ours.per_sample_loss(X, y), (ref.predict(X) - y) ** 2, atol=1e-7)


def test_linear_regressor_on_dataset_and_errors(diabetes):
    reg = LinearRegressor().fit(diabetes.train)
    assert reg.predict(diabetes.test).shape == (len(diabetes.test),)
    assert reg.features(diabetes.test.X).shape == diabetes.test.X.shape
    with pytest.raises(ConfigError, match="regression"):
        LinearRegressor().fit(load_dataset("iris").train)
    with pytest.raises(ConfigError, match="not fitted"):
        LinearRegressor().predict(diabetes.test.X)
    with pytest.raises(ConfigError, match="unknown linear regressor"):
        LinearRegressor("svr").fit(diabetes.train)
    with pytest.raises(ConfigError, match="alpha"):
        LinearRegressor(alpha=-1).fit(diabetes.train)
    with pytest.raises(DataError, match="features"):
        reg.predict(np.zeros((2, 3)))


# -- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, alpha", [("ridge", 1e-3), ("lasso", 1e-4), ("elasticnet", 1e-4)])
def test_optp_gradient_matches_finite_differences(kind, alpha):
    X, y = _toy(40, 4, seed=3)
    Xv, yv = _toy(30, 4, seed=4)
    rng = np.random.default_rng(5)
    Xp, yp = rng.random((5, 4)), rng.random(5)
    coef = LinearRegressor(kind, alpha=alpha).fit(np.vstack([X, Xp]), np.concatenate([y, yp])).coef_
    assert np.all(coef != 0)  # away from the L1 kink the gradient is exact
    W, gX, gy = poisoning_gradient(X, y, Xp, yp, kind, validation=(Xv, yv), alpha=alpha)
    assert W == pytest.approx(_mse_after_training(kind, alpha, X, y, Xp, yp, Xv, yv), rel=1e-9)
    h = 1e-6
    for k in (0, 3):
        for j in range(4):
            up, dn = Xp.copy(), Xp.copy()
            up[k, j] += h
            dn[k, j] -= h
            fd = (_mse_after_training(kind, alpha, X, y, up, yp, Xv, yv)
                  - _mse_after_training(kind, alpha, X, y, dn, yp, Xv, yv)) / (2 * h)
            assert gX[k, j] == pytest.approx(fd, rel=1e-4, abs=1e-9)
        up, dn = yp.copy(), yp.copy()
        up[k] += h
        dn[k] -= h
        fd = (_mse_after_training(kind, alpha, X, y, Xp, up, Xv, yv)
              - _mse_after_training(kind, alpha, X, y, Xp, dn, Xv, yv)) / (2 * h)
        assert gy[k] == pytest.approx(fd, rel=1e-4, abs=1e-9)


def test_active_set_gradient_with_zero_coefficients():
    X, y = _toy(40, 6, seed=6)
    rng = np.random.default_rng(7)
    Xp, yp = rng.random((4, 6)), rng.random(4)
    alpha = 3e-3
    coef = LinearRegressor("lasso", alpha=alpha).fit(np.vstack([X, Xp]), np.concatenate([y, yp])).coef_
    assert np.any(coef == 0) and np.any(coef != 0)
    _, gX, gy = poisoning_gradient(X, y, Xp, yp, "lasso", alpha=alpha, l1_gradient="active-set")
    h = 1e-6
    for j in range(6):
        up, dn = Xp.copy(), Xp.copy()
        up[1, j] += h
        dn[1, j] -= h
        fd = (_mse_after_training("lasso", alpha, X, y, up, yp, X, y)
              - _mse_after_training("lasso", alpha, X, y, dn, yp, X, y)) / (2 * h)
        assert gX[1, j] == pytest.approx(fd, rel=1e-4, abs=1e-9)


# -- the attacks ---------------------------------------------------------------------------------
def test_rate_convention():
    assert n_poison_for_rate(0.2, 309) == 77  # 77 / (309 + 77) = 0.199
    assert n_poison_for_rate(0.5, 10) == 10


def test_statp_points_and_budget(diabetes):
    tr = diabetes.train
    p = StatP(poison_rate=0.2).poison(tr, random_state=0)
    n = len(tr)
    assert p.attack == "statp" and p.budget["n_poison"] == 77 and p.budget["n_clean"] == n
    assert p.budget["poison_rate"] == pytest.approx(77 / (n + 77))
    ds = p.dataset
    assert len(ds) == n + 77 and ds.is_poison[n:].all() and not ds.is_poison[:n].any()
    np.testing.assert_array_equal(ds.ids[:n], tr.ids)
    np.testing.assert_array_equal(ds.X[:n], tr.X)
    Xp, yp = ds.X[n:], ds.y[n:]
    assert set(np.unique(Xp)) <= {0.0, 1.0} and set(np.unique(yp)) <= {0.0, 1.0}
    pred = LinearRegressor().fit(tr).predict(Xp)
    assert np.all(np.abs(yp - np.clip(pred, 0, 1)) >= 0.5 - 1e-9)  # the far end of [0, 1]
    again = StatP(poison_rate=0.2).poison(tr, random_state=0).dataset
    np.testing.assert_array_equal(again.X, ds.X)


def test_optp_beats_its_init_and_statp(diabetes):
    tr = diabetes.train
    X, y = np.asarray(tr.X, float), tr.y
    attack = OptP(poison_rate=0.2, max_iter=20)
    p = attack.poison(tr, random_state=0)
    n = len(tr)
    Xp, yp = np.asarray(p.dataset.X[n:], float), p.dataset.y[n:]
    assert Xp.min() >= 0 and Xp.max() <= 1 and yp.min() >= 0 and yp.max() <= 1
    assert np.all(np.diff(attack.history_) >= -1e-12)
    w_opt = _mse(y, LinearRegressor().fit(p.dataset).predict(X))
    assert w_opt == pytest.approx(attack.history_[-1], rel=1e-4)  # float32 storage of the points
    stat = StatP(poison_rate=0.2).poison(tr, random_state=0).dataset
    w_stat = _mse(y, LinearRegressor().fit(stat).predict(X))
    # measured: init 0.035, StatP 0.064, OptP 0.089 (clean 0.029)
    assert w_opt > 2.0 * attack.history_[0]
    assert w_opt > 1.2 * w_stat


@pytest.mark.parametrize("kind", ["lasso", "elasticnet"])
def test_optp_other_victims_on_a_small_problem(kind):
    X, y = _toy(60, 4, seed=8)
    ds = Dataset.from_arrays(X, y, task="regression")
    attack = OptP(poison_rate=0.2, model=kind, alpha=1e-3, init="boundary-flip", max_iter=10)
    p = attack.poison(ds, random_state=1)
    clean = _mse(y, LinearRegressor(kind, alpha=1e-3).fit(ds).predict(X))
    after = _mse(y, LinearRegressor(kind, alpha=1e-3).fit(p.dataset).predict(X))
    assert attack.history_[-1] > 1.5 * attack.history_[0]
    assert after > 3 * clean


def test_optp_validation_and_objectives(diabetes):
    tr, te = diabetes.train, diabetes.test
    val = OptP(poison_rate=0.1, max_iter=3)
    val.poison(tr, random_state=0, validation=te)
    tup = OptP(poison_rate=0.1, max_iter=3)
    tup.poison(tr, random_state=0, validation=(te.X, te.y))
    assert val.history_ == pytest.approx(tup.history_)
    wtr = OptP(poison_rate=0.1, max_iter=3, objective="Wtr", init="random")
    p = wtr.poison(tr, random_state=0)
    assert p.params["objective"] == "Wtr" and p.params["init"] == "random"
    with pytest.raises(ConfigError, match="Wtr"):
        OptP(objective="Wtr").poison(tr, random_state=0, validation=te)


@pytest.mark.parametrize("rate", [0, 1, -0.1, 1.5, "x"])
@pytest.mark.parametrize("cls", [StatP, OptP])
def test_bad_budget(diabetes, cls, rate):
    with pytest.raises(ConfigError, match="poison_rate"):
        cls(poison_rate=rate).poison(diabetes.train, random_state=0)


@pytest.mark.parametrize("cls", [StatP, OptP])
def test_regression_attacks_refuse_classification_and_unscaled_data(cls):
    with pytest.raises(ConfigError, match="regression attack.*task='regression'"):
        cls().poison(load_dataset("iris").train, random_state=0)
    with pytest.raises(ConfigError, match="minmax_scale"):
        cls().poison(load_dataset("diabetes").train, random_state=0)


def test_optp_bad_options(diabetes):
    for kw, msg in [({"init": "flip"}, "init"), ({"objective": "V"}, "objective"), ({"beta": 1.0}, "beta"),
                    ({"model": "svr"}, "unknown linear regressor"), ({"l1_gradient": "x"}, "l1_gradient")]:
        with pytest.raises(ConfigError, match=msg):
            OptP(**kw).poison(diabetes.train, random_state=0)
    with pytest.raises(ConfigError, match="inserts no point"):
        OptP(poison_rate=0.001).poison(diabetes.train.subset(np.arange(20)), random_state=0)
