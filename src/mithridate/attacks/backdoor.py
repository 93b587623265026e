"""Dirty-label backdoors: BadNets (Gu et al. 2017) and blended triggers (Chen et al. 2017).

The attacker picks a fraction of the training set among the non-target classes, stamps the
trigger on those images and relabels them to the target class (all-to-one). At test time the
same trigger on any input steers the model to the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from mithridate.attacks.base import Attack, Poisoning, resolve_target
from mithridate.attacks.triggers import Trigger, blend_trigger, patch_trigger
from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError
from mithridate.utils import RandomState, check_fraction, check_random_state


class _DirtyLabelBackdoor(Attack):
    """Shared logic: choose victims among non-target classes, stamp, relabel."""

    def __init__(self, target: Any = 0, poison_rate: float = 0.05):
        self.target = target
        self.poison_rate = poison_rate

    def make_trigger(self, dataset: Dataset, rng: np.random.Generator) -> Trigger:  # pragma: no cover
        raise NotImplementedError

    def poison(self, dataset: Dataset, random_state: RandomState = None) -> Poisoning:
        """Poison ``poison_rate * len(dataset)`` samples of non-target classes.

        Returns a :class:`~mithridate.attacks.base.Poisoning` whose dataset keeps every id; the
        poisoned rows carry the trigger and the target label, and ``is_poison`` marks them.
        """
        rate = check_fraction(self.poison_rate, "poison_rate")
        rng = check_random_state(random_state)
        if not dataset.is_image:
            raise ConfigError(
                f"{self.name} needs image data (N x C x H x W); {dataset.name!r} has samples of shape "
                f"{dataset.X.shape[1:]}"
            )
        target = resolve_target(dataset, self.target)
        trigger = self.make_trigger(dataset, rng)
        trigger.target = target
        sources = np.flatnonzero(dataset.y != target)
        n_poison = int(round(rate * len(dataset)))
        if n_poison < 1:
            raise ConfigError(f"poison_rate {rate} of {len(dataset)} samples poisons no sample; raise it")
        if n_poison > len(sources):
            raise ConfigError(
                f"poison_rate {rate} asks for {n_poison} samples but only {len(sources)} are outside the target class"
            )
        chosen = np.sort(rng.choice(sources, size=n_poison, replace=False))
        X = np.array(dataset.X, copy=True)
        y = np.array(dataset.y, copy=True)
        X[chosen] = trigger.apply(X[chosen])
        y[chosen] = target
        is_poison = np.zeros(len(dataset), bool) if dataset.is_poison is None else np.array(dataset.is_poison)
        is_poison[chosen] = True
        poisoned = dataset.replace(X=X, y=y, is_poison=is_poison)
        n_target_after = int((y == target).sum())
        budget = {
            "n_poison": n_poison,
            "poison_rate": n_poison / len(dataset),
            "target_class_fraction": n_poison / n_target_after,
        }
        return Poisoning(dataset=poisoned, attack=self.name, params=self.get_params(), budget=budget,
                         trigger=trigger, target=target)


def _warn_unscaled(dataset: Dataset, who: str) -> None:
    """Triggers are made for images in [0, 1]: warn when the images go far above (0-255 pixels)."""
    hi = float(np.max(dataset.X)) if len(dataset) else 0.0
    if hi > 1.5:
        import warnings

        warnings.warn(f"{who}: the images go up to {hi:g}, but trigger values are for images scaled to [0, 1] "
                      "(a patch of 1.0 on 0-255 pixels is nearly black: an invisible trigger); divide the images "
                      "by 255 first", UserWarning, stacklevel=4)


class BadNets(_DirtyLabelBackdoor):
    """BadNets: a small patch stamped on a fraction of the training images, relabelled to the target.

    Parameters
    ----------
    target : int or label, default=0
        Target class (index, or the label as written in the data).
    poison_rate : float, default=0.05
        Fraction of the whole training set to poison, in (0, 1); victims come from all
        non-target classes.
    size : int, default=3
        Side of the square patch in pixels.
    position : str or (row, col), default="bottom-right"
    value : float or "checkerboard", default=1.0
        Patch content.
    margin : int, default=0
        Distance from the border for named positions.

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> splits = load_dataset("digits")
    >>> p = BadNets(target=0, poison_rate=0.05, size=2).poison(splits.train, random_state=0)
    >>> int(p.dataset.is_poison.sum()) == p.budget["n_poison"]
    True

    References
    ----------
    Gu, Dolan-Gavitt, Garg. "BadNets: Identifying Vulnerabilities in the Machine Learning Model
    Supply Chain." 2017.
    """

    name = "badnets"

    def __init__(self, target: Any = 0, poison_rate: float = 0.05, size: int = 3,
                 position: Union[str, Sequence[int]] = "bottom-right", value: Union[float, str] = 1.0, margin: int = 0):
        super().__init__(target, poison_rate)
        self.size = size
        self.position = position
        self.value = value
        self.margin = margin

    def make_trigger(self, dataset: Dataset, rng: np.random.Generator) -> Trigger:
        _warn_unscaled(dataset, self.name)
        return patch_trigger(dataset.X.shape[1:], size=self.size, position=self.position, value=self.value,
                             margin=self.margin)


class Blend(_DirtyLabelBackdoor):
    """Blended-key backdoor: ``x' = (1 - alpha) x + alpha * key`` on a fraction of images, relabelled.

    Parameters
    ----------
    target : int or label, default=0
    poison_rate : float, default=0.05
    alpha : float, default=0.2
        Blend ratio used for poisoning and at test time.
    pattern : None, ndarray (C, H, W) or path, default=None
        The key: ``None`` draws a fixed uniform random pattern from the attack's random state
        (Chen et al.'s "random pattern"), or a user array / image file (e.g. "glasses").

    References
    ----------
    Chen, Liu, Li, Lu, Song. "Targeted Backdoor Attacks on Deep Learning Systems Using Data
    Poisoning." 2017.
    """

    name = "blend"

    def __init__(self, target: Any = 0, poison_rate: float = 0.05, alpha: float = 0.2,
                 pattern: Optional[Union[np.ndarray, str, Path]] = None):
        super().__init__(target, poison_rate)
        self.alpha = alpha
        self.pattern = pattern

    def make_trigger(self, dataset: Dataset, rng: np.random.Generator) -> Trigger:
        _warn_unscaled(dataset, self.name)
        return blend_trigger(dataset.X.shape[1:], alpha=self.alpha, pattern=self.pattern, random_state=rng)
