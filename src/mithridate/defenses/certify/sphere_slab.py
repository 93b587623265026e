"""Certified upper bound on data poisoning against the sphere/slab oracle defence.

Steinhardt, Koh & Liang, "Certified Defenses for Data Poisoning Attacks", NeurIPS 2017.

Setting (binary, labels y ∈ {−1, +1}; class index 0 is −1, class index 1 is +1)
-------------------------------------------------------------------------------------
* Clean training set D_c of n points. The attacker adds D_p, |D_p| = ε·n points.
* The defender removes every point outside its feasible set F_y (the sphere
  ‖x − μ_y‖ ≤ r_y and/or the slab |⟨x − μ_y, μ_y − μ_−y⟩| ≤ s_y, radii at the 70th percentile
  of the clean distances, plus the data box, e.g. pixels in [0, 1]) and then trains

      θ̂ = argmin_{‖θ‖² ≤ ρ}  L(θ; D_c) + (1/n) Σ_{(x, y) ∈ D_p ∩ F} ℓ(θ; x, y),

  ℓ(θ; x, y) = max(0, 1 − y(⟨w, x⟩ + b)) the hinge loss, θ = (w, b) (the bias is inside the
  norm ball, as if it were the weight of a constant feature) and L(θ; D) the *mean* hinge loss
  over D. This learner is :class:`HingeSVM`; the victim and the learner of the minimax game are
  that same class.

The bound (paper, Eq. 5 and Algorithm 1)
----------------------------------------
For every attack D_p with at most εn points (losses are non-negative, so fewer surviving points
only lower the left-hand side),

    L(θ̂; D_c)  ≤  L(θ̂; D_c) + (1/n) Σ_{D_p ∩ F} ℓ(θ̂)  =  min_θ [L(θ; D_c) + (1/n) Σ_{D_p ∩ F} ℓ(θ)]
               ≤  min_{‖θ‖² ≤ ρ} [ L(θ; D_c) + ε · max_{y, x ∈ F_y} ℓ(θ; x, y) ]  =:  U*(ε)
               ≤  L(θ_t; D_c) + ε · max_{y, x ∈ F_y} ℓ(θ_t; x, y)        for every θ_t in the ball.

:class:`SphereSlabCertificate` runs the paper's online procedure: at each step it finds, per
class, the feasible point with the largest hinge loss for the current θ_t (the inner
maximisation), takes a dual-averaging step on L(θ; D_c) + ε·ℓ(θ; x_t, y_t) inside the ball, and
reports U(ε) = min_t of the right-hand side. The right-hand side is affine in ε, so every iterate
of every run (one run per ε of the grid) certifies every ε: U(ε) is the lower envelope of them
all, hence concave and non-decreasing in ε. The worst points (x_t, y_t) form the *candidate
attack*: ⌊εn⌋ of them, spread over the run, approximate the attacker's side of the minimax game.

Which numbers are compared
--------------------------
The bound and the attack are compared on the **same quantity, the training objective**
L(θ̂; D_c) + (1/n) Σ_{D_p ∩ F} ℓ(θ̂) of the defended model retrained on clean + attack (the
``attack_loss`` column; the official code's "total train loss" of the candidate attack). The
minimax game is played on exactly this objective, so that is where the candidate attack nearly
matches the bound. The clean part alone, L(θ̂; D_c) (``attack_clean_loss``), is also below the
bound but may sit well below it: at the game's equilibrium part of the certified excess is the
poison points' own loss ε·ℓ, which the learner prefers to pay rather than move θ.

What the number means — and its caveats
---------------------------------------
* U(ε) is an upper bound on the **training objective** the best attack can reach, and so on the
  clean training hinge loss L(θ̂; D_c) of the defended model, for *every* attack of εn points
  against this **oracle** defence (the defender knows the clean centroids and radii) and this
  learner (hinge loss, ‖θ‖² ≤ ρ). The inner maxima enter the bound through exact or
  dual (weak-duality) values, so U(ε) is sound even where the solver is approximate.
* It is *not* a bound on the test loss: the paper approximates the test loss by the clean
  training loss (statistical concentration), which needs n large compared with d.
* It assumes the defender keeps every clean point (the sanitiser only removes poison). A real
  defender that also drops the clean points outside F (30% of each class per constraint at the
  70th percentile) trains on fewer clean points; the paper assumes this barely moves θ̂ (its
  second assumption). ``evaluate(..., sanitize_clean=True)`` measures that victim — for it the
  bound is an approximation, not a theorem.
* The candidate attack's achieved objective is a *lower* bound on the worst case, so the worst
  case lies between the two curves of :func:`plot_bound`.

Examples
--------
>>> from mithridate.data import load_dataset
>>> splits = load_dataset("digits", classes=[1, 7])
>>> cert = SphereSlabCertificate(n_steps=300).fit(splits.train, epsilons=(0.05, 0.1), test=splits.test,
...                                               random_state=0)          # doctest: +SKIP
>>> cert.table_[["eps", "clean_loss", "upper_bound", "attack_loss", "ratio"]]  # doctest: +SKIP

References
----------
Steinhardt, Koh, Liang. "Certified Defenses for Data Poisoning Attacks." NeurIPS 2017.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from mithridate.data.dataset import Dataset
from mithridate.defenses.detect.sphere_slab import FeasibleSet, parse_defense
from mithridate.errors import ConfigError, DataError
from mithridate.models.base import as_xy, check_layer
from mithridate.utils import RandomState, atomic_path, check_random_state

__all__ = [
    "DEFAULT_EPSILONS",
    "HingeSVM",
    "SphereSlabCertificate",
    "budget_points",
    "hinge_loss",
    "plot_bound",
    "worst_point",
]

DEFAULT_EPSILONS = (0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3)


# =========================================================================================
# the learner: binary linear SVM with ‖θ‖² ≤ ρ
# =========================================================================================
def _signs(y: Any) -> np.ndarray:
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if len(y) and (y.min() < 0 or y.max() > 1):
        raise DataError("binary labels must be class indices 0 or 1")
    return 2.0 * y - 1.0


def hinge_loss(coef: np.ndarray, intercept: float, X: Any, y: Any) -> np.ndarray:
    """Per-sample hinge loss max(0, 1 − s(⟨w, x⟩ + b)), s = +1 for class index 1, −1 for 0."""
    X = np.asarray(X, dtype=np.float64).reshape(len(np.asarray(y).reshape(-1)), -1)
    s = _signs(y)
    return np.maximum(0.0, 1.0 - s * (X @ np.asarray(coef, dtype=np.float64) + float(intercept)))


def _liblinear(X: np.ndarray, y: np.ndarray, c: np.ndarray, lam: float, tol: float, max_iter: int) -> np.ndarray:
    """θ = (w, b) minimising (lam/2)‖θ‖² + Σ c_i ℓ_i, by liblinear's dual coordinate descent.

    scikit-learn's LinearSVC with ``loss="hinge"`` and ``intercept_scaling=1`` solves
    ½‖θ‖² + C Σ w_i ℓ_i with the bias as the weight of a constant feature, penalised like the
    others — exactly this problem with C·w_i = c_i / lam.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # liblinear visits the coordinates in a random order; a fixed seed keeps fits reproducible
        m = LinearSVC(C=1.0, loss="hinge", intercept_scaling=1.0, tol=tol, max_iter=max_iter, dual=True,
                      random_state=0)
        m.fit(X, y, sample_weight=c / lam)
    return np.append(np.asarray(m.coef_, dtype=np.float64).ravel(), float(np.ravel(m.intercept_)[0]))


