"""Benchmark: every registered detector on one matrix of poison cases, with ART and cleanlab side by side.

Columns (cases), each run for every seed (seed = data split seed = attack seed = model seed):

* dirty-label backdoors, all-to-one, target class 0, on images: BadNets 1% / 5% / 10% and Blend
  (alpha 0.2, random pattern) 5%, on digits (2x2 patch) and Fashion-MNIST (3x3 patch; only when
  ``--datasets`` names ``fashion-mnist``; ``--fmnist-limit N`` keeps the first N training images);
* random label flips 10% / 20% on breast_cancer, wine and digits;
* adversarial label flips 10% / 20% (``AdversarialFlip``, greedy, linear-SVM surrogate) on the
  binary sets breast_cancer and digits 1-vs-7. Adversarial flips are **binary-only**: the attack
  refuses sets with more than two classes, so wine and 10-class digits have no such column;
* class-targeted label flips (``TargetedFlip``: samples of one source class relabelled as one
  target class; the rate is of the whole training set): 5% / 10% on breast_cancer (malignant ->
  benign, the flip that hides cancers), wine (class 0 -> class 1) and digits 1-vs-7 (1 -> 7), and
  5% on 10-class digits (1 -> 7: half of class 1; 10% would need more 1s than the split holds).

Representation per case: for a backdoor case ``default_classifier`` (the small CNN) is trained on
the poisoned training set and its penultimate activations are computed once
(``model.features(X, "penultimate")``); every detector that reads a model layer gets those
``features=`` (and ``model=``). Detectors whose ``layer`` is None read the raw inputs by design
(duplicates, sphere, slab) and get no features; loss dynamics trains its own fresh network with
the trained model's configuration (``model=``). For label-flip cases every detector reads the
raw features (``fit(dataset)``), as the CLI does for tables.

Every registered detector (``registry.names("detector")``, the ensemble included) runs with its
defaults -- nothing is tuned here -- plus detectors that exist in ``src/`` but are not registered
yet (``EXTRA_DETECTORS``; marked in the output). Each runs inside try/except: a detector that
refuses the data (a mithridate ConfigError/DataError, e.g. the slab on a 10-class set) gives an
``n/a`` cell, any other exception an ``error`` cell, and the run goes on. Detectors that need a
validation set run without one (KNN-Shapley leave-one-out, influence in self mode, RONI carves
its own validation share).

Per cell: AUROC of ``scores_``; precision at the true budget (``precision_at_k(scores, truth,
k=n_poison)``); F1 of the default ``flag()`` (no budget given); seconds of ``fit`` + ``flag()``
(the shared feature pass is timed once per case and reported separately).

Comparators, in the same run:

* ART ``SpectralSignatureDefense`` (``_art_compare.py``) and ART ``ActivationDefence``
  (``_art_activation.py``; ART's defaults PCA + "smaller", and the paper's FastICA reduction with
  the paper's relative-size rule (< 35%) applied to ART's clusters: ART 1.20.1's own
  "relative-size" and "silhouette-scores" analyses crash on any class without a suspicious
  cluster, see that module)
  on the backdoor cases, on the same trained network truncated after our penultimate layer;
* cleanlab's ``find_label_issues`` called directly on our ConfidentLearning's out-of-fold
  ``pred_probs_`` on the label-flip cases.

Timing: spectral signatures and activation clustering, the two detectors compared with ART for
speed, are timed as the minimum of ``--timing-repeats`` runs (stopping once the runs add up to
10 s), like ART's side; every other detector once.

Results (``benchmarks/results/detection_matrix.{json,md}``) are rewritten after every case, so
an interrupted run leaves usable files.

Usage::

    export PYTHONPATH=src OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
    python benchmarks/detection_matrix.py --quick       # ~30 s: 1 seed, 4 cases
    python benchmarks/detection_matrix.py               # digits + tables, 3 seeds (~3 min on 2 cores)
    python benchmarks/detection_matrix.py --datasets fashion-mnist --fmnist-limit 10000 --append   # ~25 min
    python benchmarks/detection_matrix.py --render-only --notes notes.md

``OMP_NUM_THREADS=1``: on a 2-core machine shared with another busy process, torch's default two
threads made every training 10-50x slower (digits: 1.4 s -> 30-120 s per model; the default
matrix 157 s -> 1370 s); one thread avoids the oversubscription. It also makes scikit-learn's
OpenMP code (ART's KMeans) single-threaded, which is what the ART timings below assume.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import environment, finish_run, fmt, load_for_render, log, median, write_results, yes_no  # noqa: E402

from mithridate import registry  # noqa: E402
from mithridate.data.loaders import load_dataset  # noqa: E402
from mithridate.errors import MithridateError  # noqa: E402
from mithridate.eval import metrics as M  # noqa: E402

IMAGE_DATASETS = ("digits", "fashion-mnist")
ALL_DATASETS = ("digits", "breast_cancer", "wine", "digits-1-7", "fashion-mnist")
DEFAULT_DATASETS = ("digits", "breast_cancer", "wine", "digits-1-7")
PATCH_SIZE = {"digits": 2, "fashion-mnist": 3}
TARGET = 0
MAX_REPEAT_SECONDS = 10.0
# detectors in src/ that the registry does not list yet: run them too, marked as unregistered
EXTRA_DETECTORS = {
    "activation-clustering": ("mithridate.defenses.detect.activation_clustering", "ActivationClustering"),
    "loss-dynamics": ("mithridate.defenses.detect.loss_dynamics", "LossDynamics"),
}
TRAINS_OWN_MODEL = {"loss-dynamics"}  # gets model= (its configuration), never the shared features
READS_PREDICTIONS = {"strip"}  # gets the trained model (its predictions on the inputs), never the shared features
TIMED_REPEATS = {"spectral", "activation-clustering"}  # compared with ART for speed: min of repeats
COMPARATORS = {
    "art-spectral": "ART SpectralSignatureDefense (penultimate; expected_pp_poison = true rate)",
    "art-activation": "ART ActivationDefence (ART defaults: PCA, 'smaller')",
    "art-activation-paper": "ART ActivationDefence (FastICA as in the paper; flags: the relative-size rule on ART's clusters)",
    "cleanlab": "cleanlab find_label_issues on our out-of-fold pred_probs_",
}
FAMILY_TITLE = {"badnets": "BadNets", "blend": "Blend", "random-flip": "random flip", "adversarial-flip": "adv. flip",
                "targeted-flip": "targeted flip"}
#: Class-targeted flips: (source, target) labels per dataset (the attack's goal, not chosen by result:
#: breast_cancer malignant (0) -> benign (1) hides cancers) and the rates the source class allows.
TARGETED = {"breast_cancer": ((0, 1), (0.05, 0.10)), "wine": ((0, 1), (0.05, 0.10)),
            "digits-1-7": ((1, 7), (0.05, 0.10)), "digits": ((1, 7), (0.05,))}


# ----------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    dataset: str
    attack: str  # badnets | blend | random-flip | adversarial-flip | targeted-flip
    rate: float

    @property
    def family(self) -> str:
        return "backdoor" if self.attack in ("badnets", "blend") else "label-flip"

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.attack}-{self.rate * 100:g}%"

    @property
    def label(self) -> str:
        return f"{self.dataset} {FAMILY_TITLE[self.attack]} {self.rate * 100:g}%"


def cases_for(dataset: str) -> list[Case]:
    out: list[Case] = []
    if dataset in IMAGE_DATASETS:
        out += [Case(dataset, "badnets", r) for r in (0.01, 0.05, 0.10)] + [Case(dataset, "blend", 0.05)]
    if dataset in ("breast_cancer", "wine", "digits"):
        out += [Case(dataset, "random-flip", r) for r in (0.10, 0.20)]
    if dataset in ("breast_cancer", "digits-1-7"):
        out += [Case(dataset, "adversarial-flip", r) for r in (0.10, 0.20)]
    if dataset in TARGETED:
        out += [Case(dataset, "targeted-flip", r) for r in TARGETED[dataset][1]]
    return out


QUICK_CASES = {"digits/badnets-5%", "digits/random-flip-20%", "wine/random-flip-20%",
               "breast_cancer/adversarial-flip-10%", "fashion-mnist/badnets-5%"}


def load_splits(dataset: str, seed: int, fmnist_limit: Optional[int]):
    if dataset == "fashion-mnist":
        kw: dict = {"limit_test": 1000}  # the test split is not used by this benchmark
        if fmnist_limit:
            kw["limit_train"] = int(fmnist_limit)
        return load_dataset("fashion-mnist", **kw)
    if dataset == "digits-1-7":
        return load_dataset("digits", classes=[1, 7], random_state=seed)
    return load_dataset(dataset, random_state=seed)


def make_attack(case: Case):
    from mithridate.attacks.backdoor import BadNets, Blend
    from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip, TargetedFlip

    if case.attack == "badnets":
        return BadNets(target=TARGET, poison_rate=case.rate, size=PATCH_SIZE[case.dataset])
    if case.attack == "blend":
        return Blend(target=TARGET, poison_rate=case.rate)
    if case.attack == "random-flip":
        return RandomFlip(poison_rate=case.rate)
    if case.attack == "targeted-flip":
        (source, target), _ = TARGETED[case.dataset]
        return TargetedFlip(source=source, target=target, poison_rate=case.rate)
    return AdversarialFlip(poison_rate=case.rate)


# ----------------------------------------------------------------------------------------
# detectors
# ----------------------------------------------------------------------------------------
def detector_names(subset: Optional[list[str]]) -> list[str]:
    names = list(registry.names("detector"))
    for extra in EXTRA_DETECTORS:
        if extra not in names and _extra_class(extra) is not None:
            names.append(extra)
    if subset:
        unknown = [s for s in subset if s not in names]
        if unknown:
            raise SystemExit(f"unknown detector(s) {unknown}; known: {', '.join(names)}")
        names = [n for n in names if n in subset]
    return names


def _extra_class(name: str):
    mod, cls = EXTRA_DETECTORS[name]
    try:
        return getattr(importlib.import_module(mod), cls)
    except Exception:
        return None


def is_registered(name: str) -> bool:
    return name in registry.names("detector")


def make_detector(name: str):
    if is_registered(name):
        return registry.create("detector", name)
    return _extra_class(name)()


def _finite_scores(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """+inf / -inf mapped just beyond the finite range (they rank first / last); NaN is an error."""
    s = np.asarray(scores, dtype=np.float64)
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} scores are NaN")
    bad = ~np.isfinite(s)
    if bad.any():
        fin = s[~bad]
        lo, hi = (float(fin.min()), float(fin.max())) if len(fin) else (0.0, 0.0)
        s = np.where(s == np.inf, hi + 1.0, np.where(s == -np.inf, lo - 1.0, s))
    return s, int(bad.sum())


def score_metrics(scores: np.ndarray, flags: Optional[np.ndarray], truth: np.ndarray) -> dict:
    s, n_inf = _finite_scores(scores)
    t = np.asarray(truth, bool)
    out = {"auroc": M.auroc(s, t), "average_precision": M.average_precision(s, t),
           "precision_at_budget": M.precision_at_k(s, t, k=int(t.sum()))}
    if n_inf:
        out["n_infinite_scores"] = n_inf
    if flags is not None:
        out.update(flag_metrics(flags, t))
    return out


def flag_metrics(flags: np.ndarray, truth: np.ndarray) -> dict:
    f, t = np.asarray(flags, bool), np.asarray(truth, bool)
    p, r = M.precision_recall(f, t)
    return {"n_flagged": int(f.sum()), "f1": M.f1_score(f, t), "precision": p, "tpr": r,
            "fpr": float((f & ~t).sum() / max(int((~t).sum()), 1))}


def run_detector(name: str, view, truth: np.ndarray, *, image: bool, model, feats, repeats: int) -> tuple[dict, Any]:
    """Fit + default flag of one detector; metrics or the error. Returns (row, fitted detector)."""
    row: dict = {"detector": name, "registered": is_registered(name)}
    det = None
    try:
        det = make_detector(name)
        layer = getattr(det, "layer", "penultimate")
        kwargs: dict = {}
        if image and name in TRAINS_OWN_MODEL:
            kwargs = {"model": model}
            row["input"] = "raw inputs; trains a fresh network with the trained model's configuration"
        elif image and name in READS_PREDICTIONS:
            kwargs = {"model": model}
            row["input"] = "the trained model's predictions on superimposed inputs"
        elif image and layer is not None:
            kwargs = {"model": model, "features": feats}
            row["input"] = f"penultimate activations ({feats.shape[1]}-d)"
        elif image:
            row["input"] = f"raw inputs ({int(np.prod(view.X.shape[1:]))}-d; detector's layer=None)"
        else:
            row["input"] = f"raw features ({int(np.prod(view.X.shape[1:]))}-d)"
        n_rep = max(int(repeats), 1) if name in TIMED_REPEATS else 1
        times: list[float] = []
        caught: list = []
        for _ in range(n_rep):
            det = make_detector(name)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                det.fit(view, **kwargs)
                flags = det.flag()
                times.append(time.perf_counter() - t0)
            caught = w
            if sum(times) > MAX_REPEAT_SECONDS:
                break
        row["seconds"] = min(times)
        row["seconds_all"] = times
        row.update(score_metrics(det.scores_, flags, truth))
        msgs = sorted({str(x.message)[:200] for x in caught if not issubclass(x.category, DeprecationWarning)})
        if msgs:
            row["warnings"] = msgs[:5]
        if name == "ensemble":
            row["ensemble_members"] = list(getattr(det, "members_", {}))
            if getattr(det, "skipped_", None):
                row["ensemble_skipped"] = dict(det.skipped_)
        if name == "activation-clustering":
            row["ac_poisoned_classes"] = list(getattr(det, "poisoned_classes_", []))
    except Exception as exc:  # one failing detector must not kill the run
        row["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
        row["error_kind"] = "n/a" if isinstance(exc, MithridateError) else "error"
        if row["error_kind"] == "error":
            row["traceback"] = traceback.format_exc()[-1500:]
        det = None
    return row, det


# ----------------------------------------------------------------------------------------
# comparators
# ----------------------------------------------------------------------------------------
def art_rows(model, poisoning, feats, truth, case: Case, n_classes: int, seed: int, repeats: int) -> list[dict]:
    from _art_activation import run_art_activation
    from _art_compare import run_art_spectral

    penult = model._resolve_layer("penultimate")
    y = np.asarray(poisoning.dataset.y)
    X = np.asarray(poisoning.dataset.X)
    rows = []
    runs = [
        ("art-spectral", lambda: run_art_spectral(
            model.module_, X, y, nb_classes=n_classes, expected_pp_poison=case.rate, truncate_after=penult,
            reference_features=feats, repeats=repeats, max_repeat_seconds=MAX_REPEAT_SECONDS)),
        ("art-activation", lambda: run_art_activation(
            model.module_, X, y, nb_classes=n_classes, truncate_after=penult, reference_features=feats,
            reduce="PCA", cluster_analysis="smaller", seed=seed, repeats=repeats,
            max_repeat_seconds=MAX_REPEAT_SECONDS)),
        ("art-activation-paper", lambda: run_art_activation(
            model.module_, X, y, nb_classes=n_classes, truncate_after=penult, reference_features=feats,
            reduce="FastICA", cluster_analysis="smaller", relative_size_flags=True, seed=seed, repeats=repeats,
            max_repeat_seconds=MAX_REPEAT_SECONDS)),
    ]
    for name, fn in runs:
        row: dict = {"detector": name, "comparator": True}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fn()
            row.update(score_metrics(res["scores"], res["flags"], truth))
            if name != "art-spectral":
                row["auroc_flags"] = M.auroc(res["flags"].astype(float), truth)
                row["flag_rule"] = res["flag_rule"]
                row["repeat_flags_identical"] = res["repeat_flags_identical"]
                if res["flag_rule"] != "ART's 'smaller'":
                    row["f1_art_smaller_flags"] = M.f1_score(res["art_flags"], truth)
            row.update({
                "input": f"{res['layer_read']} ({res['feature_dim']}-d, ART's last layer of the truncated network)",
                "seconds": res["seconds_scoring"], "seconds_scoring_all": res["seconds_scoring_all"],
                "seconds_features": res["seconds_features"], "seconds_total": res["seconds_total"],
                "seconds_first_call": res["seconds_first_call"], "flags_consistent": res["flags_consistent"],
                "feature_max_abs_diff_vs_ours": res.get("feature_max_abs_diff"),
            })
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
            row["error_kind"] = "error"
            row["traceback"] = traceback.format_exc()[-1500:]
        rows.append(row)
    return rows


def cleanlab_row(cl_det, truth: np.ndarray) -> dict:
    """cleanlab's find_label_issues, called directly on our ConfidentLearning's out-of-fold probabilities."""
    row: dict = {"detector": "cleanlab", "comparator": True,
                 "input": "confident-learning's out-of-fold pred_probs_ (cleanlab defaults, n_jobs=1)"}
    if cl_det is None or not hasattr(cl_det, "pred_probs_"):
        row.update(error="confident-learning did not run, so there are no pred_probs_", error_kind="n/a")
        return row
    try:
        from cleanlab.filter import find_label_issues

        labels = np.searchsorted(cl_det.classes_, np.asarray(cl_det.y_))
        t0 = time.perf_counter()
        issues = np.asarray(find_label_issues(labels, cl_det.pred_probs_, n_jobs=1), dtype=bool)
        row["seconds"] = time.perf_counter() - t0
        row.update(flag_metrics(issues, truth))
        row["same_flags_as_confident_learning"] = bool(np.array_equal(issues, cl_det.flag()))
    except Exception as exc:
        row.update(error=f"{type(exc).__name__}: {str(exc)[:400]}", error_kind="error")
    return row


# ----------------------------------------------------------------------------------------
# one case
# ----------------------------------------------------------------------------------------
def run_case(case: Case, splits, seed: int, names: list[str], args, compare_art: bool, compare_cl: bool) -> list[dict]:
    from mithridate.models.nets import default_classifier

    train = splits.train
    n_classes = train.n_classes
    t0 = time.perf_counter()
    poisoning = make_attack(case).poison(train, random_state=seed)
    t_attack = time.perf_counter() - t0
    truth = poisoning.poison_mask
    view = poisoning.dataset.without_ground_truth()
    shared: dict = {"dataset": case.dataset, "case": case.key, "case_label": case.label, "attack": case.attack,
                    "family": case.family, "rate": case.rate, "seed": seed, "n_train": len(train),
                    "n_classes": n_classes, "n_poison": int(truth.sum()), "seconds_attack": t_attack}
    image = case.family == "backdoor"
    model = feats = None
    if image:
        from mithridate.eval.scenario import evaluate_backdoor

        t0 = time.perf_counter()
        model = default_classifier(len(view), random_state=seed).fit(poisoning.dataset, n_classes=n_classes)
        shared["seconds_train"] = time.perf_counter() - t0
        ev = evaluate_backdoor(model, splits.test, poisoning)
        shared.update(clean_accuracy=ev["clean_accuracy"], asr=ev["asr"])
        t0 = time.perf_counter()
        feats = np.asarray(model.features(view.X, layer="penultimate"))
        shared["seconds_features"] = time.perf_counter() - t0
        shared["feature_dim"] = int(feats.shape[1])
        log(f"  model trained in {shared['seconds_train']:.1f}s: clean acc {ev['clean_accuracy']:.3f}, "
            f"ASR {ev['asr']:.3f}; features {feats.shape} in {shared['seconds_features']:.2f}s")
    rows = []
    fitted: dict = {}
    for name in names:
        row, det = run_detector(name, view, truth, image=image, model=model, feats=feats,
                                repeats=args.timing_repeats)
        fitted[name] = det
        rows.append(row)
        if "error" in row:
            log(f"  {name:22s} {row['error_kind']}: {row['error'][:160]}")
        else:
            log(f"  {name:22s} AUROC {row['auroc']:.3f}  P@budget {row['precision_at_budget']:.3f}  "
                f"F1 {row['f1']:.3f} (flagged {row['n_flagged']})  {row['seconds']:.2f}s")
    # comparators run only beside the detector they are compared with, so that a partial rerun
    # (--detectors ensemble --replace) keeps the comparator rows measured with that detector
    if image and compare_art and {"spectral", "activation-clustering"} & set(names):
        for row in art_rows(model, poisoning, feats, truth, case, n_classes, seed, args.timing_repeats):
            rows.append(row)
            if "error" in row:
                log(f"  {row['detector']:22s} error: {row['error'][:160]}")
            else:
                log(f"  {row['detector']:22s} AUROC {row['auroc']:.3f}  P@budget {row['precision_at_budget']:.3f}  "
                    f"F1 {row['f1']:.3f} (flagged {row['n_flagged']})  scoring {row['seconds']:.2f}s "
                    f"(+ features {row['seconds_features']:.2f}s)")
    if not image and compare_cl and "confident-learning" in names:
        row = cleanlab_row(fitted.get("confident-learning"), truth)
        rows.append(row)
        if "error" not in row:
            log(f"  {'cleanlab (direct)':22s} F1 {row['f1']:.3f} (flagged {row['n_flagged']})  {row['seconds']:.3f}s"
                f"  same flags as ours: {row['same_flags_as_confident_learning']}")
    return [{**shared, **r} for r in rows]


# ----------------------------------------------------------------------------------------
# aggregation
# ----------------------------------------------------------------------------------------
def ordered_cases(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(case key, label, family) in matrix order: backdoors first, then flips, by dataset."""
    seen: dict = {}
    for r in rows:
        seen.setdefault(r["case"], (r["case_label"], r["family"], r["dataset"], r["attack"], r["rate"]))
    ds_order = {d: i for i, d in enumerate(ALL_DATASETS)}
    at_order = {"badnets": 0, "blend": 1, "random-flip": 2, "adversarial-flip": 3, "targeted-flip": 4}

    def key(item):
        _, (label, fam, ds, at, rate) = item
        return (fam != "backdoor", ds_order.get(ds, 99) if fam == "backdoor" else at_order[at],
                ds_order.get(ds, 99), at_order[at], rate)

    return [(k, v[0], v[1]) for k, v in sorted(seen.items(), key=key)]


