"""A single self-contained HTML report of a backdoor scenario.

The file embeds its images as ``data:`` URIs and its CSS inline; it loads nothing from the
network and needs no JavaScript, so it can be attached to a ticket or opened offline. A
Content-Security-Policy meta tag forbids scripts and remote loads as a second line of defence.

A poisoned dataset is hostile input: class names, ids, contributor names and the dataset name
all reach the page only through Jinja2 autoescaping; nothing derived from data is marked
``|safe``.

>>> from mithridate.report import write_report                    # doctest: +SKIP
>>> write_report(result, "report.html")                           # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from mithridate.utils import atomic_write_text, json_safe

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "report.html"
N_SUSPICIOUS = 24
N_TABLE_FEATURES = 8

DETECTION_COLUMNS = (
    ("auroc", "AUROC"),
    ("average_precision", "AP"),
    ("tpr_at_1pct_fpr", "TPR @ 1% FPR"),
    ("tpr_at_5pct_fpr", "TPR @ 5% FPR"),
    ("precision_at_true_budget", "precision @ true budget"),
    ("n_flagged", "flagged"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("fpr", "FPR"),
    ("seconds", "seconds"),
)
STAGE_COLUMNS = (
    ("clean_accuracy", "clean accuracy"),
    ("asr", "ASR"),
    ("robust_accuracy", "robust accuracy"),
    ("removed", "removed"),
    ("poisons_left", "poisons left"),
)


# -- JSON -------------------------------------------------------------------------------------
def to_jsonable(result: Any) -> dict:
    """``result.to_dict()`` with NaN/inf turned to ``None`` and numpy scalars to Python ones.

    The output passes ``json.dumps(..., allow_nan=False)``.

    >>> import json                                                    # doctest: +SKIP
    >>> json.dumps(to_jsonable(result), allow_nan=False)               # doctest: +SKIP
    """
    return json_safe(result.to_dict())


# -- formatting ---------------------------------------------------------------------------------
def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def fmt_num(v: Any, digits: int = 3) -> str:
    """Numbers to ``digits`` decimals (ints as ints), NaN/None as ``n/a``, anything else as str."""
    if v is None:
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}f}" if math.isfinite(float(v)) else "n/a"
    return str(v)


def _fmt_seconds(v: Any) -> str:
    return f"{float(v):.2f} s" if _is_num(v) and math.isfinite(float(v)) else "n/a"


def _fmt_value(v: Any) -> str:
    """Config values: numbers compact, lists joined, None as a dash."""
    if v is None:
        return "\u2014"
    if isinstance(v, float):
        return fmt_num(v) if not v.is_integer() or abs(v) >= 1e15 else str(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt_value(x) for x in v)
    return fmt_num(v)


def _b64(png: Optional[bytes]) -> Optional[str]:
    return None if png is None else base64.b64encode(png).decode("ascii")


def _finite(v: Any) -> bool:
    return _is_num(v) and math.isfinite(float(v))


# -- content --------------------------------------------------------------------------------------
def _row(result: Any, stage: str) -> Optional[dict]:
    return next((r for r in result.rows if r.get("stage") == stage), None)


def _verdict(result: Any) -> dict:
    """The headline sentence, a second line of context and a tone (good / warn / bad / neutral)."""
    clean, poisoned, sanitized = _row(result, "clean"), _row(result, "poisoned"), _row(result, "sanitized")
    if poisoned is None or not _finite(poisoned.get("asr")):
        return {"text": "No backdoor trigger to measure: this scenario reports clean accuracy only.",
                "detail": "", "tone": "neutral"}
    p_asr = float(poisoned["asr"])
    c_asr = float(clean["asr"]) if clean is not None and _finite(clean.get("asr")) else 0.0
    head = "Backdoor planted" if p_asr >= 0.5 else "Backdoor attempted, weakly learned"
    text = f"{head}: ASR {p_asr:.2f}"
    tone = "bad" if p_asr >= 0.5 else "warn"
    details = []
    if sanitized is not None and _finite(sanitized.get("asr")):
        s_asr = float(sanitized["asr"])
        removed = sanitized.get("removed")
        by = f" flagged by {result.sanitizer}" if result.sanitizer else " flagged"
        text += f" \u2192 after removing {fmt_num(removed)} samples{by}: ASR {s_asr:.2f}"
        if s_asr <= max(0.1, c_asr + 0.05):
            tone, verdict = "good", "the backdoor is neutralised"
        elif s_asr < 0.5 * p_asr:
            tone, verdict = "warn", "the backdoor is weakened but still works on some inputs"
        else:
            tone, verdict = "bad", "the backdoor survives sanitisation"
        text += f" \u2014 {verdict}."
        n_poison = result.budget.get("n_poison") if isinstance(result.budget, dict) else None
        if sanitized.get("poisons_left") is not None:
            left = f"{fmt_num(sanitized['poisons_left'])}"
            left += f" of {fmt_num(n_poison)}" if n_poison is not None else ""
            details.append(f"{left} poisons left in the sanitised training set")
    else:
        text += "."
    accs = [f"{r['stage']} {fmt_num(r.get('clean_accuracy'))}" for r in (clean, poisoned, sanitized)
            if r is not None and "clean_accuracy" in r]
    if accs:
        details.insert(0, "clean accuracy: " + ", ".join(accs))
    return {"text": text, "detail": "; ".join(details) + ("." if details else ""), "tone": tone}


def _stage_table(result: Any) -> dict:
    cols = [(k, label) for k, label in STAGE_COLUMNS if any(k in r for r in result.rows)]
    rows = [{"stage": str(r.get("stage", "?")),
             "cells": [fmt_num(r[k]) if k in r else "\u2014" for k, _ in cols]} for r in result.rows]
    return {"columns": [label for _, label in cols], "rows": rows}


def _detection_table(result: Any) -> dict:
    rows = []
    for name, m in result.detection.items():
        cells = []
        for key, _ in DETECTION_COLUMNS:
            v = m.get(key)
            cells.append("\u2014" if key not in m else _fmt_seconds(v) if key == "seconds" else fmt_num(v))
        rows.append({"name": str(name), "sanitizer": name == result.sanitizer, "cells": cells})
    return {"columns": [label for _, label in DETECTION_COLUMNS], "rows": rows}


def _label_of(dataset: Any, i: int) -> str:
    try:
        return str(dataset.classes[int(dataset.y[i])])
    except (IndexError, TypeError, ValueError):
        return str(dataset.y[i])


def _suspicious(result: Any, n: int) -> Optional[dict]:
    """The top-``n`` samples by the sanitiser's scores: rows for a table, and the image grid."""
    from mithridate.report import plots

    poisoning = result.poisoning
    name = result.sanitizer or next(iter(result.scores), "")
    if poisoning is None or name not in result.scores:
        return None
    ds = poisoning.dataset
    scores = np.asarray(result.scores[name], dtype=float)
    if scores.shape != (len(ds),):
        return None
    truth = None if ds.is_poison is None else np.asarray(ds.is_poison, dtype=bool)
    flags = result.flags.get(name)
    order = plots.top_indices(scores, min(n, len(ds)))
    labels = [_label_of(ds, i) for i in range(len(ds))] if ds.is_image else None
    grid = None
    if ds.is_image:
        grid = plots.suspicious_grid(ds.X, scores, ids=ds.ids, labels=labels, is_poison=truth, n=n,
                                     title=f"top {len(order)} by {name} score (red border: truly poisoned)"
                                     if truth is not None else f"top {len(order)} by {name} score")
    n_feat = 0 if ds.is_image else min(N_TABLE_FEATURES, ds.X.shape[1])
    extra_meta = [c for c in ("contributor", "source") if c in ds.meta.columns and ds.meta[c].notna().any()]
    rows = []
    for rank, i in enumerate(order, start=1):
        rows.append({
            "rank": rank,
            "id": str(ds.ids[i]),
            "label": _label_of(ds, i),
            "score": f"{scores[i]:.4g}",
            "flagged": None if flags is None else bool(flags[i]),
            "poison": None if truth is None else bool(truth[i]),
            "meta": [str(ds.meta[c].iloc[i]) for c in extra_meta],
            "features": [f"{float(v):.4g}" for v in np.asarray(ds.X[i]).ravel()[:n_feat]],
        })
    return {
        "detector": str(name),
        "grid": _b64(grid),
        "rows": rows,
        "has_truth": truth is not None,
        "has_flags": flags is not None,
        "meta_columns": extra_meta,
        "feature_columns": [f"x{j}" for j in range(n_feat)],
        "more_features": 0 if ds.is_image else int(ds.X.shape[1] - n_feat),
        "is_image": bool(ds.is_image),
    }


