"""The one data shape every part of mithridate shares.

A :class:`Dataset` holds features ``X`` (images as ``N x C x H x W`` float32 in [0, 1], tables as
``N x D`` float32), integer labels ``y`` (indices into ``classes``), stable sample ``ids``, a
metadata table (source, contributor, ingest time, content hash) and, only in simulation,
``is_poison``. It is immutable: attacks and filters return new datasets, and ids survive, so
every finding maps back to the user's rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from mithridate.errors import DataError

META_COLUMNS = ("source", "contributor", "ingest_time")


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def encode_labels(y: Any, classes: Optional[Sequence] = None) -> tuple[np.ndarray, tuple]:
    """Turn user labels (ints or strings) into indices ``0..K-1`` and the tuple of classes.

    Integral floats (``1.0``) count as ints; other floats, NaN and mixed types are refused.
    """
    raw = y
    y = np.asarray(y)
    if y.dtype.kind == "U" and not isinstance(raw, np.ndarray):
        y = np.asarray(list(raw), dtype=object)  # numpy would silently stringify [1, "a"]
    if y.ndim != 1:
        raise DataError(f"labels must be one-dimensional, got shape {y.shape}")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            bad = np.flatnonzero(~np.isfinite(y))
            raise DataError(f"labels contain NaN or infinite values ({len(bad)} rows, the first at data row "
                            f"{int(bad[0])}); drop or fix those rows")
        if not np.all(y == np.round(y)):
            raise DataError(
                "labels are non-integer numbers; classification labels must be integers or "
                "strings (for regression targets use a regression attack)"
            )
        y = y.astype(np.int64)
    if y.dtype.kind == "O":
        kinds = {type(v) for v in y.tolist()}
        missing = [i for i, v in enumerate(y.tolist()) if v is None or (isinstance(v, float) and np.isnan(v))]
        if missing:
            raise DataError(f"labels contain missing values ({len(missing)} rows, the first at data row {missing[0]}); "
                            "drop or fix those rows")
        if kinds <= {str}:
            y = y.astype(str)
        elif kinds <= {int, np.int64, np.int32}:
            y = y.astype(np.int64)
        else:
            raise DataError(
                f"labels must all be integers or all be strings, got a mix of "
                f"{sorted(k.__name__ for k in kinds)}"
            )
    if y.dtype.kind not in "iuU":
        raise DataError(f"labels must be integers or strings, got dtype {y.dtype}")
    if classes is None:
        classes_arr = np.unique(y)
    else:
        classes_arr = np.asarray(list(classes))
        if classes_arr.dtype.kind != y.dtype.kind and not (
            classes_arr.dtype.kind in "iu" and y.dtype.kind in "iu"
        ):
            try:
                classes_arr = classes_arr.astype(y.dtype)
            except (TypeError, ValueError):  # string classes for integer labels: "a" is no integer
                shown = [str(c) for c in classes_arr[:5]] + (["..."] if len(classes_arr) > 5 else [])
                raise DataError(
                    f"the labels are {'integers' if y.dtype.kind in 'iu' else 'strings'} but the classes are not "
                    f"({shown}); give labels and classes of one kind (e.g. labels as class names)") from None
    sorter = np.argsort(classes_arr, kind="stable")
    pos = np.searchsorted(classes_arr, y, sorter=sorter)
    pos = np.clip(pos, 0, len(classes_arr) - 1)
    idx = sorter[pos]
    if len(y) and not np.all(classes_arr[idx] == y):
        unknown = sorted(set(np.asarray(y).tolist()) - set(classes_arr.tolist()))[:5]
        raise DataError(f"labels {unknown} are not among the known classes {classes_arr.tolist()[:20]}")
    return idx.astype(np.int64), tuple(c.item() if hasattr(c, "item") else c for c in classes_arr)


def _check_targets(y: Any) -> np.ndarray:
    """Regression targets: one-dimensional finite numbers."""
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("regression targets must be numbers; this column holds non-numeric values") from None
    if y.ndim != 1:
        raise DataError(f"regression targets must be one-dimensional, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise DataError("regression targets contain NaN or infinite values; drop or fix those rows")
    return y


def _check_features(X: Any) -> np.ndarray:
    try:
        X = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"features could not be read as an array: {exc}") from None
    if X.dtype == object or X.dtype.kind not in "biuf":
        raise DataError(
            f"features must be numeric, got dtype {X.dtype}; encode categorical columns first "
            "or pass --features with the numeric columns only"
        )
    if X.ndim == 3:  # N x H x W greyscale images
        X = X[:, None, :, :]
    if X.ndim not in (2, 4):
        raise DataError(
            f"features must be N x D (table) or N x C x H x W (images), got shape {X.shape}"
        )
    X = np.array(X, dtype=np.float32, copy=True)  # never alias the caller's array
    if not np.all(np.isfinite(X)):
        bad = np.where(~np.isfinite(X.reshape(len(X), -1)).all(axis=1))[0]
        raise DataError(
            f"features contain NaN or infinite values in {len(bad)} rows (first: row {bad[0]}); "
            "impute or drop them first"
        )
    return X


@dataclass(frozen=True, eq=False)
class Dataset:
    """An immutable labelled dataset with provenance.

    Build one with :meth:`Dataset.from_arrays` (which validates), or get one from a loader in
    :mod:`mithridate.data`.

    Attributes
    ----------
    X : ndarray of float32, shape (n, d) or (n, c, h, w)
        Features. Images are channels-first floats in [0, 1].
    y : ndarray of int64, shape (n,)
        Class indices into ``classes``.
    classes : tuple
        The user's label values; ``classes[y[i]]`` is sample ``i``'s label as the user wrote it.
    ids : ndarray, shape (n,)
        Stable, unique sample ids (the user's id column, or row numbers).
    meta : DataFrame
        Per-sample provenance columns (``source``, ``contributor``, ``ingest_time``, and any
        extra ones); see :attr:`metadata` for the full table with content hashes.
    is_poison : ndarray of bool or None
        Ground truth, only in simulation (set by attacks). Detectors never read it.
    name : str
        A short name for reports.
    task : {"classification", "regression"}
        For regression, ``y`` holds float64 targets and ``classes`` is empty.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset.from_arrays(np.random.rand(6, 3), ["a", "b", "a", "b", "a", "b"])
    >>> ds.n_classes, ds.classes
    (2, ('a', 'b'))
    >>> ds.subset([0, 2]).ids.tolist()
    [0, 2]
    """

    X: np.ndarray
    y: np.ndarray
    classes: tuple
    ids: np.ndarray
    meta: pd.DataFrame = field(repr=False)
    is_poison: Optional[np.ndarray] = None
    name: str = "dataset"
    task: str = "classification"

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        X: Any,
        y: Any,
        *,
        ids: Optional[Iterable] = None,
        classes: Optional[Sequence] = None,
        meta: Optional[pd.DataFrame] = None,
        is_poison: Optional[Any] = None,
        name: str = "dataset",
        min_classes: int = 2,
        task: str = "classification",
    ) -> "Dataset":
        """Validate user arrays and build a Dataset.

        Raises :class:`~mithridate.errors.DataError` with a message saying what is wrong for
        empty data, mismatched lengths, NaN/inf features, labels that are neither integers nor
        strings, duplicate ids, or fewer than ``min_classes`` classes. With
        ``task="regression"`` the targets must be finite numbers instead.
        """
        X = _check_features(X)
        n = len(X)
        if n == 0:
            raise DataError("the dataset is empty (0 samples)")
        if X.ndim == 4 and X.shape[3] in (1, 3, 4) and X.shape[1] not in (1, 3, 4):
            import warnings

            warnings.warn(
                f"images of shape {tuple(X.shape)} are read as N x C x H x W ({X.shape[1]} channels of "
                f"{X.shape[2]} x {X.shape[3]} pixels); channels-last (N x H x W x C) images need "
                "numpy.moveaxis(X, -1, 1) first", UserWarning, stacklevel=2)
        if task == "regression":
            y_idx, classes_t = _check_targets(y), ()
        elif task == "classification":
            y_idx, classes_t = encode_labels(y, classes)
        else:
            raise DataError(f"task must be 'classification' or 'regression', got {task!r}")
        if len(y_idx) != n:
            raise DataError(f"features have {n} rows but labels have {len(y_idx)}; they must match")
        present = len(np.unique(y_idx)) if task == "classification" else min_classes
        if present < min_classes:
            raise DataError(
                f"the labels hold {present} class(es) ({[classes_t[i] for i in np.unique(y_idx)]}); "
                f"at least {min_classes} are needed"
            )
        if ids is None:
            ids_arr = np.arange(n, dtype=np.int64)
        else:
            ids_arr = np.array(list(ids) if not isinstance(ids, np.ndarray) else ids, copy=True)
            if len(ids_arr) != n:
                raise DataError(f"{len(ids_arr)} ids given for {n} samples")
            if len(pd.unique(ids_arr)) != n:
                dup = pd.Series(ids_arr).loc[pd.Series(ids_arr).duplicated()].iloc[0]
                raise DataError(f"ids must be unique; {dup!r} appears more than once")
        if meta is None:
            meta = pd.DataFrame(index=range(n))
        else:
            meta = pd.DataFrame(meta).reset_index(drop=True)
            if len(meta) != n:
                raise DataError(f"metadata has {len(meta)} rows for {n} samples")
        for col in META_COLUMNS:
            if col not in meta.columns:
                meta[col] = None
        if is_poison is not None:
            is_poison = np.array(is_poison, dtype=bool, copy=True)
            if is_poison.shape != (n,):
                raise DataError(f"is_poison must have shape ({n},), got {is_poison.shape}")
        return cls(X=X, y=y_idx, classes=classes_t, ids=ids_arr, meta=meta, is_poison=is_poison, name=name,
                   task=task)

    def __post_init__(self) -> None:
        object.__setattr__(self, "X", _readonly(np.asarray(self.X)))
        ydtype = np.float64 if self.task == "regression" else np.int64
        object.__setattr__(self, "y", _readonly(np.asarray(self.y, dtype=ydtype)))
        object.__setattr__(self, "ids", _readonly(np.asarray(self.ids)))
        if self.is_poison is not None:
            object.__setattr__(self, "is_poison", _readonly(np.asarray(self.is_poison, dtype=bool)))

    # -- basic properties ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.X)

    def __repr__(self) -> str:
        poison = "" if self.is_poison is None else f", poisoned={int(self.is_poison.sum())}"
        what = "task='regression'" if self.is_regression else f"classes={self.n_classes}"
        return f"Dataset(name={self.name!r}, n={len(self)}, shape={self.X.shape[1:]}, {what}{poison})"

    @property
    def is_regression(self) -> bool:
        return self.task == "regression"

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        """True for ``N x C x H x W`` image data."""
        return self.X.ndim == 4

    @property
    def n_features(self) -> int:
        return int(np.prod(self.X.shape[1:]))

    def class_counts(self) -> np.ndarray:
        if self.is_regression:
            raise DataError("a regression dataset has no classes")
        return np.bincount(self.y, minlength=self.n_classes)

    @cached_property
    def content_hashes(self) -> np.ndarray:
        """A content hash (BLAKE2b-128 of the feature bytes) per sample, as hex strings."""
        flat = np.ascontiguousarray(self.X.reshape(len(self), -1))
        return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in flat])

    @property
    def metadata(self) -> pd.DataFrame:
        """The full provenance table: id, label, metadata columns and content hash."""
        df = self.meta.copy()
        df.insert(0, "id", self.ids)
        df.insert(1, "label", self.labels)
        df["content_hash"] = self.content_hashes
        return df

    @property
    def labels(self) -> np.ndarray:
        """Labels as the user wrote them (``classes[y]``; the targets themselves for regression)."""
        if self.is_regression:
            return np.asarray(self.y)
        return np.asarray(self.classes, dtype=object)[self.y]

    # -- derivation (always returns a new Dataset) -----------------------------------------
    def subset(self, index: Any) -> "Dataset":
        """A new Dataset with the rows at ``index`` (positions or a boolean mask), ids kept."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(f"boolean mask must have shape ({len(self)},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        return Dataset(
            X=self.X[idx],
            y=self.y[idx],
            classes=self.classes,
            ids=self.ids[idx],
            meta=self.meta.iloc[idx].reset_index(drop=True),
            is_poison=None if self.is_poison is None else self.is_poison[idx],
            name=self.name,
            task=self.task,
        )

    def drop(self, mask: Any) -> "Dataset":
        """A new Dataset without the rows where ``mask`` is True."""
        mask = np.asarray(mask, dtype=bool)
        return self.subset(~mask)

    def replace(self, **changes: Any) -> "Dataset":
        """A new Dataset with some fields changed (``X``, ``y``, ``is_poison``, ``name`` ...)."""
        new = dataclasses.replace(self, **changes)
        n = len(new.X)
        if len(new.y) != n or len(new.ids) != n or len(new.meta) != n:
            raise DataError("replace() must keep X, y, ids and meta the same length")
        if new.is_poison is not None and len(new.is_poison) != n:
            raise DataError("replace() must keep is_poison the same length as X")
        return new

    def append(self, X: Any, y: Any, *, is_poison: bool = True, source: str = "appended") -> "Dataset":
        """A new Dataset with extra rows (e.g. an attack's inserted points) at the end.

        ``y`` holds class *indices* (floats for regression). New ids continue after the largest
        integer id, or are ``"<source>-<k>"`` strings when the ids are not integers; the new
        rows' metadata ``source`` column says ``source``. ``is_poison`` marks the new rows (the
        existing ground truth, or all False, is kept for the old ones).

        Examples
        --------
        >>> ds = Dataset.from_arrays(np.zeros((3, 2)), [0, 1, 0])
        >>> big = ds.append(np.ones((2, 2)), [1, 1])
        >>> big.ids.tolist(), big.is_poison.tolist()
        ([0, 1, 2, 3, 4], [False, False, False, True, True])
        """
        Xn = _check_features(X)
        if Xn.shape[1:] != self.X.shape[1:]:
            raise DataError(f"appended rows have shape {Xn.shape[1:]}, the dataset has {self.X.shape[1:]}")
        k = len(Xn)
        if self.is_regression:
            yn = _check_targets(y)
        else:
            yn = np.asarray(y)
            if yn.dtype.kind not in "iu" or (k and (yn.min() < 0 or yn.max() >= self.n_classes)):
                raise DataError(f"appended labels must be class indices in [0, {self.n_classes - 1}]")
            yn = yn.astype(np.int64)
        if len(yn) != k:
            raise DataError(f"{k} appended rows but {len(yn)} labels")
        if np.asarray(self.ids).dtype.kind in "iu":
            start = int(np.max(self.ids)) + 1 if len(self.ids) else 0
            new_ids = np.arange(start, start + k, dtype=np.int64)
            ids = np.concatenate([np.asarray(self.ids, dtype=np.int64), new_ids])
        else:
            taken = set(map(str, self.ids))
            new_ids, j = [], 0
            while len(new_ids) < k:
                cand = f"{source}-{j}"
                j += 1
                if cand not in taken:
                    new_ids.append(cand)
            ids = np.concatenate([np.asarray(self.ids, dtype=object), np.asarray(new_ids, dtype=object)])
        extra = pd.DataFrame({c: [None] * k for c in self.meta.columns})
        if "source" in extra.columns:
            extra["source"] = source
        meta = pd.concat([self.meta, extra], ignore_index=True) if k else self.meta
        old_gt = np.zeros(len(self), bool) if self.is_poison is None else np.asarray(self.is_poison, bool)
        gt = np.concatenate([old_gt, np.full(k, bool(is_poison))])
        return Dataset(X=np.concatenate([self.X, Xn.astype(self.X.dtype)]), y=np.concatenate([self.y, yn]),
                       classes=self.classes, ids=ids, meta=meta, is_poison=gt, name=self.name, task=self.task)

    def without_ground_truth(self) -> "Dataset":
        """The same data with ``is_poison`` removed (what a defender actually sees)."""
        return self.replace(is_poison=None)


@dataclass(frozen=True)
class DatasetSplits:
    """A training set and a test set that share their classes, plus where they came from."""

    train: Dataset
    test: Dataset
    name: str
    source: str = ""

    def __post_init__(self) -> None:
        if self.train.task != self.test.task:
            raise DataError("train and test splits must have the same task")
        if self.train.classes != self.test.classes:
            raise DataError("train and test splits must share the same classes")
