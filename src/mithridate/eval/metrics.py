"""Every metric mithridate reports, in one place.

Tests, the CLI, benchmarks and reports all call these functions, so a number means the same
thing everywhere.

Definitions
-----------
clean accuracy
    Share of clean test inputs classified as their true label.
attack success rate (ASR)
    Among test inputs whose true class is **not** the target, the share classified as the
    target once the trigger is applied.
robust accuracy
    Among the same triggered inputs, the share still classified as their true label.
detection metrics
    Computed from per-sample suspicion scores (higher = more suspicious) against the
    simulation's ``is_poison`` ground truth.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mithridate.errors import ConfigError


def _pair(a, b, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ConfigError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def accuracy(y_true, y_pred) -> float:
    """Share of predictions equal to the true labels (NaN for no samples)."""
    y_true, y_pred = _pair(y_true, y_pred, "y_true", "y_pred")
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


clean_accuracy = accuracy


def error_rate(y_true, y_pred) -> float:
    """Share of wrong predictions, ``1 - accuracy`` (NaN for no samples)."""
    return 1.0 - accuracy(y_true, y_pred)


def mean_squared_error(y_true, y_pred) -> float:
    """Mean of ``(y_true - y_pred)**2`` for regression (NaN for no samples)."""
    y_true, y_pred = _pair(np.asarray(y_true, dtype=np.float64).ravel(), np.asarray(y_pred, dtype=np.float64).ravel(),
                           "y_true", "y_pred")
    return float(np.mean((y_true - y_pred) ** 2)) if len(y_true) else float("nan")


def hinge_loss(y_pm, decision) -> float:
    """Mean binary hinge loss ``max(0, 1 - y * f(x))`` with labels ``y`` in {-1, +1}."""
    y_pm, decision = _pair(np.asarray(y_pm, dtype=np.float64), np.asarray(decision, dtype=np.float64),
                           "y_pm", "decision")
    if len(y_pm) and not np.all(np.isin(y_pm, (-1.0, 1.0))):
        raise ConfigError("hinge_loss needs labels in {-1, +1}")
    return float(np.mean(np.maximum(0.0, 1.0 - y_pm * decision))) if len(y_pm) else float("nan")


def attack_success_rate(y_true, y_pred_triggered, target: int) -> float:
    """Share of triggered inputs, true class != target, predicted as ``target``."""
    y_true, y_pred = _pair(y_true, y_pred_triggered, "y_true", "y_pred_triggered")
    keep = y_true != target
    if not keep.any():
        return float("nan")
    return float(np.mean(y_pred[keep] == target))


def robust_accuracy(y_true, y_pred_triggered, target: Optional[int] = None) -> float:
    """Share of triggered inputs still classified correctly (non-target classes when target is given)."""
    y_true, y_pred = _pair(y_true, y_pred_triggered, "y_true", "y_pred_triggered")
    keep = np.ones(len(y_true), bool) if target is None else y_true != target
    if not keep.any():
        return float("nan")
    return float(np.mean(y_pred[keep] == y_true[keep]))


def _scores_labels(scores, is_poison) -> tuple[np.ndarray, np.ndarray]:
    s, t = _pair(scores, is_poison, "scores", "is_poison")
    s = s.astype(float)
    if not np.all(np.isfinite(s)):
        raise ConfigError("scores contain NaN or infinite values")
    return s, t.astype(bool)


def auroc(scores, is_poison) -> float:
    """Area under the ROC curve of the scores for separating poison from clean (NaN if one class only).

    Ties count one half (Mann-Whitney U statistic).
    """
    from scipy.stats import rankdata

    s, t = _scores_labels(scores, is_poison)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores, is_poison) -> float:
    """Average precision (area under the precision-recall curve, step-wise as in scikit-learn)."""
    from sklearn.metrics import average_precision_score

    s, t = _scores_labels(scores, is_poison)
    if t.sum() == 0:
        return float("nan")
    return float(average_precision_score(t, s))


def tpr_at_fpr(scores, is_poison, fpr: float) -> float:
    """Largest true-positive rate over thresholds whose false-positive rate is at most ``fpr``.

    A threshold flags samples with score >= threshold; ties are kept together (no
    randomised tie-breaking), so the result never overstates what a real threshold achieves.
    """
    s, t = _scores_labels(scores, is_poison)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted, t_sorted = s[order], t[order]
    tp = np.cumsum(t_sorted)
    fp = np.cumsum(~t_sorted)
    # only positions at the end of a run of tied scores are valid thresholds
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tpr = tp[last_of_tie] / n_pos
    fpr_arr = fp[last_of_tie] / n_neg
    ok = fpr_arr <= fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def precision_recall(flags, is_poison) -> tuple[float, float]:
    """Precision and recall of a set of flagged samples (boolean mask) against the ground truth."""
    f, t = _pair(flags, is_poison, "flags", "is_poison")
    f, t = f.astype(bool), t.astype(bool)
    tp = int((f & t).sum())
    precision = tp / int(f.sum()) if f.any() else float("nan")
    recall = tp / int(t.sum()) if t.any() else float("nan")
    return float(precision), float(recall)


def precision_at_k(scores, is_poison, k: Optional[int] = None) -> float:
    """Precision of the ``k`` highest scores (stable order breaks ties); ``k`` defaults to the
    true number of poisons ("precision at the true budget")."""
    s, t = _scores_labels(scores, is_poison)
    k = int(t.sum()) if k is None else int(k)
    if k <= 0:
        return float("nan")
    top = np.argsort(-s, kind="stable")[: min(k, len(s))]
    return float(t[top].mean())


def f1_score(flags, is_poison) -> float:
    p, r = precision_recall(flags, is_poison)
    if not (p + r > 0):
        return 0.0
    return float(2 * p * r / (p + r))


def detection_report(scores, is_poison, flags=None) -> dict:
    """All detection metrics in one dict (keys: auroc, average_precision, tpr_at_1pct_fpr,
    tpr_at_5pct_fpr, and with ``flags``: n_flagged, precision, recall, f1, fpr)."""
    out = {
        "auroc": auroc(scores, is_poison),
        "average_precision": average_precision(scores, is_poison),
        "tpr_at_1pct_fpr": tpr_at_fpr(scores, is_poison, 0.01),
        "tpr_at_5pct_fpr": tpr_at_fpr(scores, is_poison, 0.05),
    }
    if flags is not None:
        f, t = np.asarray(flags, bool), np.asarray(is_poison, bool)
        p, r = precision_recall(f, t)
        out.update({"n_flagged": int(f.sum()), "precision": p, "recall": r, "f1": f1_score(f, t),
                    "fpr": float((f & ~t).sum() / max(int((~t).sum()), 1))})
    return out
