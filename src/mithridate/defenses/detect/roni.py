"""Reject On Negative Impact (RONI; Nelson et al. 2008, Barreno et al. 2010), batched.

RONI judges training data by what it does to a model: data whose inclusion makes the model
worse on held-out points is rejected. Testing every sample costs one refit per sample, so the
data are tested in batches B_1 .. B_m: one per contributor when the dataset's metadata names
contributors (the natural unit of trust: who sent what), random blocks otherwise.

This implementation is *leave-batch-out*: with T the training pool (the training set minus
the validation points), f_T the model fitted on T and f_{T∖B} the one fitted without batch B,
the impact of B on validation point v = (x_v, y_v) is Δ_v(B) = ℓ(f_{T∖B}; v) − ℓ(f_T; v) with

    ℓ(f; v) = 1 − p̂_f(y_v | x_v)            (metric="probability", the default)
    ℓ(f; v) = −log p̂_f(y_v | x_v)           (metric="log_loss")
    ℓ(f; v) = 1[f(x_v) ≠ y_v]               (metric="accuracy", the original RONI's)

and the batch's impact is their mean over the m_B validation points V_B not in B (a batch is
never judged on its own samples),

    impact(B) = (1/m_B) Σ_{v ∈ V_B} Δ_v(B),  se(B) = std_v(Δ_v(B)) / √m_B,  t(B) = impact(B) / se(B).

impact(B) > 0: the batch helps (the model is worse without it); impact(B) < 0: removing the
batch improves the validation metric (negative impact). t(B) is a paired t statistic: the
noise it measures is that of the finite validation sample (the refits are deterministic given a
seed, and every refit reuses the same model seed). Cost: 1 + m refits.

Nelson et al. add each candidate to small random base sets and average the change over several
trials; removing the batch from the whole pool instead (leave-batch-out) tests it against all
the other data at once, which is what matters for the model actually trained, and needs one
refit per batch.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import numpy as np
import pandas as pd

from mithridate.data.dataset import Dataset
from mithridate.defenses.detect.base import Detector, budget_count
from mithridate.defenses.detect.confident import build_model, fit_model
from mithridate.defenses.detect.knn import check_labels
from mithridate.defenses.detect.base import check_validation_set
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, check_random_state, progress_iter, seed_from

METRICS = ("probability", "log_loss", "accuracy")
BATCH_BY = ("auto", "contributor", "random", "order")
DEFAULT_N_BLOCKS = 30  # block_size=None: about this many random blocks
DEFAULT_C = 1.0


def has_contributors(meta: pd.DataFrame) -> bool:
    """Whether the metadata table has a ``contributor`` column with at least one non-empty value."""
    if "contributor" not in meta.columns:
        return False
    col = meta["contributor"]
    return bool((col.notna() & (col.astype(str).str.strip() != "")).any())


class RONIDetector(Detector):
    """Score training samples by the validation impact of their batch (leave-batch-out RONI).

    Parameters
    ----------
    model_factory : str, callable or Model, optional
        The model refitted for every batch: a registered model name (``"logreg"``, ``"mlp"`` ...),
        a callable returning a fresh unfitted Model, or an unfitted Model instance (deep-copied).
        It needs ``fit`` and ``predict_proba`` and sees the 2-D feature matrix the detector reads.
        Every refit gets the same seed, so refits differ only by their data. Default:
        ``SklearnClassifier("logreg", C=1.0)`` (standardised logistic regression; fast).
    metric : {"probability", "log_loss", "accuracy"}, default="probability"
        Per-point validation loss of the impact (module docstring). ``"probability"``,
        1 − p̂(y_v | x_v), is smooth (it sees a batch's effect before any prediction changes)
        and bounded, so the few mislabelled points of a validation set carved from poisoned data
        cannot dominate the mean; the unbounded log loss is dominated by them (with 2 of 10
        breast_cancer contributors flipping all labels and a carved validation set, seeds 0-9:
        recall of the bad contributors 1.00 with "probability", 0.15 with "log_loss", 0.00
        with "accuracy", which rarely changes on small batches).
    batch_by : {"auto", "contributor", "random"}, default="auto"
        ``"contributor"``: one batch per value of ``dataset.meta["contributor"]`` (samples with
        no contributor are split into random blocks named ``"unknown-k"``); ``"random"``:
        random blocks of ``block_size``; ``"order"``: consecutive blocks of ``block_size`` rows in
        dataset order (ingest order: a data drop that arrived together stays together);
        ``"auto"``: contributors when that column holds any value, else random blocks.
    block_size : int, optional
        Size of the random blocks (default ``ceil(n / 30)``: about 30 blocks).
    validation_fraction : float, default=0.2
        Without ``fit(..., validation=...)``, this share of every class is held out (seeded) as
        the validation set. Held-out samples still belong to their batch and get its score, but
        only the rest of a batch is removed in its refit.
    t_threshold : float, default=2.0
        :meth:`flag` with no argument flags the batches with t(B) < −t_threshold: an impact
        negative by more than ``t_threshold`` standard errors of the validation noise.
    layer : str, default="penultimate"
        Model layer read when :meth:`fit` gets a model; without one, the raw flattened features.
    random_state : int or Generator, default=0
        Seeds the validation carve, the random blocks and the model seed.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        −impact(B) of each sample's batch (shared by all samples of a batch; 0 for an untested
        batch); higher = more suspicious.
    batches_ : list of ndarray
        Positions (row indices into the dataset) of each batch's samples.
    batch_names_ : list of str
        Contributor name or ``"block-k"`` / ``"unknown-k"`` of each batch.
    batch_of_ : ndarray of int, shape (n_samples,)
        Index into ``batches_`` of each sample's batch.
    batch_impact_ : ndarray of shape (n_batches,)
        impact(B) (positive = helps, negative = hurts); NaN for a batch that could not be tested
        (all its samples in the validation set, or removing it leaves fewer than two classes).
    batch_se_ : ndarray of shape (n_batches,)
        se(B), the standard error of the impact over validation points.
    batch_t_ : ndarray of shape (n_batches,)
        t(B) = impact / se (0 when both are 0; NaN when untested).
    batch_flags_ : ndarray of bool, shape (n_batches,)
        t(B) < −t_threshold.
    base_metric_ : float
        Validation loss or accuracy of the model fitted on the whole pool.
    validation_idx_ : ndarray of int or None
        Positions held out as validation set (None when ``validation=`` was given).
    batched_by_ : str
        ``"contributor"``, ``"random"`` or ``"order"``.
    n_refits_ : int
        Models fitted (1 + tested batches).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from mithridate.data import load_dataset
    >>> train = load_dataset("breast_cancer").train
    >>> rng = np.random.default_rng(0)
    >>> who = np.array([f"c{i}" for i in rng.permutation(len(train)) % 10])
    >>> y = train.y.copy(); y[who == "c3"] = 1 - y[who == "c3"]       # c3 sends flipped labels
    >>> ds = train.replace(y=y, meta=train.meta.assign(contributor=who))
    >>> det = RONIDetector().fit(ds)
    >>> [n for n, f in zip(det.batch_names_, det.batch_flags_) if f]
    ['c3']
    >>> det.batch_table().head(2)                                       # doctest: +SKIP

    References
    ----------
    Nelson, Barreno, Chi, Joseph, Rubinstein, Saini, Sutton, Tygar, Xia. "Exploiting Machine
    Learning to Subvert Your Spam Filter." LEET 2008 (RONI: reject a message whose inclusion in
    a training set lowers accuracy on a calibration set).
    Barreno, Nelson, Joseph, Tygar. "The Security of Machine Learning." Machine Learning 81(2),
    2010 (RONI as a defence against causative attacks).
    """

    name = "roni"

    def __init__(self, model_factory: Union[None, str, Callable[[], Any], Any] = None, metric: str = "probability",
                 batch_by: str = "auto", block_size: Optional[int] = None, validation_fraction: float = 0.2,
                 t_threshold: float = 2.0, layer: str = "penultimate", random_state: RandomState = 0):
        self.model_factory = model_factory
        self.metric = metric
        self.batch_by = batch_by
        self.block_size = block_size
        self.validation_fraction = validation_fraction
        self.t_threshold = t_threshold
        self.layer = layer
        self.random_state = random_state

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, dataset: Dataset, model: Any = None, *, features: Optional[np.ndarray] = None,
            validation: Optional[Dataset] = None, validation_features: Optional[np.ndarray] = None) -> "RONIDetector":
        """Test every batch of ``dataset`` (see :meth:`Detector.fit`).

        Parameters
        ----------
        validation : Dataset, optional
            Trusted labelled held-out points measuring the impact (default: carve
            ``validation_fraction`` of the training set).
        validation_features : ndarray of shape (n_validation, d), optional
            Their precomputed features (default: the same layer of ``model``, or raw features).
        """
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.batch_by not in BATCH_BY:
            raise ConfigError(f"batch_by must be one of {BATCH_BY}, got {self.batch_by!r}")
        if validation is None and validation_features is not None:
            raise ConfigError("validation_features given without validation= (the labels of those points)")
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"{self.name}.fit expects a mithridate Dataset, got {type(dataset).__name__}")
        contributors = has_contributors(dataset.meta)
        if self.batch_by == "contributor" and not contributors:
            raise ConfigError("batch_by='contributor' but the dataset's meta has no contributor values; "
                              "fill dataset.meta['contributor'] or use batch_by='random'")
        self._contributors = (dataset.meta["contributor"].to_numpy(dtype=object)
                              if contributors and self.batch_by in ("auto", "contributor") else None)
        self._validation = None
        if validation is not None:
            check_validation_set(dataset, validation)
            if validation_features is None:
                validation_features = self.features_for(validation, model)
            vf = np.asarray(validation_features, dtype=np.float32).reshape(len(validation_features), -1)
            if len(vf) != len(validation):
                raise DataError(f"{len(vf)} validation feature rows for {len(validation)} validation samples")
            if not np.all(np.isfinite(vf)):
                raise DataError(f"{self.name}: validation features contain NaN or infinite values")
            self._validation = (vf, np.asarray(validation.y, dtype=np.int64))
        self._n_classes = dataset.n_classes
        try:
            return super().fit(dataset, model, features=features)
        finally:
            self._validation = None
            self._contributors = None

    # -- batches -----------------------------------------------------------------------------
    def _block_size(self, n: int) -> int:
        if self.block_size is None:
            return max(1, math.ceil(n / DEFAULT_N_BLOCKS))
        b = self.block_size
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ConfigError(f"block_size must be a positive int or None, got {b!r}")
        return int(b)

    def _make_batches(self, n: int, rng: np.random.Generator) -> tuple[list, list]:
        size = self._block_size(n)
        batches, names = [], []

        def blocks(idx: np.ndarray, prefix: str) -> None:
            if self.batch_by != "order":
                idx = rng.permutation(idx)
            for k, s in enumerate(range(0, len(idx), size)):
                batches.append(np.sort(idx[s : s + size]))
                names.append(f"{prefix}-{k}")

        if self._contributors is None:
            self.batched_by_ = "order" if self.batch_by == "order" else "random"
            blocks(np.arange(n), "block")
        else:
            self.batched_by_ = "contributor"
            who = pd.Series(self._contributors)
            known = who.notna() & (who.astype(str).str.strip() != "")
            keys = who[known].astype(str)
            for name, rows in keys.groupby(keys, sort=True).groups.items():
                batches.append(np.sort(np.asarray(rows, dtype=np.int64)))
                names.append(str(name))
            if (~known).any():
                blocks(np.flatnonzero(~known.to_numpy()), "unknown")
        return batches, names

    def _carve(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        try:
            frac = float(self.validation_fraction)
        except (TypeError, ValueError):
            frac = float("nan")
        if not 0.0 < frac < 1.0:
            raise ConfigError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        held = []
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            k = int(round(frac * len(idx)))
            if len(idx) >= 2:
                k = min(max(k, 1), len(idx) - 1)
                held.append(rng.choice(idx, k, replace=False))
        out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
        if len(out) == 0:
            raise DataError(f"{self.name}: too few samples to carve a validation set; pass validation=")
        return out

    # -- scoring -----------------------------------------------------------------------------
    def _new_model(self, seed: int) -> Any:
        if self.model_factory is None:
            from mithridate.models.linear import SklearnClassifier

            return SklearnClassifier("logreg", C=DEFAULT_C, random_state=seed)
        return build_model(self.model_factory, np.random.default_rng(seed), who="model_factory",
                           needs=("fit", "predict_proba"))

    def _per_point(self, model: Any, V: np.ndarray, vy: np.ndarray) -> np.ndarray:
        p = np.asarray(model.predict_proba(V), dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != len(vy) or p.shape[1] < int(vy.max()) + 1:
            raise ConfigError(f"{self.name}: the model's predict_proba returned shape {p.shape}, expected "
                              f"({len(vy)}, n_classes)")
        if self.metric == "probability":
            return 1.0 - p[np.arange(len(vy)), vy]
        if self.metric == "log_loss":
            return -np.log(np.clip(p[np.arange(len(vy)), vy], 1e-12, 1.0))
        return (p.argmax(axis=1) == vy).astype(np.float64)

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        check_labels(y, self.name)
        try:
            t_thr = float(self.t_threshold)
        except (TypeError, ValueError):
            raise ConfigError(f"t_threshold must be a number, got {self.t_threshold!r}") from None
        n = len(y)
        rng = check_random_state(self.random_state)
        batches, names = self._make_batches(n, rng)
        if self._validation is None:
            held = self._carve(y, rng)
            V, vy = features[held], y[held]
            self.validation_idx_ = held
        else:
            held = np.zeros(0, np.int64)
            V, vy = self._validation
            if V.shape[1] != features.shape[1]:
                raise DataError(f"validation features have {V.shape[1]} columns, training features "
                                f"{features.shape[1]}; read both from the same layer")
            self.validation_idx_ = None
        pool = np.ones(n, bool)
        pool[held] = False
        if len(np.unique(y[pool])) < 2:
            raise DataError(f"{self.name}: the training pool holds a single class after the validation carve")
        seed = seed_from(rng)
        n_classes = max(int(self._n_classes), int(y.max()) + 1)
        full = self._per_point(fit_model(self._new_model(seed), features[pool], y[pool], n_classes), V, vy)
        sign = -1.0 if self.metric == "accuracy" else 1.0  # Δ > 0 means the batch helps
        m = len(batches)
        impact, se = np.full(m, np.nan), np.full(m, np.nan)
        refits = 1
        for b, idx in progress_iter(enumerate(batches), len(batches), f"{self.name}: refits without each batch"):
            keep = pool.copy()
            keep[idx] = False
            # a batch is judged on the validation points of the other batches
            judges = ~np.isin(held, idx) if len(held) else np.ones(len(vy), bool)
            if keep.sum() == pool.sum() or len(np.unique(y[keep])) < 2 or not judges.any():
                continue  # nothing of it in the pool, too little left to fit, or nobody left to judge it
            without = self._per_point(fit_model(self._new_model(seed), features[keep], y[keep], n_classes), V, vy)
            refits += 1
            delta = sign * (without - full)[judges]
            impact[b] = delta.mean()
            se[b] = delta.std(ddof=1) / np.sqrt(len(delta)) if len(delta) > 1 else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(se > 0, impact / np.where(se > 0, se, 1.0),
                         np.where(impact == 0, 0.0, np.sign(impact) * np.inf))
        t[np.isnan(impact)] = np.nan
        batch_of = np.empty(n, np.int64)
        for b, idx in enumerate(batches):
            batch_of[idx] = b
        self.batches_ = batches
        self.batch_names_ = names
        self.batch_of_ = batch_of
        self.batch_impact_ = impact
        self.batch_se_ = se
        self.batch_t_ = t
        self.batch_flags_ = np.nan_to_num(t, nan=0.0) < -t_thr
        self.base_metric_ = float(full.mean())
        self.n_refits_ = refits
        return -np.nan_to_num(impact, nan=0.0)[batch_of]

    # -- flags -------------------------------------------------------------------------------
    def default_flags(self) -> np.ndarray:
        """Samples of the batches with t(B) < −t_threshold (significantly negative impact)."""
        return self.batch_flags_[self.batch_of_]

    def _flag_budget(self, budget: float) -> np.ndarray:
        """Whole batches, most negative impact first, while the flagged samples stay within
        ``ceil(budget * n)``; only batches with a negative impact are flagged."""
        limit = budget_count(budget, len(self.scores_))
        mask = np.zeros(len(self.scores_), bool)
        impact = np.nan_to_num(self.batch_impact_, nan=0.0)
        taken = 0
        for b in np.argsort(impact, kind="stable"):
            if not impact[b] < 0 or taken + len(self.batches_[b]) > limit:
                break
            mask[self.batches_[b]] = True
            taken += len(self.batches_[b])
        return mask

    def batch_table(self) -> pd.DataFrame:
        """One row per batch: name, size, impact, se, t, flagged (default rule), worst first."""
        self._check_fitted()
        df = pd.DataFrame({
            "batch": self.batch_names_, "size": [len(b) for b in self.batches_], "impact": self.batch_impact_,
            "se": self.batch_se_, "t": self.batch_t_, "flagged": self.batch_flags_,
        })
        return df.sort_values("impact", kind="stable", na_position="last").reset_index(drop=True)
