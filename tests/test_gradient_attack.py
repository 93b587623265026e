"""Tests for gradient poisoning of binary linear classifiers (Biggio, Nelson & Laskov 2012)."""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.attacks.gradient import (
    GradientPoisoning,
    _Problem,
    fit_linear,
    validation_loss_and_gradient,
)
from mithridate.data import Dataset, load_dataset
from mithridate.errors import ConfigError, DataError
from mithridate.eval.metrics import accuracy
from mithridate.models.linear import SklearnClassifier


def _toy(n=30, d=10, k=3, seed=0):
    """A small noisy binary problem in [0, 1]^d with k attack points (more features than margin SVs)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    y = (X[:, 0] + X[:, 1] + 0.3 * rng.standard_normal(n) > 1).astype(int)
    Xv = rng.random((30, d))
    yv = (Xv[:, 0] + Xv[:, 1] > 1).astype(int)
    Xa = rng.random((k, d))
    ya = np.array([0, 1, 1])[:k]
    return X, y, Xa, ya, Xv, yv


def _finite_differences(fun, Xa, h=1e-6):
    fd = np.zeros_like(Xa)
    for idx in np.ndindex(*Xa.shape):
        E = np.zeros_like(Xa)
        E[idx] = h
        fd[idx] = (fun(Xa + E) - fun(Xa - E)) / (2 * h)
    return fd


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", classes=[1, 7], random_state=0)


# -- the implicit gradient against finite differences (retraining at x_c +- h) ----------------------
@pytest.mark.parametrize(
    "model, svm_loss, standardize, objective",
    [
        ("logreg", "squared_hinge", True, None),          # log loss, exact Hessian, scaler terms
        ("logreg", "squared_hinge", False, None),
        ("linear_svm", "squared_hinge", True, None),      # LinearSVC's loss, hinge validation loss
        ("linear_svm", "squared_hinge", True, "error"),   # smoothed error through ||w||
        ("linear_svm", "hinge", False, None),             # Biggio's KKT gradient
        ("linear_svm", "hinge", True, "logistic"),
    ],
)
def test_implicit_gradient_matches_finite_differences(model, svm_loss, standardize, objective):
    X, y, Xa, ya, Xv, yv = _toy()
    kw = dict(model=model, svm_loss=svm_loss, standardize=standardize, objective=objective)
    loss, grad = validation_loss_and_gradient(X, y, Xa, ya, Xv, yv, **kw)
    fd = _finite_differences(lambda A: validation_loss_and_gradient(X, y, A, ya, Xv, yv, **kw)[0], Xa)
    assert loss > 0
    assert np.abs(fd).max() > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(grad, fd, atol=1e-7 * max(1.0, np.abs(fd).max()))


def test_cross_validation_fold_gradient_matches_finite_differences():
    # the default path: scaler on every clean row, model on a weighted subset, scored on the rest
    X, y, Xa, ya, _, _ = _toy(n=40, d=8)
    s, sa = 2.0 * y - 1, 2.0 * ya - 1
    fit_rows, held = np.arange(10, 40), np.arange(10)

    def problem():
        return _Problem(X, X[fit_rows], s[fit_rows], X[held], s[held], sa, model="linear_svm",
                        loss="squared_hinge", C=0.7, standardize=True, objective="hinge", weight=4 / 3)

    p = problem()
    grad = p.gradient(p.fit(Xa))

    def value(A):
        q = problem()
        return q.value(q.fit(A))

    fd = _finite_differences(value, Xa)
    assert np.abs(fd).max() > 1e-3
    np.testing.assert_allclose(grad, fd, atol=1e-7)


def test_image_shaped_attack_points_keep_their_shape():
    X, y, Xa, ya, Xv, yv = _toy(d=12)
    img = lambda a: a.reshape(len(a), 1, 3, 4)  # noqa: E731
    loss, grad = validation_loss_and_gradient(img(X), y, img(Xa), ya, img(Xv), yv)
    loss_flat, grad_flat = validation_loss_and_gradient(X, y, Xa, ya, Xv, yv)
    assert grad.shape == (3, 1, 3, 4)
    assert loss == pytest.approx(loss_flat)
    np.testing.assert_allclose(grad.reshape(3, -1), grad_flat)


# -- the inner solver is the victim's objective ---------------------------------------------------
def test_inner_solver_matches_scikit_learn_victims():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    X, y, *_ = _toy(n=60)
    Z = StandardScaler().fit_transform(X)
    w, b, mean, scale = fit_linear(X, y, model="linear_svm", C=1.0)
    ref = LinearSVC(C=1.0, tol=1e-10, max_iter=100_000).fit(Z, y)
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-6)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-6)
    w, b, _, _ = fit_linear(X, y, model="logreg", C=0.5)
    ref = LogisticRegression(C=0.5, tol=1e-12, max_iter=100_000).fit(Z, y)
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-5)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-5)
    np.testing.assert_allclose(mean, X.mean(axis=0))
    np.testing.assert_allclose(scale, X.std(axis=0))


# -- the attack ------------------------------------------------------------------------------------
def test_poison_shapes_ids_labels_budget(digits):
    train = digits.train
    atk = GradientPoisoning(poison_rate=0.03, n_steps=5)
    p = atk.poison(train, random_state=0)
    ds, k = p.dataset, p.budget["n_poison"]
    assert p.attack == "gradient" and GradientPoisoning.name == "gradient"
    assert k == round(0.03 * len(train) / 0.97) == 8
    assert p.budget["poison_rate"] == pytest.approx(k / (len(train) + k))
    assert ds.X.shape == (len(train) + k, 1, 8, 8) and ds.X.dtype == np.float32
    assert ds.is_poison.tolist() == [False] * len(train) + [True] * k
    np.testing.assert_array_equal(ds.X[: len(train)], train.X)
    np.testing.assert_array_equal(ds.y[: len(train)], train.y)
    assert ds.ids[: len(train)].tolist() == train.ids.tolist()
    assert ds.ids[len(train):].tolist() == list(range(int(train.ids.max()) + 1, int(train.ids.max()) + 1 + k))
    assert set(ds.y[len(train):].tolist()) <= {0, 1}
    assert (ds.meta["source"].iloc[len(train):] == "gradient").all()
    assert ds.classes == train.classes
    assert p.params["poison_rate"] == 0.03 and p.params["model"] == "linear_svm"


def test_attack_raises_its_objective_over_the_init(digits):
    atk = GradientPoisoning(poison_rate=0.03)
    atk.poison(digits.train, random_state=0)
    # measured: 0.19 -> 1.08 (cross-validated hinge loss); demand a clear margin
    assert atk.loss_ > 3 * atk.loss_init_
    assert np.all(np.diff(atk.history_) > 0) and len(atk.history_) == atk.n_iter_ + 1


def test_attack_damages_the_sklearn_victim_on_its_validation_data(digits):
    # with a clean validation set the victim does not train on (Biggio et al.'s setting), the
    # sklearn victim's error there must rise well above its clean value (measured 0% -> 24%)
    train, val = digits.train, digits.test
    clean = SklearnClassifier("linear_svm").fit(train)
    p = GradientPoisoning(poison_rate=0.03).poison(train, random_state=0, validation=val)
    victim = SklearnClassifier("linear_svm").fit(p.dataset)
    err_clean = 1 - accuracy(val.y, clean.predict(val.X))
    err = 1 - accuracy(val.y, victim.predict(val.X))
    assert err_clean < 0.03
    assert err > err_clean + 0.1


def test_points_stay_in_the_box(digits):
    train = digits.train
    flat = train.X.reshape(len(train), -1)
    p = GradientPoisoning(poison_rate=0.05, n_steps=20, box=None).poison(train, random_state=1)
    pts = p.dataset.X[p.poison_mask].reshape(p.budget["n_poison"], -1)
    assert np.all(pts >= flat.min(axis=0) - 1e-7) and np.all(pts <= flat.max(axis=0) + 1e-7)
    lo = np.zeros((1, 8, 8))
    hi = np.full((1, 8, 8), 0.5)
    hi[..., :4] = 1.0  # left half may reach 1, right half only 0.5
    scaled = train.replace(X=np.minimum(train.X, hi).astype(np.float32))
    p = GradientPoisoning(poison_rate=0.05, n_steps=20, box=(lo, hi)).poison(scaled, random_state=1)
    pts = p.dataset.X[p.poison_mask]
    assert np.all(pts >= 0) and np.all(pts <= hi + 1e-7)


def test_logreg_and_tabular_data_with_validation():
    rng = np.random.default_rng(3)
    X = rng.random((80, 4))
    y = (X[:, 0] > X[:, 1]).astype(int)
    train = Dataset.from_arrays(X[:60], y[:60])
    val = Dataset.from_arrays(X[60:], y[60:])
    atk = GradientPoisoning(poison_rate=0.1, model="logreg", n_steps=15)
    p = atk.poison(train, random_state=0, validation=val)
    assert p.dataset.X.shape == (67, 4) and p.budget["n_poison"] == 7
    assert atk.loss_ > atk.loss_init_


def test_hinge_svm_attack_runs_and_ascends():
    rng = np.random.default_rng(4)
    X = rng.random((40, 12))
    y = (X[:, :3].sum(axis=1) > 1.5).astype(int)
    atk = GradientPoisoning(poison_rate=0.05, svm_loss="hinge", n_steps=5, cv=2)
    p = atk.poison(Dataset.from_arrays(X, y), random_state=0)
    assert p.budget["n_poison"] == 2 and atk.loss_ >= atk.loss_init_


def test_same_seed_same_points(digits):
    a = GradientPoisoning(n_steps=5).poison(digits.train, random_state=7).dataset
    b = GradientPoisoning(n_steps=5).poison(digits.train, random_state=7).dataset
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)


# -- errors ----------------------------------------------------------------------------------------
def test_multiclass_is_refused_with_a_hint():
    train = load_dataset("digits").train
    with pytest.raises(ConfigError, match=r"binary-only.*classes="):
        GradientPoisoning().poison(train, random_state=0)


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5, -0.1, "a"])
def test_budget_outside_unit_interval(digits, rate):
    with pytest.raises(ConfigError, match="poison_rate"):
        GradientPoisoning(poison_rate=rate).poison(digits.train, random_state=0)


def test_budget_too_small_for_the_data():
    ds = Dataset.from_arrays(np.random.default_rng(0).random((20, 3)), [0, 1] * 10)
    with pytest.raises(ConfigError, match="inserts no point"):
        GradientPoisoning(poison_rate=0.01).poison(ds, random_state=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"model": "tree"}, "model must be"),
        ({"svm_loss": "l1"}, "svm_loss"),
        ({"C": 0}, "C must be"),
        ({"objective": "accuracy"}, "objective"),
        ({"step": 0}, "step"),
        ({"n_steps": -1}, "n_steps"),
        ({"cv": 1}, "cv"),
        ({"init": "random"}, "init"),
        ({"box": (0, 1, 2)}, "box"),
        ({"box": (1.0, 0.0)}, "low <= high"),
    ],
)
def test_bad_parameters(digits, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GradientPoisoning(**kwargs).poison(digits.train, random_state=0)


def test_data_outside_the_box_is_refused():
    ds = Dataset.from_arrays(np.random.default_rng(0).random((40, 3)) * 10, [0, 1] * 20)
    with pytest.raises(ConfigError, match="minmax_scale"):
        GradientPoisoning(poison_rate=0.1).poison(ds, random_state=0)


def test_regression_and_mismatched_validation_are_refused(digits):
    reg = Dataset.from_arrays(np.random.default_rng(0).random((20, 3)), np.arange(20.0), task="regression")
    with pytest.raises(ConfigError, match="regression"):
        GradientPoisoning().poison(reg, random_state=0)
    other = load_dataset("digits", classes=[1, 8], random_state=0).test
    with pytest.raises(ConfigError, match="validation classes"):
        GradientPoisoning().poison(digits.train, random_state=0, validation=other)
    flat = digits.test.replace(X=digits.test.X.reshape(len(digits.test), -1))
    with pytest.raises(DataError, match="shape"):
        GradientPoisoning().poison(digits.train, random_state=0, validation=flat)


def test_too_few_samples_per_class_for_the_folds():
    ds = Dataset.from_arrays(np.random.default_rng(0).random((23, 3)), [0] * 20 + [1] * 3)
    with pytest.raises(DataError, match="cv=5"):
        GradientPoisoning(poison_rate=0.1).poison(ds, random_state=0)