def _illinois(f, a: float, fa: float, b: float, fb: float, ftol: float, maxiter: int = 100) -> float:
    """A root of f in the bracket [a, b] (fa·fb < 0) by the Illinois variant of regula falsi,
    stopping as soon as |f| ≤ ftol (superlinear on the nearly linear log-norm curve)."""
    x = b
    for _ in range(maxiter):
        x = (a * fb - b * fa) / (fb - fa)
        fx = f(x)
        if abs(fx) <= ftol:
            return x
        if fx * fb < 0:
            a, fa = b, fb
        else:
            fa /= 2.0
        b, fb = x, fx
        if abs(b - a) <= 1e-14 * max(1.0, abs(b)):
            break
    return x


class HingeSVM:
    """Binary linear SVM with the hinge loss inside a norm ball — the certificate's learner.

    With ``rho`` set it solves

        min_{θ=(w,b)}  Σ_i c_i · max(0, 1 − s_i(⟨w, x_i⟩ + b))   s.t.  ‖w‖² + b² ≤ ρ,

    (c_i = 1/n, or ``sample_weight_i / n``; s_i = +1 for class index 1, −1 for 0; the bias is
    inside the ball, as the weight of a constant feature would be). With ``reg`` set instead it
    solves the L2-regularised form (reg/2)(‖w‖² + b²) + Σ_i c_i ℓ_i, whose solution θ_reg also
    solves the constrained form with ρ = ‖θ_reg‖².

    The regularised form is solved by liblinear's dual coordinate descent (through
    scikit-learn's ``LinearSVC``, to a tight tolerance). The constrained form is the regularised
    one at the multiplier λ for which ‖θ(λ)‖² = ρ (KKT): ‖θ(λ)‖ decreases with λ, and λ is found
    by regula falsi on log λ (to a relative 1e-6 on ‖θ‖²; the final fit at that λ is rescaled
    into the ball if it pokes out, which costs O(λρ·1e-6) in objective). If even λ → 0 leaves ‖θ‖² < ρ the ball is not binding and that
    θ (a hinge minimiser) is returned.

    Parameters
    ----------
    rho : float, optional
        Squared-norm bound on (w, b).
    reg : float, optional
        L2 regularisation strength (exactly one of ``rho`` and ``reg``).
    tol : float, default=1e-10
        liblinear's stopping tolerance.
    max_iter : int, default=100000

    Attributes
    ----------
    coef_ : ndarray of shape (d,)
    intercept_ : float
    lambda_ : float
        The equivalent L2 strength (``reg``, or the multiplier of the ball).
    objective_ : float
        Σ c_i ℓ_i at the solution (plus (reg/2)‖θ‖² in the regularised form).
    n_classes_ : int
        Always 2.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> svm = HingeSVM(rho=1.0).fit(X, y)
    >>> svm.predict(X).tolist(), round(float(svm.coef_[0] ** 2 + svm.intercept_ ** 2), 6)
    ([0, 0, 1, 1], 1.0)
    """

    def __init__(self, rho: Optional[float] = None, reg: Optional[float] = None, tol: float = 1e-10,
                 max_iter: int = 100000):
        self.rho = rho
        self.reg = reg
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: Optional[np.ndarray] = None, *, sample_weight: Optional[np.ndarray] = None,
            lambda_init: Optional[float] = None) -> "HingeSVM":
        """Fit on ``(X, y)`` or a Dataset; labels are class indices 0/1.

        ``lambda_init`` (the multiplier of a similar earlier fit) speeds up the constrained fit.
        """

        X, y = as_xy(X, y)
        if y is None:
            raise ConfigError("HingeSVM.fit needs labels: pass a Dataset or (X, y)")
        if (self.rho is None) == (self.reg is None):
            raise ConfigError("HingeSVM needs exactly one of rho= (norm bound) and reg= (L2 strength)")
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        s = _signs(y)
        yi = (s > 0).astype(np.int64)
        n = len(X)
        if n == 0:
            raise DataError("cannot fit an SVM on 0 samples")
        if len(np.unique(yi)) < 2:
            raise DataError("HingeSVM needs samples of both classes")
        c = np.full(n, 1.0 / n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64) / n
        if c.shape != (n,) or np.any(c < 0) or not np.all(np.isfinite(c)):
            raise DataError("sample_weight must be finite and non-negative, one per sample")
        tol, it = float(self.tol), int(self.max_iter)
        if self.reg is not None:
            lam = float(self.reg)
            if not lam > 0:
                raise ConfigError(f"reg must be positive, got {self.reg!r}")
            theta = _liblinear(X, yi, c, lam, tol, it)
        else:
            rho = float(self.rho)
            if not rho > 0:
                raise ConfigError(f"rho must be positive, got {self.rho!r}")
            cache: Dict[float, np.ndarray] = {}

            search_tol = max(tol, 1e-7)  # the search for λ needs ‖θ(λ)‖, not θ, to full precision

            def excess(loglam: float) -> float:  # log ‖θ(λ)‖² − log ρ, decreasing in λ
                th = cache.get(loglam)
                if th is None:
                    th = cache[loglam] = _liblinear(X, yi, c, math.exp(loglam), search_tol, it)
                return math.log(max(th @ th, 1e-300)) - math.log(rho)

            a = math.log(lambda_init) if lambda_init else math.log(0.01)
            fa = excess(a)
            ftol = 1e-6  # on log ‖θ‖²: below the noise of the search-precision fits
            if abs(fa) <= ftol:
                loglam = a
            else:
                # ‖θ(λ)‖ ≈ ‖Σ α_i s_i x̃_i‖ / λ with slowly varying α: log ‖θ‖² moves like −2 log λ,
                # so a step of fa/2 (10% further, to straddle the root) nearly always brackets it
                step = math.copysign(max(abs(fa) * 0.55, 1e-3), fa)
                b = a + step
                fb = excess(b)
                lo_limit = math.log(1e-10)
                while fa * fb > 0 and lo_limit < b < 60:
                    a, fa = b, fb
                    step *= 2.0
                    b = max(a + step, lo_limit)
                    fb = excess(b)
                if fa * fb > 0 or abs(fb) <= ftol:  # at the root, or the ball does not bind even
                    loglam = b                       # for λ → 0 (then any hinge minimiser is optimal)
                else:
                    loglam = _illinois(excess, a, fa, b, fb, ftol=ftol)
            theta = _liblinear(X, yi, c, math.exp(loglam), tol, it)
            lam = math.exp(loglam)
            nrm2 = float(theta @ theta)
            if nrm2 > rho:
                theta = theta * math.sqrt(rho / nrm2)
        Z = s[:, None] * np.hstack([X, np.ones((n, 1))])
        obj = float(c @ np.maximum(0.0, 1.0 - Z @ theta))
        if self.reg is not None:
            obj += float(self.reg) / 2 * float(theta @ theta)
        self.coef_ = theta[:-1].copy()
        self.intercept_ = float(theta[-1])
        self.lambda_ = float(lam)
        self.objective_ = obj
        self.n_classes_ = 2
        return self

    # -- Model protocol --------------------------------------------------------------------
    def _flat(self, X: Any) -> np.ndarray:
        X, _ = as_xy(X)
        if not hasattr(self, "coef_"):
            raise ConfigError("this model is not fitted yet; call fit() first")
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1)

    @property
    def theta_(self) -> np.ndarray:
        """(w, b) as one vector."""
        return np.append(self.coef_, self.intercept_)

    def decision_function(self, X: Any) -> np.ndarray:
        return self._flat(X) @ self.coef_ + self.intercept_

    def predict(self, X: Any) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)

    def logits(self, X: Any) -> np.ndarray:
        d = self.decision_function(X)
        return np.stack([-d / 2, d / 2], axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of (−d/2, d/2): a score, not a calibrated probability."""
        z = self.logits(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def per_sample_loss(self, X: Any, y: np.ndarray) -> np.ndarray:
        """Binary hinge loss per sample."""
        return hinge_loss(self.coef_, self.intercept_, self._flat(X), y)

    @property
    def layer_names(self) -> list[str]:
        return ["input", "logits"]

    def features(self, X: Any, layer: str = "input") -> np.ndarray:
        check_layer(layer, self.layer_names)
        if layer == "input":
            return self._flat(X).astype(np.float32)
        return self.logits(X).astype(np.float32)


# =========================================================================================
# the inner maximisation: min ⟨c, u⟩ over the feasible set (u = x − μ_y)
# =========================================================================================
def _ball_box(a: np.ndarray, L: np.ndarray, H: np.ndarray, r2: float) -> Tuple[np.ndarray, float]:
    """Exact minimiser of ⟨a, u⟩ + (λ/2)(‖u‖² − r²) over the box [L, H] at the optimal λ ≥ 0.

    u(λ) = clip(−a/λ, L, H) (the box holds 0); λ* = 0 when the best box vertex is inside the
    ball, else the unique root of ‖u(λ)‖² = r², found exactly from the sorted breakpoints where
    coordinates leave the box faces. Returns (u*, λ*): u* solves min ⟨a, u⟩ over box ∩ ball.
    """
    vert = np.where(a > 0, L, np.where(a < 0, H, 0.0))
    if vert @ vert <= r2:
        return vert, 0.0
    bnd = np.abs(vert)
    act = (bnd > 0) & (a != 0)
    aa = np.abs(a[act])
    bb = bnd[act]
    kappa = aa / bb  # coordinate is clipped for λ < kappa, free (−a/λ) for λ ≥ kappa
    order = np.argsort(kappa, kind="stable")
    k = kappa[order]
    a2 = aa[order] ** 2
    b2 = bb[order] ** 2
    A = np.cumsum(a2)
    B = b2.sum() - np.cumsum(b2)
    room = r2 - B
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(room > 0, np.sqrt(A / np.where(room > 0, room, 1.0)), np.inf)
    upper = np.append(k[1:], np.inf)
    ok = (room > 0) & (lam >= k * (1 - 1e-12)) & (lam <= upper * (1 + 1e-12))
    if ok.any():
        lam_star = float(lam[np.argmax(ok)])
    else:  # numerical corner: bisection on the monotone ‖u(λ)‖²
        lo_l, hi_l = 0.0, float(max(k.max(), 1.0))
        while np.sum(np.clip(-a / hi_l, L, H) ** 2) > r2:
            hi_l *= 2.0
        for _ in range(200):
            mid = 0.5 * (lo_l + hi_l)
            if mid <= 0:
                break
            if np.sum(np.clip(-a / mid, L, H) ** 2) > r2:
                lo_l = mid
            else:
                hi_l = mid
        lam_star = hi_l
    u = np.clip(-a / lam_star, L, H)
    return u, lam_star


def _slab_box(c: np.ndarray, v: np.ndarray, s: float, L: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Exact minimiser of ⟨c, u⟩ over u ∈ [L, H], |⟨v, u⟩| ≤ s (an LP; fractional knapsack).

    Start from the best box vertex; if it breaks the slab, move ⟨v, u⟩ back towards the slab by
    the cheapest coordinates first (cost |c_i| / |v_i| per unit of ⟨v, u⟩), which is optimal.
    """
    u = np.where(c > 0, L, np.where(c < 0, H, 0.0))
    g = float(v @ u)
    if abs(g) <= s:
        return u
    need = abs(g) - s
    direction = -np.sign(g)  # move ⟨v, u⟩ this way
    move = np.sign(v) * direction  # per-coordinate direction of u_i
    target = np.where(move > 0, H, L)
    cap = np.abs(v) * np.abs(target - u)
    usable = (cap > 0) & (v != 0)
    idx = np.flatnonzero(usable)
    cost = np.abs(c[idx]) / np.abs(v[idx])
    order = idx[np.argsort(cost, kind="stable")]
    caps = cap[order]
    before = np.concatenate([[0.0], np.cumsum(caps)[:-1]])
    take = np.clip(need - before, 0.0, caps)
    u = u.copy()
    u[order] += move[order] * take / np.abs(v[order])
    return np.clip(u, L, H)


def _sphere_slab(c: np.ndarray, v: np.ndarray, r: float, s: float) -> np.ndarray:
    """Closed-form minimiser of ⟨c, u⟩ over ‖u‖ ≤ r, |⟨v, u⟩| ≤ s (no box).

    The optimum lies in span(c, v): write c = a·v̂ + c⊥. The sphere's optimum −r·c/‖c‖ is kept
    if it satisfies the slab; otherwise the optimum is the corner where the slab face
    ⟨v̂, u⟩ = −sign(a)·s/‖v‖ meets the sphere.
    """
    nc = np.linalg.norm(c)
    if nc == 0:
        return np.zeros_like(c)
    nv = np.linalg.norm(v)
    if nv == 0:
        return -r * c / nc
    vh = v / nv
    t_max = s / nv
    a = float(c @ vh)
    u = -r * c / nc
    if abs(float(u @ vh)) <= t_max:
        return u
    t = -np.sign(a) * t_max
    perp = c - a * vh
    beta = np.linalg.norm(perp)
    q = math.sqrt(max(r * r - t * t, 0.0))
    return t * vh - (q * perp / beta if beta > 0 else 0.0)


def _sphere_slab_box(c: np.ndarray, v: np.ndarray, r: float, s: float, L: np.ndarray, H: np.ndarray,
                     hint: Optional[dict] = None) -> Tuple[np.ndarray, float]:
    """min ⟨c, u⟩ over box ∩ ball ∩ slab through its concave dual in ν (the slab multiplier).

    ψ(ν) = min_{u ∈ box∩ball} ⟨c + νv, u⟩ − |ν|s is a lower bound on the minimum for every ν
    (weak duality) and equals it at the best ν; ψ'(ν) = ⟨v, u(ν)⟩ − sign(ν)s is decreasing, so
    the best ν is a root found with Brent's method (bracketed around ``hint["nu"]``, the
    previous solution, when given). Returns a feasible u (the dual solution's point, shrunk
    towards 0 if rounding left it a hair outside the slab or ball) and the best dual value
    found — a certified lower bound on min ⟨c, u⟩.
    """
    from scipy.optimize import brentq

    r2 = r * r
    best = [-np.inf]

    def solve(nu: float) -> Tuple[np.ndarray, float]:
        a = c + nu * v
        u, lam = _ball_box(a, L, H, r2)
        val = float(a @ u + 0.5 * lam * (u @ u - r2) - abs(nu) * s)
        if val > best[0]:
            best[0] = val
        return u, val

    u0, _ = solve(0.0)
    g0 = float(v @ u0)
    if abs(g0) <= s:
        if hint is not None:
            hint["nu"] = 0.0
        return u0, best[0]
    sgn = 1.0 if g0 > s else -1.0

    def F(t: float) -> float:
        u, _ = solve(sgn * t)
        return sgn * float(v @ u) - s

    t_lo, t_hi = 0.0, None
    prev = None if hint is None else hint.get("nu")
    if prev is not None and prev * sgn > 0:  # bracket around the previous multiplier
        t_prev = abs(prev)
        lo_try, hi_try = t_prev / 1.5, t_prev * 1.5
        if F(lo_try) > 0:
            t_lo = lo_try
            if F(hi_try) < 0:
                t_hi = hi_try
    if t_hi is None:
        t_hi = max(t_lo * 2.0, (np.linalg.norm(c) + 1e-300) / (np.linalg.norm(v) + 1e-300))
        for _ in range(200):
            if F(t_hi) < 0:
                break
            t_lo, t_hi = t_hi, t_hi * 2.0
    t_star = brentq(F, t_lo, t_hi, xtol=1e-12 * t_hi, rtol=1e-10, maxiter=200)
    if hint is not None:
        hint["nu"] = sgn * t_star
    u, _ = solve(sgn * t_star)
    gv = abs(float(v @ u))
    if gv > s:
        u = u * (s / gv)
    nu = np.linalg.norm(u)
    if nu > r:
        u = u * (r / nu)
    return u, best[0]


def worst_point(coef: np.ndarray, intercept: float, label: int, fset: FeasibleSet,
                defense: str = "sphere+slab", *, hint: Optional[dict] = None) -> Tuple[np.ndarray, float]:
    """The feasible point of class ``label`` with the largest hinge loss for (w, b).

    The hinge loss is convex in x, so its maximum over the convex set F_y is on the boundary;
    since ℓ = max(0, 1 − s_y(⟨w, x⟩ + b)), maximising it is minimising the linear function
    ⟨s_y·w, x⟩ over F_y: closed forms for the sphere and for sphere ∩ slab, an exact
    fractional-knapsack LP for slab ∩ box, an exact one-multiplier solve for sphere ∩ box and a
    dual (Brent on the slab multiplier) for sphere ∩ slab ∩ box.

    Parameters
    ----------
    coef, intercept : the linear model (w, b).
    label : int
        Class index (0 is the −1 class, 1 the +1 class).
    fset : FeasibleSet
        The defender's sets (with ``box`` when features are bounded).
    defense : {"sphere+slab", "sphere", "slab"}
    hint : dict, optional
        Scratch space reused between calls for the same label (warm start of the slab
        multiplier); pass a fresh dict per label, or nothing.

    Returns
    -------
    x : ndarray of shape (d,)
        A point of F_label (inside the box too).
    loss_bound : float
        A certified upper bound on max_{x ∈ F_label} ℓ (equal to ℓ(x) up to rounding wherever
        the solution is exact).
    """
    use_sphere, use_slab = parse_defense(defense)
    mu = fset.centroids[label]
    sgn = 1.0 if label == 1 else -1.0
    c = sgn * np.asarray(coef, dtype=np.float64)
    r = float(fset.sphere_radii[label])
    v = fset.slab_vector
    s = float(fset.slab_radii[label]) if (use_slab and fset.slab_radii is not None) else None
    if use_slab and v is None:
        raise ConfigError("the slab defence needs exactly two classes")
    box = fset.box
    if box is not None:
        L, H = box[0] - mu, box[1] - mu
        if np.any(L > 1e-9) or np.any(H < -1e-9):
            raise ConfigError("the class centroid lies outside the feature box; the feasible set may be empty")
        L, H = np.minimum(L, 0.0), np.maximum(H, 0.0)
    if box is None:
        if use_sphere and use_slab:
            u = _sphere_slab(c, v, r, s)
        elif use_sphere:
            nc = np.linalg.norm(c)
            u = -r * c / nc if nc > 0 else np.zeros_like(c)
        else:
            raise ConfigError(
                "the slab alone is unbounded without a feature box (the attacker can move freely along "
                "every direction orthogonal to μ_1 − μ_0); use defense='sphere+slab' or give a box"
            )
        lb = float(c @ u)
    elif use_sphere and use_slab:
        u, lb = _sphere_slab_box(c, v, r, s, L, H, hint)
        lb = min(lb, float(c @ u))
    elif use_sphere:
        u, lam = _ball_box(c, L, H, r * r)
        lb = float(c @ u + 0.5 * lam * (u @ u - r * r))
        lb = min(lb, float(c @ u))
    else:
        u = _slab_box(c, v, s, L, H)
        lb = float(c @ u)
    x = mu + u
    if box is not None:
        x = np.clip(x, box[0], box[1])
    margin_lb = lb + float(c @ mu) + sgn * float(intercept)
    return x, max(0.0, 1.0 - margin_lb)


# =========================================================================================
# the certificate
# =========================================================================================
def _resolve_box(box: Any, X: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    if box is None:
        return None
    if isinstance(box, str):
        if box != "auto":
            raise ConfigError(f"box must be 'auto', None or a (low, high) pair, got {box!r}")
        if X.min() >= 0.0 and X.max() <= 1.0:
            return (np.zeros(X.shape[1]), np.ones(X.shape[1]))
        return None
    try:
        lo, hi = box
    except (TypeError, ValueError):
        raise ConfigError(f"box must be 'auto', None or a (low, high) pair, got {box!r}") from None
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (X.shape[1],)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (X.shape[1],)).copy()
    if np.any(lo > hi):
        raise ConfigError("box: every lower bound must be <= its upper bound")
    if np.any(X < lo - 1e-9) or np.any(X > hi + 1e-9):
        raise DataError("the clean data lie outside the given box; widen it or rescale the features")
    return lo, hi


def _check_binary(ds: Dataset, who: str) -> None:
    if not isinstance(ds, Dataset):
        raise ConfigError(f"{who} expects a mithridate Dataset, got {type(ds).__name__}")
    if ds.is_regression or ds.n_classes != 2:
        what = "a regression set" if ds.is_regression else f"{ds.n_classes} classes"
        raise ConfigError(
            f"{who} is stated for binary linear SVMs, this data has {what}; select two classes with "
            "load_dataset(..., classes=[a, b])"
        )
    counts = np.bincount(np.asarray(ds.y), minlength=2)
    if counts.min() == 0:
        raise DataError(f"{who}: both classes need training samples, got counts {counts.tolist()}")


def _check_epsilons(epsilons: Any) -> Tuple[float, ...]:
    if isinstance(epsilons, (int, float)):
        epsilons = (epsilons,)
    try:
        eps = tuple(float(e) for e in epsilons)
    except (TypeError, ValueError):
        raise ConfigError(f"epsilons must be numbers in (0, 1], got {epsilons!r}") from None
    if not eps or any(not (0.0 < e <= 1.0) or not math.isfinite(e) for e in eps):
        raise ConfigError(f"epsilons must be numbers in (0, 1] (fractions of the clean set), got {epsilons!r}")
    return eps


def _warn_unscaled_columns(data: Any, ratio: float = 100.0) -> None:
    """Warn when the columns' spreads differ by more than ``ratio`` times: the SVM's norm bound and
    the sphere and slab radii weigh every column alike, so one large-valued column decides them (a
    user's raw breast_cancer columns: bounds of 11-20 with the attack *below* the clean loss; after
    min-max scaling, a bound of 0.280 and an attack realising 96% of the certified excess loss)."""
    X = np.asarray(getattr(data, "X", data), dtype=np.float64)
    if X.ndim != 2 or len(X) < 2 or getattr(data, "is_image", False):
        return
    sd = X.std(axis=0)
    live = sd[sd > 0]
    if len(live) >= 2 and float(live.max() / live.min()) > ratio:
        import warnings

        warnings.warn(f"the feature columns' spreads differ by {live.max() / live.min():,.0f} times; the certificate "
                      "treats every column alike (the norm bound, the sphere and slab radii), so scale them first "
                      "(e.g. to [0, 1] or to unit variance)", UserWarning, stacklevel=3)


class SphereSlabCertificate:
    """Upper bound U(ε) on what εn poisoned points can do to a linear SVM behind the oracle
    sphere/slab defence, plus the matching candidate attack (Steinhardt et al. 2017, Alg. 1).

    See the module docstring for the exact statement of the bound and its caveats.

    Parameters
    ----------
    defense : {"sphere+slab", "sphere", "slab"}, default="sphere+slab"
        Constraints of the defender's feasible set (``"slab"`` alone needs a box).
    rho : float, optional
        Squared-norm bound ‖w‖² + b² ≤ ρ of the learner. Default: ρ = ‖θ_reg‖² of the
        L2-regularised hinge SVM with strength ``reg`` fitted on the clean data, so that on
        clean data the constrained learner returns exactly that SVM.
    percentile : float, default=70
        Percentile of the clean distances at which the radii are set (the paper's choice).
    n_steps : int, default=300
        Steps of the online minimax procedure per ε.
    eta : float, default=5.0
        Step size of dual averaging, in units of the ball's radius: θ_{t+1} is the projection
        on the ball of θ_0 − eta·√ρ·G_t / (Ĝ·√t), G_t the sum of the subgradients, Ĝ the largest
        subgradient norm seen and θ_0 the clean SVM.
    box : "auto", None or (low, high), default="auto"
        Feature bounds every point (clean or poisoned) respects. ``"auto"`` uses [0, 1] when the
        clean data lie in [0, 1] (images by the Dataset contract, tables after
        :func:`~mithridate.data.transforms.minmax_scale`) and no box otherwise.
    reg : float, default=0.01
        Strength of the clean SVM that sets the default ``rho``.
    burn_in : float in [0, 1), default=0.2
        Fraction of the first steps whose worst points are left out of the candidate attack.

    Attributes
    ----------
    rho_ : float
    feasible_set_ : FeasibleSet
        The oracle feasible sets (centroids and radii from the clean data).
    clean_loss_ : float
        min_θ L(θ; D_c): the clean SVM's mean training hinge loss (U(0)).
    clean_model_ : HingeSVM
        The defended SVM without attack.
    clean_mask_ : ndarray of bool
        Clean points inside F (the others are what ``evaluate(sanitize_clean=True)`` drops).
    bounds_ : dict
        ε -> U(ε), the certified upper bound on the training objective (and so on the clean
        training hinge loss) of the defended model under any attack of εn points.
    attacks_ : dict
        ε -> (X_p, y_p): the candidate attack (⌊εn⌋ points, class indices): ⌊εn⌋ worst points
        spread over the steps after burn-in of one run (the strongest of the runs at ε and its
        grid neighbours).
    attack_losses_ : dict
        ε -> the training objective L(θ̂; D_c) + (1/n) Σ_{D_p ∩ F} ℓ(θ̂) that the candidate
        attack reaches against the defended SVM — the same quantity U(ε) bounds.
    test_losses_ : dict
        ε -> mean test hinge loss of the defended SVM under the candidate attack (with ``test``).
    table_ : DataFrame
        One row per ε: eps, n_poison, clean_loss, upper_bound, attack_loss, attack_clean_loss,
        ratio, ratio_clean, attack_error, clean_error, test_loss, n_inside, attack_from_eps (see
        :meth:`fit`).
    history_ : dict
        ε -> per-step values L(θ_t; D_c) + ε·max ℓ(θ_t) of that ε's run (to check convergence;
        the last entry is the averaged iterate). ``bounds_`` is the minimum over the iterates of
        *all* runs, each of which certifies every ε.
    bound_thetas_ : dict
        ε -> the (w, b) attaining the bound.

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> splits = load_dataset("digits", classes=[1, 7])
    >>> cert = SphereSlabCertificate(n_steps=400).fit(splits.train, epsilons=(0.1,), random_state=0)
    >>> bool(cert.bounds_[0.1] >= cert.attack_losses_[0.1] >= cert.clean_loss_)
    True

    References
    ----------
    Steinhardt, Koh, Liang. "Certified Defenses for Data Poisoning Attacks." NeurIPS 2017,
    Eq. (5) and Algorithm 1.
    """

    def __init__(self, defense: str = "sphere+slab", rho: Optional[float] = None, percentile: float = 70.0,
                 n_steps: int = 300, eta: float = 5.0, box: Any = "auto", reg: float = 0.01,
                 burn_in: float = 0.2):
        self.defense = defense
        self.rho = rho
        self.percentile = percentile
        self.n_steps = n_steps
        self.eta = eta
        self.box = box
        self.reg = reg
        self.burn_in = burn_in

    # -- setup ------------------------------------------------------------------------------
    def _validate(self) -> None:
        parse_defense(self.defense)
        if not isinstance(self.n_steps, (int, np.integer)) or self.n_steps < 1:
            raise ConfigError(f"n_steps must be a positive int, got {self.n_steps!r}")
        if not (isinstance(self.eta, (int, float)) and self.eta > 0):
            raise ConfigError(f"eta must be a positive number, got {self.eta!r}")
        if not 0.0 <= float(self.burn_in) < 1.0:
            raise ConfigError(f"burn_in must be in [0, 1), got {self.burn_in!r}")
        if self.rho is not None and not (isinstance(self.rho, (int, float)) and self.rho > 0):
            raise ConfigError(f"rho must be a positive number (a bound on ‖w‖² + b²), got {self.rho!r}")

    def setup(self, clean_train: Dataset) -> "SphereSlabCertificate":
        """Fit the oracle feasible set, ρ and the clean SVM (done by :meth:`fit`; exposed so an
        attack can be evaluated with :meth:`evaluate` without running the bound)."""
        self._validate()
        _check_binary(clean_train, "SphereSlabCertificate")
        X = np.asarray(clean_train.X, dtype=np.float64).reshape(len(clean_train), -1)
        y = np.asarray(clean_train.y).astype(np.int64)
        box = _resolve_box(self.box, X)
        fset = FeasibleSet.from_data(X, y, 2, percentile=self.percentile, center="mean", box=box)
        if box is None and parse_defense(self.defense) == (False, True):
            raise ConfigError(
                "defense='slab' without a feature box gives an infinite bound (the slab is unbounded); "
                "use 'sphere+slab' or pass box=(low, high)"
            )
        if self.rho is None:
            reg_svm = HingeSVM(reg=self.reg).fit(X, y)
            rho = float(reg_svm.theta_ @ reg_svm.theta_)
        else:
            rho = float(self.rho)
        self.rho_ = rho
        self.feasible_set_ = fset
        self.box_ = box
        self.n_features_ = X.shape[1]
        self.input_shape_ = tuple(clean_train.X.shape[1:])
        self._X, self._y = X, y
        self.clean_mask_ = fset.contains(X, y, self.defense)  # clean points inside F
        self.clean_model_ = self._train(X, y, n_total=len(X))
        self.clean_loss_ = float(hinge_loss(self.clean_model_.coef_, self.clean_model_.intercept_, X, y).mean())
        return self

    def _train(self, X: np.ndarray, y: np.ndarray, n_total: int) -> HingeSVM:
        # every point weighs 1/n_total (n_total = |D_c|), as in L(θ; D_c) + (1/n) Σ_{D_p} ℓ
        w = np.full(len(X), len(X) / n_total)
        model = HingeSVM(rho=self.rho_).fit(X, y, sample_weight=w, lambda_init=getattr(self, "_lam", None))
        self._lam = model.lambda_
        return model

    def _check_setup(self) -> None:
        if not hasattr(self, "rho_"):
            raise ConfigError("the certificate is not set up yet; call fit() (or setup()) first")

    # -- evaluating an attack ---------------------------------------------------------------
    def evaluate(self, X_poison: Any, y_poison: Any, test: Optional[Dataset] = None, *,
                 sanitize_clean: bool = False) -> Dict[str, float]:
        """Train the defended SVM on the clean data plus ``(X_poison, y_poison)`` and measure it.

        The defender drops the poison points outside F, then fits :class:`HingeSVM` with ρ, every
        point weighing 1/n (n = |D_c|). This is the victim the bound is a theorem for. With
        ``sanitize_clean=True`` the clean points outside F are dropped as well (what a defender
        who cannot tell clean from poisoned does); the losses are still measured on all of D_c,
        and the bound then only holds under the paper's assumption that this barely matters.

        Returns
        -------
        dict with
            ``objective``: L(θ̂; D_c) + (1/n) Σ_{D_p ∩ F} ℓ(θ̂) (what U(ε) bounds, for |D_p| ≤ εn);
            ``clean_loss``: L(θ̂; D_c), the mean clean training hinge loss;
            ``clean_error``: 0-1 error of θ̂ on D_c; ``n_inside``: poison points kept;
            with ``test``: ``test_loss``, ``test_error``.
        """
        self._check_setup()
        X, y = self._X, self._y
        Xp = np.asarray(X_poison, dtype=np.float64).reshape(-1, self.n_features_) if len(np.asarray(y_poison)) else \
            np.zeros((0, self.n_features_))
        yp = np.asarray(y_poison).astype(np.int64).reshape(-1)
        if len(Xp) != len(yp):
            raise DataError(f"{len(Xp)} poison points for {len(yp)} labels")
        inside = self.feasible_set_.contains(Xp, yp, self.defense) if len(yp) else np.zeros(0, bool)
        keep_c = self.clean_mask_ if sanitize_clean else np.ones(len(X), bool)
        Xt = np.vstack([X[keep_c], Xp[inside]])
        yt = np.concatenate([y[keep_c], yp[inside]])
        model = self._train(Xt, yt, n_total=len(X))
        lc = hinge_loss(model.coef_, model.intercept_, X, y)
        lp = hinge_loss(model.coef_, model.intercept_, Xp[inside], yp[inside]) if inside.any() else np.zeros(0)
        out = {
            "objective": float(lc.mean() + lp.sum() / len(X)),
            "clean_loss": float(lc.mean()),
            "clean_error": float(np.mean(model.predict(X) != y)),
            "n_inside": int(inside.sum()),
        }
        if test is not None:
            _check_binary(test, "evaluate(test=...)")
            Xs = np.asarray(test.X, dtype=np.float64).reshape(len(test), -1)
            out["test_loss"] = float(hinge_loss(model.coef_, model.intercept_, Xs, test.y).mean())
            out["test_error"] = float(np.mean(model.predict(Xs) != np.asarray(test.y)))
        self.last_model_ = model
        return out

    # -- the online minimax procedure ---------------------------------------------------------
    def _run(self, eps: float) -> Dict[str, Any]:
        """Algorithm 1 of the paper at one ε (dual averaging for the learner, exact or certified
        best responses for the attacker)."""
        X, y = self._X, self._y
        n, d = X.shape
        s = 2.0 * y - 1.0
        Xt = np.hstack([X, np.ones((n, 1))])
        fset = self.feasible_set_
        radius = math.sqrt(self.rho_)
        theta0 = self.clean_model_.theta_.copy()
        theta = theta0.copy()
        G = np.zeros(d + 1)
        gmax = 1e-12
        T = int(self.n_steps)
        xs = np.zeros((T + 1, d))
        ys = np.zeros(T + 1, dtype=np.int64)
        loss_c = np.zeros(T + 1)  # L(θ_t; D_c)
        loss_p = np.zeros(T + 1)  # certified max_{y, x ∈ F_y} ℓ(θ_t; x, y)
        thetas = np.zeros((T + 1, d + 1))
        hints = ({}, {})
        theta_sum = np.zeros(d + 1)
        for t in range(T + 1):
            if t == T:  # last: the averaged iterate, near-optimal for the convex outer problem
                theta = theta_sum / T
            w, b = theta[:-1], theta[-1]
            marg = s * (X @ w + b)
            loss_c[t] = float(np.maximum(0.0, 1.0 - marg).mean())
            cand = [worst_point(w, b, k, fset, self.defense, hint=hints[k]) for k in (0, 1)]
            k = 0 if cand[0][1] >= cand[1][1] else 1
            xk = cand[k][0]
            loss_p[t] = cand[k][1]
            xs[t], ys[t], thetas[t] = xk, k, theta
            if t == T:
                break
            act = marg < 1.0
            grad = -(s[act, None] * Xt[act]).sum(axis=0) / n
            sk = 1.0 if k == 1 else -1.0
            if sk * (xk @ w + b) < 1.0:
                grad = grad - eps * sk * np.append(xk, 1.0)
            gmax = max(gmax, float(np.linalg.norm(grad)))
            G += grad
            theta_sum += theta
            step = float(self.eta) * radius / (gmax * math.sqrt(t + 1))
            theta = _project(theta0 - step * G, radius)
        upper = loss_c + eps * loss_p
        return {"xs": xs[:T], "ys": ys[:T], "loss_clean": loss_c, "loss_poison": loss_p, "thetas": thetas,
                "history": upper}

    def _candidate(self, run: Dict[str, Any], k: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """``k`` worst points spread evenly (random offset) over the steps after burn-in."""
        T = len(run["ys"])
        start = min(int(self.burn_in * T), T - 1)
        span = T - start
        if k == 0:
            return np.zeros((0, run["xs"].shape[1])), np.zeros(0, dtype=np.int64)
        pos = start + np.floor((np.arange(k) + rng.random()) * span / k).astype(np.int64)
        pos = np.clip(pos, start, T - 1)
        return run["xs"][pos].copy(), run["ys"][pos].copy()

    def fit(self, clean_train: Dataset, epsilons: Iterable[float] = DEFAULT_EPSILONS, *,
            test: Optional[Dataset] = None, random_state: RandomState = None) -> "SphereSlabCertificate":
        """Compute U(ε) and the candidate attack for every ε, and evaluate the attack.

        Parameters
        ----------
        clean_train : Dataset
            The clean binary training set D_c (images are flattened).
        epsilons : iterable of float in (0, 1]
            Poison budgets as fractions of n = |D_c| (the attack adds ⌊εn⌋ points).
        test : Dataset, optional
            Held-out data for the ``test_loss`` / ``attack_error`` columns.
        random_state : int or Generator, optional
            Only the choice of which stored worst points form the candidate attack is random.

        The results table ``table_`` has one row per ε with: ``eps``; ``n_poison``;
        ``clean_loss`` (U(0)); ``upper_bound`` (U(ε)); ``attack_loss`` (the training objective the
        candidate attack reaches, same quantity as U); ``attack_clean_loss`` (L(θ̂; D_c) alone);
        ``ratio`` = (attack_loss − clean_loss) / (upper_bound − clean_loss), the share of the
        certified excess loss the attack realises (``ratio_clean`` the same with
        attack_clean_loss); ``attack_error`` (test error of the defended SVM under attack, or the
        clean training error without ``test``); ``clean_error`` (same without attack);
        ``test_loss``; ``n_inside`` (poison points that pass the defence); ``attack_from_eps``
        (the ε' whose game supplied the candidate: the worst points of the runs at ε and at its
        neighbours on the grid are tried, and the strongest ⌊εn⌋-point candidate is kept).
        """
        eps_list = _check_epsilons(epsilons)
        rng = check_random_state(random_state)
        _warn_unscaled_columns(clean_train)
        self.setup(clean_train)
        base = self.evaluate(np.zeros((0, self.n_features_)), np.zeros(0, np.int64), test=test)
        n = len(self._y)
        runs = {eps: self._run(eps) for eps in eps_list}
        eps_order = sorted(runs)
        # every iterate θ_t of every run certifies U(ε) ≤ L(θ_t; D_c) + ε·max ℓ(θ_t) for *every*
        # ε (the right-hand side is affine in ε), so the bound is the lower envelope of them all
        lc = np.concatenate([r["loss_clean"] for r in runs.values()])
        lp = np.concatenate([r["loss_poison"] for r in runs.values()])
        th = np.vstack([r["thetas"] for r in runs.values()])
        self._envelope = (lc, lp)
        self.bounds_, self.attacks_, self.attack_losses_, self.test_losses_, self.history_ = {}, {}, {}, {}, {}
        self.bound_thetas_ = {}
        rows = []
        for eps, run in runs.items():
            vals = lc + eps * lp
            j = int(np.argmin(vals))
            bound = float(vals[j])
            k = budget_points(eps, n)
            # one candidate from the run at ε and from its neighbours on the grid (⌊εn⌋ worst
            # points of each ε' game): each is a valid attack of the right size; keep the strongest
            best = None
            i = eps_order.index(eps)
            for src_eps in eps_order[max(0, i - 1): i + 2]:
                src = runs[src_eps]
                Xc, yc = self._candidate(src, k, rng)
                r = self.evaluate(Xc, yc)
                if best is None or r["objective"] > best[0]["objective"] + 1e-12:
                    best = (r, Xc, yc, src_eps)
            _, Xp, yp, src_eps = best
            res = self.evaluate(Xp, yp, test=test)
            self.bounds_[eps] = bound
            self.bound_thetas_[eps] = th[j]
            self.history_[eps] = run["history"]
            self.attacks_[eps] = (Xp, yp)
            self.attack_losses_[eps] = res["objective"]
            if "test_loss" in res:
                self.test_losses_[eps] = res["test_loss"]
            excess = bound - self.clean_loss_
            rows.append({
                "eps": eps,
                "n_poison": k,
                "clean_loss": self.clean_loss_,
                "upper_bound": bound,
                "attack_loss": res["objective"],
                "attack_clean_loss": res["clean_loss"],
                "ratio": (res["objective"] - self.clean_loss_) / excess if excess > 0 else float("nan"),
                "ratio_clean": (res["clean_loss"] - self.clean_loss_) / excess if excess > 0 else float("nan"),
                "attack_error": res.get("test_error", res["clean_error"]),
                "clean_error": base.get("test_error", base["clean_error"]),
                "test_loss": res.get("test_loss", float("nan")),
                "n_inside": res["n_inside"],
                "attack_from_eps": src_eps,
            })
        self.table_ = pd.DataFrame(rows)
        return self

    def bound_at(self, eps: float) -> float:
        """U(ε) at any ε in [0, 1] (not only the fitted grid): the lower envelope of the
        certificates L(θ_t; D_c) + ε·max ℓ(θ_t) of every iterate of the fitted runs.

        Use it to compare an attack of k points with the bound for exactly that budget,
        ``cert.bound_at(k / n)``, when k is not ⌊εn⌋ for a grid ε (e.g. ``round(εn)`` flips).
        """
        if not hasattr(self, "_envelope"):
            raise ConfigError("the certificate is not fitted yet; call fit() first")
        e = float(eps)
        if not 0.0 <= e <= 1.0:
            raise ConfigError(f"eps must be in [0, 1], got {eps!r}")
        lc, lp = self._envelope
        return float(min(np.min(lc + e * lp), self.clean_loss_ if e == 0 else np.inf))

    def attack_objective(self, poisoned: Dataset) -> float:
        """The training objective — the quantity U(ε) bounds — that an attack's output reaches.

        ``poisoned`` is the Dataset an attack returned for the clean training set the
        certificate was fitted on; its ``is_poison`` rows are the attack's points. They are
        evaluated as points *added* to D_c (the clean set keeps all its rows with their true
        labels), which is the bound's threat model: an in-place label flip of k rows counts as
        k added flipped copies. Returns ``evaluate(X_poison, y_poison)["objective"]``; compare
        it with ``bound_at(k / n)`` (k poison rows, n = |D_c|).
        """
        self._check_setup()
        if not isinstance(poisoned, Dataset):
            raise ConfigError(f"attack_objective expects a mithridate Dataset, got {type(poisoned).__name__}")
        if poisoned.is_poison is None:
            raise ConfigError("attack_objective needs the simulation's is_poison ground truth to find the attack's rows")
        mask = np.asarray(poisoned.is_poison, bool)
        X = np.asarray(poisoned.X, dtype=np.float64).reshape(len(poisoned), -1)
        if X.shape[1] != self.n_features_:
            raise DataError(f"the poisoned data have {X.shape[1]} features, the certificate {self.n_features_}")
        return self.evaluate(X[mask], np.asarray(poisoned.y)[mask])["objective"]

    def candidate_attack(self, eps: float) -> Tuple[np.ndarray, np.ndarray]:
        """The candidate attack (X_p of shape (k, *input_shape), class indices y_p) at ``eps``."""
        if not hasattr(self, "attacks_"):
            raise ConfigError("the certificate is not fitted yet; call fit() first")
        key = next((e for e in self.attacks_ if abs(e - float(eps)) < 1e-12), None)
        if key is None:
            raise ConfigError(f"no attack for eps={eps}; fitted epsilons: {sorted(self.attacks_)}")
        Xp, yp = self.attacks_[key]
        return Xp.reshape((len(Xp),) + self.input_shape_), yp


def budget_points(eps: float, n: int) -> int:
    """The number of points an ε budget allows on n clean points: ⌊εn⌋ (never more than εn,
    which is what the bound at ε covers; a tiny slack absorbs floating-point noise)."""
    return int(math.floor(float(eps) * n + 1e-9))


def _project(theta: np.ndarray, radius: float) -> np.ndarray:
    nrm = float(np.linalg.norm(theta))
    return theta if nrm <= radius else theta * (radius / nrm)


# =========================================================================================
# plot
# =========================================================================================
def plot_bound(table: pd.DataFrame, path: Union[str, Path], *, extra: Sequence[str] = (),
               title: Optional[str] = None) -> Path:
    """Draw U(ε) and the loss the candidate attack reaches against ε, and write it to ``path``.

    Parameters
    ----------
    table : DataFrame
        ``SphereSlabCertificate.table_`` (or several concatenated, e.g. one per seed: rows with
        the same ε are averaged and their min–max drawn as a band). Needs ``eps``,
        ``upper_bound`` and ``attack_loss``; ``clean_loss`` is drawn when present.
    path : str or Path
        Output file; the format follows the suffix (``.png``, ``.svg``, ``.pdf``). Written to a
        temporary name first and renamed, so no half-written file is left behind.
    extra : sequence of str
        More columns of ``table`` to draw (e.g. the loss of label-flip attacks).
    title : str, optional

    Returns
    -------
    Path
    """
    from mithridate.report.plots import CLEAN_COLOR, POISON_COLOR, _figure, short_text

    if not isinstance(table, pd.DataFrame):
        raise ConfigError(f"plot_bound expects a DataFrame, got {type(table).__name__}")
    missing = [c for c in ("eps", "upper_bound", "attack_loss", *extra) if c not in table.columns]
    if missing:
        raise ConfigError(f"plot_bound: the table lacks the columns {missing}")
    if table.empty:
        raise ConfigError("plot_bound: the table is empty")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in ("png", "svg", "pdf"):
        raise ConfigError(f"plot_bound writes .png, .svg or .pdf files, got {path.name!r}")
    g = table.groupby("eps", sort=True)
    eps = np.asarray(list(g.groups.keys()), dtype=float)
    fig = _figure(5.6, 3.8)
    ax = fig.add_subplot()
    series = [("upper_bound", "certified upper bound U(ε)", POISON_COLOR, "-"),
              ("attack_loss", "minimax attack (achieved)", CLEAN_COLOR, "--")]
    palette = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    series += [(c, short_text(c, 40), palette[i % len(palette)], ":") for i, c in enumerate(extra)]
    for col, label, color, ls in series:
        mean = g[col].mean().to_numpy(dtype=float)
        ax.plot(eps, mean, ls, color=color, marker="o", ms=3.5, lw=1.8, label=label)
        if g[col].count().max() > 1:
            ax.fill_between(eps, g[col].min().to_numpy(dtype=float), g[col].max().to_numpy(dtype=float),
                            color=color, alpha=0.15, lw=0)
    if "clean_loss" in table.columns:
        ax.axhline(float(table["clean_loss"].mean()), color="#999999", lw=1, ls="-.", label="clean loss (ε = 0)")
    ax.set_xlabel("ε (poisoned points / clean points)")
    ax.set_ylabel("training hinge loss objective")
    if title:
        ax.set_title(short_text(title, 80), parse_math=False)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=100, metadata={"Software": None} if fmt == "png" else None)
    return path
