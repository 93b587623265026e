"""Loss dynamics: poisons with a strong trigger are learnt unusually fast (after Li et al., NeurIPS 2021).

Anti-Backdoor Learning (ABL) observes that a network fits backdoor examples much faster than clean
ones: the trigger is a simpler feature than anything the clean task needs, so in the first epochs
the training loss of poisoned samples falls towards 0 while clean samples of the same class are
still being learnt. ABL isolates the training samples with the lowest loss after a few epochs.

This detector trains a *fresh* network for ``epochs`` (1–2) epochs with mithridate's training
loop, records each sample's cross-entropy after every epoch, averages it, ℓ̄_i, and scores

    z_i = robust_z_c(-log ℓ̄_i)       (median and 1.4826·MAD over the samples labelled c = y_i)

so a sample whose loss is unusually low *for its class* scores high. The comparison within the
class removes the trivial effect that a class made larger by the poisons is learnt faster as a
whole. ABL's local gradient ascent (a loss floor that keeps clean samples from being fitted too)
and its unlearning stage are not implemented: this is the cheap isolation step only.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import numpy as np

from mithridate.data.dataset import Dataset
from mithridate.defenses.detect.base import Detector, robust_z
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, check_random_state, progress_enabled, seed_from

TAILS = ("low", "high", "both")


class LossDynamics(Detector):
    """Score samples by how unusually low their early training loss is within their class.

    When it works, and when not (measured on digits, all-to-one to class 0, ``epochs=2``,
    AUROC of ``scores_`` over the whole training set, 4–6 seeds):

    * a trigger that is *easier* to learn than the class itself is fitted within the first epochs:
      on an MLP (standardised pixels, so the rarely lit corner pixels of a white patch become very
      large inputs) a 4×4 top-left patch at 5% gives 0.93–1.00, a 20% blend 1.00 (and
      ``flag()`` catches 95–100% of the blend's poisons at ≤ 0.7% false positives); a 4×4
      bottom-right patch is less reliable (0.72–1.00);
    * a trigger that is *harder* than the class is not: on the default CNN for 8×8 digits even a
      4×4 patch is learnt after the clean class (0.22–0.60), a 2×2 patch or a blend much later,
      and within the target class the poisons then have a *higher* early loss than its clean
      members (2×2: 0.07–0.11, blend: 0.02–0.04). Then the poisons look like mislabelled samples
      and ``tail="high"`` catches them instead (CNN at 5%: 2×2 patch 0.89–0.93, blend 0.96–0.98);
    * scores are relative to the class's median, so they assume the poisons are a minority of
      their class: when they are half of it (10% of a 10-class set, all-to-one) the median sits
      between poisons and clean samples, the better tail reaches 0.50–0.80, and the z > 3 rule
      flags almost nothing.

    Parameters
    ----------
    epochs : int, default=2
        Early epochs trained and recorded (the loss after each is averaged).
    tail : {"low", "high", "both"}, default="both"
        ``"low"``: suspicious = unusually low loss for the class (ABL, strong triggers);
        ``"high"``: unusually high (the poisons still disagree with the features of their source
        class; label-noise behaviour of weak dirty-label triggers); ``"both"``: the absolute z.
        The default is ``"both"`` because which tail the poisons land in depends on the trigger
        and the network (above): on mithridate's default CNN they are in the high tail (the
        detection matrix measured AUROC 0.00–0.28 for ``"low"`` on digits BadNets), on an MLP
        with a strong trigger in the low one.
    z_threshold : float, default=3.0
        :meth:`flag` without arguments flags ``z_ > z_threshold``.
    random_state : int or Generator, default=0
        Seeds the fresh network's initialisation and the batch order.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        The oriented robust z-score (see ``tail``); higher means more suspicious.
    z_ : ndarray of shape (n_samples,)
        Same as ``scores_`` (used by the default flag rule).
    losses_ : ndarray of shape (epochs, n_samples)
        Cross-entropy of each sample after each early epoch.
    model_ : TorchClassifier
        The briefly trained network (never the model passed to :meth:`fit`).

    Examples
    --------
    >>> from mithridate.attacks.backdoor import BadNets
    >>> from mithridate.data import load_dataset
    >>> from mithridate.models import TorchClassifier
    >>> splits = load_dataset("digits")
    >>> p = BadNets(target=0, poison_rate=0.05, size=4).poison(splits.train, random_state=0)
    >>> det = LossDynamics(epochs=2).fit(p.dataset, model=TorchClassifier(arch="mlp"))  # doctest: +SKIP
    >>> flagged = det.flag()              # robust z > 3 within the class  # doctest: +SKIP
    >>> flagged = det.flag(budget=0.05)   # the 5% lowest-loss samples overall  # doctest: +SKIP

    References
    ----------
    Li, Lyu, Koren, Lyu, Li, Ma. "Anti-Backdoor Learning: Training Clean Models on Poisoned Data."
    NeurIPS 2021. Implemented: the observation behind ABL's backdoor isolation (poisons reach a low
    training loss in the first epochs) as a per-class robust z-score of the early loss; not
    implemented: local gradient ascent and backdoor unlearning.
    """

    name = "loss-dynamics"
    layer = None  # trains on the inputs; reads no layer of the user's model

    def __init__(self, epochs: int = 2, tail: str = "both", z_threshold: float = 3.0,
                 random_state: RandomState = 0):
        self.epochs = epochs
        self.tail = tail
        self.z_threshold = z_threshold
        self.random_state = random_state

    def features_for(self, dataset: Dataset, model: Any = None) -> np.ndarray:
        """The inputs themselves: this detector trains on them rather than reading a layer."""
        return np.asarray(dataset.X)

    def fit(self, dataset: Dataset, model: Any = None, *, features: Optional[np.ndarray] = None) -> "LossDynamics":
        """Train a fresh network for a few epochs and score every sample.

        Parameters
        ----------
        dataset : Dataset
            The (possibly poisoned) training set (classification).
        model : TorchClassifier, optional
            Its configuration (architecture, widths, batch size, learning rate, optimiser) is used
            to build a *fresh* network; the model itself is neither trained nor changed. Without
            it, :func:`~mithridate.models.nets.default_classifier` is used.
        features : ndarray, optional
            Inputs to train on instead of ``dataset.X`` (e.g. embeddings), one row per sample.
        """
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"{self.name}.fit expects a mithridate Dataset, got {type(dataset).__name__}")
        if getattr(dataset, "task", "classification") != "classification":
            raise ConfigError(f"{self.name} needs class labels; {dataset.name!r} is a regression dataset")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1:
            raise ConfigError(f"epochs must be an int >= 1, got {self.epochs!r}")
        if self.tail not in TAILS:
            raise ConfigError(f"tail must be one of {', '.join(TAILS)}, got {self.tail!r}")
        X = np.asarray(dataset.X if features is None else features, dtype=np.float32)
        if len(X) != len(dataset):
            raise DataError(f"{len(X)} feature rows for {len(dataset)} samples")
        if not np.all(np.isfinite(X)):
            raise DataError(f"{self.name}: features contain NaN or infinite values")
        y = np.asarray(dataset.y)
        rng = check_random_state(self.random_state)
        clf = self._fresh_model(model, len(dataset), seed_from(rng))
        losses = self._train(clf, X, y, n_classes=max(int(dataset.n_classes), 2), rng=rng)
        mean_loss = losses.mean(axis=0)
        fast = -np.log(np.maximum(mean_loss, 1e-12))  # high = learnt fast
        z = np.zeros(len(y))
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            z[idx] = robust_z(fast[idx])
        oriented = {"low": z, "high": -z, "both": np.abs(z)}[self.tail]
        self.losses_ = losses
        self.model_ = clf
        self.z_ = oriented
        self.scores_ = oriented.astype(np.float64)
        self.y_ = y
        self.ids_ = np.asarray(dataset.ids)
        return self

    def _fresh_model(self, model: Any, n: int, seed: int) -> Any:
        from mithridate.models.nets import TorchClassifier, default_classifier

        if model is None:
            return default_classifier(n, random_state=seed, epochs=1, progress=progress_enabled())
        if not isinstance(model, TorchClassifier):
            raise ConfigError(
                f"{self.name} trains a fresh network with the configuration of the model given; it needs a "
                f"TorchClassifier, got {type(model).__name__} (or pass no model to use default_classifier)"
            )
        cfg = dict(model.get_config())
        cfg.update(epochs=1, random_state=seed, device=getattr(model, "device", "cpu"), progress=progress_enabled())
        return TorchClassifier(**cfg)

    def _train(self, clf: Any, X: np.ndarray, y: np.ndarray, *, n_classes: int, rng: np.random.Generator) -> np.ndarray:
        """Per-sample loss after each of ``epochs`` epochs, through the shared training loop."""
        from mithridate.models.training import fit_module

        epochs = int(self.epochs)
        record: list = []
        # One run of the loop when TorchClassifier.fit forwards an epoch callback; otherwise epoch 1
        # through TorchClassifier.fit (initialisation, input scaling) and the rest through
        # fit_module on the same module (the optimiser's moments restart once, after epoch 1).
        if "on_epoch_end" in inspect.signature(clf.fit).parameters:
            clf.epochs = epochs
            clf.fit(X, y, n_classes=n_classes, on_epoch_end=lambda e, m: record.append(clf.per_sample_loss(X, y)))
        else:
            clf.fit(X, y, n_classes=n_classes)
            record.append(clf.per_sample_loss(X, y))
            if epochs > 1:
                fit_module(clf.module_, X, y, epochs=epochs - 1, batch_size=int(clf.batch_size), lr=float(clf.lr),
                           weight_decay=float(clf.weight_decay), optimizer=clf.optimizer, random_state=rng,
                           device=clf.device, on_epoch_end=lambda e, m: record.append(clf.per_sample_loss(X, y)))
            clf.epochs = epochs
        return np.stack(record[:epochs]).astype(np.float64)
