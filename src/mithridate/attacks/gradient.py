r"""Gradient (optimal) poisoning of binary linear classifiers (Biggio, Nelson & Laskov, ICML 2012).

The attacker inserts ``k`` points :math:`(x_c, y_c)` into the training set and moves their
features, inside a box, to maximise the loss of the *retrained* model on validation data:

.. math::

    \max_{x_1..x_k \in [l, u]} \; L_{val}(\theta^*) = \frac{1}{m}\sum_{j=1}^{m}
        \ell_v\big(s_j f_{\theta^*}(x_j)\big), \qquad
    \theta^* = \arg\min_\theta \; \tfrac12 \theta^\top R\, \theta
        + C \sum_{i \in \text{train} \cup \text{attack}} \ell\big(s_i f_\theta(x_i)\big),

with :math:`s = \pm 1` the label, :math:`f_\theta(x) = w^\top z(x) + b` on standardised
features :math:`z = (x - \mu)/\sigma` (:math:`\mu, \sigma` computed on the poisoned training set,
as the victim's ``StandardScaler`` does) and :math:`\theta = (w, b)`. The inner model is the one
the benchmark victim actually trains:

* ``model="linear_svm"`` -- scikit-learn's ``LinearSVC`` (liblinear): squared hinge
  :math:`\ell(m) = \max(0, 1 - m)^2`, the bias penalised with the weights (:math:`R = I`);
  ``svm_loss="hinge"`` gives Biggio's original hinge-loss SVM instead (also :math:`R = I`).
* ``model="logreg"`` -- ``LogisticRegression``: :math:`\ell(m) = \log(1 + e^{-m})`, bias
  not penalised (:math:`R = \mathrm{diag}(1, \dots, 1, 0)`).

The validation loss :math:`\ell_v` is the hinge loss for SVMs (Biggio's choice) and the log loss
for logistic regression by default (``objective``). The validation data are a separate clean set
when the attacker has one; otherwise the objective is **cross-validated** on the training set
(``cv`` folds: the inner model is trained on the other folds plus the attack points and scored on
the held-out fold). Maximising the loss of the training points themselves does not work: the
victim fits the points it is trained on, so their loss can rise while its test error falls.

**Gradient by implicit differentiation.** For the smooth losses (log loss, squared hinge) the
optimality condition :math:`G(\theta, X) = R\theta + C\sum_i \ell'(m_i) s_i \tilde z_i = 0`
(:math:`\tilde z = (z, 1)`, :math:`m_i = s_i f(x_i)`) gives

.. math::

    \frac{d L_{val}}{d x_c} = \frac{\partial L_{val}}{\partial x_c}
        - v^\top \frac{\partial G}{\partial x_c}, \qquad
    v = H^{-1} \nabla_\theta L_{val}, \quad H = R + C \sum_i \ell''(m_i)\, \tilde z_i \tilde z_i^\top,

the exact Hessian (``d`` is small). For the hinge loss the same role is played by the KKT
conditions on the margin support vectors ``S`` (:math:`m_s = 1`, :math:`0 < \alpha_s < C`), the
error vectors ``E`` keeping :math:`\alpha = C` (Biggio et al. 2012, eq. 7-10): the system
:math:`\theta = \sum_{S \cup E} \alpha_i s_i \tilde z_i`, :math:`s_s \tilde z_s^\top \theta = 1`
is differentiated, and its adjoint is :math:`u = (I - A_S^\top (A_S A_S^\top)^{+} A_S)\nabla_\theta
L_{val}`, :math:`\mu = (A_S A_S^\top)^{+} A_S \nabla_\theta L_{val}` with rows
:math:`a_s = s_s \tilde z_s`. Because :math:`\mu` and :math:`\sigma` depend on every attack
point, :math:`\partial z_i / \partial x_c = \mathrm{diag}\big(\delta_{ic}/\sigma -
(1 + z_i \odot z_c)/(N\sigma)\big)` for every training and validation point; the gradient
includes these terms, so it is exact for the standardised victim. One adjoint solve gives the
gradient of all ``k`` attack points at once.

**Optimisation.** The ``k`` points start as copies of random training points with the other
class's label (``init="flip"``) and move jointly by projected gradient ascent in the box. A step
moves the coordinate with the largest (projected) gradient by ``step`` units -- clean standard
deviations for a standardising victim, box widths otherwise -- and the others in proportion; the
step grows by 1.5 after an accepted move and halves after a rejected one. The objective is
re-evaluated by retraining at every trial point, so every accepted step raises it.

**What it achieves.** On digits 1-vs-7 (252 training points, 64 pixels, box [0, 1]) against
``SklearnClassifier("linear_svm")``, 3% inserted points raise the median test error over five
splits from 0% to about 4% when the attacker knows only the victim's training set (label-flipped
copies alone: 2%), and to about 11% when it also holds clean validation data the victim does not
train on (Biggio et al.'s setting). The damage is limited by generalisation, not by the optimiser:
maximising the loss of data the victim trains on does not transfer to unseen points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from mithridate.attacks.base import Attack, Poisoning
from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, check_fraction, check_random_state

__all__ = ["GradientPoisoning", "fit_linear", "validation_loss_and_gradient"]

_MODELS = ("linear_svm", "logreg")
_SVM_LOSSES = ("squared_hinge", "hinge")
_OBJECTIVES = ("error", "hinge", "logistic")


# ------------------------------------------------------------------------------------------
# losses of the margin m = s * f(x)
# ------------------------------------------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _loss(kind: str, m: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss, first and second derivative w.r.t. the margin ``m``."""
    if kind == "logistic":
        p = _sigmoid(-m)  # = -l'(m)
        return np.logaddexp(0.0, -m), -p, p * (1.0 - p)
    if kind == "squared_hinge":
        r = np.maximum(0.0, 1.0 - m)
        return r * r, -2.0 * r, 2.0 * (m < 1.0)
    if kind == "hinge":
        active = (m < 1.0).astype(float)
        return np.maximum(0.0, 1.0 - m), -active, np.zeros_like(m)
    raise ConfigError(f"unknown loss {kind!r}")  # pragma: no cover


