"""Loaders: turn the data people actually have into :class:`~mithridate.data.Dataset` splits.

Every loader returns a :class:`~mithridate.data.DatasetSplits` (a training set and a test set
that share their classes). Supported sources:

* scikit-learn's bundled classification sets (``digits`` as 1x8x8 images, ``breast_cancer``,
  ``wine``, ``iris`` as raw tabular features) -- :func:`load_sklearn`;
* Fashion-MNIST (or any set laid out as the four MNIST IDX files, plain or ``.gz``) --
  :func:`load_fashion_mnist`;
* NumPy ``.npz`` archives -- :func:`load_npz` / :func:`save_npz`;
* CSV, TSV and Parquet tables -- :func:`load_table`;
* folders of images, one sub-folder per class -- :func:`load_image_folder`;
* any of the above by name or path -- :func:`load_dataset`.

Conventions shared by all loaders:

* images are ``N x C x H x W`` float32 in [0, 1]; tables are ``N x D`` float32 with the user's
  raw values (scaling is left to models);
* ``ids`` always map back to the user's data: original row numbers, the id column, or the
  image's path relative to the folder;
* when a loader splits the data itself the split is stratified and seeded by
  ``random_state``; rows of each split come in a seeded random order (use ``ids`` to find
  the original rows);
* user files are never unpickled; bad input raises :class:`~mithridate.errors.DataError`
  (bad data) or :class:`~mithridate.errors.ConfigError` (bad arguments) with one message
  that says what is wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import inspect
import io
import os
import re
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd

from mithridate.data.dataset import Dataset, DatasetSplits, encode_labels
from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, atomic_path, check_fraction, check_random_state

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")  # = mithridate.data.text.JSONL_SUFFIXES

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_DEFAULT_DIR",
    "SKLEARN_DATASETS",
    "available_datasets",
    "find_fashion_mnist",
    "load_dataset",
    "load_fashion_mnist",
    "load_ground_truth",
    "load_image_folder",
    "load_npz",
    "load_sklearn",
    "select_classes",
    "load_table",
    "read_idx",
    "save_ground_truth",
    "save_npz",
]

#: Class names of Fashion-MNIST, in label order (label ``i`` is ``FASHION_MNIST_CLASSES[i]``).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: Environment variable naming a directory with the Fashion-MNIST IDX files.
FASHION_MNIST_ENV = "MITHRIDATE_FASHION_MNIST"
#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_FASHION_NAMES = ("fashion-mnist", "fashion_mnist", "fashionmnist", "fmnist")
_FASHION_MISSING_HINT = (
    "install the Debian package dataset-fashion-mnist or set "
    f"{FASHION_MNIST_ENV} to a directory holding the four IDX files"
)

#: scikit-learn's bundled classification sets: name -> (kind, loader function name).
SKLEARN_DATASETS = {
    "digits": ("image", "load_digits"),
    "breast_cancer": ("tabular", "load_breast_cancer"),
    "wine": ("tabular", "load_wine"),
    "iris": ("tabular", "load_iris"),
    "diabetes": ("regression", "load_diabetes"),
}
_KNOWN_NAMES = tuple(SKLEARN_DATASETS) + ("fashion-mnist",)

_TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Files and folders that operating systems and tools leave in image folders: never data, not worth a warning.
_JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx", "__pycache__", "icon\r"})

# IDX type codes (http://yann.lecun.com/exdb/mnist/): data is big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# ----------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _context(where: str) -> Iterator[None]:
    """Prefix any DataError raised inside with where it happened (a file, a split)."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def _as_path(path: Any, what: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"{what} must be a file path (str or Path), got {type(path).__name__}")
    return Path(os.path.expanduser(os.fspath(path)))


