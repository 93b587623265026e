"""The audit report: one self-contained HTML page per audit (``report.html``).

What a reader needs first comes first: the verdict and every policy check; then the most
suspicious samples themselves (image thumbnails, text snippets or table rows) with the detectors
that flagged them and why; the score distribution of each class; how often the detectors agree;
the contributors with their reputation, credible interval and trend across versions; and what
changed since the last audited version.

Like :mod:`mithridate.report.html`, the page embeds its plots as ``data:`` PNGs and its CSS
inline, loads nothing from the network, runs no script, and carries a Content-Security-Policy
that forbids both. A poisoned dataset is hostile input: labels, ids, contributors, sources and
text reach the page only through Jinja2 autoescaping (nothing derived from data is marked
``|safe``), and plot text is drawn with ``parse_math=False``.

>>> from mithridate.report.audit_report import write_audit_report     # doctest: +SKIP
>>> write_audit_report(result, "audit/report.html")                   # doctest: +SKIP
PosixPath('audit/report.html')
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd

from mithridate.audit.policy import level_description
from mithridate.report.html import _b64, _environment, _version, fmt_num
from mithridate.utils import atomic_write_text

TEMPLATE_NAME = "audit.html"
N_TOP = 24
N_TABLE_FEATURES = 6
N_CONTRIBUTORS = 50
N_DIFF_IDS = 20
N_PLOT_CLASSES = 20
N_PLOT_CONTRIBUTORS = 20
TEXT_SNIPPET = 160
CHECK_TITLES = {
    "flagged_share": "flagged share, overall",
    "class_flagged_share": "flagged share, worst class",
    "contributor_flagged": "flagged share, worst contributor",
    "reputation": "contributor reputation",
    "relabelled_share": "relabelled since last version",
    "new_flagged_share": "flagged share of new samples",
    "roni": "RONI by contributor",
}


# -- formatting -----------------------------------------------------------------------------------
def _pct(v: Any) -> str:
    if v is None or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
        return "\u2014"
    return f"{100 * float(v):.1f}%"


def _snippet(v: Any, limit: int = TEXT_SNIPPET) -> Optional[str]:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = " ".join(str(v).split())
    return s if len(s) <= limit else s[: limit - 1] + "\u2026"


def _s(v: Any) -> str:
    return "\u2014" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


# -- plots (drawn with the helpers of mithridate.report.plots) --------------------------------------
def class_score_plot(scores: np.ndarray, labels: list, flags: np.ndarray, *, max_classes: int = N_PLOT_CLASSES) -> Optional[bytes]:
    """Ensemble-score distribution of each class (box plots), flagged samples as orange dots.

    Classes are ordered by how many of their samples were flagged; at most ``max_classes`` are
    drawn. The score axis is symmetric-log (scores are sums of positive z-scores, heavy-tailed).
    """
    from mithridate.report import plots

    scores = np.asarray(scores, dtype=float)
    flags = np.asarray(flags, dtype=bool)
    if not len(scores):
        return None
    df = pd.DataFrame({"label": [str(v) for v in labels], "s": scores, "f": flags})
    stats = df.groupby("label", sort=True)["f"].agg(["sum", "size"])
    order = stats.sort_values(["sum", "size"], ascending=False, kind="stable").index.tolist()[:max_classes]
    order = order[::-1]  # most flagged class on top
    data = [df.loc[df["label"] == c, "s"].to_numpy() for c in order]
    fig = plots._figure(7.0, 0.42 * len(order) + 1.5)
    ax = fig.add_subplot()
    import inspect

    horizontal = ({"orientation": "horizontal"} if "orientation" in inspect.signature(ax.boxplot).parameters
                  else {"vert": False})
    ax.boxplot(data, **horizontal, widths=0.6, showfliers=False, patch_artist=True,
               boxprops={"facecolor": "#dbe4ff", "edgecolor": plots.CLEAN_COLOR},
               medianprops={"color": plots.CLEAN_COLOR})
    rng = np.random.default_rng(0)  # jitter only (drawing), not a statistical draw
    for k, c in enumerate(order, start=1):
        part = df[df["label"] == c]
        rest, fl = part.loc[~part["f"], "s"].to_numpy(), part.loc[part["f"], "s"].to_numpy()
        ax.scatter(rest, k + rng.uniform(-0.18, 0.18, len(rest)), s=4, color="#8c96a8", alpha=0.35, lw=0)
        ax.scatter(fl, k + rng.uniform(-0.18, 0.18, len(fl)), s=14, color=plots.FLAG_COLOR, alpha=0.9, lw=0,
                   label="flagged" if k == len(order) else None)
    ax.set_yticks(range(1, len(order) + 1))
    ax.set_yticklabels([f"{plots.short_text(c, 24)} ({int(stats.at[c, 'sum'])}/{int(stats.at[c, 'size'])})"
                        for c in order], parse_math=False, fontsize=8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("ensemble score (sum of positive member z-scores; symlog)")
    ax.grid(axis="x", alpha=0.25)
    if flags.any():
        ax.legend(fontsize=8, loc="lower right")
    return plots._png(fig)


def reputation_plot(rep: pd.DataFrame, *, max_rows: int = N_PLOT_CONTRIBUTORS) -> Optional[bytes]:
    """Posterior mean and credible interval of the most suspicious contributors, population rate dashed,
    each contributor's class-mix baseline as a tick."""
    from mithridate.report import plots

    if rep is None or not len(rep):
        return None
    top = rep.head(max_rows).iloc[::-1]
    fig = plots._figure(7.0, 0.32 * len(top) + 1.4)
    ax = fig.add_subplot()
    y = np.arange(len(top))
    above = top["above_population"].to_numpy(bool)
    mean = top["posterior_mean"].to_numpy(float)
    lo, hi = top["ci_lower"].to_numpy(float), top["ci_upper"].to_numpy(float)
    colors = np.where(above, plots.POISON_COLOR, plots.CLEAN_COLOR)
    ax.hlines(y, lo, hi, colors=colors, lw=2)
    ax.scatter(mean, y, color=colors, s=22, zorder=3)
    pop = float(top["population_rate"].iloc[0])
    if math.isfinite(pop):
        ax.axvline(pop, color="#666666", ls="--", lw=1, label=f"population rate {100 * pop:.1f}%")
        if "baseline_rate" in top.columns:  # each contributor's rate expected from its class mix
            ax.scatter(top["baseline_rate"].to_numpy(float), y, marker="|", s=120, color="#333333", zorder=4,
                       label="expected from its class mix")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_yticks(y)
    ax.set_yticklabels([plots.short_text(c, 24) for c in top["contributor"]], parse_math=False, fontsize=8)
    ax.set_xlim(0, min(1.0, max(float(np.nanmax(hi)) * 1.1, 0.05)))
    ax.set_xlabel("posterior flag rate and credible interval (red: above the rate its class mix predicts)")
    ax.grid(axis="x", alpha=0.25)
    return plots._png(fig)


