"""Poisoning linear regression: StatP and OptP (Jagielski et al., IEEE S&P 2018).

Both attacks *insert* ``p`` points into a training set of ``n`` clean points whose features and
response lie in [0, 1] (scale with :func:`mithridate.data.transforms.minmax_scale`). As in the
paper, the poisoning rate is ``p / (n + p)`` -- the share of poison in the training set after
insertion -- so a rate ``r`` inserts ``p = round(r * n / (1 - r))`` points.

* **StatP** (Sec. III-C): draw ``x ~ N(mu, Sigma)`` of the training features, round every
  feature to the nearer corner of the box (0 or 1) and set the response to the far end of the
  range from the clean model's prediction, ``y = 1 - round(f(x))``. One fit, no optimisation.
* **OptP** (Sec. III-A/B, Algorithm 1): bilevel gradient ascent on every attack point
  ``z_c = (x_c, y_c)``, maximising the poisoned model's MSE ``W`` on validation data (or on the
  clean training data, ``Wtr``). The gradient of the retrained parameters ``theta = (w, b)`` comes
  from differentiating the training optimality conditions (Eq. 7-9 of the paper, in the loss
  convention of :mod:`mithridate.models.regression`, ``N = n + p``)::

      [ Sigma + alpha(1-rho) I   mu ] [dw/dx_c  dw/dy_c]        1  [ r_c I + x_c w'   -x_c ]
      [ mu'                      1  ] [db/dx_c  db/dy_c]  =  - ---  [ w'                 -1  ]
                                                                N

  with ``Sigma = 1/N sum x_i x_i'``, ``mu = 1/N sum x_i`` and ``r_c = w.x_c + b - y_c``. For
  LASSO and elastic net the L1 subgradient ``sign(w)`` is treated as constant, so it drops out
  of the system (the paper's ``g = 0`` for the L1 part). By default (``l1_gradient="full"``,
  as in the paper) the system is solved for every coefficient, including those at zero: that is
  the exact gradient when no coefficient is zero, and otherwise a search direction that lets
  the attack switch coefficients on. ``l1_gradient="active-set"`` solves it on the non-zero
  coefficients plus the intercept and holds the others at zero, the exact derivative wherever
  the active set is locally stable; on diabetes (20%, alpha = 1e-3) it stalled earlier (LASSO
  test MSE x2.4-2.7 against x3.1 for "full"), hence the default. The
  chain rule through one adjoint solve ``K v = grad_theta W`` gives, for every point at once::

      grad_{x_c} W = -(r_c v_w + w (x_c.v_w + v_b)) / N,   grad_{y_c} W = (x_c.v_w + v_b) / N.

  Points are updated one after the other; each step is a projected line search along the
  (box-projected) gradient direction with initial step ``eta``, shrunk by ``beta`` whenever the
  objective does not rise, the model retrained after every move; the sweep over all points
  repeats until ``W`` changes by less than ``tol``.

Every refit runs on (d+1) x (d+1) Gram statistics updated by rank-one changes, so the cost of
OptP does not grow with ``n`` beyond the first pass over the data.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from mithridate.attacks.base import Attack, Poisoning
from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError
from mithridate.models.regression import (
    LinearRegressor,
    as_regressor,
    augment,
    gram,
    penalty_matrix,
    regression_xy,
    solve_gram,
)
from mithridate.utils import RandomState, check_fraction, check_random_state

INITS = ("inverse-flip", "boundary-flip", "random")
OBJECTIVES = ("W", "Wtr")
RATE_CONVENTION = "n_poison / (n_clean + n_poison)"
_BOX_TOL = 1e-6


def n_poison_for_rate(rate: float, n_clean: int) -> int:
    """Points to insert so that they make up ``rate`` of the training set after insertion."""
    return int(round(rate * n_clean / (1.0 - rate)))


def _check_box(X: np.ndarray, y: np.ndarray, what: str) -> None:
    def outside(a: np.ndarray) -> bool:
        return bool(a.size) and (a.min() < -_BOX_TOL or a.max() > 1 + _BOX_TOL)

    if outside(X) or outside(y):
        raise ConfigError(
            f"{what} must have features and targets in [0, 1] (the attack searches that box); got "
            f"features in [{X.min():.3g}, {X.max():.3g}] and targets in [{y.min():.3g}, {y.max():.3g}]. "
            "Scale the splits first with mithridate.data.transforms.minmax_scale(splits)"
        )


class _RegressionAttack(Attack):
    """Shared checks and bookkeeping of the regression attacks."""

    def _training_arrays(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, int]:
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"{self.name} poisons a mithridate Dataset, got {type(dataset).__name__}")
        if not dataset.is_regression:
            raise ConfigError(
                f"{self.name} is a regression attack and needs a dataset with task='regression' "
                f"(float targets); {dataset.name!r} is a classification set. Use a label-flipping or "
                "gradient attack for classifiers"
            )
        if dataset.X.ndim != 2:
            raise ConfigError(f"{self.name} needs tabular data (n x d); got samples of shape {dataset.X.shape[1:]}")
        rate = check_fraction(self.poison_rate, "poison_rate")
        X, y = regression_xy(dataset, who=self.name)
        _check_box(X, y, f"the training set {dataset.name!r}")
        p = n_poison_for_rate(rate, len(X))
        if p < 1:
            raise ConfigError(
                f"poison_rate {rate} of {len(X)} clean samples inserts no point (p = r n / (1 - r) rounds "
                "to 0); raise it"
            )
        return X, y, p

    def _result(self, dataset: Dataset, Xp: np.ndarray, yp: np.ndarray) -> Poisoning:
        n, p = len(dataset), len(Xp)
        poisoned = dataset.append(Xp.astype(np.float32), yp.astype(np.float64), is_poison=True, source=self.name)
        budget = {"n_poison": p, "poison_rate": p / (n + p), "n_clean": n, "rate_convention": RATE_CONVENTION}
        return Poisoning(dataset=poisoned, attack=self.name, params=self.get_params(), budget=budget)

    def get_params(self) -> dict:
        out = super().get_params()
        if isinstance(out.get("model"), LinearRegressor):
            out["model"] = repr(out["model"])
        return out


class StatP(_RegressionAttack):
    """Statistical poisoning of linear regression: corner points with far-off responses.

    Draws each attack point's features from a multivariate normal with the training features'
    mean and covariance, rounds every feature to the nearer box corner (0 or 1), and sets the
    response to ``1 - round(f(x))`` where ``f`` is the regressor fitted on the clean training
    set (``f(x)`` clipped to [0, 1]), i.e. the end of the response range farther from the clean
    prediction. Features and targets must be scaled to [0, 1].

    Parameters
    ----------
    poison_rate : float, default=0.2
        Share of poison in the training set *after* insertion, in (0, 1): ``p = round(r n / (1-r))``
        points are added to the ``n`` clean ones (the paper's convention).
    model : {"ridge", "lasso", "elasticnet"} or LinearRegressor, default="ridge"
        The clean model whose predictions decide each response.
    alpha : float or None, default=None
        Its regularisation (``None``: the template's or the default).

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> from mithridate.data.transforms import minmax_scale
    >>> splits, _ = minmax_scale(load_dataset("diabetes"))
    >>> p = StatP(poison_rate=0.2).poison(splits.train, random_state=0)
    >>> p.budget["n_poison"], round(p.budget["poison_rate"], 3)
    (77, 0.199)
    >>> sorted(set(p.dataset.X[p.poison_mask].ravel().tolist()))
    [0.0, 1.0]

    References
    ----------
    Jagielski, Oprea, Biggio, Liu, Nita-Rotaru, Li. "Manipulating Machine Learning: Poisoning
    Attacks and Countermeasures for Regression Learning." IEEE S&P 2018, Sec. III-C.
    """

    name = "statp"

    def __init__(self, poison_rate: float = 0.2, model: Union[str, LinearRegressor] = "ridge",
                 alpha: Optional[float] = None):
        self.poison_rate = poison_rate
        self.model = model
        self.alpha = alpha

    def poison(self, dataset: Dataset, random_state: RandomState = None) -> Poisoning:
        """Insert the attack points; returns the training set plus ``p`` rows marked ``is_poison``."""
        X, y, p = self._training_arrays(dataset)
        rng = check_random_state(random_state)
        reg = as_regressor(self.model, self.alpha).fit(X, y)
        mu = X.mean(axis=0)
        cov = np.cov(X, rowvar=False).reshape(X.shape[1], X.shape[1]) if len(X) > 1 else np.zeros((X.shape[1],) * 2)
        Z = rng.multivariate_normal(mu, cov, size=p, method="eigh")
        Xp = (Z >= 0.5).astype(np.float64)
        yhat = np.clip(reg.predict(Xp), 0.0, 1.0)
        yp = np.where(yhat >= 0.5, 0.0, 1.0)
        return self._result(dataset, Xp, yp)


class _Bilevel:
    """The OptP inner problem on Gram statistics: refit, objective, gradients per attack point."""

    def __init__(self, Xa: np.ndarray, y: np.ndarray, Va: np.ndarray, vy: np.ndarray, alpha: float, rho: float,
                 max_cd: int, active_set: bool = False):
        self.d = Xa.shape[1] - 1
        self.A0, self.c0, self.n = gram(Xa, y)
        self.V, self.r = Va.T @ Va, Va.T @ vy
        self.s, self.m = float(vy @ vy), float(len(vy))
        self.alpha, self.rho, self.max_cd, self.active_set = alpha, rho, max_cd, active_set
        self.reg = penalty_matrix(self.d, alpha, rho)

    def set_points(self, Xp: np.ndarray, yp: np.ndarray) -> None:
        self.Pa = augment(Xp)
        self.yp = np.array(yp, dtype=np.float64)
        self.A = self.A0 + self.Pa.T @ self.Pa
        self.c = self.c0 + self.Pa.T @ self.yp
        self.N = self.n + len(yp)

    def moved(self, k: int, xa_new: np.ndarray, y_new: float) -> tuple[np.ndarray, np.ndarray]:
        """Gram statistics with point ``k`` replaced (without committing)."""
        xo, yo = self.Pa[k], self.yp[k]
        A = self.A + np.outer(xa_new, xa_new) - np.outer(xo, xo)
        c = self.c + xa_new * y_new - xo * yo
        return A, c

    def commit(self, k: int, xa_new: np.ndarray, y_new: float, A: np.ndarray, c: np.ndarray) -> None:
        self.Pa[k], self.yp[k], self.A, self.c = xa_new, y_new, A, c

    def refresh(self) -> None:
        """Recompute the statistics from scratch (drops rank-one rounding drift)."""
        self.A = self.A0 + self.Pa.T @ self.Pa
        self.c = self.c0 + self.Pa.T @ self.yp

    def fit(self, A: np.ndarray, c: np.ndarray, theta0: Optional[np.ndarray] = None) -> np.ndarray:
        return solve_gram(A, c, self.N, self.alpha, self.rho, theta0=theta0, max_iter=self.max_cd)[0]

    def value(self, theta: np.ndarray) -> float:
        return max(float(theta @ self.V @ theta - 2.0 * theta @ self.r + self.s) / self.m, 0.0)

    def adjoint(self, theta: np.ndarray) -> np.ndarray:
        """``v = K^{-1} grad_theta W`` (on the active set only, zero elsewhere, with ``active_set``)."""
        g = 2.0 * (self.V @ theta - self.r) / self.m
        K = self.A / self.N
        K[np.diag_indices(self.d + 1)] += self.reg
        if self.rho > 0.0 and self.active_set:
            act = np.flatnonzero(np.append(theta[:-1] != 0.0, True))
        else:
            act = np.arange(self.d + 1)
        v = np.zeros(self.d + 1)
        Ks = K[np.ix_(act, act)]
        try:
            v[act] = np.linalg.solve(Ks, g[act])
        except np.linalg.LinAlgError:
            v[act] = np.linalg.lstsq(Ks, g[act], rcond=None)[0]
        return v

    def point_gradient(self, theta: np.ndarray, v: np.ndarray, k: int) -> tuple[np.ndarray, float]:
        """``(grad_x W, dW/dy)`` for attack point ``k`` given the adjoint ``v``."""
        xa, yk = self.Pa[k], self.yp[k]
        w, vw, vb = theta[:-1], v[:-1], v[-1]
        rc = float(xa @ theta - yk)
        s = float(xa[:-1] @ vw + vb)
        return -(rc * vw + w * s) / self.N, s / self.N


def poisoning_gradient(X: Any, y: Any, X_poison: Any, y_poison: Any, model: Union[str, LinearRegressor] = "ridge",
                       *, validation: Optional[tuple] = None, alpha: Optional[float] = None,
                       l1_ratio: float = 0.5, l1_gradient: str = "full") -> tuple[float, np.ndarray, np.ndarray]:
    """OptP's objective and its gradient with respect to every attack point.

    Trains ``model`` on the clean ``(X, y)`` plus the attack points and returns
    ``(W, dW/dX_poison, dW/dy_poison)`` where ``W`` is the trained model's MSE on
    ``validation = (X_val, y_val)`` (default: the clean ``(X, y)``), differentiated through the
    optimality conditions of the training problem (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.random((50, 3)), rng.random(50)
    >>> W, gX, gy = poisoning_gradient(X, y, rng.random((5, 3)), rng.random(5))
    >>> gX.shape, gy.shape
    ((5, 3), (5,))
    """
    if l1_gradient not in ("full", "active-set"):
        raise ConfigError(f"l1_gradient must be 'full' or 'active-set', got {l1_gradient!r}")
    X, y = regression_xy(X, y, who="poisoning_gradient")
    Xp, yp = regression_xy(X_poison, y_poison, who="poisoning_gradient")
    Xv, yv = (X, y) if validation is None else regression_xy(*validation, who="poisoning_gradient")
    reg = as_regressor(model, alpha, l1_ratio)
    prob = _Bilevel(augment(X), y, augment(Xv), yv, float(reg.alpha), reg.rho_, reg.max_iter,
                    active_set=l1_gradient == "active-set")
    prob.set_points(Xp, yp)
    theta = solve_gram(prob.A, prob.c, prob.N, prob.alpha, prob.rho, max_iter=reg.max_iter, tol=reg.tol)[0]
    v = prob.adjoint(theta)
    gX, gy = np.zeros_like(Xp), np.zeros(len(yp))
    for k in range(len(yp)):
        gX[k], gy[k] = prob.point_gradient(theta, v, k)
    return prob.value(theta), gX, gy


class OptP(_RegressionAttack):
    """Optimisation-based poisoning of linear regression by bilevel gradient ascent.

    Starts from ``p`` initial points (flipped copies of training points), then moves every point
    ``(x_c, y_c)`` inside the box [0, 1]^(d+1) along the gradient of the poisoned model's MSE,
    computed through the optimality conditions of the retrained regressor (see the module
    docstring for the equations).

    Parameters
    ----------
    poison_rate : float, default=0.2
        Share of poison after insertion, in (0, 1): ``p = round(r n / (1-r))`` points are added.
    model : {"ridge", "lasso", "elasticnet"} or LinearRegressor, default="ridge"
        The victim regressor (white-box: the attacker knows its kind and alpha).
    alpha : float or None, default=None
        Its regularisation strength (``None``: the template's or the library default 1e-3).
    init : {"inverse-flip", "boundary-flip", "random"}, default="inverse-flip"
        Initial points: ``p`` training points drawn at random with their response replaced by
        ``1 - y`` (InvFlip), by ``round(1 - y)`` i.e. the farther end of [0, 1] (BFlip), or by a
        uniform draw in [0, 1] (random).
    objective : {"W", "Wtr"}, default="W"
        ``"W"``: MSE on the validation data passed to :meth:`poison` (when none is passed, the
        clean training set serves as validation data, which makes it the same as ``"Wtr"``);
        ``"Wtr"``: MSE of the poisoned model on the clean training points.
    eta : float, default=0.5
        Initial line-search step (in units of the box, along the unit gradient direction).
    beta : float, default=0.5
        Step decay when a step does not raise the objective, in (0, 1).
    tol : float, default=1e-5
        Stop when a full sweep over the points changes the objective by less than this (the
        paper's epsilon).
    max_iter : int, default=50
        Maximum sweeps over all points.
    max_line_search : int, default=8
        Objective evaluations (refits) per point and sweep.
    l1_ratio : float, default=0.5
        Elastic-net mixing when ``model="elasticnet"``.
    l1_gradient : {"full", "active-set"}, default="full"
        LASSO / elastic net only: solve the paper's linear system for all coefficients (exact
        when none is zero) or only for the non-zero ones (exact derivative while the active set
        is stable, but it never switches a coefficient on). See the module docstring.

    Attributes
    ----------
    history_ : list of float
        The objective after initialisation and after each sweep (non-decreasing).
    n_iter_ : int
        Sweeps run.

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> from mithridate.data.transforms import minmax_scale
    >>> splits, _ = minmax_scale(load_dataset("diabetes"))
    >>> attack = OptP(poison_rate=0.1, max_iter=5)
    >>> p = attack.poison(splits.train, random_state=0)
    >>> attack.history_[-1] > attack.history_[0]
    True

    References
    ----------
    Jagielski, Oprea, Biggio, Liu, Nita-Rotaru, Li. "Manipulating Machine Learning: Poisoning
    Attacks and Countermeasures for Regression Learning." IEEE S&P 2018, Sec. III, Algorithm 1.
    """

    name = "optp"

    def __init__(self, poison_rate: float = 0.2, model: Union[str, LinearRegressor] = "ridge",
                 alpha: Optional[float] = None, init: str = "inverse-flip", objective: str = "W",
                 eta: float = 0.5, beta: float = 0.5, tol: float = 1e-5, max_iter: int = 50,
                 max_line_search: int = 8, l1_ratio: float = 0.5, l1_gradient: str = "full"):
        self.poison_rate = poison_rate
        self.model = model
        self.alpha = alpha
        self.init = init
        self.objective = objective
        self.eta = eta
        self.beta = beta
        self.tol = tol
        self.max_iter = max_iter
        self.max_line_search = max_line_search
        self.l1_ratio = l1_ratio
        self.l1_gradient = l1_gradient

    # -- validation -------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {list(INITS)}, got {self.init!r}")
        if self.l1_gradient not in ("full", "active-set"):
            raise ConfigError(f"l1_gradient must be 'full' or 'active-set', got {self.l1_gradient!r}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be 'W' (validation MSE) or 'Wtr' (training MSE), got {self.objective!r}")
        if not (np.isfinite(self.eta) and self.eta > 0):
            raise ConfigError(f"eta must be a positive step size, got {self.eta!r}")
        if not (0 < self.beta < 1):
            raise ConfigError(f"beta must be in (0, 1), got {self.beta!r}")
        for name in ("max_iter", "max_line_search"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not (self.tol >= 0):
            raise ConfigError(f"tol must be non-negative, got {self.tol!r}")

    def _validation(self, validation: Any, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if validation is None:
            return X, y
        if self.objective == "Wtr":
            raise ConfigError("objective='Wtr' attacks the training MSE and ignores validation data; "
                              "drop validation= or use objective='W'")
        if isinstance(validation, tuple) and len(validation) == 2:
            Xv, yv = regression_xy(*validation, who="validation")
        else:
            Xv, yv = regression_xy(validation, who=f"{self.name} validation")
        if Xv.shape[1] != X.shape[1]:
            raise ConfigError(f"validation data has {Xv.shape[1]} features; the training set has {X.shape[1]}")
        if len(Xv) == 0:
            raise ConfigError("validation data is empty")
        _check_box(Xv, yv, "validation data")
        return Xv, yv

    def initial_points(self, X: np.ndarray, y: np.ndarray, p: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The starting attack points for ``init`` (features copied from random training rows)."""
        idx = rng.choice(len(X), size=p, replace=p > len(X))
        Xp = np.array(X[idx], dtype=np.float64)
        if self.init == "inverse-flip":
            yp = 1.0 - y[idx]
        elif self.init == "boundary-flip":
            yp = np.where(y[idx] < 0.5, 1.0, 0.0)
        else:
            yp = rng.random(p)
        return np.clip(Xp, 0, 1), np.clip(yp, 0, 1)

    # -- the attack -------------------------------------------------------------------------
    def poison(self, dataset: Dataset, random_state: RandomState = None, *,
               validation: Union[None, Dataset, tuple] = None) -> Poisoning:
        """Optimise ``p`` attack points against the victim regressor and insert them.

        Parameters
        ----------
        dataset : Dataset
            Clean regression training set, features and targets in [0, 1].
        random_state : int or Generator, optional
            Seeds the choice of initial points and the order in which points are visited.
        validation : Dataset or (X, y), optional
            Data whose MSE ``W`` is maximised (``objective="W"``). ``None`` uses the clean
            training set itself (the attacker's best proxy for the unseen test set).

        Returns
        -------
        Poisoning
            ``dataset`` with ``p`` appended rows marked ``is_poison``; ``budget`` gives
            ``n_poison``, ``poison_rate`` (= p / (n + p)) and ``n_clean``.
        """
        self._check_params()
        X, y, p = self._training_arrays(dataset)
        rng = check_random_state(random_state)
        reg = as_regressor(self.model, self.alpha, self.l1_ratio)
        Xv, yv = self._validation(validation, X, y)
        Xp, yp = self.initial_points(X, y, p, rng)
        prob = _Bilevel(augment(X), y, augment(Xv), yv, float(reg.alpha), reg.rho_, reg.max_iter,
                        active_set=self.l1_gradient == "active-set")
        prob.set_points(Xp, yp)
        theta = prob.fit(prob.A, prob.c)
        current = prob.value(theta)
        self.history_ = [current]
        d = X.shape[1]
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            start = current
            for k in rng.permutation(p):
                theta, current = self._move_point(prob, k, theta, current, d)
            prob.refresh()
            theta = prob.fit(prob.A, prob.c, theta)
            current = prob.value(theta)
            self.history_.append(current)
            if abs(current - start) < self.tol:
                break
        self.n_iter_ = n_iter
        return self._result(dataset, prob.Pa[:, :-1], prob.yp)

    def _move_point(self, prob: _Bilevel, k: int, theta: np.ndarray, current: float,
                    d: int) -> tuple[np.ndarray, float]:
        v = prob.adjoint(theta)
        gx, gy = prob.point_gradient(theta, v, k)
        z = np.append(prob.Pa[k, :-1], prob.yp[k])
        g = np.append(gx, gy)
        g[(z <= 0.0) & (g < 0)] = 0.0  # directions that leave the box
        g[(z >= 1.0) & (g > 0)] = 0.0
        norm = float(np.linalg.norm(g))
        if norm == 0.0 or not np.isfinite(norm):
            return theta, current
        direction = g / norm
        step, best_z, best_theta, best_val, best_stats = self.eta, z, theta, current, None
        t_min = self.eta * self.beta ** 6
        for _ in range(self.max_line_search):
            cand = np.clip(best_z + step * direction, 0.0, 1.0)
            if np.allclose(cand, best_z, atol=1e-12, rtol=0):
                break
            xa = np.append(cand[:d], 1.0)
            A, c = prob.moved(k, xa, float(cand[d]))
            th = prob.fit(A, c, best_theta)
            val = prob.value(th)
            if val > best_val:
                best_z, best_theta, best_val, best_stats = cand, th, val, (xa, float(cand[d]), A, c)
            else:
                step *= self.beta
                if step < t_min:
                    break
        if best_stats is not None:
            prob.commit(k, *best_stats)
        return best_theta, best_val