def _existing_file(path: Any) -> Path:
    p = _as_path(path)
    if not p.exists():
        raise DataError(f"file not found: {p}; check the path (relative paths start at {Path.cwd()})")
    if p.is_dir():
        raise DataError(f"{p} is a directory, but a file was expected")
    return p


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(_TABLE_SUFFIXES + (".npz",), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return path.stem or name


def _split_sizes(n: int, test_size: float) -> int:
    """Test samples drawn from a class of ``n`` samples (at least 1, at most n - 1)."""
    return int(min(max(int(np.floor(test_size * n + 0.5)), 1), n - 1))


def _stratified_indices(
    y: np.ndarray, classes: tuple, test_size: float, random_state: RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of positions ``0..n-1``; every class lands in both splits."""
    test_size = check_fraction(test_size, "test_size")
    rng = check_random_state(random_state)
    train_parts, test_parts = [], []
    order = np.argsort(y, kind="stable")
    counts = np.bincount(y, minlength=len(classes))
    start = 0
    for c, n in enumerate(counts):
        if n == 0:
            continue
        if n < 2:
            raise DataError(
                f"class {classes[c]!r} has only 1 sample, so it cannot appear in both the "
                "training and the test split; add samples, remove that class, or provide "
                "an explicit test set"
            )
        idx = rng.permutation(order[start : start + n])
        start += n
        k = _split_sizes(int(n), test_size)
        test_parts.append(idx[:k])
        train_parts.append(idx[k:])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return train, test


def _random_indices(n: int, test_size: float, random_state: RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Seeded plain (unstratified) split of positions ``0..n-1``, for regression targets."""
    test_size = check_fraction(test_size, "test_size")
    if n < 2:
        raise DataError(f"{n} sample(s) cannot be split into a training and a test set; add samples")
    perm = check_random_state(random_state).permutation(n)
    k = _split_sizes(n, test_size)
    return perm[k:], perm[:k]


def _split_dataset(
    full: Dataset, test_size: float, random_state: RandomState, name: str, source: str
) -> DatasetSplits:
    if full.is_regression:
        train_idx, test_idx = _random_indices(len(full), test_size, random_state)
    else:
        train_idx, test_idx = _stratified_indices(full.y, full.classes, test_size, random_state)
    return DatasetSplits(
        train=full.subset(train_idx), test=full.subset(test_idx), name=name, source=source
    )


def _from_indices(
    X: Any,
    y_idx: np.ndarray,
    classes: tuple,
    *,
    ids: Any = None,
    meta: Optional[pd.DataFrame] = None,
    is_poison: Any = None,
    name: str,
    min_classes: int = 2,
) -> Dataset:
    """Build a Dataset from class *indices* plus the tuple of class values (any type)."""
    ds = Dataset.from_arrays(
        X,
        y_idx,
        classes=tuple(range(len(classes))),
        ids=ids,
        meta=meta,
        is_poison=is_poison,
        name=name,
        min_classes=min_classes,
    )
    return ds.replace(classes=tuple(classes))


def _shared_classes(labels: Sequence[np.ndarray], names: Sequence[str]) -> tuple:
    """Classes over several label arrays (train, test), checked to be of one kind."""
    kinds = {}
    all_classes: list = []
    for y, nm in zip(labels, names):
        _, cls = encode_labels(y)
        kind = "strings" if cls and isinstance(cls[0], str) else "integers"
        kinds[nm] = kind
        all_classes.extend(cls)
    if len(set(kinds.values())) > 1:
        desc = ", ".join(f"{k} holds {v}" for k, v in kinds.items())
        raise DataError(f"labels must be of one kind in every split, but {desc}; convert them to match")
    return tuple(sorted(set(all_classes)))


def _check_limit(value: Optional[int], name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def _scale_images(X: np.ndarray, where: str) -> np.ndarray:
    """Integer images (0..255) -> float32 /255; float images must already be in [0, 1]."""
    if X.dtype == np.uint8:
        return X.astype(np.float32) / np.float32(255.0)
    if X.dtype.kind in "iu":
        lo, hi = (int(X.min()), int(X.max())) if X.size else (0, 0)
        if lo < 0 or hi > 255:
            raise DataError(
                f"{where} holds integer images with values in [{lo}, {hi}]; images must be "
                "uint8 0..255 or floats in [0, 1]; rescale them before saving"
            )
        return X.astype(np.float32) / np.float32(255.0)
    if X.dtype.kind == "b":
        return X.astype(np.float32)
    if X.dtype.kind == "f":
        X = X.astype(np.float32, copy=False)
        finite = X[np.isfinite(X)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise DataError(
                f"{where} holds float images with values in [{finite.min():g}, "
                f"{finite.max():g}]; images must be floats in [0, 1] (or uint8 0..255): "
                "divide by 255 or undo the normalisation before saving"
            )
        return X
    raise DataError(f"{where} has dtype {X.dtype}; images must be numeric")


def _to_channels_first(X: np.ndarray, layout: Optional[str] = None) -> np.ndarray:
    """N x H x W -> N x 1 x H x W; N x H x W x C (C in 1, 3, 4; H, W > 4) -> N x C x H x W."""
    if X.ndim == 3:
        return X[:, None, :, :]
    if X.ndim == 4:
        if layout == "NCHW":
            return X
        if layout == "NHWC" or (X.shape[3] in (1, 3, 4) and X.shape[1] > 4 and X.shape[2] > 4):
            return np.ascontiguousarray(X.transpose(0, 3, 1, 2))
    return X


# ----------------------------------------------------------------------------------------
# scikit-learn bundled sets
# ----------------------------------------------------------------------------------------
def _sklearn_key(name: str) -> Optional[str]:
    key = str(name).strip().lower().replace("-", "_")
    return key if key in SKLEARN_DATASETS else None


def _sklearn_bunch(key: str) -> Any:
    import sklearn.datasets

    return getattr(sklearn.datasets, SKLEARN_DATASETS[key][1])()


def load_sklearn(name: str, *, test_size: float = 0.3, random_state: RandomState = 0) -> DatasetSplits:
    """Load one of scikit-learn's bundled classification sets, split stratified.

    Parameters
    ----------
    name : {"digits", "breast_cancer", "wine", "iris", "diabetes"}
        ``"breast-cancer"`` is accepted too. ``digits`` comes as ``N x 1 x 8 x 8`` images in
        [0, 1] (pixel / 16); the others as raw float32 features (not standardised).
        ``diabetes`` is a regression set (``task="regression"``, float targets).
    test_size : float, default=0.3
        Fraction of each class put in the test split (of all rows for regression).
    random_state : int or numpy.random.Generator, default=0
        Seed of the split.

    Returns
    -------
    DatasetSplits
        ``ids`` are the row numbers in scikit-learn's array, so ``load_digits().images[ids]``
        gives the original samples. ``classes`` are scikit-learn's ``target_names``.

    Examples
    --------
    >>> splits = load_sklearn("digits")
    >>> splits.train.X.shape[1:], len(splits.train) + len(splits.test)
    ((1, 8, 8), 1797)
    >>> load_sklearn("breast-cancer").train.classes
    ('malignant', 'benign')
    """
    key = _sklearn_key(name)
    if key is None:
        raise DataError(
            f"unknown scikit-learn dataset {name!r}; choose one of {sorted(SKLEARN_DATASETS)}"
        )
    bunch = _sklearn_bunch(key)
    if key == "digits":
        X = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]
    else:
        X = np.asarray(bunch.data, dtype=np.float32)
    if SKLEARN_DATASETS[key][0] == "regression":
        full = Dataset.from_arrays(X, np.asarray(bunch.target, dtype=np.float64), task="regression",
                                   ids=np.arange(len(X), dtype=np.int64), name=key)
        return _split_dataset(full, test_size, random_state, name=key, source="scikit-learn (bundled)")
    classes = tuple(c.item() if hasattr(c, "item") else c for c in np.asarray(bunch.target_names))
    y = np.asarray(bunch.target, dtype=np.int64)
    full = _from_indices(X, y, classes, ids=np.arange(len(y), dtype=np.int64), name=key)
    return _split_dataset(full, test_size, random_state, name=key, source="scikit-learn (bundled)")


# ----------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)
# ----------------------------------------------------------------------------------------
def _read_raw(path: Path, nbytes: Optional[int] = None) -> bytes:
    """Bytes of a plain or gzip file (all, or the first ``nbytes``)."""
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read() if nbytes is None else fh.read(nbytes)
        with open(path, "rb") as fh:
            return fh.read() if nbytes is None else fh.read(nbytes)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is not a valid gzip file or is truncated ({exc}); download it again"
        ) from None
    except OSError as exc:
        raise DataError(f"could not read {path}: {exc.strerror or exc}") from None


def _idx_header(buf: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(buf) < 4:
        raise DataError(f"{path} is truncated ({len(buf)} bytes); an IDX file starts with a 4-byte magic number")
    code, ndim = buf[2], buf[3]
    if buf[0] != 0 or buf[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        magic = int.from_bytes(buf[:4], "big")
        raise DataError(
            f"{path} is not an IDX file (magic number 0x{magic:08X}; expected 0x0000TTDD with a "
            "known type TT such as 08 for unsigned bytes); check that it is an MNIST-style file"
        )
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{path} is truncated inside its header; download it again")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    return _IDX_DTYPES[code], tuple(int(d) for d in dims), header


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzip-compressed, into a NumPy array.

    The magic number, the dimensions and the file size are checked; a wrong magic number or a
    truncated file raises :class:`~mithridate.errors.DataError`.

    Parameters
    ----------
    path : str or Path
        An IDX file, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.

    Returns
    -------
    ndarray
        Read-only array with the dimensions from the header, in native byte order.

    Examples
    --------
    >>> labels = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
    >>> labels.shape  # doctest: +SKIP
    (10000,)
    """
    p = _existing_file(path)
    buf = _read_raw(p)
    dtype, dims, header = _idx_header(buf, p)
    count = int(np.prod(dims, dtype=np.int64))
    need = header + count * dtype.itemsize
    if len(buf) < need:
        raise DataError(
            f"{p} is truncated: its header announces shape {dims} ({need} bytes) but the file "
            f"holds {len(buf)} bytes; download it again"
        )
    if len(buf) > need:
        raise DataError(
            f"{p} has {len(buf) - need} bytes after the data announced by its header "
            f"(shape {dims}); the file is corrupt or not an IDX file"
        )
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=header).reshape(dims)
    if dtype.byteorder == ">":
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _fashion_file(directory: Path, base: str) -> Optional[Path]:
    for candidate in (directory / base, directory / (base + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _fashion_files(directory: Path) -> tuple[dict, list]:
    found, missing = {}, []
    for key, base in _FASHION_FILES.items():
        f = _fashion_file(directory, base)
        if f is None:
            missing.append(base + "[.gz]")
        else:
            found[key] = f
    return found, missing


def _fashion_candidates(directory: Optional[PathLike]) -> tuple[Path, str]:
    """The directory to look in and how it was chosen (for messages)."""
    if directory is not None:
        return _as_path(directory, "directory"), "the directory argument"
    env = os.environ.get(FASHION_MNIST_ENV)
    if env:
        return Path(os.path.expanduser(env)), f"${FASHION_MNIST_ENV}"
    return FASHION_MNIST_DEFAULT_DIR, "the default location"


def find_fashion_mnist(directory: Optional[PathLike] = None) -> Optional[Path]:
    """Find a directory holding the four Fashion-MNIST IDX files (plain or ``.gz``).

    Looks in ``directory`` if given, else in ``$MITHRIDATE_FASHION_MNIST``, else in
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package).

    Returns
    -------
    Path or None
        The directory, or None when any of the four files is missing there.

    Examples
    --------
    >>> find_fashion_mnist()  # doctest: +SKIP
    PosixPath('/usr/share/datasets/fashion-mnist')
    """
    d, _ = _fashion_candidates(directory)
    if not d.is_dir():
        return None
    _, missing = _fashion_files(d)
    return None if missing else d


def _fashion_split(images_path: Path, labels_path: Path, limit: Optional[int], split: str) -> tuple:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path} should hold unsigned-byte images (N x H x W), got {images.dtype} "
            f"with shape {images.shape}; the image and label files may be swapped"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{labels_path} should hold unsigned-byte labels (N), got {labels.dtype} with "
            f"shape {labels.shape}; the image and label files may be swapped"
        )
    if len(images) != len(labels):
        raise DataError(
            f"the {split} split has {len(images)} images ({images_path.name}) but "
            f"{len(labels)} labels ({labels_path.name}); the files do not belong together"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataError(
            f"{labels_path} holds label {int(labels.max())}; Fashion-MNIST labels are 0..9"
        )
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    X = images.astype(np.float32)
    X /= np.float32(255.0)
    return X[:, None, :, :], labels.astype(np.int64)


def load_fashion_mnist(
    directory: Optional[PathLike] = None,
    *,
    limit_train: Optional[int] = None,
    limit_test: Optional[int] = None,
) -> DatasetSplits:
    """Load Fashion-MNIST from its four IDX files (plain or ``.gz``).

    Parameters
    ----------
    directory : str or Path, optional
        Folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each may end in ``.gz``).
        Default: ``$MITHRIDATE_FASHION_MNIST``, else ``/usr/share/datasets/fashion-mnist``
        (where ``apt install dataset-fashion-mnist`` puts them).
    limit_train, limit_test : int, optional
        Keep only the first N samples of each split (deterministic; Fashion-MNIST's files are
        already shuffled, so the first N are close to balanced).

    Returns
    -------
    DatasetSplits
        Images ``N x 1 x 28 x 28`` float32 in [0, 1]; ``y`` in 0..9 with ``classes`` the ten
        class names (``"T-shirt/top"`` ... ``"Ankle boot"``); ``ids`` are the row numbers in
        each file (so train and test ids overlap: they index different files).

    Examples
    --------
    >>> splits = load_fashion_mnist(limit_train=1000)  # doctest: +SKIP
    >>> splits.train.X.shape, splits.train.classes[9]  # doctest: +SKIP
    ((1000, 1, 28, 28), 'Ankle boot')
    """
    limit_train = _check_limit(limit_train, "limit_train")
    limit_test = _check_limit(limit_test, "limit_test")
    d, how = _fashion_candidates(directory)
    if not d.is_dir():
        raise DataError(
            f"Fashion-MNIST directory {d} (from {how}) does not exist; {_FASHION_MISSING_HINT}"
        )
    files, missing = _fashion_files(d)
    if missing:
        raise DataError(
            f"Fashion-MNIST files missing in {d} (from {how}): {', '.join(missing)}; "
            f"{_FASHION_MISSING_HINT}"
        )
    Xtr, ytr = _fashion_split(files["train_images"], files["train_labels"], limit_train, "train")
    Xte, yte = _fashion_split(files["test_images"], files["test_labels"], limit_test, "test")
    if Xtr.shape[1:] != Xte.shape[1:]:
        raise DataError(
            f"train images are {Xtr.shape[2]}x{Xtr.shape[3]} but test images are "
            f"{Xte.shape[2]}x{Xte.shape[3]}; the files do not belong together"
        )
    name = "fashion-mnist"
    with _context("Fashion-MNIST training split"):
        train = _from_indices(
            Xtr, ytr, FASHION_MNIST_CLASSES, ids=np.arange(len(ytr), dtype=np.int64), name=name
        )
    with _context("Fashion-MNIST test split"):
        test = _from_indices(
            Xte, yte, FASHION_MNIST_CLASSES, ids=np.arange(len(yte), dtype=np.int64),
            name=name, min_classes=1,
        )
    return DatasetSplits(train=train, test=test, name=name, source=str(d))


# ----------------------------------------------------------------------------------------
# npz
# ----------------------------------------------------------------------------------------
# other names people give the arrays (scikit-learn's data/target, Keras-style train_images, ...),
# read as the canonical keys when those are absent (lower case; the archive's case does not matter)
_NPZ_SPLIT_ALIASES = {
    "x_train": ("train_x", "train_images", "train_data", "train_features", "images_train", "data_train",
                "features_train", "x_tr"),
    "y_train": ("train_y", "train_labels", "train_targets", "labels_train", "targets_train", "y_tr"),
    "x_test": ("test_x", "test_images", "test_data", "test_features", "images_test", "data_test",
               "features_test", "x_te"),
    "y_test": ("test_y", "test_labels", "test_targets", "labels_test", "targets_test", "y_te"),
}
_NPZ_SINGLE_ALIASES = {
    "x": ("data", "features", "inputs", "images", "samples"),
    "y": ("target", "targets", "labels", "label"),
}


class _NpzReader:
    """Case-insensitive, pickle-refusing access to an ``.npz`` archive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            archive = np.load(path, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{path} is not a readable .npz archive ({exc}); save it with numpy.savez") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path} holds a single array (.npy), not an .npz archive with x_train/y_train/"
                "x_test/y_test (or x/y); save it with numpy.savez"
            )
        self.archive = archive
        self.files = list(archive.files)
        self.keys: dict[str, str] = {}
        for key in archive.files:
            low = key.lower()
            if low in self.keys:
                raise DataError(
                    f"{path} holds both {self.keys[low]!r} and {key!r}; keep only one of them"
                )
            self.keys[low] = key
        split = self._aliases(_NPZ_SPLIT_ALIASES)
        has = lambda k: k in self.keys or k in split  # noqa: E731
        # a stray split-style name (train_images beside images/labels) is not a split layout
        if any(k in self.keys for k in _NPZ_SPLIT_ALIASES) or (has("x_train") and has("y_train")):
            self.keys.update(split)
        if not any(k in self.keys for k in _NPZ_SPLIT_ALIASES):
            self.keys.update(self._aliases(_NPZ_SINGLE_ALIASES))

    def _aliases(self, table: dict) -> dict:
        """Other common names (``data``/``target``, ``train_images``/``train_labels``, ...) for the
        canonical keys: canonical key -> the archive's name, where the canonical key is absent and
        exactly one alias is present."""
        out = {}
        for canonical, names in table.items():
            if canonical in self.keys:
                continue
            found = [n for n in names if n in self.keys]
            if len(found) > 1:
                raise DataError(f"{self.path} holds {', '.join(repr(self.keys[n]) for n in found)}: which one is "
                                f"{canonical!r}? Rename it to {canonical!r} (or remove the others)")
            if found:
                out[canonical] = self.keys[found[0]]
        return out

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def get(self, key: str) -> Optional[np.ndarray]:
        if key not in self.keys:
            return None
        real = self.keys[key]
        try:
            arr = self.archive[real]
            return _label_vector(arr, real, self.path) if key in ("y", "y_train", "y_test") else arr
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise DataError(
                    f"array {real!r} in {self.path} is a pickled object array, which mithridate "
                    "refuses to load (unpickling can run arbitrary code); save numbers as "
                    "numeric arrays and strings as numpy unicode arrays (dtype 'U')"
                ) from None
            raise DataError(f"array {real!r} in {self.path} could not be read ({exc})") from None
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise DataError(f"array {real!r} in {self.path} is corrupt ({exc})") from None

    def close(self) -> None:
        self.archive.close()


def _label_vector(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Labels as a vector: a column (N x 1, as Keras saves CIFAR-10's) is squeezed and one-hot rows
    (N x K of 0/1, one 1 per row) become class indices; anything else is left for the caller to refuse."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim == 2 and y.shape[1] > 1 and y.dtype.kind in "biuf" and len(y):
        ones = y == 1
        if bool(np.all(ones | (y == 0))) and bool(np.all(ones.sum(axis=1) == 1)):
            warnings.warn(f"{path}: {key!r} is one-hot ({y.shape[0]} x {y.shape[1]}); read as class indices 0..{y.shape[1] - 1}",
                          UserWarning, stacklevel=3)
            return np.argmax(y, axis=1)
    return y


def _npz_classes(raw: np.ndarray, path: Path) -> tuple:
    classes = np.asarray(raw)
    if classes.ndim != 1 or len(classes) == 0:
        raise DataError(f"'classes' in {path} must be a non-empty 1-D array, got shape {classes.shape}")
    if classes.dtype.kind == "S":
        classes = classes.astype(str)
    if classes.dtype.kind == "f" and np.all(np.isfinite(classes)) and np.all(classes == np.round(classes)):
        classes = classes.astype(np.int64)
    if classes.dtype.kind not in "iuU":
        raise DataError(f"'classes' in {path} must hold strings or integers, got dtype {classes.dtype}")
    if len(np.unique(classes)) != len(classes):
        raise DataError(f"'classes' in {path} lists a class twice; class values must be unique")
    return tuple(c.item() for c in classes)


def _npz_label_indices(y: np.ndarray, n_classes: int, key: str, path: Path) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{key!r} in {path} must be one-dimensional, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(
                f"{key!r} in {path} holds non-integer values, but with a 'classes' array the "
                "labels must be integer indices into it"
            )
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise DataError(
            f"{key!r} in {path} has dtype {y.dtype}; with a 'classes' array the labels must be "
            "integer indices into it (or drop 'classes' to use the label values themselves)"
        )
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(
            f"{key!r} in {path} holds index {int(y.min() if y.min() < 0 else y.max())}, outside "
            f"0..{n_classes - 1} for the {n_classes} entries of 'classes'"
        )
    return y


def _npz_features(X: np.ndarray, key: str, path: Path, layout: Optional[str]) -> np.ndarray:
    if X.dtype.kind not in "biuf":
        raise DataError(f"{key!r} in {path} has dtype {X.dtype}; features must be numeric")
    if X.ndim in (3, 4):
        X = _scale_images(X, f"{key!r} in {path}")
        X = _to_channels_first(X, layout)
    return X


def load_npz(path: PathLike, *, test_size: float = 0.3, random_state: RandomState = 0,
             task: Optional[str] = None) -> DatasetSplits:
    """Load a dataset from a NumPy ``.npz`` archive (never unpickles).

    Recognised keys (any letter case: ``X_train`` works like ``x_train``):

    * ``x_train``, ``y_train``, ``x_test``, ``y_test`` -- a ready split; or
    * ``x``, ``y`` -- one array pair, split stratified with ``test_size`` / ``random_state``;
    * other common names are read as these when the keys above are absent: ``data``,
      ``features``, ``inputs``, ``images`` or ``samples`` for ``x``; ``target(s)`` or
      ``label(s)`` for ``y``; ``train_images``/``train_labels``, ``train_x``/``train_y``,
      ``train_data``, ... (and the ``test_`` counterparts) for the split keys;
    * optional ``ids_train``, ``ids_test`` (or ``ids`` with ``x``/``y``): sample ids
      (default: row numbers);
    * optional ``classes``: 1-D strings or ints; ``y`` are then indices into it;
    * optional ``is_poison_train`` (or ``is_poison``): ground truth of a simulated poisoning;
    * optional ``layout``: ``"NCHW"`` or ``"NHWC"`` to say how 4-D images are laid out
      (written by :func:`save_npz`; otherwise guessed, see below);
    * optional ``task``: ``"regression"`` for numeric targets (written by :func:`save_npz`).

    Images may be ``N x H x W``, ``N x C x H x W`` or channels-last ``N x H x W x C`` (with C
    in 1, 3, 4 and H, W > 4); they become ``N x C x H x W``. uint8 (or other integer 0..255)
    images are divided by 255; float images must already be in [0, 1]. 2-D arrays are tables
    and keep their raw values.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.
    test_size : float, default=0.3
        Test fraction per class, only used with the ``x``/``y`` layout.
    random_state : int or numpy.random.Generator, default=0
        Seed of that split.
    task : {"classification", "regression"}, optional
        Overrides the file's ``task`` entry (default: classification).

    Returns
    -------
    DatasetSplits

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> np.savez("toy.npz", x=rng.random((40, 3)), y=np.repeat(["cat", "dog"], 20))  # doctest: +SKIP
    >>> load_npz("toy.npz").train.classes  # doctest: +SKIP
    ('cat', 'dog')
    """
    p = _existing_file(path)
    if task not in (None, "classification", "regression"):
        raise ConfigError(f"task must be 'classification' or 'regression', got {task!r}")
    reader = _NpzReader(p)
    try:
        if task is None and "task" in reader:
            task = str(np.asarray(reader.get("task")).reshape(-1)[0]).lower()
            if task not in ("classification", "regression"):
                raise DataError(f"'task' in {p} must be 'classification' or 'regression', got {task!r}")
        if task == "regression":
            return _load_npz_regression(reader, p, test_size, random_state)
        return _load_npz(reader, p, test_size, random_state)
    finally:
        reader.close()


def _load_npz_regression(reader: "_NpzReader", p: Path, test_size: float, random_state: RandomState) -> DatasetSplits:
    name = _stem(p)
    if "x_train" in reader:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in reader]
        if missing:
            raise DataError(f"{p} lacks {', '.join(repr(k) for k in missing)}; it holds: {sorted(reader.files)}")
        is_poison = reader.get("is_poison_train")
        with _context(f"{p} (training split)"):
            train = Dataset.from_arrays(_npz_features(reader.get("x_train"), "x_train", p, None), reader.get("y_train"),
                                        ids=reader.get("ids_train"), is_poison=is_poison, name=name, task="regression")
        with _context(f"{p} (test split)"):
            test = Dataset.from_arrays(_npz_features(reader.get("x_test"), "x_test", p, None), reader.get("y_test"),
                                       ids=reader.get("ids_test"), name=name, task="regression")
        if train.X.shape[1:] != test.X.shape[1:]:
            raise DataError(f"in {p}, x_train and x_test have different feature shapes")
        return DatasetSplits(train=train, test=test, name=name, source=str(p))
    if "x" not in reader or "y" not in reader:
        raise DataError(f"{p} holds neither x_train/y_train/x_test/y_test nor x/y; it holds: {sorted(reader.files)}")
    with _context(str(p)):
        full = Dataset.from_arrays(_npz_features(reader.get("x"), "x", p, None), reader.get("y"), ids=reader.get("ids"),
                                   is_poison=reader.get("is_poison"), name=name, task="regression")
    return _split_dataset(full, test_size, random_state, name=name, source=str(p))


def _load_npz(reader: _NpzReader, p: Path, test_size: float, random_state: RandomState) -> DatasetSplits:
    split_keys = ("x_train", "y_train", "x_test", "y_test")
    has_split = [k for k in split_keys if k in reader]
    has_single = "x" in reader or "y" in reader
    available = sorted(reader.files)
    if has_split and has_single:
        raise DataError(
            f"{p} holds both a ready split ({', '.join(has_split)}) and a single x/y pair; "
            "keep only one layout"
        )
    if not has_split and not has_single:
        raise DataError(
            f"{p} holds none of the expected arrays (x_train, y_train, x_test, y_test, or x "
            f"and y; or data/target, images/labels, train_images/train_labels, ...); it holds: {available}"
        )
    name = _stem(p)
    layout = None
    if "layout" in reader:
        layout = str(np.asarray(reader.get("layout")).reshape(-1)[0]).upper()
        if layout not in ("NCHW", "NHWC"):
            raise DataError(f"'layout' in {p} must be 'NCHW' or 'NHWC', got {layout!r}")
    classes = _npz_classes(reader.get("classes"), p) if "classes" in reader else None

    if has_single:
        missing = [k for k in ("x", "y") if k not in reader]
        if missing:
            raise DataError(f"{p} has x/y layout but lacks {missing[0]!r} (or one of "
                            f"{', '.join(_NPZ_SINGLE_ALIASES[missing[0]])}); it holds: {available}")
        X = _npz_features(reader.get("x"), "x", p, layout)
        y = reader.get("y")
        ids = reader.get("ids")
        is_poison = reader.get("is_poison")
        with _context(str(p)):
            if classes is not None:
                y_idx = _npz_label_indices(y, len(classes), "y", p)
                full = _from_indices(X, y_idx, classes, ids=ids, is_poison=is_poison, name=name)
            else:
                full = Dataset.from_arrays(X, y, ids=ids, is_poison=is_poison, name=name)
        return _split_dataset(full, test_size, random_state, name=name, source=str(p))

    missing = [k for k in split_keys if k not in reader]
    if missing:
        raise DataError(
            f"{p} lacks {', '.join(repr(k) for k in missing)}; a split archive needs x_train, "
            f"y_train, x_test and y_test (or a single x/y pair); it holds: {available}"
        )
    Xtr = _npz_features(reader.get("x_train"), "x_train", p, layout)
    Xte = _npz_features(reader.get("x_test"), "x_test", p, layout)
    if Xtr.ndim != Xte.ndim or Xtr.shape[1:] != Xte.shape[1:]:
        raise DataError(
            f"in {p}, x_train has samples of shape {Xtr.shape[1:]} but x_test has "
            f"{Xte.shape[1:]}; both splits must have the same features"
        )
    ytr, yte = reader.get("y_train"), reader.get("y_test")
    for key, arr in (("y_train", ytr), ("y_test", yte)):
        if arr.ndim != 1:
            raise DataError(f"{key!r} in {p} must be one-dimensional, got shape {arr.shape}")
    ids_tr, ids_te = reader.get("ids_train"), reader.get("ids_test")
    is_poison = reader.get("is_poison_train")
    if is_poison is None:
        is_poison = reader.get("is_poison")
    if classes is not None:
        ytr_idx = _npz_label_indices(ytr, len(classes), "y_train", p)
        yte_idx = _npz_label_indices(yte, len(classes), "y_test", p)
        with _context(f"{p} (training split)"):
            train = _from_indices(Xtr, ytr_idx, classes, ids=ids_tr, is_poison=is_poison, name=name)
        with _context(f"{p} (test split)"):
            test = _from_indices(Xte, yte_idx, classes, ids=ids_te, name=name, min_classes=1)
    else:
        with _context(str(p)):
            shared = _shared_classes([ytr, yte], ["y_train", "y_test"])
        with _context(f"{p} (training split)"):
            train = Dataset.from_arrays(Xtr, ytr, ids=ids_tr, classes=shared, is_poison=is_poison, name=name)
        with _context(f"{p} (test split)"):
            test = Dataset.from_arrays(Xte, yte, ids=ids_te, classes=shared, name=name, min_classes=1)
    return DatasetSplits(train=train, test=test, name=name, source=str(p))


def _plain_array(values: Any, what: str) -> np.ndarray:
    """ids/classes as a numeric or unicode array (never object), so allow_pickle=False works."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuU":
        return arr
    if arr.dtype.kind == "S":
        return arr.astype(str)
    if arr.dtype.kind == "f":
        return arr
    items = arr.tolist()
    if all(isinstance(v, str) for v in items):
        return np.asarray(items, dtype=str)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        if all(-2**63 <= int(v) < 2**63 for v in items):
            return np.asarray(items, dtype=np.int64)
        return np.asarray([str(v) for v in items], dtype=str)  # beyond int64 (20-digit ids): as written
    raise DataError(
        f"{what} mix types ({sorted({type(v).__name__ for v in items})}); they must all be "
        "strings or all integers to be saved without pickling"
    )


def save_npz(
    splits: DatasetSplits,
    path: PathLike,
    *,
    include_ground_truth: bool = False,
    compress: bool = False,
) -> Path:
    """Write splits to an ``.npz`` archive that :func:`load_npz` reads back exactly.

    Keys written: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (``y`` as int indices),
    ``ids_train``, ``ids_test``, ``classes`` (a unicode or integer array -- never objects, so
    the file loads with ``allow_pickle=False``), ``layout`` (``"NCHW"``, for images),
    ``task`` (``"regression"`` for regression targets, stored as float64 ``y``), and
    ``is_poison_train`` only if ``include_ground_truth`` and the training set has ground
    truth. Metadata columns (contributor, source ...) are not stored.

    The file is written atomically. As with :func:`numpy.savez`, ``.npz`` is appended to a
    name without that suffix.

    Parameters
    ----------
    splits : DatasetSplits
    path : str or Path
    include_ground_truth : bool, default=False
        Also store ``is_poison_train`` (for sharing a simulated poisoning with its answers).
    compress : bool, default=False
        Use :func:`numpy.savez_compressed`.

    Returns
    -------
    Path
        The path written.

    Examples
    --------
    >>> splits = load_sklearn("iris")
    >>> out = save_npz(splits, "iris.npz")  # doctest: +SKIP
    >>> load_npz(out).train.ids.tolist() == splits.train.ids.tolist()  # doctest: +SKIP
    True
    """
    if not isinstance(splits, DatasetSplits):
        raise ConfigError(f"save_npz expects a DatasetSplits, got {type(splits).__name__}")
    p = _as_path(path)
    if p.suffix.lower() != ".npz":
        p = p.with_name(p.name + ".npz")
    train, test = splits.train, splits.test
    ydtype = np.float64 if train.is_regression else np.int64
    arrays = {
        "x_train": np.asarray(train.X),
        "y_train": np.asarray(train.y, dtype=ydtype),
        "x_test": np.asarray(test.X),
        "y_test": np.asarray(test.y, dtype=ydtype),
        "ids_train": _plain_array(train.ids, "training ids"),
        "ids_test": _plain_array(test.ids, "test ids"),
    }
    if train.is_regression:
        arrays["task"] = np.array("regression")
    else:
        arrays["classes"] = _plain_array(list(train.classes), "classes")
    if train.X.ndim == 4:
        arrays["layout"] = np.array("NCHW")
    if include_ground_truth and train.is_poison is not None:
        arrays["is_poison_train"] = np.asarray(train.is_poison, dtype=bool)
    saver = np.savez_compressed if compress else np.savez
    with atomic_path(p) as tmp:
        with open(tmp, "wb") as fh:  # a file object: numpy appends no suffix
            saver(fh, **arrays)
    return p


# ----------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------
def _table_kind(p: Path) -> str:
    low = p.name.lower()
    if low.endswith((".csv", ".csv.gz")):
        return "csv"
    if low.endswith((".tsv", ".tsv.gz")):
        return "tsv"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    raise DataError(
        f"cannot tell the format of {p} from its name; supported table files end in "
        f"{', '.join(_TABLE_SUFFIXES)}"
    )


def _csv_separator(p: Path, kind: str) -> str:
    """The field separator of a CSV/TSV file: ``,`` (CSV) or a tab (TSV) as the name says, unless
    the header line splits into more fields (quotes respected) on ``;`` (spreadsheets in locales
    whose decimal mark is a comma write such "CSV"), a tab or ``|`` -- then that one."""
    default = "," if kind == "csv" else "\t"
    try:
        with (gzip.open(p, "rb") if p.name.lower().endswith(".gz") else open(p, "rb")) as fh:
            head = fh.readline(65536).decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error):
        return default  # the reader reports the problem
    fields = {}
    for sep in (default, ";", "\t", "|", ","):  # the header's field count under each, quotes respected
        try:
            fields[sep] = len(next(csv.reader([head.rstrip("\r\n")], delimiter=sep)))
        except (csv.Error, StopIteration):
            fields[sep] = 0
    best = max(fields, key=lambda k: (fields[k], k == default))
    return best if fields[best] > fields[default] else default


_COMMA_NUMBER = re.compile(r"^\s*[-+]?(\d+(,\d*)?|,\d+)([eE][-+]?\d+)?\s*$")


def _decimals_as_floats(df: pd.DataFrame) -> pd.DataFrame:
    """Parquet ``decimal128`` columns (money in warehouse exports) come back as Python ``Decimal``
    objects: read them as float64 numbers, as a CSV of the same values would be."""
    import decimal

    out = df
    for col in df.columns:
        values = df[col]
        if values.dtype != object:
            continue
        present = values.dropna()
        if len(present) and all(isinstance(v, decimal.Decimal) for v in present):
            if out is df:
                out = df.copy()
            out[col] = pd.to_numeric(values.map(lambda v: None if v is None else float(v)), errors="coerce")
    return out


_THOUSANDS = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+\s*$")
_PLAIN_BIG_INT = re.compile(r"^\s*[-+]?\d{4,}\s*$")


def _comma_decimals(df: pd.DataFrame, skip: Sequence[str] = (), where: str = "the file") -> pd.DataFrame:
    """In a ``;``-separated file, text columns whose every value is a number written with a
    decimal comma (``0,513``) become numbers; anything else (and the columns in ``skip``) stays
    as read.

    A comma is also a thousands separator (``68,490``). When the file writes decimals with a
    point elsewhere (a float column), a column of ``68,490``-style values is read with ``,`` as the
    thousands separator; when nothing tells the two apart (``68,490`` next to ``36150``), the
    column stays text and a warning names it."""
    dot_decimals = any(pd.api.types.is_float_dtype(df[c].dtype)
                       and bool((df[c].dropna() % 1 != 0).any()) for c in df.columns if c not in skip)
    out = df
    for col in df.columns:
        if col in skip:
            continue
        values = df[col]
        if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
            continue
        present = values.dropna()
        if not len(present) or not all(isinstance(v, str) for v in present):
            continue
        if not (any("," in v for v in present) and all(_COMMA_NUMBER.match(v) for v in present)):
            continue
        with_comma = [v for v in present if "," in v]
        thousands = all(_THOUSANDS.match(v) for v in with_comma)
        if thousands and dot_decimals:
            reading, text = values.str.replace(",", "", regex=False), None
        elif dot_decimals:
            reading, text = None, "the file writes other decimals with '.'"
        elif thousands and any(_PLAIN_BIG_INT.match(v) for v in present):
            example = next(v for v in present if _PLAIN_BIG_INT.match(v))
            reading, text = None, f"{with_comma[0].strip()!r} next to {example.strip()!r}"
        else:
            reading, text = values.str.replace(",", ".", regex=False), None
        if reading is None:
            warnings.warn(f"{where}: column {col!r} has numbers with a comma ({text}): the comma could be a decimal "
                          "mark or a thousands separator, so the column is left as text (not a feature); write the "
                          "numbers without thousands separators", UserWarning, stacklevel=4)
            continue
        if out is df:
            out = df.copy()
        out[col] = pd.to_numeric(reading, errors="coerce")
    return out


#: Tables larger than this are read in chunks of :data:`TABLE_CHUNK_ROWS` rows, with a progress bar.
TABLE_CHUNK_BYTES = 64 * 2**20
TABLE_CHUNK_ROWS = 100_000


@contextlib.contextmanager
def _read_progress(enabled: bool, description: str, total: int, unit: str) -> Iterator[Any]:
    """A transient rich bar on stderr (a no-op callable when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn(f"{{task.percentage:>3.0f}}% of {unit}"),
                  TimeElapsedColumn(), transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=max(int(total), 1))
        yield lambda n: bar.update(task, completed=n)


def _read_chunked(p: Path, kind: str, progress: bool, sep: Optional[str], text_columns: Sequence[str] = ()
                  ) -> pd.DataFrame:
    """Read a large table in chunks (Parquet record batches, CSV row blocks) with a progress bar.

    The chunks are concatenated as pandas would have read the whole file (a column that is an
    integer in one chunk and a float in another becomes float; mixed text stays text).
    """
    parts = []
    if kind == "parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(p)
        total = pf.metadata.num_rows
        with _read_progress(progress, f"reading {p.name}", total, f"{total:,} rows") as update:
            done = 0
            for batch in pf.iter_batches(batch_size=TABLE_CHUNK_ROWS):
                parts.append(batch.to_pandas())
                done += batch.num_rows
                update(done)
        if not parts:
            return pf.schema_arrow.empty_table().to_pandas()
    else:
        compression = "gzip" if p.name.lower().endswith(".gz") else None
        total = p.stat().st_size
        with open(p, "rb") as raw, _read_progress(progress, f"reading {p.name}", total,
                                                  f"{total / 2**20:,.0f} MiB") as update:
            reader = pd.read_csv(raw, sep=sep, chunksize=TABLE_CHUNK_ROWS, compression=compression,
                                 dtype=_as_text(text_columns))
            for chunk in reader:
                parts.append(chunk)
                update(raw.tell())
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _check_unique_header(p: Path, sep: Optional[str]) -> None:
    """Refuse a CSV whose header names a column twice (pandas would read the second as 'x.1',
    and which of them the label, id or a feature means is a guess)."""
    try:
        head = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    except Exception:  # the whole file was just read; a failure here leaves the check undone
        return
    seen, dup = set(), []
    for h in head:
        if h in seen and h not in dup:
            dup.append(h)
        seen.add(h)
    if dup:
        raise DataError(f"{p}: the header names {', '.join(repr(d) for d in dup[:5])} more than once; give every "
                        "column its own name")


def _as_text(columns: Sequence[str]) -> Optional[dict]:
    """``read_csv``'s dtype= for columns read as written (absent columns are ignored by pandas)."""
    return {c: str for c in columns if c is not None} or None


def _read_table(path: PathLike, progress: bool = False, text_columns: Sequence[Optional[str]] = ()
                ) -> tuple[pd.DataFrame, Path]:
    """Read a CSV / TSV / Parquet table whole; files over 64 MiB are read in chunks (with a bar
    when ``progress``), which keeps the parser's working memory to one chunk.

    ``text_columns`` (ids, contributors, sources) are read from a CSV as the text written there,
    not parsed as numbers: ``0000091`` stays ``0000091`` (as in a Parquet string column), and a
    20-digit id does not overflow. Parquet columns keep their stored types."""
    text_columns = [c for c in text_columns if c is not None]
    p = _existing_file(path)
    kind = _table_kind(p)
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty; it needs a header row and at least one data row")
    sep = None if kind == "parquet" else _csv_separator(p, kind)
    try:
        if p.stat().st_size > TABLE_CHUNK_BYTES:
            df = _read_chunked(p, kind, progress, sep, text_columns)
        elif kind == "parquet":
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, sep=sep, dtype=_as_text(text_columns))
    except pd.errors.EmptyDataError:
        raise DataError(f"{p} is empty; it needs a header row and at least one data row") from None
    except pd.errors.ParserError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(f"could not parse {p}: {msg}; check the delimiter and quoting") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"could not read {p} as {kind.upper()}: it is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r}); "
                        "save it as UTF-8 (e.g. `iconv -f cp1252 -t utf-8` for an Excel export on Windows, `-f latin1` for other Latin-1 text)") from None
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"could not read {p} as {kind.upper()}: {exc}") from None
    if kind == "parquet":
        df = _decimals_as_floats(df)
    if kind != "parquet" and any(isinstance(c, str) and re.search(r"\.\d+$", c) for c in df.columns):
        _check_unique_header(p, sep)  # pandas renames a repeated name 'x' to 'x.1': was it in the file?
    if sep == ";":
        df = _comma_decimals(df, skip=text_columns, where=str(p))
    if df.shape[1] == 0:
        raise DataError(f"{p} has no columns; it needs a header row and at least one data row")
    if len(df) == 0:
        raise DataError(f"{p} has a header but no data rows")
    df.columns = [str(c) for c in df.columns]
    dup = pd.Index(df.columns)[pd.Index(df.columns).duplicated()]
    if len(dup):
        raise DataError(f"{p} has the column {dup[0]!r} more than once; rename one of them")
    return df, p


