"""Feature and target scaling that keeps the Dataset contract (fit on train, apply to both splits)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mithridate.data.dataset import DatasetSplits
from mithridate.errors import DataError


@dataclass(frozen=True)
class MinMax:
    """Per-feature (and, for regression, target) ranges learnt from a training split."""

    x_min: np.ndarray
    x_max: np.ndarray
    y_min: float | None = None
    y_max: float | None = None

    def scale_x(self, X: np.ndarray) -> np.ndarray:
        span = np.where(self.x_max > self.x_min, self.x_max - self.x_min, 1.0)
        return ((np.asarray(X, dtype=np.float64) - self.x_min) / span).astype(np.float32)

    def scale_y(self, y: np.ndarray) -> np.ndarray:
        if self.y_min is None:
            return np.asarray(y)
        span = self.y_max - self.y_min if self.y_max > self.y_min else 1.0
        return (np.asarray(y, dtype=np.float64) - self.y_min) / span

    def unscale_x(self, X: np.ndarray) -> np.ndarray:
        """Back to the original units (the inverse of :meth:`scale_x` on the training range)."""
        span = np.where(self.x_max > self.x_min, self.x_max - self.x_min, 1.0)
        return (np.asarray(X, dtype=np.float64) * span + self.x_min).astype(np.float32)

    def unscale_y(self, y: np.ndarray) -> np.ndarray:
        if self.y_min is None:
            return np.asarray(y)
        span = self.y_max - self.y_min if self.y_max > self.y_min else 1.0
        return np.asarray(y, dtype=np.float64) * span + self.y_min


def in_unit_box(splits: DatasetSplits) -> bool:
    """True when the training features (and regression targets) already lie in [0, 1]."""
    tr = splits.train
    ok = float(tr.X.min()) >= 0.0 and float(tr.X.max()) <= 1.0
    if tr.is_regression:
        ok = ok and float(tr.y.min()) >= 0.0 and float(tr.y.max()) <= 1.0
    return ok


def poison_in_unit_box(attack, splits: DatasetSplits, random_state=None, **kwargs):
    """Run an inserting attack that works in [0, 1] on data in its own units.

    The data are min-max scaled with the training ranges, the attack runs on the scaled training
    split, and the inserted rows are mapped back to the original units and appended to the
    *original* training rows (which are therefore kept bit for bit). Returns the Poisoning
    (dataset in original units) and the :class:`MinMax` used. Attacks that modify existing rows
    instead of inserting raise ConfigError.
    """
    from mithridate.attacks.base import Poisoning
    from mithridate.errors import ConfigError

    scaled, mm = minmax_scale(splits, clip=True)
    res = attack.poison(scaled.train, random_state=random_state, **kwargs)
    n = len(splits.train)
    new = res.dataset
    if len(new) < n or not np.array_equal(np.asarray(new.ids[:n]), np.asarray(splits.train.ids)):
        raise ConfigError(f"{attack.name} does not insert rows; run it on data scaled to [0, 1] instead")
    extra = new.subset(np.arange(n, len(new)))
    flat = extra.X.reshape(len(extra), -1)
    Xo = mm.unscale_x(flat).reshape(extra.X.shape)
    yo = mm.unscale_y(extra.y) if splits.train.is_regression else extra.y
    out = splits.train.append(Xo, yo, is_poison=True, source=attack.name)
    return Poisoning(dataset=out, attack=res.attack, params=res.params, budget=res.budget, trigger=res.trigger,
                     target=res.target), mm


def minmax_scale(splits: DatasetSplits, *, clip: bool = True) -> tuple[DatasetSplits, MinMax]:
    """Scale features (and regression targets) to [0, 1] with the training split's ranges.

    This is the setting of Jagielski et al. (2018) and Steinhardt et al. (2017): attacks that
    search a feature box assume it is [0, 1]. Test values outside the training range are
    clipped to [0, 1] when ``clip`` is true. Constant features map to 0.

    Examples
    --------
    >>> from mithridate.data import load_dataset
    >>> scaled, rng = minmax_scale(load_dataset("diabetes"))
    >>> float(scaled.train.X.min()), float(scaled.train.X.max()), float(scaled.train.y.max())
    (0.0, 1.0, 1.0)
    """
    tr = splits.train
    if tr.is_image:
        flat = tr.X.reshape(len(tr), -1)
    else:
        flat = tr.X
    if len(flat) == 0:
        raise DataError("cannot scale an empty training split")
    x_min = flat.min(axis=0).astype(np.float64)
    x_max = flat.max(axis=0).astype(np.float64)
    if tr.is_regression:
        mm = MinMax(x_min, x_max, float(tr.y.min()), float(tr.y.max()))
    else:
        mm = MinMax(x_min, x_max)

    def one(ds):
        X = mm.scale_x(ds.X.reshape(len(ds), -1))
        y = mm.scale_y(ds.y)
        if clip:
            X = np.clip(X, 0.0, 1.0)
            if ds.is_regression:
                y = np.clip(y, 0.0, 1.0)
        return ds.replace(X=X.reshape(ds.X.shape), y=y)

    return DatasetSplits(train=one(splits.train), test=one(splits.test), name=splits.name,
                         source=splits.source), mm
