"""Do the most suspicious samples come from a few contributors? A permutation test.

Contributor reputation (:mod:`mithridate.audit.reputation`) judges each contributor by how many
of its samples were *flagged*. When the flags are loose — a dozen poisons among fifty natural
outliers, or a backdoor whose samples rank high but mostly below the flag threshold — no single
contributor's flag rate stands out, yet the samples ranked most suspicious still come from the
contributors who sent the poisons. This test reads the ensemble's **ranking** instead of its flags.

Statistic
---------
Rank the samples by suspicion score (highest first). For a top set of size ``K`` let ``o_i`` be
the number of contributor ``i``'s samples in it and ``e_i`` the number expected when contributors
are assigned at random **within each class** (a contributor who sends mostly one class is compared
with that class only)::

    e_i(K) = Σ_c  m_c(K) · n_ic / n_c        m_c(K): class-c samples in the top K,
                                             n_ic: contributor i's samples of class c

The excess over chance is the one-sided Poisson deviance (the likelihood-ratio statistic of a
higher rate, summed over the contributors that exceed their expectation)::

    D(K) = Σ_{i: o_i > e_i}  2 · [ o_i · ln(o_i / e_i) − (o_i − e_i) ]

computed on a ladder of top sets (0.5%, 1%, 2%, 5% and 10% of the samples, and the number of
flagged samples; at least ``min_top`` samples, at most half the data), so no poison rate has to be
known. Each level is standardised by the mean and standard deviation of its permutation
distribution and the statistic is the largest standardised level, ``T = max_K z(K)``.

Null distribution and p-value
-----------------------------
Under the null hypothesis contributor names are exchangeable within each class, whatever the
detector, the data or the features: permuting them within classes gives ``T``'s exact null
distribution (Monte Carlo, ``n_permutations`` draws; the same permutations standardise every level
and take the maximum, so the ladder needs no multiple-testing correction). Only the labels of the
samples in the largest top set are ever drawn: a class's top ``m_c`` samples receive a uniformly
random ordered draw of ``m_c`` of its contributor labels. The p-value is
``(1 + #{T_b ≥ T}) / (1 + B)`` (Phipson & Smyth 2010, never zero); a permutation test is exact at
any size, which is what keeps false alarms at the chosen level on clean data (Good 2005,
*Permutation, Parametric and Bootstrap Tests of Hypotheses*, ch. 3).

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
DEFAULT_PERMUTATIONS = 999
#: Contributors with fewer samples are pooled (never named, still part of the null).
DEFAULT_MIN_SAMPLES = 10
#: Upper bound on permutation work (draws x levels x contributors) before fewer draws are used.
_WORK_BUDGET = 6e7
_MIN_PERMUTATIONS = 199
_POOLED = "\x00pooled"


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
    levels : list of int
        The top-set sizes tested.
    contributors : list of dict
        At ``top_k``: every named contributor above its expectation, most excessive first, with
        ``contributor``, ``n`` (its samples), ``top`` (its samples in the top set), ``expected``
        and ``deviance`` (its share of ``D``).
    n_permutations : int
    n_samples : int
        Samples tested (those with a contributor).
    reason : str or None
        Why the test did not run (fewer than two contributors, too few samples).
    """

    p_value: Optional[float]
    statistic: Optional[float]
    top_k: Optional[int]
    levels: list = field(default_factory=list)
    contributors: list = field(default_factory=list)
    n_permutations: int = 0
    n_samples: int = 0
    reason: Optional[str] = None

    def to_dict(self) -> dict:
        return {"p_value": self.p_value, "statistic": self.statistic, "top_k": self.top_k,
                "levels": list(self.levels), "contributors": list(self.contributors),
                "n_permutations": int(self.n_permutations), "n_samples": int(self.n_samples),
                "reason": self.reason}


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
    min_top: int = 5,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    random_state: RandomState = None,
) -> ConcentrationResult:
    """Test whether the highest-scored samples come from a few contributors (module docstring).

    Parameters
    ----------
    scores : array of shape (n,)
        Suspicion scores, higher = more suspicious (NaN / -inf rank last).
    contributors : sequence of length n
        Contributor of each sample; None, NaN or "" = unknown (left out of the test).
    labels : sequence of length n
        Class of each sample: contributors are permuted within classes.
    n_flagged : int, optional
        Number of flagged samples, added to the ladder of top sets.
    fractions, min_top
        The ladder (:func:`top_levels`).
    min_samples : int, default=10
        Contributors with fewer samples are pooled into one group that takes part in the null
        but is never named.
    n_permutations : int, default=999
        Monte Carlo permutations (fewer, down to 199, when contributors number in the thousands).
    random_state : int, Generator or None

    Returns
    -------
    ConcentrationResult
    """
    from mithridate.audit.diff import _str_or_none

    s = np.asarray(scores, dtype=float)
    if s.ndim != 1:
        raise DataError(f"scores must be one-dimensional, got shape {s.shape}")
    who = _str_or_none(list(contributors))
    lab = np.asarray(labels)
    if len(who) != len(s) or len(lab) != len(s):
        raise DataError(f"{len(s)} scores, {len(who)} contributors and {len(lab)} labels: lengths differ")
    if isinstance(n_permutations, bool) or int(n_permutations) < 1:
        raise DataError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    known = np.array([w is not None for w in who], dtype=bool)
    n = int(known.sum())
    s, who, lab = s[known], who[known], lab[known]
    names, code = np.unique(who.astype(str), return_inverse=True)
    sizes = np.bincount(code, minlength=len(names))
    size_of = dict(zip(names.tolist(), sizes.tolist()))
    if len(names) < 2:
        return ConcentrationResult(None, None, None, n_samples=n, reason="fewer than two contributors")
    small = sizes < max(int(min_samples), 1)
    if small.all():
        return ConcentrationResult(None, None, None, n_samples=n,
                                   reason=f"no contributor has {min_samples} samples")
    if small.any():  # pool the small contributors into one unnamed group
        keep = np.flatnonzero(~small)
        remap = np.full(len(names), len(keep), dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        code = remap[code]
        names = np.append(names[keep], _POOLED)
    m = len(names)
    levels = top_levels(n, n_flagged, fractions, min_top)
    if not levels:
        return ConcentrationResult(None, None, None, n_samples=n, reason=f"too few samples ({n})")
    rng = check_random_state(random_state)
    n_perm = int(n_permutations)
    work = n_perm * len(levels) * m
    if work > _WORK_BUDGET:
        n_perm = max(_MIN_PERMUTATIONS, int(_WORK_BUDGET / (len(levels) * m)))

    key = np.where(np.isfinite(s), s, -np.inf)
    # ties are broken at random, not by row order: files are often grouped by contributor, and a
    # top set cut inside a block of tied scores must not pick the first contributor's rows
    order = np.lexsort((rng.random(n), -key))
    _, ccode = np.unique(lab.astype(str), return_inverse=True)
    n_cls = int(ccode.max()) + 1
    kmax = levels[-1]
    top = order[:kmax]
    top_cls = ccode[top]
    # expected counts: contributors' shares of each class, times the class's samples in the top set
    share = np.zeros((n_cls, m))
    np.add.at(share, (ccode, code), 1.0)
    share /= share.sum(1, keepdims=True)
    bounds = np.array([0] + levels)
    per_level_cls = np.stack([np.bincount(top_cls[:k], minlength=n_cls) for k in levels])
    expected = per_level_cls @ share                                     # (L, m)
    observed = np.cumsum(np.stack([np.bincount(code[top[a:b]], minlength=m)
                                   for a, b in zip(bounds[:-1], bounds[1:])]), axis=0)
    dev_obs = excess_deviance(observed, expected)                        # (L, m)
    d_obs = dev_obs.sum(1)

    members = []  # (positions in the top set, contributor codes of the whole class)
    for c in np.unique(top_cls):
        members.append((np.flatnonzero(top_cls == c), code[ccode == c]))
    d_perm = np.empty((n_perm, len(levels)))
    drawn = np.empty(kmax, dtype=np.int64)
    for b in range(n_perm):
        for pos, pool in members:
            drawn[pos] = pool[rng.choice(len(pool), len(pos), replace=False)]
        counts = np.cumsum(np.stack([np.bincount(drawn[a:c], minlength=m)
                                     for a, c in zip(bounds[:-1], bounds[1:])]), axis=0)
        d_perm[b] = excess_deviance(counts, expected).sum(1)
    mu = d_perm.mean(0)
    sd = d_perm.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z_obs = (d_obs - mu) / sd
    t_obs = float(z_obs.max())
    t_perm = ((d_perm - mu) / sd).max(1)
    p = float((1 + np.sum(t_perm >= t_obs - 1e-12)) / (n_perm + 1))
    best = int(np.argmax(z_obs))
    rows = []
    for i in np.argsort(-dev_obs[best], kind="stable"):
        if dev_obs[best, i] <= 0:
            break
        if names[i] == _POOLED:
            continue
        rows.append({"contributor": str(names[i]), "n": int(size_of[str(names[i])]),
                     "top": int(observed[best, i]), "expected": float(expected[best, i]),
                     "deviance": float(dev_obs[best, i])})
    return ConcentrationResult(p, t_obs, int(levels[best]), levels=[int(k) for k in levels], contributors=rows,
                               n_permutations=n_perm, n_samples=n)