def _short_records(p: Path, rows: Sequence[int], limit: int = 3) -> list[tuple[int, int, int]]:
    """Which of the data ``rows`` (0 = first row after the header) of a CSV/TSV file have fewer
    fields than its header: ``(row, line, n_fields)`` for up to ``limit`` of them, ``line`` being
    the file line the record starts on. Empty for Parquet, for rows that are complete (their
    missing values were written as empty fields) and when the file cannot be re-read. pandas fills
    a short record's last columns with missing values without a word, so a dropped delimiter or an
    unquoted line break shows up as "missing values" in whatever column comes last; this names the
    line instead. Reads the file again, so it is only called once a missing value was found."""
    import csv

    try:
        kind = _table_kind(p)
    except DataError:
        return []
    if kind == "parquet":
        return []
    wanted = {int(r) for r in rows}
    if not wanted:
        return []
    sep = _csv_separator(p, kind)
    out: list[tuple[int, int, int]] = []
    try:
        with (gzip.open(p, "rt", encoding="utf-8-sig", newline="") if p.name.lower().endswith(".gz")
              else open(p, encoding="utf-8-sig", newline="")) as fh:
            reader = csv.reader(fh, delimiter=sep)
            header = next(reader, None)
            if not header:
                return []
            row, last = -1, max(wanted)
            start = reader.line_num + 1
            for rec in reader:
                if rec:  # pandas skips blank lines: they are not data rows
                    row += 1
                    if row in wanted and len(rec) < len(header):
                        out.append((row, start, len(rec)))
                        if len(out) >= limit:
                            break
                    if row >= last:
                        break
                start = reader.line_num + 1
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error):
        return []
    return out


