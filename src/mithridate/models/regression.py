"""Linear regressors (ridge, LASSO, elastic net) behind a regression flavour of the Model protocol.

All three minimise one objective (scikit-learn's ``ElasticNet`` convention)::

    L(w, b) = 1/(2 N) * sum_i s_i (w.x_i + b - y_i)^2 + alpha * (rho * |w|_1 + (1 - rho)/2 * |w|_2^2)

with ``N = sum_i s_i`` (the sample weights, all 1 by default), ``rho = 0`` for ridge, ``rho = 1``
for LASSO and ``rho = l1_ratio`` for elastic net; the intercept ``b`` is never penalised. In the
notation of Jagielski et al. (2018, Sec. II), ``L = 1/n sum (f(x_i) - y_i)^2 + lambda * Omega(w)``,
this is their loss divided by two, so ``alpha = lambda / 2``.

The fit works on the (d+1) x (d+1) Gram matrix of ``[X, 1]``: ridge is solved in closed form,
LASSO and elastic net by cyclic coordinate descent on the Gram matrix. The attacks in
:mod:`mithridate.attacks.regression` and TRIM reuse the same solver, so the model they attack or
defend is exactly this one.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from mithridate.errors import ConfigError, DataError
from mithridate.models.base import check_layer

KINDS = ("ridge", "lasso", "elasticnet")

#: Default regularisation strength (``alpha`` above) for features and targets scaled to [0, 1].
DEFAULT_ALPHA = 1e-3


@runtime_checkable
class Regressor(Protocol):
    """What mithridate needs from a regression model.

    ``fit`` accepts a regression :class:`~mithridate.data.Dataset` or ``(X, y)``; predictions and
    per-sample losses (squared errors) are float64 arrays; ``coef_`` and ``intercept_`` describe
    the fitted linear function.
    """

    coef_: np.ndarray
    intercept_: float

    def fit(self, X: Any, y: Optional[np.ndarray] = None, *,
            sample_weight: Optional[np.ndarray] = None) -> "Regressor": ...

    def predict(self, X: Any) -> np.ndarray: ...

    def per_sample_loss(self, X: Any, y: np.ndarray) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------
def regression_xy(X: Any, y: Optional[Any] = None, *, who: str = "this model",
                  need_y: bool = True) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Accept a regression Dataset or ``(X, y)``; return float64 ``X`` (n x d) and ``y`` (n,).

    Raises :class:`~mithridate.errors.ConfigError` for a classification Dataset and
    :class:`~mithridate.errors.DataError` for mismatched or non-finite arrays.
    """
    from mithridate.data.dataset import Dataset

    if isinstance(X, Dataset):
        if y is not None:
            raise ConfigError("pass either a Dataset or (X, y), not both")
        if not X.is_regression:
            raise ConfigError(
                f"{who} needs a regression dataset (task='regression', float targets); "
                f"{X.name!r} is a classification set with classes {list(X.classes)[:10]}"
            )
        X, y = X.X, X.y
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        raise DataError("X must be two-dimensional (n_samples x n_features); reshape a single "
                        "feature with X.reshape(-1, 1)")
    X = X.reshape(len(X), -1)
    if not np.all(np.isfinite(X)):
        raise DataError("X contains NaN or infinite values; impute or drop those rows first")
    if y is None:
        if need_y:
            raise ConfigError(f"{who} needs targets: pass a regression Dataset or (X, y)")
        return X, None
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(f"y must have shape ({len(X)},) to match X, got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise DataError("y contains NaN or infinite values; drop or fix those rows first")
    return X, y


def _mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error (private until it moves into :mod:`mithridate.eval.metrics`)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return float(np.mean((y_true - y_pred) ** 2)) if len(y_true) else float("nan")


def augment(X: np.ndarray) -> np.ndarray:
    """``[X, 1]``: features followed by a column of ones (the intercept is the last coefficient)."""
    return np.hstack([X, np.ones((len(X), 1))])


def gram(Xa: np.ndarray, y: np.ndarray, w: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Sufficient statistics of a weighted least-squares problem on augmented ``Xa = [X, 1]``.

    Returns ``(A, c, N)`` with ``A = Xa' S Xa``, ``c = Xa' S y`` and ``N = sum(s)``.
    """
    if w is None:
        return Xa.T @ Xa, Xa.T @ y, float(len(y))
    return (Xa * w[:, None]).T @ Xa, Xa.T @ (w * y), float(np.sum(w))


# ----------------------------------------------------------------------------------------
# the solver shared by the model, the attacks and TRIM
# ----------------------------------------------------------------------------------------
def penalty_matrix(d: int, alpha: float, l1_ratio: float) -> np.ndarray:
    """Diagonal of the L2 part of the penalty on ``[w, b]`` (zero for the intercept)."""
    diag = np.full(d + 1, alpha * (1.0 - l1_ratio))
    diag[-1] = 0.0
    return diag


def _solve_psd(K: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(K, rhs)
    except np.linalg.LinAlgError:  # singular (alpha = 0 with collinear features): least norm
        return np.linalg.lstsq(K, rhs, rcond=None)[0]


def solve_gram(A: np.ndarray, c: np.ndarray, N: float, alpha: float, l1_ratio: float, *,
               theta0: Optional[np.ndarray] = None, max_iter: int = 10_000,
               tol: float = 1e-10) -> tuple[np.ndarray, int]:
    """Minimise the elastic-net objective from its Gram statistics; return ``([w, b], n_sweeps)``.

    ``l1_ratio == 0`` is ridge, solved exactly; otherwise cyclic coordinate descent on the
    centred Gram matrix (the intercept eliminated as ``b = ybar - mu.w``), warm-started from
    ``theta0``, until no coefficient moves by more than ``tol * max(1, max|w|)``.
    """
    d = len(c) - 1
    if l1_ratio == 0.0 or alpha == 0.0:
        K = A / N
        K[np.diag_indices(d + 1)] += penalty_matrix(d, alpha, l1_ratio)
        return _solve_psd(K, c / N), 0
    mu = A[:d, d] / N
    ybar = c[d] / N
    G = A[:d, :d] / N - np.outer(mu, mu)
    q = c[:d] / N - mu * ybar
    l1 = alpha * l1_ratio
    denom = np.diag(G) + alpha * (1.0 - l1_ratio)
    w = np.zeros(d) if theta0 is None else np.array(theta0[:d], dtype=np.float64)
    if theta0 is not None:
        exact = _solve_on_support(G, q, l1, alpha * (1.0 - l1_ratio), w)
        if exact is not None:
            return np.append(exact, ybar - mu @ exact), 0
    Gw = G @ w
    sweeps = 0
    for sweeps in range(1, max_iter + 1):
        max_step = 0.0
        for j in range(d):
            if denom[j] <= 0.0:
                if w[j] != 0.0:
                    Gw -= G[:, j] * w[j]
                    w[j] = 0.0
                continue
            rho_j = q[j] - Gw[j] + G[j, j] * w[j]
            new = np.sign(rho_j) * max(abs(rho_j) - l1, 0.0) / denom[j]
            delta = new - w[j]
            if delta != 0.0:
                Gw += G[:, j] * delta
                w[j] = new
                max_step = max(max_step, abs(delta))
        if max_step <= tol * max(1.0, float(np.max(np.abs(w)))):
            break
    exact = _solve_on_support(G, q, l1, alpha * (1.0 - l1_ratio), w)  # polish: exact on CD's support
    if exact is not None:
        w = exact
    return np.append(w, ybar - mu @ w), sweeps


def _solve_on_support(G: np.ndarray, q: np.ndarray, l1: float, l2: float, w0: np.ndarray) -> Optional[np.ndarray]:
    """The exact elastic-net solution if it has the support and signs of ``w0``, else None.

    On a support S with signs s the optimality conditions are linear,
    ``(G_SS + l2 I) w_S = q_S - l1 s_S``; the guess is right when the solution keeps the signs
    and every coefficient off S satisfies ``|q_j - G_jS w_S| <= l1``. Warm starts inside an
    attack or TRIM rarely change the support, so this skips coordinate descent most of the time.
    """
    S = np.flatnonzero(w0)
    d = len(q)
    w = np.zeros(d)
    if len(S):
        signs = np.sign(w0[S])
        K = G[np.ix_(S, S)] + l2 * np.eye(len(S))
        try:
            wS = np.linalg.solve(K, q[S] - l1 * signs)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.sign(wS) == signs):
            return None
        w[S] = wS
    off = np.setdiff1d(np.arange(d), S)
    if len(off) and np.any(np.abs(q[off] - G[off] @ w) > l1 * (1 + 1e-9) + 1e-15):
        return None
    return w


def objective_value(A: np.ndarray, c: np.ndarray, yy: float, N: float, theta: np.ndarray, alpha: float,
                    l1_ratio: float) -> float:
    """The training objective ``L`` of the module docstring, from Gram statistics (``yy = y' S y``)."""
    sq = float(theta @ A @ theta - 2.0 * theta @ c + yy) / (2.0 * N)
    w = theta[:-1]
    return sq + alpha * (l1_ratio * float(np.abs(w).sum()) + 0.5 * (1.0 - l1_ratio) * float(w @ w))


def check_kind(kind: str, alpha: float, l1_ratio: float) -> float:
    """Validate the hyperparameters; return the effective ``rho`` (0 ridge, 1 LASSO)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown linear regressor {kind!r}; use one of {list(KINDS)}")
    try:
        alpha_f = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a non-negative number, got {alpha!r}") from None
    if not np.isfinite(alpha_f) or alpha_f < 0:
        raise ConfigError(f"alpha must be a non-negative number, got {alpha!r}")
    if kind == "ridge":
        return 0.0
    if kind == "lasso":
        return 1.0
    try:
        rho = float(l1_ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"l1_ratio must be a number in (0, 1], got {l1_ratio!r}") from None
    if not (0.0 < rho <= 1.0):
        raise ConfigError(f"l1_ratio must be in (0, 1] for elastic net (0 is ridge), got {l1_ratio!r}")
    return rho


# ----------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------
class LinearRegressor:
    """Ridge, LASSO or elastic-net linear regression with an unpenalised intercept.

    Parameters
    ----------
    kind : {"ridge", "lasso", "elasticnet"}, default="ridge"
    alpha : float, default=1e-3
        Regularisation strength in scikit-learn's ``ElasticNet`` convention (loss
        ``1/(2N) sum (w.x + b - y)^2 + alpha * (rho |w|_1 + (1-rho)/2 |w|^2)``), i.e. half the
        ``lambda`` of Jagielski et al. Ridge equals ``sklearn.linear_model.Ridge(alpha=N * alpha)``.
        The small default suits features and targets scaled to [0, 1]
        (:func:`~mithridate.data.transforms.minmax_scale`), the setting of the paper.
    l1_ratio : float, default=0.5
        ``rho`` of the elastic net, in (0, 1]; ignored by ridge (``rho = 0``) and LASSO (``rho = 1``).
    max_iter : int, default=10000
        Coordinate-descent sweeps for LASSO / elastic net.
    tol : float, default=1e-10
        Stop coordinate descent when no coefficient moves by more than ``tol * max(1, max|w|)``.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
    n_features_in_ : int
    n_iter_ : int
        Coordinate-descent sweeps used (0 for ridge, solved in closed form).

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> from mithridate.data.transforms import minmax_scale
    >>> splits, _ = minmax_scale(load_dataset("diabetes"))
    >>> reg = LinearRegressor("ridge", alpha=1e-3).fit(splits.train)
    >>> float(reg.per_sample_loss(splits.test.X, splits.test.y).mean()) < 0.05
    True

    References
    ----------
    Jagielski, Oprea, Biggio, Liu, Nita-Rotaru, Li. "Manipulating Machine Learning: Poisoning
    Attacks and Countermeasures for Regression Learning." IEEE S&P 2018, Sec. II (Eq. 1).
    """

    def __init__(self, kind: str = "ridge", alpha: float = DEFAULT_ALPHA, l1_ratio: float = 0.5,
                 max_iter: int = 10_000, tol: float = 1e-10):
        self.kind = kind
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.max_iter = max_iter
        self.tol = tol

    @property
    def rho_(self) -> float:
        """The effective L1 share of the penalty (0 for ridge, 1 for LASSO)."""
        return check_kind(self.kind, self.alpha, self.l1_ratio)

    def get_params(self) -> dict:
        return {"kind": self.kind, "alpha": self.alpha, "l1_ratio": self.l1_ratio,
                "max_iter": self.max_iter, "tol": self.tol}

    def __repr__(self) -> str:
        extra = f", l1_ratio={self.l1_ratio}" if self.kind == "elasticnet" else ""
        return f"LinearRegressor(kind={self.kind!r}, alpha={self.alpha}{extra})"

    def clone(self) -> "LinearRegressor":
        return LinearRegressor(**self.get_params())

    def fit(self, X: Any, y: Optional[np.ndarray] = None, *,
            sample_weight: Optional[np.ndarray] = None) -> "LinearRegressor":
        """Fit on a regression Dataset or ``(X, y)``; ``sample_weight`` scales each squared error."""
        rho = check_kind(self.kind, self.alpha, self.l1_ratio)
        X, y = regression_xy(X, y, who="LinearRegressor")
        if len(X) == 0:
            raise DataError("cannot fit on 0 samples")
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.shape != (len(X),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ConfigError(f"sample_weight must be {len(X)} non-negative finite numbers, not all zero")
        A, c, N = gram(augment(X), y, w)
        theta, sweeps = solve_gram(A, c, N, float(self.alpha), rho, max_iter=self.max_iter, tol=self.tol)
        self._set_theta(theta, X.shape[1])
        self.n_iter_ = int(sweeps)
        return self

    def _set_theta(self, theta: np.ndarray, d: int) -> None:
        self.coef_ = np.asarray(theta[:d], dtype=np.float64)
        self.intercept_ = float(theta[d])
        self.n_features_in_ = int(d)

    def _x(self, X: Any) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise ConfigError("this model is not fitted yet; call fit() first")
        X, _ = regression_xy(X, need_y=False, who="LinearRegressor")
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} features; the model was fitted on {self.n_features_in_}")
        return X

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``X @ coef_ + intercept_`` (a Dataset's features are used when given one)."""
        return self._x(X) @ self.coef_ + self.intercept_

    def per_sample_loss(self, X: Any, y: Optional[np.ndarray] = None) -> np.ndarray:
        """Squared error ``(f(x_i) - y_i)^2`` per sample (pass a Dataset or ``(X, y)``)."""
        X, y = regression_xy(X, y, who="per_sample_loss")
        return (self.predict(X) - y) ** 2

    @property
    def layer_names(self) -> Sequence[str]:
        return ["input"]

    def features(self, X: Any, layer: str = "input") -> np.ndarray:
        """The flattened input features (the only layer of a linear model)."""
        check_layer(layer, self.layer_names)
        return self._x(X).astype(np.float32)


def as_regressor(model: Any = "ridge", alpha: Optional[float] = None, l1_ratio: float = 0.5) -> LinearRegressor:
    """A fresh, unfitted :class:`LinearRegressor` from a kind name or a template instance.

    ``alpha=None`` keeps the template's alpha (or :data:`DEFAULT_ALPHA` for a name).
    """
    if isinstance(model, LinearRegressor):
        reg = model.clone()
        if alpha is not None:
            reg.alpha = alpha
    elif isinstance(model, str):
        key = model.strip().lower().replace("_", "").replace("-", "")
        key = {"elasticnet": "elasticnet", "enet": "elasticnet", "ridge": "ridge", "lasso": "lasso"}.get(key, model)
        reg = LinearRegressor(kind=key, alpha=DEFAULT_ALPHA if alpha is None else alpha, l1_ratio=l1_ratio)
    else:
        raise ConfigError(
            f"model must be one of {list(KINDS)} or a LinearRegressor, got {type(model).__name__}"
        )
    check_kind(reg.kind, reg.alpha, reg.l1_ratio)
    return reg