def trend_plot(trends: dict, current: dict, version: Optional[int], *, names: list) -> Optional[bytes]:
    """Flag rate per version of the given contributors (earlier audits from the ledger, then this one)."""
    from mithridate.report import plots

    series = {}
    for c in names:
        pts = [(t["version"], t["rate"]) for t in trends.get(c, [])]
        if version is not None and c in current:
            pts = [p for p in pts if p[0] != version] + [(version, current[c])]
        if len(pts) >= 2:
            series[c] = sorted(pts)
    if not series:
        return None
    fig = plots._figure(7.0, 3.2)
    ax = fig.add_subplot()
    for c, pts in series.items():
        v, r = zip(*pts)
        ax.plot(v, r, marker="o", lw=1.5, ms=4, label=plots.short_text(c, 20))
    ax.set_xlabel("version")
    ax.set_ylabel("share flagged")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7, ncols=2, loc="best")
    for t in ax.get_legend().get_texts():
        t.set_parse_math(False)
    return plots._png(fig)


# -- context --------------------------------------------------------------------------------------
def _verdict(result: Any) -> dict:
    s = result.summary
    failed = [r for r in result.policy_results if not r.passed]
    n, k = s.get("n_samples", 0), s.get("n_flagged", 0)
    if not failed:
        return {"tone": "good", "text": "PASS \u2014 no policy check failed",
                "detail": f"{k} of {n} samples flagged ({_pct(s.get('share_flagged'))}); "
                          f"{len(result.policy_results)} checks passed."}
    names = ", ".join(CHECK_TITLES.get(r.name, r.name) for r in failed)
    return {"tone": "bad", "text": f"FAIL \u2014 {len(failed)} of {len(result.policy_results)} policy checks failed",
            "detail": f"{names}. {k} of {n} samples flagged ({_pct(s.get('share_flagged'))})."}