def _short_record_error(p: Path, column: str, rows: Sequence[int], n_header: int) -> Optional[DataError]:
    """A DataError naming the short records among ``rows`` whose ``column`` is missing, or None."""
    short = _short_records(p, rows)
    if not short:
        return None
    row, line, k = short[0]
    more = f" (also line{'s' if len(short) > 2 else ''} {', '.join(str(s[1]) for s in short[1:])})" if len(short) > 1 else ""
    return DataError(
        f"{p}: line {line} (data row {row}) has {k} field{'s' if k != 1 else ''} where the header has {n_header}"
        f"{more}, so its last columns, {column!r} among them, read as missing; look for a dropped separator or a "
        "line break inside a value that is not quoted"
    )


def _need_column(df: pd.DataFrame, col: str, role: str, p: Path) -> None:
    if col not in df.columns:
        raise DataError(
            f"{role} column {col!r} not found in {p}; available columns: {list(df.columns)}"
        )


def _column_values(series: pd.Series) -> np.ndarray:
    """A label column as a plain numpy array (strings as object, numbers as numbers, booleans as the
    strings "True" / "False", missing values as None / NaN)."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        if series.isna().any():
            return series.to_numpy(dtype=np.float64, na_value=np.nan)
        return series.to_numpy()
    if pd.api.types.is_bool_dtype(series.dtype):  # True / False labels are the classes "True" and "False"
        return np.array([None if pd.isna(v) else str(bool(v)) for v in series.tolist()], dtype=object)
    return series.to_numpy(dtype=object, na_value=None)


def _table_dataset(
    df: pd.DataFrame,
    p: Path,
    *,
    label: str,
    features: list[str],
    id_col: Optional[str],
    contributor: Optional[str],
    source: Optional[str],
    classes: Optional[tuple],
    name: str,
    min_classes: int,
    task: str = "classification",
    images: Optional[np.ndarray] = None,
) -> Dataset:
    """One table's rows as a Dataset: ``features`` columns as X, or ``images`` (N x C x H x W,
    read by :func:`_table_images`, or any precomputed N x d features such as a text column's) in
    their place."""
    _need_column(df, label, "label", p)
    if images is not None:
        features = []
    for col in features:
        _need_column(df, col, "feature", p)
    for col, role in ((id_col, "id"), (contributor, "contributor"), (source, "source")):
        if col is not None:
            _need_column(df, col, role, p)
    for col in features:
        dtype = df[col].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            bad = _first_non_number(df[col])
            example = f" (e.g. {bad!r})" if bad is not None else ""
            raise DataError(
                f"feature column {col!r} in {p} is not numeric{example}; encode it as numbers "
                "or leave it out of features"
            )
    Xdf = df[features]
    na = Xdf.isna().to_numpy()
    if na.any():
        rows, cols = np.nonzero(na)
        bad_cols = [features[c] for c in np.unique(cols)]
        short = _short_record_error(p, bad_cols[0], np.unique(rows)[:1000].tolist(), df.shape[1])
        if short is not None:
            raise short
        empty = [c for c in bad_cols if Xdf[c].isna().all()]
        if empty:
            raise DataError(f"feature column {empty[0]!r} in {p} is empty (every value missing; columns {empty}); "
                            "leave it out of the features or fill it")
        raise DataError(
            f"feature column {bad_cols[0]!r} in {p} has missing values (first in data row "
            f"{int(rows[0])}; {int(na.any(axis=1).sum())} rows affected, columns {bad_cols}); "
            "impute or drop those rows first"
        )
    X = Xdf.to_numpy(dtype=np.float64) if images is None else images
    if images is None and not np.all(np.isfinite(X)):
        rows, cols = np.nonzero(~np.isfinite(X))
        raise DataError(
            f"feature column {features[cols[0]]!r} in {p} has infinite values (first in data "
            f"row {int(rows[0])}); replace or drop them"
        )
    if task == "regression":
        col = df[label]
        if not (pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)):
            num = pd.to_numeric(col, errors="coerce")
            bad = col[num.isna() & col.notna()]
            if len(bad):
                raise DataError(
                    f"regression target column {label!r} in {p} is not numeric (e.g. {bad.iloc[0]!r} "
                    f"in data row {int(bad.index[0])}); use a numeric column or task='classification'"
                )
            col = num
        yv = col.to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.all(np.isfinite(yv)):
            row = int(np.flatnonzero(~np.isfinite(yv))[0])
            raise DataError(
                f"regression target column {label!r} in {p} has a missing or infinite value (first in "
                f"data row {row}); drop or fill those rows"
            )
        y = yv
    else:
        if df[label].isna().any():
            short = _short_record_error(p, label, np.flatnonzero(df[label].isna().to_numpy())[:1000].tolist(),
                                        df.shape[1])
            if short is not None:
                raise short
        y = _column_values(df[label])
        _warn_spaced_labels(y, label, p)
    if id_col is None:
        ids = np.arange(len(df), dtype=np.int64)
    else:
        if df[id_col].isna().any():
            raise DataError(f"id column {id_col!r} in {p} has missing values; every row needs an id")
        dup = df[id_col].astype(str).duplicated(keep=False).to_numpy()
        if dup.any():
            rows = np.flatnonzero(dup)
            first = str(df[id_col].iloc[rows[0]])
            same = rows[df[id_col].astype(str).to_numpy()[rows] == first][:3].tolist()
            raise DataError(f"id column {id_col!r} in {p} repeats ids ({int(dup.sum())} rows; e.g. {first!r} in data "
                            f"rows {same}); every row needs its own id")
        ids = _plain_array(_column_values(df[id_col]), f"ids in column {id_col!r}")
    meta = pd.DataFrame(index=range(len(df)))
    for col, key in ((source, "source"), (contributor, "contributor")):
        if col is not None:
            meta[key] = df[col].to_numpy(dtype=object, na_value=None)
    if contributor is not None:
        _warn_spaced_contributors(df[contributor], contributor, p)
    with _context(f"{p} (label column {label!r})"):
        if task == "regression":
            return Dataset.from_arrays(X, y, ids=ids, meta=meta, name=name, task="regression")
        return Dataset.from_arrays(X, y, ids=ids, classes=classes, meta=meta, name=name, min_classes=min_classes)


def _first_non_number(col: pd.Series) -> Optional[str]:
    """The first value of a column that is not a number (else its first value; None if all missing)."""
    vals = col.dropna()
    bad = vals[pd.to_numeric(vals, errors="coerce").isna()]
    bad = bad if len(bad) else vals
    return str(bad.iloc[0]) if len(bad) else None


def warn_skipped_columns(df: pd.DataFrame, skipped: list, p: Path, stacklevel: int = 2) -> None:
    """Warn that a table's non-numeric columns are left out of the features, with an example value
    of each (a '?' for a missing value, '1,001.0' with a thousands separator ...)."""
    def shown(c: str) -> str:
        bad = _first_non_number(df[c])
        return f"{c!r} (e.g. {bad if len(bad) <= 32 else bad[:29] + '...'!r})" if bad is not None else repr(c)

    def parse_share(c: str) -> tuple[float, int]:
        vals = df[c].dropna()
        ok = pd.to_numeric(vals, errors="coerce").notna()
        return (float(ok.mean()) if len(vals) else 0.0), int((~ok).sum())

    shares = {c: parse_share(c) for c in skipped}
    almost = [c for c in skipped if shares[c][0] >= 0.9]  # numbers but for a few cells: worth naming apart
    rest = [c for c in skipped if c not in almost]
    if almost:
        bits = ", ".join(f"{shown(c)}: {shares[c][1]:,} cell{'s' if shares[c][1] != 1 else ''} of "
                         f"{int(df[c].notna().sum()):,}" for c in almost)
        warnings.warn(f"{p}: numeric columns with a few cells that are not numbers are not used as features: {bits}; "
                      "clean those cells (currency signs, thousands separators, 'n/a') to use them", UserWarning,
                      stacklevel=stacklevel + 1)
    if rest:
        text = ", ".join(shown(c) for c in rest[:5]) + (f" and {len(rest) - 5} more ({_some_names(rest[5:], 10)})"
                                                         if len(rest) > 5 else "")
        warnings.warn(f"{p}: non-numeric columns are not used as features: {text}; name the feature columns "
                      "(features=[...], or --features on the command line) to silence this", UserWarning,
                      stacklevel=stacklevel + 1)


def _some_names(names: Sequence, k: int = 5) -> str:
    """The first ``k`` names, quoted, with ', ...' when there are more."""
    return ", ".join(repr(c) for c in list(names)[:k]) + (", ..." if len(names) > k else "")


def _warn_spaced_labels(y: np.ndarray, label: str, p: Path, stacklevel: int = 4) -> None:
    """Warn when label values differ only by case or by spaces around them ('benign', 'Benign'
    and 'benign '): they stay separate classes, which is rarely what the data meant (and a
    detector then reads the odd spellings as rare classes of their own). Every such group is
    named, with its counts."""
    if y.dtype.kind not in "OU":
        return
    values = pd.Series(y).dropna().astype(str)
    counts = values.value_counts(sort=False)
    _warn_rare_labels(counts, label, p, stacklevel + 1)
    text = _case_or_space_groups(counts)
    if text:
        warnings.warn(f"{p}: label values in column {label!r} differ only by case or spaces and are kept as "
                      f"different classes: {text}; normalise that column (e.g. strip and lower-case it) if "
                      "they are one class", UserWarning, stacklevel=stacklevel)


def _case_or_space_groups(counts: pd.Series) -> str:
    """The values (with their counts) that differ only by case or surrounding spaces, as text ('' if none)."""
    groups: dict = {}
    for v in counts.index:
        groups.setdefault(str(v).strip().casefold(), []).append(v)
    clash = [vs for vs in groups.values() if len(vs) > 1]
    if not clash:
        return ""
    shown = "; ".join(", ".join(f"{v!r} ({int(counts[v]):,})" for v in vs) for vs in clash[:5])
    return shown + (f"; and {len(clash) - 5} more groups" if len(clash) > 5 else "")


def _warn_spaced_contributors(who: pd.Series, col: str, p: Path, stacklevel: int = 4) -> None:
    """Warn when contributor names differ only by case or spaces ('Hansen', 'hansen '): they are
    judged as different contributors, which splits one sender's record (and its reputation)."""
    values = who.dropna()
    values = values[values.map(lambda v: isinstance(v, str))]
    if not len(values):
        return
    text = _case_or_space_groups(values.value_counts(sort=False))
    if text:
        warnings.warn(f"{p}: contributor names in column {col!r} differ only by case or spaces and are judged as "
                      f"different contributors: {text}; normalise that column if they are one sender",
                      UserWarning, stacklevel=stacklevel)


