"""The contributor-concentration permutation test (mithridate.audit.concentration)."""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.audit.concentration import concentration_test, excess_deviance, top_levels
from mithridate.errors import DataError


def _contributors(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    return np.array([f"c{i}" for i in rng.integers(0, m, n)], dtype=object)


def test_ladder_and_deviance_by_hand():
    assert top_levels(1000, 37) == [5, 10, 20, 37, 50, 100]
    assert top_levels(1000, None, fractions=(0.5, 0.6)) == [500]          # at most half the data
    assert top_levels(40, 3) == [] and top_levels(40, 6) == [6]          # at least min_top (5) samples
    assert top_levels(8, None) == []
    o = np.array([[6.0, 1.0, 2.0]])
    e = np.array([[2.0, 2.0, 2.0]])
    dev = excess_deviance(o, e)
    assert dev[0, 0] == pytest.approx(2 * (6 * np.log(3) - 4))
    assert dev[0, 1] == 0.0 and dev[0, 2] == 0.0                          # deficits and exact counts add nothing


def test_expected_counts_are_stratified_by_class():
    # 'a' sends only class 0 and class 0 fills the top 5%: without stratification 'a' would hold
    # ~3x its share of the top set; within class 0 it holds exactly its share
    rng = np.random.default_rng(1)
    n = 2000
    labels = np.repeat([0, 1, 2, 3], n // 4)
    who = np.where(labels == 0, np.where(rng.random(n) < 0.3, "a", "b"), rng.choice(["b", "c", "d"], n)).astype(object)
    scores = rng.normal(size=n) + 3.0 * (labels == 0)
    r = concentration_test(scores, who, labels, random_state=0)
    assert r.p_value > 0.05
    top = np.argsort(-scores)[: r.top_k]
    n_a, n_class0 = int(np.sum(who == "a")), int(np.sum(labels == 0))
    expected_a = np.sum(labels[top] == 0) * n_a / n_class0
    named = {c["contributor"]: c for c in r.contributors}
    if "a" in named:
        assert named["a"]["expected"] == pytest.approx(expected_a)
        assert named["a"]["top"] == int(np.sum(who[top] == "a"))


def test_planted_concentration_is_found_and_named():
    rng = np.random.default_rng(2)
    n = 1200
    who = _contributors(n, 10, rng)
    labels = rng.integers(0, 3, n)
    scores = rng.normal(size=n)
    bad = np.flatnonzero(np.isin(who, ["c3", "c7"]))[:24]                 # 2% of the data, two contributors
    scores[bad] += 3.5
    r = concentration_test(scores, who, labels, n_flagged=60, random_state=0)
    assert r.p_value <= 0.01 and r.p_value >= 1 / 1000
    assert {c["contributor"] for c in r.contributors[:2]} == {"c3", "c7"}
    first = r.contributors[0]
    if r.top_class is None:
        top = np.argsort(-scores)[: r.top_k]
        assert r.top_k in r.levels
    else:
        members = np.flatnonzero(labels.astype(str) == r.top_class)
        top = members[np.argsort(-scores[members])[: r.top_k]]
    assert first["top"] == int(np.sum(who[top] == first["contributor"]))
    assert first["top"] > first["expected"] and first["n"] == int(np.sum(who == first["contributor"]))
    assert r.levels == top_levels(n, 60) and r.n_permutations == 999
    from scipy.stats import poisson

    assert first["p_alone"] == pytest.approx(poisson.sf(first["top"] - 1, first["expected"])) and first["p_alone"] < 0.01
    assert r.n_sets == len(r.levels) + 3 * 3                              # three classes of ~400: 2%, 5%, 10% each


def test_a_dozen_poisons_in_one_class_are_found_by_the_class_sets():
    # 12 samples of 'mallory' rank first within class 2 only; over all samples they sit among the
    # other classes' top-ranked samples (scores are normalised per class, as the ensemble's are)
    rng = np.random.default_rng(8)
    n = 3000
    labels = rng.integers(0, 10, n)
    who = _contributors(n, 10, rng)
    scores = rng.standard_t(4, size=n)
    bad = np.flatnonzero((labels == 2) & np.isin(who, ["c4", "c6"]))[:12]
    scores[bad] = np.sort(scores[labels == 2])[-1] + rng.uniform(0.0, 0.5, len(bad))  # at the top of class 2 only
    r = concentration_test(scores, who, labels, random_state=0)
    assert r.p_value <= 0.01 and r.top_class == "2"
    assert {c["contributor"] for c in r.contributors[:2]} == {"c4", "c6"}
    overall = concentration_test(scores, who, labels, class_fractions=(), random_state=0)
    assert overall.n_sets == len(overall.levels) and overall.top_class is None
    assert overall.p_value > 0.05                                         # the sets over all samples miss them


def test_false_alarm_rate_on_random_assignments_is_the_level():
    # under the null (contributors assigned at random) p-values are uniform: at 0.1, about 10% of
    # 200 data sets fail; a test that never fails or always fails is wrong
    rng = np.random.default_rng(3)
    p = []
    for _ in range(200):
        n = 300
        scores = rng.standard_t(3, size=n)
        p.append(concentration_test(scores, _contributors(n, 6, rng), rng.integers(0, 3, n), n_flagged=20,
                                    n_permutations=99, random_state=rng).p_value)
    p = np.asarray(p)
    assert 0.04 <= np.mean(p <= 0.1) <= 0.17
    assert 0.38 <= np.mean(p <= 0.5) <= 0.62


def test_unknown_and_small_contributors():
    rng = np.random.default_rng(4)
    n = 600
    who = _contributors(n, 5, rng)
    scores = rng.normal(size=n)
    tiny = np.argsort(-scores)[:2]
    who[tiny] = "tiny"                                                    # 2 samples, both at the top
    who[np.argsort(-scores)[2:8]] = None                                  # unknown: left out
    r = concentration_test(scores, who, np.zeros(n, int), random_state=0)
    assert r.n_samples == n - 6
    assert "tiny" not in {c["contributor"] for c in r.contributors}      # pooled: named only as the group
    pooled = [c for c in r.contributors if c.get("pooled")]
    assert pooled and pooled[0]["contributor"] == "1 contributor with fewer than 3 samples each (pooled): tiny 2"
    assert pooled[0]["members"] == [{"contributor": "tiny", "top": 2}]
    one = concentration_test(scores, np.array(["x"] * n, dtype=object), np.zeros(n), random_state=0)
    assert one.p_value is None and "two contributors" in one.reason
    few = concentration_test(scores[:6], who[:6], np.zeros(6), min_samples=1, random_state=0)
    assert few.p_value is None and few.reason


def test_tied_scores_do_not_favour_the_first_rows():
    # rows grouped by contributor (as files often are) and most scores tied: the top set cut inside
    # the tie must not be the first contributor's rows
    n = 1000
    who = np.repeat([f"c{i}" for i in range(10)], n // 10).astype(object)
    scores = np.zeros(n)
    scores[np.random.default_rng(6).choice(n, 20, replace=False)] = 1.0   # 2% untied, spread at random
    r = concentration_test(scores, who, np.zeros(n, int), random_state=0)
    assert r.p_value > 0.05


def test_same_seed_same_result_and_bad_input():
    rng = np.random.default_rng(5)
    n = 400
    who, y, s = _contributors(n, 4, rng), rng.integers(0, 2, n), rng.normal(size=n)
    a = concentration_test(s, who, y, random_state=7).to_dict()
    b = concentration_test(s, who, y, random_state=7).to_dict()
    assert a == b
    s_nan = s.copy()
    s_nan[:10] = np.nan                                                   # NaN ranks last, no crash
    assert concentration_test(s_nan, who, y, random_state=0).p_value is not None
    with pytest.raises(DataError, match="lengths differ"):
        concentration_test(s, who[:-1], y)
    with pytest.raises(DataError, match="one-dimensional"):
        concentration_test(s.reshape(2, -1), who, y)
    with pytest.raises(DataError, match="n_permutations"):
        concentration_test(s, who, y, n_permutations=0)


def test_infinite_scores_rank_first_and_nan_last():
    rng = np.random.default_rng(9)
    n = 800
    who, y = _contributors(n, 8, rng), rng.integers(0, 2, n)
    s = rng.normal(size=n)
    s[np.flatnonzero(who == "c3")[:15]] = np.inf                         # the most suspicious a score can be
    s[np.flatnonzero(who == "c5")[:40]] = np.nan                         # unscored: last, not first
    r = concentration_test(s, who, y, random_state=0)
    assert r.p_value <= 0.01 and r.contributors[0]["contributor"] == "c3"
    assert "c5" not in {c["contributor"] for c in r.contributors[:2]}


def test_many_small_senders_are_named_as_the_pooled_group():
    # 30 sybils with 2 samples each, all near the top: the pooled group is named, with its members
    rng = np.random.default_rng(10)
    n = 1500
    who = _contributors(n, 10, rng)
    s = rng.normal(size=n)
    syb = rng.choice(n, 60, replace=False)
    who[syb] = [f"s{i // 2}" for i in range(60)]
    s[syb] += 5
    r = concentration_test(s, who, np.zeros(n, int), random_state=0)
    assert r.p_value <= 0.01
    top = r.contributors[0]
    assert top.get("pooled") and top["n"] == 60 and "30 contributors with fewer than 3 samples" in top["contributor"]
    assert {m["contributor"] for m in top["members"]} <= {f"s{i}" for i in range(30)} and len(top["members"]) == 20
    assert 0 < sum(m["top"] for m in top["members"]) <= top["top"]         # at most 20 members listed
    from mithridate.audit.policy import Policy

    res = Policy.default()._concentration(r.to_dict())
    assert not res.passed and "(pooled)" in res.message and res.subject != top["contributor"]


def test_classes_from_one_contributor_each_cannot_be_tested():
    n = 300
    y = np.repeat([0, 1, 2], n // 3)
    who = np.array(["a", "b", "c"], dtype=object)[y]                      # each vendor sends one class
    r = concentration_test(np.random.default_rng(11).normal(size=n), who, y, random_state=0)
    assert r.p_value is None and "single contributor" in r.reason
    with pytest.raises(DataError, match="one-dimensional"):
        concentration_test(np.zeros(n), who, np.zeros((n, 3)))        # one-hot labels
    odd = who.copy()
    odd[odd == "a"] = "\x00pooled"                                       # any name is an ordinary name
    odd[np.arange(n) % 2 == 0] = "d"
    s = np.zeros(n)
    s[np.flatnonzero(odd == "\x00pooled")[:12]] = 5.0
    r2 = concentration_test(s, odd, y, random_state=0)
    assert r2.contributors[0]["contributor"] == "\x00pooled" and not r2.contributors[0].get("pooled")


def test_a_malicious_sender_of_five_samples_among_a_hundred_small_ones_is_named():
    # 100 annotators of ~6 items each (a crowd): one flips all 5 of its items, which rank at the top
    rng = np.random.default_rng(12)
    n = 600
    who = np.array([f"u{k:03d}" for k in rng.integers(0, 100, n)], dtype=object)
    who[:5] = "u999"
    s = rng.normal(size=n)
    s[:5] += 4
    r = concentration_test(s, who, rng.integers(0, 2, n), random_state=0)
    assert r.contributors[0]["contributor"] == "u999" and r.p_value <= 0.05


def test_policy_reads_the_batch_test_at_half_the_limit():
    from mithridate.audit.policy import Policy

    whole = {"p_value": 0.4, "top_k": 50, "top_class": None, "n_permutations": 999, "contributors": []}
    batch = {"p_value": 0.004, "top_k": 25, "top_class": "a", "n_permutations": 999, "n_samples": 300,
             "contributors": [{"contributor": "v1", "top": 12, "expected": 3.0, "p_alone": 0.001}]}
    base = {"n_samples": 3000, "n_flagged": 300, "share_flagged": 0.1, "classes": [], "contributors": [], "diff": None}

    def check(**kw):
        [r] = [r for r in Policy().evaluate({**base, **kw}) if r.name == "contributor_concentration"]
        return r

    r = check(concentration=whole, batch_concentration=batch)
    assert not r.passed and r.limit == pytest.approx(0.005) and r.subject == "v1"
    assert r.message.startswith("Of this version's 300 new or changed samples") and "does not show it" in r.message
    r = check(concentration=whole, batch_concentration={**batch, "p_value": 0.008})   # under 0.01, not under 0.005
    assert r.passed and "nor among this version's new samples (p = 0.008, limit 0.005)" in r.message
    r = check(concentration=whole, batch_concentration=None)                        # no ledger: as before
    assert r.passed and "new samples" not in r.message
