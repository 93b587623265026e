"""Benchmark: ``mithridate audit`` as a pipeline gate (the figures of issue 5).

Three figures, each measured with :func:`mithridate.audit.pipeline.run_audit` and the **default
policy** (``Policy.default()``) and default features (raw columns for tables; for images the
penultimate layer of the default network, trained on the audited data for the occasion, as the
audit does). ``run_audit(..., random_state=seed)`` so that the network differs between seeds.

1. **Poisoned data** (``poison`` cases): the label-flip and backdoor cases of the detection
   matrix, built with its own helpers (``detection_matrix.cases_for``, ``load_splits``,
   ``make_attack``): BadNets 1% / 5% / 10% and Blend 5% on digits and on Fashion-MNIST (the
   first ``--fmnist-limit`` = 10,000 training images, as the matrix uses), random label flips
   10% / 20% on breast_cancer, wine and digits, adversarial flips 10% / 20% on the binary sets
   breast_cancer and digits 1-vs-7 (``AdversarialFlip`` is binary-only: it refuses wine and
   10-class digits, so the matrix has no such case). The audited set is the training split of
   the seed's split (Fashion-MNIST: the fixed 10,000 images; the seed changes the attack, the
   contributors and the network). A ``contributor`` column is attached: ten contributors
   c0..c9; the poisoned samples go alternately to c0 and c1, every clean sample to one of c0..c9
   drawn uniformly (seeded). Per seed: exit code, whether c0 and c1 are the top 2 by reputation
   rank, how many honest contributors (c2..c9) have their credible interval entirely above the
   population rate, flagged count, AUROC of ``ensemble_score`` on the poisons, seconds.
   Targets per seed: exit 1, c0 and c1 rank top 2, no honest contributor above the population.
2. **Clean data** (``clean/<dataset>``): the same datasets without poison, same contributor
   assignment (every sample uniform over c0..c9); target: exit 0 in >= 95% of seeds. The policy
   thresholds were chosen on breast_cancer, wine and digits; iris and Fashion-MNIST are
   **held-out** data the thresholds never saw (digits 1-vs-7 is a 2-class subset of digits).
3. **Version diff** (``diff/<dataset>``, digits and breast_cancer): version 1 (the training
   split) is audited into a fresh SQLite ledger; version 2 = version 1 minus 20 removed samples,
   plus 20 new samples (from the unused test split, keeping only content whose hash version 1
   does not hold), with 15 of the kept samples relabelled (same features, another label). Version
   2 is audited with the same ledger and name; the diff (``result.diff``) must report exactly
   the planted new / removed / relabelled ids and nothing modified or duplicated.

Results (``benchmarks/results/audit_figures.{json,md}``) are rewritten atomically after every
(case, seed); rows of cases not run this time are kept, so runs can be split; ``--resume`` also
skips (case, seed) pairs already in the JSON.

Usage::

    export PYTHONPATH=src OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
    python benchmarks/audit_figures.py --quick                 # smoke run (~7 s): seed 0, 5 small cases
    python benchmarks/audit_figures.py                         # every case (~8 min on 2 cores)
    python benchmarks/audit_figures.py --cases clean/fashion-mnist --seeds $(seq 0 19) --resume  # +15 seeds
    python benchmarks/audit_figures.py --cases 'digits/*' '!digits/random-flip-*'   # patterns; '!' excludes
    python benchmarks/audit_figures.py --render-only --notes notes.md
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import detection_matrix as dm  # noqa: E402  (the case definitions, loaders and attacks)
from _common import environment, finish_run, fmnist_train, fmt, load_for_render, log, median, write_results, yes_no  # noqa: E402

from mithridate.data.dataset import Dataset  # noqa: E402
from mithridate.eval import metrics as M  # noqa: E402

N_CONTRIBUTORS = 10
BAD = ("c0", "c1")
HONEST = tuple(f"c{i}" for i in range(2, N_CONTRIBUTORS))
#: datasets the default policy thresholds were chosen on (docs/audit.md, policy.py)
TUNING_DATASETS = {"breast_cancer", "wine", "digits"}
POISON_DATASETS = ("digits", "fashion-mnist", "breast_cancer", "wine", "digits-1-7")
CLEAN_DATASETS = ("breast_cancer", "wine", "digits", "digits-1-7", "iris", "fashion-mnist", "fashion-mnist-6k")
#: clean/fashion-mnist-6k: a seeded random 6,000 of all 60,000 Fashion-MNIST training images (another
#: size and draw than the first 10,000 the other Fashion-MNIST cases read: a user's own subset)
FMNIST_SUBSET = 6000
DIFF_DATASETS = ("breast_cancer", "digits")
N_REMOVED, N_NEW, N_RELABELLED = 20, 20, 15
CLEAN_PASS_TARGET = 0.95
QUICK_CASES = ("breast_cancer/random-flip-20%", "digits/badnets-5%", "clean/wine", "clean/iris",
               "diff/breast_cancer")


# ----------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    figure: str  # poison | clean | diff
    dataset: str
    key: str
    label: str
    seeds: tuple
    case: Optional[dm.Case] = None


def kept_runs(runs: list, rows: list) -> list:
    """The earlier runs some kept row came from (rows name their run by its start date). Rows
    written before rows named their run keep every earlier run listed: which one wrote them is
    not known."""
    if any("run" not in r for r in rows):
        return runs
    used = {r["run"] for r in rows}
    return [e for e in runs if e.get("date") in used]


def held_out(dataset: str) -> str:
    if dataset in TUNING_DATASETS:
        return "no (tuning set)"
    if dataset == "digits-1-7":
        return "no (2-class subset of digits)"
    return "**yes**"


def all_jobs() -> list[Job]:
    jobs: list[Job] = []
    for d in POISON_DATASETS:
        for c in dm.cases_for(d):
            if c.family not in ("backdoor", "label-flip"):
                continue
            seeds = tuple(range(3)) if d == "fashion-mnist" else tuple(range(5))
            jobs.append(Job("poison", d, c.key, c.label, seeds, c))
    for d in CLEAN_DATASETS:
        seeds = tuple(range(5)) if d == "fashion-mnist" else tuple(range(20))  # fashion-mnist: extend with --seeds
        jobs.append(Job("clean", d, f"clean/{d}", f"{d} (clean)", seeds))
    for d in DIFF_DATASETS:
        jobs.append(Job("diff", d, f"diff/{d}", f"{d} v1 -> v2", tuple(range(5))))
    # run order: everything on the small sets first, Fashion-MNIST (slow) last
    return sorted(jobs, key=lambda j: (j.dataset.startswith("fashion-mnist"), {"poison": 0, "clean": 1, "diff": 2}[j.figure]))


def select_jobs(patterns: Optional[list[str]], quick: bool) -> list[Job]:
    jobs = all_jobs()
    if quick and not patterns:
        return [j for j in jobs if j.key in QUICK_CASES]
    if not patterns:
        return jobs
    inc = [p for p in patterns if not p.startswith("!")]
    exc = [p[1:] for p in patterns if p.startswith("!")]
    out = [j for j in jobs if (not inc or any(fnmatch.fnmatchcase(j.key, p) for p in inc))
           and not any(fnmatch.fnmatchcase(j.key, p) for p in exc)]
    if not out:
        raise SystemExit(f"--cases {patterns} matches no case; cases: {', '.join(j.key for j in jobs)}")
    return out


def fmnist_available() -> bool:
    from mithridate.data.loaders import FASHION_MNIST_DEFAULT_DIR, FASHION_MNIST_ENV

    d = Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_DIR)
    return d.is_dir() and any(d.glob("train-images-idx3-ubyte*"))


# ----------------------------------------------------------------------------------------
# contributors and audits
# ----------------------------------------------------------------------------------------
def assign_contributors(n: int, poison: Optional[np.ndarray], seed: int) -> np.ndarray:
    """Clean samples uniform over c0..c9 (seeded); poisoned samples alternately c0, c1.

    The uniform draw covers every sample, so the clean version of a (dataset, seed) gives each
    clean sample the same contributor as the poisoned version does.
    """
    rng = np.random.default_rng([int(seed), 0xA0D17])
    who = np.array([f"c{i}" for i in rng.integers(0, N_CONTRIBUTORS, size=n)], dtype=object)
    if poison is not None:
        idx = np.flatnonzero(poison)
        who[idx] = np.array([BAD[k % 2] for k in range(len(idx))], dtype=object)
    return who


def with_contributors(ds: Dataset, who: np.ndarray) -> Dataset:
    return ds.replace(meta=ds.meta.assign(contributor=list(who)), is_poison=None)


def audit(ds: Dataset, name: str, seed: int, ledger: Any = None):
    from mithridate.audit.pipeline import run_audit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        result = run_audit(ds, name=name, progress=False, random_state=seed, ledger=ledger)
        secs = time.perf_counter() - t0
    msgs = sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught
                   if not issubclass(w.category, DeprecationWarning)})
    return result, secs, msgs


def audit_row(result, secs: float, msgs: list) -> dict:
    s = result.summary
    contribs = {c["contributor"]: c for c in s.get("contributors", [])}
    classes = s.get("classes", [])
    row = {
        "exit_code": result.exit_code, "verdict": result.verdict,
        "failed_checks": [r.name for r in result.failed],
        "failed_detail": [{"name": r.name, "value": r.value, "limit": r.limit, "subject": r.subject,
                           "message": r.message} for r in result.failed],
        "n_samples": s["n_samples"], "n_flagged": s["n_flagged"], "share_flagged": s["share_flagged"],
        "worst_class_share": max((c["share"] for c in classes if c["n"] >= result.policy.min_class_size),
                                 default=None),
        "representation": s.get("representation"),
        "population_rate": s.get("population_rate"), "prior": s.get("prior"),
        "contributors": [{k: c.get(k) for k in ("contributor", "rank", "n", "flagged", "share", "ci_lower",
                                                 "ci_upper", "above_population")} for c in s.get("contributors", [])],
        "n_honest_above": sum(bool(contribs[c]["above_population"]) for c in HONEST if c in contribs),
        "honest_above": [c for c in HONEST if c in contribs and contribs[c]["above_population"]],
        "max_honest_share": max((contribs[c]["share"] for c in HONEST if c in contribs), default=None),
        "concentration_p": (s.get("concentration") or {}).get("p_value"),
        "concentration_named": [c["contributor"] for c in ((s.get("concentration") or {}).get("contributors") or [])[:3]],
        "seconds": secs, "seconds_steps": s.get("seconds_steps"),
        "skipped_detectors": s.get("skipped_detectors") or {},
    }
    if msgs:
        row["warnings"] = msgs[:5]
    return row


# ----------------------------------------------------------------------------------------
# the three figures
# ----------------------------------------------------------------------------------------
def run_poison(job: Job, seed: int, args) -> dict:
    case = job.case
    splits = dm.load_splits(case.dataset, seed, args.fmnist_limit)
    poisoning = dm.make_attack(case).poison(splits.train, random_state=seed)
    truth = poisoning.poison_mask
    who = assign_contributors(len(truth), truth, seed)
    ds = with_contributors(poisoning.dataset, who)
    result, secs, msgs = audit(ds, job.key, seed)
    row = audit_row(result, secs, msgs)
    f = result.findings
    assert np.array_equal(f["id"].astype(str).to_numpy(), np.asarray(ds.ids).astype(str)), "findings out of order"
    scores, _ = dm._finite_scores(f["ensemble_score"].to_numpy())
    flags = f["flagged"].to_numpy(bool)
    contribs = {c["contributor"]: c for c in row["contributors"]}
    top2 = {c for c, r in contribs.items() if r["rank"] <= 2}
    row.update({
        "n_train": len(ds), "n_poison": int(truth.sum()),
        "auroc": M.auroc(scores, truth),
        "poison_flagged": int((flags & truth).sum()), "clean_flagged": int((flags & ~truth).sum()),
        "rank_c0": contribs.get("c0", {}).get("rank"), "rank_c1": contribs.get("c1", {}).get("rank"),
        "bad_above": [c for c in BAD if contribs.get(c, {}).get("above_population")],
        "bad_shares": [contribs.get(c, {}).get("share") for c in BAD],
        "bad_top2": top2 == set(BAD),
        "poison_per_bad": [int(((who == c) & truth).sum()) for c in BAD],
    })
    row["t_exit1"] = row["exit_code"] == 1
    row["t_top2"] = row["bad_top2"]
    row["t_no_honest"] = row["n_honest_above"] == 0
    row["t_all"] = row["t_exit1"] and row["t_top2"] and row["t_no_honest"]
    log(f"  exit {row['exit_code']} (failed: {', '.join(row['failed_checks']) or '-'}); ranks c0 {row['rank_c0']}, "
        f"c1 {row['rank_c1']}; honest above {row['honest_above'] or 0}; flagged {row['n_flagged']}/{len(ds)} "
        f"({row['poison_flagged']}/{row['n_poison']} poisons); AUROC {row['auroc']:.3f}; {secs:.1f}s")
    return row


def clean_training_set(dataset: str, seed: int, args) -> Dataset:
    """The training set a clean audit reads: the matrix's split, or (``fashion-mnist-6k``) a seeded
    random FMNIST_SUBSET of all Fashion-MNIST training images."""
    if dataset == "fashion-mnist-6k":
        train = fmnist_train()
        rng = np.random.default_rng([int(seed), 0x6000])
        return train.subset(np.sort(rng.choice(len(train), FMNIST_SUBSET, replace=False)))
    return dm.load_splits(dataset, seed, args.fmnist_limit).train


def run_clean(job: Job, seed: int, args) -> dict:
    train = clean_training_set(job.dataset, seed, args)
    ds = with_contributors(train, assign_contributors(len(train), None, seed))
    result, secs, msgs = audit(ds, job.key, seed)
    row = audit_row(result, secs, msgs)
    row["n_train"] = len(ds)
    row["t_exit0"] = row["exit_code"] == 0
    log(f"  exit {row['exit_code']} (failed: {', '.join(row['failed_checks']) or '-'}); flagged "
        f"{row['n_flagged']}/{len(ds)} ({100 * row['share_flagged']:.1f}%; worst class "
        f"{100 * (row['worst_class_share'] or 0):.1f}%); honest above {row['honest_above'] or 0}; {secs:.1f}s")
    return row


def build_v2(v1: Dataset, test: Dataset, seed: int) -> tuple[Dataset, dict]:
    """Version 2: v1 minus N_REMOVED samples, N_RELABELLED kept samples relabelled, N_NEW new ones."""
    rng = np.random.default_rng([int(seed), 0xD1FF])
    n = len(v1)
    perm = rng.permutation(n)
    removed = np.sort(perm[:N_REMOVED])
    relab = np.sort(perm[N_REMOVED:N_REMOVED + N_RELABELLED])
    keep = np.setdiff1d(np.arange(n), removed)
    y = np.asarray(v1.y).copy()
    k = v1.n_classes
    y[relab] = (y[relab] + 1 + rng.integers(0, k - 1, size=len(relab))) % k
    v1_hashes = set(v1.content_hashes.tolist())
    th = test.content_hashes
    fresh, seen = [], set()
    for i in rng.permutation(len(test)):  # content v1 does not hold (and no repeats among the new)
        if th[i] not in v1_hashes and th[i] not in seen:
            fresh.append(int(i))
            seen.add(th[i])
        if len(fresh) == N_NEW:
            break
    if len(fresh) < N_NEW:
        raise RuntimeError(f"only {len(fresh)} test samples have content v1 does not hold")
    new = test.subset(np.asarray(fresh))
    if set(map(str, new.ids)) & set(map(str, v1.ids)):
        raise RuntimeError("test ids collide with v1 ids")
    who_new = assign_contributors(len(new), None, seed + 10_000)
    new_meta = new.meta.assign(contributor=list(who_new))
    base = v1.replace(y=y).subset(keep)
    v2 = Dataset(X=np.concatenate([base.X, new.X]), y=np.concatenate([base.y, new.y]), classes=v1.classes,
                 ids=np.concatenate([np.asarray(base.ids), np.asarray(new.ids)]),
                 meta=pd.concat([base.meta, new_meta[base.meta.columns]], ignore_index=True), name=v1.name)
    planted = {"removed": sorted(str(i) for i in np.asarray(v1.ids)[removed]),
               "relabelled": sorted(str(i) for i in np.asarray(v1.ids)[relab]),
               "new": sorted(str(i) for i in np.asarray(new.ids))}
    return v2, planted


def run_diff(job: Job, seed: int, args) -> dict:
    from mithridate.audit import Ledger

    splits = dm.load_splits(job.dataset, seed, args.fmnist_limit)
    v1 = with_contributors(splits.train, assign_contributors(len(splits.train), None, seed))
    v2, planted = build_v2(v1, splits.test, seed)
    row: dict = {"n_v1": len(v1), "n_v2": len(v2), "planted_counts": {k: len(v) for k, v in planted.items()}}
    with tempfile.TemporaryDirectory(prefix="mithridate-audit-figures-") as tmp:
        ledger = Ledger(f"sqlite:///{tmp}/ledger.sqlite")
        try:
            r1, s1, m1 = audit(v1, job.key, seed, ledger=ledger)
            r2, s2, m2 = audit(v2, job.key, seed, ledger=ledger)
        finally:
            ledger.close()
    d = r2.diff
    reported = {k: sorted(map(str, d.ids(k))) for k in ("new", "removed", "relabelled", "modified", "duplicate")}
    row.update({
        "v1": {"exit_code": r1.exit_code, "failed_checks": [r.name for r in r1.failed], "version": r1.version,
               "n_flagged": r1.summary["n_flagged"], "seconds": s1},
        "v2": {"exit_code": r2.exit_code, "failed_checks": [r.name for r in r2.failed],
               "failed_detail": [{"name": r.name, "value": r.value, "limit": r.limit, "message": r.message}
                                 for r in r2.failed],
               "version": r2.version, "n_flagged": r2.summary["n_flagged"], "seconds": s2},
        "reported_counts": d.counts, "summary_diff_counts": (r2.summary.get("diff") or {}).get("counts"),
        "exact_new": reported["new"] == planted["new"],
        "exact_removed": reported["removed"] == planted["removed"],
        "exact_relabelled": reported["relabelled"] == planted["relabelled"],
        "no_modified_or_duplicate": not reported["modified"] and not reported["duplicate"],
        "relabelled_old_labels_right": bool(len(d.relabelled)) and all(
            str(o) != str(n) for o, n in zip(d.relabelled["old_label"], d.relabelled["label"])),
        "n_new_flagged": (r2.summary.get("diff") or {}).get("n_new_flagged"),
        "n_relabelled_flagged": (r2.summary.get("diff") or {}).get("n_relabelled_flagged"),
        "seconds": s1 + s2,
    })
    for k in ("new", "removed", "relabelled"):
        if reported[k] != planted[k]:
            row[f"missed_{k}"] = sorted(set(planted[k]) - set(reported[k]))[:20]
            row[f"extra_{k}"] = sorted(set(reported[k]) - set(planted[k]))[:20]
    row["t_exact"] = (row["exact_new"] and row["exact_removed"] and row["exact_relabelled"]
                      and row["no_modified_or_duplicate"])
    warn = sorted(set(m1) | set(m2))
    if warn:
        row["warnings"] = warn[:5]
    log(f"  v1 exit {r1.exit_code} (v{r1.version}); v2 exit {r2.exit_code} (v{r2.version}, failed: "
        f"{', '.join(row['v2']['failed_checks']) or '-'}); diff {d.counts}; exact: new {row['exact_new']}, "
        f"removed {row['exact_removed']}, relabelled {row['exact_relabelled']}; {s1 + s2:.1f}s")
    return row


RUNNERS = {"poison": run_poison, "clean": run_clean, "diff": run_diff}


# ----------------------------------------------------------------------------------------
# markdown
# ----------------------------------------------------------------------------------------
def share(rows: list[dict], key: str) -> tuple[int, int]:
    ok = [r for r in rows if "error" not in r]
    return sum(bool(r.get(key)) for r in ok), len(ok)


def frac(k: int, n: int) -> str:
    return "—" if n == 0 else f"{k}/{n}"


def ordered_keys(rows: list[dict], figure: str) -> list[str]:
    order = {j.key: i for i, j in enumerate(all_jobs())}
    keys = {r["case"] for r in rows if r["figure"] == figure}
    return sorted(keys, key=lambda k: order.get(k, 999))


def render_md(payload: dict) -> str:
    rows = payload["rows"]
    env = payload["environment"]
    git = env.get("git") or {}
    status = "complete" if payload.get("complete") else "**incomplete** (interrupted, still running, or partial)"
    L = ["# `mithridate audit` as a pipeline gate (issue 5)", "",
         f"Environment: run {status}; {env.get('date')}; command `{env.get('command')}`; wall time "
         f"{fmt(payload.get('wall_seconds'), 0)} s; {env.get('cpu_count')} cores (load average at start "
         f"{env.get('load_average_at_start')}); threads {env.get('thread_env')}; Python {env.get('python')}, "
         f"torch {env.get('torch')}, scikit-learn {env.get('scikit-learn')}, numpy {env.get('numpy')}; git "
         f"{(git.get('commit') or '')[:10]} (src dirty: {git.get('src_dirty')}); mithridate imported from "
         f"`{env.get('mithridate_imported_from')}`.", ""]
    for run in payload.get("runs", [])[:-1]:
        L.append(f"Rows of an earlier run kept: {run.get('date')}, `{run.get('command')}` "
                 f"(wall {fmt(run.get('wall_seconds'), 0)} s; git {((run.get('git') or {}).get('commit') or '')[:10]}, "
                 f"mithridate from `{run.get('mithridate_imported_from')}`).")
    if len(payload.get("runs", [])) > 1:
        L.append("")
    L += ["Every audit is `run_audit(dataset, name=case, progress=False, random_state=seed)` with the default "
          "policy and default features (tables: raw columns; images: penultimate layer of the default network "
          "trained on the audited data). Ten contributors c0..c9: clean samples uniform at random (seeded), "
          "poisoned samples alternately c0 and c1. Seeds: split = attack = contributor draw = network seed. "
          f"Fashion-MNIST: the first {payload['environment'].get('args', {}).get('fmnist_limit')} training images "
          "(fixed; the seed changes attack, contributors and network); `fashion-mnist-6k` (clean only): a random "
          f"{FMNIST_SUBSET:,} of all 60,000 training images, drawn anew for each seed (another size and draw, as "
          "a user's own subset would be). \"Held-out\": data the default policy "
          "thresholds were **not** chosen on (they were set on breast_cancer, wine and digits).", ""]
    if payload.get("skipped"):
        L += [f"Skipped: {s}" for s in payload["skipped"]] + [""]

    # figure 1
    keys = ordered_keys(rows, "poison")
    L += ["## 1. Poisoned data: the gate fails and names the bad contributors", "",
          "Targets per seed: the audit exits 1; c0 and c1 (who sent every poison) are the top 2 contributors by "
          "reputation rank; no honest contributor (c2..c9) has its credible interval entirely above the "
          "population rate. Cells: seeds meeting the target / seeds run. \"target met?\": every seed meets all "
          "three.", "",
          "| case | held-out? | n (poisons) | exits 1 | c0, c1 top 2 | no honest above population | all three | "
          "target met? | ensemble AUROC (median) | flagged (median; poisons flagged) | checks failed (seeds) | "
          "seconds (median) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in keys:
        rs = [r for r in rows if r["case"] == k]
        ok = [r for r in rs if "error" not in r]
        lab = rs[0]["case_label"]
        a, n = share(rs, "t_all")
        checks: dict = {}
        for r in ok:
            for c in r["failed_checks"]:
                checks[c] = checks.get(c, 0) + 1
        errs = len(rs) - len(ok)
        L.append(
            f"| {lab} | {held_out(rs[0]['dataset'])} | {fmt(median(r.get('n_train') for r in ok), 0)} "
            f"({fmt(median(r.get('n_poison') for r in ok), 0)}) | {frac(*share(rs, 't_exit1'))} | "
            f"{frac(*share(rs, 't_top2'))} | {frac(*share(rs, 't_no_honest'))} | {frac(a, n)} | "
            f"{yes_no(a == n and n > 0 and not errs) if n else '—'}{f' ({errs} error)' if errs else ''} | "
            f"{fmt(median(r.get('auroc') for r in ok))} | {fmt(median(r.get('n_flagged') for r in ok), 0)}; "
            f"{fmt(median(r.get('poison_flagged') for r in ok), 0)} | "
            f"{', '.join(f'{c} ({v})' for c, v in sorted(checks.items())) or '—'} | "
            f"{fmt(median(r.get('seconds') for r in ok), 1)} |")
    if keys:
        tot = [r for r in rows if r["figure"] == "poison" and "error" not in r]
        L += ["", f"All poisoned audits: exits 1 in {frac(*share(tot, 't_exit1'))}, c0/c1 top 2 in "
              f"{frac(*share(tot, 't_top2'))}, no honest contributor above in {frac(*share(tot, 't_no_honest'))}, "
              f"all three in {frac(*share(tot, 't_all'))}.", ""]
        misses = [r for r in rows if r["figure"] == "poison" and "error" not in r and not r["t_all"]]
        if misses:
            L += ["Seeds missing a target:", "", "| case | seed | exit | ranks c0 / c1 | honest above | flag share c0 / c1 "
                  "(max honest) | poisons c0 / c1 | flagged poisons / poisons | concentration p (named) | checks failed |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
            for r in misses:
                bs = r.get("bad_shares") or [None, None]
                conc = r.get("concentration_p")
                if conc is None:  # rows of runs before the field: the failed check's value, if it failed
                    conc = next((d["value"] for d in r.get("failed_detail") or []
                                 if d["name"] == "contributor_concentration"), None)
                named = ", ".join(r.get("concentration_named") or [])
                L.append(f"| {r['case_label']} | {r['seed']} | {r['exit_code']} | {r['rank_c0']} / {r['rank_c1']} | "
                         f"{', '.join(r['honest_above']) or '—'} | {fmt(bs[0])} / {fmt(bs[1])} "
                         f"({fmt(r.get('max_honest_share'))}) | {r['poison_per_bad'][0]} / {r['poison_per_bad'][1]} | "
                         f"{r['poison_flagged']} / {r['n_poison']} | {fmt(conc)}{f' ({named})' if named else ''} | "
                         f"{', '.join(r['failed_checks']) or '—'} |")
            L.append("")

    # figure 2
    keys = ordered_keys(rows, "clean")
    if keys:
        L += ["## 2. Clean data: false alarms", "",
              f"Target: the audit exits 0 in ≥ {CLEAN_PASS_TARGET:.0%} of seeds.", "",
              "| dataset | held-out? | representation | n | audit passes | pass rate | target met? | "
              "flagged share (min–max) | worst class share (max) | honest contributors above population (seeds) | "
              "checks failed (seeds) | seconds (median) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for k in keys:
            rs = [r for r in rows if r["case"] == k]
            ok = [r for r in rs if "error" not in r]
            p, n = share(rs, "t_exit0")
            errs = len(rs) - len(ok)
            checks = {}
            for r in ok:
                for c in r["failed_checks"]:
                    checks[c] = checks.get(c, 0) + 1
            sh = [r["share_flagged"] for r in ok]
            wc = [r["worst_class_share"] for r in ok if r.get("worst_class_share") is not None]
            rep = "raw columns" if (ok and ok[0].get("representation") == "raw") else "default network"
            L.append(f"| {rs[0]['dataset']} | {held_out(rs[0]['dataset'])} | {rep} | {fmt(median(r.get('n_train') for r in ok), 0)} | "
                     f"{frac(p, n)} | {fmt(p / n if n else None, 2)} | "
                     f"{yes_no(n > 0 and p / n >= CLEAN_PASS_TARGET - 1e-12 and not errs)}"
                     f"{f' ({errs} error)' if errs else ''} | "
                     f"{(f'{100 * min(sh):.1f}–{100 * max(sh):.1f}%') if sh else '—'} | "
                     f"{(f'{100 * max(wc):.1f}%') if wc else '—'} | "
                     f"{sum(r['n_honest_above'] > 0 for r in ok)} | "
                     f"{', '.join(f'{c} ({v})' for c, v in sorted(checks.items())) or '—'} | "
                     f"{fmt(median(r.get('seconds') for r in ok), 1)} |")
        L.append("")
        fails = [r for r in rows if r["figure"] == "clean" and "error" not in r and not r["t_exit0"]]
        if fails:
            L += ["False alarms:", "", "| dataset | seed | failed check: value (limit), subject |", "|---|---|---|"]
            for r in fails:
                det = "; ".join(f"{d['name']}: {fmt(d['value'])} ({fmt(d['limit'])}), {d.get('subject')}"
                                for d in r["failed_detail"])
                L.append(f"| {r['dataset']} | {r['seed']} | {det} |")
            L.append("")

    # figure 3
    keys = ordered_keys(rows, "diff")
    if keys:
        L += ["## 3. Version diff through the ledger", "",
              f"Version 2 = version 1 − {N_REMOVED} removed + {N_NEW} new (unused test samples whose content "
              f"version 1 does not hold) with {N_RELABELLED} kept samples relabelled; both audited into one fresh "
              "SQLite ledger under one name. Target: the diff of version 2 lists exactly the planted ids "
              "(new, removed, relabelled) and nothing modified or duplicated.", "",
              "| dataset | n v1 → v2 | reported new / removed / relabelled / modified / duplicate (median) | "
              "exact new | exact removed | exact relabelled | no modified / duplicate | target met? | "
              "v2 exit code (seeds) | v2 checks failed (seeds) | new flagged (median) | seconds (median, both audits) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for k in keys:
            rs = [r for r in rows if r["case"] == k]
            ok = [r for r in rs if "error" not in r]
            errs = len(rs) - len(ok)
            t, n = share(rs, "t_exact")
            c = lambda s: fmt(median(r["reported_counts"][s] for r in ok), 0)  # noqa: E731
            exits: dict = {}
            checks = {}
            for r in ok:
                exits[r["v2"]["exit_code"]] = exits.get(r["v2"]["exit_code"], 0) + 1
                for ch in r["v2"]["failed_checks"]:
                    checks[ch] = checks.get(ch, 0) + 1
            L.append(f"| {rs[0]['dataset']} | {fmt(median(r['n_v1'] for r in ok), 0)} → "
                     f"{fmt(median(r['n_v2'] for r in ok), 0)} | {c('new')} / {c('removed')} / {c('relabelled')} / "
                     f"{c('modified')} / {c('duplicate')} | {frac(*share(rs, 'exact_new'))} | "
                     f"{frac(*share(rs, 'exact_removed'))} | {frac(*share(rs, 'exact_relabelled'))} | "
                     f"{frac(*share(rs, 'no_modified_or_duplicate'))} | {yes_no(t == n and n > 0 and not errs)} | "
                     f"{', '.join(f'{e} ({v})' for e, v in sorted(exits.items()))} | "
                     f"{', '.join(f'{ch} ({v})' for ch, v in sorted(checks.items())) or '—'} | "
                     f"{fmt(median(r.get('n_new_flagged') for r in ok), 0)} | "
                     f"{fmt(median(r.get('seconds') for r in ok), 1)} |")
        L.append("")

    errs = [r for r in rows if "error" in r]
    L += ["## Errors", ""]
    if errs:
        for r in errs:
            L.append(f"- `{r['case']}` seed {r['seed']}: {r['error']}")
    else:
        L.append("None.")
    L.append("")
    if payload.get("notes"):
        L += ["## Notes", ""] + payload["notes"] + [""]
    return "\n".join(L)


def summaries(rows: list[dict]) -> list[dict]:
    out = []
    for fig in ("poison", "clean", "diff"):
        for k in ordered_keys(rows, fig):
            rs = [r for r in rows if r["case"] == k]
            d: dict = {"figure": fig, "case": k, "dataset": rs[0]["dataset"], "held_out": rs[0]["dataset"] not in
                       TUNING_DATASETS | {"digits-1-7"}, "seeds": sorted(r["seed"] for r in rs),
                       "n_errors": sum("error" in r for r in rs)}
            keys = {"poison": ("t_exit1", "t_top2", "t_no_honest", "t_all"), "clean": ("t_exit0",),
                    "diff": ("exact_new", "exact_removed", "exact_relabelled", "no_modified_or_duplicate", "t_exact")}[fig]
            for t in keys:
                k_, n_ = share(rs, t)
                d[f"share_{t}"] = k_ / n_ if n_ else None
            if fig == "poison":
                d["auroc_median"] = median(r.get("auroc") for r in rs if "error" not in r)
                d["target_met"] = d["share_t_all"] == 1.0 and not d["n_errors"]
            elif fig == "clean":
                d["target_met"] = (d["share_t_exit0"] or 0) >= CLEAN_PASS_TARGET - 1e-12 and not d["n_errors"]
            else:
                d["target_met"] = d["share_t_exact"] == 1.0 and not d["n_errors"]
            d["seconds_median"] = median(r.get("seconds") for r in rs if "error" not in r)
            out.append(d)
    return out


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=None,
                   help="fnmatch patterns over case keys (e.g. 'digits/*', 'clean/*', 'diff/digits'); a leading '!' "
                        "excludes. Keys: poison cases as in the detection matrix ('wine/random-flip-10%%'), "
                        "'clean/<dataset>', 'diff/<dataset>'. Default: every case")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="seeds for every selected case (default: 5 for flips, digits backdoors and diffs, 3 for "
                        "Fashion-MNIST backdoors, 20 for clean tables/digits/iris, 5 for clean Fashion-MNIST)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: seed 0, five small cases, Fashion-MNIST cut to 2,000 images; writes "
                        "audit_figures_quick.{json,md}")
    p.add_argument("--fmnist-limit", type=int, default=None, help="Fashion-MNIST training images (default 10000)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--stem", default=None, help="file stem (default audit_figures, or audit_figures_quick)")
    p.add_argument("--resume", action="store_true",
                   help="keep rows already in the JSON and skip the (case, seed) pairs they cover")
    p.add_argument("--render-only", action="store_true", help="re-render the markdown from the JSON, run nothing")
    p.add_argument("--notes", type=Path, default=None, help="markdown file whose lines become the Notes section")
    args = p.parse_args(argv)
    if args.quick and args.seeds is None:
        args.seeds = [0]
    if args.fmnist_limit is None:
        args.fmnist_limit = 2000 if args.quick else 10000
    if args.stem is None:
        args.stem = "audit_figures_quick" if args.quick else "audit_figures"
    return args


def save(args, payload: dict) -> None:
    payload["summary"] = summaries(payload["rows"])
    write_results(args.out, args.stem, payload, render_md(payload))


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    json_path = args.out / f"{args.stem}.json"
    if args.render_only:
        save(args, load_for_render(json_path, args.notes))
        log(f"re-rendered {args.out / (args.stem + '.md')}")
        return 0
    jobs = select_jobs(args.cases, args.quick)
    skipped: list[str] = []
    if not fmnist_available():
        fm = [j for j in jobs if j.dataset.startswith("fashion-mnist")]
        if fm:
            msg = (f"Fashion-MNIST is not in /usr/share/datasets/fashion-mnist (nor $MITHRIDATE_FASHION_MNIST): "
                   f"skipped {', '.join(j.key for j in fm)}")
            log(msg)
            skipped.append(msg)
            jobs = [j for j in jobs if not j.dataset.startswith("fashion-mnist")]
    import mithridate

    env = environment(args, mithridate_imported_from=str(Path(mithridate.__file__).resolve().parent))
    payload: dict = {"benchmark": "audit_figures", "complete": False, "environment": env, "rows": [], "notes": [],
                     "skipped": skipped}
    run_keys = {j.key for j in jobs}
    done: set = set()
    if json_path.is_file():
        old = json.loads(json_path.read_text(encoding="utf-8"))
        if args.resume:
            payload["rows"] = list(old.get("rows", []))
            done = {(r["case"], r["seed"]) for r in payload["rows"] if "error" not in r}
            payload["rows"] = [r for r in payload["rows"] if (r["case"], r["seed"]) in done or r["case"] not in run_keys]
        else:  # keep the other cases' rows: runs split over several commands add up in one file
            payload["rows"] = [r for r in old.get("rows", []) if r["case"] not in run_keys]
        payload["runs"] = kept_runs([e for e in old.get("runs", [old.get("environment")]) if e], payload["rows"])
        payload["notes"] = old.get("notes", [])
        payload["skipped"] = sorted(set(old.get("skipped", [])) | set(skipped)) if skipped else []
    payload["runs"] = payload.get("runs", []) + [env]
    if args.notes and args.notes.is_file():
        payload["notes"] = args.notes.read_text(encoding="utf-8").strip().splitlines()
    t_start = time.perf_counter()
    for job in jobs:
        seeds = tuple(args.seeds) if args.seeds is not None else job.seeds
        for seed in seeds:
            if (job.key, seed) in done:
                log(f"{job.key} seed={seed}: already in {json_path.name}, skipped (--resume)")
                continue
            log(f"[{time.perf_counter() - t_start:6.0f}s] {job.key} seed={seed}")
            base = {"figure": job.figure, "dataset": job.dataset, "case": job.key, "case_label": job.label,
                    "seed": seed, "run": env.get("date")}
            if job.case is not None:
                base.update(attack=job.case.attack, rate=job.case.rate, family=job.case.family)
            try:
                row = {**base, **RUNNERS[job.figure](job, seed, args)}
            except Exception as exc:
                log(f"  failed: {type(exc).__name__}: {exc}")
                row = {**base, "error": f"{type(exc).__name__}: {str(exc)[:400]}",
                       "traceback": traceback.format_exc()[-2000:]}
            payload["rows"] = [r for r in payload["rows"] if (r["case"], r["seed"]) != (job.key, seed)] + [row]
            payload["wall_seconds"] = time.perf_counter() - t_start
            payload["runs"][-1]["wall_seconds"] = payload["wall_seconds"]
            save(args, payload)
    return finish_run(payload, t_start, lambda: save(args, payload), json_path)


if __name__ == "__main__":
    raise SystemExit(main())