def _warn_rare_labels(counts: pd.Series, label: str, p: Path, stacklevel: int) -> None:
    """Warn about label values held by at most 2 rows while the typical class has at least 50: most
    often a typo ('shiping' beside 'shipping'). They stay classes of their own; the label detectors
    then rate those rows as likely errors."""
    if len(counts) < 3 or float(counts.median()) < 50:
        return
    rare = counts[counts <= 2].sort_values()
    if len(rare):
        shown = ", ".join(f"{v!r} ({int(n)})" for v, n in rare.head(5).items())
        more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
        warnings.warn(f"{p}: label values in column {label!r} held by only one or two rows while the typical class "
                      f"has {int(counts.median()):,}: {shown}{more}; a typo? They are kept as classes of their own",
                      UserWarning, stacklevel=stacklevel)
    # a few rows spelt almost like a large class ('Sneakr' beside 'Sneaker'): a typo, whatever its count
    import difflib

    big = {str(v).casefold(): str(v) for v, n in counts.items() if n >= 0.5 * float(counts.median())}
    near = []
    for v, n in counts.sort_values().items():
        if n > 2 and n < 0.1 * float(counts.median()):
            match = difflib.get_close_matches(str(v).casefold(), list(big), n=1, cutoff=0.8)
            if match:
                near.append(f"{v!r} ({int(n)}) beside {big[match[0]]!r}")
    if near:
        warnings.warn(f"{p}: label values in column {label!r} spelt almost like a large class: {', '.join(near[:5])}"
                      f"{' ...' if len(near) > 5 else ''}; a typo? They are kept as classes of their own",
                      UserWarning, stacklevel=stacklevel)