def _policy_rows(result: Any) -> list:
    rows = []
    for r in result.policy_results:
        is_share = r.name.endswith("share") or r.name == "contributor_flagged"
        fmt = _pct if is_share else (lambda v: fmt_num(v, 3) if v is not None else "\u2014")
        rows.append({"name": CHECK_TITLES.get(r.name, r.name), "key": r.name, "passed": bool(r.passed),
                     "value": fmt(r.value), "limit": fmt(r.limit) if r.limit is not None else "\u2014",
                     "message": str(r.message)})
    return rows


def _top_samples(result: Any, n: int) -> dict:
    from mithridate.report import plots

    ds = result.dataset
    f = result.findings
    scores = f["ensemble_score"].to_numpy(float)
    flags = f["flagged"].to_numpy(bool)
    order = plots.top_indices(scores, min(n, len(f)))
    text_col = next((c for c in ("text", "display_text") if c in ds.meta.columns and ds.meta[c].notna().any()), None)
    has_text = text_col is not None
    is_text = "text" in ds.meta.columns  # features are a text embedding: the text says more than its numbers
    n_feat = 0 if ds.is_image or is_text else min(N_TABLE_FEATURES, ds.n_features)
    rows = []
    for rank, i in enumerate(order, start=1):
        rows.append({
            "rank": rank, "id": str(f["id"].iloc[i]), "label": str(f["label"].iloc[i]),
            "contributor": _s(f["contributor"].iloc[i]), "status": str(f["status"].iloc[i]),
            "score": f"{scores[i]:.3g}", "flagged": bool(flags[i]), "flagged_by": str(f["flagged_by"].iloc[i]),
            "reasons": str(f["reasons"].iloc[i]),
            "text": _snippet(ds.meta[text_col].iloc[i]) if has_text else None,
            "features": [f"{float(v):.4g}" for v in np.asarray(ds.X[i]).ravel()[:n_feat]],
        })
    grid = None
    if ds.is_image:
        grid = plots.suspicious_grid(ds.X, scores, ids=[str(i) for i in f["id"]], labels=f["label"].tolist(),
                                     is_poison=flags, n=n, title=f"top {len(order)} by ensemble score (red border: flagged)")
    member_cols = [c[: -len("_score")] for c in f.columns if c.endswith("_score") and c != "ensemble_score"]
    return {"rows": rows, "grid": _b64(grid), "is_image": bool(ds.is_image), "has_text": bool(has_text),
            "feature_columns": (list(result.summary.get("feature_names") or [])[:n_feat]
                                or [f"x{j}" for j in range(n_feat)]),
            "more_features": 0 if ds.is_image or is_text else int(ds.n_features - n_feat), "members": member_cols}


def _agreement(summary: dict) -> Optional[dict]:
    a = summary.get("agreement")
    if not a:
        return None
    names = [str(x) for x in a["names"]]
    both = a["both"]
    rows = [{"name": names[i], "cells": [{"count": int(both[i][j]), "diag": i == j} for j in range(len(names))]}
            for i in range(len(names))]
    return {"names": names, "rows": rows}


