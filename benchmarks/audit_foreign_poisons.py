"""`mithridate audit` on poisons crafted by another tool, read the way a user would hand them over.

Issue 5 asks the gate to work on the user's own files and on poisons mithridate did not make. This
benchmark crafts dirty-label backdoors with IBM ART (``PoisoningAttackBackdoor`` with its own
trigger functions ``add_pattern_bd`` and ``add_single_bd``), writes each set as a flat folder of
PNG files plus ``manifest.csv`` (file, label as a name, vendor), and audits it with the installed
``mithridate audit`` command in a subprocess (default policy, no ledger). ART is a comparator-only
dependency: ``pip install -e '.[compare]'``.

Per case and seed: a seeded random 6,000 of the 60,000 Fashion-MNIST training images, ten vendors
drawn at random, and 5% of the images (all from vendor-3 and vendor-7, none already of the target
class) stamped with ART's trigger and relabelled Sneaker. Targets as in ``audit_figures.py``: the
audit exits 1, vendor-3 and vendor-7 rank top 2 by reputation, and no honest vendor's interval
lies above the population rate.

    python benchmarks/audit_foreign_poisons.py              # 2 triggers x 3 seeds, ~4 min
    python benchmarks/audit_foreign_poisons.py --render-only
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, finish_run, fmnist_train, fmt, load_for_render, log, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STEM = "audit_foreign_poisons"
N_IMAGES, RATE, TARGET = 6000, 0.05, 7  # 7 = Sneaker
BAD_VENDORS = ("vendor-3", "vendor-7")
NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
TRIGGERS = ("add_pattern_bd", "add_single_bd")


def craft(trigger: str, seed: int, out: Path) -> np.ndarray:
    """Write the poisoned set under ``out`` (img/*.png + manifest.csv); returns the poison mask."""
    from art.attacks.poisoning import PoisoningAttackBackdoor
    from art.attacks.poisoning import perturbations as P
    from PIL import Image

    train = fmnist_train()
    rng = np.random.default_rng([seed, 0xA27])
    take = np.sort(rng.choice(len(train), N_IMAGES, replace=False))
    X = np.asarray(train.X)[take].reshape(N_IMAGES, 28, 28).astype(np.float32)
    X = X / 255.0 if X.max() > 1.0 else X
    y = np.asarray(train.y)[take].astype(np.int64)
    vendor = rng.integers(0, 10, N_IMAGES)
    eligible = np.flatnonzero(np.isin(vendor, [3, 7]) & (y != TARGET))
    pidx = rng.choice(eligible, int(RATE * N_IMAGES), replace=False)
    fn = getattr(P, trigger)
    xp, _ = PoisoningAttackBackdoor(lambda x: fn(x, pixel_value=1)).poison(X[pidx], y=np.eye(10)[y[pidx]])
    X[pidx], y[pidx] = xp, TARGET
    poison = np.zeros(N_IMAGES, bool)
    poison[pidx] = True
    (out / "img").mkdir(parents=True)
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "vendor"])
        for i in range(N_IMAGES):
            name = f"img/{i:05d}.png"
            Image.fromarray(np.clip(X[i] * 255, 0, 255).round().astype(np.uint8)).save(out / name)
            w.writerow([name, NAMES[y[i]], f"vendor-{vendor[i]}"])
    return poison


def run_one(trigger: str, seed: int) -> dict:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "audit"
        poison = craft(trigger, seed, data)
        cmd = [sys.executable, "-m", "mithridate", "audit", str(data / "manifest.csv"), "--images", "file",
               "--label", "label", "--contributor", "vendor", "--no-ledger", "--seed", str(seed), "--json",
               "--out", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        row = {"trigger": trigger, "seed": seed, "exit_code": proc.returncode, "seconds": secs,
               "n_images": N_IMAGES, "n_poison": int(poison.sum())}
        if proc.returncode not in (0, 1):
            row["error"] = (proc.stderr or proc.stdout)[-800:]
            return row
        summary = json.loads(proc.stdout)
        findings = pd.read_csv(out / "findings.csv")
    flagged = findings["flagged"].to_numpy(bool)
    contribs = {c["contributor"]: c for c in summary.get("contributors", [])}
    ranked = sorted(contribs.values(), key=lambda c: c.get("rank") or 1e9)
    honest_above = [k for k, c in contribs.items() if k not in BAD_VENDORS and c.get("above_population")]
    row.update(
        failed_checks=[r["name"] for r in summary.get("policy_results", []) if r.get("passed") is False],
        n_flagged=int(flagged.sum()), poison_flagged=int(flagged[poison].sum()),
        auroc=float(roc_auc_score(poison, findings["ensemble_score"].to_numpy())),
        member_auroc={c[: -len("_score")]: float(roc_auc_score(poison, findings[c].fillna(0).to_numpy()))
                      for c in findings.columns if c.endswith("_score") and c != "ensemble_score"},
        top2=[c["contributor"] for c in ranked[:2]], honest_above=honest_above,
    )
    row["t_exit1"] = row["exit_code"] == 1
    row["t_top2"] = set(row["top2"]) == set(BAD_VENDORS)
    row["t_no_honest"] = not honest_above
    row["t_all"] = row["t_exit1"] and row["t_top2"] and row["t_no_honest"]
    return row


def render_md(payload: dict) -> str:
    env = payload["environment"]
    L = ["# `mithridate audit` on poisons crafted by ART (issue 5)", "",
         f"Run {'complete' if payload.get('complete') else 'INCOMPLETE'}; {env.get('timestamp')}; wall time "
         f"{fmt(payload.get('wall_seconds'), 0)} s; git {env.get('git', {}).get('commit', '?')[:10]}; "
         f"ART {payload.get('art_version')}.", "",
         f"Each set: a seeded random {N_IMAGES:,} of the 60,000 Fashion-MNIST training images as PNG files + "
         "`manifest.csv` (file, label name, vendor), ten vendors at random; 5% of the images, all from "
         "vendor-3 and vendor-7, stamped with ART's trigger and relabelled `sneaker`. Audited with "
         "`mithridate audit manifest.csv --images file --label label --contributor vendor --no-ledger --seed S` "
         "(default policy and network). Targets: exit 1, vendor-3 and vendor-7 top 2 by reputation, no honest "
         "vendor above the population rate.", "",
         "| ART trigger | seed | exit | top 2 by reputation | honest above | poisons flagged | flagged | "
         "ensemble AUROC | member AUROC | all three | s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        if "error" in r:
            L.append(f"| {r['trigger']} | {r['seed']} | {r['exit_code']} | error: {r['error'][:120]} |||||||| |")
            continue
        mem = ", ".join(f"{k} {v:.3f}" for k, v in r["member_auroc"].items())
        L.append(f"| `{r['trigger']}` | {r['seed']} | {r['exit_code']} | {', '.join(r['top2'])} | "
                 f"{', '.join(r['honest_above']) or 'none'} | {r['poison_flagged']}/{r['n_poison']} | "
                 f"{r['n_flagged']}/{r['n_images']} | {r['auroc']:.3f} | {mem} | {'yes' if r['t_all'] else '**no**'} | "
                 f"{r['seconds']:.0f} |")
    ok = [r for r in payload["rows"] if "error" not in r]
    L += ["", f"All three targets: {sum(r['t_all'] for r in ok)} of {len(payload['rows'])} audits.", ""]
    return "\n".join(L)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--triggers", nargs="+", default=list(TRIGGERS), choices=TRIGGERS)
    p.add_argument("--render-only", action="store_true", help="re-render the markdown from the JSON")
    args = p.parse_args(argv)
    json_path = RESULTS / f"{STEM}.json"
    if args.render_only:
        payload = load_for_render(json_path)
        write_results(RESULTS, STEM, payload, render_md(payload))
        return 0
    try:
        import art
    except ImportError:
        log("ART is not installed (pip install -e '.[compare]'): nothing to craft the poisons with")
        return 2
    t_start = time.perf_counter()
    payload = {"environment": environment(args), "art_version": art.__version__, "rows": [],
               "runs": [{"argv": sys.argv[1:]}]}

    def save() -> None:
        write_results(RESULTS, STEM, payload, render_md(payload))

    for trigger in args.triggers:
        for seed in args.seeds:
            row = run_one(trigger, seed)
            payload["rows"].append(row)
            log(f"{trigger} seed {seed}: exit {row['exit_code']}, top2 {row.get('top2')}, "
                f"poisons {row.get('poison_flagged')}/{row['n_poison']}, AUROC {fmt(row.get('auroc'))}")
            save()
    return finish_run(payload, t_start, save, json_path)


if __name__ == "__main__":
    raise SystemExit(main())