def _check_image_options(image_col: Optional[str], features: Any, roles: tuple, size: Any,
                         grayscale: Optional[bool]) -> Optional[tuple[int, int]]:
    """Checks of a table's ``image_col`` against its other options; returns the checked size."""
    if image_col is None:
        if size is not None or grayscale is not None:
            raise ConfigError("size and grayscale apply to images only (pass image_col for a table of image paths)")
        return None
    if not isinstance(image_col, str) or not image_col:
        raise ConfigError(f"image_col must be the name of the image column (a string), got {image_col!r}")
    if features is not None:
        raise ConfigError("features and image_col exclude each other: with image_col the images are the features")
    if image_col in roles:
        raise ConfigError(f"column {image_col!r} cannot be both the image column and the label/contributor/source/text "
                          "(it can be the id: the file paths then name the samples)")
    return _check_size(size)


_ID_NAME = re.compile(r"^(?i:id|uid|uuid|guid|key|row_?id|record_?id)$|(?i:[_\s.-]id)$|[a-z](?:Id|ID)$|^(?i:id)[_\s.-]")


def _looks_like_id(df: pd.DataFrame, col: Any) -> bool:
    """An identifier kept beside the data (``application_id``, ``uuid``): named like one,
    integer-valued and a different value on every row (a text id is never a feature anyway). Used as a feature it would make every sample
    look unique (and order them by when they were entered)."""
    if not _ID_NAME.search(str(col)):
        return False
    v = df[col]
    if v.isna().any() or len(v) < 20:
        return False
    if not (pd.api.types.is_integer_dtype(v.dtype) or pd.api.types.is_float_dtype(v.dtype)):
        return False
    if pd.api.types.is_float_dtype(v.dtype) and bool((v % 1 != 0).any()):
        return False
    return bool(v.is_unique)


def default_feature_columns(df: pd.DataFrame, reserved: set, p: Any, stacklevel: int = 2) -> tuple[list, list]:
    """The feature columns a table audit uses when none are named: the numeric and boolean
    columns, except saved row numbers, identifiers (:func:`_looks_like_id`) and columns with no
    value at all (a spreadsheet's trailing ``Unnamed: 12``), each left out with a warning.
    Returns ``(features, skipped)``: ``skipped`` the other (non-numeric) columns, for
    :func:`warn_skipped_columns`."""
    features, skipped = [], []
    for col in df.columns:
        if col in reserved:
            continue
        if _is_saved_index(df, col):
            warnings.warn(f"{p}: column {col!r} holds the row numbers (a saved DataFrame index); it is not "
                          "used as a feature (name it with id_col= / --id-col to keep it as the ids)",
                          UserWarning, stacklevel=stacklevel + 1)
            continue
        if df[col].isna().all():
            warnings.warn(f"{p}: column {col!r} has no values at all and is left out", UserWarning,
                          stacklevel=stacklevel + 1)
            continue
        dtype = df[col].dtype
        if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            if _looks_like_id(df, col):
                warnings.warn(f"{p}: column {col!r} looks like an identifier (named like one, a different value on "
                              f"every row) and is not used as a feature; name it with id_col= / --id {col} to use it "
                              "as the sample ids, or list the features yourself (features= / --features)",
                              UserWarning, stacklevel=stacklevel + 1)
                continue
            features.append(col)
        else:
            skipped.append(col)
    return features, skipped


def _is_saved_index(df: pd.DataFrame, col: Any) -> bool:
    """A column that is a DataFrame index saved along with the data (``to_csv`` without
    ``index=False`` writes it as ``Unnamed: 0``): named so (or ``index``) and holding the row
    numbers 0..n-1 or 1..n. It is not a feature; used as one it would order the samples."""
    name = str(col)
    if not (re.fullmatch(r"Unnamed: \d+", name) or name.lower() == "index"):
        return False
    v = df[col]
    if not pd.api.types.is_integer_dtype(v.dtype) or v.isna().any():
        return False
    a = v.to_numpy()
    return len(a) > 0 and int(a[0]) in (0, 1) and bool(np.all(np.diff(a) == 1))


def _table_images(df: pd.DataFrame, p: Path, image_col: str, size: Optional[tuple[int, int]],
                  grayscale: Optional[bool]) -> tuple[np.ndarray, list[Path]]:
    """Read the images a table's ``image_col`` names: paths relative to the table's folder.

    Absolute paths and ``..`` are refused (Windows ``\\`` separators are read as ``/``): a
    manifest must not make mithridate read (and show in a report) a picture from elsewhere on the
    disk. Symbolic links inside the folder are followed, as in an image folder: whoever built the
    folder chose them (datasets are often link farms over a shared store)."""
    _need_column(df, image_col, "image", p)
    values = df[image_col].tolist()
    if any(_embedded(v) is not None for v in values[:1] if v is not None):
        return _embedded_images(values, p, image_col, size, grayscale), []
    root = p.parent.resolve()
    files = []
    for row, value in enumerate(values):
        where = f"{p}, data row {row} (column {image_col!r})"
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = str(value)  # file names that are numbers, read as integers by the CSV parser
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: {value!r} is not an image path; every row needs one")
        rel = Path(value.strip().replace("\\", "/"))
        if rel.is_absolute() or rel.drive or ".." in rel.parts or re.match(r"^[A-Za-z]:", value.strip()):
            raise DataError(f"{where}: {value!r} leaves the table's folder; image paths must be relative "
                            f"to {root} and stay inside it (no absolute paths, no '..'): put the table in a "
                            "folder that holds the images (e.g. next to images/, with paths images/...)")
        f = root / rel
        try:
            found = f.is_file()
        except OSError as exc:  # e.g. a name too long for the file system: not a path at all
            raise DataError(f"{where}: {value[:60]!r} is not a usable image path ({exc.strerror or exc}); "
                            "is --images naming the right column?") from None
        if not found:  # the same name in the other Unicode normal form (macOS writes NFD, most tools NFC)
            import unicodedata

            for form in ("NFC", "NFD"):
                alt = root / Path(unicodedata.normalize(form, str(rel)))
                if alt != f and alt.is_file():
                    f, found = alt, True
                    break
        if not found:
            raise DataError(f"{where}: image {value[:200]!r} not found under {root}")
        files.append(f)
    X, _, _ = _image_set(root, [(f, "") for f in files], size=size, grayscale=grayscale)
    return X, files


def _embedded(value: Any) -> Optional[bytes]:
    """The encoded image a table cell holds itself: raw bytes, or the ``{"bytes": ..., "path": ...}``
    struct of a Hugging Face ``datasets`` Parquet export; None for anything else (e.g. a path)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray, memoryview)):
        return bytes(value["bytes"])
    return None


class _Blob(io.BytesIO):
    """An encoded image held in a table cell, named for error messages."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self._name = name

    def __str__(self) -> str:
        return self._name


def _embedded_images(values: list, p: Path, image_col: str, size: Optional[tuple[int, int]],
                     grayscale: Optional[bool]) -> np.ndarray:
    """Decode the images a table holds in its cells (PNG/JPEG bytes) into N x C x H x W."""
    blobs = []
    survey = _ImageSurvey(size)
    for row, value in enumerate(values):
        data = _embedded(value)
        where = f"{p}, data row {row} (column {image_col!r})"
        if data is None or not data:
            raise DataError(f"{where}: no image bytes in this cell (every row of an embedded-image column needs them)")
        blob = _Blob(data, where)
        survey.add(f"data row {row}", *_image_header(blob))
        blob.seek(0)
        blobs.append(blob)
    grey = survey.grey(grayscale)
    return np.stack([_load_image(b, grey, size) for b in blobs]).astype(np.float32, copy=False)


def load_table(
    path: PathLike,
    *,
    label: str,
    features: Optional[Sequence[str]] = None,
    id_col: Optional[str] = None,
    contributor: Optional[str] = None,
    source: Optional[str] = None,
    test_size: float = 0.3,
    random_state: RandomState = 0,
    test_path: Optional[PathLike] = None,
    task: str = "classification",
    image_col: Optional[str] = None,
    size: Optional[Union[int, tuple[int, int]]] = None,
    grayscale: Optional[bool] = None,
) -> DatasetSplits:
    """Load a CSV, TSV or Parquet table (format from the extension; ``.csv.gz`` works).

    With ``image_col`` the table is a manifest of images (a common layout: a flat folder of
    pictures and a CSV of file name, label, vendor ...): the column holds paths relative to the
    table's folder, the images become ``X`` (as :func:`load_image_folder` reads them) and the
    other columns give labels, ids, contributors and sources.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``, ``.parquet`` or ``.pq``.
    label : str
        Name of the label column (integers or strings; numbers for ``task="regression"``).
    features : list of str, optional
        Feature columns, in this order. Default: every numeric (or boolean) column except the
        label, id, contributor and source columns; skipped non-numeric columns are reported
        with a warning.
    id_col : str, optional
        Column with unique sample ids. Default: the data row number (0 = first row after the
        header).
    contributor, source : str, optional
        Columns copied into the provenance metadata as ``contributor`` / ``source``.
    test_size : float, default=0.3
        Test fraction per class (stratified split), unless ``test_path`` is given.
    random_state : int or numpy.random.Generator, default=0
        Seed of the split.
    test_path : str or Path, optional
        A second table with the same columns used as the test split instead of splitting.
    task : {"classification", "regression"}, default="classification"
        ``"regression"`` keeps the label column as float targets and splits rows at random.
    image_col : str, optional
        Column of image paths, relative to the table's folder (absolute paths and ``..`` are
        refused). The images replace the feature columns (``features`` must then be None).
    size, grayscale :
        With ``image_col``: as in :func:`load_image_folder` (resize to (H, W); force or refuse
        greyscale).

    Returns
    -------
    DatasetSplits
        Features as float32 with raw values; ``classes`` sorted label values.

    Examples
    --------
    >>> import pandas as pd
    >>> pd.DataFrame({"a": range(10), "b": [0.5] * 10, "y": ["no", "yes"] * 5}).to_csv(
    ...     "toy.csv", index=False)  # doctest: +SKIP
    >>> load_table("toy.csv", label="y").train.X.shape  # doctest: +SKIP
    (6, 2)
    """
    if not isinstance(label, str) or not label:
        raise ConfigError(f"label must be the name of the label column (a string), got {label!r}")
    if features is not None:
        if isinstance(features, str):
            features = [features]
        features = [str(f) for f in features]
        if not features:
            raise ConfigError("features is empty; name at least one feature column or leave it as None")
        if len(set(features)) != len(features):
            raise ConfigError(f"features lists a column twice: {features}")
        for role, col in (("label", label), ("id", id_col), ("contributor", contributor), ("source", source)):
            if col is not None and col in features:
                raise ConfigError(f"{role} column {col!r} is also listed in features; remove it from features")
    if task not in ("classification", "regression"):
        raise ConfigError(f"task must be 'classification' or 'regression', got {task!r}")
    size_hw = _check_image_options(image_col, features, (label, contributor, source), size, grayscale)  # id: the path may be it
    df, p = _read_table(path, text_columns=(id_col, contributor, source))
    reserved = {c for c in (label, id_col, contributor, source) if c is not None}
    if image_col is not None:
        features = []
    elif features is None:
        _need_column(df, label, "label", p)
        features, skipped = default_feature_columns(df, reserved, p, stacklevel=2)
        if not features:
            raise DataError(
                f"{p} has no numeric feature columns besides {sorted(reserved)}; non-numeric "
                f"columns: {skipped}; encode them as numbers first"
            )
        if skipped:
            warn_skipped_columns(df, skipped, p, stacklevel=3)
    name = _stem(p)
    common = dict(label=label, features=list(features), id_col=id_col, contributor=contributor, source=source, name=name)

    def pixels(frame: pd.DataFrame, where: Path) -> Optional[np.ndarray]:
        return None if image_col is None else _table_images(frame, where, image_col, size_hw, grayscale)[0]

    if task == "regression":
        full = _table_dataset(df, p, classes=None, min_classes=1, task="regression", images=pixels(df, p), **common)
        if test_path is None:
            return _split_dataset(full, test_size, random_state, name=name, source=str(p))
        df_test, p_test = _read_table(test_path, text_columns=(id_col, contributor, source))
        test = _table_dataset(df_test, p_test, classes=None, min_classes=1, task="regression",
                              images=pixels(df_test, p_test), **common)
        return DatasetSplits(train=full, test=test, name=name, source=str(p))
    if test_path is None:
        full = _table_dataset(df, p, classes=None, min_classes=2, images=pixels(df, p), **common)
        return _split_dataset(full, test_size, random_state, name=name, source=str(p))
    df_test, p_test = _read_table(test_path, text_columns=(id_col, contributor, source))
    _need_column(df_test, label, "label", p_test)
    with _context(f"{p} and {p_test}"):
        shared = _shared_classes(
            [_column_values(df[label]), _column_values(df_test[label])], [p.name, p_test.name]
        )
    train = _table_dataset(df, p, classes=shared, min_classes=2, images=pixels(df, p), **common)
    test = _table_dataset(df_test, p_test, classes=shared, min_classes=1, images=pixels(df_test, p_test), **common)
    if train.X.shape[1:] != test.X.shape[1:]:
        raise DataError(f"the images of {p} are {train.X.shape[1:]} (C, H, W) but those of {p_test} are "
                        f"{test.X.shape[1:]}; pass size=(H, W) (and grayscale) to read both alike")
    return DatasetSplits(train=train, test=test, name=name, source=str(p))


