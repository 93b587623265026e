"""Sphere/slab certificate benchmark: digits 1-vs-7 and breast_cancer ([0,1]-scaled), 5 seeds.

Run from the repository root:
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/certify_sphere_slab.py [out_dir]
"""
import sys, time
from pathlib import Path
import numpy as np
import pandas as pd
from mithridate.data import load_dataset
from mithridate.data.transforms import minmax_scale
from mithridate.defenses.certify import SphereSlabCertificate, plot_bound, hinge_loss
from mithridate.defenses.certify.sphere_slab import budget_points

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/certify_sphere_slab")
OUT.mkdir(parents=True, exist_ok=True)
EPS = (0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3)


def splits_for(name, seed):
    if name == "digits-1-7":
        return load_dataset("digits", classes=[1, 7], random_state=seed)
    return minmax_scale(load_dataset("breast_cancer", random_state=seed))[0]


def flips(cert, ds, eps, rng):
    X, y = ds.X.reshape(len(ds), -1).astype(float), ds.y
    k = budget_points(eps, len(ds))
    idx = rng.choice(len(ds), size=k, replace=False)
    out = {"random_flip": (X[idx], 1 - y[idx])}
    flipped = 1 - y
    inside = cert.feasible_set_.contains(X, flipped, cert.defense)
    m = cert.clean_model_
    loss = np.where(inside, hinge_loss(m.coef_, m.intercept_, X, flipped), -np.inf)
    order = np.argsort(-loss)[: max(1, int(inside.sum()))]
    pick = np.resize(order, k)
    out["adversarial_flip"] = (X[pick], flipped[pick])
    return out


rows = []
for name in ("digits-1-7", "breast_cancer"):
    for seed in range(5):
        t0 = time.time()
        sp = splits_for(name, seed)
        cert = SphereSlabCertificate().fit(sp.train, epsilons=EPS, test=sp.test, random_state=seed)
        rng = np.random.default_rng(seed)
        tab = cert.table_.copy()
        for j, eps in enumerate(EPS):
            for atk, (Xp, yp) in flips(cert, sp.train, eps, rng).items():
                r = cert.evaluate(Xp, yp, test=sp.test)
                tab.loc[j, f"{atk}_loss"] = r["objective"]
                tab.loc[j, f"{atk}_clean_loss"] = r["clean_loss"]
                tab.loc[j, f"{atk}_error"] = r["test_error"]
                tab.loc[j, f"{atk}_inside"] = r["n_inside"]
        tab.insert(0, "seed", seed)
        tab.insert(0, "dataset", name)
        tab["rho"] = cert.rho_
        tab["seconds"] = time.time() - t0
        rows.append(tab)
        print(f"{name} seed {seed}: {time.time() - t0:.1f}s", flush=True)
res = pd.concat(rows, ignore_index=True)
res.to_csv(OUT / "results.csv", index=False)
lossy = [c for c in res.columns if c.endswith("_loss") and c != "clean_loss" and c != "upper_bound" and c != "test_loss"]
res["bound_holds"] = (res[lossy].le(res["upper_bound"] + 1e-9, axis=0)).all(axis=1)
pd.set_option("display.width", 250); pd.set_option("display.max_columns", 40)
cols = ["clean_loss", "upper_bound", "attack_loss", "attack_clean_loss", "ratio", "ratio_clean",
        "random_flip_loss", "adversarial_flip_loss", "clean_error", "attack_error", "adversarial_flip_error"]
summary = res.groupby(["dataset", "eps"])[cols].mean()
print(summary.round(4).to_string())
print("ratio at eps=0.1 per seed:")
print(res[res.eps == 0.1][["dataset", "seed", "ratio", "ratio_clean"]].round(3).to_string(index=False))
print("bound holds in every run:", bool(res["bound_holds"].all()), f"({len(res)} dataset x seed x eps rows)")
print("min margin bound - best other attack:", float((res["upper_bound"] - res[lossy].max(axis=1)).min()))
for name, g in res.groupby("dataset"):
    plot_bound(g, OUT / f"bound_{name}.png", extra=("random_flip_loss", "adversarial_flip_loss"),
               title=f"{name}: sphere+slab oracle defence, 5 seeds")
print("seconds per (dataset, seed), 8-eps grid:", res.groupby(["dataset", "seed"])["seconds"].first().round(1).tolist())
