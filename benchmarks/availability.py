"""Benchmark: availability and regression poisoning, trimmed-loss defences, the sphere/slab bound.

Sections (each a function below; all medians over ``--seeds``, default 0-4; the seed sets the data
split, the attack and the model):

* ``label_flip``  -- linear SVM (``SklearnClassifier("linear_svm")``) on digits 1-vs-7 and
  breast_cancer; test error of the clean model, after random flips at 10%, after adversarial flips
  at 10% (both strategies); ratio of the error *increases* adversarial / random.
* ``gradient``    -- gradient poisoning (Biggio et al. 2012) with 3% inserted points on digits
  1-vs-7 against the linear SVM. Threat model of the paper: the attacker holds a validation set
  drawn from the same distribution that the victim does not train on (30% of the training split,
  stratified); the victim trains on the other 70% plus the inserted points. Also the attack's
  default without validation data (cross-validation on the training set it poisons).
* ``regression``  -- diabetes scaled to [0, 1] (training ranges); ridge; StatP and OptP at 20%;
  TRIM (automatic clean count), scikit-learn's HuberRegressor and RANSACRegressor on the OptP set;
  an oracle OptP told the test set, as an upper reference on the damage the protocol allows.
* ``itlm``        -- iterative trimmed loss (automatic keep fraction) after 30% adversarial flips
  on digits 1-vs-7.
* ``certify``     -- Steinhardt et al. 2017 upper bound vs the minimax candidate attack (oracle
  sphere+slab defence) on digits 1-vs-7 and breast_cancer scaled to [0, 1].
* ``speed``       -- a synthetic 100,000 x 50 CSV: load, random and adversarial flips, StatP, TRIM.

Usage::

    PYTHONPATH=src python benchmarks/availability.py                 # everything, 5 seeds
    PYTHONPATH=src python benchmarks/availability.py --only regression gradient --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _common import environment, fmt, log, median, write_results, yes_no  # noqa: E402

from mithridate.data import load_dataset, load_table  # noqa: E402
from mithridate.data.transforms import minmax_scale  # noqa: E402
from mithridate.eval import metrics as M  # noqa: E402
from mithridate.models.linear import SklearnClassifier  # noqa: E402
from mithridate.models.regression import LinearRegressor  # noqa: E402

SECTIONS = ("label_flip", "gradient", "regression", "itlm", "certify", "speed")


def _svm_error(train, test, C: float = 1.0) -> float:
    clf = SklearnClassifier("linear_svm", C=C).fit(train, n_classes=train.n_classes)
    return M.error_rate(test.y, clf.predict(test.X))


def _pair(name: str, seed: int):
    if name == "digits-1-7":
        return load_dataset("digits", classes=[1, 7], random_state=seed)
    return load_dataset(name, random_state=seed)


# ----------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------
def label_flip(seeds: list[int]) -> tuple[list[dict], list[tuple]]:
    from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip

    rows = []
    for ds in ("digits-1-7", "breast_cancer"):
        for seed in seeds:
            splits = _pair(ds, seed)
            row: dict = {"dataset": ds, "seed": seed, "n_train": len(splits.train)}
            row["clean_error"] = _svm_error(splits.train, splits.test)
            t0 = time.perf_counter()
            rnd = RandomFlip(poison_rate=0.1).poison(splits.train, random_state=seed)
            row["random_s"] = time.perf_counter() - t0
            row["random_error"] = _svm_error(rnd.dataset, splits.test)
            for strategy in ("confidence", "greedy"):
                t0 = time.perf_counter()
                adv = AdversarialFlip(poison_rate=0.1, strategy=strategy).poison(splits.train, random_state=seed)
                row[f"{strategy}_s"] = time.perf_counter() - t0
                row[f"{strategy}_error"] = _svm_error(adv.dataset, splits.test)
            rows.append(row)
            log(f"label_flip {ds} seed {seed}: clean {row['clean_error']:.3f} random {row['random_error']:.3f} "
                f"confidence {row['confidence_error']:.3f} greedy {row['greedy_error']:.3f}")
    checks = []
    for ds in ("digits-1-7", "breast_cancer"):
        r = [x for x in rows if x["dataset"] == ds]
        clean = median(x["clean_error"] for x in r)
        d_rand = median(x["random_error"] for x in r) - clean
        best = max(("confidence", "greedy"), key=lambda s: median(x[f"{s}_error"] for x in r))
        d_adv = median(x[f"{best}_error"] for x in r) - clean
        ratio = d_adv / d_rand if d_rand > 0 else float("inf")
        checks.append((f"{ds}: adversarial flips 10% raise linear-SVM test error ≥ 2× random flips 10%",
                       ratio >= 2.0, f"+{d_adv * 100:.1f} pts ({best}) vs +{d_rand * 100:.1f} pts = {ratio:.1f}×"))
    return rows, checks


def gradient(seeds: list[int]) -> tuple[list[dict], list[tuple]]:
    from mithridate.attacks.gradient import GradientPoisoning
    from mithridate.data.loaders import _stratified_indices

    rows = []
    for seed in seeds:
        splits = _pair("digits-1-7", seed)
        tr = splits.train
        fit_idx, val_idx = _stratified_indices(tr.y, tr.classes, 0.3, np.random.default_rng([seed, 7]))
        victim_train, attacker_val = tr.subset(fit_idx), tr.subset(val_idx)
        row: dict = {"dataset": "digits-1-7", "seed": seed, "n_victim_train": len(victim_train),
                     "n_attacker_validation": len(attacker_val)}
        row["clean_error"] = _svm_error(victim_train, splits.test)
        t0 = time.perf_counter()
        res = GradientPoisoning(poison_rate=0.03).poison(victim_train, random_state=seed, validation=attacker_val)
        row["seconds"] = time.perf_counter() - t0
        row["n_poison"] = res.budget["n_poison"]
        row["poisoned_error"] = _svm_error(res.dataset, splits.test)
        # flipped copies of the initial points only (no optimisation): what the gradient steps add
        init = GradientPoisoning(poison_rate=0.03, n_steps=0).poison(victim_train, random_state=seed,
                                                                     validation=attacker_val)
        row["init_only_error"] = _svm_error(init.dataset, splits.test)
        # the attack's default when the attacker has no separate validation data
        row["clean_error_full"] = _svm_error(tr, splits.test)
        cv = GradientPoisoning(poison_rate=0.03).poison(tr, random_state=seed)
        row["cv_poisoned_error"] = _svm_error(cv.dataset, splits.test)
        rows.append(row)
        log(f"gradient seed {seed}: clean {row['clean_error']:.3f} init {row['init_only_error']:.3f} "
            f"poisoned {row['poisoned_error']:.3f} (cv default {row['cv_poisoned_error']:.3f}) {row['seconds']:.1f}s")
    rise = median(r["poisoned_error"] - r["clean_error"] for r in rows)
    checks = [("digits 1-vs-7: gradient poisoning with 3% inserted points raises linear-SVM test error by ≥ 10 pts "
               "(attacker validation set, Biggio's setting)", rise >= 0.10, f"+{rise * 100:.1f} pts")]
    return rows, checks


def regression(seeds: list[int]) -> tuple[list[dict], list[tuple]]:
    from sklearn.linear_model import HuberRegressor, RANSACRegressor

    from mithridate.attacks.regression import OptP, StatP
    from mithridate.defenses.train.trim import TrimRegressor

    rows = []
    for seed in seeds:
        splits, _ = minmax_scale(load_dataset("diabetes", random_state=seed))
        tr, te = splits.train, splits.test

        def mse(model) -> float:
            return M.mean_squared_error(te.y, model.predict(te.X))

        clean = mse(LinearRegressor("ridge").fit(tr))
        row: dict = {"dataset": "diabetes", "seed": seed, "clean_mse": clean}
        t0 = time.perf_counter()
        opt = OptP(poison_rate=0.2).poison(tr, random_state=seed).dataset
        row["optp_s"] = time.perf_counter() - t0
        stat = StatP(poison_rate=0.2).poison(tr, random_state=seed).dataset
        row["n_poison"] = int(np.sum(opt.is_poison))
        row["optp_ratio"] = mse(LinearRegressor("ridge").fit(opt)) / clean
        row["statp_ratio"] = mse(LinearRegressor("ridge").fit(stat)) / clean
        # Upper reference, not an attack a real adversary can run: OptP told the *test* set and
        # maximising the test MSE itself. No attacker with 20% points in the box does better (up to
        # the optimiser), so it shows how much damage this protocol allows at all.
        oracle = OptP(poison_rate=0.2).poison(tr, random_state=seed, validation=te).dataset
        row["oracle_ratio"] = mse(LinearRegressor("ridge").fit(oracle)) / clean
        for name, ds in (("optp", opt), ("statp", stat)):
            X, y = np.asarray(ds.X, dtype=np.float64), np.asarray(ds.y)
            t0 = time.perf_counter()
            trim = TrimRegressor(random_state=seed).fit(ds)
            row[f"trim_s|{name}"] = time.perf_counter() - t0
            row[f"trim_ratio|{name}"] = mse(trim) / clean
            row[f"trim_poison_kept|{name}"] = int(np.sum(trim.kept_ & ds.is_poison))
            row[f"huber_ratio|{name}"] = mse(HuberRegressor(max_iter=1000).fit(X, y)) / clean
            row[f"ransac_ratio|{name}"] = mse(RANSACRegressor(random_state=seed).fit(X, y)) / clean
        rows.append(row)
        log(f"regression seed {seed}: OptP x{row['optp_ratio']:.2f} StatP x{row['statp_ratio']:.2f} "
            f"TRIM x{row['trim_ratio|optp']:.3f} Huber x{row['huber_ratio|optp']:.2f} RANSAC x{row['ransac_ratio|optp']:.2f}")
    g = {k: median(r[k] for r in rows) for k in rows[0] if k not in ("dataset", "seed")}
    checks = [
        ("diabetes: OptP 20% raises ridge test MSE ≥ 5×", g["optp_ratio"] >= 5.0,
         f"{g['optp_ratio']:.2f}× (oracle told the test set: {g['oracle_ratio']:.2f}×)"),
        ("diabetes: StatP 20% raises ridge test MSE ≥ 2×", g["statp_ratio"] >= 2.0, f"{g['statp_ratio']:.2f}×"),
        ("diabetes: TRIM at 20% OptP ≤ 1.15× clean MSE", g["trim_ratio|optp"] <= 1.15, f"{g['trim_ratio|optp']:.3f}×"),
        ("diabetes: TRIM beats Huber and RANSAC at 20% OptP",
         g["trim_ratio|optp"] < min(g["huber_ratio|optp"], g["ransac_ratio|optp"]),
         f"TRIM {g['trim_ratio|optp']:.3f}× vs Huber {g['huber_ratio|optp']:.2f}×, RANSAC {g['ransac_ratio|optp']:.2f}×"),
    ]
    return rows, checks


def itlm(seeds: list[int]) -> tuple[list[dict], list[tuple]]:
    from mithridate.attacks.label_flip import AdversarialFlip
    from mithridate.defenses.train.itlm import TrimmedLossClassifier

    rows = []
    for seed in seeds:
        splits = _pair("digits-1-7", seed)
        tr, te = splits.train, splits.test
        row: dict = {"dataset": "digits-1-7", "seed": seed}
        row["clean_accuracy"] = 1.0 - _svm_error(tr, te)
        adv = AdversarialFlip(poison_rate=0.3).poison(tr, random_state=seed).dataset
        row["poisoned_accuracy"] = 1.0 - _svm_error(adv, te)
        t0 = time.perf_counter()
        model = TrimmedLossClassifier(random_state=seed).fit(adv.without_ground_truth())
        row["seconds"] = time.perf_counter() - t0
        row["itlm_accuracy"] = M.accuracy(te.y, model.predict(te.X))
        kept = np.asarray(model.kept_, bool)
        row["kept_fraction"] = float(kept.mean())
        row["flips_kept"] = int(np.sum(kept & adv.is_poison))
        rows.append(row)
        log(f"itlm seed {seed}: clean {row['clean_accuracy']:.3f} poisoned {row['poisoned_accuracy']:.3f} "
            f"ITLM {row['itlm_accuracy']:.3f} (kept {row['kept_fraction']:.2f}, flips kept {row['flips_kept']})")
    gap = median(r["clean_accuracy"] for r in rows) - median(r["itlm_accuracy"] for r in rows)
    checks = [("digits 1-vs-7: ITLM at 30% adversarial flips within 2 pts of clean accuracy", gap <= 0.02,
               f"clean {median(r['clean_accuracy'] for r in rows):.3f}, ITLM {median(r['itlm_accuracy'] for r in rows):.3f} "
               f"({gap * 100:+.1f} pts below clean)")]
    return rows, checks


def certify(seeds: list[int]) -> tuple[list[dict], list[tuple]]:
    from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip
    from mithridate.defenses.certify.sphere_slab import SphereSlabCertificate

    rows = []
    eps_grid = (0.01, 0.03, 0.05, 0.1, 0.2, 0.3)
    for ds in ("digits-1-7", "breast_cancer"):
        for seed in seeds:
            splits, _ = minmax_scale(_pair(ds, seed))
            t0 = time.perf_counter()
            cert = SphereSlabCertificate().fit(splits.train, epsilons=eps_grid, test=splits.test, random_state=seed)
            seconds = time.perf_counter() - t0
            table = cert.table_
            for _, t in table.iterrows():
                eps = float(t["eps"])
                row = {"dataset": ds, "seed": seed, "eps": eps, "seconds_grid": seconds,
                       **{k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in t.items()}}
                # other attacks at the same eps, measured on the same quantity as the bound
                for name, atk in (("random_flip", RandomFlip(poison_rate=min(eps, 0.99))),
                                  ("adversarial_flip", AdversarialFlip(poison_rate=min(eps, 0.99)))):
                    try:
                        row[f"{name}_loss"] = cert.attack_objective(atk.poison(splits.train, random_state=seed).dataset)
                    except AttributeError:
                        row[f"{name}_loss"] = float("nan")
                rows.append(row)
            log(f"certify {ds} seed {seed}: {seconds:.1f}s; eps=0.1 bound {float(table.loc[table.eps.round(4) == 0.1, 'upper_bound'].iloc[0]):.3f}")
    checks = []
    holds = all(r["upper_bound"] + 1e-9 >= max(r.get("attack_loss", -np.inf),
                                               np.nan_to_num(r.get("random_flip_loss", -np.inf), nan=-np.inf),
                                               np.nan_to_num(r.get("adversarial_flip_loss", -np.inf), nan=-np.inf))
                for r in rows)
    checks.append(("the certified bound holds in every run (≥ minimax, random- and adversarial-flip losses)", holds,
                   f"{len(rows)} (dataset, seed, ε) cells"))
    for ds in ("digits-1-7", "breast_cancer"):
        r = [x for x in rows if x["dataset"] == ds and abs(x["eps"] - 0.1) < 1e-9]
        ratio = median(x["ratio"] for x in r)
        checks.append((f"{ds}: minimax attack reaches ≥ 70% of the bound's excess loss at ε = 0.1 (oracle defence)",
                       ratio >= 0.7, f"ratio {ratio:.2f}"))
    return rows, checks


def speed(seeds: list[int]) -> tuple[list[dict], list[tuple]]:
    import pandas as pd

    from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip
    from mithridate.attacks.regression import StatP
    from mithridate.defenses.train.trim import TrimRegressor

    rng = np.random.default_rng(0)
    n, d = 100_000, 50
    X = rng.random((n, d))
    w = rng.normal(size=d)
    score = (X - 0.5) @ w
    y_cls = (score + rng.normal(scale=0.5 * score.std(), size=n) > 0).astype(int)
    t = score + rng.normal(scale=0.3 * score.std(), size=n)
    t = (t - t.min()) / (t.max() - t.min())
    cols = [f"f{i}" for i in range(d)]
    df = pd.DataFrame(X, columns=cols)
    df["label"] = np.where(y_cls == 1, "yes", "no")
    df["target"] = t
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        df.to_csv(path, index=False)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        cls = load_table(path, label="label", features=cols, test_size=0.2, random_state=0)
        timings["load_classification"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        reg = load_table(path, label="target", features=cols, task="regression", test_size=0.2, random_state=0)
        timings["load_regression"] = time.perf_counter() - t0
        for name, fn in (
            ("random_flip", lambda: RandomFlip(0.1).poison(cls.train, random_state=0)),
            ("adversarial_flip_confidence", lambda: AdversarialFlip(0.1, strategy="confidence").poison(cls.train, random_state=0)),
            ("adversarial_flip_greedy", lambda: AdversarialFlip(0.1, strategy="greedy").poison(cls.train, random_state=0)),
            ("statp", lambda: StatP(0.2).poison(reg.train, random_state=0)),
        ):
            t0 = time.perf_counter()
            res = fn()
            timings[name] = time.perf_counter() - t0
            log(f"speed {name}: {timings[name]:.1f}s")
            if name == "statp":
                statp_set = res.dataset
        t0 = time.perf_counter()
        TrimRegressor(random_state=0).fit(statp_set)
        timings["trim"] = time.perf_counter() - t0
        log(f"speed trim: {timings['trim']:.1f}s")
    rows.append({"rows": n, "features": d, **timings})
    checks = [
        ("100k × 50 CSV: label-flip attacks < 30 s (each, after loading)",
         max(timings["random_flip"], timings["adversarial_flip_confidence"], timings["adversarial_flip_greedy"]) < 30,
         f"random {timings['random_flip']:.1f}s, confidence {timings['adversarial_flip_confidence']:.1f}s, "
         f"greedy {timings['adversarial_flip_greedy']:.1f}s (load {timings['load_classification']:.1f}s)"),
        ("100k × 50 CSV: StatP < 30 s", timings["statp"] < 30, f"{timings['statp']:.1f}s (load {timings['load_regression']:.1f}s)"),
        ("100k × 50 CSV: TRIM < 60 s", timings["trim"] < 60, f"{timings['trim']:.1f}s on {len(statp_set)} rows"),
    ]
    return rows, checks


RUNNERS: dict[str, Callable[[list[int]], tuple[list[dict], list[tuple]]]] = {
    "label_flip": label_flip, "gradient": gradient, "regression": regression, "itlm": itlm,
    "certify": certify, "speed": speed,
}


# ----------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------
def _table(rows: list[dict], keys: list[str], group: Optional[str] = None, nd: int = 3) -> list[str]:
    """Median per group (or overall) of the given keys, as markdown lines."""
    groups: dict[Any, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get(group) if group else "all", []).append(r)
    head = ([group] if group else []) + ["seeds"] + [k.replace("|", " on ") for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g, rs in groups.items():
        vals = [fmt(median(r.get(k, float("nan")) for r in rs), nd) for k in keys]
        lines.append("| " + " | ".join(([str(g)] if group else []) + [str(len(rs))] + vals) + " |")
    return lines


def render_md(payload: dict) -> str:
    env = payload["environment"]
    L = ["# Availability and regression poisoning, trimmed-loss defences, the sphere/slab bound", ""]
    L.append(f"Generated by `{env['command']}` ({env['date']}, {payload.get('seconds', 0):.0f} s); mithridate commit "
             f"`{env['git']['commit']}`{' (src modified)' if env['git']['src_dirty'] else ''}; numpy {env['numpy']}, "
             f"scikit-learn {env['scikit-learn']}, torch {env['torch']}; {env['cpu_count']} CPU cores. "
             "Medians over the seeds listed in each table.")
    L.append("")
    sec = payload["sections"]
    if "label_flip" in sec:
        L += ["## Label flips (linear SVM test error)", ""]
        L += _table(sec["label_flip"]["rows"], ["clean_error", "random_error", "confidence_error", "greedy_error",
                                                  "random_s", "confidence_s", "greedy_s"], group="dataset")
        L.append("")
    if "gradient" in sec:
        L += ["## Gradient poisoning, 3% inserted points, digits 1-vs-7 (linear SVM test error)", "",
              "Victim trains on 70% of the training split plus the inserted points; the attacker optimises "
              "against the other 30% (Biggio et al.'s threat model: same-distribution data the victim never "
              "sees). `init_only` = the flipped copies the attack starts from; `cv_*` = the attack's default "
              "when the attacker has no separate data (victim trained on the full training split).", ""]
        L += _table(sec["gradient"]["rows"], ["clean_error", "init_only_error", "poisoned_error", "clean_error_full",
                                                "cv_poisoned_error", "n_poison", "seconds"])
        L.append("")
    if "regression" in sec:
        L += ["## Regression poisoning on diabetes (ridge, test MSE ÷ clean test MSE)", "",
              "`oracle_ratio` is an upper reference, not a realistic attack: OptP given the test set as its "
              "validation data, i.e. maximising the very test MSE the table reports. It bounds (up to the "
              "optimiser) what any attacker with the same 20% of points in the [0, 1] box can do to this victim.",
              ""]
        L += _table(sec["regression"]["rows"], ["clean_mse", "optp_ratio", "oracle_ratio", "statp_ratio", "trim_ratio|optp",
                                                  "huber_ratio|optp", "ransac_ratio|optp", "trim_ratio|statp",
                                                  "huber_ratio|statp", "ransac_ratio|statp", "trim_poison_kept|optp",
                                                  "n_poison", "optp_s"])
        L.append("")
    if "itlm" in sec:
        L += ["## Iterative trimmed loss after 30% adversarial flips (digits 1-vs-7, linear SVM accuracy)", ""]
        L += _table(sec["itlm"]["rows"], ["clean_accuracy", "poisoned_accuracy", "itlm_accuracy", "kept_fraction",
                                            "flips_kept", "seconds"])
        L.append("")
    if "certify" in sec:
        L += ["## Certified bound (Steinhardt et al. 2017), oracle sphere+slab defence", ""]
        rows = sec["certify"]["rows"]
        keys = [k for k in ("clean_loss", "upper_bound", "attack_loss", "random_flip_loss", "adversarial_flip_loss",
                            "ratio", "attack_error") if any(k in r for r in rows)]
        for ds in sorted({r["dataset"] for r in rows}):
            L += [f"**{ds}**", ""]
            L += _table([r for r in rows if r["dataset"] == ds], keys, group="eps")
            L.append("")
    if "speed" in sec:
        L += ["## Speed on a 100,000 × 50 CSV (seconds)", ""]
        r = sec["speed"]["rows"][0]
        L += ["| step | seconds |", "|---|---|"] + [f"| {k} | {fmt(v, 1)} |" for k, v in r.items()
                                                    if k not in ("rows", "features")]
        L.append("")
    L += ["## Figures asked for", "", "| figure | measured | met? |", "|---|---|---|"]
    for name in SECTIONS:
        for fig, ok, measured in sec.get(name, {}).get("checks", []):
            L.append(f"| {fig} | {measured} | {yes_no(ok)} |")
    L.append("")
    return "\n".join(L)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--stem", default="availability")
    args = p.parse_args(argv)
    payload: dict = {"benchmark": "availability", "environment": environment(args), "sections": {}}
    t_start = time.perf_counter()
    for name in args.only:
        t0 = time.perf_counter()
        rows, checks = RUNNERS[name](args.seeds)
        payload["sections"][name] = {"rows": rows, "checks": checks, "seconds": time.perf_counter() - t0}
        payload["seconds"] = time.perf_counter() - t_start
        write_results(args.out, args.stem, payload, render_md(payload))  # after every section
    log(f"wrote {args.out / (args.stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
