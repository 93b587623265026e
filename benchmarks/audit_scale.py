"""Scale of `mithridate audit`: a 1,000,000-row x 50-feature table on 2 cores, <= 5 min, <= 4 GB.

The script writes a synthetic training table (Parquet and/or CSV), then runs the real command
line -- `python -m mithridate audit FILE --label label --contributor vendor --id-col sample_id
--ledger <fresh SQLite file> --out <dir> --json` -- in a child process and measures its wall
time and peak resident memory (``os.wait4`` rusage of that child alone). Everything the audit
does is inside the measurement: reading the file (in chunks), the default detector ensemble
(SPECTRE, kNN label consistency with faiss, confident learning), reputation, the policy, the
ledger transaction (every sample, finding and contributor row written to SQLite) and the three
output files.

The table: 10 classes, 50 numeric columns with a low-dimensional structure (8 latent factors
plus noise, per-column scales from 0.1 to 100, like raw business columns), 200 contributors.
Two contributors mislabel 30% of their rows (label flips to another class): ~3,000 poisoned rows
at 1M. The figures recorded beside time and memory: the verdict (the default policy should
fail this data), where the two bad contributors rank by reputation, and the ensemble's AUROC on
the flipped rows -- so a speed-up that breaks detection shows up here.

    export PYTHONPATH=src
    python benchmarks/audit_scale.py                       # 1M rows, Parquet and CSV (~15 min)
    python benchmarks/audit_scale.py --rows 100000 --formats parquet   # a quick look
    python benchmarks/audit_scale.py --render-only         # redraw the markdown from the JSON

Outputs: ``results/audit_scale.json`` (one row per format, every step's seconds, the members'
seconds, environment) and ``results/audit_scale.md``. Generated data is cached in
``--data-dir`` (default: a folder under the system temp dir) and reused when present.
Run it on an otherwise idle machine: the time limit is about the audit, not about sharing cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HERE, environment, fmt, log, write_results, yes_no  # noqa: E402

LIMIT_SECONDS = 300.0
LIMIT_MB = 4096.0
N_FEATURES = 50
N_CLASSES = 10
N_CONTRIBUTORS = 200
BAD_CONTRIBUTORS = ("v017", "v123")
FLIP_SHARE = 0.30


def make_table(n: int, seed: int = 0) -> pd.DataFrame:
    """The synthetic table described in the module docstring (float32 features)."""
    rng = np.random.default_rng(seed)
    latent = 8
    y = rng.integers(0, N_CLASSES, n)
    centers = rng.normal(0, 1.5, (N_CLASSES, latent)).astype(np.float32)
    mixing = rng.normal(0, 1, (latent, N_FEATURES)).astype(np.float32) / np.sqrt(latent)
    scales = (10.0 ** rng.uniform(-1, 2, N_FEATURES)).astype(np.float32)
    offsets = rng.normal(0, 5, N_FEATURES).astype(np.float32)
    X = np.empty((n, N_FEATURES), dtype=np.float32)
    block = 200_000
    for s in range(0, n, block):
        e = min(n, s + block)
        z = centers[y[s:e]] + rng.normal(0, 1, (e - s, latent)).astype(np.float32)
        X[s:e] = (z @ mixing + 0.3 * rng.normal(0, 1, (e - s, N_FEATURES)).astype(np.float32)) * scales + offsets
    vendor = rng.integers(0, N_CONTRIBUTORS, n)
    names = np.array([f"v{i:03d}" for i in range(N_CONTRIBUTORS)], dtype=object)
    bad_rows = np.isin(names[vendor], BAD_CONTRIBUTORS) & (rng.random(n) < FLIP_SHARE)
    labels = y.copy()
    labels[bad_rows] = (y[bad_rows] + rng.integers(1, N_CLASSES, int(bad_rows.sum()))) % N_CLASSES
    df = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(N_FEATURES)])
    df.insert(0, "sample_id", np.arange(n, dtype=np.int64))
    df["label"] = np.array([f"class_{c}" for c in range(N_CLASSES)], dtype=object)[labels]
    df["vendor"] = names[vendor]
    df.attrs["is_poison"] = bad_rows
    return df


def ensure_files(n: int, formats: list, data_dir: Path) -> dict:
    """Write (or reuse) the table in each format; returns {format: path} and the truth file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {fmt_: data_dir / f"audit_scale_{n}.{ 'parquet' if fmt_ == 'parquet' else 'csv'}" for fmt_ in formats}
    truth = data_dir / f"audit_scale_{n}_truth.npy"
    if all(p.exists() for p in paths.values()) and truth.exists():
        return {"paths": paths, "truth": truth}
    log(f"generating {n:,} rows x {N_FEATURES} features")
    df = make_table(n)
    np.save(truth, df.attrs.pop("is_poison"))
    for fmt_, p in paths.items():
        if p.exists():
            continue
        t0 = time.perf_counter()
        tmp = p.with_name(p.name + ".part")
        if fmt_ == "parquet":
            df.to_parquet(tmp, index=False, row_group_size=100_000)
        else:
            df.to_csv(tmp, index=False, float_format="%.6g")
        tmp.replace(p)
        log(f"wrote {p} ({p.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.0f} s")
    return {"paths": paths, "truth": truth}