# ------------------------------------------------------------------------------------------
# the victim's standardisation (sklearn StandardScaler: population std, zero variance -> 1)
# ------------------------------------------------------------------------------------------
def _scaler(X: np.ndarray, standardize: bool) -> Tuple[np.ndarray, np.ndarray]:
    if not standardize:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mu))
    sd = np.where(sd < tiny, 1.0, sd)
    return mu, sd


# ------------------------------------------------------------------------------------------
# exact inner solvers
# ------------------------------------------------------------------------------------------
def _newton(Zt: np.ndarray, s: np.ndarray, c: np.ndarray, reg: np.ndarray, loss: str,
            theta0: Optional[np.ndarray] = None, tol: float = 1e-13, max_iter: int = 100) -> np.ndarray:
    """Minimise 0.5 theta' R theta + sum_i c_i l(s_i zt_i' theta) by (generalised) Newton + Armijo.

    Exact to ``tol`` (gradient norm relative to ``sum c``) for the log loss; for the squared
    hinge the generalised Newton method terminates in finitely many steps (Keerthi & DeCoste 2005).
    """
    d1 = Zt.shape[1]
    theta = np.zeros(d1) if theta0 is None else np.array(theta0, dtype=float)

    def obj(th):
        m = s * (Zt @ th)
        return 0.5 * th @ (reg * th) + c @ _loss(loss, m)[0], m

    def grad(th, m):
        return reg * th + Zt.T @ (c * _loss(loss, m)[1] * s)

    J, m = obj(theta)
    g = grad(theta, m)
    scale = max(1.0, float(c.sum()))
    for _ in range(max_iter):
        gnorm = np.linalg.norm(g)
        if gnorm <= tol * scale:
            break
        H = (Zt.T * (c * _loss(loss, m)[2])) @ Zt
        H[np.diag_indices(d1)] += reg + 1e-12
        step = np.linalg.solve(H, g)
        gd = g @ step
        cand = theta - step
        Jc, mc = obj(cand)
        gc = grad(cand, mc)
        # full Newton step: Armijo, or (at the round-off level of J) a smaller gradient
        ok = Jc <= J - 1e-4 * gd or (Jc - J <= 1e-14 * max(1.0, abs(J)) and np.linalg.norm(gc) < gnorm)
        t = 1.0
        while not ok and t >= 1e-10:
            t *= 0.5
            cand = theta - t * step
            Jc, mc = obj(cand)
            ok = Jc <= J - 1e-4 * t * gd
        if not ok:
            break
        theta, J, m = cand, Jc, mc
        g = grad(theta, m)
    return theta


