"""TRIM: trimmed-loss training of linear regression (Jagielski et al., IEEE S&P 2018, Sec. V).

TRIM solves ``min_{theta, I : |I| = h} L(D_I, theta)``: fit the regressor on the ``h`` training
points it fits best. From a starting set ``I_0`` it alternates

    theta_t = argmin_theta L(D_{I_t}, theta)                  (refit on the kept points)
    I_{t+1} = the h points with the smallest residual (y_i - f(x_i; theta_t))^2 over all data

until the kept set stops changing. Each step can only lower the trimmed loss, so it converges,
but to a local minimum that depends on ``I_0``.

Starting sets
-------------
The paper starts from a random subset of size ``h``. Such a subset holds the same share of
poison as the data, its first fit is poisoned, and coherent poisons (OptP's) then fit well
enough to stay: on diabetes with 20% OptP, 0 of 40 random size-h starts reached the clean
solution, and TRIM kept all 77 poisons (test MSE x4.2). We therefore use the FAST-LTS scheme
(Rousseeuw & Van Driessen 2006): ``n_init`` starts, each the fit of an *elemental* subset of
``d + 1`` random points (some of which are poison-free), followed by two TRIM steps (on a random
subsample of 2,000 rows for large data); the 10 starts with the lowest trimmed loss are iterated
to convergence on all rows and the lowest trimmed loss wins.

Choosing ``h`` without knowing the poison rate
----------------------------------------------
The paper gives TRIM the number of clean points. When neither ``n_clean`` nor
``clean_fraction`` is given, :class:`TrimRegressor` estimates it from the residuals, in the spirit
of reweighted least trimmed squares (Rousseeuw & Van Driessen 2006):

1. run TRIM with ``h_0 = ceil(min_clean_fraction * N)`` (half the data by default: the only
   assumption is that the attacker controls less than ``1 - min_clean_fraction`` of it);
2. estimate the scale ``sigma`` of clean residuals from the kept set, correcting for the
   truncation with the Gaussian consistency factor ``c(t) = E[Z^2 | |Z| <= t]``: in the first
   round ``t`` is the normal quantile of the kept share ``h/N``, afterwards ``t`` is solved from
   ``mean_kept r^2 = sigma^2 c(T / sigma)`` with ``T`` the largest kept residual;
3. keep every point whose residual is within ``cutoff * sigma`` (2.5 by default, which drops
   1.2% of Gaussian clean points), re-run TRIM with that many points, and repeat 2-3 until
   the count stops changing.

Poisons that sit within ``cutoff * sigma`` of the clean fit are kept; being close to the clean
model they move it less (diabetes, 20% StatP: a median of 17 of 77 poisons kept, test MSE
x1.13 against x2.47 undefended). Even with the exact clean count, the lowest trimmed loss can
keep some poisons in place of clean points with large residuals (diabetes, 20% OptP, one seed
in five: 18 poisons kept, x1.53), which the residual cutoff of the automatic mode avoids.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Optional, Sequence, Union

import numpy as np

from mithridate.errors import ConfigError, DataError
from mithridate.models.base import check_layer
from mithridate.models.regression import (
    LinearRegressor,
    as_regressor,
    augment,
    gram,
    regression_xy,
    solve_gram,
)
from mithridate.utils import RandomState, check_random_state

_MAX_ROUNDS = 20


_STD_NORMAL = NormalDist()


def _truncated_second_moment(t: float) -> float:
    """``E[Z^2 | |Z| <= t]`` for a standard normal ``Z``."""
    mass = 2.0 * _STD_NORMAL.cdf(t) - 1.0
    if mass <= 1e-12:
        return t * t / 3.0
    return max(1.0 - 2.0 * t * _STD_NORMAL.pdf(t) / mass, 1e-12)


def _scale_from_share(mean_sq: float, share: float) -> float:
    """Scale when the kept points are the central ``share`` of a Gaussian (LTS consistency)."""
    if share >= 1.0:
        return math.sqrt(mean_sq)
    t = _STD_NORMAL.inv_cdf((1.0 + share) / 2.0)
    return math.sqrt(mean_sq / _truncated_second_moment(t))


def _scale_from_window(mean_sq: float, T: float) -> Optional[float]:
    """Solve ``mean_sq = sigma^2 c(T/sigma)`` for sigma; None when the kept residuals look flat."""
    if T <= 0 or mean_sq <= 0:
        return None
    ratio = mean_sq / (T * T)
    g = lambda u: _truncated_second_moment(u) / (u * u) - ratio  # noqa: E731 - decreasing in u
    lo, hi = 1e-3, 40.0
    if g(lo) <= 0 or g(hi) >= 0:
        return None
    for _ in range(100):  # bisection on u = T / sigma
        mid = 0.5 * (lo + hi)
        if g(mid) > 0:
            lo = mid
        else:
            hi = mid
    return T / (0.5 * (lo + hi))

_START_SAMPLES = 2000  # rows used to rank the random starts on large data
_START_STEPS = 2  # TRIM steps per start before ranking
_N_REFINE = 10  # best starts iterated to convergence on all rows
_START_CD_SWEEPS = 50  # a rough elemental fit is enough to start from (LASSO / elastic net)


class _Trimmed:
    __slots__ = ("idx", "theta", "loss", "n_iter")

    def __init__(self, idx: np.ndarray, theta: np.ndarray, loss: float, n_iter: int):
        self.idx, self.theta, self.loss, self.n_iter = idx, theta, loss, n_iter


class _TrimProblem:
    """TRIM iterations for one data set (augmented features, targets, optional weights)."""

    def __init__(self, Xa: np.ndarray, y: np.ndarray, sw: Optional[np.ndarray], reg: LinearRegressor):
        self.Xa, self.y, self.sw, self.reg = Xa, y, sw, reg
        self.N, self.d = len(y), Xa.shape[1] - 1
        self.alpha, self.rho = float(reg.alpha), reg.rho_

    def subproblem(self, rows: np.ndarray) -> "_TrimProblem":
        return _TrimProblem(self.Xa[rows], self.y[rows], None if self.sw is None else self.sw[rows], self.reg)

    def _gram(self, idx: np.ndarray):
        return gram(self.Xa[idx], self.y[idx], None if self.sw is None else self.sw[idx])

    def _solve(self, A, c, N, theta0=None) -> np.ndarray:
        return solve_gram(A, c, N, self.alpha, self.rho, theta0=theta0, max_iter=self.reg.max_iter,
                          tol=self.reg.tol)[0]

    def fit(self, idx: np.ndarray, theta0: Optional[np.ndarray] = None, max_iter: Optional[int] = None) -> np.ndarray:
        A, c, N = self._gram(idx)
        return solve_gram(A, c, N, self.alpha, self.rho, theta0=theta0,
                          max_iter=self.reg.max_iter if max_iter is None else max_iter, tol=self.reg.tol)[0]

    def penalty(self, theta: np.ndarray) -> float:
        w = theta[:-1]
        return self.alpha * (self.rho * float(np.abs(w).sum()) + 0.5 * (1.0 - self.rho) * float(w @ w))

    def loss(self, idx: np.ndarray, theta: np.ndarray) -> float:
        r2 = (self.Xa[idx] @ theta - self.y[idx]) ** 2
        s = None if self.sw is None else self.sw[idx]
        mean = float(np.mean(r2)) if s is None else float(np.sum(s * r2) / np.sum(s))
        return 0.5 * mean + self.penalty(theta)

    def smallest(self, theta: np.ndarray, h: int) -> np.ndarray:
        r2 = (self.Xa @ theta - self.y) ** 2
        return np.argpartition(r2, h - 1)[:h] if h < self.N else np.arange(self.N)

    def run(self, h: int, *, idx: Optional[np.ndarray] = None, theta: Optional[np.ndarray] = None,
            max_iter: int = 100) -> _Trimmed:
        """TRIM steps at size h from a kept set ``idx`` or from the h points ``theta`` fits best."""
        if idx is None:
            idx = self.smallest(theta, h)
        mask = np.zeros(self.N, bool)
        mask[idx] = True
        A, c, Nk = self._gram(np.flatnonzero(mask))
        best_loss, it = np.inf, 0
        for it in range(1, max_iter + 1):
            theta = self._solve(A, c, Nk, theta)
            loss = self.loss(np.flatnonzero(mask), theta)
            if loss >= best_loss - 1e-15 * max(1.0, best_loss):
                break  # no progress (ties): stop rather than cycle
            best_loss = loss
            if h >= self.N or it == max_iter:
                break
            new = np.zeros(self.N, bool)
            new[self.smallest(theta, h)] = True
            add, rem = np.flatnonzero(new & ~mask), np.flatnonzero(mask & ~new)
            if len(add) == 0:
                break
            if len(add) + len(rem) < h // 4:  # few swaps: update the Gram statistics in place
                Aa, ca, Na = self._gram(add)
                Ar, cr, Nr = self._gram(rem)
                A, c, Nk = A + Aa - Ar, c + ca - cr, Nk + Na - Nr
            else:
                A, c, Nk = self._gram(np.flatnonzero(new))
            mask = new
        idx = np.flatnonzero(mask)
        theta = self.fit(idx, theta)  # exact statistics for the answer
        return _Trimmed(idx, theta, self.loss(idx, theta), it)


class TrimRegressor:
    """Linear regression trained by TRIM on the points it fits best.

    Parameters
    ----------
    base : {"ridge", "lasso", "elasticnet"} or LinearRegressor, default="ridge"
        The regressor to train (a :class:`~mithridate.models.regression.LinearRegressor`
        template keeps its alpha and l1_ratio).
    n_clean : int or None, default=None
        Number of points to keep (the defender's estimate of the clean count, ``n`` in the paper).
    clean_fraction : float or None, default=None
        The same as a share of the training set, in (0, 1]. At most one of ``n_clean`` and
        ``clean_fraction`` may be given; with neither, the count is estimated from the residuals
        (see the module docstring).
    alpha : float or None, default=None
        Overrides the base regressor's alpha.
    min_clean_fraction : float, default=0.5
        Automatic mode only: the least share of the data assumed clean (start of the search and
        floor of the estimate). 0.5 is the highest breakdown point of a trimmed estimator.
    cutoff : float, default=2.5
        Automatic mode only: keep points whose residual is within ``cutoff`` robust standard
        deviations of the trimmed fit.
    n_init : int, default=100
        Random starts (FAST-LTS scheme: an elemental subset of d + 1 points, two TRIM steps,
        the 10 best iterated to convergence; the lowest trimmed loss wins).
    max_iter : int, default=100
        Maximum TRIM iterations per start.
    random_state : int or Generator, default=0
        Draws the starting subsets.

    Attributes
    ----------
    kept_ : ndarray of bool, shape (n_samples,)
        The points the final model is trained on.
    n_clean_ : int
        How many points were kept (``kept_.sum()``).
    scale_ : float
        Robust standard deviation of the clean residuals (automatic mode; otherwise the
        root mean squared residual on the kept points).
    n_iter_ : int
        TRIM iterations of the winning start in the final round.
    loss_ : float
        Final trimmed training objective (half the kept MSE plus the penalty).
    estimator_ : LinearRegressor
        The base regressor fitted on the kept points.
    coef_, intercept_ : ndarray, float
        Its coefficients.

    Examples
    --------
    >>> from mithridate.attacks.regression import OptP
    >>> from mithridate.data import load_dataset
    >>> from mithridate.data.transforms import minmax_scale
    >>> splits, _ = minmax_scale(load_dataset("diabetes"))
    >>> poisoned = OptP(poison_rate=0.2).poison(splits.train, random_state=0).dataset
    >>> trim = TrimRegressor().fit(poisoned)
    >>> bool(trim.kept_[poisoned.is_poison].any())   # every poison trimmed away
    False

    References
    ----------
    Jagielski, Oprea, Biggio, Liu, Nita-Rotaru, Li. "Manipulating Machine Learning: Poisoning
    Attacks and Countermeasures for Regression Learning." IEEE S&P 2018, Sec. V, Algorithm 2.
    Rousseeuw, Van Driessen. "Computing LTS Regression for Large Data Sets." Data Mining and
    Knowledge Discovery, 2006 (reweighting step).
    """

    def __init__(self, base: Union[str, LinearRegressor] = "ridge", n_clean: Optional[int] = None,
                 clean_fraction: Optional[float] = None, *, alpha: Optional[float] = None,
                 min_clean_fraction: float = 0.5, cutoff: float = 2.5, n_init: int = 100, max_iter: int = 100,
                 random_state: RandomState = 0):
        self.base = base
        self.n_clean = n_clean
        self.clean_fraction = clean_fraction
        self.alpha = alpha
        self.min_clean_fraction = min_clean_fraction
        self.cutoff = cutoff
        self.n_init = n_init
        self.max_iter = max_iter
        self.random_state = random_state

    # -- configuration ----------------------------------------------------------------------
    def _target_count(self, N: int) -> Optional[int]:
        if self.n_clean is not None and self.clean_fraction is not None:
            raise ConfigError("give n_clean or clean_fraction, not both (or neither for the automatic estimate)")
        if self.n_clean is not None:
            if isinstance(self.n_clean, bool) or not isinstance(self.n_clean, (int, np.integer)):
                raise ConfigError(f"n_clean must be an integer, got {self.n_clean!r}")
            if not 2 <= self.n_clean <= N:
                raise ConfigError(f"n_clean must be between 2 and the {N} training samples, got {self.n_clean}")
            return int(self.n_clean)
        if self.clean_fraction is not None:
            try:
                f = float(self.clean_fraction)
            except (TypeError, ValueError):
                raise ConfigError(f"clean_fraction must be a number in (0, 1], got {self.clean_fraction!r}") from None
            if not 0 < f <= 1:
                raise ConfigError(f"clean_fraction must be in (0, 1], got {self.clean_fraction!r}")
            return int(min(N, max(2, math.ceil(f * N))))
        return None

    def _check_params(self) -> None:
        if not isinstance(self.n_init, (int, np.integer)) or self.n_init < 1:
            raise ConfigError(f"n_init must be a positive integer, got {self.n_init!r}")
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ConfigError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not 0 < float(self.min_clean_fraction) <= 1:
            raise ConfigError(f"min_clean_fraction must be in (0, 1], got {self.min_clean_fraction!r}")
        if not float(self.cutoff) > 0:
            raise ConfigError(f"cutoff must be positive, got {self.cutoff!r}")

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, X: Any, y: Optional[np.ndarray] = None, *,
            sample_weight: Optional[np.ndarray] = None) -> "TrimRegressor":
        """Run TRIM on a regression Dataset or ``(X, y)`` (``sample_weight`` weights each squared error)."""
        self._check_params()
        reg = as_regressor(self.base, self.alpha)
        X, y = regression_xy(X, y, who="TrimRegressor")
        N, d = X.shape
        if N < 2:
            raise DataError(f"TRIM needs at least 2 samples, got {N}")
        sw = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64)
            if sw.shape != (N,) or not np.all(np.isfinite(sw)) or np.any(sw <= 0):
                raise ConfigError(f"sample_weight must be {N} positive finite numbers")
        target = self._target_count(N)
        rng = check_random_state(self.random_state)
        prob = _TrimProblem(augment(X), y, sw, reg)
        if target is not None:
            best = self._search(prob, target, rng)
            r = y[best.idx] - prob.Xa[best.idx] @ best.theta
            scale = float(np.sqrt(np.mean(r**2)))
        else:
            best, scale = self._auto(prob, rng)
        kept = np.zeros(N, bool)
        kept[best.idx] = True
        self.kept_ = kept
        self.n_clean_ = int(kept.sum())
        self.scale_ = float(scale)
        self.loss_ = float(best.loss)
        self.n_iter_ = int(best.n_iter)
        est = reg.clone()
        est._set_theta(best.theta, d)
        est.n_iter_ = 0
        self.estimator_ = est
        self.coef_ = est.coef_
        self.intercept_ = est.intercept_
        self.n_features_in_ = d
        return self

    def _search(self, prob: "_TrimProblem", h: int, rng: np.random.Generator) -> "_Trimmed":
        """TRIM at size h from many random starts (FAST-LTS scheme); the lowest trimmed loss wins.

        Each start fits an elemental subset (d + 1 random points), takes the h points it fits best
        and runs two TRIM steps -- on a random subsample of ``_START_SAMPLES`` rows when the data
        are larger; the ``_N_REFINE`` best starts are then iterated to convergence on all rows.
        """
        N = prob.N
        if h >= N:
            return prob.run(h, idx=np.arange(N), max_iter=1)
        if N > _START_SAMPLES:
            sub_rows = rng.choice(N, size=_START_SAMPLES, replace=False)
            sub = prob.subproblem(sub_rows)
            h_sub = int(min(_START_SAMPLES - 1, max(2, round(h * _START_SAMPLES / N))))
        else:
            sub, h_sub = prob, h
        size = int(min(prob.d + 1, h_sub))
        starts = []
        for _ in range(int(self.n_init)):
            theta = sub.fit(rng.choice(sub.N, size=size, replace=False), max_iter=_START_CD_SWEEPS)
            starts.append(sub.run(h_sub, theta=theta, max_iter=_START_STEPS))
        starts.sort(key=lambda t: t.loss)
        best = None
        for cand in starts[:_N_REFINE]:
            out = prob.run(h, theta=cand.theta, max_iter=int(self.max_iter))
            if best is None or out.loss < best.loss:
                best = out
        return best

    def _auto(self, prob: "_TrimProblem", rng: np.random.Generator) -> tuple["_Trimmed", float]:
        N = prob.N
        h0 = int(min(N, max(2, math.ceil(float(self.min_clean_fraction) * N), prob.d + 1)))
        best = self._search(prob, h0, rng)
        h, seen = h0, {h0}
        scale = float("nan")
        for rnd in range(_MAX_ROUNDS):
            r = prob.y - prob.Xa @ best.theta
            kept_sq = r[best.idx] ** 2
            mean_sq = float(np.mean(kept_sq))
            est = None if rnd == 0 else _scale_from_window(mean_sq, float(np.sqrt(kept_sq.max())))
            scale = est if est is not None else _scale_from_share(mean_sq, h / N)
            h_new = int(np.clip(np.sum(np.abs(r) <= float(self.cutoff) * scale), h0, N))
            if h_new == h or (rnd > 0 and h_new in seen):
                break
            seen.add(h_new)
            h = h_new
            best = prob.run(h, theta=best.theta, max_iter=int(self.max_iter))
        return best, float(scale)

    # -- prediction -------------------------------------------------------------------------
    def predict(self, X: Any) -> np.ndarray:
        """Predictions of the model trained on the kept points."""
        if not hasattr(self, "estimator_"):
            raise ConfigError("this model is not fitted yet; call fit() first")
        return self.estimator_.predict(X)

    def per_sample_loss(self, X: Any, y: Optional[np.ndarray] = None) -> np.ndarray:
        """Squared error per sample under the trimmed model."""
        if not hasattr(self, "estimator_"):
            raise ConfigError("this model is not fitted yet; call fit() first")
        return self.estimator_.per_sample_loss(X, y)

    @property
    def layer_names(self) -> Sequence[str]:
        return ["input"]

    def features(self, X: Any, layer: str = "input") -> np.ndarray:
        check_layer(layer, self.layer_names)
        if not hasattr(self, "estimator_"):
            raise ConfigError("this model is not fitted yet; call fit() first")
        return self.estimator_.features(X, layer)

    def get_params(self) -> dict:
        base = repr(self.base) if isinstance(self.base, LinearRegressor) else self.base
        return {"base": base, "n_clean": self.n_clean, "clean_fraction": self.clean_fraction, "alpha": self.alpha,
                "min_clean_fraction": self.min_clean_fraction, "cutoff": self.cutoff, "n_init": self.n_init,
                "max_iter": self.max_iter, "random_state": self.random_state}
