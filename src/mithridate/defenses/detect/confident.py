"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) on out-of-fold probabilities.

Every sample gets predicted probabilities p̂(ỹ = j; x_i) from a model that never saw it (K-fold,
stratified). With the per-class thresholds t_j = mean of p̂(ỹ = j; x) over the samples labelled j,
the confident joint counts

    C[i][j] = |{x labelled i : p̂(ỹ = j; x) ≥ t_j, j = argmax over such classes}|   (confident joint)

its off-diagonal entries estimate how many samples of given label i truly belong to j, and
pruning by noise rate removes, for each off-diagonal (i, j), the n·Q̂[i][j] samples labelled i
with the largest margin p̂(j) - p̂(i) (Q̂ the joint calibrated to the class counts). cleanlab
implements exactly this; the detector computes the out-of-fold probabilities with the project's
model layer and calls ``cleanlab.filter.find_label_issues`` for the flags and
``cleanlab.rank.get_label_quality_scores`` for a per-sample score.
"""

from __future__ import annotations

import warnings

import copy
import inspect
from typing import Any, Callable, Sequence, Union

import numpy as np

from mithridate.defenses.detect.base import Detector
from mithridate.defenses.detect.knn import check_labels
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, check_random_state, progress_iter, seed_from

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence")
DEFAULT_C = 0.1  # inverse regularisation of the default fold model (see model_factory)
RANKS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


def build_model(spec: Any, rng: np.random.Generator, *, who: str, needs: Sequence[str]) -> Any:
    """A fresh unfitted model from a registered name (seeded from ``rng``), a factory or an instance.

    ``spec`` is a model name of :mod:`mithridate.registry`, a class or callable returning a new
    model, or a model instance (deep-copied); the result must have the methods in ``needs``.
    """
    from mithridate.models.wrap import is_torch_module

    if is_torch_module(spec):
        raise ConfigError(
            f"{who} got a torch.nn.Module ({type(spec).__name__}); it needs a model it can train on each fold "
            "(fit/predict_proba): a registered name such as 'logreg' or 'mlp', a mithridate model, or a callable "
            "returning one -- for your own network, a TorchClassifier, or the features of your trained network "
            "(features=) with the default model_factory")
    if isinstance(spec, str):
        from mithridate import registry

        model = registry.create("model", spec, random_state=seed_from(rng))
    elif isinstance(spec, type) or (callable(spec) and not hasattr(spec, "fit")):
        model = spec()
    elif hasattr(spec, "fit"):
        model = copy.deepcopy(spec)
    else:
        raise ConfigError(f"{who} must be a model name, a callable or a model, got {type(spec).__name__}")
    missing = [m for m in needs if not hasattr(model, m)]
    if missing:
        raise ConfigError(f"{who} built a {type(model).__name__}, which lacks {', '.join(missing)}")
    return model


def fit_model(model: Any, X: np.ndarray, y: np.ndarray, n_classes: int) -> Any:
    """``model.fit(X, y)``, telling models that accept it the full number of classes."""
    if "n_classes" in inspect.signature(model.fit).parameters:
        model.fit(X, y, n_classes=n_classes)
    else:
        model.fit(X, y)
    return model


class ConfidentLearning(Detector):
    """Flag label errors with confident learning on out-of-fold predicted probabilities.

    Parameters
    ----------
    model_factory : str, callable or Model, optional
        The classifier trained on each fold: a registered model name (``"logreg"``,
        ``"linear_svm"``, ``"mlp"`` ..., built with a seed drawn from ``random_state``), a callable
        returning a fresh unfitted Model (e.g. ``lambda: SklearnClassifier("logreg", C=1.0)``),
        or an unfitted Model instance (deep-copied for each fold). It needs ``fit`` and
        ``predict_proba``, and sees the 2-D feature matrix the detector reads. Default:
        ``SklearnClassifier("logreg", C=0.1)``, logistic regression on standardised features
        with strong regularisation, so the fold models do not fit the flipped labels (on random
        20% flips, F1 of the flags with C = 1 / 0.3 / 0.1 / 0.03: digits 0.85 / 0.88 / 0.90 / 0.92,
        breast_cancer 0.83 / 0.85 / 0.88 / 0.91, wine 0.84 / 0.91 / 0.91 / 0.91).
    cv : int, default=5
        Number of stratified folds. A class with fewer than ``cv`` samples (e.g. one made by a
        label typo) is still scored: its samples are held out by fold models that saw few or none
        of its samples, so their labels look like errors -- which a class of one usually is.
    filter_by : str, default="prune_by_noise_rate"
        cleanlab's rule for :meth:`flag` with no argument (one of ``prune_by_noise_rate``,
        ``prune_by_class``, ``both``, ``confident_learning``, ``predicted_neq_given``,
        ``low_normalized_margin``, ``low_self_confidence``).
    rank_by : {"self_confidence", "normalized_margin", "confidence_weighted_entropy"}, default="self_confidence"
        cleanlab label-quality score q_i behind ``scores_ = 1 - q_i``; ``"self_confidence"`` is
        q_i = p̂(ỹ = y_i; x_i), the out-of-fold probability of the given label.
    layer : str, default="penultimate"
        Model layer read when :meth:`fit` gets a trained model; without one, the raw flattened
        features.
    random_state : int or Generator, default=0
        Seeds the fold split (and the fold models when ``model_factory`` is a name).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        ``1 - label quality``, in [0, 1]; higher = more likely mislabelled.
    pred_probs_ : ndarray of shape (n_samples, n_classes_present)
        Out-of-fold predicted probabilities, one column per entry of ``classes_``.
    classes_ : ndarray
        Class indices (``dataset.y`` values) of the columns of ``pred_probs_``.
    issues_ : ndarray of bool, shape (n_samples,)
        cleanlab's label-issue mask (``filter_by`` rule); what ``flag()`` returns.

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> train = load_dataset("wine").train
    >>> rng = np.random.default_rng(0)
    >>> flip = rng.choice(len(train), 10, replace=False)
    >>> y = train.y.copy(); y[flip] = (y[flip] + 1) % 3
    >>> det = ConfidentLearning().fit(train.replace(y=y))
    >>> found = np.flatnonzero(det.flag())           # cleanlab's label issues
    >>> len(set(found) & set(flip)) >= 8
    True

    References
    ----------
    Northcutt, Jiang, Chuang. "Confident Learning: Estimating Uncertainty in Dataset Labels."
    Journal of Artificial Intelligence Research 70, 2021 (the confident joint and prune-by-noise-rate).
    """

    name = "confident-learning"
    evidence = "labels"

    def __init__(self, model_factory: Union[None, str, Callable[[], Any], Any] = None, cv: int = 5,
                 filter_by: str = "prune_by_noise_rate", rank_by: str = "self_confidence",
                 layer: str = "penultimate", random_state: RandomState = 0):
        self.model_factory = model_factory
        self.cv = cv
        self.filter_by = filter_by
        self.rank_by = rank_by
        self.layer = layer
        self.random_state = random_state

    def _new_model(self, rng: np.random.Generator) -> Any:
        if self.model_factory is None:
            from mithridate.models.linear import SklearnClassifier

            return SklearnClassifier("logreg", C=DEFAULT_C, random_state=seed_from(rng))
        return build_model(self.model_factory, rng, who="model_factory", needs=("fit", "predict_proba"))

    def out_of_fold_probs(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Predicted probabilities of each sample from the fold model that did not train on it.

        ``y`` must hold class indices ``0..K-1``; a class with fewer than ``cv`` samples is missing
        from some fold models' training data (its probability there comes from ``fit_model``'s
        handling of absent classes).
        """
        from sklearn.model_selection import StratifiedKFold

        if isinstance(self.cv, bool) or not isinstance(self.cv, (int, np.integer)) or self.cv < 2:
            raise ConfigError(f"cv must be an int >= 2, got {self.cv!r}")
        counts = np.bincount(y)
        if counts.max() < self.cv:
            raise DataError(f"{self.name}: every class has fewer samples than cv={self.cv} folds (the largest "
                            f"has {int(counts.max())}); lower cv")
        n_classes = len(counts)
        rng = check_random_state(self.random_state)
        folds = StratifiedKFold(n_splits=int(self.cv), shuffle=True, random_state=seed_from(rng))
        with warnings.catch_warnings():
            # a class with fewer samples than folds (a label typo made a class of one): its samples are
            # held out by models that saw few or none of them, so its labels score as likely errors
            warnings.filterwarnings("ignore", message=".*least populated class.*")
            splits = list(folds.split(features, y))
        probs = np.zeros((len(y), n_classes))
        for train_idx, held_idx in progress_iter(splits, len(splits), f"{self.name}: out-of-fold models"):
            model = fit_model(self._new_model(rng), features[train_idx], y[train_idx], n_classes)
            p = np.asarray(model.predict_proba(features[held_idx]), dtype=np.float64)
            if p.shape != (len(held_idx), n_classes):
                raise ConfigError(
                    f"{self.name}: the fold model's predict_proba returned shape {p.shape}, expected "
                    f"{(len(held_idx), n_classes)} (one column per class)"
                )
            probs[held_idx] = p
        if not np.all(np.isfinite(probs)):
            raise DataError(f"{self.name}: the fold models returned NaN or infinite probabilities")
        probs = np.clip(probs, 0.0, None)
        return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)

    def _score(self, features: np.ndarray, y: np.ndarray) -> np.ndarray:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        if self.filter_by not in FILTERS:
            raise ConfigError(f"filter_by must be one of {FILTERS}, got {self.filter_by!r}")
        if self.rank_by not in RANKS:
            raise ConfigError(f"rank_by must be one of {RANKS}, got {self.rank_by!r}")
        check_labels(y, self.name)
        # cleanlab wants every column's class present among the labels: re-index the present ones
        self.classes_, labels = np.unique(y, return_inverse=True)
        self.pred_probs_ = self.out_of_fold_probs(features, labels)
        self.issues_ = np.asarray(
            find_label_issues(labels, self.pred_probs_, filter_by=self.filter_by, n_jobs=1), dtype=bool
        )
        quality = get_label_quality_scores(labels, self.pred_probs_, method=self.rank_by)
        return 1.0 - np.asarray(quality, dtype=np.float64)

    def default_flags(self) -> np.ndarray:
        """cleanlab's label-issue mask (``filter_by`` rule); no budget needed."""
        return self.issues_.copy()