def _plots(result: Any) -> list:
    from mithridate.report import plots

    truth = None
    if result.poisoning is not None and result.poisoning.dataset.is_poison is not None:
        truth = np.asarray(result.poisoning.dataset.is_poison, dtype=bool)
    out = []

    def add(key: str, title: str, caption: str, png: Optional[bytes]) -> None:
        if png is not None:
            out.append({"key": key, "title": title, "caption": caption, "b64": _b64(png)})

    add("stages", "Accuracy and attack success per stage",
        "Clean accuracy on the clean test set; ASR and robust accuracy on triggered test inputs whose true "
        "class is not the target.", plots.stage_bars(result.rows))
    add("scores", "Suspicion scores",
        "Per-detector score histograms" + (", clean and poisoned samples apart" if truth is not None else "")
        + ". The orange region or outline marks what each detector flagged.",
        plots.score_histograms(result.scores, truth, result.flags))
    add("roc", "ROC curves", "How well each detector's scores separate poisons from clean samples "
        "(ground truth from the simulation).", plots.roc_curves(result.scores, truth))
    return out


def _trigger(result: Any) -> Optional[dict]:
    from mithridate.report import plots

    p = result.poisoning
    if p is None or p.trigger is None:
        return None
    example = None
    ds = p.dataset
    if ds.is_image and len(ds):
        clean_idx = np.flatnonzero(~np.asarray(ds.is_poison, dtype=bool)) if ds.is_poison is not None else []
        example = ds.X[int(clean_idx[0]) if len(clean_idx) else 0]
    png = plots.trigger_image(p.trigger, example)
    if png is None:
        return None
    return {"b64": _b64(png), "kind": str(getattr(p.trigger, "kind", "")), "repr": repr(p.trigger)}


