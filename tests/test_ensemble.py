"""The default ensemble detector: calibration by hand, combination, flags, member handling."""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.data import Dataset, load_dataset
from mithridate.defenses.detect.base import Detector
from mithridate.defenses.detect.ensemble import CONTAMINATION_RATIO, Ensemble, capped_upper_z, upper_z
from mithridate.errors import ConfigError
from mithridate.eval.metrics import auroc


def test_upper_z_by_hand():
    s = np.arange(11, dtype=float)  # median 5, q90 9 -> scale 4 / 1.2816
    z = upper_z(s)
    assert z[5] == pytest.approx(0.0)
    assert z[9] == pytest.approx(1.2816)
    assert z[10] == pytest.approx(5 * 1.2816 / 4)
    # mostly tied scores (a kNN disagreement share, 0 for 93% of a clean set): the scale comes
    # from the first percentile above the median, here the 95th, so z stays on a Gaussian scale
    knn = np.zeros(1000)
    knn[:70] = 0.1  # one disagreeing neighbour of ten
    knn[:20] = 0.5
    knn[:3] = 1.0
    zk = upper_z(knn)
    scale = 0.1 / 1.6449  # q95 = 0.1
    assert zk[50] == pytest.approx(1.6449) and zk[10] == pytest.approx(0.5 / scale) and zk[0] == pytest.approx(1 / scale)
    assert np.all(zk[70:] == 0)
    # one odd value in 2,000 (beyond the 99.9th percentile): the standard deviation
    tied = np.zeros(2000)
    tied[0] = 1.0
    zt = upper_z(tied)
    assert zt[0] == pytest.approx(1.0 / np.std(tied)) and np.all(zt[1:] == 0)
    assert np.all(upper_z(np.ones(5)) == 0)


def test_capped_upper_z_by_hand():
    s = np.arange(101, dtype=float)  # median 50, q75 75, q90 90
    scale90, scale75 = 40 / 1.2816, 25 / 0.6745
    assert scale90 / scale75 < CONTAMINATION_RATIO  # a uniform bulk: not capped
    assert np.allclose(capped_upper_z(s), upper_z(s))
    skewed = np.concatenate([np.arange(76, dtype=float), np.full(25, 1000.0)])  # median 50, q75 75, q90 1000
    z = capped_upper_z(skewed)
    assert z[75] == pytest.approx(25 / (CONTAMINATION_RATIO * 25 / 0.6745))
    assert capped_upper_z(skewed, ratio=1e9) == pytest.approx(upper_z(skewed))
    tied = np.zeros(1000)
    tied[:60] = 1.0  # q75 = median: no cap (upper_z's tie rule)
    assert np.allclose(capped_upper_z(tied), upper_z(tied))


def test_large_poisoned_group_is_still_flagged():
    """15% of the samples in one far group: the 90th percentile lies inside the group, so upper_z's
    scale is the group's distance and none of it reaches z = 3; the capped scale flags all of it
    while flagging few of the clean bulk."""
    rng = np.random.default_rng(0)
    n, k = 2000, 300
    s = np.abs(rng.normal(size=n))
    s[:k] = 12.0 + rng.normal(size=k)
    truth = np.arange(n) < k
    assert (upper_z(s)[truth] > 3).sum() == 0
    z = capped_upper_z(s)
    assert (z[truth] > 3).all()
    assert (z[~truth] > 3).mean() < 0.01
    ens = Ensemble([_Fixed("a", s)]).fit(_toy(n))
    assert np.array_equal(ens.flag(), capped_upper_z(ens.scores_) > 3)
    assert ens.flag()[truth].all()


class _Fixed(Detector):
    """A stand-in member returning fixed scores (to test the combination itself)."""

    def __init__(self, name, scores, flags=None):
        self.name, self._s, self._f, self.layer = name, np.asarray(scores, float), flags, None

    def _score(self, features, y):
        return self._s

    def default_flags(self):
        return np.zeros(len(self._s), bool) if self._f is None else np.asarray(self._f, bool)


class _FixedLabels(_Fixed):
    evidence = "labels"


def _toy(n=200):
    rng = np.random.default_rng(0)
    return Dataset.from_arrays(rng.normal(size=(n, 3)), rng.integers(0, 2, n))


