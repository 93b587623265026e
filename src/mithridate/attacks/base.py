"""Shapes shared by every attack: :class:`Attack` and its result, :class:`Poisoning`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from mithridate.data.dataset import Dataset
from mithridate.errors import ConfigError
from mithridate.utils import RandomState


@dataclass(frozen=True)
class Poisoning:
    """What an attack produced.

    Attributes
    ----------
    dataset : Dataset
        The poisoned training set, with ``is_poison`` set (ground truth for simulation only).
    attack : str
        The attack's registry name.
    params : dict
        The attack's parameters, for the results table.
    budget : dict
        The budget actually used (e.g. ``n_poison``, ``poison_rate`` as a fraction of the
        training set, ``target_class_fraction`` as a fraction of the target class).
    trigger : Trigger or None
        The test-time transform for backdoors (apply it to test inputs to activate the backdoor).
    target : int or None
        The class index the attack steers inputs to.
    """

    dataset: Dataset
    attack: str
    params: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    trigger: Optional[Any] = None
    target: Optional[int] = None

    @property
    def poison_mask(self) -> np.ndarray:
        return np.asarray(self.dataset.is_poison, dtype=bool)

    def triggered_test(self, test: Dataset) -> Dataset:
        """The test samples whose true class is not the target, with the trigger applied.

        Their labels stay the true labels, so ``attack_success_rate(test.y, pred, target)``
        and ``robust_accuracy`` can be computed directly.
        """
        if self.trigger is None or self.target is None:
            raise ConfigError(f"the {self.attack} attack has no test-time trigger")
        keep = test.subset(test.y != self.target)
        return keep.replace(X=self.trigger.apply(keep.X), is_poison=None)


class Attack:
    """Base class: hyperparameters in ``__init__``, ``poison(dataset, random_state)`` returns a Poisoning."""

    name = "attack"

    def poison(self, dataset: Dataset, random_state: RandomState = None) -> Poisoning:  # pragma: no cover
        raise NotImplementedError

    def get_params(self) -> dict:
        out = {}
        for k, v in vars(self).items():
            if k.endswith("_") or k.startswith("_"):
                continue
            if isinstance(v, np.ndarray):
                v = f"array{tuple(v.shape)}"
            out[k] = v
        return out


def resolve_target(dataset: Dataset, target: Any) -> int:
    """Return the class index for ``target``, given as a label or as a class index.

    A label as written in the data wins: with classes ``(1, 2, 3)``, ``target=1`` (or ``"1"``)
    means the class labelled 1, not index 1. A value that is not a label is read as an index.
    """
    if isinstance(target, str) and target in dataset.classes:
        return dataset.classes.index(target)
    as_int = None
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        as_int = int(target)
    elif isinstance(target, str) and target.strip().lstrip("-").isdigit():
        as_int = int(target)
    if as_int is not None:
        if as_int in dataset.classes:
            return dataset.classes.index(as_int)
        if 0 <= as_int < dataset.n_classes:
            return as_int
    raise ConfigError(
        f"target {target!r} is neither one of the classes {list(dataset.classes)[:20]} nor a class index in "
        f"[0, {dataset.n_classes - 1}]"
    )
