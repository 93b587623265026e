"""STRIP on the training set (Gao, Xu, Wang, Chen, Ranasinghe & Nepal, ACSAC 2019).

A backdoor is a shortcut: the network predicts the target class from the trigger, a feature that
overrides everything else in the image. STRIP superimposes an input on other images: a clean
input's prediction becomes uncertain (the two images' contents compete), a triggered input's stays
with the target (the trigger survives the blend). The paper scores runtime inputs by the entropy
of the prediction over N superimpositions and rejects low-entropy inputs.

Here it scores the *training* samples, whose label is known: for each sample ``x_i`` with label
``y_i`` and ``N`` donors ``x_j`` drawn at random from the rest of the training set,

    x'_ij = clip(x_i + x_j, lo, hi)              (Gao et al.: the sum of the two images, saturated)
    s_i   = mean_j [ z_{y_i}(x'_ij) - logsumexp_{c != y_i} z_c(x'_ij) ]

the mean log-odds of the sample's own label under superimposition (``z`` the model's logits; from
``predict_proba`` when the model gives no logits). A poison keeps its planted label with high
odds whatever it is blended with; a clean sample's label is challenged by the donor's content.
The label's log-odds is used instead of the paper's entropy because the label is known (an
ambiguous-but-confident prediction of *another* class is not suspicious) and because it does not
saturate: measured on the detection matrix's backdoor cases (default CNN, 8 superimpositions),
log-odds and log-probability ranked the poisons alike (Fashion-MNIST Blend 5% median AUROC 0.992
both), the entropy lower (0.965); and a log-probability is ~0 for every confident sample, so no
threshold on it separates anything.

What it needs: a classifier trained on the data (``predict_proba`` or ``logits`` on the inputs),
image inputs (superimposing table rows has no meaning), and poisons whose trigger survives being
added to another image (patches and blends do; measured AUROCs are in
``benchmarks/results/detection_matrix.md``). It sees no label flips (they have no trigger; the
model keeps a flipped label only where it memorised it), so it is a backdoor detector only.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from mithridate.data.dataset import Dataset
from mithridate.defenses.detect.base import Detector, robust_z
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, check_random_state, progress_iter, seed_from

SCORES = ("label", "entropy")
_CHUNK = 4096  # rows superimposed and predicted at a time (memory stays ~ n_draws-independent)


class StripDetector(Detector):
    """Score training images by how firmly the model keeps their label when they are superimposed on other images (STRIP).

    Parameters
    ----------
    n_draws : int, default=8
        Superimpositions per sample (donors drawn uniformly from the other training samples).
        Each draw costs one prediction pass over the data. On the detection matrix's
        Fashion-MNIST backdoors 8 draws ranked the poisons better than 4 (BadNets 10% median AUROC
        0.997 vs 0.994, Blend 5% 0.992 vs 0.986); more draws only reduce the noise further.
    score : {"label", "entropy"}, default="label"
        ``"label"``: the mean log-odds of the sample's own label (see the module docstring);
        ``"entropy"``: minus the mean entropy of the prediction, the paper's statistic.
    z_threshold : float, default=3.0
        :meth:`flag` without arguments flags samples whose robust z-score of ``scores_`` (median
        and 1.4826·MAD over all samples) exceeds it.
    random_state : int or Generator, default=0
        Seeds the donors (and the network trained when no model is given).

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Mean log-odds of the own label (or minus the mean entropy); higher = more suspicious.
    z_ : ndarray of shape (n_samples,)
        Robust z-score of ``scores_`` (read by the default flag rule).
    model_ : classifier
        The model whose predictions were read (the one given, or the network trained on the data).

    Examples
    --------
    >>> from mithridate.attacks.backdoor import BadNets
    >>> from mithridate.data import load_dataset
    >>> from mithridate.models.nets import default_classifier
    >>> train = load_dataset("digits").train
    >>> p = BadNets(target=0, poison_rate=0.05, size=2).poison(train, random_state=0)
    >>> net = default_classifier(len(train)).fit(p.dataset)                       # doctest: +SKIP
    >>> det = StripDetector().fit(p.dataset.without_ground_truth(), model=net)    # doctest: +SKIP
    >>> flagged = det.flag(budget=0.05)   # the 5% whose label survives superimposition best  # doctest: +SKIP

    References
    ----------
    Gao, Xu, Wang, Chen, Ranasinghe, Nepal. "STRIP: A Defence Against Trojan Attacks on Deep Neural
    Networks." ACSAC 2019. Implemented: the superimposition (sum of the two images, saturated at
    the data's range) and the entropy statistic, applied to training samples, plus the label's
    log-odds as the default statistic; not implemented: the paper's runtime rejection threshold
    chosen from the entropy distribution of held-out clean inputs (``flag(budget=...)`` or the
    robust z-score play that role here).
    """

    name = "strip"
    layer = None  # reads the model's predictions on the (superimposed) inputs, not a layer
    evidence = "shortcut"
    #: An ensemble gives it the trained model (never the shared features); without one it is skipped.
    reads_predictions = True

    def __init__(self, n_draws: int = 8, score: str = "label", z_threshold: float = 3.0,
                 random_state: RandomState = 0):
        self.n_draws = n_draws
        self.score = score
        self.z_threshold = z_threshold
        self.random_state = random_state

    def features_for(self, dataset: Dataset, model: Any = None) -> np.ndarray:
        """The inputs themselves: STRIP superimposes them and reads the model's predictions."""
        return np.asarray(dataset.X)

    def fit(self, dataset: Dataset, model: Any = None, *, features: Optional[np.ndarray] = None) -> "StripDetector":
        """Superimpose every sample on ``n_draws`` others and score it.

        Parameters
        ----------
        dataset : Dataset
            The (possibly poisoned) training set: images with class labels.
        model : classifier, optional
            A model trained on ``dataset`` with ``predict_proba`` (and, preferably, ``logits``) on
            its inputs. Without one, the default network is trained on ``dataset`` first.
        features : None
            Not accepted: STRIP reads predictions on the images, not a feature matrix.
        """
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"{self.name}.fit expects a mithridate Dataset, got {type(dataset).__name__}")
        if features is not None:
            raise ConfigError(f"{self.name} reads the model's predictions on superimposed images; it takes no features=")
        if getattr(dataset, "task", "classification") != "classification":
            raise ConfigError(f"{self.name} needs class labels; {dataset.name!r} is a regression dataset")
        if not dataset.is_image:
            raise ConfigError(f"{self.name} superimposes images; {dataset.name!r} is not an image dataset "
                              "(use the ensemble or a label detector on tables and text)")
        if isinstance(self.n_draws, bool) or not isinstance(self.n_draws, (int, np.integer)) or self.n_draws < 1:
            raise ConfigError(f"n_draws must be an int >= 1, got {self.n_draws!r}")
        if self.score not in SCORES:
            raise ConfigError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        X = np.asarray(dataset.X, dtype=np.float32)
        if not np.all(np.isfinite(X)):
            raise DataError(f"{self.name}: the images contain NaN or infinite values")
        n = len(X)
        if n < 2:
            raise DataError(f"{self.name} needs at least 2 samples to superimpose, got {n}")
        y = np.asarray(dataset.y).astype(np.int64)
        rng = check_random_state(self.random_state)
        if model is None:
            from mithridate.models.nets import default_classifier

            model = default_classifier(n, random_state=seed_from(rng)).fit(dataset, n_classes=dataset.n_classes)
        from mithridate.models.wrap import as_model

        model = as_model(model)  # a plain torch.nn.Module: its outputs are the logits
        if not hasattr(model, "predict_proba") and not hasattr(model, "logits"):
            raise ConfigError(f"{self.name} needs a classifier with predict_proba or logits, got {type(model).__name__}")
        self._check_class_order(model, X, y, dataset)
        lo, hi = float(X.min()), float(X.max())
        rows = np.arange(n)
        total = np.zeros(n)
        for _ in progress_iter(range(int(self.n_draws)), int(self.n_draws), f"{self.name}: superimpositions"):
            donors = (rows + rng.integers(1, n, size=n)) % n  # never the sample itself
            for start in range(0, n, _CHUNK):
                sl = slice(start, min(start + _CHUNK, n))
                blend = np.clip(X[sl] + X[donors[sl]], lo, hi)
                total[sl] += self._statistic(model, blend, y[sl])
        scores = total / int(self.n_draws)
        self.model_ = model
        self.scores_ = scores
        self.z_ = robust_z(scores)
        self.y_ = y
        self.ids_ = np.asarray(dataset.ids)
        return self

    def _check_class_order(self, model: Any, X: np.ndarray, y: np.ndarray, dataset: Dataset) -> None:
        """Warn when the model's predictions on the (unblended) images disagree with most labels: a
        model trained on this data agrees with most of them, and a model whose output columns are in
        another order than ``dataset.classes`` (string labels are sorted unless ``classes=`` was given)
        would make every score read the wrong column. Measured on a user's network whose columns
        were in its own order: agreement 33%, AUROC 0.09 instead of 0.97."""
        import warnings

        sample = np.arange(len(y)) if len(y) <= 2000 else np.linspace(0, len(y) - 1, 2000).astype(np.int64)
        logp = self._statistic_logp(model, X[sample])
        if logp.ndim != 2 or logp.shape[1] <= int(y.max()):
            return  # _statistic raises with the shapes
        agree = float(np.mean(logp.argmax(axis=1) == y[sample]))
        self.label_agreement_ = agree
        if agree < 0.5:
            classes = ", ".join(repr(str(c)) for c in list(dataset.classes)[:10])
            warnings.warn(
                f"{self.name}: the model predicts the given label for only {agree:.0%} of the training images; "
                f"if it was trained on them, its output columns are probably not in the order of the dataset's "
                f"classes ({classes}{', ...' if len(dataset.classes) > 10 else ''}): string labels are sorted unless "
                "Dataset.from_arrays(..., classes=[...]) gives the model's order", UserWarning, stacklevel=3)

    def _statistic_logp(self, model: Any, X: np.ndarray) -> np.ndarray:
        if hasattr(model, "logits"):
            L = np.asarray(model.logits(X), dtype=np.float64)
            return L - _logsumexp(L)[:, None] if L.ndim == 2 else L
        return np.log(np.clip(np.asarray(model.predict_proba(X), dtype=np.float64), 1e-300, None))

    def _statistic(self, model: Any, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per row: the log-odds of label ``y`` (``score="label"``) or minus the entropy."""
        logp = self._statistic_logp(model, X)
        if logp.ndim != 2 or len(logp) != len(y):
            raise DataError(f"{self.name}: the model returned predictions of shape {logp.shape} for {len(y)} images")
        if int(y.max()) >= logp.shape[1]:
            raise DataError(f"{self.name}: labels go up to {int(y.max())} but the model predicts {logp.shape[1]} classes")
        if self.score == "entropy":
            return (np.exp(logp) * logp).sum(axis=1)  # minus the entropy
        rows = np.arange(len(y))
        own = logp[rows, y].copy()
        logp[rows, y] = -np.inf
        return own - _logsumexp(logp)


def _logsumexp(A: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp (rows of -inf give -inf)."""
    m = A.max(axis=1)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(A - safe[:, None]).sum(axis=1))