def _contributors(result: Any) -> Optional[dict]:
    rep = result.reputation
    if rep is None or not len(rep):
        return None
    s = result.summary
    current = {c["contributor"]: c for c in s.get("contributors") or []}
    trends = {c["contributor"]: c.get("trend") or [] for c in s.get("contributors") or []}
    batch_info = s.get("batch_reputation") if isinstance(s.get("batch_reputation"), dict) else None
    batch = {str(c["contributor"]): c for c in (batch_info or {}).get("contributors") or []}

    def new_samples(name: str) -> dict:
        b = batch.get(name)
        if b is None:
            return {"text": "\u2014" if batch_info else "", "above": False}
        return {"text": f"{int(b['flagged'])} of {int(b['n'])} ({_pct(b['rate'])}; expected {_pct(b['baseline_rate'])})",
                "above": bool(b["above_population"])}

    rows = []
    for r in rep.head(N_CONTRIBUTORS).itertuples(index=False):
        name = str(r.contributor)
        cur = current.get(name)
        trend = [_pct(t["rate"]) for t in trends.get(name, [])]
        if cur is not None and trend:
            trend.append(_pct(cur["share"]))
        rows.append({
            "rank": int(r.rank), "contributor": name, "in_version": cur is not None,
            "n": cur["n"] if cur else 0, "flagged": cur["flagged"] if cur else 0,
            "share": _pct(cur["share"]) if cur else "\u2014",
            "n_judged": int(r.n), "posterior": _pct(r.posterior_mean),
            "ci": f"{_pct(r.ci_lower)} \u2013 {_pct(r.ci_upper)}", "above": bool(r.above_population),
            "expected": _pct(getattr(r, "baseline_rate", r.population_rate)),
            "trend": " \u2192 ".join(trend), "batch": new_samples(name),
        })
    ranked = {str(c) for c in rep["contributor"]}
    for name, cur in current.items():  # in this version, no reputation yet (e.g. renamed since the last audit)
        if name in ranked or len(rows) >= N_CONTRIBUTORS:
            continue
        rows.append({"rank": "\u2014", "contributor": name, "in_version": True, "n": cur["n"], "flagged": cur["flagged"],
                     "share": _pct(cur["share"]), "n_judged": 0, "posterior": "\u2014",
                     "ci": "no reputation yet: none of its samples is new to the ledger", "above": False, "trend": "",
                     "expected": "\u2014", "batch": new_samples(name)})
    version = result.version
    rate_now = {k: v["share"] for k, v in current.items()}
    trend_png = trend_plot(trends, rate_now, version, names=[str(c) for c in rep["contributor"].head(8)])
    return {"rows": rows, "more": max(0, len(rep) - N_CONTRIBUTORS), "total": len(rep),
            "concentration": _concentration(s.get("concentration"), s.get("policy") or {}),
            "population_rate": _pct(s.get("population_rate")), "level": level_description(s),
            "prior": s.get("prior") or {}, "plot": _b64(reputation_plot(rep)), "trend_plot": _b64(trend_png),
            "has_history": result.history is not None and len(result.history) > 0,
            "has_batch": batch_info is not None,
            "batch_n": int((batch_info or {}).get("n_samples") or 0),
            "n_without": int(s.get("n_without_contributor") or 0)}


def _concentration(conc: Any, policy: dict) -> Optional[dict]:
    """The permutation test of whether the top-ranked samples come from few contributors."""
    if not isinstance(conc, dict):
        return None
    if conc.get("p_value") is None:
        return {"ran": False, "fails": False, "reason": str(conc.get("reason") or "")}
    limit = (policy.get("contributors") or {}).get("concentration_p")
    p = float(conc["p_value"])
    from mithridate.audit.concentration import standouts

    shown, more = standouts(conc.get("contributors") or [], 5)  # named as the policy names them
    rows = [{"contributor": str(c["contributor"]), "top": int(c["top"]), "expected": f"{float(c['expected']):.1f}"}
            for c in shown]
    cls = conc.get("top_class")
    return {"ran": True, "p": f"{p:.3g}", "k": int(conc.get("top_k") or 0), "n_perm": int(conc.get("n_permutations") or 0),
            "cls": None if cls is None else str(cls), "n_sets": int(conc.get("n_sets") or 0),
            "limit": None if limit is None else f"{float(limit):g}", "fails": limit is not None and p <= float(limit),
            "rows": rows, "more": more}


def _diff(result: Any) -> Optional[dict]:
    d = result.summary.get("diff")
    if not d:
        return None
    counts = d.get("counts", {})
    ids = d.get("ids", {})
    lists = []
    for status in ("new", "removed", "relabelled", "modified", "duplicate"):
        all_ids = ids.get(status) or []
        if not all_ids:
            continue
        shown = [str(i) for i in all_ids[:N_DIFF_IDS]]
        more = int(counts.get(status, len(all_ids))) - len(shown)
        lists.append({"status": status, "ids": shown, "more": max(0, more)})
    relabelled = [{"id": str(r.get("id")), "old_id": _s(r.get("old_id")), "old": _s(r.get("old_label")),
                   "new": _s(r.get("label")),
                   "contributor": None if r.get("contributor") is None else str(r.get("contributor"))}
                  for r in (d.get("relabelled") or [])[:N_DIFF_IDS]]
    f = result.findings
    new_top = []
    if "status" in f.columns:
        new = f[f["status"] == "new"].sort_values("ensemble_score", ascending=False, kind="stable").head(10)
        new_top = [{"id": str(r.id), "label": str(r.label), "contributor": _s(r.contributor),
                    "score": f"{float(r.ensemble_score):.3g}", "flagged": bool(r.flagged), "reasons": str(r.reasons)}
                   for r in new.itertuples(index=False)]
    n_new = int(counts.get("new", 0))
    return {"base_version": d.get("base_version"), "version": d.get("version"),
            "by_content": d.get("matched_by") == "content",
            "counts": [{"status": k, "count": int(counts.get(k, 0))}
                       for k in ("new", "removed", "relabelled", "modified", "duplicate", "unchanged")],
            "n_old": int(counts.get("n_old", 0)), "n_new": int(counts.get("n_new", 0)), "lists": lists,
            "relabelled": relabelled, "new_top": new_top, "new_flagged": int(d.get("n_new_flagged", 0)),
            "new_share": _pct(d.get("n_new_flagged", 0) / n_new) if n_new else "\u2014"}