def run_audit_child(path: Path, work: Path) -> dict:
    """Run the CLI audit in a child process; wall time and that child's peak RSS."""
    out = work / f"out-{path.suffix.lstrip('.')}"
    ledger = work / f"ledger-{path.suffix.lstrip('.')}.sqlite"
    for p in (ledger,):
        if p.exists():
            p.unlink()
    cmd = [sys.executable, "-m", "mithridate", "audit", str(path), "--label", "label", "--contributor", "vendor",
           "--id-col", "sample_id", "--ledger", str(ledger), "--out", str(out), "--json"]
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as se:  # stdout (the --json document) is not needed: summary.json has it
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=se, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        se.seek(0)
        stderr = se.read().decode("utf-8", "replace")
    row = {"file": path.name, "file_mib": round(path.stat().st_size / 2**20, 1), "exit_code": proc.returncode,
           "wall_seconds": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
           "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "command": " ".join(cmd[1:])}
    if proc.returncode not in (0, 1):
        row["stderr_tail"] = stderr[-2000:]
        return row
    summary = json.loads((out / "summary.json").read_text())
    row["verdict"] = summary.get("verdict")
    row["n_samples"] = summary.get("n_samples")
    row["n_flagged"] = summary.get("n_flagged")
    row["seconds_steps"] = summary.get("seconds_steps")
    row["seconds_detectors"] = {k: round(v, 1) for k, v in (summary.get("seconds_detectors") or {}).items()}
    row["ledger_mib"] = round(ledger.stat().st_size / 2**20, 1)
    row["output_mib"] = {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(out.iterdir())}
    contributors = summary.get("contributors") or []
    ranked = sorted(contributors, key=lambda c: c.get("rank", 1e9))
    row["top2_by_reputation"] = [c["contributor"] for c in ranked[:2]]
    row["bad_contributors_top2"] = sorted(row["top2_by_reputation"]) == sorted(BAD_CONTRIBUTORS)
    row["honest_above_population"] = sum(1 for c in contributors if c.get("above_population")
                                         and c["contributor"] not in BAD_CONTRIBUTORS)
    row["_out"] = str(out)
    return row


def quality(row: dict, truth_path: Path) -> None:
    """Detection and ranking figures from the audit's own outputs."""
    from mithridate.eval.metrics import auroc

    truth = np.load(truth_path)
    findings = pd.read_csv(Path(row.pop("_out")) / "findings.csv", usecols=["id", "contributor", "ensemble_score", "flagged"])
    findings = findings.sort_values("id", kind="stable")
    row["n_poisoned"] = int(truth.sum())
    row["ensemble_auroc"] = float(auroc(findings["ensemble_score"].to_numpy(), truth))
    flagged = findings["flagged"].to_numpy(bool)
    row["flag_precision"] = float(truth[flagged].mean()) if flagged.any() else None
    row["flag_recall"] = float(flagged[truth].mean())


def render(payload: dict) -> str:
    rows = payload["rows"]
    lines = [
        "# `mithridate audit` at scale",
        "",
        f"{payload['n_rows']:,} rows x {N_FEATURES} features, {N_CLASSES} classes, {N_CONTRIBUTORS} contributors; "
        f"two contributors ({', '.join(BAD_CONTRIBUTORS)}) flip {FLIP_SHARE:.0%} of their labels. The whole CLI "
        "audit (read in chunks, ensemble, reputation, policy, SQLite ledger transaction, report) runs in a child "
        "process; wall time and that process's peak RSS.",
        "",
        "| file | MiB | wall s | peak RSS MB | ≤ 300 s? | ≤ 4 GB? | exit | verdict | flagged | ensemble AUROC | "
        "bad contributors top 2 by reputation? | honest contributors above population |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['file']} | {fmt(r['file_mib'], 0)} | {fmt(r['wall_seconds'], 1)} | {fmt(r['peak_rss_mb'], 0)} | "
            f"{yes_no(r['wall_seconds'] <= LIMIT_SECONDS)} | {yes_no(r['peak_rss_mb'] <= LIMIT_MB)} | {r['exit_code']} | "
            f"{r.get('verdict', '—')} | {fmt(r.get('n_flagged'))} | {fmt(r.get('ensemble_auroc'))} | "
            f"{yes_no(r.get('bad_contributors_top2'))} | {fmt(r.get('honest_above_population'))} |")
    lines += ["", "## Where the time goes (seconds)", ""]
    for r in rows:
        steps = r.get("seconds_steps") or {}
        dets = r.get("seconds_detectors") or {}
        lines.append(f"**{r['file']}**: " + "; ".join(f"{k}: {v:.1f}" for k, v in steps.items())
                     + (" — members: " + ", ".join(f"{k} {v:.1f}" for k, v in dets.items()) if dets else "")
                     + f". Reading the file and start-up: {max(0.0, r['wall_seconds'] - sum(steps.values())):.1f}.")
        lines.append("")
    env = payload["environment"]
    lines += [f"Environment: {env.get('cpu_count')} CPUs, Python {env.get('python')}, numpy {env.get('numpy')}, "
              f"commit {(env.get('git') or {}).get('commit')}, {env.get('date')}.", ""]
    if payload.get("notes"):
        lines += ["## What this shows", "", payload["notes"].strip(), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--formats", nargs="+", choices=["parquet", "csv"], default=["parquet", "csv"])
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "mithridate-bench-data")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--notes", type=Path, help="markdown file for the 'What this shows' section")
    args = ap.parse_args()
    stem = "audit_scale" if args.rows == 1_000_000 else f"audit_scale_{args.rows}"
    if args.render_only:
        payload = json.loads((args.out / f"{stem}.json").read_text())
        if args.notes:
            payload["notes"] = args.notes.read_text()
        write_results(args.out, stem, payload, render(payload))
        return
    files = ensure_files(args.rows, args.formats, args.data_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="audit-scale-") as work:
        for fmt_ in args.formats:
            log(f"auditing {files['paths'][fmt_]}")
            row = run_audit_child(files["paths"][fmt_], Path(work))
            if "verdict" in row:
                quality(row, files["truth"])
            row.pop("_out", None)
            rows.append(row)
            log(json.dumps(row))
    payload = {"n_rows": args.rows, "rows": rows, "limits": {"seconds": LIMIT_SECONDS, "peak_rss_mb": LIMIT_MB},
               "environment": environment(args), "notes": args.notes.read_text() if args.notes else None}
    write_results(args.out, stem, payload, render(payload))
    log(f"wrote {args.out / (stem + '.json')}")


if __name__ == "__main__":
    main()
