"""Shared plumbing for the benchmark scripts: environment record, formatting, atomic result files."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from mithridate.utils import atomic_write_text

HERE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def fmnist_train() -> Any:
    """All 60,000 Fashion-MNIST training images (a Dataset), read once per process."""
    from mithridate.data.loaders import load_fashion_mnist

    return load_fashion_mnist().train


def git_info() -> dict:
    def run(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=HERE.parent, capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:
            return None

    return {"commit": run("rev-parse", "HEAD"), "src_dirty": bool(run("status", "--porcelain", "--", "src"))}


def environment(args: Any = None, **extra: Any) -> dict:
    import scipy
    import sklearn
    import torch

    env = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(),
        "numpy": np.__version__, "torch": torch.__version__, "scikit-learn": sklearn.__version__,
        "scipy": scipy.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "git": git_info(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "command": " ".join([Path(sys.executable).name] + sys.argv),
    }
    if args is not None:
        env["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    env.update(extra)
    return env


def fmt(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{nd}f}"
    return str(v)


def yes_no(ok: Optional[bool]) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def median(values) -> float:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.median(vals)) if vals else float("nan")


def _json_default(o: Any):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def write_results(out_dir: Path, stem: str, payload: dict, markdown: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` atomically (a crash never leaves half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(payload, indent=1, default=_json_default) + "\n")
    atomic_write_text(out_dir / f"{stem}.md", markdown)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def finish_run(payload: dict, t_start: float, save: Callable[[], None], json_path: Path) -> int:
    """Mark the run complete, record its wall time (overall and for this run), write the results
    with ``save`` and say where they went; returns the exit status 0."""
    payload["complete"] = True
    payload["wall_seconds"] = time.perf_counter() - t_start
    payload["runs"][-1]["wall_seconds"] = payload["wall_seconds"]
    save()
    log(f"done in {payload['wall_seconds']:.0f}s; wrote {json_path} and .md")
    return 0


def load_for_render(json_path: Path, notes: Optional[Path] = None) -> dict:
    """A results JSON to re-render (``--render-only``), its notes replaced by the lines of ``notes``
    when that file exists."""
    payload = json.loads(Path(json_path).read_text(encoding="utf-8"))
    if notes and Path(notes).is_file():
        payload["notes"] = Path(notes).read_text(encoding="utf-8").strip().splitlines()
    return payload