def _roni(result: Any) -> Optional[list]:
    t = result.roni
    if t is None or not len(t):
        return None
    return [{"batch": str(r.batch), "size": int(r.size), "impact": fmt_num(r.impact, 4), "t": fmt_num(r.t, 2),
             "flagged": bool(r.flagged)} for r in t.head(N_CONTRIBUTORS).itertuples(index=False)]


def build_audit_context(result: Any, *, title: Optional[str] = None, n_top: int = N_TOP) -> dict:
    """Everything ``audit.html`` shows, as plain strings, numbers and base64 PNGs (no markup)."""
    s = result.summary
    f = result.findings
    classes = [{"label": str(c["label"]), "n": int(c["n"]), "flagged": int(c["flagged"]), "share": _pct(c["share"])}
               for c in sorted(s.get("classes") or [], key=lambda c: -c["share"])]
    plots_ = []
    png = class_score_plot(f["ensemble_score"].to_numpy(float), f["label"].tolist(), f["flagged"].to_numpy(bool))
    if png is not None:
        plots_.append({"key": "classes", "b64": _b64(png)})
    ledger = s.get("ledger") or {}
    return {
        "title": str(title or f"Audit of {result.name}"),
        "name": str(result.name),
        "version": result.version,
        "audit_id": result.audit_id,
        "ledger_url": ledger.get("url"),
        "verdict": _verdict(result),
        "policy_rows": _policy_rows(result),
        "overview": {
            "n_samples": int(s.get("n_samples", 0)), "n_flagged": int(s.get("n_flagged", 0)),
            "share": _pct(s.get("share_flagged")), "n_classes": int(s.get("n_classes", 0)),
            "n_contributors": int(s.get("n_contributors", 0)), "representation": str(s.get("representation", "")),
            "detectors": [str(d) for d in s.get("detectors") or []],
            "skipped": [{"name": str(k), "why": str(v)} for k, v in (s.get("skipped_detectors") or {}).items()],
            "member_flagged": [{"name": str(k), "count": int(v)} for k, v in (s.get("member_flagged") or {}).items()],
        },
        "top": _top_samples(result, n_top),
        "classes": classes,
        "plots": plots_,
        "agreement": _agreement(s),
        "subpopulations": [{"detector": str(r["detector"]), "label": str(r["class"]), "n_class": int(r["n_class"]),
                            "n_group": int(r["n_group"]), "share": _pct(r["share"]),
                            "separation": f"{float(r['separation']):.2f}", "n_flagged": int(r["n_flagged"])}
                           for r in (s.get("subpopulations") or [])],
        "contributors": _contributors(result),
        "diff": _diff(result),
        "roni": _roni(result),
        "version_text": _version(),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def render_audit_report(result: Any, *, title: Optional[str] = None) -> str:
    """The audit report as an HTML string (what :func:`write_audit_report` writes)."""
    template = _environment().get_template(TEMPLATE_NAME)
    return template.render(**build_audit_context(result, title=title))


def write_audit_report(result: Any, path: Union[str, Path], *, title: Optional[str] = None) -> Path:
    """Write the self-contained HTML report of an :class:`~mithridate.audit.pipeline.AuditResult`.

    Parameters
    ----------
    result : AuditResult
        What :func:`~mithridate.audit.pipeline.run_audit` returned.
    path : str or Path
        Output file, replaced atomically.
    title : str, optional
        Page title (escaped like everything else); default ``"Audit of <name>"``.

    Returns
    -------
    Path

    Examples
    --------
    >>> write_audit_report(run_audit(ds, name="loans"), "report.html")   # doctest: +SKIP
    PosixPath('report.html')
    """
    path = Path(path)
    atomic_write_text(path, render_audit_report(result, title=title))
    return path