def _dataset_info(result: Any) -> dict:
    p = result.poisoning
    info = {"name": str(result.config.get("dataset", "")), "classes": [], "more_classes": 0, "target": None,
            "shape": ""}
    if p is not None:
        ds = p.dataset
        info["name"] = info["name"] or str(ds.name)
        info["classes"] = [str(c) for c in ds.classes[:40]]
        info["more_classes"] = max(0, len(ds.classes) - 40)
        info["shape"] = " \u00d7 ".join(str(d) for d in ds.X.shape[1:])
        if p.target is not None and 0 <= int(p.target) < len(ds.classes):
            info["target"] = f"{ds.classes[int(p.target)]} (index {int(p.target)})"
    return info


def _config_items(config: dict) -> list:
    items = []
    for k, v in config.items():
        if isinstance(v, dict):
            items.append({"key": str(k), "value": None,
                          "sub": [{"key": str(sk), "value": _fmt_value(sv)} for sk, sv in v.items()]})
        else:
            value = _fmt_value(v)
            if k == "flag_budget" and v is None:
                value = "each detector's default rule"
            items.append({"key": str(k), "value": value, "sub": None})
    return items


def _version() -> str:
    try:
        from mithridate import __version__
    except ImportError:  # pragma: no cover
        return "unknown"
    return str(__version__)


def build_context(result: Any, *, title: str = "mithridate report") -> dict:
    """Everything the template shows, as plain strings and base64 PNGs (no markup)."""
    budget = dict(result.budget or {})
    return {
        "title": str(title),
        "verdict": _verdict(result),
        "dataset": _dataset_info(result),
        "attack": str(result.config.get("attack", "")),
        "detectors": [str(d) for d in result.detection],
        "sanitizer": str(result.sanitizer),
        "stages": _stage_table(result),
        "detection": _detection_table(result),
        "budget": [{"key": str(k), "value": fmt_num(v)} for k, v in budget.items()],
        "flag_budget": result.config.get("flag_budget"),
        "plots": _plots(result),
        "suspicious": _suspicious(result, N_SUSPICIOUS),
        "trigger": _trigger(result),
        "config": _config_items(result.config),
        "timings": [{"key": str(k), "value": _fmt_seconds(v)} for k, v in (result.timings or {}).items()],
        "version": _version(),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(result: Any, *, title: str = "mithridate report") -> str:
    """The report as an HTML string (what :func:`write_report` writes)."""
    template = _environment().get_template(TEMPLATE_NAME)
    return template.render(**build_context(result, title=title))


def write_report(result: Any, path: Union[str, Path], *, title: str = "mithridate report") -> Path:
    """Write a self-contained HTML report of a :class:`~mithridate.eval.scenario.BackdoorScenarioResult`.

    Parameters
    ----------
    result : BackdoorScenarioResult
        What :func:`~mithridate.eval.scenario.run_backdoor_scenario` returned. Plots that need
        the poisoned dataset, scores or ground truth are left out when those are missing.
    path : str or Path
        Output file; parent folders are created and the file is replaced atomically.
    title : str, default="mithridate report"
        Page title (escaped like everything else).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> from mithridate.report import write_report                          # doctest: +SKIP
    >>> write_report(result, "out/report.html", title="digits / badnets")   # doctest: +SKIP
    PosixPath('out/report.html')
    """
    path = Path(path)
    atomic_write_text(path, render_report(result, title=title))
    return path
