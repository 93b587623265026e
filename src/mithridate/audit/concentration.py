"""Do the most suspicious samples come from a few contributors? A permutation test.

Contributor reputation (:mod:`mithridate.audit.reputation`) judges each contributor by how many
of its samples were *flagged*. When the flags are loose — a dozen poisons among fifty natural
outliers, or a backdoor whose samples rank high but mostly below the flag threshold — no single
contributor's flag rate stands out, yet the samples ranked most suspicious still come from the
contributors who sent the poisons. This test reads the ensemble's **ranking** instead of its flags.

Statistic
---------
Rank the samples by suspicion score (highest first). For a top set ``S`` let ``o_i`` be
the number of contributor ``i``'s samples in it and ``e_i`` the number expected when contributors
are assigned at random **within each class** (a contributor who sends mostly one class is compared
with that class only)::

    e_i(S) = Σ_c  m_c(S) · n_ic / n_c        m_c(S): class-c samples in the set,
                                             n_ic: contributor i's samples of class c

The excess over chance is the one-sided Poisson deviance (the likelihood-ratio statistic of a
higher rate, summed over the contributors that exceed their expectation)::

    D(S) = Σ_{i: o_i > e_i}  2 · [ o_i · ln(o_i / e_i) − (o_i − e_i) ]

computed on a family of top sets, so that no poison rate or target class has to be known: the top
0.5%, 1%, 2%, 5% and 10% of all samples and the flagged count, and the top 2%, 5% and 10% of each
class (a backdoor or targeted flips sit in one class, where a dozen poisons are a tenth of the
class but a hundredth of the data; at least ``min_top`` samples, at most half the data or
class). Each set's ``D`` is standardised by the mean and standard deviation of its values over the
observed data and the permutations (all ``B + 1`` treated alike) and the statistic is the largest,
``T = max_S z(S)``.

Null distribution and p-value
-----------------------------
Under the null hypothesis contributor names are exchangeable within each class, whatever the
detector, the data or the features: permuting them within classes gives ``T``'s exact null
distribution (Monte Carlo, ``n_permutations`` draws; the same permutations standardise every set
and take the maximum, so the family needs no multiple-testing correction). Only the labels of the
samples in the deepest top set of each class are ever drawn: a class's top ``m_c`` samples receive
a uniformly random ordered draw of ``m_c`` of its contributor labels. The p-value is
``(1 + #{T_b ≥ T}) / (1 + B)`` (Phipson & Smyth 2010, never zero); a permutation test is exact at
any size, which is what keeps false alarms at the chosen level on clean data (Good 2005,
*Permutation, Parametric and Bootstrap Tests of Hypotheses*, ch. 3). The contributors named are
those above their expectation in the set where ``z`` is largest; when the data hold poison and
also a chance excess elsewhere, that set can be the chance one (a p-value is about the version,
the names are a pointer: read the reputation table next to them).

What it cannot do: tell poison from a contributor whose honest data are simply unusual (another
camera, another dialect) — such a contributor also fails, and the report names it, which is
something to look at before retraining either way.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> who = np.array([f"c{i % 10}" for i in range(1000)])
>>> labels = np.array([i % 2 for i in range(1000)])
>>> scores = rng.normal(size=1000)
>>> scores[[i for i in range(1000) if who[i] == "c3"][:15]] += 4      # c3's samples rank first
>>> r = concentration_test(scores, who, labels, random_state=0)
>>> r.p_value < 0.01, r.contributors[0]["contributor"]
(True, 'c3')
>>> concentration_test(rng.normal(size=1000), who, labels, random_state=0).p_value > 0.05
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from mithridate.errors import DataError
from mithridate.utils import RandomState, check_random_state

#: Top-set sizes as shares of the samples (the flagged count is added to them).
DEFAULT_FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.10)
#: Top-set sizes as shares of each class (a backdoor or targeted flips sit in one class).
DEFAULT_CLASS_FRACTIONS = (0.02, 0.05, 0.10)
DEFAULT_PERMUTATIONS = 999
#: Contributors with fewer samples are tested together as one pooled group (a sender of one or two
#: samples cannot stand out alone; many of them together can).
DEFAULT_MIN_SAMPLES = 3
#: Upper bound on permutation work (draws x levels x contributors) before fewer draws are used.
_WORK_BUDGET = 6e7
#: Upper bound on per-class draws (permutations x classes in the top sets).
_DRAW_BUDGET = 2e5
#: Upper bound on (top sets x contributors): per-class sets of the smallest classes are left out past it.
_CELL_BUDGET = 2e6
#: At most this many contributors are named for the most concentrated set.
MAX_NAMED = 20
_MIN_PERMUTATIONS = 199


@dataclass
class ConcentrationResult:
    """Outcome of :func:`concentration_test`.

    Attributes
    ----------
    p_value : float or None
        Permutation p-value of the largest standardised excess (None when the test could not
        run: see ``reason``).
    statistic : float or None
        ``T``, the largest standardised level.
    top_k : int or None
        Size of the top set where the excess is largest.
    top_class : str or None
        That set's class when it is one class's top samples (None: the top over all samples).
    levels : list of int
        The sizes of the top sets over all samples.
    n_sets : int
        Top sets tested (over all samples and per class).
    contributors : list of dict
        In that set: the contributors above their expectation, most excessive first (at most
        :data:`MAX_NAMED`), with ``contributor``, ``n`` (its samples), ``top`` (its samples in
        the set), ``expected``, ``deviance`` (its share of ``D``) and ``p_alone`` (the Poisson
        tail ``P(X >= top)`` for ``X ~ Poisson(expected)``: a guide to who stands out on its own,
        not corrected for testing every contributor and set). Contributors with fewer than
        ``min_samples`` samples form one pooled group, listed as such (``pooled: True``): many
        small senders (sybils) can make the test fail together.
    n_permutations : int
    n_samples : int
        Samples tested (those with a contributor).
    reason : str or None
        Why the test did not run (fewer than two contributors, too few samples, every class from
        a single contributor).
    note : str or None
        What was left out to stay within the work budget (per-class sets of the smallest classes
        when classes x contributors number in the millions).
    """

    p_value: Optional[float]
    statistic: Optional[float]
    top_k: Optional[int]
    levels: list = field(default_factory=list)
    contributors: list = field(default_factory=list)
    n_permutations: int = 0
    n_samples: int = 0
    reason: Optional[str] = None
    top_class: Optional[str] = None
    n_sets: int = 0
    note: Optional[str] = None

    def to_dict(self) -> dict:
        return {"p_value": self.p_value, "statistic": self.statistic, "top_k": self.top_k,
                "top_class": self.top_class, "levels": list(self.levels), "n_sets": int(self.n_sets),
                "contributors": list(self.contributors), "n_permutations": int(self.n_permutations),
                "n_samples": int(self.n_samples), "reason": self.reason, "note": self.note}


#: A named contributor "stands out on its own" when its Poisson tail ``p_alone`` is at most this.
ALONE_P = 0.05


def standouts(named: Sequence, limit: int) -> tuple:
    """The contributors a message names, and how many others are above their expected count.

    ``named`` are the rows of :attr:`ConcentrationResult.contributors`: those with ``p_alone`` at
    most :data:`ALONE_P` when there are any (else the most excessive), at most ``limit`` of them.

    >>> rows = [{"contributor": "a", "p_alone": 0.001}, {"contributor": "b", "p_alone": 0.3}]
    >>> shown, more = standouts(rows, 3)
    >>> [r["contributor"] for r in shown], more
    (['a'], 1)
    """
    rows = [c for c in named if isinstance(c, dict)]
    alone = [c for c in rows if c.get("p_alone") is not None and float(c["p_alone"]) <= ALONE_P]
    shown = (alone or rows)[: max(int(limit), 0)]
    return shown, len(rows) - len(shown)


def top_levels(n: int, n_flagged: Optional[int] = None, fractions: Sequence[float] = DEFAULT_FRACTIONS,
               min_top: int = 5) -> list:
    """The ladder of top-set sizes: ``⌈f·n⌉`` for each fraction, plus ``n_flagged``, within
    ``[min_top, n // 2]``.

    >>> top_levels(1000, 37)
    [5, 10, 20, 37, 50, 100]
    """
    ks = {int(np.ceil(float(f) * n)) for f in fractions}
    if n_flagged:
        ks.add(int(n_flagged))
    return sorted(k for k in ks if max(int(min_top), 1) <= k <= n // 2)


def excess_deviance(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per-contributor one-sided Poisson deviance ``2[o ln(o/e) − (o − e)]`` where ``o > e``, else 0.

    >>> excess_deviance(np.array([4.0, 1.0]), np.array([1.0, 2.0])).round(3).tolist()
    [5.09, 0.0]
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    above = o > e
    ratio = np.where(above & (e > 0), o / np.where(e > 0, e, 1.0), 1.0)
    dev = 2.0 * (o * np.log(ratio) - (o - e))
    # o > 0 with e == 0 cannot happen under the stratified expectation (o ≤ n_ic, e > 0 when n_ic > 0)
    return np.where(above, dev, 0.0)


def concentration_test(
    scores: Sequence[float],
    contributors: Sequence,
    labels: Sequence,
    *,
    n_flagged: Optional[int] = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    class_fractions: Sequence[float] = DEFAULT_CLASS_FRACTIONS,
    min_top: int = 5,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    random_state: RandomState = None,
) -> ConcentrationResult:
    """Test whether the highest-scored samples come from a few contributors (module docstring).

    Parameters
    ----------
    scores : array of shape (n,)
        Suspicion scores, higher = more suspicious (+inf first; NaN and -inf last).
    contributors : sequence of length n
        Contributor of each sample; None, NaN or "" = unknown (left out of the test).
    labels : sequence of length n
        Class of each sample: contributors are permuted within classes.
    n_flagged : int, optional
        Number of flagged samples: a top set of that size is added to the ladder (the top
        ``n_flagged`` by score, which is not necessarily the flagged set).
    fractions, min_top
        The ladder of top sets over all samples (:func:`top_levels`).
    class_fractions : sequence of float, default=(0.02, 0.05, 0.10)
        Also the top samples of each class, in these shares of the class (at least ``min_top``,
        at most half the class); ``()`` tests the sets over all samples only.
    min_samples : int, default=3
        Contributors with fewer samples are pooled into one group (in the null and in ``D``;
        named as a group, with its members' counts in the set, when it is in excess).
    n_permutations : int, default=999
        Monte Carlo permutations (fewer, down to 199, when contributors number in the thousands).
    random_state : int, Generator or None

    Returns
    -------
    ConcentrationResult
    """
    import pandas as pd
    from scipy.stats import poisson

    from mithridate.audit.diff import _str_or_none

    s = np.asarray(scores, dtype=float)
    if s.ndim != 1:
        raise DataError(f"scores must be one-dimensional, got shape {s.shape}")
    who = _str_or_none(list(contributors), whole_floats=True)
    lab = np.asarray(labels, dtype=object) if not isinstance(labels, np.ndarray) else labels
    if lab.ndim != 1:
        raise DataError(f"labels must be one-dimensional (one class per sample), got shape {lab.shape}")
    if len(who) != len(s) or len(lab) != len(s):
        raise DataError(f"{len(s)} scores, {len(who)} contributors and {len(lab)} labels: lengths differ")
    if isinstance(n_permutations, bool) or int(n_permutations) < 1:
        raise DataError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    known = np.array([w is not None for w in who], dtype=bool)
    n = int(known.sum())
    s, who, lab = s[known], who[known], lab[known]
    # factorize, not astype(str): one very long name must not make a fixed-width copy of every row
    code, names = pd.factorize(pd.Series(who, dtype=object), sort=True)
    names = np.asarray(names, dtype=object)
    sizes = np.bincount(code, minlength=len(names))
    if len(names) < 2:
        return ConcentrationResult(None, None, None, n_samples=n, reason="fewer than two contributors")
    small = sizes < max(int(min_samples), 1)
    if small.all():
        return ConcentrationResult(None, None, None, n_samples=n,
                                   reason=f"no contributor has {min_samples} samples")
    pooled = None  # index of the pooled group of small contributors, if any
    orig_code, orig_names = code, names
    if small.any():  # pool the small contributors into one group: part of the null, named as a group
        keep = np.flatnonzero(~small)
        remap = np.full(len(names), len(keep), dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        code = remap[code]
        pooled, n_pooled, pooled_size = len(keep), int(small.sum()), int(sizes[small].sum())
        names, sizes = names[keep], np.append(sizes[keep], pooled_size)
    m = len(sizes)
    rng = check_random_state(random_state)
    # NaN ranks last; +inf is the most suspicious a score can be, -inf the least
    key = np.where(np.isnan(s), -np.inf, s)
    # ties are broken at random, not by row order: files are often grouped by contributor, and a
    # top set cut inside a block of tied scores must not pick the first contributor's rows
    order = np.lexsort((rng.random(n), -key))
    ccode, cls_names = pd.factorize(pd.Series(lab, dtype=object).map(str), sort=True)
    cls_names = np.asarray(cls_names, dtype=object)
    n_cls = len(cls_names)
    class_sizes = np.bincount(ccode, minlength=n_cls)
    by_class = np.argsort(ccode, kind="stable")
    pools = np.split(code[by_class], np.cumsum(class_sizes)[:-1])           # contributor codes per class
    if all(np.all(pool == pool[0]) for pool in pools if len(pool)):
        return ConcentrationResult(None, None, None, n_samples=n,
                                   reason="every class comes from a single contributor: nothing to permute")
    # candidate top sets, each as {class: how many of the class's top-ranked samples}
    levels = top_levels(n, n_flagged, fractions, min_top)
    cls_in_order = ccode[order]
    sets = [{c: k for c, k in enumerate(np.bincount(cls_in_order[:k], minlength=n_cls).tolist()) if k}
            for k in levels]
    set_class: list = [None] * len(levels)
    note = None
    if n_cls > 1 and class_fractions:
        per_class = [(c, k) for c in np.argsort(-class_sizes, kind="stable")
                     for k in top_levels(int(class_sizes[c]), None, class_fractions, min_top)]
        room = max(0, int(_CELL_BUDGET / m) - len(sets))                  # keeps the (sets x contributors) arrays small
        if len(per_class) > room:
            note = (f"top sets of the {len({c for c, _ in per_class[room:]})} smallest classes left out "
                    f"({len(per_class)} class sets x {m} contributors is over the work budget)")
            per_class = per_class[:room]
        for c, k in per_class:
            sets.append({int(c): k})
            set_class.append(int(c))
    if not sets:
        return ConcentrationResult(None, None, None, n_samples=n, reason=f"too few samples ({n})")

    # per class: its samples in score order, the prefix lengths the sets need, and where each set reads them
    rank_sorted = np.argsort(ccode[order], kind="stable")                   # order, grouped by class
    ranked = np.split(order[rank_sorted], np.cumsum(class_sizes)[:-1])     # each class, most suspicious first
    needs_of: dict = {}
    for row, st in enumerate(sets):
        for c, k in st.items():
            needs_of.setdefault(c, []).append((row, k))
    plans = []  # (class, prefix lengths incl. 0, [(set row, prefix index)])
    for c, reads in needs_of.items():
        needs = sorted({k for _, k in reads} | {0})
        where = {k: i for i, k in enumerate(needs)}
        plans.append((c, np.asarray(needs), [(row, where[k]) for row, k in reads]))
    n_perm = int(n_permutations)
    # fewer permutations (never below 199) when contributors or classes number in the thousands
    cap = min(_WORK_BUDGET / (len(sets) * m), _DRAW_BUDGET / max(len(plans), 1))
    if n_perm > cap:
        n_perm = max(_MIN_PERMUTATIONS, int(cap))
    share = np.zeros((n_cls, m))
    np.add.at(share, (ccode, code), 1.0)
    share /= class_sizes[:, None]
    expected = np.zeros((len(sets), m))
    for row, st in enumerate(sets):
        for c, k in st.items():
            expected[row] += k * share[c]

    def counts(draw) -> np.ndarray:
        out = np.zeros((len(sets), m))
        for c, needs, reads in plans:
            seq = draw(c, int(needs[-1]))
            seg = [np.bincount(seq[a:b], minlength=m) for a, b in zip(needs[:-1], needs[1:])]
            cum = np.vstack([np.zeros((1, m)), np.cumsum(np.stack(seg), axis=0)])
            for row, i in reads:
                out[row] += cum[i]
        return out

    observed = counts(lambda c, depth: code[ranked[c][:depth]])
    dev_obs = excess_deviance(observed, expected)                          # (S, m)
    d_obs = dev_obs.sum(1)
    d_perm = np.empty((n_perm, len(sets)))
    for b in range(n_perm):
        d_perm[b] = excess_deviance(
            counts(lambda c, depth: pools[c][rng.choice(len(pools[c]), depth, replace=False)]), expected).sum(1)
    # standardise with the observed value among the draws: the B + 1 statistics are exchangeable
    # under the null, so the p-value is exact (not only up to O(1/B))
    both = np.vstack([d_obs[None, :], d_perm])
    mu = both.mean(0)
    sd = both.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z_obs = (d_obs - mu) / sd
    t_obs = float(z_obs.max())
    t_perm = ((d_perm - mu) / sd).max(1)
    p = float((1 + np.sum(t_perm >= t_obs - 1e-12)) / (n_perm + 1))
    best = int(np.argmax(z_obs))
    rows = []
    for i in np.argsort(-dev_obs[best], kind="stable"):
        if dev_obs[best, i] <= 0 or len(rows) >= MAX_NAMED:
            break
        row = {"contributor": str(names[i]) if i != pooled else
               f"{n_pooled} contributor{'s' if n_pooled != 1 else ''} with fewer than {int(min_samples)} samples "
               "each (pooled)",
               "n": int(sizes[i]), "top": int(observed[best, i]), "expected": float(expected[best, i]),
               "deviance": float(dev_obs[best, i]),
               # a guide to who stands out alone: P(Poisson(e) >= o), not corrected for the many looks
               "p_alone": float(poisson.sf(observed[best, i] - 1, expected[best, i]))}
        if i == pooled:  # who in the group sent the set's samples, most first
            in_set = np.concatenate([ranked[c][:k] for c, k in sets[best].items()])
            mine = orig_code[in_set][code[in_set] == pooled]
            counts_p = np.bincount(mine, minlength=len(orig_names))
            who_p = [j for j in np.argsort(-counts_p, kind="stable") if counts_p[j] > 0]
            row["pooled"] = True
            row["members"] = [{"contributor": str(orig_names[j]), "top": int(counts_p[j])} for j in who_p[:MAX_NAMED]]
            shown = ", ".join(f"{m['contributor']} {m['top']}" for m in row["members"][:5])
            row["contributor"] += f": {shown}" + (" ..." if len(who_p) > 5 else "")
        rows.append(row)
    top_class = None if set_class[best] is None else str(cls_names[set_class[best]])
    return ConcentrationResult(p, t_obs, int(sum(sets[best].values())), levels=[int(k) for k in levels],
                               contributors=rows, n_permutations=n_perm, n_samples=n, top_class=top_class,
                               n_sets=len(sets), note=note)
