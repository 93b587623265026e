"""Reproduce the figures of docs influence_roni.md (2 shared CPU cores; ~1 min)."""
import time
import numpy as np
from mithridate.data import load_dataset
from mithridate.defenses.detect.influence import InfluenceDetector
from mithridate.defenses.detect.roni import RONIDetector
from mithridate.eval.metrics import auroc, f1_score

def flipped(train, rate, seed):
    rng = np.random.default_rng(seed)
    n, K = len(train), train.n_classes
    k = int(round(rate * n))
    flip = rng.choice(n, k, replace=False)
    y = train.y.copy()
    y[flip] = (y[flip] + rng.integers(1, K, k)) % K   # a uniformly drawn other class
    truth = np.zeros(n, bool); truth[flip] = True
    return train.replace(y=y), truth

print("dataset        | self-infl AUROC | val-infl AUROC | loss AUROC | F1 self flag | F1 val flag | ms self | ms val")
for name in ["digits", "breast_cancer", "wine"]:
    splits = load_dataset(name)
    r = {k: [] for k in "self val loss f1s f1v ts tv".split()}
    for seed in range(3):
        ds, truth = flipped(splits.train, 0.2, seed)
        t = time.perf_counter(); a = InfluenceDetector(mode="self").fit(ds); r["ts"].append(time.perf_counter() - t)
        t = time.perf_counter(); b = InfluenceDetector().fit(ds, validation=splits.test); r["tv"].append(time.perf_counter() - t)
        r["self"].append(auroc(a.scores_, truth)); r["val"].append(auroc(b.scores_, truth))
        r["loss"].append(auroc(a.losses_, truth))
        r["f1s"].append(f1_score(a.flag(), truth)); r["f1v"].append(f1_score(b.flag(), truth))
    print(f"{name:14s} | " + " | ".join(f"{np.mean(r[k]):.3f} ({np.min(r[k]):.3f}-{np.max(r[k]):.3f})" for k in ["self", "val", "loss", "f1s", "f1v"])
          + f" | {1000*np.mean(r['ts']):.0f} | {1000*np.mean(r['tv']):.0f}", flush=True)

print("\nRONI, breast_cancer split at random into 10 contributors; bad ones flip a share of their labels; seeds 0-9")
splits = load_dataset("breast_cancer"); tr = splits.train
for frac in (1.0, 0.5):
    for n_bad in (1, 2):
        for val in (None, splits.test):
            tp = fp = fn = 0; T = []
            for seed in range(10):
                rng = np.random.default_rng(seed); n = len(tr)
                who = rng.permutation(n) % 10
                bad = rng.choice(10, n_bad, replace=False)
                y = tr.y.copy()
                m = np.isin(who, bad) & (rng.random(n) < frac); y[m] = 1 - y[m]
                ds = tr.replace(y=y, meta=tr.meta.assign(contributor=np.array([f"c{i}" for i in who], dtype=object)))
                t = time.perf_counter(); det = RONIDetector(random_state=seed).fit(ds, validation=val); T.append(time.perf_counter() - t)
                flagged = {int(b[1:]) for b, f in zip(det.batch_names_, det.batch_flags_) if f}
                tp += len(flagged & set(bad)); fp += len(flagged - set(bad)); fn += len(set(bad) - flagged)
            prec = tp / (tp + fp) if tp + fp else float("nan")
            print(f"flip {frac:.0%} of labels, {n_bad} bad, validation={'carved 20%' if val is None else 'test split'}: "
                  f"precision {prec:.2f} recall {tp / (tp + fn):.2f} ({tp} of {tp + fn} bad found, {fp} clean flagged) "
                  f"{np.mean(T):.2f} s/fit", flush=True)
tp = fp = 0
for seed in range(10):
    rng = np.random.default_rng(seed); who = rng.permutation(len(tr)) % 10
    ds = tr.replace(meta=tr.meta.assign(contributor=np.array([f"c{i}" for i in who], dtype=object)))
    fp += RONIDetector(random_state=seed).fit(ds).batch_flags_.sum()
print(f"no bad contributor: {fp} of 100 clean contributors flagged")