def cell_values(rows: list[dict], case: str, detector: str, metric: str) -> tuple[list, list]:
    rs = [r for r in rows if r["case"] == case and r["detector"] == detector]
    vals = [r[metric] for r in rs if "error" not in r and r.get(metric) is not None]
    errs = [r for r in rs if "error" in r]
    return vals, errs


def cell_median(rows: list[dict], case: str, detector: str, metric: str) -> Optional[float]:
    vals, _ = cell_values(rows, case, detector, metric)
    m = median(vals)
    return None if math.isnan(m) else m


def cell_text(rows: list[dict], case: str, detector: str, metric: str, nd: int = 3) -> str:
    vals, errs = cell_values(rows, case, detector, metric)
    if vals:
        s = fmt(median(vals), nd)
        if errs:
            s += f" ({len(errs)} err)"
        return s
    if errs:
        return "error" if any(e.get("error_kind") == "error" for e in errs) else "n/a"
    return "—"


def medians_table(rows: list[dict]) -> list[dict]:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"], r["detector"]), []).append(r)
    out = []
    for (case, det), rs in groups.items():
        m = {"case": case, "dataset": rs[0]["dataset"], "detector": det, "n_seeds": len(rs),
             "n_errors": sum("error" in r for r in rs)}
        for k in ("auroc", "precision_at_budget", "f1", "tpr", "fpr", "n_flagged", "seconds", "seconds_total",
                  "average_precision", "auroc_flags"):
            v = median(r[k] for r in rs if "error" not in r and r.get(k) is not None)
            if not math.isnan(v):
                m[k] = v
        out.append(m)
    return out


