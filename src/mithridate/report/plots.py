"""Plots for the HTML report, each returned as PNG bytes.

Every function builds its own :class:`matplotlib.figure.Figure` on an Agg canvas: no pyplot,
no global backend switch, so drawing a report never touches the caller's matplotlib state and
works on headless machines. Functions that have nothing meaningful to draw (tabular data for an
image grid, no ground truth for ROC curves) return ``None`` and the report shows something else.

Any text drawn from the dataset (labels, ids) is passed with ``parse_math=False`` and truncated,
so a hostile label such as ``"$\\frac{"`` can neither break mathtext nor overflow a tile.

>>> from mithridate.report import plots                          # doctest: +SKIP
>>> png = plots.stage_bars(result.rows)                          # doctest: +SKIP
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"                          # doctest: +SKIP
True
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

POISON_COLOR = "#d62728"
CLEAN_COLOR = "#1f77b4"
FLAG_COLOR = "#ff7f0e"
STAGE_METRICS = (("clean_accuracy", "clean accuracy", "#2ca02c"), ("asr", "attack success rate", POISON_COLOR),
                 ("robust_accuracy", "robust accuracy", CLEAN_COLOR))
_MAX_LABEL = 18


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def short_text(value: Any, limit: int = _MAX_LABEL, *, keep_end: bool = False) -> str:
    """``str(value)`` on one line, cut to ``limit`` characters (with an ellipsis); ``keep_end``
    keeps the end instead (a path's file name: ``…/00123.png``, not ``data/Trou…``)."""
    s = " ".join(str(value).split())
    if len(s) <= limit:
        return s
    return "\u2026" + s[len(s) - limit + 1:] if keep_end else s[: limit - 1] + "\u2026"


def top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest scores, most suspicious first (ties by position)."""
    scores = np.asarray(scores, dtype=float)
    return np.argsort(-scores, kind="stable")[: max(int(n), 0)]


def _global_threshold(scores: np.ndarray, flags: Optional[np.ndarray]) -> Optional[float]:
    """The score above which everything is flagged, if the flags are such a threshold rule."""
    if flags is None:
        return None
    flags = np.asarray(flags, dtype=bool)
    if not flags.any() or flags.shape != scores.shape:
        return None
    thr = float(scores[flags].min())
    return thr if np.array_equal(flags, scores >= thr) else None


def score_histograms(scores: Mapping[str, np.ndarray], is_poison: Optional[np.ndarray] = None,
                     flags: Optional[Mapping[str, np.ndarray]] = None) -> Optional[bytes]:
    """One histogram of suspicion scores per detector, clean and poison samples apart.

    Without ground truth (``is_poison`` is ``None``) all samples form one histogram. When a
    detector's flags are a global threshold rule the flagged region is shaded; when they are
    not (per-class budgets) the flagged samples are drawn as an outline instead. Heavy-tailed
    positive scores get a log x axis, and counts spanning orders of magnitude a log y axis.
    """
    if not scores:
        return None
    names = list(scores)
    ncols = min(len(names), 3)
    nrows = math.ceil(len(names) / ncols)
    fig = _figure(4.6 * ncols, 3.3 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    truth = None if is_poison is None else np.asarray(is_poison, dtype=bool)
    for ax, name in zip(axes, names):
        s = np.asarray(scores[name], dtype=float)
        finite = np.isfinite(s)
        s_f = s[finite]
        if s_f.size == 0:
            ax.set_title(f"{short_text(name, 40)}: no finite scores", parse_math=False)
            continue
        lo, hi = float(s_f.min()), float(s_f.max())
        log_x = lo > 0 and hi / max(float(np.median(s_f)), 1e-300) > 100
        if hi <= lo:
            bins = np.linspace(lo - 0.5, hi + 0.5, 11)
        elif log_x:
            bins = np.geomspace(lo, hi, 41)
        else:
            bins = np.linspace(lo, hi, 41)
        groups = []
        if truth is not None and truth.shape == s.shape:
            groups.append((s[finite & ~truth], f"clean ({int((~truth).sum())})", CLEAN_COLOR))
            groups.append((s[finite & truth], f"poison ({int(truth.sum())})", POISON_COLOR))
        else:
            groups.append((s_f, f"all samples ({s_f.size})", CLEAN_COLOR))
        counts_seen = []
        for values, label, color in groups:
            if values.size:
                c, _, _ = ax.hist(values, bins=bins, color=color, alpha=0.55, label=label)
                counts_seen.append(np.asarray(c))
        f = None if flags is None else flags.get(name)
        thr = _global_threshold(s, None if f is None else np.asarray(f, dtype=bool))
        if thr is not None:
            ax.axvspan(thr, bins[-1], color=FLAG_COLOR, alpha=0.12, lw=0)
            ax.axvline(thr, color=FLAG_COLOR, lw=1.5, ls="--", label=f"flagged \u2265 threshold ({int(np.sum(f))})")
        elif f is not None and np.any(f):
            ax.hist(s[np.asarray(f, dtype=bool) & finite], bins=bins, histtype="step", color=FLAG_COLOR, lw=1.6,
                    label=f"flagged, per-class rule ({int(np.sum(f))})")
        if log_x:
            ax.set_xscale("log")
        allc = np.concatenate(counts_seen) if counts_seen else np.array([])
        nz = allc[allc > 0]
        if nz.size and nz.max() / nz.min() > 30:
            ax.set_yscale("log")
        ax.set_title(short_text(name, 40), parse_math=False)
        ax.set_xlabel("suspicion score" + (" (log scale)" if log_x else ""))
        ax.set_ylabel("samples")
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.25)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return _png(fig)


def _to_display(img: np.ndarray) -> tuple[np.ndarray, Optional[str]]:
    """A (C, H, W) array in [0, 1] as something ``imshow`` draws: (H, W) grey or (H, W, 3) colour."""
    img = np.clip(np.nan_to_num(np.asarray(img, dtype=float)), 0.0, 1.0)
    if img.ndim == 2:
        return img, "gray"
    if img.shape[0] == 3:
        return img.transpose(1, 2, 0), None
    if img.shape[0] == 1:
        return img[0], "gray"
    return img.mean(axis=0), "gray"


def suspicious_grid(X: np.ndarray, scores: np.ndarray, *, ids: Sequence[Any], labels: Sequence[Any],
                    is_poison: Optional[np.ndarray] = None, n: int = 24, ncols: int = 8,
                    title: str = "") -> Optional[bytes]:
    """The ``n`` most suspicious images, most suspicious first.

    Each tile is titled with its rank, id and (possibly poisoned) label; with ground truth a red
    border marks the truly poisoned ones. Returns ``None`` for non-image data (``X`` not
    ``N x C x H x W``): the report shows those rows as a table instead.
    """
    X = np.asarray(X)
    if X.ndim != 4:
        return None
    order = top_indices(scores, min(n, len(X)))
    if order.size == 0:
        return None
    ncols = max(1, min(ncols, order.size))
    nrows = math.ceil(order.size / ncols)
    fig = _figure(1.45 * ncols, 1.75 * nrows + (0.45 if title else 0.0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    truth = None if is_poison is None else np.asarray(is_poison, dtype=bool)
    for rank, (ax, i) in enumerate(zip(axes, order), start=1):
        img, cmap = _to_display(X[i])
        ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{rank} id {short_text(ids[i], 12, keep_end=True)}\n{short_text(labels[i], 14)}", fontsize=7.5,
                     parse_math=False)
        poisoned = truth is not None and bool(truth[i])
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color(POISON_COLOR if poisoned else "#bbbbbb")
            spine.set_linewidth(3.5 if poisoned else 0.8)
    for ax in axes[order.size:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(short_text(title, 120), fontsize=9, parse_math=False)
    return _png(fig)


def stage_bars(rows: Sequence[Mapping[str, Any]]) -> Optional[bytes]:
    """Grouped bars of clean accuracy, ASR and robust accuracy for each stage (missing/NaN skipped)."""
    if not rows:
        return None
    stages = [short_text(r.get("stage", "?"), 20) for r in rows]
    present = [m for m in STAGE_METRICS if any(_finite(r.get(m[0])) for r in rows)]
    if not present:
        return None
    fig = _figure(max(5.0, 1.7 * len(stages) + 2.0), 3.4)
    ax = fig.add_subplot()
    width = 0.8 / len(present)
    x = np.arange(len(stages))
    for k, (key, label, color) in enumerate(present):
        vals = [float(r[key]) if _finite(r.get(key)) else np.nan for r in rows]
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, np.nan_to_num(vals), width * 0.92, color=color, label=label)
        for p, v in zip(pos, vals):
            ax.text(p, (v if np.isfinite(v) else 0) + 0.015, "n/a" if not np.isfinite(v) else f"{v:.2f}",
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, stages)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("rate")
    ax.legend(fontsize=8, ncols=len(present), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.grid(axis="y", alpha=0.25)
    ax.set_axisbelow(True)
    return _png(fig)


def roc_curves(scores: Mapping[str, np.ndarray], is_poison: Optional[np.ndarray]) -> Optional[bytes]:
    """ROC curve of every detector against the ground truth (``None`` without both classes)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if not scores or is_poison is None:
        return None
    truth = np.asarray(is_poison, dtype=bool)
    if truth.all() or not truth.any():
        return None
    fig = _figure(4.8, 4.2)
    ax = fig.add_subplot()
    drawn = 0
    for name, s in scores.items():
        s = np.asarray(s, dtype=float)
        if s.shape != truth.shape or not np.all(np.isfinite(s)):
            continue
        fpr, tpr, _ = roc_curve(truth, s)
        ax.plot(fpr, tpr, lw=1.8, label=f"{short_text(name, 30)} (AUROC {roc_auc_score(truth, s):.3f})")
        drawn += 1
    if not drawn:
        return None
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls=":", label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (clean samples flagged)")
    ax.set_ylabel("true-positive rate (poisons found)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.25)
    return _png(fig)


def trigger_image(trigger: Any, example: Optional[np.ndarray] = None) -> Optional[bytes]:
    """The trigger as images: ``mask * pattern``, the mask, and (given) an example with it stamped.

    Returns ``None`` for anything that is not an image trigger (no ``mask``/``pattern``).
    """
    mask = getattr(trigger, "mask", None)
    pattern = getattr(trigger, "pattern", None)
    if mask is None or pattern is None:
        return None
    mask = np.asarray(mask, dtype=float)
    pattern = np.asarray(pattern, dtype=float)
    if mask.ndim != 3 or pattern.ndim != 3:
        return None
    panels = [("mask \u00d7 pattern", mask * pattern), ("mask", mask)]
    if example is not None and hasattr(trigger, "apply"):
        ex = np.asarray(example, dtype=np.float32)[None]
        try:
            panels.append(("example, clean", ex[0]))
            panels.append(("example, triggered", np.asarray(trigger.apply(ex))[0]))
        except Exception:  # a trigger that does not fit the example: draw the trigger alone
            panels = panels[:2]
    fig = _figure(2.0 * len(panels), 2.35)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    for ax, (label, arr) in zip(axes, panels):
        img, cmap = _to_display(arr)
        ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#bbbbbb")
    return _png(fig)


def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False
