"""Iterative trimmed loss minimisation (ITLM) for classifiers (Shen & Sanghavi, ICML 2019).

ITLM approximately solves the trimmed-loss problem

    min_{theta, S : |S| = floor(alpha * n)}  sum_{i in S} loss(f_theta(x_i), y_i)

by alternating (Shen & Sanghavi, Algorithm 1):

    theta_t   = fit(D_{S_t})                              (train on the kept samples)
    S_{t+1}   = the alpha * n samples with the smallest loss(f_{theta_t}(x_i), y_i)

from a starting set ``S_0``, until the kept set stops changing. A flipped or otherwise poisoned
label disagrees with the model the clean majority supports, so its loss is large and it is
trimmed; the paper shows linear convergence to the clean model for mixed linear regression and
classification with bad labels, given a good enough start. It is the classifier analogue of
TRIM (Jagielski et al. 2018, :mod:`mithridate.defenses.train.trim`).

Starts. From ``S_0`` = all samples alone, ITLM often settles on the poisoned model when the
flips are adversarial (30% greedy adversarial flips on digits 1-vs-7, linear SVM, automatic
keep fraction: 71-100% test accuracy over 5 seeds, median 84%, against 100% clean; with the
multi-start: 96-100%, median 100%). So, as in FAST-LTS (Rousseeuw & Van Driessen 2006), ITLM is run from all samples
and from ``n_init - 1`` small random class-stratified subsets (some of which are clean), two
refits each; the three with the smallest trimmed loss are iterated to convergence and the
smallest trimmed loss wins. The search runs at the conservative keep fraction
``min_keep_fraction`` (graduated start), and the result is then refined at the requested one.

Choosing the keep fraction without knowing the poison rate
----------------------------------------------------------
The paper takes ``alpha`` as given. With ``keep_fraction="auto"`` (the default) it is estimated
from the data alone, without ground truth:

1. run the multi-start ITLM at the conservative ``min_keep_fraction`` (0.5 by default: the
   only assumption is that most of the training set is clean) -- the model is then trained
   on the half it fits best, which is clean when the poison stays well below that share;
2. estimate the contamination as the share of training samples whose given label disagrees
   with that model's prediction, ``r``, and keep ``alpha = 1 - r`` (clipped to
   ``[min_keep_fraction, 1]``);
3. re-run ITLM at ``alpha`` from the kept set of step 1, and repeat 2-3 (at most
   ``auto_rounds`` times) while the estimate changes.

Why disagreement and not a cut on the loss values: with the hinge loss most clean samples
have a loss of exactly zero, so quantile, MAD or elbow rules on the loss curve degenerate (the
median and MAD are 0), whereas a sample the trimmed model misclassifies has a hinge loss >= 1
and a log loss >= log 2 -- a natural, scale-free threshold. The estimate also counts the few
clean samples the trimmed model gets wrong (its training error), so it trims slightly more than
the true poison share; dropping a few hard clean samples costs a linear model little, keeping a
poison costs more. This is the noise-rate estimate of confident learning (Northcutt et al. 2021)
with the trimmed model in place of out-of-fold probabilities.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from mithridate.errors import ConfigError, DataError
from mithridate.models.base import as_xy
from mithridate.utils import RandomState, check_random_state

ModelSpec = Union[str, Callable[[], Any], Any]

_START_STEPS = 2  # refits per start before the starts are ranked
_N_REFINE = 3  # best starts iterated to convergence
_START_SAMPLES = 2000  # rows used to rank the starts on large data


class _Run:
    """State of one ITLM run: kept mask, model, losses, trimmed objective."""

    __slots__ = ("kept", "model", "losses", "objective", "n_iter", "converged")

    def __init__(self, kept: np.ndarray):
        self.kept = kept.copy()
        self.model: Any = None
        self.losses: Optional[np.ndarray] = None
        self.objective = np.inf
        self.n_iter = 0
        self.converged = False


class TrimmedLossClassifier:
    """Train any classifier on the samples it fits best (iterative trimmed loss minimisation).

    Parameters
    ----------
    model : {"linear_svm", "logreg"}, Model, or callable, default="linear_svm"
        The classifier to train. A name builds a :class:`~mithridate.models.linear.SklearnClassifier`;
        a callable (a class or a factory taking no argument) is called once per refit; a Model
        instance is used as an unfitted template and deep-copied per refit. It must follow the
        Model protocol (``fit``, ``predict``, ``predict_proba``, ``per_sample_loss``).
    keep_fraction : float in (0, 1] or "auto", default="auto"
        Share ``alpha`` of the training set kept at each step (``ceil(alpha * n)`` samples, the
        ``alpha`` of the paper). ``"auto"`` estimates it from the data (module docstring); pass
        a number when you know a bound on the poison rate (e.g. 0.8 for at most 20%). A number
        above ``min_keep_fraction`` is reached from the multi-start search at
        ``min_keep_fraction``.
    min_keep_fraction : float in (0, 1], default=0.5
        The least share assumed clean: keep fraction of the multi-start search, and floor of
        the ``"auto"`` estimate.
    max_iter : int, default=20
        Maximum number of refits per ITLM run (the paper reports convergence in a few).
    n_init : int, default=30
        Starting sets ``S_0``: the whole training set (Algorithm 1), then ``n_init - 1`` small
        random subsets of ``init_size`` samples per class. Every start gets two refits (on a
        random subsample of 2,000 rows for larger data), the three best (smallest trimmed loss)
        are iterated to convergence on all rows and the lowest trimmed loss wins (the FAST-LTS
        scheme, Rousseeuw & Van Driessen 2006). Several starts matter under adversarial flips:
        from all data alone, ITLM often settles on the poisoned model. ``n_init=1`` starts from
        all data only (the paper's setting; cheapest with slow models).
    init_size : int, default=3
        Samples per class in each random start (small, so that some starts are clean).
    auto_rounds : int, default=3
        ``"auto"`` only: maximum estimate-and-refit rounds after the conservative run.
    tol : float, default=0.0
        A run stops when at most ``tol * n`` samples enter the kept set in a step; 0 (the
        paper's rule) waits until the kept set stops changing or ``max_iter``. On 100,000 rows
        ``tol=1e-3`` is about 3x faster for a slightly less accurate fit.
    random_state : int or Generator, default=0
        Draws the random starts and breaks ties between equal losses.

    Attributes
    ----------
    model_ : Model
        The classifier trained on the final kept set.
    kept_ : ndarray of bool, shape (n_samples,)
        Training samples kept by the final step (``~kept_`` are the trimmed, suspected samples).
    keep_fraction_ : float
        The keep fraction used for the final run (the estimate when ``keep_fraction="auto"``).
    estimated_poison_rate_ : float or None
        ``"auto"`` only: the disagreement estimate ``1 - keep_fraction_`` before clipping.
    n_iter_ : int
        Refits performed by the winning ITLM run.
    trimmed_loss_ : float
        Mean loss of the kept samples under ``model_`` (the objective ITLM minimises).
    n_fits_ : int
        Refits performed in total (including the automatic estimate's runs).
    losses_ : ndarray of shape (n_samples,)
        Per-sample losses of ``model_`` on the training set, with the given labels.
    n_classes_ : int

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> from mithridate.attacks.label_flip import RandomFlip
    >>> splits = load_dataset("digits", classes=[1, 7])
    >>> poisoned = RandomFlip(poison_rate=0.2).poison(splits.train, random_state=0).dataset
    >>> clf = TrimmedLossClassifier().fit(poisoned)
    >>> bool((clf.predict(splits.test.X) == splits.test.y).mean() > 0.95)
    True
    >>> bool(clf.kept_.sum() < len(poisoned))    # the trimmed samples are the suspects
    True

    References
    ----------
    Shen, Sanghavi. "Learning with Bad Training Data via Iterative Trimmed Loss
    Minimization." ICML 2019 (Algorithm 1).
    Jagielski, Oprea, Biggio, Liu, Nita-Rotaru, Li. "Manipulating Machine Learning: Poisoning
    Attacks and Countermeasures for Regression Learning." IEEE S&P 2018 (TRIM).
    """

    def __init__(self, model: ModelSpec = "linear_svm", keep_fraction: Union[float, str] = "auto",
                 min_keep_fraction: float = 0.5, max_iter: int = 20, n_init: int = 30, init_size: int = 3,
                 auto_rounds: int = 3, tol: float = 0.0, random_state: RandomState = 0):
        self.model = model
        self.keep_fraction = keep_fraction
        self.min_keep_fraction = min_keep_fraction
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_size = init_size
        self.auto_rounds = auto_rounds
        self.tol = tol
        self.random_state = random_state

    # -- parameter checks -----------------------------------------------------------------------
    @staticmethod
    def _fraction(value: Any, name: str) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}") from None
        if isinstance(value, bool) or not (0.0 < v <= 1.0):
            raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
        return v

    def _check_params(self) -> Optional[float]:
        if isinstance(self.keep_fraction, str):
            if self.keep_fraction != "auto":
                raise ConfigError(f"keep_fraction must be a number in (0, 1] or 'auto', got {self.keep_fraction!r}")
            keep = None
        else:
            keep = self._fraction(self.keep_fraction, "keep_fraction")
        self._fraction(self.min_keep_fraction, "min_keep_fraction")
        if isinstance(self.tol, bool) or not isinstance(self.tol, (int, float)) or not (0 <= self.tol < 1):
            raise ConfigError(f"tol must be a number in [0, 1), got {self.tol!r}")
        for name, low in (("max_iter", 1), ("n_init", 1), ("init_size", 1), ("auto_rounds", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
        return keep

    def _new_model(self) -> Any:
        spec = self.model
        if isinstance(spec, str):
            from mithridate.models.linear import SklearnClassifier

            if spec not in ("linear_svm", "logreg"):
                raise ConfigError(
                    f"unknown model {spec!r}; use 'linear_svm', 'logreg', a Model instance or a factory"
                )
            return SklearnClassifier(spec)
        if isinstance(spec, type) or (callable(spec) and not hasattr(spec, "fit")):
            out = spec()
        else:
            out = copy.deepcopy(spec)
        for attr in ("fit", "predict", "per_sample_loss"):
            if not callable(getattr(out, attr, None)):
                raise ConfigError(
                    f"model must follow the Model protocol; {type(out).__name__} has no {attr}() method"
                )
        return out

    # -- fitting --------------------------------------------------------------------------------
    def _fit_one(self, X: np.ndarray, y: np.ndarray, rows: np.ndarray, sw: Optional[np.ndarray]) -> Any:
        m = self._new_model()
        kwargs: dict = {}
        if sw is not None:
            kwargs["sample_weight"] = sw[rows]
        try:
            params = inspect.signature(m.fit).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = {}
        if "n_classes" in params:
            kwargs["n_classes"] = self.n_classes_
        self.n_fits_ += 1
        return m.fit(X[rows], y[rows], **kwargs)

    def _run(self, X: np.ndarray, y: np.ndarray, sw: Optional[np.ndarray], h: int, kept: np.ndarray,
             steps: int, tiebreak: np.ndarray) -> "_Run":
        """ITLM steps at kept size ``h`` from the kept mask ``kept``, at most ``steps`` refits."""
        run = _Run(kept)
        for _ in range(steps):
            run.model = self._fit_one(X, y, np.flatnonzero(run.kept), sw)
            run.n_iter += 1
            run.losses = np.asarray(run.model.per_sample_loss(X, y), dtype=np.float64)
            new = self._smallest(run.losses, y, h, tiebreak)
            run.objective = float(np.mean(run.losses[new]))
            same_size = int(run.kept.sum()) == int(new.sum())
            if same_size and np.count_nonzero(new & ~run.kept) <= self.tol * len(y):
                run.converged = True  # kept stays the set the model was trained on
                break
            run.kept = new
        return run

    @staticmethod
    def _size(alpha: float, n: int) -> int:
        return min(n, max(1, math.ceil(alpha * n - 1e-9)))

    def _refine(self, X: np.ndarray, y: np.ndarray, sw: Optional[np.ndarray], alpha: float,
                masks: list, tiebreak: np.ndarray) -> _Run:
        """ITLM to convergence (or ``max_iter``) from each kept mask; the lowest trimmed loss wins."""
        h = self._size(alpha, len(y))
        best = None
        for mask in masks:
            r = self._run(X, y, sw, h, mask, int(self.max_iter), tiebreak)
            if not r.converged:  # the answer must be trained on the final kept set
                r.model = self._fit_one(X, y, np.flatnonzero(r.kept), sw)
                r.losses = np.asarray(r.model.per_sample_loss(X, y), dtype=np.float64)
                r.objective = float(np.mean(r.losses[r.kept]))
                r.n_iter += 1
            if best is None or r.objective < best.objective:
                best = r
        return best

    def _search(self, X: np.ndarray, y: np.ndarray, sw: Optional[np.ndarray], alpha: float,
                rng: np.random.Generator, tiebreak: np.ndarray) -> _Run:
        """Multi-start ITLM at keep fraction ``alpha`` (FAST-LTS scheme).

        Every start gets ``_START_STEPS`` refits -- on a random subsample of ``_START_SAMPLES``
        rows when the data is larger -- and the ``_N_REFINE`` starts with the smallest trimmed
        loss are iterated to convergence on all rows.
        """
        n = len(y)
        sub = np.arange(n) if n <= _START_SAMPLES else np.sort(rng.choice(n, _START_SAMPLES, replace=False))
        starts = self._starts(y[sub], rng)
        if len(starts) > _N_REFINE:
            Xs, ys = X[sub], y[sub]
            sws = None if sw is None else sw[sub]
            hs = self._size(alpha, len(sub))
            runs = [self._run(Xs, ys, sws, hs, st, min(_START_STEPS, int(self.max_iter)), tiebreak[sub])
                    for st in starts]
            runs.sort(key=lambda r: r.objective)
            starts = [r.kept for r in runs[:_N_REFINE]]
        masks = []
        for st in starts:
            mask = np.zeros(n, bool)
            mask[sub[st]] = True
            masks.append(mask)
        return self._refine(X, y, sw, alpha, masks, tiebreak)

    def _starts(self, y: np.ndarray, rng: np.random.Generator) -> list:
        """All samples (Algorithm 1's S_0), then small random class-stratified subsets."""
        starts = [np.ones(len(y), bool)]
        classes = np.unique(y)
        for _ in range(int(self.n_init) - 1):
            kept = np.zeros(len(y), bool)
            for c in classes:
                idx = np.flatnonzero(y == c)
                kept[rng.choice(idx, size=min(len(idx), int(self.init_size)), replace=False)] = True
            starts.append(kept)
        return starts

    @staticmethod
    def _smallest(losses: np.ndarray, y: np.ndarray, h: int, tiebreak: np.ndarray) -> np.ndarray:
        """The h samples of smallest loss, keeping at least one sample of every class present."""
        order = np.lexsort((tiebreak, losses))
        kept = np.zeros(len(y), bool)
        kept[order[:h]] = True
        for c in np.unique(y):
            if not kept[y == c].any():  # never trim a class away entirely
                best = order[np.flatnonzero(y[order] == c)[0]]
                worst_kept = order[:h][::-1]
                drop = worst_kept[np.flatnonzero(y[worst_kept] != c)[0]]
                kept[drop], kept[best] = False, True
        return kept

    def fit(self, X: Any, y: Optional[np.ndarray] = None, *,
            sample_weight: Optional[np.ndarray] = None) -> "TrimmedLossClassifier":
        """Run ITLM on ``X`` (a Dataset, or features with class indices ``y``); returns ``self``.

        ``sample_weight`` is passed to every refit, restricted to the kept rows; the trimming
        itself ranks the unweighted per-sample losses.
        """
        from mithridate.data.dataset import Dataset

        keep = self._check_params()
        n_classes = X.n_classes if isinstance(X, Dataset) else None
        if isinstance(X, Dataset) and X.is_regression:
            raise ConfigError("TrimmedLossClassifier trains classifiers; for regression use TrimRegressor")
        X, y = as_xy(X, y)
        if y is None:
            raise ConfigError("fit needs labels: pass a Dataset or (X, y)")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise DataError(f"features have {len(X)} rows but labels have shape {y.shape}; they must match")
        if y.dtype.kind not in "iu" or (len(y) and y.min() < 0):
            raise DataError("labels must be class indices 0..K-1 (a Dataset's y); encode string labels first")
        if len(np.unique(y)) < 2:
            raise DataError("the training labels hold a single class; ITLM needs at least two")
        sw = None
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64)
            if sw.shape != (len(y),) or not np.all(np.isfinite(sw)) or np.any(sw < 0):
                raise ConfigError(f"sample_weight must be {len(y)} finite non-negative numbers")
        self.n_classes_ = int(n_classes) if n_classes is not None else int(y.max()) + 1
        self.n_fits_ = 0
        rng = check_random_state(self.random_state)
        tiebreak = rng.random(len(y))
        self.estimated_poison_rate_ = None
        floor = float(self.min_keep_fraction)
        best = self._search(X, y, sw, floor if keep is None else min(keep, floor), rng, tiebreak)
        if keep is not None:
            if self._size(keep, len(y)) != int(best.kept.sum()):
                best = self._refine(X, y, sw, keep, [best.kept], tiebreak)
        else:
            keep = floor
            for _ in range(int(self.auto_rounds)):
                rate = float(np.mean(np.asarray(best.model.predict(X)) != y))
                self.estimated_poison_rate_ = rate
                new_keep = float(np.clip(1.0 - rate, floor, 1.0))
                if self._size(new_keep, len(y)) == self._size(keep, len(y)):
                    break
                keep = new_keep
                best = self._refine(X, y, sw, keep, [best.kept], tiebreak)
        self.keep_fraction_ = float(keep)
        self.model_, self.kept_, self.losses_, self.n_iter_ = best.model, best.kept, best.losses, best.n_iter
        self.trimmed_loss_ = best.objective
        return self

    # -- Model protocol (delegated) -----------------------------------------------------------------
    def _fitted(self) -> Any:
        if not hasattr(self, "model_"):
            raise ConfigError("this TrimmedLossClassifier is not fitted yet; call fit() first")
        return self.model_

    def predict(self, X: Any) -> np.ndarray:
        return self._fitted().predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._fitted().predict_proba(X)

    def per_sample_loss(self, X: Any, y: np.ndarray) -> np.ndarray:
        return self._fitted().per_sample_loss(X, y)

    def features(self, X: Any, layer: Optional[str] = None) -> np.ndarray:
        """Activations of the trained model's named ``layer`` (its own default when None)."""
        model = self._fitted()
        return model.features(X) if layer is None else model.features(X, layer)

    @property
    def layer_names(self) -> Sequence[str]:
        return self._fitted().layer_names