def _hinge_dual(A: np.ndarray, c: np.ndarray, alpha0: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Hinge-loss SVM with penalised bias: min 0.5||A'a||^2 - sum a, 0 <= a_i <= c_i, then an exact polish.

    ``A`` has rows ``s_i * (z_i, 1)``; returns ``theta = A' alpha`` and ``alpha``. The box QP is
    solved by L-BFGS-B, then the active sets (alpha = 0, free, alpha = c) are fixed and the free
    duals solved exactly from ``m_s = 1``, moving indices that violate the KKT conditions until
    none does.
    """
    from scipy.optimize import minimize

    def fg(a):
        v = A.T @ a
        return 0.5 * v @ v - a.sum(), A @ v - 1.0

    a0 = 0.05 * np.minimum(c, 1.0) if alpha0 is None else np.clip(alpha0, 0, c)
    res = minimize(fg, a0, jac=True, method="L-BFGS-B", bounds=list(zip(np.zeros_like(c), c)),
                   options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-11})
    alpha = np.clip(res.x, 0.0, c)
    lower = alpha <= 1e-7 * c
    upper = alpha >= c * (1 - 1e-7)
    free = ~(lower | upper)
    best = alpha
    for _ in range(60):
        a = np.where(upper, c, 0.0)
        F = np.flatnonzero(free)
        if len(F):
            AF = A[F]
            rhs = 1.0 - AF @ (A.T @ a)
            a[F] = np.linalg.lstsq(AF @ AF.T, rhs, rcond=None)[0]
        m = A @ (A.T @ a)
        tol = 1e-9 * np.maximum(1.0, c)
        below = free & (a < -tol)
        above = free & (a > c + tol)
        lo_bad = lower & (m < 1 - 1e-9)
        up_bad = upper & (m > 1 + 1e-9)
        if not (below.any() or above.any() or lo_bad.any() or up_bad.any()):
            best = np.clip(a, 0.0, c)
            break
        free = (free & ~below & ~above) | lo_bad | up_bad
        lower = (lower & ~lo_bad) | below
        upper = (upper & ~up_bad) | above
    return A.T @ best, best


@dataclass
class _Fit:
    theta: np.ndarray          # (d + 1,) weights then bias, in standardised coordinates
    mu: np.ndarray
    sd: np.ndarray
    Z: np.ndarray              # standardised fitted rows (clean then attack)
    alpha: Optional[np.ndarray] = None


def _check_inner(model: str, svm_loss: str, C: float) -> str:
    if model not in _MODELS:
        raise ConfigError(f"model must be one of {list(_MODELS)}, got {model!r}")
    if svm_loss not in _SVM_LOSSES:
        raise ConfigError(f"svm_loss must be one of {list(_SVM_LOSSES)}, got {svm_loss!r}")
    if isinstance(C, bool) or not (isinstance(C, (int, float, np.number)) and np.isfinite(C) and C > 0):
        raise ConfigError(f"C must be a positive number, got {C!r}")
    return "logistic" if model == "logreg" else svm_loss


def _check_objective(objective: Optional[str], model: str) -> str:
    if objective is None:
        return "logistic" if model == "logreg" else "hinge"
    if objective not in _OBJECTIVES:
        raise ConfigError(f"objective must be one of {list(_OBJECTIVES)} or None, got {objective!r}")
    return objective


def _reg(model: str, d: int) -> np.ndarray:
    reg = np.ones(d + 1)
    if model == "logreg":
        reg[-1] = 0.0  # sklearn's LogisticRegression does not penalise the intercept
    return reg


def _fit(X: np.ndarray, s: np.ndarray, c: np.ndarray, mu: np.ndarray, sd: np.ndarray, model: str, loss: str,
         warm: Optional[_Fit] = None) -> _Fit:
    """Train the inner model on rows ``X`` (weights ``c`` = C x sample weight) standardised by (mu, sd)."""
    Z = (X - mu) / sd
    Zt = np.hstack([Z, np.ones((len(Z), 1))])
    if loss == "hinge":
        alpha0 = None
        if warm is not None and warm.alpha is not None and len(warm.alpha) == len(s):
            alpha0 = warm.alpha
        theta, alpha = _hinge_dual(s[:, None] * Zt, c, alpha0)
        return _Fit(theta, mu, sd, Z, alpha)
    theta = _newton(Zt, s, c, _reg(model, X.shape[1]), loss, None if warm is None else warm.theta)
    return _Fit(theta, mu, sd, Z)


def fit_linear(X: Any, y: Any, *, model: str = "linear_svm", C: float = 1.0, svm_loss: str = "squared_hinge",
               standardize: bool = True) -> Tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Fit the attack's inner binary linear model exactly (the victim's objective, solved to ~1e-12).

    Parameters
    ----------
    X : array of shape (n, ...)
        Features (flattened internally).
    y : array of shape (n,)
        Class indices 0/1 (1 is the positive class).
    model, C, svm_loss, standardize
        As in :class:`GradientPoisoning`.

    Returns
    -------
    w, b, mean, scale
        ``f(x) = w . (x - mean) / scale + b``; positive means class 1. With ``model="linear_svm"``
        this is the solution ``LinearSVC(C=C)`` (liblinear, squared hinge, penalised bias)
        approaches on ``StandardScaler``-ed data; with ``"logreg"`` that of ``LogisticRegression(C=C)``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.2], [0.8], [1.0]]); y = np.array([0, 0, 1, 1])
    >>> w, b, mean, scale = fit_linear(X, y)
    >>> bool(np.all((((X - mean) / scale) @ w + b > 0) == (y == 1)))
    True
    """
    loss = _check_inner(model, svm_loss, C)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    s = 2.0 * np.asarray(y, dtype=float) - 1.0
    mu, sd = _scaler(X, standardize)
    f = _fit(X, s, np.full(len(X), float(C)), mu, sd, model, loss)
    return f.theta[:-1], float(f.theta[-1]), f.mu, f.sd


# ------------------------------------------------------------------------------------------
# validation loss and its implicit gradient
# ------------------------------------------------------------------------------------------
class _Problem:
    """One inner problem: L_val(X_attack) and its gradient.

    The victim's scaler is computed on ``X_scale`` (every clean training row) plus the attack
    rows; the inner model is trained on ``X_fit`` (clean rows, each weighted ``weight``) plus the
    attack rows (weight 1) and evaluated on ``(Xv, sv)``.
    """

    def __init__(self, X_scale: np.ndarray, X_fit: np.ndarray, s_fit: np.ndarray, Xv: np.ndarray, sv: np.ndarray,
                 s_att: np.ndarray, *, model: str, loss: str, C: float, standardize: bool, objective: str,
                 temperature: float = 0.5, weight: float = 1.0):
        self.X_scale, self.X_fit, self.Xv, self.sv, self.s_att = X_scale, X_fit, Xv, sv, s_att
        self.model, self.loss, self.C, self.standardize = model, loss, float(C), standardize
        self.objective, self.temperature = objective, float(temperature)
        self.s_all = np.concatenate([s_fit, s_att])
        self.c_all = self.C * np.concatenate([np.full(len(s_fit), float(weight)), np.ones(len(s_att))])
        self._warm: Optional[_Fit] = None
        self.w0_norm = 1.0
        if objective == "error":
            mu, sd = _scaler(X_scale, standardize)
            clean = _fit(X_fit, s_fit, self.c_all[: len(s_fit)], mu, sd, model, loss)
            self.w0_norm = max(float(np.linalg.norm(clean.theta[:-1])), 1e-12)

    def fit(self, Xa: np.ndarray) -> _Fit:
        mu, sd = _scaler(np.vstack([self.X_scale, Xa]), self.standardize)
        fit = _fit(np.vstack([self.X_fit, Xa]), self.s_all, self.c_all, mu, sd, self.model, self.loss, self._warm)
        self._warm = fit
        return fit

    def _val_terms(self, fit: _Fit):
        """Validation loss, dL/dtheta, and dL/df_k per validation point (with its standardised rows)."""
        theta = fit.theta
        w = theta[:-1]
        Zv = (self.Xv - fit.mu) / fit.sd
        f = Zv @ w + theta[-1]
        nv = len(f)
        if self.objective == "error":
            # smoothed error of margins in the clean model's units: m = s f ||w0|| / ||w||
            r = self.w0_norm / max(float(np.linalg.norm(w)), 1e-300)
            m = self.sv * f * r
            p = _sigmoid(-m / self.temperature)
            dl = -p * (1.0 - p) / self.temperature / nv          # dL/dm_k
            coef = dl * self.sv * r                               # dL/df_k at fixed r
            g = np.concatenate([Zv.T @ coef, [coef.sum()]])
            g[:-1] -= (dl * self.sv * f).sum() * r * w / max(w @ w, 1e-300)  # through r
            return float(p.mean()), g, coef, Zv
        kind = "logistic" if self.objective == "logistic" else "hinge"
        lv, dv, _ = _loss(kind, self.sv * f)
        coef = dv * self.sv / nv
        return float(lv.mean()), np.concatenate([Zv.T @ coef, [coef.sum()]]), coef, Zv

    def value(self, fit: _Fit) -> float:
        return self._val_terms(fit)[0]

    def gradient(self, fit: _Fit) -> np.ndarray:
        """dL_val / dx_c for every attack point (rows), in the raw feature coordinates."""
        theta, Z, sd = fit.theta, fit.Z, fit.sd
        w = theta[:-1]
        n_fit, d = Z.shape
        k = len(self.s_att)
        N = len(self.X_scale) + k          # rows behind the victim's mean and deviation
        Zt = np.hstack([Z, np.ones((n_fit, 1))])
        s, c = self.s_all, self.c_all
        _, g_theta, coef_v, Zv = self._val_terms(fit)
        # adjoint of the optimality conditions: dL/dx_c = direct - sum_i D_ic o (p_i w + q_i v_w)
        if self.loss == "hinge":
            alpha = fit.alpha
            S = np.flatnonzero((alpha > 1e-7 * c) & (alpha < c * (1 - 1e-7)))  # margin support vectors
            if len(S):
                AS = s[S, None] * Zt[S]
                mu_S = np.linalg.lstsq(AS @ AS.T, AS @ g_theta, rcond=None)[0]
                u = g_theta - AS.T @ mu_S
            else:
                mu_S, u = np.zeros(0), g_theta
            p = np.zeros(n_fit)
            p[S] = mu_S * s[S]
            q = -alpha * s
            vw = u[:-1]
        else:
            m = s * (Zt @ theta)
            _, d1l, d2l = _loss(self.loss, m)
            H = (Zt.T * (c * d2l)) @ Zt
            H[np.diag_indices(d + 1)] += _reg(self.model, d) + 1e-12
            v = np.linalg.solve(H, g_theta)
            p = c * d2l * (Zt @ v)
            q = c * d1l * s
            vw = v[:-1]
        att = np.arange(n_fit - k, n_fit)
        Zc = Z[att]
        local = p[att, None] * w + q[att, None] * vw
        if not self.standardize:
            return -local
        # d z_i / d x_c = diag(delta_ic / sd - (1 + z_i o z_c) / (N sd)) for every row i
        glob = p.sum() * w + q.sum() * vw + Zc * ((p @ Z) * w + (q @ Z) * vw)
        dG = local / sd - glob / (N * sd)
        direct = -(w / (N * sd)) * (coef_v.sum() + Zc * (coef_v @ Zv))
        return direct - dG


class _CrossValidated:
    """Mean of several inner problems (one per fold)."""

    def __init__(self, problems: Sequence[_Problem]):
        self.problems = list(problems)

    def fit(self, Xa: np.ndarray) -> list:
        return [p.fit(Xa) for p in self.problems]

    def value(self, fits: list) -> float:
        return float(np.mean([p.value(f) for p, f in zip(self.problems, fits)]))

    def gradient(self, fits: list) -> np.ndarray:
        return np.mean([p.gradient(f) for p, f in zip(self.problems, fits)], axis=0)


def validation_loss_and_gradient(X_train: Any, y_train: Any, X_attack: Any, y_attack: Any, X_val: Any, y_val: Any,
                                 *, model: str = "linear_svm", C: float = 1.0, svm_loss: str = "squared_hinge",
                                 standardize: bool = True, objective: Optional[str] = None,
                                 temperature: float = 0.5) -> Tuple[float, np.ndarray]:
    """Validation loss of the model retrained with the attack points, and its gradient w.r.t. them.

    The model is trained exactly (see :func:`fit_linear`) on ``X_train`` plus ``X_attack``; the
    gradient is the implicit one described in the module docstring. Labels are class indices
    0/1. Useful to check the gradient against finite differences.

    Returns
    -------
    loss : float
        Mean validation loss (``objective``; by default hinge for SVMs, log loss for logreg).
    grad : ndarray, same shape as ``X_attack``

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((20, 3)); y = (X[:, 0] > 0.5).astype(int)
    >>> loss, grad = validation_loss_and_gradient(X, y, X[:2], 1 - y[:2], X, y)
    >>> grad.shape
    (2, 3)
    """
    loss = _check_inner(model, svm_loss, C)
    objective = _check_objective(objective, model)
    Xa = np.asarray(X_attack, dtype=np.float64)
    shape = Xa.shape
    Xtr = np.asarray(X_train, dtype=np.float64).reshape(len(X_train), -1)
    sign = lambda yy: 2.0 * np.asarray(yy, dtype=float) - 1.0  # noqa: E731
    prob = _Problem(Xtr, Xtr, sign(y_train), np.asarray(X_val, dtype=np.float64).reshape(len(X_val), -1),
                    sign(y_val), sign(y_attack), model=model, loss=loss, C=C, standardize=standardize,
                    objective=objective, temperature=temperature)
    fit = prob.fit(Xa.reshape(len(Xa), -1))
    return prob.value(fit), prob.gradient(fit).reshape(shape)


# ------------------------------------------------------------------------------------------
# the attack
# ------------------------------------------------------------------------------------------
Box = Union[None, Tuple[Any, Any]]


class GradientPoisoning(Attack):
    """Insert points whose features maximise the retrained linear model's held-out loss.

    Binary tasks only. The attack inserts ``k = round(poison_rate * n / (1 - poison_rate))``
    points into a training set of ``n`` samples, so that they make up ``poison_rate`` of the
    poisoned set. It starts them as label-flipped copies of random training points and moves
    their features jointly, inside ``box``, by projected gradient ascent on the validation loss
    of the inner model retrained on the poisoned set (implicit differentiation through its
    optimality conditions; the module docstring has the equations). The inserted points keep
    the labels given at initialisation.

    Parameters
    ----------
    poison_rate : float, default=0.03
        Share of the **poisoned** training set made of inserted points, in (0, 1):
        ``inserted / (original + inserted)``.
    model : {"linear_svm", "logreg"}, default="linear_svm"
        The inner model the attacker differentiates through; match the victim. ``"linear_svm"``
        is scikit-learn's ``LinearSVC`` (squared hinge, penalised bias) as trained by
        ``SklearnClassifier("linear_svm")``; ``"logreg"`` is ``LogisticRegression``.
    C : float, default=1.0
        Inverse regularisation strength of the inner model (the victim's ``C``).
    svm_loss : {"squared_hinge", "hinge"}, default="squared_hinge"
        SVM training loss: ``"squared_hinge"`` is what ``LinearSVC`` minimises by default;
        ``"hinge"`` is Biggio et al.'s SVM, differentiated through the KKT conditions of its
        margin support vectors (slower: the inner problem is a QP).
    standardize : bool, default=True
        Whether the victim standardises features with the poisoned training set's mean and
        standard deviation (``SklearnClassifier`` does); the gradient then includes how the
        attack points move that mean and deviation, and steps are measured in standard
        deviations of the clean data (features constant in the clean data are left alone:
        moving them would hand the victim a feature that isolates the poison).
    objective : {None, "hinge", "logistic", "error"}, default=None
        Validation loss to maximise. ``None``: the hinge loss for SVMs (Biggio et al.), the log
        loss for logistic regression. ``"error"``: a smoothed error rate,
        ``mean sigmoid(-m / temperature)`` of margins rescaled to the clean model's weight norm.
    temperature : float, default=0.5
        Temperature of the ``"error"`` objective.
    cv : int, default=5
        When ``poison`` gets no ``validation`` set: number of folds of the cross-validated
        objective (see :meth:`poison`).
    step : float, default=0.5
        Initial step, in the units above (clean standard deviations, or box widths when
        ``standardize=False``), of the coordinate with the largest gradient; adapted during the
        search (x1.5 after an accepted step, /2 after a rejected one).
    n_steps : int, default=100
        Maximum number of accepted gradient steps.
    tol : float, default=1e-5
        Stop when the step falls below ``tol`` or an accepted step raises the objective by less
        than ``tol`` (relative).
    box : (low, high) or None, default=(0.0, 1.0)
        Feasible region of the attack points' features; ``low``/``high`` are scalars or arrays
        of the feature shape. ``None`` uses each feature's min and max over the training set.
        Training data outside the box raise ConfigError (scale features first, e.g. with
        :func:`~mithridate.data.transforms.minmax_scale`).
    init : {"flip"}, default="flip"
        ``"flip"``: copies of random training points (drawn without replacement) with the other
        class's label, Biggio et al.'s initialisation.

    Attributes
    ----------
    loss_init_ : float
        Objective with the attack points at their initialisation.
    loss_ : float
        Objective after the optimisation (never lower than ``loss_init_``).
    history_ : list of float
        Objective after each accepted step (first entry: the initialisation).
    n_iter_ : int
        Number of accepted steps.

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> from mithridate.eval.metrics import accuracy
    >>> from mithridate.models.linear import SklearnClassifier
    >>> splits = load_dataset("digits", classes=[1, 7], random_state=0)
    >>> p = GradientPoisoning(poison_rate=0.03).poison(splits.train, random_state=0)
    >>> p.budget["n_poison"], p.dataset.X.shape[1:]
    (8, (1, 8, 8))
    >>> victim = SklearnClassifier("linear_svm").fit(p.dataset)
    >>> error = 1 - accuracy(splits.test.y, victim.predict(splits.test.X))

    References
    ----------
    Biggio, Nelson, Laskov. "Poisoning Attacks against Support Vector Machines." ICML 2012
    (gradient ascent through the SVM's KKT conditions, eq. 7-10).
    Mei, Zhu. "Using Machine Teaching to Identify Optimal Training-Set Attacks on Machine
    Learners." AAAI 2015 (the bilevel problem and its implicit gradient for smooth learners).
    Keerthi, DeCoste. "A Modified Finite Newton Method for Fast Solution of Large Scale Linear
    SVMs." JMLR 2005 (the exact squared-hinge solver).
    """

    name = "gradient"

    def __init__(self, poison_rate: float = 0.03, model: str = "linear_svm", C: float = 1.0,
                 svm_loss: str = "squared_hinge", standardize: bool = True, objective: Optional[str] = None,
                 temperature: float = 0.5, cv: int = 5, step: float = 0.5, n_steps: int = 100, tol: float = 1e-5,
                 box: Box = (0.0, 1.0), init: str = "flip"):
        self.poison_rate = poison_rate
        self.model = model
        self.C = C
        self.svm_loss = svm_loss
        self.standardize = standardize
        self.objective = objective
        self.temperature = temperature
        self.cv = cv
        self.step = step
        self.n_steps = n_steps
        self.tol = tol
        self.box = box
        self.init = init

    # -- validation ------------------------------------------------------------------------
    def _check_params(self) -> Tuple[float, str, str]:
        rate = check_fraction(self.poison_rate, "poison_rate")
        loss = _check_inner(self.model, self.svm_loss, self.C)
        objective = _check_objective(self.objective, self.model)

        def positive(v):
            return not isinstance(v, bool) and isinstance(v, (int, float, np.number)) and np.isfinite(v) and v > 0

        if not positive(self.temperature):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature!r}")
        if not positive(self.step):
            raise ConfigError(f"step must be a positive number, got {self.step!r}")
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, (int, np.integer)) or self.n_steps < 0:
            raise ConfigError(f"n_steps must be a non-negative int, got {self.n_steps!r}")
        if isinstance(self.cv, bool) or not isinstance(self.cv, (int, np.integer)) or self.cv < 2:
            raise ConfigError(f"cv must be an int >= 2 (number of folds), got {self.cv!r}")
        if not (not isinstance(self.tol, bool) and isinstance(self.tol, (int, float, np.number)) and self.tol >= 0):
            raise ConfigError(f"tol must be a non-negative number, got {self.tol!r}")
        if self.init != "flip":
            raise ConfigError(f"init must be 'flip', got {self.init!r}")
        return rate, loss, objective

    @staticmethod
    def _check_data(dataset: Dataset, what: str) -> None:
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"{what} must be a mithridate Dataset, got {type(dataset).__name__}")
        if dataset.is_regression:
            raise ConfigError(f"gradient poisoning attacks classifiers; {dataset.name!r} is a regression set "
                              "(use a regression attack)")
        if dataset.n_classes != 2:
            raise ConfigError(
                f"gradient poisoning is binary-only; {what} {dataset.name!r} has {dataset.n_classes} classes. "
                f"Keep two of them, e.g. load_dataset(..., classes=[{', '.join(map(repr, dataset.classes[:2]))}]) "
                f"or --classes {','.join(map(str, dataset.classes[:2]))} on the command line"
            )

    def _bounds(self, X: np.ndarray, shape: tuple) -> Tuple[np.ndarray, np.ndarray]:
        d = X.shape[1]
        if self.box is None:
            return X.min(axis=0), X.max(axis=0)
        try:
            lo, hi = self.box
        except (TypeError, ValueError):
            raise ConfigError(f"box must be (low, high) or None, got {self.box!r}") from None

        def one(v, nm):
            a = np.asarray(v, dtype=np.float64)
            if a.ndim == 0:
                return np.full(d, float(a))
            if a.size == d and a.shape in ((d,), tuple(shape)):
                return a.reshape(d)
            raise ConfigError(f"box {nm} must be a scalar or an array of shape {tuple(shape)}, got {a.shape}")

        lo, hi = one(lo, "low"), one(hi, "high")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
            raise ConfigError("box must have finite low <= high for every feature")
        slack = 1e-6 * np.maximum(1.0, hi - lo)
        out = (X < lo - slack) | (X > hi + slack)
        if out.any():
            j = int(np.flatnonzero(out.any(axis=0))[0])
            raise ConfigError(
                f"training features lie outside the box {self.box!r} (feature {j} spans "
                f"[{X[:, j].min():.4g}, {X[:, j].max():.4g}]); scale them first "
                "(mithridate.data.transforms.minmax_scale) or pass box=None for the data's own ranges"
            )
        return lo, hi

    # -- the attack ------------------------------------------------------------------------
    def poison(self, dataset: Dataset, random_state: RandomState = None, *,
               validation: Optional[Dataset] = None) -> Poisoning:
        """Insert the optimised attack points into ``dataset``.

        Parameters
        ----------
        dataset : Dataset
            Binary training set (images are flattened internally; the inserted rows keep the
            dataset's sample shape).
        random_state : int, Generator or None
            Drives the points copied at initialisation and the folds.
        validation : Dataset, optional
            Clean data, unseen by the victim, whose loss the attacker maximises (same classes
            and sample shape); the inner model is trained on the whole of ``dataset`` plus the
            attack points. ``None`` (the default): the objective is cross-validated on
            ``dataset`` itself: it is split into ``cv`` stratified folds, and for each fold the
            inner model is trained on the other folds (clean rows weighted ``cv / (cv - 1)`` so
            that the attack points keep their real share, standardised with the statistics of
            the whole poisoned training set, as the victim is) plus the attack points, and
            scored on the held-out fold; the objective is the mean over folds. Using the
            training points themselves as validation does not work: the victim fits the points
            it is trained on, so their loss says little about its error on new data (on digits
            1-vs-7 the attack then lowers the test error it is meant to raise).

        Returns
        -------
        Poisoning
            ``dataset`` followed by the inserted points (``is_poison`` marks them; new ids,
            metadata ``source="gradient"``); ``budget`` holds ``n_poison`` and
            ``poison_rate = n_poison / (len(dataset) + n_poison)``.
        """
        rate, loss, objective = self._check_params()
        rng = check_random_state(random_state)
        self._check_data(dataset, "dataset")
        shape = tuple(dataset.X.shape[1:])
        X = np.asarray(dataset.X, dtype=np.float64).reshape(len(dataset), -1)
        y = np.asarray(dataset.y)
        s = 2.0 * y - 1.0
        if validation is not None:
            self._check_data(validation, "validation")
            if validation.classes != dataset.classes:
                raise ConfigError(f"validation classes {validation.classes} differ from the training classes "
                                  f"{dataset.classes}")
            if tuple(validation.X.shape[1:]) != shape:
                raise DataError(f"validation samples have shape {validation.X.shape[1:]}, training samples {shape}")
        lo, hi = self._bounds(X, shape)
        n = len(X)
        k = int(round(rate * n / (1.0 - rate)))
        if k < 1:
            raise ConfigError(f"poison_rate {rate} of {n} samples inserts no point; raise it to at least "
                              f"{1.0 / (2 * n + 1):.3g}")
        if k > n:
            raise ConfigError(f"poison_rate {rate} asks for {k} points, more than the {n} training samples "
                              "that seed them; lower it")
        rows = self._init_rows(y, k, rng)
        Xa = np.clip(X[rows], lo, hi)
        ya = 1 - y[rows]
        sa = 2.0 * ya - 1.0
        common = dict(model=self.model, loss=loss, C=self.C, standardize=self.standardize, objective=objective,
                      temperature=self.temperature)
        if validation is not None:
            Xv = np.asarray(validation.X, dtype=np.float64).reshape(len(validation), -1)
            prob: Any = _Problem(X, X, s, Xv, 2.0 * np.asarray(validation.y) - 1.0, sa, **common)
        else:
            folds = self._folds(y, rng)
            probs = []
            for held in folds:
                keep = np.ones(n, bool)
                keep[held] = False
                probs.append(_Problem(X, X[keep], s[keep], X[held], s[held], sa, weight=n / keep.sum(), **common))
            prob = _CrossValidated(probs)
        if self.standardize:
            # steps in the victim's standardised units; features constant in the clean data
            # stay put (moving them only hands the victim a feature that isolates the poison)
            unit = np.minimum(X.std(axis=0), hi - lo)
        else:
            unit = hi - lo
        Xa = self._ascend(prob, Xa, lo, hi, unit)
        poisoned = dataset.append(Xa.reshape((k,) + shape).astype(np.float32), ya.astype(np.int64),
                                  is_poison=True, source=self.name)
        budget = {"n_poison": k, "poison_rate": k / (n + k)}
        return Poisoning(dataset=poisoned, attack=self.name, params=self.get_params(), budget=budget)

    def _init_rows(self, y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Training rows copied (with flipped labels) as the starting attack points."""
        return rng.choice(len(y), size=k, replace=False)

    def _folds(self, y: np.ndarray, rng: np.random.Generator) -> list:
        """``cv`` stratified folds (each class dealt round-robin after a shuffle)."""
        n_min = int(np.bincount(y, minlength=2).min())
        if n_min < self.cv:
            raise DataError(f"cv={self.cv} folds need at least {self.cv} samples per class; the smaller class has "
                            f"{n_min}. Lower cv or pass a validation set")
        fold_of = np.empty(len(y), dtype=np.int64)
        for cls in (0, 1):
            idx = rng.permutation(np.flatnonzero(y == cls))
            fold_of[idx] = np.arange(len(idx)) % self.cv
        return [np.flatnonzero(fold_of == f) for f in range(self.cv)]

    def _ascend(self, prob: Any, Xa: np.ndarray, lo: np.ndarray, hi: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """Projected gradient ascent with an adaptive step; every accepted step raises the objective."""
        width = np.where(hi > lo, unit, 0.0)
        fit = prob.fit(Xa)
        value = prob.value(fit)
        self.loss_init_ = value
        self.history_ = [value]
        eta = float(self.step)
        accepted = 0
        floor = max(float(self.tol), 1e-12)
        while accepted < self.n_steps and eta >= floor:
            g = prob.gradient(fit) * width  # steepest ascent in units of `unit`
            g[((Xa >= hi) & (g > 0)) | ((Xa <= lo) & (g < 0))] = 0.0  # projected gradient
            gmax = np.abs(g).max()
            if not np.isfinite(gmax) or gmax == 0:
                break
            direction = g / gmax * width
            while eta >= floor:
                cand = np.clip(Xa + eta * direction, lo, hi)
                cfit = prob.fit(cand)
                cval = prob.value(cfit)
                if cval > value:
                    break
                eta *= 0.5
            else:
                break
            gain = cval - value
            Xa, fit, value = cand, cfit, cval
            accepted += 1
            self.history_.append(value)
            eta = min(1.0, eta * 1.5)
            if gain <= self.tol * max(abs(value), 1e-12):
                break
        self.loss_ = value
        self.n_iter_ = accepted
        return Xa
