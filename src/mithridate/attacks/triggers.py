"""Backdoor triggers as a mask and a pattern: ``x' = (1 - m) * x + m * p``.

A BadNets patch is a binary mask over a small square with the patch pattern inside it; a
blended trigger (Chen et al. 2017) is a constant mask ``alpha`` over the whole image with a key
pattern. The same form is what Neural Cleanse reverse-engineers, so one class serves all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from mithridate.errors import ConfigError, DataError
from mithridate.utils import RandomState, atomic_path, check_random_state

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")


class Trigger:
    """An image trigger ``x' = (1 - mask) * x + mask * pattern``.

    Parameters
    ----------
    mask : ndarray of shape (1 or C, H, W), values in [0, 1]
    pattern : ndarray of shape (C, H, W), values in [0, 1]
    kind : str
        "patch", "blend" or "custom", for reports.
    target : int, optional
        The class index the backdoor steers to, when known (saved with the trigger).

    Examples
    --------
    >>> t = patch_trigger((1, 8, 8), size=2, value=1.0)
    >>> x = np.zeros((1, 1, 8, 8), np.float32)
    >>> t.apply(x)[0, 0, -2:, -2:].tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """

    def __init__(self, mask: np.ndarray, pattern: np.ndarray, kind: str = "custom", target: Optional[int] = None):
        mask = np.asarray(mask, dtype=np.float32)
        pattern = np.asarray(pattern, dtype=np.float32)
        if pattern.ndim != 3 or mask.ndim != 3:
            raise ConfigError(f"trigger mask and pattern must be (C, H, W); got {mask.shape} and {pattern.shape}")
        if mask.shape[1:] != pattern.shape[1:] or mask.shape[0] not in (1, pattern.shape[0]):
            raise ConfigError(f"trigger mask {mask.shape} does not fit pattern {pattern.shape}")
        if not (np.all(np.isfinite(mask)) and np.all(np.isfinite(pattern))):
            raise ConfigError("trigger mask and pattern must be finite")
        if mask.min() < 0 or mask.max() > 1 or pattern.min() < 0 or pattern.max() > 1:
            raise ConfigError("trigger mask and pattern values must lie in [0, 1]")
        self.mask = mask
        self.pattern = pattern
        self.kind = kind
        self.target = None if target is None else int(target)

    @property
    def shape(self) -> tuple:
        return tuple(self.pattern.shape)

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Stamp the trigger on a batch of images ``(N, C, H, W)``; returns a new array."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 4 or tuple(X.shape[1:]) != self.shape:
            raise DataError(f"trigger of shape {self.shape} cannot be applied to inputs of shape {tuple(X.shape[1:])}")
        return ((1.0 - self.mask) * X + self.mask * self.pattern).astype(np.float32)

    def mask_l1(self) -> float:
        """Size of the trigger: L1 norm of the (per-pixel) mask."""
        return float(self.mask.max(axis=0).sum())

    def save(self, path: Union[str, Path]) -> Path:
        """Write the trigger as a plain ``.npz`` (no pickled objects)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                extra = {} if self.target is None else {"target": np.array(self.target)}
                np.savez(fh, mask=self.mask, pattern=self.pattern, kind=np.array(self.kind), **extra)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Trigger":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"trigger file not found: {path}")
        import zipfile

        if not zipfile.is_zipfile(path):
            raise DataError(f"{path} is not a trigger file (expected the .trigger.npz written by `mithridate attack`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["mask"], z["pattern"], str(z["kind"]) if "kind" in z else "custom",
                           int(z["target"]) if "target" in z else None)
        except (KeyError, ValueError, OSError) as exc:
            raise DataError(f"{path} is not a trigger file written by mithridate ({str(exc)[:120]})") from None

    def __repr__(self) -> str:
        return f"Trigger(kind={self.kind!r}, shape={self.shape}, mask_l1={self.mask_l1():.1f})"


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"backdoor triggers need image data (C x H x W); this data has sample shape {tuple(shape)}. "
            "Load images (digits, Fashion-MNIST, an image folder or an npz of images)."
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def patch_trigger(shape: Sequence[int], *, size: int = 3, position: Union[str, Sequence[int]] = "bottom-right",
                  value: Union[float, str] = 1.0, margin: int = 0) -> Trigger:
    """A BadNets square patch (Gu et al. 2017).

    Parameters
    ----------
    shape : (C, H, W)
    size : int
        Side of the square in pixels.
    position : str or (row, col)
        One of ``POSITIONS`` or the top-left pixel of the patch.
    value : float in [0, 1] or "checkerboard"
        Constant patch value, or an alternating 1/0 pattern (starting with 1 at the top-left).
    margin : int
        Pixels between the patch and the image border for named positions.
    """
    c, h, w = _check_shape(shape)
    size = int(size)
    if size < 1 or size + margin > min(h, w):
        raise ConfigError(f"patch size {size} (+ margin {margin}) does not fit a {h}x{w} image")
    if isinstance(position, str):
        pos = {
            "bottom-right": (h - margin - size, w - margin - size),
            "bottom-left": (h - margin - size, margin),
            "top-right": (margin, w - margin - size),
            "top-left": (margin, margin),
            "center": ((h - size) // 2, (w - size) // 2),
        }.get(position)
        if pos is None:
            raise ConfigError(f"unknown patch position {position!r}; use one of {', '.join(POSITIONS)} or (row, col)")
    else:
        pos = (int(position[0]), int(position[1]))
    r, col = pos
    if r < 0 or col < 0 or r + size > h or col + size > w:
        raise ConfigError(f"a {size}x{size} patch at (row {r}, col {col}) falls outside the {h}x{w} image")
    mask = np.zeros((1, h, w), np.float32)
    mask[:, r : r + size, col : col + size] = 1.0
    pattern = np.zeros((c, h, w), np.float32)
    if isinstance(value, str):
        if value != "checkerboard":
            raise ConfigError(f"patch value must be a number in [0, 1] or 'checkerboard', got {value!r}")
        ii, jj = np.indices((size, size))
        pattern[:, r : r + size, col : col + size] = ((ii + jj) % 2 == 0).astype(np.float32)
    else:
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"patch value must be in [0, 1], got {value}")
        pattern[:, r : r + size, col : col + size] = v
    return Trigger(mask, pattern, kind="patch")