# ----------------------------------------------------------------------------------------
# image folders
# ----------------------------------------------------------------------------------------
def _is_hidden(name: str) -> bool:
    """Dot files and folders (``.DS_Store``, ``.git``) and OS/tool leftovers (``Thumbs.db``, ``__MACOSX``)."""
    return name.startswith(".") or name.lower() in _JUNK_NAMES


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not _is_hidden(d.name))


def _images_under(d: Path, skipped: Optional[list] = None) -> list[Path]:
    """Image files under ``d`` (recursively); other visible files are appended to ``skipped``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(d, followlinks=False):
        dirnames[:] = sorted(n for n in dirnames if not _is_hidden(n))
        for fn in filenames:
            if _is_hidden(fn):
                continue
            if fn.lower().endswith(_IMAGE_SUFFIXES):
                out.append(Path(dirpath) / fn)
            elif skipped is not None:
                skipped.append(Path(dirpath) / fn)
    return sorted(out)


def _collect_images(root: Path, *, warn: bool = False) -> dict[str, list[Path]]:
    """class name -> image files, for ``root/<class>/...`` (classes without images dropped).
    ``warn``: say which visible files in the class folders are not read (not images by name)."""
    found, skipped = {}, []
    for d in _class_dirs(root):
        files = _images_under(d, skipped)
        if files:
            found[d.name] = files
    if warn and skipped:
        shown = ", ".join(repr(str(f.relative_to(root))) for f in sorted(skipped)[:5])
        warnings.warn(
            f"{root}: {len(skipped)} file{'s' if len(skipped) != 1 else ''} in the class folders "
            f"{'are' if len(skipped) != 1 else 'is'} not read (not an image by its extension; read: "
            f"{', '.join(_IMAGE_SUFFIXES)}): {shown}{' ...' if len(skipped) > 5 else ''}",
            UserWarning, stacklevel=3)
    return found


_GREY_MODES = ("1", "L", "LA", "I", "F")


class _ImageSurvey:
    """What one pass over the image headers tells: whether every image is grey, and (when no
    target ``size`` is given) that they all share one size -- for image files and for images
    embedded in a table's cells alike."""

    def __init__(self, size: Optional[tuple[int, int]]) -> None:
        self.size = size
        self.first: Optional[tuple[str, tuple[int, int]]] = None
        self.all_grey = True

    def add(self, name: str, mode: str, h: int, w: int) -> None:
        self.all_grey = self.all_grey and (mode in _GREY_MODES or mode.startswith("I;16"))
        if self.size is not None:
            return
        if self.first is None:
            self.first = (name, (h, w))
        elif self.first[1] != (h, w):
            (n0, (h0, w0)) = self.first
            raise DataError(f"images have different sizes: {n0} is {h0}x{w0} (HxW) but {name} is {h}x{w}; "
                            "pass size=(H, W) to resize them all to one size")

    def grey(self, grayscale: Optional[bool]) -> bool:
        """Read as grey: as asked, else when every image is."""
        return self.all_grey if grayscale is None else bool(grayscale)


#: Largest image side ``size=`` accepts (a typo such as 100000 would otherwise allocate terabytes).
MAX_IMAGE_SIDE = 4096


def _check_size(size: Any) -> Optional[tuple[int, int]]:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = size
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"size must be a pair of positive integers (H, W), got {size!r}")
    if max(int(h), int(w)) > MAX_IMAGE_SIDE:
        raise ConfigError(f"size {int(h)}x{int(w)} is over {MAX_IMAGE_SIDE} pixels a side; detectors read small "
                          "images (28x28 to 224x224): resize to less")
    return int(h), int(w)


def _image_header(src: Any) -> tuple[str, int, int]:
    """Mode, height and width of an image file (or file-like object) without decoding it."""
    from PIL import Image

    try:
        with Image.open(src) as im:
            return im.mode, im.size[1], im.size[0]
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _open_error(src, exc) from None


def _open_error(f: Path, exc: BaseException) -> DataError:
    return DataError(
        f"cannot read image {f}: {exc}; the file is corrupt or not an image -- fix or remove it"
    )


