"""Benchmark: BadNets backdoors vs. spectral signatures, SPECTRE and ART's spectral defence.

For each dataset x seed the clean model is trained once; then for each poison rate:

1. poison the training set with BadNets (target 0; patch 2x2 on digits, 3x3 on Fashion-MNIST);
2. train the poisoned model (``default_classifier``, the same model seed as the clean model);
3. clean accuracy, ASR and robust accuracy (``mithridate.eval.scenario.evaluate_backdoor``);
4. score the training set with our ``SpectralSignatures()`` (the default ``score="split"``),
   ``SpectralSignatures(score="robust")`` (the default before 2026-11-29),
   ``SpectralSignatures(score="paper")`` (Tran et al.'s τ), ``Spectre()`` and ``RobustDistance()``
   on the poisoned model's penultimate features, timing the feature pass (after one untimed
   warm-up pass, as ART's pass also runs warm) and the scoring separately;
5. flag with each detector's budget rule at the true rate (``flag(budget=rate)``, 1.5·rate per
   class) and with its default rule (``flag()``, no rate needed);
6. sanitise with ``Spectre().flag()`` (the default, budget-free rule), retrain, measure ASR again;
7. comparator (unless ``--no-compare`` or ART is missing): ART's ``SpectralSignatureDefense`` on
   the same trained model, read at the penultimate layer (``art_penultimate``) and at ART's
   default layer, the logits (``art_default``), with ``expected_pp_poison`` = the true rate.

Results are written after every (dataset, seed, rate), so an interrupted run still leaves a
usable JSON and markdown table.

Usage::

    PYTHONPATH=src python benchmarks/backdoor_spectral.py --quick
    PYTHONPATH=src python benchmarks/backdoor_spectral.py --datasets digits fashion-mnist \
        --rates 0.01 0.05 0.1 --seeds 0 1 2 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from mithridate.attacks.backdoor import BadNets  # noqa: E402
from mithridate.data.loaders import load_dataset  # noqa: E402
from mithridate.defenses.detect.spectral import SpectralSignatures  # noqa: E402
from mithridate.defenses.detect.spectre import Spectre  # noqa: E402

try:  # newer mithridate: SPECTRE's whitening with alpha = 0 (whitened norm)
    from mithridate.defenses.detect.spectre import RobustDistance  # noqa: E402
except ImportError:  # pragma: no cover
    RobustDistance = None
from mithridate.eval import metrics as M  # noqa: E402
from mithridate.eval.scenario import detection_metrics, evaluate_backdoor  # noqa: E402
from _common import environment as common_environment  # noqa: E402
from _common import fmt, load_for_render, write_results, yes_no  # noqa: E402
from mithridate.models.nets import default_classifier  # noqa: E402

PATCH_SIZE = {"digits": 2, "fashion-mnist": 3}
TARGET = 0
SANITIZER = "spectre"  # Spectre().flag() with its default (budget-free) rule

# Figures the product must reach (median of seeds).
TARGETS = {
    "digits": {0.05: {"asr_min": 0.95, "clean_drop_max": 0.02, "auroc_min": 0.95, "asr_after_max": 0.05}},
    "fashion-mnist": {
        0.05: {"asr_min": 0.97, "clean_drop_max": 0.015, "auroc_min": 0.95, "auroc_ge_art": True, "speedup_min": 3.0},
        0.10: {"asr_min": 0.97, "clean_drop_max": 0.015, "auroc_min": 0.95, "auroc_ge_art": True, "speedup_min": 3.0},
    },
}


MAX_REPEAT_SECONDS = 10.0  # stop repeating a timed stage once its runs add up to this (both sides)


def detectors() -> dict:
    dets = {"spectral": SpectralSignatures(), "spectral_robust": SpectralSignatures(score="robust"),
            "spectral_paper": SpectralSignatures(score="paper"), "spectre": Spectre()}
    if RobustDistance is not None:
        dets["robust_distance"] = RobustDistance()
    return dets


def warm_up() -> None:
    """Run each detector once on small synthetic data, untimed, so that first-call costs (BLAS
    thread start-up, lazy imports of scipy/scikit-learn) do not land in the first timed rate."""
    from mithridate.data.dataset import Dataset

    rng = np.random.default_rng(0)
    ds = Dataset.from_arrays(rng.normal(size=(400, 16)).astype(np.float32), np.repeat([0, 1], 200))
    for det in detectors().values():
        det.fit(ds, features=np.asarray(ds.X)).flag(budget=0.05)


def log(msg: str) -> None:
    print(f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------
# one scenario
# ----------------------------------------------------------------------------------------
def load(name: str, limit_train: Optional[int], limit_test: Optional[int]):
    if name == "fashion-mnist":
        kw = {}
        if limit_train:
            kw["limit_train"] = limit_train
        if limit_test:
            kw["limit_test"] = limit_test
        return load_dataset(name, **kw)
    return load_dataset(name)  # scikit-learn's bundled set, stratified split with random_state=0


def train(data, seed: int, n_classes: int):
    t0 = time.perf_counter()
    model = default_classifier(len(data), random_state=seed).fit(data, n_classes=n_classes)
    return model, time.perf_counter() - t0


def target_class_auroc(scores: np.ndarray, truth: np.ndarray, y: np.ndarray, target: int) -> float:
    m = y == target
    return M.auroc(scores[m], truth[m])


def flag_metrics(flags: np.ndarray, truth: np.ndarray, prefix: str) -> dict:
    f, t = np.asarray(flags, bool), np.asarray(truth, bool)
    prec, rec = M.precision_recall(f, t)
    return {f"{prefix}_n_flagged": int(f.sum()), f"{prefix}_tpr": rec, f"{prefix}_precision": prec,
            f"{prefix}_fpr": float((f & ~t).sum() / max(int((~t).sum()), 1))}


def run_rate(splits, clean_row: dict, dataset: str, seed: int, rate: float, compare: bool,
             repeats: int = 3) -> list[dict]:
    n_classes = splits.train.n_classes
    attack = BadNets(target=TARGET, poison_rate=rate, size=PATCH_SIZE.get(dataset, 3))
    attack_rng = np.random.default_rng([seed, int(round(rate * 1e6))])
    poisoning = attack.poison(splits.train, random_state=attack_rng)
    truth = poisoning.poison_mask
    y = np.asarray(poisoning.dataset.y)
    log(f"{dataset} seed={seed} rate={rate}: {int(truth.sum())} poisons; training the poisoned model")
    model, t_train = train(poisoning.dataset, seed, n_classes)
    poisoned_eval = evaluate_backdoor(model, splits.test, poisoning)
    log(f"  poisoned: clean acc {poisoned_eval['clean_accuracy']:.4f}  ASR {poisoned_eval['asr']:.4f}"
        f"  ({t_train:.1f}s)")

    view = poisoning.dataset.without_ground_truth()
    model.features(view.X[:2048], layer="penultimate")  # untimed warm-up: ART's pass runs after ours, warm
    t0 = time.perf_counter()
    feats = model.features(view.X, layer="penultimate")
    t_feat = time.perf_counter() - t0

    dets = detectors()
    method_rows: dict[str, dict] = {}
    default_flags: dict[str, np.ndarray] = {}
    for name, det in dets.items():
        times = []
        for _ in range(max(int(repeats), 1)):  # min of repeats: the machine is shared, timings are noisy
            t0 = time.perf_counter()
            det.fit(view, features=feats)
            f_budget = det.flag(budget=rate)
            times.append(time.perf_counter() - t0)
            if sum(times) > MAX_REPEAT_SECONDS:
                break
        t_score = min(times)
        f_default = det.flag()
        default_flags[name] = f_default
        row = {"method": name, "layer_read": f"penultimate ({model._resolve_layer('penultimate')}, "
                                              f"{feats.shape[1]}-d)",
               **detection_metrics(det.scores_, truth, None),
               "auroc_target_class": target_class_auroc(det.scores_, truth, y, poisoning.target),
               **flag_metrics(f_budget, truth, "budget"), **flag_metrics(f_default, truth, "default"),
               "seconds_features": t_feat, "seconds_scoring": t_score, "seconds_scoring_all": times,
               "seconds_total": t_feat + t_score}
        method_rows[name] = row
        log(f"  {name:15s} AUROC {row['auroc']:.4f}  TPR@5%FPR {row['tpr_at_5pct_fpr']:.3f}  "
            f"budget TPR/FPR {row['budget_tpr']:.3f}/{row['budget_fpr']:.4f}  scoring {t_score:.3f}s")

    if compare:
        from _art_compare import run_art_spectral

        penult = model._resolve_layer("penultimate")
        for name, trunc in (("art_penultimate", penult), ("art_default", None)):
            try:
                res = run_art_spectral(model.module_, poisoning.dataset.X, y, nb_classes=n_classes,
                                       expected_pp_poison=rate, truncate_after=trunc,
                                       reference_features=feats if trunc else None, repeats=repeats,
                                       max_repeat_seconds=MAX_REPEAT_SECONDS)
            except Exception as exc:  # record the failure, keep benchmarking
                method_rows[name] = {"method": name, "error": f"{type(exc).__name__}: {exc}"}
                log(f"  {name}: FAILED {type(exc).__name__}: {exc}")
                continue
            row = {"method": name, "layer_read": f"{res['layer_read']} ({res['feature_dim']}-d, ART's last layer)",
                   **detection_metrics(res["scores"], truth, None),
                   "auroc_target_class": target_class_auroc(res["scores"], truth, y, poisoning.target),
                   **flag_metrics(res["flags"], truth, "budget"),
                   "seconds_features": res["seconds_features"], "seconds_scoring": res["seconds_scoring"],
                   "seconds_total": res["seconds_total"], "seconds_first_call": res["seconds_first_call"],
                   "seconds_scoring_all": res["seconds_scoring_all"],
                   "art_flags_consistent": res["flags_consistent"]}
            if "feature_max_abs_diff" in res:
                row["feature_max_abs_diff_vs_ours"] = res["feature_max_abs_diff"]
            method_rows[name] = row
            log(f"  {name:15s} AUROC {row['auroc']:.4f}  TPR@5%FPR {row['tpr_at_5pct_fpr']:.3f}  "
                f"budget TPR/FPR {row['budget_tpr']:.3f}/{row['budget_fpr']:.4f}  "
                f"total {res['seconds_total']:.3f}s (features {res['seconds_features']:.3f}s) "
                f"layer={res['layer_read']} consistent={res['flags_consistent']}")

    flags = default_flags[SANITIZER]
    cleaned = poisoning.dataset.drop(flags)
    log(f"  sanitising: {SANITIZER}.flag() removes {int(flags.sum())} ({int((flags & truth).sum())} poisons); retraining")
    san_model, t_san = train(cleaned, seed, n_classes)
    san_eval = evaluate_backdoor(san_model, splits.test, poisoning)
    log(f"  sanitised: clean acc {san_eval['clean_accuracy']:.4f}  ASR {san_eval['asr']:.4f}  ({t_san:.1f}s)")

    shared = {
        "dataset": dataset, "rate": rate, "seed": seed, "n_train": len(splits.train), "n_test": len(splits.test),
        "attack": "badnets", "patch_size": attack.size, "target": int(poisoning.target),
        "n_poison": int(truth.sum()), "target_class_fraction": poisoning.budget["target_class_fraction"],
        **clean_row,
        "clean_acc_poisoned": poisoned_eval["clean_accuracy"], "asr": poisoned_eval["asr"],
        "robust_acc": poisoned_eval["robust_accuracy"],
        "clean_drop": clean_row["clean_acc_clean"] - poisoned_eval["clean_accuracy"],
        "sanitizer": f"{SANITIZER}.flag() (default rule)", "removed": int(flags.sum()),
        "poisons_removed": int((flags & truth).sum()), "poisons_left": int(cleaned.is_poison.sum()),
        "clean_acc_sanitized": san_eval["clean_accuracy"], "asr_sanitized": san_eval["asr"],
        "robust_acc_sanitized": san_eval["robust_accuracy"],
        "seconds_train_poisoned": t_train, "seconds_train_sanitized": t_san,
    }
    return [{**shared, **row} for row in method_rows.values()]


# ----------------------------------------------------------------------------------------
# aggregation and output
# ----------------------------------------------------------------------------------------
def _num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def medians(rows: list[dict]) -> list[dict]:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["rate"], r["method"]), []).append(r)
    out = []
    for (ds, rate, method), rs in sorted(groups.items()):
        m = {"dataset": ds, "rate": rate, "method": method, "n_seeds": len(rs), "seeds": [r["seed"] for r in rs]}
        keys = sorted({k for r in rs for k in r if k not in ("dataset", "rate", "method", "seed")})
        for k in keys:
            vals = [r[k] for r in rs if k in r and _num(r[k]) and not (isinstance(r[k], float) and math.isnan(r[k]))]
            if vals:
                m[k] = float(np.median(vals))
            else:
                others = {json.dumps(r[k], default=str) for r in rs if k in r}
                if len(others) == 1:
                    m[k] = json.loads(others.pop())
        # speed ratios per seed, then their median
        out.append(m)
    return out


def speed_ratios(rows: list[dict]) -> dict:
    """Median over seeds of ART seconds / our spectral seconds, per (dataset, rate)."""
    by: dict = {}
    for r in rows:
        by.setdefault((r["dataset"], r["rate"], r["seed"]), {})[r["method"]] = r
    acc: dict = {}
    for (ds, rate, _), ms in by.items():
        ours, art = ms.get("spectral"), ms.get("art_penultimate")
        if not ours or not art or "seconds_total" not in art:
            continue
        d = acc.setdefault((ds, rate), {"scoring": [], "total": []})
        d["scoring"].append(art["seconds_scoring"] / max(ours["seconds_scoring"], 1e-9))
        d["total"].append(art["seconds_total"] / max(ours["seconds_total"], 1e-9))
    return {k: {kk: float(np.median(vv)) for kk, vv in v.items()} for k, v in acc.items()}


def environment(args: argparse.Namespace, art_version: Optional[str]) -> dict:
    return common_environment(args, **{"adversarial-robustness-toolbox": art_version, "blas": _blas_info(),
                                       "detector_params": {name: dict(vars(det)) for name, det in detectors().items()}})


def _blas_info() -> list:
    try:
        from threadpoolctl import threadpool_info
    except Exception:
        return []
    return [{k: d.get(k) for k in ("user_api", "internal_api", "num_threads", "version")} for d in threadpool_info()]


def target_checks(ds: str, rate: float, get, ratio: Optional[dict]) -> list[tuple[str, Optional[bool], str]]:
    """(figure, met?, measured) for the figures that apply to (dataset, rate)."""
    spec = TARGETS.get(ds, {}).get(round(rate, 4))
    if spec is None:
        return []
    out = []
    asr = get("spectral", "asr")
    out.append((f"ASR ≥ {spec['asr_min']}", None if asr is None else asr >= spec["asr_min"], fmt(asr)))
    drop = get("spectral", "clean_drop")
    out.append((f"clean drop ≤ {spec['clean_drop_max'] * 100:g} pts", None if drop is None else drop <= spec["clean_drop_max"] + 1e-12,
                f"{fmt(None if drop is None else drop * 100, 2)} pts"))
    au = get("spectral", "auroc")
    out.append((f"spectral AUROC ≥ {spec['auroc_min']}", None if au is None else au >= spec["auroc_min"], fmt(au, 4)))
    if "asr_after_max" in spec:
        a2 = get("spectral", "asr_sanitized")
        out.append((f"ASR after removal ≤ {spec['asr_after_max']} (SPECTRE default rule, retrained)", None if a2 is None else a2 <= spec["asr_after_max"], fmt(a2)))
    if spec.get("auroc_ge_art"):
        art = get("art_penultimate", "auroc")
        out.append(("spectral AUROC ≥ ART's (same penultimate features)",
                    None if (au is None or art is None) else au >= art, f"{fmt(au, 4)} vs {fmt(art, 4)}"))
    if "speedup_min" in spec:
        r = None if ratio is None else ratio.get("scoring")
        out.append((f"our detector ≥ {spec['speedup_min']:g}× faster than ART's (scoring the same features)",
                    None if r is None else r >= spec["speedup_min"], f"{fmt(r, 1)}×"))
        # context, not the figure: both sides run the same torch forward pass, which dominates
        r = None if ratio is None else ratio.get("total")
        out.append(("context: ratio with each side's own feature pass included (not a target: the "
                    "same forward pass on both sides bounds it near 1×)", None, f"{fmt(r, 1)}×"))
    return out


def render_md(payload: dict) -> str:
    med = payload["medians"]
    ratios = {(d["dataset"], d["rate"]): d for d in payload["speed_ratios"]}
    idx = {(m["dataset"], m["rate"], m["method"]): m for m in med}
    keys = sorted({(m["dataset"], m["rate"]) for m in med}, key=lambda k: (k[0] != "digits", k[0], k[1]))
    env = payload["environment"]
    has_art = any(m["method"].startswith("art_") and "auroc" in m for m in med)

    def get(ds, rate, method, key):
        v = idx.get((ds, rate, method), {}).get(key)
        return v if _num(v) else None

    L = ["# BadNets vs. spectral signatures, SPECTRE and ART", ""]
    status = "complete" if payload.get("complete") else "PARTIAL (run still going or interrupted)"
    L += [f"Status: **{status}**. Medians over seeds "
          f"{sorted({s for m in med for s in m.get('seeds', [])})}. Generated by "
          + "; then ".join(f"`{e['command']}` ({e['date']}, {fmt(e.get('wall_seconds'), 0)} s)"
                           for e in payload.get("runs", [env])) + ".",
          f"torch {env['torch']}, numpy {env['numpy']}, scikit-learn {env['scikit-learn']}, "
          f"ART {env['adversarial-robustness-toolbox']}; {env['cpu_count']} CPU cores "
          f"(torch threads {env['torch_threads']}, OPENBLAS_NUM_THREADS={env.get('thread_env', {}).get('OPENBLAS_NUM_THREADS')}; "
          "the cores were shared with other jobs, so timings are noisy).", ""]
    git = env.get("git") or {}
    sp = (env.get("detector_params") or {}).get("spectre", {})
    L += [f"Code: mithridate commit `{git.get('commit')}`" + (" (src/ had uncommitted changes)" if git.get("src_dirty") else "")
          + f"; `Spectre()` defaults {json.dumps(sp, default=str)}.", ""]
    L += ["Setup: BadNets, target class 0, white patch bottom-right (2×2 on digits, 3×3 on Fashion-MNIST), "
          "`default_classifier` (small CNN; 30 epochs on digits, 6 on Fashion-MNIST), the same model seed for the "
          "clean, poisoned and sanitised models of a seed. Detectors read the poisoned model's penultimate layer "
          "(`relu1`, 128-d). `spectral` is `SpectralSignatures()` with its default `score=\"split\"` (top singular "
          "directions of the raw and the globally whitened class representations, the cleanest two-group split, "
          "scored from the group nearer the rest of the data); `score=\"robust\"` was the default before "
          "2026-11-29; `score=\"paper\"` is Tran et al.'s τ. Sanitising removes what `Spectre().flag()` flags (its default rule, no poison rate given) "
          "and retrains. `robust_distance` (SPECTRE's whitening with α = 0) is scored as an extra, when the installed "
          "mithridate has it.",
          ""]
    L += ["## Attack and sanitisation", "",
          "| dataset | rate | seeds | n poison | clean acc (clean model) | clean acc (poisoned) | drop (pts) | ASR | robust acc | "
          "removed by SPECTRE (poisons) | poisons left | clean acc (sanitised) | ASR after sanitising |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ds, rate in keys:
        g = lambda k: get(ds, rate, "spectral", k)  # noqa: E731
        drop = g("clean_drop")
        L.append(f"| {ds} | {rate:g} | {len(idx.get((ds, rate, 'spectral'), {}).get('seeds', []))} | {fmt(g('n_poison'), 0)} | {fmt(g('clean_acc_clean'), 4)} | "
                 f"{fmt(g('clean_acc_poisoned'), 4)} | {fmt(None if drop is None else drop * 100, 2)} | {fmt(g('asr'))} | "
                 f"{fmt(g('robust_acc'))} | {fmt(g('removed'), 0)} ({fmt(g('poisons_removed'), 0)}) | "
                 f"{fmt(g('poisons_left'), 0)} | {fmt(g('clean_acc_sanitized'), 4)} | {fmt(g('asr_sanitized'))} |")
    L += ["", "## Detection (all training samples; AUROC over the whole set, and within the target class)", "",
          "| dataset | rate | AUROC spectral | AUROC spectral (`score=\"robust\"`) | AUROC spectral (paper τ) | AUROC SPECTRE | AUROC robust distance | AUROC ART (penultimate) | "
          "AUROC ART (default layer = logits) | target-class AUROC spectral / SPECTRE / ART-penult. | "
          "TPR@5%FPR spectral / SPECTRE / ART-penult. | precision in top n_poison (global) spectral / SPECTRE / "
          "ART-penult. / ART-default |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ds, rate in keys:
        g = lambda m, k: get(ds, rate, m, k)  # noqa: E731
        L.append(f"| {ds} | {rate:g} | {fmt(g('spectral', 'auroc'), 4)} | {fmt(g('spectral_robust', 'auroc'), 4)} | "
                 f"{fmt(g('spectral_paper', 'auroc'), 4)} | "
                 f"{fmt(g('spectre', 'auroc'), 4)} | {fmt(g('robust_distance', 'auroc'), 4)} | {fmt(g('art_penultimate', 'auroc'), 4)} | "
                 f"{fmt(g('art_default', 'auroc'), 4)} | {fmt(g('spectral', 'auroc_target_class'), 4)} / "
                 f"{fmt(g('spectre', 'auroc_target_class'), 4)} / {fmt(g('art_penultimate', 'auroc_target_class'), 4)} | "
                 f"{fmt(g('spectral', 'tpr_at_5pct_fpr'))} / {fmt(g('spectre', 'tpr_at_5pct_fpr'))} / "
                 f"{fmt(g('art_penultimate', 'tpr_at_5pct_fpr'))} | {fmt(g('spectral', 'precision_at_true_budget'))} / "
                 f"{fmt(g('spectre', 'precision_at_true_budget'))} / {fmt(g('art_penultimate', 'precision_at_true_budget'))} / "
                 f"{fmt(g('art_default', 'precision_at_true_budget'))} |")
    L += ["", "## Flags at the same budget (1.5 × true rate per class) and with the default rules", "",
          "Budget rule (ours `flag(budget=rate)` and ART `expected_pp_poison=rate`, both `eps_multiplier` 1.5): "
          "each class loses its top ⌈1.5·rate·n_c⌉ scores. All poisons sit in the target class, where they are "
          "`target_class_fraction` of the class (≈ rate / (0.1 + rate)), so at most 1.5·rate·n_target of them can be "
          "flagged: TPR is capped near 1.5·(0.1 + rate) whatever the ranking, and identical TPR/FPR across "
          "methods means each filled its target-class quota with poisons only.", "",
          "| dataset | rate | spectral TPR / FPR | SPECTRE TPR / FPR | ART-penult. TPR / FPR | ART-default TPR / FPR | "
          "spectral default rule TPR / FPR | SPECTRE default rule TPR / FPR | robust-distance default rule TPR / FPR |",
          "|---|---|---|---|---|---|---|---|---|"]
    for ds, rate in keys:
        g = lambda m, k: get(ds, rate, m, k)  # noqa: E731
        tf = lambda m, p: f"{fmt(g(m, p + '_tpr'))} / {fmt(g(m, p + '_fpr'), 4)}"  # noqa: E731
        L.append(f"| {ds} | {rate:g} | {tf('spectral', 'budget')} | {tf('spectre', 'budget')} | "
                 f"{tf('art_penultimate', 'budget')} | {tf('art_default', 'budget')} | {tf('spectral', 'default')} | "
                 f"{tf('spectre', 'default')} | {tf('robust_distance', 'default')} |")
    L += ["", "## Seconds (wall, median over seeds)", "",
          "Ours: features = one `clf.features(X, 'penultimate')` pass (batch 1024, shared by our detectors); scoring = "
          "`fit(features=...)` + `flag(budget=rate)`, minimum of `--timing-repeats` runs (fewer once the runs add up to "
          f"{MAX_REPEAT_SECONDS:g} s). ART: features = time inside "
          "ART's own `get_activations` (batch 128) during a real `detect_poison()` call; scoring = `detect_poison()` "
          "wall time minus that, minimum over the same number of calls (the repeats reuse the first call's "
          "activations). total = features + scoring for both. Speed ratio = ART (penultimate) / ours (spectral), "
          "median of per-seed ratios.", "",
          "| dataset | rate | features ours | scoring spectral | scoring SPECTRE | scoring robust distance | features ART | "
          "scoring ART | total spectral | total ART | ratio scoring (ART/ours) | ratio incl. features |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for ds, rate in keys:
        g = lambda m, k: get(ds, rate, m, k)  # noqa: E731
        r = ratios.get((ds, rate), {})
        L.append(f"| {ds} | {rate:g} | {fmt(g('spectral', 'seconds_features'))} | {fmt(g('spectral', 'seconds_scoring'))} | "
                 f"{fmt(g('spectre', 'seconds_scoring'))} | {fmt(g('robust_distance', 'seconds_scoring'))} | "
                 f"{fmt(g('art_penultimate', 'seconds_features'))} | "
                 f"{fmt(g('art_penultimate', 'seconds_scoring'))} | {fmt(g('spectral', 'seconds_total'))} | "
                 f"{fmt(g('art_penultimate', 'seconds_total'))} | {fmt(r.get('scoring'), 1)}× | {fmt(r.get('total'), 1)}× |")
    L += ["", "## Target met?", "", "| dataset | rate | figure | measured (median) | target met? |", "|---|---|---|---|---|"]
    any_t = False
    for ds, rate in keys:
        for fig, ok, meas in target_checks(ds, rate, lambda m, k: get(ds, rate, m, k), ratios.get((ds, rate))):
            any_t = True
            L.append(f"| {ds} | {rate:g} | {fig} | {meas} | {yes_no(ok)} |")
    if not any_t:
        L.append("| — | — | no target figures apply to the (dataset, rate) pairs run | — | — |")
    L += ["", "## Which layer each detector read", ""]
    seen = set()
    for m in med:
        if "layer_read" in m and m["method"] not in seen:
            seen.add(m["method"])
            L.append(f"- `{m['method']}`: {m['layer_read']}")
    if has_art:
        diffs = [m.get("feature_max_abs_diff_vs_ours") for m in med if m["method"] == "art_penultimate"]
        diffs = [d for d in diffs if d is not None]
        cons = {m.get("art_flags_consistent") for m in med if m["method"].startswith("art_")}
        L.append(f"- ART's penultimate activations vs ours: max |difference| (median over seeds, worst row) "
                 f"{fmt(max(diffs) if diffs else None, 6)}; ART per-sample scores reconstructed with ART's own "
                 f"`spectral_signature_scores` reproduce its flags: {cons}.")
    else:
        L.append("- ART was not run (`--no-compare` or not installed).")
    if payload.get("notes"):
        L += ["", "## What this shows", ""] + payload["notes"]
    L.append("")
    return "\n".join(L)


def write(out_dir: Path, stem: str, payload: dict) -> None:
    payload["medians"] = medians(payload["rows"])
    payload["speed_ratios"] = [{"dataset": k[0], "rate": k[1], **v} for k, v in sorted(speed_ratios(payload["rows"]).items())]
    write_results(out_dir, stem, payload, render_md(payload))


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    p.add_argument("--rates", nargs="+", type=float, default=[0.01, 0.05, 0.1])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: rate 0.05, seed 0, Fashion-MNIST cut to 1,500/500 samples; "
                        "writes backdoor_spectral_quick.{json,md}")
    p.add_argument("--no-compare", action="store_true", help="skip ART's SpectralSignatureDefense")
    p.add_argument("--limit-train", type=int, default=None, help="keep only the first N Fashion-MNIST training samples")
    p.add_argument("--limit-test", type=int, default=None, help="keep only the first N Fashion-MNIST test samples")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--timing-repeats", type=int, default=3,
                   help="time each detector's scoring this many times and keep the minimum (default 3)")
    p.add_argument("--append", action="store_true",
                   help="keep the rows of other (dataset, rate) pairs already in the JSON under --out (to run "
                        "datasets or rates one after the other into one result file)")
    p.add_argument("--render-only", action="store_true",
                   help="re-render the markdown (and notes) from an existing JSON in --out without running anything")
    p.add_argument("--notes", type=Path, default=None,
                   help="markdown file whose lines become the 'What this shows' section (written from the numbers)")
    args = p.parse_args(argv)
    if args.quick:
        args.rates, args.seeds = [0.05], [0]
        args.limit_train = args.limit_train or 1500
        args.limit_test = args.limit_test or 500
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    from _art_compare import art_available

    art_version = None if args.no_compare else art_available()
    compare = art_version is not None
    if not args.no_compare and not compare:
        log("adversarial-robustness-toolbox does not import: running without the ART comparator")
    stem = "backdoor_spectral_quick" if args.quick else "backdoor_spectral"
    if args.render_only:
        write(args.out, stem, load_for_render(args.out / f"{stem}.json", args.notes))
        log(f"re-rendered {args.out / (stem + '.md')}")
        return 0
    payload: dict = {"benchmark": "backdoor_spectral", "complete": False, "environment": environment(args, art_version),
                     "rows": [], "notes": []}
    if args.append and (args.out / f"{stem}.json").is_file():
        old = json.loads((args.out / f"{stem}.json").read_text(encoding="utf-8"))
        ran = {(d, round(r, 6)) for d in args.datasets for r in args.rates}
        payload["rows"] = [r for r in old.get("rows", []) if (r["dataset"], round(r["rate"], 6)) not in ran]
        payload["runs"] = old.get("runs", [old.get("environment")])
        payload["notes"] = old.get("notes", [])
    payload["runs"] = [e for e in payload.get("runs", []) if e] + [payload["environment"]]
    if args.notes and args.notes.is_file():
        payload["notes"] = args.notes.read_text(encoding="utf-8").strip().splitlines()
    warm_up()
    t_start = time.perf_counter()
    for dataset in args.datasets:
        splits = load(dataset, args.limit_train, args.limit_test)
        log(f"{dataset}: {len(splits.train)} train / {len(splits.test)} test")
        for seed in args.seeds:
            log(f"{dataset} seed={seed}: training the clean model")
            clean_model, t_clean = train(splits.train, seed, splits.train.n_classes)
            clean_acc = M.accuracy(splits.test.y, clean_model.predict(splits.test.X))
            log(f"  clean model: acc {clean_acc:.4f} ({t_clean:.1f}s)")
            clean_row = {"clean_acc_clean": clean_acc, "seconds_train_clean": t_clean}
            for rate in args.rates:
                payload["rows"].extend(run_rate(splits, clean_row, dataset, seed, rate, compare, args.timing_repeats))
                payload["wall_seconds"] = time.perf_counter() - t_start
                write(args.out, stem, payload)
    payload["complete"] = True
    payload["wall_seconds"] = time.perf_counter() - t_start
    payload["runs"][-1]["wall_seconds"] = payload["wall_seconds"]
    write(args.out, stem, payload)
    log(f"done in {payload['wall_seconds']:.0f}s; wrote {args.out / (stem + '.json')} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