def test_one_informative_member_is_not_drowned():
    ds = _toy()
    rng = np.random.default_rng(1)
    truth = np.zeros(len(ds), bool)
    truth[:10] = True
    informative = rng.normal(size=len(ds)) + 8 * truth          # separates the 10 planted points
    noise = [rng.exponential(size=len(ds)) for _ in range(2)]    # heavy-tailed, uninformative
    ens = Ensemble([_Fixed("a", informative), _Fixed("b", noise[0]), _Fixed("c", noise[1])]).fit(ds)
    assert auroc(informative, truth) == 1.0
    assert auroc(ens.scores_, truth) >= 0.99
    expect = sum(np.maximum(upper_z(s), 0) for s in (informative, *noise))
    # three members reading the same kind of evidence share one vote
    assert ens.weights_ == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert np.allclose(ens.scores_, expect / 3)
    equal = Ensemble([_Fixed("a", informative), _Fixed("b", noise[0]), _Fixed("c", noise[1])], weighting="equal").fit(ds)
    assert np.allclose(equal.scores_, expect)
    assert list(ens.member_scores_.columns) == ["a", "b", "c"]


def test_each_kind_of_evidence_is_one_vote():
    """Two label detectors fire on the same samples; together they weigh as much as one feature detector."""
    ds = _toy()
    rng = np.random.default_rng(2)
    feat, lab1, lab2 = (rng.exponential(size=len(ds)) for _ in range(3))
    members = [_Fixed("feat", feat), _Fixed("lab1", lab1), _Fixed("lab2", lab2)]
    members[1].evidence = members[2].evidence = "labels"
    ens = Ensemble(members).fit(ds)
    assert ens.weights_ == {"feat": 1.0, "lab1": 0.5, "lab2": 0.5}
    z = [np.maximum(upper_z(s), 0) for s in (feat, lab1, lab2)]
    assert np.allclose(ens.scores_, z[0] + 0.5 * z[1] + 0.5 * z[2])
    with pytest.raises(ConfigError, match="weighting"):
        Ensemble(members, weighting="learned").fit(ds)
    from mithridate.registry import create

    assert create("detector", "knn").evidence == create("detector", "confident-learning").evidence == "labels"
    assert create("detector", "robust-distance").evidence == create("detector", "spectre").evidence == "features"
    assert create("detector", "spectral").evidence == create("detector", "activation-clustering").evidence \
        == "subpopulation"


def test_default_flags_score_rule_or_votes():
    ds = _toy(50)
    s = np.zeros(50)
    s[0] = 100.0  # extreme for the ensemble
    f_b = np.zeros(50, bool)
    f_c = np.zeros(50, bool)
    f_b[[1, 2]] = True
    f_c[[2, 3]] = True  # only sample 2 has two votes
    ens = Ensemble([_Fixed("a", s), _Fixed("b", np.zeros(50), f_b), _Fixed("c", np.zeros(50), f_c)]).fit(ds)
    assert np.flatnonzero(ens.flag()).tolist() == [0, 2]
    assert ens.flag(budget=0.02).sum() == 1


def test_members_and_errors():
    with pytest.raises(ConfigError, match="itself"):
        Ensemble(["ensemble"]).fit(_toy())
    with pytest.raises(ConfigError, match="twice"):
        Ensemble(["knn", "knn"]).fit(_toy())
    with pytest.raises(ConfigError, match="unknown detector"):
        Ensemble(["nope"]).fit(_toy())
    with pytest.raises(ConfigError, match="non-empty"):
        Ensemble([]).fit(_toy())
    # a member that cannot run is skipped (and reported), or raises when asked
    tiny = Dataset.from_arrays(np.random.default_rng(0).normal(size=(8, 2)), [0, 1] * 4)
    with pytest.warns(UserWarning, match="skipping knn"):
        ens = Ensemble(["knn", "spectre"]).fit(tiny)
    assert "knn" in ens.skipped_ and "spectre" in ens.members_
    with pytest.raises(ConfigError):
        Ensemble(["knn"], skip_failed=False).fit(tiny)


def test_member_params_reach_members_given_by_name():
    ds = _toy(120)
    ens = Ensemble(member_params={"Robust-Distance": {"min_variance_ratio": 0.01}, "knn": {"n_neighbors": 4},
                                  "spectral": {"n_directions": 2}}).fit(ds)  # spectral: an auto member, unused here
    assert ens.members_["robust-distance"].min_variance_ratio == 0.01 and ens.members_["knn"].n_neighbors == 4
    from mithridate.defenses.detect import KNNLabelConsistency

    alone = KNNLabelConsistency(n_neighbors=4).fit(ds).scores_
    np.testing.assert_array_equal(ens.member_scores_["knn"].to_numpy(), alone)
    with pytest.raises(ConfigError, match="not among the ensemble's members"):
        Ensemble(["knn"], member_params={"spectral": {}}).fit(ds)
    with pytest.raises(ConfigError, match="bad parameters for detector 'knn'"):
        Ensemble(["knn"], member_params={"knn": {"neighbours": 3}}).fit(ds)
    with pytest.raises(ConfigError, match="member_params must map"):
        Ensemble(["knn"], member_params={"knn": 3}).fit(ds)
    with pytest.raises(ConfigError, match="not among"):  # an instance's parameters are set on it
        Ensemble([KNNLabelConsistency(n_neighbors=3)], member_params={"knn": {"n_neighbors": 4}}).fit(ds)