def our_detectors(rows: list[dict]) -> list[str]:
    names = []
    for r in rows:
        if not r.get("comparator") and r["detector"] not in names:
            names.append(r["detector"])
    return names


def best_single(rows: list[dict], case: str, exclude=("ensemble",)) -> tuple[Optional[str], Optional[float]]:
    best, val = None, None
    for d in our_detectors(rows):
        if d in exclude:
            continue
        v = cell_median(rows, case, d, "auroc")
        if v is not None and (val is None or v > val):
            best, val = d, v
    return best, val


def speed_ratio(rows: list[dict], case: str, ours: str, art: str, include_features: bool) -> Optional[float]:
    """Median over seeds of ART seconds / our seconds (scoring on the same features, or with each
    side's feature pass added)."""
    ratios = []
    for seed in sorted({r["seed"] for r in rows if r["case"] == case}):
        o = [r for r in rows if r["case"] == case and r["seed"] == seed and r["detector"] == ours and "error" not in r]
        a = [r for r in rows if r["case"] == case and r["seed"] == seed and r["detector"] == art and "error" not in r]
        if not o or not a:
            continue
        o, a = o[0], a[0]
        if include_features:
            ratios.append(a["seconds_total"] / max(o["seconds"] + o.get("seconds_features", 0.0), 1e-9))
        else:
            ratios.append(a["seconds"] / max(o["seconds"], 1e-9))
    return median(ratios) if ratios else None


