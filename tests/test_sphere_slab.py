"""Sphere/slab detectors, the certified bound and the minimax attack (Steinhardt et al. 2017).

The certificate tests use a small synthetic binary problem in the [0, 1]^D box: two overlapping
Gaussian blobs, so that label flips can pass the defence and the bound has something to bound.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from mithridate.attacks.minimax import MinimaxAttack
from mithridate.data import Dataset
from mithridate.defenses.certify import HingeSVM, SphereSlabCertificate, plot_bound, worst_point
from mithridate.defenses.certify.sphere_slab import (
    _ball_box,
    _slab_box,
    _sphere_slab,
    budget_points,
    hinge_loss,
)
from mithridate.defenses.detect import Detector
from mithridate.defenses.detect.sphere_slab import FeasibleSet, SlabDetector, SphereDetector, parse_defense
from mithridate.errors import ConfigError, DataError

D = 8
N_PER_CLASS = 60
EPS = 0.1


def _blobs(seed=0, n=N_PER_CLASS, d=D, sep=0.12, scale=0.12):
    rng = np.random.default_rng(seed)
    c0 = np.full(d, 0.5 - sep / 2)
    c1 = np.full(d, 0.5 + sep / 2)
    X = np.vstack([c0 + scale * rng.normal(size=(n, d)), c1 + scale * rng.normal(size=(n, d))])
    X = np.clip(X, 0.0, 1.0)
    y = np.array([0] * n + [1] * n)
    return Dataset.from_arrays(X, y, name="blobs")


@pytest.fixture(scope="module")
def blobs():
    return _blobs()


@pytest.fixture(scope="module")
def cert(blobs):
    return SphereSlabCertificate(n_steps=250).fit(blobs, epsilons=(0.05, EPS, 0.2), random_state=0)


# -- defence geometry and detectors ------------------------------------------------------------
def _tiny():
    # class 0: (0,0), (1,0), (3,0) -> mean (4/3, 0), distances 4/3, 1/3, 5/3 (median 4/3)
    # class 1: (0,3), (0,4), (0,5) -> mean (0, 4), distances 1, 0, 1 (median 1)
    X = np.array([[0, 0], [1, 0], [3, 0], [0, 3], [0, 4], [0, 5]], float)
    return Dataset.from_arrays(X, [0, 0, 0, 1, 1, 1])


def test_sphere_scores_match_hand_computation():
    ds = _tiny()
    det = SphereDetector(percentile=50, reference=ds).fit(ds)
    np.testing.assert_allclose(det.centroids_, [[4 / 3, 0], [0, 4]], rtol=1e-6)
    np.testing.assert_allclose(det.radii_, [4 / 3, 1.0], rtol=1e-6)
    np.testing.assert_allclose(det.scores_, [1.0, 0.25, 1.25, 1.0, 0.0, 1.0], rtol=1e-6, atol=1e-7)
    assert det.flag().tolist() == [False, False, True, False, False, False]  # score > 1 only
    assert det.centroid_mode_ == "oracle" and isinstance(det, Detector) and det.name == "sphere"


def test_slab_scores_match_hand_computation():
    ds = _tiny()
    det = SlabDetector(percentile=50, reference=ds).fit(ds)
    # v = mu_1 - mu_0 = (-4/3, 4); class 0 offsets <x - mu_0, v> = 16/9, 4/9, -20/9 (median |.| 16/9)
    # class 1 offsets <x - mu_1, v> = -4, 0, 4 (median 4)
    np.testing.assert_allclose(det.feasible_set_.slab_vector, [-4 / 3, 4], rtol=1e-6)
    np.testing.assert_allclose(det.radii_, [16 / 9, 4.0], rtol=1e-6)
    np.testing.assert_allclose(det.scores_, [1.0, 0.25, 1.25, 1.0, 0.0, 1.0], rtol=1e-6, atol=1e-7)
    assert det.name == "slab"


def test_default_radius_is_70th_percentile(blobs):
    for cls in (SphereDetector, SlabDetector):
        det = cls(reference=blobs).fit(blobs)
        for c in (0, 1):
            inside = (det.scores_[blobs.y == c] <= 1).mean()
            assert abs(inside - 0.7) <= 1.0 / N_PER_CLASS + 1e-9


def test_oracle_vs_data_centroids(blobs):
    rng = np.random.default_rng(1)
    far = np.clip(0.95 + 0.02 * rng.normal(size=(15, D)), 0, 1)  # 20% of class 0, far away
    poisoned = blobs.append(far, np.zeros(15, dtype=np.int64))
    clean_means = np.stack([blobs.X[blobs.y == c].mean(axis=0) for c in (0, 1)])
    oracle = SphereDetector(centroids="oracle", reference=blobs).fit(poisoned)
    np.testing.assert_allclose(oracle.centroids_, clean_means, rtol=1e-6)  # unaffected by the poisons
    data = SphereDetector(centroids="data").fit(poisoned)
    naive = np.stack([poisoned.X[poisoned.y == c].mean(axis=0) for c in (0, 1)])
    # the robust (median) centre moves far less towards the poisons than the plain mean
    assert np.linalg.norm(data.centroids_[0] - clean_means[0]) < 0.5 * np.linalg.norm(naive[0] - clean_means[0])
    for det in (oracle, data, SphereDetector(centroids="data", center="trimmed_mean").fit(poisoned)):
        flags = det.flag()
        assert flags[poisoned.is_poison].all(), det.centroid_mode_  # every far point is outside
    assert data.centroid_mode_ == "data"


def test_detector_errors(blobs):
    with pytest.raises(ConfigError, match="reference"):
        SphereDetector(centroids="oracle").fit(blobs)
    three = Dataset.from_arrays(np.random.default_rng(0).random((9, 2)), [0, 1, 2] * 3)
    with pytest.raises(ConfigError, match="two classes"):
        SlabDetector().fit(three)
    assert SphereDetector().fit(three).scores_.shape == (9,)  # multi-class sphere is fine
    with pytest.raises(ConfigError, match="percentile"):
        SphereDetector(percentile=0).fit(blobs)
    with pytest.raises(DataError, match="features"):
        SphereDetector(reference=(np.zeros((4, 3)), [0, 0, 1, 1])).fit(blobs)
    with pytest.raises(ConfigError):
        parse_defense("ball")


# -- inner maximisation ------------------------------------------------------------------------
def _random_feasible(fset, label, defense, rng, n=4000):
    mu = fset.centroids[label]
    d = len(mu)
    dirs = rng.normal(size=(n, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pts = mu + dirs * fset.sphere_radii[label] * rng.random((n, 1)) ** (1 / d) * 1.5
    if fset.box is not None:
        pts = np.clip(pts, *fset.box)
    return pts[fset.contains(pts, np.full(n, label), defense, tol=0)]


@pytest.mark.parametrize("defense", ["sphere+slab", "sphere", "slab"])
@pytest.mark.parametrize("boxed", [True, False])
def test_worst_point_beats_random_and_data_points(blobs, defense, boxed):
    X, y = blobs.X.astype(float), blobs.y
    fset = FeasibleSet.from_data(X, y, 2, box=(0.0, 1.0) if boxed else None)
    rng = np.random.default_rng(3)
    svm = HingeSVM(reg=0.01).fit(X, y)
    if defense == "slab" and not boxed:  # the slab alone is unbounded: a clear error, not a number
        with pytest.raises(ConfigError, match="unbounded"):
            worst_point(svm.coef_, svm.intercept_, 0, fset, defense)
        return
    for trial in range(3):
        w = svm.coef_ + 0.5 * trial * rng.normal(size=D)
        b = svm.intercept_
        for label in (0, 1):
            x, bound = worst_point(w, b, label, fset, defense)
            assert fset.contains(x[None], [label], defense, tol=1e-7)[0]
            lx = hinge_loss(w, b, x[None], [label])[0]
            assert bound >= lx - 1e-9 and bound - lx <= 1e-6  # certified value matches the point
            rand = _random_feasible(fset, label, defense, rng)
            assert len(rand) > 50
            assert lx >= hinge_loss(w, b, rand, np.full(len(rand), label)).max() - 1e-9
            data = X[(y == label) & fset.contains(X, y, defense)]
            assert lx >= hinge_loss(w, b, data, np.full(len(data), label)).max() - 1e-9


def test_inner_solvers_match_a_generic_solver():
    from scipy.optimize import linprog, minimize

    rng = np.random.default_rng(5)
    d = 5
    for _ in range(6):
        c = rng.normal(size=d)
        v = rng.normal(size=d)
        L, H = -rng.random(d), rng.random(d)
        r, s = 0.8, 0.3
        cons = [{"type": "ineq", "fun": lambda u: r * r - u @ u},
                {"type": "ineq", "fun": lambda u: s - v @ u}, {"type": "ineq", "fun": lambda u: s + v @ u}]
        best = min((minimize(lambda u: c @ u, rng.uniform(L, H) * 0.1, method="SLSQP", bounds=list(zip(L, H)),
                             constraints=cons, options={"ftol": 1e-12, "maxiter": 500}) for _ in range(4)),
                   key=lambda res: res.fun if res.success else np.inf)
        fs = FeasibleSet(centroids=np.zeros((2, d)), sphere_radii=np.array([r, r]), slab_radii=np.array([s, s]),
                         slab_vector=v, box=(L, H))
        x, bound = worst_point(c, 0.0, 1, fs, "sphere+slab")  # label 1: the margin is <c, x>
        assert abs(c @ x - best.fun) < 1e-6
        assert best.fun < 1 and 1 - bound <= best.fun + 1e-9  # the certified minimum margin is a lower bound
        # slab and box only: an LP
        lp = linprog(c, A_ub=np.vstack([v, -v]), b_ub=[s, s], bounds=list(zip(L, H)), method="highs")
        assert abs(c @ _slab_box(c, v, s, L, H) - lp.fun) < 1e-9
        # sphere and box: minimiser of <c,u> over box and ball
        u, _ = _ball_box(c, L, H, r * r)
        sb = minimize(lambda u: c @ u, np.zeros(d), method="SLSQP", bounds=list(zip(L, H)), constraints=cons[:1],
                      options={"ftol": 1e-12, "maxiter": 500})
        assert abs(c @ u - sb.fun) < 1e-6 and u @ u <= r * r * (1 + 1e-9)
        # sphere and slab without a box: closed form
        u = _sphere_slab(c, v, r, s)
        ss = minimize(lambda u: c @ u, np.zeros(d), method="SLSQP", constraints=cons, options={"ftol": 1e-12})
        assert abs(c @ u - ss.fun) < 1e-6


# -- the learner --------------------------------------------------------------------------------
def test_hinge_svm_solves_the_constrained_problem():
    from scipy.optimize import minimize

    ds = _blobs(seed=2, n=15, d=2, sep=0.1)
    X, y = ds.X.astype(float), ds.y
    s = 2.0 * y - 1
    n = len(X)
    rho = 4.0
    svm = HingeSVM(rho=rho).fit(X, y)
    theta = np.append(svm.coef_, svm.intercept_)
    assert theta @ theta <= rho * (1 + 1e-9)
    Z = s[:, None] * np.hstack([X, np.ones((n, 1))])
    # reference: min sum(xi)/n st xi >= 1 - Z theta, xi >= 0, |theta|^2 <= rho, as a smooth NLP
    res = minimize(lambda v: v[3:].mean(), np.r_[np.zeros(3), np.full(n, 2.0)], method="SLSQP",
                   bounds=[(None, None)] * 3 + [(0, None)] * n,
                   constraints=[{"type": "ineq", "fun": lambda v: v[3:] - 1 + Z @ v[:3]},
                                {"type": "ineq", "fun": lambda v: rho - v[:3] @ v[:3]}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    assert abs(svm.objective_ - res.fun) < 1e-6
    # the regularised SVM's norm defines rho; the constrained fit then returns the same model
    reg = HingeSVM(reg=0.05).fit(X, y)
    again = HingeSVM(rho=float(reg.coef_ @ reg.coef_ + reg.intercept_**2)).fit(X, y)
    np.testing.assert_allclose(np.append(again.coef_, again.intercept_), np.append(reg.coef_, reg.intercept_),
                               atol=1e-5)


# -- the certificate -----------------------------------------------------------------------------
def _flip_attacks(cert, ds, eps, rng):
    """Random flips and a simple adversarial flip, as points *added* to the clean set."""
    X, y = ds.X.astype(float), ds.y
    k = budget_points(eps, len(ds))
    idx = rng.choice(len(ds), size=k, replace=False)
    random_flip = (X[idx], 1 - y[idx])
    # adversarial: the flipped copies that pass the defence with the largest loss under the clean
    # model, cycled to fill the budget (repeating a point is allowed)
    flipped = 1 - y
    inside = cert.feasible_set_.contains(X, flipped, cert.defense)
    m = cert.clean_model_
    loss = np.where(inside, hinge_loss(m.coef_, m.intercept_, X, flipped), -np.inf)
    order = np.argsort(-loss)[: max(1, int(inside.sum()))]
    pick = np.resize(order, k)
    adversarial_flip = (X[pick], flipped[pick])
    return {"random_flip": random_flip, "adversarial_flip": adversarial_flip}


def test_bound_holds_for_every_attack_tried(cert, blobs):
    rng = np.random.default_rng(0)
    t = cert.table_
    assert list(t.columns[:6]) == ["eps", "n_poison", "clean_loss", "upper_bound", "attack_loss",
                                   "attack_clean_loss"]
    assert (np.diff(t["upper_bound"]) >= -1e-12).all()  # U(ε) is non-decreasing
    for eps in (0.05, EPS, 0.2):
        bound = cert.bounds_[eps]
        assert bound >= cert.clean_loss_
        assert bound >= cert.attack_losses_[eps] >= cert.clean_loss_ - 1e-9
        for name, (Xp, yp) in _flip_attacks(cert, blobs, eps, rng).items():
            res = cert.evaluate(Xp, yp)
            assert res["objective"] <= bound + 1e-9, (eps, name)
            assert res["clean_loss"] <= res["objective"] + 1e-12
        adv = cert.evaluate(*_flip_attacks(cert, blobs, eps, rng)["adversarial_flip"])
        assert adv["n_inside"] > 0  # the adversarial flip does pass the defence here
    row = t.set_index("eps").loc[EPS]
    assert row["ratio"] >= 0.7  # the minimax attack realises most of the certified excess loss


def test_attack_objective_of_a_poisoned_dataset_and_bound_at(cert, blobs):
    Xp, yp = cert.attacks_[EPS]
    appended = blobs.append(Xp, yp)
    assert cert.attack_objective(appended) == pytest.approx(cert.attack_losses_[EPS], abs=1e-9)
    # an in-place label flip of k rows is evaluated as k added flipped copies
    rows = np.arange(0, len(blobs), 10)
    y = np.array(blobs.y, copy=True)
    y[rows] = 1 - y[rows]
    mask = np.zeros(len(blobs), bool)
    mask[rows] = True
    flipped = blobs.replace(y=y, is_poison=mask)
    expected = cert.evaluate(blobs.X[rows], 1 - blobs.y[rows])["objective"]
    assert cert.attack_objective(flipped) == pytest.approx(expected, abs=1e-12)
    assert cert.attack_objective(flipped) <= cert.bound_at(len(rows) / len(blobs)) + 1e-9
    assert cert.bound_at(EPS) == pytest.approx(cert.bounds_[EPS])
    assert cert.bound_at(0.0) == pytest.approx(cert.clean_loss_)
    assert cert.bound_at(0.07) <= cert.bound_at(0.08) <= cert.bound_at(0.5)
    with pytest.raises(ConfigError, match="is_poison"):
        cert.attack_objective(blobs)


def test_bound_comes_from_a_feasible_model(cert):
    theta = cert.bound_thetas_[EPS]
    assert theta @ theta <= cert.rho_ * (1 + 1e-9)
    X, y = cert._X, cert._y
    lc = hinge_loss(theta[:-1], theta[-1], X, y).mean()
    worst = max(worst_point(theta[:-1], theta[-1], k, cert.feasible_set_, cert.defense)[1] for k in (0, 1))
    assert cert.bounds_[EPS] == pytest.approx(lc + EPS * worst, abs=1e-9)


def test_evaluate_with_a_sanitizer_that_also_drops_clean_points(cert, blobs):
    fset = cert.feasible_set_
    assert cert.clean_mask_.tolist() == fset.contains(blobs.X, blobs.y, "sphere+slab").tolist()
    assert 0.3 < cert.clean_mask_.mean() < 0.8  # sphere and slab each keep ~70% of a class
    Xp, yp = cert.attacks_[EPS]
    real = cert.evaluate(Xp, yp, sanitize_clean=True)
    paper = cert.evaluate(Xp, yp)
    assert real["n_inside"] == paper["n_inside"] == len(yp)
    assert real["objective"] != paper["objective"]  # a different victim (the bound is a theorem for `paper`)


def test_hinge_svm_errors():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(ConfigError, match="exactly one"):
        HingeSVM().fit(X, y)
    with pytest.raises(ConfigError, match="exactly one"):
        HingeSVM(rho=1.0, reg=1.0).fit(X, y)
    with pytest.raises(DataError, match="both classes"):
        HingeSVM(rho=1.0).fit(X, np.zeros(4, dtype=int))


def test_certificate_errors(blobs):
    three = Dataset.from_arrays(np.random.default_rng(0).random((9, 2)), [0, 1, 2] * 3)
    with pytest.raises(ConfigError, match="binary"):
        SphereSlabCertificate().fit(three)
    with pytest.raises(ConfigError, match="epsilons"):
        SphereSlabCertificate().fit(blobs, epsilons=(0.0,))
    with pytest.raises(ConfigError, match="unbounded|infinite"):
        SphereSlabCertificate(defense="slab", box=None).fit(_blobs(n=10, d=2), epsilons=(0.1,))
    with pytest.raises(ConfigError, match="not set up|not fitted"):
        SphereSlabCertificate().evaluate(np.zeros((1, D)), [0])


def test_plot_bound_writes_a_png(cert, tmp_path):
    table = pd.concat([cert.table_, cert.table_.assign(attack_loss=cert.table_["attack_loss"] * 0.99)])
    out = plot_bound(table, tmp_path / "bound.png", title="blobs $x")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bound.png"]  # no temporary file left behind
    with pytest.raises(ConfigError, match="columns"):
        plot_bound(cert.table_.drop(columns=["attack_loss"]), tmp_path / "x.png")


# -- the attack ----------------------------------------------------------------------------------
def test_minimax_attack_appends_feasible_points(blobs):
    atk = MinimaxAttack(poison_rate=EPS, n_steps=150)
    res = atk.poison(blobs, random_state=0)
    k = math.floor(EPS * len(blobs))
    assert res.attack == "minimax" and res.budget == {"n_poison": k, "poison_rate": k / len(blobs)}
    assert len(res.dataset) == len(blobs) + k
    assert res.poison_mask.sum() == k and res.poison_mask[-k:].all()
    np.testing.assert_array_equal(res.dataset.X[: len(blobs)], blobs.X)  # clean rows untouched
    Xp, yp = res.dataset.X[-k:], res.dataset.y[-k:]
    fset = FeasibleSet.from_data(blobs.X, blobs.y, 2, box=(0.0, 1.0))
    assert fset.contains(Xp, yp, "sphere+slab", tol=1e-5).all()  # every poison passes the oracle defence
    assert (res.dataset.meta["source"].iloc[-k:] == "minimax").all()
    assert atk.certificate_.bounds_[EPS] >= atk.certificate_.attack_losses_[EPS]
    assert "certificate_" not in res.params and res.params["poison_rate"] == EPS


def test_minimax_attack_needs_binary_data():
    three = Dataset.from_arrays(np.random.default_rng(0).random((30, 2)), [0, 1, 2] * 10)
    with pytest.raises(ConfigError, match="binary"):
        MinimaxAttack().poison(three)
    with pytest.raises(ConfigError, match="poison_rate"):
        MinimaxAttack(poison_rate=1.5).poison(_blobs(n=10, d=2))


def test_certificate_warns_on_unscaled_columns():
    # a user's raw breast_cancer columns gave meaningless bounds (attack below the clean loss) without a word
    from sklearn.datasets import load_breast_cancer

    from mithridate.defenses.certify.sphere_slab import _warn_unscaled_columns

    X, y = load_breast_cancer(return_X_y=True)
    with pytest.warns(UserWarning, match=r"spreads differ by [\d,]+ times; .* scale them first"):
        _warn_unscaled_columns(Dataset.from_arrays(X, y))
    scaled = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_unscaled_columns(Dataset.from_arrays(scaled, y))