def test_ensemble_finds_label_flips_on_wine():
    from mithridate.attacks.label_flip import RandomFlip

    flipped = RandomFlip(0.2).poison(load_dataset("wine").train, random_state=0).dataset
    ens = Ensemble().fit(flipped.without_ground_truth())
    best = max(auroc(d.scores_, flipped.is_poison) for d in ens.members_.values())
    assert auroc(ens.scores_, flipped.is_poison) >= best - 0.03  # measured 0.979 vs best 0.999
    flags = ens.flag()
    assert flags[flipped.is_poison].mean() > 0.8 and flags[~flipped.is_poison].mean() < 0.05


def test_on_member_reports_each_member_before_it_runs():
    seen = []
    Ensemble(["knn", "robust-distance"]).fit(_toy(), on_member=lambda name, i, n: seen.append((name, i, n)))
    assert seen == [("knn", 0, 2), ("robust-distance", 1, 2)]


def test_auto_members_add_spectral_on_learnt_features_only():
    ds = _toy(120)
    raw = Ensemble().fit(ds)
    assert list(raw.member_scores_.columns) == ["robust-distance", "knn", "confident-learning"]
    assert raw.learnt_ is False
    learnt = Ensemble().fit(ds, learnt=True)  # e.g. features= computed by the user's own network
    assert list(learnt.member_scores_.columns) == ["robust-distance", "knn", "confident-learning", "spectral"]
    assert Ensemble().member_names(learnt=True)[-1] == "spectral"
    # an explicit list is taken as given whatever the representation
    assert list(Ensemble(["knn"]).fit(ds, learnt=True).member_scores_.columns) == ["knn"]
    with pytest.raises(ConfigError, match="'auto' or a non-empty list"):
        Ensemble("spectral").fit(ds)
    # spectral is its own kind of evidence: one full voice next to features and labels
    assert learnt.weights_ == {"robust-distance": 1.0, "knn": 0.5, "confident-learning": 0.5, "spectral": 1.0}


def test_z_scored_member_is_not_recalibrated():
    """The split spectral score already is a robust z: the ensemble clips it at 0 and uses it as it is."""
    ds = _toy(120)
    ens = Ensemble().fit(ds, learnt=True)
    spec = ens.members_["spectral"]
    assert spec.z_scored and spec.score == "split"
    assert np.array_equal(ens.member_z_["spectral"].to_numpy(), spec.scores_)
    assert np.allclose(ens.member_z_["knn"].to_numpy(), upper_z(ens.members_["knn"].scores_))
    from mithridate.defenses.detect.spectral import SpectralSignatures

    assert not SpectralSignatures(score="paper").z_scored


def test_subpopulation_flags_are_not_votes():
    """A split class's whole group flagged by a subpopulation detector does not count as a vote."""
    ds = _toy(50)
    f_sub = np.zeros(50, bool)
    f_b = np.zeros(50, bool)
    f_c = np.zeros(50, bool)
    f_sub[[1, 2, 3]] = True
    f_b[[1, 2]] = True
    f_c[[2]] = True
    sub = _Fixed("sub", np.zeros(50), f_sub)
    sub.evidence = "subpopulation"
    # b and c read labels: the subpopulation + features rule (see the test below) does not apply
    ens = Ensemble([sub, _FixedLabels("b", np.zeros(50), f_b), _FixedLabels("c", np.zeros(50), f_c)]).fit(ds)
    assert ens.voters() == ["b", "c"]
    assert np.flatnonzero(ens.flag()).tolist() == [2]  # sample 1 has sub + b only
    # with a single voter left, votes alone never flag
    ens1 = Ensemble([sub, _FixedLabels("b", np.zeros(50), f_b)]).fit(ds)
    assert not ens1.flag().any()


def test_capped_rule_reaches_only_groups_whose_labels_look_typical():
    """The capped scale is for a large group whose labels agree with the features (a dirty-label
    backdoor); a group the label members find ambiguous keeps the uncapped threshold."""
    rng = np.random.default_rng(0)
    n, k = 2000, 300
    group = np.arange(n) < k
    s = np.abs(rng.normal(size=n))
    s[group] = 12.0 + rng.normal(size=k)
    # a kNN-like disagreement share: 0 for most samples, 0.3-0.6 for a few naturally ambiguous ones
    lab_bulk = np.where(rng.random(n) < 0.05, rng.uniform(0.3, 0.6, n), 0.0)
    typical = np.where(group, 0.0, lab_bulk)                # the group's labels agree with the features
    ambiguous = np.where(group, 0.2, lab_bulk)              # the group's labels are a little ambiguous
    for lab, expect in ((typical, True), (ambiguous, False)):
        ens = Ensemble([_Fixed("a", s), _FixedLabels("l", lab)]).fit(_toy(n))
        assert (upper_z(ens.scores_)[group] > 3).sum() == 0   # only the cap can reach the group
        assert (ens.z_[group] > 3).all()
        assert (ens.member_z_["l"].to_numpy()[group] <= 0).all() == expect
        assert ens.flag()[group].all() == expect
        assert ens.flag()[group].any() == expect
        assert ens.flag()[~group].mean() < 0.02