def figure_checks(rows: list[dict]) -> list[tuple[str, Optional[bool], str]]:
    checks: list = []
    cases = ordered_cases(rows)
    bd = [(k, lab) for k, lab, fam in cases if fam == "backdoor"]
    lf = [(k, lab) for k, lab, fam in cases if fam == "label-flip"]
    # 1. dirty-label backdoors >= 5%: best detector AUROC >= 0.99
    for k, lab in bd:
        rate = next(r["rate"] for r in rows if r["case"] == k)
        if rate >= 0.05 - 1e-9:
            d, v = best_single(rows, k, exclude=())
            checks.append((f"{lab}: best detector AUROC ≥ 0.99", None if v is None else v >= 0.99,
                           f"{fmt(v)} ({d})"))
    # 2. BadNets 1%: SPECTRE >= 0.95
    for k, lab in bd:
        rate = next(r["rate"] for r in rows if r["case"] == k)
        if rate < 0.05 - 1e-9:
            v = cell_median(rows, k, "spectre", "auroc")
            checks.append((f"{lab}: SPECTRE AUROC ≥ 0.95", None if v is None else v >= 0.95, fmt(v)))
    # 3. ours vs ART: detection (AUROC) and speed
    pairs = (("spectral", ("art-spectral",)), ("activation-clustering", ("art-activation", "art-activation-paper")))
    for k, lab in bd:
        for ours, arts in pairs:
            o = cell_median(rows, k, ours, "auroc")
            a_vals = {a: cell_median(rows, k, a, "auroc") for a in arts}
            a_vals = {a: v for a, v in a_vals.items() if v is not None}
            if o is None or not a_vals:
                if a_vals or o is not None:
                    checks.append((f"{lab}: {ours} AUROC ≥ ART", None, f"ours {fmt(o)}, ART {a_vals or '—'}"))
                continue
            best_art = max(a_vals, key=a_vals.get)
            checks.append((f"{lab}: {ours} AUROC ≥ ART ({', '.join(arts)})", o >= a_vals[best_art] - 1e-12,
                           f"{fmt(o)} vs {fmt(a_vals[best_art])} ({best_art})"))
            for art in arts:
                if art not in a_vals:
                    continue
                r1 = speed_ratio(rows, k, ours, art, include_features=False)
                r2 = speed_ratio(rows, k, ours, art, include_features=True)
                if r1 is None:
                    continue
                checks.append((f"{lab}: {ours} ≥ 3× faster than {art} (same features, scoring only)", r1 >= 3.0,
                               f"{r1:.1f}× (incl. each side's feature pass: {fmt(r2, 1)}×)"))
    # 4. label flips 20%: confident learning and ensemble F1 >= cleanlab direct; F1 >= 0.85 on digits
    for k, lab in lf:
        rate = next(r["rate"] for r in rows if r["case"] == k)
        if abs(rate - 0.20) > 1e-9:
            continue
        c = cell_median(rows, k, "cleanlab", "f1")
        for d in ("confident-learning", "ensemble"):
            v = cell_median(rows, k, d, "f1")
            if c is not None:
                checks.append((f"{lab}: {d} F1 ≥ cleanlab direct", None if v is None else v >= c - 1e-12,
                               f"{fmt(v)} vs {fmt(c)}"))
            if k.startswith("digits/"):
                checks.append((f"{lab}: {d} F1 ≥ 0.85", None if v is None else v >= 0.85, fmt(v)))
    # 5. ensemble within 0.02 of the best single detector, and > 0.9, in every column
    for k, lab, fam in cases:
        e = cell_median(rows, k, "ensemble", "auroc")
        d, b = best_single(rows, k)
        if e is None:
            checks.append((f"{lab}: ensemble AUROC within 0.02 of the best single detector", None, "ensemble did not run"))
            continue
        if b is not None:
            checks.append((f"{lab}: ensemble AUROC within 0.02 of the best single detector", e >= b - 0.02,
                           f"{fmt(e)} vs {fmt(b)} ({d})"))
        checks.append((f"{lab}: ensemble AUROC > 0.9", e > 0.9, fmt(e)))
    return checks


