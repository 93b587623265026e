"""Small shared helpers: randomness, atomic output files."""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, TypeVar, Union

import numpy as np

from mithridate.errors import ConfigError

RandomState = Union[None, int, np.random.Generator]


_SHOW_PROGRESS: contextvars.ContextVar = contextvars.ContextVar("mithridate_show_progress", default=False)
_T = TypeVar("_T")


@contextlib.contextmanager
def show_progress(enabled: bool = True) -> Iterator[None]:
    """While the block runs, long loops inside library calls (Data-OOB's bags, RONI's refits,
    confident learning's folds, STRIP's draws, loss dynamics' training) show a progress bar on
    stderr. Off by default, so library use stays quiet and a caller's own live display (the audit's
    step bar) is never nested; the command line turns it on for ``mithridate detect``.

    >>> with show_progress(False):
    ...     list(progress_iter(range(3), 3, "quiet"))
    [0, 1, 2]
    """
    token = _SHOW_PROGRESS.set(bool(enabled))
    try:
        yield
    finally:
        _SHOW_PROGRESS.reset(token)


def progress_enabled() -> bool:
    """Whether :func:`show_progress` is on here."""
    return bool(_SHOW_PROGRESS.get())


def progress_iter(iterable: Iterable[_T], total: int, description: str) -> Iterator[_T]:
    """Yield from ``iterable``, advancing a stderr progress bar of ``total`` steps when
    :func:`show_progress` is on (a plain pass-through otherwise)."""
    if not progress_enabled() or total < 2:
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)


def check_random_state(random_state: RandomState) -> np.random.Generator:
    """Turn ``None``, an int seed or a Generator into a ``numpy.random.Generator``.

    Randomness in mithridate flows only through this: no global state is read or set.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ConfigError(f"random_state must be a non-negative int, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise ConfigError(
        f"random_state must be None, an int or a numpy Generator, got {type(random_state).__name__}"
    )


def seed_from(rng: np.random.Generator) -> int:
    """Draw an int seed (for libraries such as PyTorch that want one) from a Generator."""
    return int(rng.integers(0, 2**31 - 1))


def check_fraction(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Validate a budget-like fraction in (0, 1) (or [0, 1) with ``allow_zero``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}") from None
    lo_ok = v >= 0 if allow_zero else v > 0
    if not (lo_ok and v < 1) or not np.isfinite(v):
        rng = "[0, 1)" if allow_zero else "(0, 1)"
        raise ConfigError(f"{name} must be in {rng}, got {value!r}")
    return v


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or an exception while writing leaves no half-written file behind.

    >>> with atomic_path("out.csv") as tmp:          # doctest: +SKIP
    ...     df.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(obj: Any, *, strict_what: Optional[str] = None) -> Any:
    """Plain JSON values: numpy scalars and arrays unboxed, NaN/inf and pandas NA -> None,
    datetimes as ISO strings, paths as strings, mapping keys as strings.

    Anything else becomes ``str(obj)``, or, with ``strict_what`` (a name for the message), a
    ConfigError saying that ``strict_what`` must be JSON-serialisable.
    """
    import datetime as _dt
    import math
    from collections.abc import Mapping

    import pandas as pd

    def conv(o: Any) -> Any:
        if o is None or isinstance(o, (bool, str)):
            return o
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, (int, np.integer)):
            return int(o)
        if isinstance(o, (float, np.floating)):
            f = float(o)
            return f if math.isfinite(f) else None
        if isinstance(o, Mapping):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple, np.ndarray, pd.Series)):
            return [conv(v) for v in (o.tolist() if hasattr(o, "tolist") else o)]
        if isinstance(o, (_dt.datetime, _dt.date)):
            return o.isoformat()
        if isinstance(o, Path):
            return str(o)
        if o is pd.NA or o is pd.NaT:
            return None
        if strict_what is not None:
            raise ConfigError(f"{strict_what} must be JSON-serialisable; it holds a {type(o).__name__}")
        return str(o)

    return conv(obj)