def test_strip_is_a_member_when_listed_and_the_network_is_given():
    from mithridate.attacks.backdoor import BadNets
    from mithridate.data import load_dataset
    from mithridate.eval.metrics import auroc
    from mithridate.models.nets import default_classifier

    p = BadNets(target=0, poison_rate=0.05, size=2).poison(load_dataset("digits", random_state=0).train, random_state=0)
    ds = p.dataset.without_ground_truth()
    net = default_classifier(len(ds), random_state=0).fit(ds, n_classes=ds.n_classes)
    members = ["robust-distance", "knn", "confident-learning", "spectral", "strip"]
    ens = Ensemble(members).fit(ds, model=net)
    assert list(ens.member_scores_.columns) == members
    assert ens.weights_["strip"] == 1.0 and "strip" not in ens.voters()  # its own kind; its flags are no vote
    assert auroc(ens.scores_, p.poison_mask) > 0.98
    assert "strip" not in Ensemble().fit(ds, model=net).member_scores_.columns  # not a default member
    # features alone (no network to read predictions from): skipped with the reason
    e = Ensemble(["knn", "strip"]).fit(ds, features=net.features(ds.X))
    assert list(e.member_scores_.columns) == ["knn"] and "no model" in e.skipped_["strip"]


class _FixedSplit(_Fixed):
    evidence = "subpopulation"
    z_scored = True


def test_split_and_distance_agreeing_on_a_typical_label_flag_without_the_score_rule():
    """A large poisoned group inflates the ensemble's scale, so the score rules can miss it; the
    subpopulation member and the features member both flagging a sample whose label the label
    members find typical is enough on its own. Either one alone, or a disputed label, is not."""
    n = 400
    idx = np.arange(n)
    zero = np.zeros(n)
    split = idx < 60                                  # the group spectral signatures set apart
    far = (idx < 40) | ((idx >= 100) & (idx < 110))   # robust distance's outliers
    lab = np.random.default_rng(0).uniform(0, 1, n)   # a label member's score: above its median = disputed
    lab[:30] = 0.05                                   # typical labels
    lab[30:40] = 0.95                                 # split and far, but the label is disputed
    members = [_FixedSplit("sp", zero, split), _Fixed("rd", zero, far), _FixedLabels("l", lab)]
    ens = Ensemble(members).fit(_toy(n))
    assert not (upper_z(ens.scores_) > 3).any() and not (ens.z_ > 3).any()  # the score rules see nothing
    flags = ens.flag()
    assert flags[:30].all()                # split and far, label typical
    assert not flags[30:40].any()          # split and far, label disputed
    assert not flags[40:60].any()          # split only
    assert not flags[100:110].any()        # far only
    assert flags.sum() == 30
    # without a subpopulation member the rule does not exist
    assert not Ensemble([_Fixed("rd", zero, far), _FixedLabels("l", lab)]).fit(_toy(n)).flag().any()


def test_members_with_a_raw_table_default_see_the_table_as_such():
    # one column in the hundred thousands, the others near 1: centred cosine similarity is decided
    # by the large column alone and groups most rows as near-duplicates; the duplicates detector
    # standardises a table's raw columns by default, and must do so inside the ensemble too (the
    # audit passes the columns as features=; a user's audit flagged 29,892 of 30,240 rows so)
    from mithridate.defenses.detect.duplicates import DuplicateDetector

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(1e5, 10.0, 600), rng.normal(0, 1, (600, 5))]).astype(np.float32)
    ds = Dataset.from_arrays(X, rng.integers(0, 2, 600))
    alone = DuplicateDetector().fit(ds)
    assert alone.scaling_ == "standardize"
    for kw in ({}, {"features": X, "learnt": False}):
        ens = Ensemble(["knn", "duplicates"]).fit(ds, **kw)
        member = ens.members_["duplicates"]
        assert member.scaling_ == "standardize"
        np.testing.assert_array_equal(member.scores_, alone.scores_)
        assert member.flag().sum() <= 0.05 * len(ds)
    # other features (a network's, or columns changed by the caller) keep the centred default
    ens = Ensemble(["knn", "duplicates"]).fit(ds, features=X * 2, learnt=False)
    assert ens.members_["duplicates"].scaling_ == "center"
    assert ens.members_["duplicates"].flag().sum() > 0.5 * len(ds)   # what the audit did before