# ----------------------------------------------------------------------------------------
# markdown
# ----------------------------------------------------------------------------------------
def render_md(payload: dict) -> str:
    rows = payload["rows"]
    env = payload["environment"]
    L = ["# Detection matrix: every detector on every poison case", ""]
    status = "complete" if payload.get("complete") else "**incomplete** (interrupted or still running)"
    L += [f"Run {status}; {env.get('date')}; command `{env.get('command')}`; wall time "
          f"{fmt(payload.get('wall_seconds'), 0)} s; {env.get('cpu_count')} cores "
          f"(load average at start {env.get('load_average_at_start')}); torch {env.get('torch')}, "
          f"ART {env.get('adversarial-robustness-toolbox') or 'not run'}, cleanlab {env.get('cleanlab') or '—'}; "
          f"git {((env.get('git') or {}).get('commit') or '')[:10]} (src dirty: {(env.get('git') or {}).get('src_dirty')}).", ""]
    for run in payload.get("runs", [])[:-1]:
        L.append(f"Rows of an earlier run kept (`--append`): {run.get('date')}, `{run.get('command')}`.")
    if len(payload.get("runs", [])) > 1:
        L.append("")
    if not rows:
        return "\n".join(L + ["No rows yet.", ""])
    cases = ordered_cases(rows)
    seeds = sorted({r["seed"] for r in rows})
    ours = our_detectors(rows)
    comps = [c for c in COMPARATORS if any(r["detector"] == c for r in rows)]
    per_ds = {}
    for r in rows:
        per_ds.setdefault(r["dataset"], set()).add(r["seed"])
    if len({tuple(sorted(v)) for v in per_ds.values()}) > 1:
        seed_text = "; ".join(f"{d}: {', '.join(map(str, sorted(v)))}" for d, v in per_ds.items())
    else:
        seed_text = ", ".join(map(str, seeds))
    L += ["Cells are medians over seeds " + seed_text + " (seed = split = attack = model seed). "
          "`n/a`: the detector refused the data (a mithridate ConfigError/DataError, e.g. the slab on more than two "
          "classes); `error`: it crashed (see Errors); `—`: not run. Backdoor columns: every detector that reads a "
          "model layer scores the penultimate activations of `default_classifier` trained on the poisoned set "
          "(one feature pass per case, shared); label-flip columns: raw features. Adversarial flips are "
          "binary-only (breast_cancer, digits 1-vs-7). Targeted flips relabel one source class as one target class "
          "(breast_cancer malignant -> benign, wine 0 -> 1, digits and digits 1-vs-7 1 -> 7; the rate is of the whole "
          "training set). Detectors marked * were in `src/` but not in the registry when "
          "they ran."]
    if any(r["dataset"] == "fashion-mnist" for r in rows):
        lim = {r["n_train"] for r in rows if r["dataset"] == "fashion-mnist"}
        L.append(f"Fashion-MNIST columns use the first {sorted(lim)} training images (`--fmnist-limit`), not all 60,000.")
    L.append("")

    def table(title: str, metric: str, nd: int = 3, only: Optional[list[str]] = None, note: str = "") -> None:
        L.extend([f"## {title}", ""])
        if note:
            L.extend([note, ""])
        cols = [(k, lab) for k, lab, _ in cases]
        L.append("| detector | " + " | ".join(lab for _, lab in cols) + " |")
        L.append("|---|" + "---|" * len(cols))
        for d in ours + comps:
            if only is not None and d not in only:
                continue
            cells = [cell_text(rows, k, d, metric, nd) for k, _ in cols]
            if all(c == "—" for c in cells):
                continue
            unregistered = any(r["detector"] == d and r.get("registered") is False for r in rows)
            star = "*" if unregistered else ""
            name = f"{d}{star}" if d not in COMPARATORS else f"_{d}_"
            L.append(f"| {name} | " + " | ".join(cells) + " |")
        L.append("")

    table("AUROC", "auroc", note=(
        "Comparator rows in italics. ART gives no per-sample score for ActivationDefence: its AUROC here is of "
        "`1 − share of the class in the sample's ART cluster` (the continuous form of ART's own size rules, read "
        "from ART's clustering); `art-spectral` uses ART's own `spectral_signature_scores` on ART's activations."))
    table("Precision at the true budget", "precision_at_budget",
          note="Precision of the n_poison highest scores (`precision_at_k(scores, truth, k=n_poison)`).")
    table("F1 of the default flag rule", "f1", note=(
        "`flag()` with no budget (each detector's own rule). ART: its flags (SpectralSignatureDefense flags "
        "1.5 × expected_pp_poison per class, given the *true* rate). cleanlab: `find_label_issues` defaults."))
    table("Seconds", "seconds", nd=3, note=(
        "Ours: `fit` + `flag()` given the shared features (backdoor columns; the feature pass, below, is not "
        "included) or the raw features; spectral and activation clustering: minimum of "
        f"{payload['environment'].get('args', {}).get('timing_repeats', 3)} runs. ART: `detect_poison()` minus "
        "the time inside its own `get_activations` (minimum over the same number of calls). cleanlab: "
        "`find_label_issues` alone, on probabilities already computed (ours includes the 5 fold trainings)."))
    # per-case context
    L += ["## Cases", "", "| case | n_train | n_poison | clean acc. (poisoned model) | ASR | train s | feature pass s |",
          "|---|---|---|---|---|---|---|"]
    for k, lab, fam in cases:
        rs = [r for r in rows if r["case"] == k]
        g = lambda key: median(r.get(key) for r in {(r["seed"]): r for r in rs}.values())  # noqa: E731
        L.append(f"| {lab} | {fmt(g('n_train'), 0)} | {fmt(g('n_poison'), 0)} | {fmt(g('clean_accuracy'))} | "
                 f"{fmt(g('asr'))} | {fmt(g('seconds_train'), 1)} | {fmt(g('seconds_features'), 2)} |")
    L.append("")
    # figures
    L += ["## Figures asked for (issue 4)", "", "| figure | measured (median of seeds) | met? |", "|---|---|---|"]
    for fig, ok, meas in figure_checks(rows):
        L.append(f"| {fig} | {meas} | {yes_no(ok)} |")
    L.append("")
    # ART details
    art = [r for r in rows if r["detector"].startswith("art-") and "error" not in r]
    if art:
        L += ["## ART details (medians)", "",
              "| case | comparator | flag rule | TPR / FPR of the flags | n flagged | AUROC of the flags | features s | "
              "total s | flags reproduced from scores | repeats identical | max feature diff vs ours |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for k, lab, fam in cases:
            for c in ("art-spectral", "art-activation", "art-activation-paper"):
                rs = [r for r in art if r["case"] == k and r["detector"] == c]
                if not rs:
                    continue
                g = lambda key: median(r.get(key) for r in rs)  # noqa: E731
                cons = {r.get("flags_consistent") for r in rs}
                rule = rs[0].get("flag_rule", "1.5 × true rate per class")
                rep = {r.get("repeat_flags_identical") for r in rs} - {None}
                L.append(f"| {lab} | {c} | {rule} | {fmt(g('tpr'))} / {fmt(g('fpr'))} | {fmt(g('n_flagged'), 0)} | "
                         f"{fmt(g('auroc_flags'))} | {fmt(g('seconds_features'))} | {fmt(g('seconds_total'))} | "
                         f"{cons} | {rep or '—'} | "
                         f"{fmt(max((r.get('feature_max_abs_diff_vs_ours') or 0.0) for r in rs), 6)} |")
        L.append("")
    # inputs
    L += ["## What each detector read", ""]
    for d in ours + comps:
        ins = sorted({(r["family"], r.get("input")) for r in rows if r["detector"] == d and r.get("input")})
        if ins:
            L.append(f"- `{d}`: " + "; ".join(f"{fam}: {i}" for fam, i in ins))
    L.append("")
    # errors
    errs = [r for r in rows if "error" in r]
    L += ["## Errors and refusals", ""]
    if not errs:
        L.append("None.")
    else:
        grouped: dict = {}
        for r in errs:
            grouped.setdefault((r["detector"], r.get("error_kind"), r["error"][:200]), []).append(f"{r['case']}#{r['seed']}")
        for (d, kind, msg), where in sorted(grouped.items()):
            shown = ", ".join(where[:6]) + (f" … (+{len(where) - 6})" if len(where) > 6 else "")
            L.append(f"- `{d}` ({kind}) in {shown}: {msg}")
    L.append("")
    if payload.get("notes"):
        L += ["## Notes", ""] + payload["notes"] + [""]
    return "\n".join(L)


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------
def warm_up(names: list[str]) -> None:
    """Run each detector once on small synthetic data, untimed, so lazy imports (faiss, cleanlab,
    scikit-learn, scipy) and BLAS start-up do not land in the first timed cell."""
    from mithridate.data.dataset import Dataset

    rng = np.random.default_rng(0)
    ds = Dataset.from_arrays(rng.normal(size=(300, 16)).astype(np.float32), np.repeat([0, 1, 2], 100))
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                make_detector(name).fit(ds).flag()
        except Exception:
            pass


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", choices=ALL_DATASETS, default=None,
                   help=f"default: {' '.join(DEFAULT_DATASETS)} (add fashion-mnist for its backdoor columns)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (--quick: 0)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: seed 0, a few cases (digits BadNets 5%%, random flips 20%% on digits and wine, "
                        "adversarial flips 10%% on breast_cancer); writes detection_matrix_quick.{json,md}")
    p.add_argument("--detectors", nargs="+", default=None, help="run only these detectors (registry names)")
    p.add_argument("--no-compare", action="store_true", help="skip the ART and cleanlab comparators")
    p.add_argument("--fmnist-limit", type=int, default=None,
                   help="keep the first N Fashion-MNIST training images (default: all 60,000)")
    p.add_argument("--timing-repeats", type=int, default=3,
                   help="repeats for the detectors timed against ART (minimum kept), and for ART")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--stem", default=None, help="file stem (default detection_matrix, or detection_matrix_quick)")
    p.add_argument("--append", action="store_true",
                   help="keep the rows of other datasets already in the JSON under --out (run datasets one after "
                        "the other into one result file)")
    p.add_argument("--resume", action="store_true",
                   help="like --append, but also keep this run's datasets' rows already in the JSON and skip the "
                        "(case, seed) pairs they cover (continue an interrupted run)")
    p.add_argument("--replace", action="store_true",
                   help="keep every row already in the JSON, except that each (case, seed, detector) row this run "
                        "produces replaces its old counterpart (rerun some detectors after a change, e.g. "
                        "--detectors ensemble --replace)")
    p.add_argument("--render-only", action="store_true", help="re-render the markdown from the JSON, run nothing")
    p.add_argument("--notes", type=Path, default=None, help="markdown file whose lines become the Notes section")
    args = p.parse_args(argv)
    if args.datasets is None:
        args.datasets = ["digits", "wine", "breast_cancer"] if args.quick else list(DEFAULT_DATASETS)
    if args.seeds is None:
        args.seeds = [0] if args.quick else [0, 1, 2]
    if args.stem is None:
        args.stem = "detection_matrix_quick" if args.quick else "detection_matrix"
    if args.quick and args.fmnist_limit is None:
        args.fmnist_limit = 2000
    return args