def load_pattern_image(path: Union[str, Path], shape: Sequence[int]) -> np.ndarray:
    """Read an image file as a (C, H, W) pattern in [0, 1], resized to ``shape``."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = _check_shape(shape)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pattern image not found: {path}")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read pattern image {path}: {exc}") from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    if arr.shape[0] != c:
        arr = np.repeat(arr[:1], c, axis=0)
    return arr


def blend_trigger(shape: Sequence[int], *, alpha: float = 0.2, pattern: Optional[Union[np.ndarray, str, Path]] = None,
                  random_state: RandomState = 0) -> Trigger:
    """A blended key pattern (Chen et al. 2017): ``x' = (1 - alpha) x + alpha * key``.

    ``pattern`` is ``None`` for a fixed uniform random key drawn from ``random_state``, an array
    of shape (C, H, W) in [0, 1], or the path of an image file (resized to the data).
    """
    c, h, w = _check_shape(shape)
    alpha = float(alpha)
    if not 0.0 < alpha <= 1.0:
        raise ConfigError(f"blend alpha must be in (0, 1], got {alpha}")
    if pattern is None:
        key = check_random_state(random_state).random((c, h, w)).astype(np.float32)
    elif isinstance(pattern, (str, Path)):
        key = load_pattern_image(pattern, shape)
    else:
        key = np.asarray(pattern, dtype=np.float32)
        if key.shape != (c, h, w):
            raise ConfigError(f"blend pattern must have shape {(c, h, w)}, got {key.shape}")
    return Trigger(np.full((1, h, w), alpha, np.float32), np.clip(key, 0, 1), kind="blend")