def _load_image(f: Path, grey: bool, size: Optional[tuple[int, int]]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(f) as im:
            im.load()
            mode = im.mode
            if grey and (mode.startswith("I;16") or mode == "I"):
                arr = np.asarray(im, dtype=np.float32) / np.float32(65535.0)
                img = Image.fromarray(np.clip(arr, 0, 1).astype(np.float32), mode="F")
            elif grey:
                img = im.convert("L")
            elif mode.startswith("I;16") or mode == "I":
                arr = np.clip(np.asarray(im, dtype=np.float32) / np.float32(65535.0), 0, 1)
                img = Image.fromarray(np.round(arr * 255).astype(np.uint8), mode="L").convert("RGB")
            else:
                img = im.convert("RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img)
    except Image.DecompressionBombError as exc:
        raise _open_error(f, exc) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _open_error(f, exc) from None
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / np.float32(255.0)
    arr = arr.astype(np.float32, copy=False)
    return arr[None, :, :] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _image_set(
    root: Path,
    files: list[tuple[Path, str]],
    *,
    size: Optional[tuple[int, int]],
    grayscale: Optional[bool],
) -> tuple[np.ndarray, list[str], list[str]]:
    """Read (file, class) pairs into an N x C x H x W array; check sizes, modes, corruption."""
    survey = _ImageSurvey(size)
    for f, _ in files:
        survey.add(f.relative_to(root).as_posix(), *_image_header(f))
    grey = survey.grey(grayscale)
    arrays = [_load_image(f, grey, size) for f, _ in files]
    X = np.stack(arrays).astype(np.float32, copy=False)
    ids = [f.relative_to(root).as_posix() for f, _ in files]
    labels = [c for _, c in files]
    return X, ids, labels


def load_image_folder(
    path: PathLike,
    *,
    size: Optional[Union[int, tuple[int, int]]] = None,
    grayscale: Optional[bool] = None,
    test_size: float = 0.3,
    random_state: RandomState = 0,
) -> DatasetSplits:
    """Load a folder of images with one sub-folder per class (read with Pillow).

    Two layouts are recognised:

    * ``root/<class>/<image>`` -- split stratified with ``test_size`` / ``random_state``;
    * ``root/train/<class>/<image>`` and ``root/test/<class>/<image>`` -- a ready split.

    Images are ``.png``, ``.jpg``/``.jpeg``/``.jfif``, ``.bmp``, ``.gif`` (first frame),
    ``.webp`` or ``.tif``/``.tiff`` (first page), found recursively inside each class folder;
    dot files and OS leftovers (``Thumbs.db``, ``__MACOSX``) are ignored, and any other file
    is named in a warning.

    Parameters
    ----------
    path : str or Path
        The root folder.
    size : (int, int) or int, optional
        Resize every image to ``(H, W)`` (bilinear). Required when images differ in size.
    grayscale : bool, optional
        True: convert to one channel; False: to RGB. Default: one channel if every image is
        single-channel (greyscale), else RGB (C = 3; alpha is dropped).
    test_size : float, default=0.3
    random_state : int or numpy.random.Generator, default=0
        Split parameters for the one-folder layout.

    Returns
    -------
    DatasetSplits
        ``X`` as ``N x C x H x W`` float32 in [0, 1]; ``classes`` the sorted folder names;
        ``ids`` the paths relative to ``path`` (e.g. ``"cat/001.png"``).

    Examples
    --------
    >>> splits = load_image_folder("pets/", size=(32, 32))  # doctest: +SKIP
    >>> splits.train.ids[0]  # doctest: +SKIP
    'dog/0042.jpg'
    """
    root = _as_path(path)
    if not root.exists():
        raise DataError(f"folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; load_image_folder expects root/<class>/<image>")
    size_hw = _check_size(size)
    if grayscale is not None and not isinstance(grayscale, (bool, np.bool_)):
        raise ConfigError(f"grayscale must be True, False or None, got {grayscale!r}")
    name = root.resolve().name or "images"
    layout_hint = (
        "expected root/<class>/<image> or root/train/<class>/<image> + root/test/<class>/<image>"
        f" with images ending in {', '.join(_IMAGE_SUFFIXES)}"
    )
    train_dir, test_dir = root / "train", root / "test"
    train_found = _collect_images(train_dir, warn=True) if train_dir.is_dir() else {}
    test_found = _collect_images(test_dir, warn=True) if test_dir.is_dir() else {}
    if train_found or test_found:
        if not train_found or not test_found:
            have, lack = ("train", "test") if train_found else ("test", "train")
            raise DataError(
                f"{root} has {have}/<class>/ folders with images but no {lack}/<class>/ images; "
                f"add {lack}/ or move the class folders up to {root} to have them split"
            )
        classes = tuple(sorted(set(train_found) | set(test_found)))
        parts = {}
        for split, found in (("train", train_found), ("test", test_found)):
            files = [(f, c) for c in sorted(found) for f in found[c]]
            X, ids, labels = _image_set(root, files, size=size_hw, grayscale=grayscale)
            parts[split] = (X, ids, labels)
        Xtr, Xte = parts["train"][0], parts["test"][0]
        if Xtr.shape[1:] != Xte.shape[1:]:
            raise DataError(
                f"training images are {Xtr.shape[1]}x{Xtr.shape[2]}x{Xtr.shape[3]} (CxHxW) but "
                f"test images are {Xte.shape[1]}x{Xte.shape[2]}x{Xte.shape[3]}; pass size=(H, W) "
                "and/or grayscale= to make them match"
            )
        with _context(f"{root} (training split)"):
            train = Dataset.from_arrays(Xtr, parts["train"][2], ids=np.asarray(parts["train"][1]),
                                        classes=classes, name=name)
        with _context(f"{root} (test split)"):
            test = Dataset.from_arrays(Xte, parts["test"][2], ids=np.asarray(parts["test"][1]),
                                       classes=classes, name=name, min_classes=1)
        return DatasetSplits(train=train, test=test, name=name, source=str(root))
    found = _collect_images(root, warn=True)
    if not found:
        raise DataError(f"no images found in class sub-folders of {root}; {layout_hint}")
    files = [(f, c) for c in sorted(found) for f in found[c]]
    X, ids, labels = _image_set(root, files, size=size_hw, grayscale=grayscale)
    with _context(str(root)):
        full = Dataset.from_arrays(X, labels, ids=np.asarray(ids), name=name)
    return _split_dataset(full, test_size, random_state, name=name, source=str(root))


# ----------------------------------------------------------------------------------------
# dispatch and listing
# ----------------------------------------------------------------------------------------
def _check_kwargs(func: Any, kwargs: dict, what: str, extra: Sequence[str] = ()) -> None:
    params = inspect.signature(func).parameters
    accepted = list(extra) + [n for n, prm in params.items() if prm.kind == prm.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{what} does not take option(s) {unknown}; it accepts {accepted or 'no options'}"
        )


def _known_names_text() -> str:
    return (
        f"known names: {', '.join(_KNOWN_NAMES)} (also 'breast-cancer', 'fashion_mnist', "
        "'fmnist'), or a path to a .npz/.csv/.csv.gz/.tsv/.parquet/.jsonl file, a folder of IDX files "
        "or a folder of class sub-folders with images"
    )


def select_classes(splits: DatasetSplits, classes: Sequence[Any]) -> DatasetSplits:
    """Keep only some classes (e.g. digits 1 vs 7), in the order given, in both splits.

    Parameters
    ----------
    splits : DatasetSplits
        A classification dataset.
    classes : sequence
        Labels as written in the data (``1``, ``"7"``, ``"benign"``) or class indices; at least
        two. The result's ``classes`` are these labels in this order, so with ``[1, 7]`` class
        index 0 is the digit 1 and index 1 the digit 7. Ids are kept.

    Examples
    --------
    >>> pair = select_classes(load_sklearn("digits"), [1, 7])
    >>> pair.train.classes, sorted(set(pair.train.y.tolist()))
    ((1, 7), [0, 1])
    """
    from mithridate.attacks.base import resolve_target

    if splits.train.is_regression:
        raise ConfigError("classes= only applies to classification data; this dataset is a regression set")
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    wanted = [resolve_target(splits.train, c.strip() if isinstance(c, str) else c) for c in classes]
    if len(wanted) < 2:
        raise ConfigError(f"classes= needs at least two classes, got {list(classes)}")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"classes= lists a class twice: {list(classes)}")
    remap = np.full(splits.train.n_classes, -1, dtype=np.int64)
    remap[wanted] = np.arange(len(wanted))
    new_classes = tuple(splits.train.classes[i] for i in wanted)

    def one(ds: Dataset) -> Dataset:
        sub = ds.subset(np.isin(ds.y, wanted))
        return sub.replace(y=remap[sub.y], classes=new_classes)

    train, test = one(splits.train), one(splits.test)
    for part, ds in (("training", train), ("test", test)):
        if len(np.unique(ds.y)) < (2 if part == "training" else 1):
            raise DataError(f"after keeping classes {list(new_classes)} the {part} split has too few classes")
    tag = "-".join(str(c) for c in new_classes)
    return DatasetSplits(train=train.replace(name=f"{splits.name}-{tag}"),
                         test=test.replace(name=f"{splits.name}-{tag}"),
                         name=f"{splits.name}-{tag}", source=splits.source)


def load_dataset(spec: Union[str, "os.PathLike[str]"], **kwargs: Any) -> DatasetSplits:
    """Load a dataset by name or path, choosing the loader from what ``spec`` is.

    * ``"digits"``, ``"breast_cancer"`` (``"breast-cancer"``), ``"wine"``, ``"iris"``
      -> :func:`load_sklearn`;
    * ``"fashion-mnist"`` (``"fashion_mnist"``, ``"fmnist"``) -> :func:`load_fashion_mnist`;
    * a ``.npz`` file -> :func:`load_npz`;
    * a ``.csv``, ``.csv.gz``, ``.tsv``, ``.tsv.gz``, ``.parquet`` file -> :func:`load_table`
      (needs ``label=``);
    * a ``.jsonl`` / ``.jsonl.gz`` file of text records -> :func:`mithridate.data.text.load_jsonl`;
    * a folder holding MNIST-style IDX files -> :func:`load_fashion_mnist`;
    * any other folder -> :func:`load_image_folder`.

    Parameters
    ----------
    spec : str or Path
        A known name or a path.
    **kwargs
        Passed to the chosen loader (e.g. ``test_size``, ``random_state``, ``label``,
        ``size``, ``limit_train``, ``task``); an option the loader does not take raises
        ConfigError. ``classes=[a, b, ...]`` (any loader) keeps only those classes, see
        :func:`select_classes`.

    Returns
    -------
    DatasetSplits

    Examples
    --------
    >>> load_dataset("iris", random_state=1).train.n_classes
    3
    >>> load_dataset("data/loans.csv", label="default")  # doctest: +SKIP
    >>> load_dataset("digits", classes=[1, 7]).train.classes
    (1, 7)
    """
    classes = kwargs.pop("classes", None)
    if classes is not None:
        return select_classes(load_dataset(spec, **kwargs), classes)
    if not isinstance(spec, (str, os.PathLike)):
        raise ConfigError(f"dataset must be a name or a path, got {type(spec).__name__}")
    text = os.fspath(spec)
    if isinstance(spec, str):
        key = text.strip().lower()
        if _sklearn_key(key) is not None:
            _check_kwargs(load_sklearn, kwargs, f"dataset {text!r}")
            return load_sklearn(key, **kwargs)
        if key in _FASHION_NAMES:
            _check_kwargs(load_fashion_mnist, kwargs, f"dataset {text!r}", extra=("directory",))
            return load_fashion_mnist(**kwargs)
    p = Path(os.path.expanduser(text))
    if not p.exists():
        looks_like_path = (
            os.sep in text or "/" in text
            or p.name.lower().endswith(_TABLE_SUFFIXES + JSONL_SUFFIXES + (".npz",))
        )
        if looks_like_path:
            raise DataError(f"file not found: {p}; {_known_names_text()}")
        raise DataError(f"unknown dataset {text!r} and no such file; {_known_names_text()}")
    if p.is_dir():
        if any(_fashion_file(p, base) for base in _FASHION_FILES.values()):
            _check_kwargs(load_fashion_mnist, kwargs, f"IDX folder {p}")
            return load_fashion_mnist(p, **kwargs)
        _check_kwargs(load_image_folder, kwargs, f"image folder {p}")
        return load_image_folder(p, **kwargs)
    low = p.name.lower()
    if low.endswith(".npz"):
        _check_kwargs(load_npz, kwargs, f"npz file {p}")
        return load_npz(p, **kwargs)
    if low.endswith(JSONL_SUFFIXES):
        from mithridate.data.text import load_jsonl

        _check_kwargs(load_jsonl, kwargs, f"JSONL file {p}")
        if kwargs.get("return_featurizer"):
            raise ConfigError(
                "load_dataset returns DatasetSplits only; call mithridate.data.text.load_jsonl(..., "
                "return_featurizer=True) to get the fitted featurizer too"
            )
        return load_jsonl(p, **kwargs)
    if low.endswith(_TABLE_SUFFIXES):
        _check_kwargs(load_table, kwargs, f"table {p}")
        if "label" not in kwargs:
            raise ConfigError(f"{p} is a table: pass label=<name of the label column>")
        return load_table(p, **kwargs)
    if low.endswith(".npy"):
        raise DataError(
            f"{p} is a .npy file: one array, without labels; save the features and the labels together, "
            "e.g. numpy.savez('data.npz', x=features, y=labels) (ids=... optional), and pass the .npz"
        )
    raise DataError(
        f"cannot tell how to load {p}; supported files end in .npz, "
        f"{', '.join(_TABLE_SUFFIXES + JSONL_SUFFIXES)}, or give a folder of images or IDX files"
    )


def _idx_dims(path: Path) -> tuple[int, ...]:
    head = _read_raw(path, 4)
    if len(head) < 4:
        raise DataError(f"{path} is truncated")
    ndim = head[3]
    buf = _read_raw(path, 4 + 4 * ndim)
    return _idx_header(buf, path)[1]


def available_datasets() -> list[dict]:
    """List the named datasets, their sizes and whether they can be loaded here.

    Fashion-MNIST is not loaded: sizes come from the IDX headers (or the published sizes when
    the files are missing). ``n_train`` / ``n_test`` are for the default split.

    Returns
    -------
    list of dict
        Keys ``name``, ``kind`` (``"image"`` or ``"tabular"``), ``n_train``, ``n_test``,
        ``shape`` (one sample), ``n_classes``, ``available`` (bool) and ``location``
        (``"scikit-learn (bundled)"``, the directory found, or why it is missing).

    Examples
    --------
    >>> [d["name"] for d in available_datasets()]
    ['digits', 'breast_cancer', 'wine', 'iris', 'diabetes', 'fashion-mnist']
    """
    rows = []
    for key, (kind, _) in SKLEARN_DATASETS.items():
        bunch = _sklearn_bunch(key)
        shape = (1,) + tuple(bunch.images.shape[1:]) if key == "digits" else tuple(bunch.data.shape[1:])
        if kind == "regression":
            n = len(bunch.target)
            n_test, n_classes = _split_sizes(n, 0.3), 0
        else:
            counts = np.bincount(np.asarray(bunch.target, dtype=np.int64))
            n = int(counts.sum())
            n_test = int(sum(_split_sizes(int(c), 0.3) for c in counts if c >= 2))
            n_classes = len(bunch.target_names)
        rows.append(dict(
            name=key, kind=kind, n_train=n - n_test, n_test=n_test,
            shape=shape, n_classes=n_classes, available=True,
            location="scikit-learn (bundled)",
        ))
    row = dict(name="fashion-mnist", kind="image", n_train=60000, n_test=10000,
               shape=(1, 28, 28), n_classes=10, available=False, location="")
    d = find_fashion_mnist()
    if d is None:
        where, how = _fashion_candidates(None)
        row["location"] = f"not found in {where} ({how}): {_FASHION_MISSING_HINT}"
    else:
        files, _ = _fashion_files(d)
        try:
            train_dims = _idx_dims(files["train_images"])
            test_dims = _idx_dims(files["test_images"])
            row.update(n_train=train_dims[0], n_test=test_dims[0],
                       shape=(1,) + tuple(train_dims[1:]), available=True, location=str(d))
        except DataError as exc:
            row["location"] = f"unreadable: {exc}"
    rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------
# ground truth
# ----------------------------------------------------------------------------------------
def save_ground_truth(dataset: Dataset, path: PathLike) -> Path:
    """Write a simulated poisoning's answers as CSV with columns ``id,is_poison`` (0/1).

    Written atomically. Raises DataError when the dataset has no ground truth.

    Examples
    --------
    >>> save_ground_truth(poisoned.train, "truth.csv")  # doctest: +SKIP
    """
    if not isinstance(dataset, Dataset):
        raise ConfigError(f"save_ground_truth expects a Dataset, got {type(dataset).__name__}")
    if dataset.is_poison is None:
        raise DataError(
            "the dataset has no ground truth (is_poison is None); only datasets returned by an "
            "attack (a simulated poisoning) have it"
        )
    p = _as_path(path)
    df = pd.DataFrame({"id": np.asarray(dataset.ids), "is_poison": np.asarray(dataset.is_poison, dtype=np.int8)})
    with atomic_path(p) as tmp:
        df.to_csv(tmp, index=False)
    return p


_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


def load_ground_truth(path: PathLike, ids: Any) -> np.ndarray:
    """Read an ``id,is_poison`` CSV and align it to ``ids``.

    Ids are matched as text, so ``7`` in the file matches the id ``7`` of a dataset whether
    it is stored as an int or a string. Extra ids in the file are ignored; ids absent from the
    file raise DataError.

    Parameters
    ----------
    path : str or Path
        CSV with columns ``id`` and ``is_poison`` (0/1 or true/false).
    ids : array-like
        The ids to align to, e.g. ``dataset.ids``.

    Returns
    -------
    ndarray of bool, shape (len(ids),)

    Examples
    --------
    >>> truth = load_ground_truth("truth.csv", splits.train.ids)  # doctest: +SKIP
    """
    p = _existing_file(path)
    if p.stat().st_size == 0:
        raise DataError(f"{p} is empty; expected a CSV with columns id,is_poison")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p} is empty; expected a CSV with columns id,is_poison") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"could not read {p} as CSV: {exc}") from None
    for col in ("id", "is_poison"):
        if col not in df.columns:
            raise DataError(f"{p} lacks the column {col!r}; available columns: {list(df.columns)}")
    keys = df["id"].to_numpy(dtype=object)
    dup = pd.Series(keys)[pd.Series(keys).duplicated()]
    if len(dup):
        raise DataError(f"{p} lists id {dup.iloc[0]!r} more than once")
    flags = []
    for i, v in enumerate(df["is_poison"].to_numpy(dtype=object)):
        s = str(v).strip().lower()
        if s in _TRUE:
            flags.append(True)
        elif s in _FALSE:
            flags.append(False)
        else:
            raise DataError(f"{p}: is_poison in data row {i} is {v!r}; use 0/1 or true/false")
    lookup = dict(zip(keys.tolist(), flags))
    wanted = [str(i) for i in np.asarray(ids).tolist()]
    missing = [i for i in wanted if i not in lookup]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(wanted)} ids are not in {p} (first: {missing[:5]}); the "
            "ground truth must cover every sample"
        )
    return np.fromiter((lookup[i] for i in wanted), dtype=bool, count=len(wanted))