def save(args: argparse.Namespace, payload: dict) -> None:
    """Medians and figure checks from the rows, then JSON + markdown, atomically."""
    payload["medians"] = medians_table(payload["rows"])
    payload["figures"] = [{"figure": f, "met": ok, "measured": m} for f, ok, m in figure_checks(payload["rows"])]
    write_results(args.out, args.stem, payload, render_md(payload))


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    json_path = args.out / f"{args.stem}.json"
    if args.render_only:
        save(args, load_for_render(json_path, args.notes))
        log(f"re-rendered {args.out / (args.stem + '.md')}")
        return 0

    from _art_activation import art_available as art_ac_available
    from _art_compare import art_available as art_ss_available

    art_version = None if args.no_compare else (art_ss_available() and art_ac_available())
    try:
        import cleanlab

        cl_version = cleanlab.__version__
    except Exception:
        cl_version = None
    compare_art = art_version is not None and not args.no_compare
    compare_cl = cl_version is not None and not args.no_compare
    if not args.no_compare and not compare_art:
        log("adversarial-robustness-toolbox does not import: running without the ART comparators")
    names = detector_names(args.detectors)
    env = environment(args, **{"adversarial-robustness-toolbox": art_version if compare_art else None,
                               "cleanlab": cl_version, "detectors": names,
                               "unregistered_detectors_run": [n for n in names if not is_registered(n)]})
    payload: dict = {"benchmark": "detection_matrix", "complete": False, "environment": env, "rows": [],
                     "notes": []}
    done: set = set()
    if (args.append or args.resume or args.replace) and json_path.is_file():
        old = json.loads(json_path.read_text(encoding="utf-8"))
        if args.replace:
            payload["rows"] = list(old.get("rows", []))
        elif args.resume:
            payload["rows"] = list(old.get("rows", []))
            done = {(r["case"], r["seed"]) for r in payload["rows"]}
        else:
            payload["rows"] = [r for r in old.get("rows", []) if r["dataset"] not in args.datasets]
        payload["runs"] = old.get("runs", [old.get("environment")])
        payload["notes"] = old.get("notes", [])
    elif json_path.is_file():
        # a fresh run replaces every row but keeps the hand-written notes (as audit_figures.py does):
        # edit them, or replace them with --notes, once the new figures are in
        try:
            payload["notes"] = json.loads(json_path.read_text(encoding="utf-8")).get("notes", [])
        except (OSError, ValueError):
            pass
    payload["runs"] = [e for e in payload.get("runs", []) if e] + [env]
    if args.notes and args.notes.is_file():
        payload["notes"] = args.notes.read_text(encoding="utf-8").strip().splitlines()
    log(f"detectors: {', '.join(names)}")
    warm_up(names)
    t_start = time.perf_counter()
    for dataset in args.datasets:
        cases = [c for c in cases_for(dataset) if not args.quick or c.key in QUICK_CASES]
        for seed in args.seeds:
            splits = load_splits(dataset, seed, args.fmnist_limit)
            for case in cases:
                if (case.key, seed) in done:
                    log(f"{case.label} seed={seed}: already in {json_path.name}, skipped (--resume)")
                    continue
                log(f"[{time.perf_counter() - t_start:6.0f}s] {case.label} seed={seed}: "
                    f"{len(splits.train)} training samples")
                try:
                    new_rows = run_case(case, splits, seed, names, args, compare_art, compare_cl)
                    if args.replace:
                        fresh = {(r["case"], r["seed"], r["detector"]) for r in new_rows}
                        payload["rows"] = [r for r in payload["rows"]
                                           if (r.get("case"), r.get("seed"), r.get("detector")) not in fresh]
                    payload["rows"].extend(new_rows)
                except Exception as exc:  # the attack or the model failed: record it for every detector
                    log(f"  case failed: {type(exc).__name__}: {exc}")
                    payload.setdefault("case_errors", []).append(
                        {"case": case.key, "seed": seed, "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-2000:]})
                payload["wall_seconds"] = time.perf_counter() - t_start
                save(args, payload)
    return finish_run(payload, t_start, lambda: save(args, payload), json_path)


if __name__ == "__main__":
    raise SystemExit(main())
