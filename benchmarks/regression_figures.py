"""Regression poisoning figures (Jagielski et al. 2018) on diabetes, ridge victim, median of 5 seeds.

Seed s: load_dataset("diabetes", random_state=s) split, minmax_scale on train, attack seed s.
All MSE ratios are test MSE / test MSE of the same model class trained on the clean train split.
"""
import sys, time
import numpy as np
from sklearn.linear_model import HuberRegressor, RANSACRegressor
from mithridate.attacks.regression import OptP, StatP
from mithridate.data import load_dataset
from mithridate.data.transforms import minmax_scale
from mithridate.defenses.train.trim import TrimRegressor
from mithridate.models.regression import LinearRegressor, _mse

alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 1e-3
rows = []
for seed in range(5):
    s, _ = minmax_scale(load_dataset("diabetes", random_state=seed))
    tr, te = s.train, s.test
    mse = lambda m: _mse(te.y, m.predict(te.X))
    clean = mse(LinearRegressor(alpha=alpha).fit(tr))
    r = {"clean_mse": clean}
    t = time.time(); opt = OptP(0.2, alpha=alpha).poison(tr, seed).dataset; r["optp_s"] = time.time() - t
    stat = StatP(0.2, alpha=alpha).poison(tr, seed).dataset
    r["optp"] = mse(LinearRegressor(alpha=alpha).fit(opt)) / clean
    r["statp"] = mse(LinearRegressor(alpha=alpha).fit(stat)) / clean
    for name, ds in [("optp", opt), ("statp", stat)]:
        X, y = np.asarray(ds.X, float), ds.y
        auto = TrimRegressor(alpha=alpha, random_state=seed).fit(ds)
        known = TrimRegressor(alpha=alpha, n_clean=len(tr), random_state=seed).fit(ds)
        r[f"trim_auto|{name}"] = mse(auto) / clean
        r[f"trim_auto_poison_kept|{name}"] = int(auto.kept_[ds.is_poison].sum())
        r[f"trim_known_n|{name}"] = mse(known) / clean
        r[f"huber|{name}"] = mse(HuberRegressor(max_iter=1000).fit(X, y)) / clean
        r[f"ransac|{name}"] = mse(RANSACRegressor(random_state=seed).fit(X, y)) / clean
    r["trim_auto|no_poison"] = mse(TrimRegressor(alpha=alpha, random_state=seed).fit(tr)) / clean
    rows.append(r)
print(f"ridge alpha={alpha}; n_train=309, 20% poison = 77 inserted points (p/(n+p)); median [min, max] of 5 seeds")
for k in rows[0]:
    v = np.array([r[k] for r in rows], float)
    print(f"{k:32s} {np.median(v):8.4f}  [{v.min():.4f}, {v.max():.4f}]")
