"""Tests for batched Reject On Negative Impact (leave-batch-out RONI)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from mithridate.data import Dataset, load_dataset
from mithridate.defenses.detect.roni import RONIDetector, has_contributors
from mithridate.errors import ConfigError, DataError
from mithridate.eval.metrics import precision_recall


@pytest.fixture(scope="module")
def cancer():
    return load_dataset("breast_cancer")


def _contributors(train, n_contrib=10, bad=(3,), frac=1.0, seed=0, names=None):
    """Split ``train`` at random into contributors; the ``bad`` ones flip a share ``frac`` of their labels."""
    rng = np.random.default_rng(seed)
    n, K = len(train), train.n_classes
    who = rng.permutation(n) % n_contrib
    y = train.y.copy()
    m = np.isin(who, bad) & (rng.random(n) < frac)
    y[m] = (y[m] + rng.integers(1, K, int(m.sum()))) % K
    labels = np.array([f"c{i}" for i in who], dtype=object) if names is None else names[who]
    return train.replace(y=y, meta=train.meta.assign(contributor=labels)), who


def _flagged(det):
    return sorted(n for n, f in zip(det.batch_names_, det.batch_flags_) if f)


def test_contributor_with_flipped_labels_is_flagged(cancer):
    ds, who = _contributors(cancer.train, bad=(3,))
    det = RONIDetector().fit(ds)
    assert det.batched_by_ == "contributor"
    assert det.batch_names_ == [f"c{i}" for i in range(10)]
    assert _flagged(det) == ["c3"]
    assert det.n_refits_ == 11
    # every sample carries its contributor's score; the flags cover exactly c3's samples
    np.testing.assert_array_equal(det.flag(), who == 3)
    assert np.argmin(det.batch_impact_) == 3 and det.batch_impact_[3] < 0 and det.batch_t_[3] < -2
    np.testing.assert_allclose(det.scores_, -det.batch_impact_[det.batch_of_])
    table = det.batch_table()
    assert table.loc[0, "batch"] == "c3" and bool(table.loc[0, "flagged"])
    assert list(table.columns) == ["batch", "size", "impact", "se", "t", "flagged"]


@pytest.mark.parametrize("bad,frac", [((2, 7), 1.0), ((1, 8), 0.5)])
def test_two_bad_contributors_with_carved_or_given_validation(cancer, bad, frac):
    # measured over seeds 0-9: precision 1.00, recall 1.00 (all flipped) / 0.95 (half flipped) with the carve
    for validation in (None, cancer.test):
        ds, _ = _contributors(cancer.train, bad=bad, frac=frac, seed=1)
        det = RONIDetector(random_state=1).fit(ds, validation=validation)
        flagged = np.isin(np.arange(10), [int(n[1:]) for n in _flagged(det)])
        precision, recall = precision_recall(flagged, np.isin(np.arange(10), bad))
        assert precision == 1.0 and recall == 1.0
        assert (det.validation_idx_ is None) == (validation is not None)


def test_clean_contributors_are_not_flagged(cancer):
    ds, _ = _contributors(cancer.train, bad=())
    det = RONIDetector().fit(ds)
    assert not det.batch_flags_.any() and not det.flag().any()


def test_batch_is_not_judged_on_its_own_validation_points(cancer):
    ds, who = _contributors(cancer.train, bad=(3,))
    det = RONIDetector().fit(ds)
    held = det.validation_idx_
    assert len(held) == pytest.approx(0.2 * len(ds), abs=2)
    assert np.isin(held, det.batches_[3]).any()  # c3 has held-out points, yet it is caught
    assert det.batch_impact_[3] < 0


def test_random_blocks_without_contributor_column(cancer):
    train = cancer.train
    assert not has_contributors(train.meta)
    rng = np.random.default_rng(0)
    n, k = len(train), int(0.2 * len(train))
    flip = rng.choice(n, k, replace=False)
    y = train.y.copy()
    y[flip] = 1 - y[flip]
    truth = np.zeros(n, bool)
    truth[flip] = True
    det = RONIDetector().fit(train.replace(y=y))
    assert det.batched_by_ == "random"
    assert 20 <= len(det.batches_) <= 50
    assert all(name.startswith("block-") for name in det.batch_names_)
    every = np.sort(np.concatenate(det.batches_))
    np.testing.assert_array_equal(every, np.arange(n))  # a partition of the samples
    assert max(len(b) for b in det.batches_) == int(np.ceil(n / 30))
    for b, idx in enumerate(det.batches_):
        assert np.all(det.scores_[idx] == -det.batch_impact_[b])
    # blocks with more flipped labels hurt more (measured Spearman −0.58 / −0.70 for seeds 0 / 1)
    nflip = [truth[idx].sum() for idx in det.batches_]
    assert spearmanr(det.batch_impact_, nflip)[0] < -0.4


def test_block_size_and_order_blocks(cancer):
    train = cancer.train
    n = len(train)
    y = train.y.copy()
    y[-40:] = 1 - y[-40:]  # a data drop appended at the end, all labels flipped
    det = RONIDetector(batch_by="order", block_size=40).fit(train.replace(y=y))
    assert det.batched_by_ == "order"
    np.testing.assert_array_equal(det.batches_[0], np.arange(40))
    last = len(det.batches_) - 1
    np.testing.assert_array_equal(det.batches_[last], np.arange(40 * last, n))
    assert np.argmin(det.batch_impact_) == last and det.batch_flags_[last]


def test_deterministic_with_a_seed(cancer):
    ds, _ = _contributors(cancer.train, bad=(3,))
    plain = cancer.train
    a, b = RONIDetector(random_state=5).fit(plain), RONIDetector(random_state=5).fit(plain)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    assert all(np.array_equal(x, z) for x, z in zip(a.batches_, b.batches_))
    c = RONIDetector(random_state=6).fit(plain)
    assert not all(np.array_equal(x, z) for x, z in zip(a.batches_, c.batches_))
    d, e = RONIDetector(random_state=2).fit(ds), RONIDetector(random_state=2).fit(ds)
    np.testing.assert_array_equal(d.batch_impact_, e.batch_impact_)
    np.testing.assert_array_equal(d.validation_idx_, e.validation_idx_)


def test_missing_contributors_go_to_unknown_blocks(cancer):
    train = cancer.train
    names = np.array(["alice", "bob", None, ""], dtype=object)
    ds, who = _contributors(train, n_contrib=4, bad=(), names=names)
    det = RONIDetector(block_size=50).fit(ds)
    assert det.batch_names_[:2] == ["alice", "bob"]
    unknown = [n for n in det.batch_names_ if n.startswith("unknown-")]
    assert len(unknown) == int(np.ceil(np.isin(who, (2, 3)).sum() / 50))
    np.testing.assert_array_equal(det.batches_[0], np.flatnonzero(who == 0))
    with pytest.raises(ConfigError, match="contributor"):
        RONIDetector(batch_by="contributor").fit(train)
    forced = RONIDetector(batch_by="random").fit(ds)
    assert forced.batched_by_ == "random"


def test_metrics_and_model_factory(cancer):
    ds, _ = _contributors(cancer.train, bad=(3,))
    for metric in ("log_loss", "accuracy"):
        det = RONIDetector(metric=metric).fit(ds, validation=cancer.test)
        assert np.argmin(det.batch_impact_) == 3
    acc = RONIDetector(metric="accuracy").fit(ds, validation=cancer.test)
    assert 0.5 < acc.base_metric_ <= 1.0
    named = RONIDetector(model_factory="logreg").fit(ds)
    assert _flagged(named) == ["c3"]
    from mithridate.models.linear import SklearnClassifier

    factory = RONIDetector(model_factory=lambda: SklearnClassifier("logreg", C=0.1)).fit(ds)
    assert np.argmin(factory.batch_impact_) == 3


def test_flag_budget_takes_whole_batches(cancer):
    ds, who = _contributors(cancer.train, bad=(3, 6))
    det = RONIDetector().fit(ds)
    worst = np.argsort(det.batch_impact_)[:2]
    assert set(worst) == {3, 6}
    both = len(det.batches_[3]) + len(det.batches_[6])
    mask = det.flag(budget=(both + 1) / len(ds))
    np.testing.assert_array_equal(mask, np.isin(who, (3, 6)))
    small = det.flag(budget=1.0 / len(ds))  # no whole batch fits
    assert not small.any()
    assert det.flag(threshold=0.0).sum() == (det.scores_ > 0).sum()


def test_untestable_batch_gets_nan_and_no_flag():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (40, 2)), rng.normal(3, 1, (40, 2))]
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    who = np.array(["a"] * 40 + ["b"] * 40, dtype=object)  # removing either leaves one class
    ds = Dataset.from_arrays(X, y, meta={"contributor": who})
    det = RONIDetector().fit(ds)
    assert np.isnan(det.batch_impact_).all() and not det.flag().any()
    assert det.n_refits_ == 1


def test_errors(cancer):
    train = cancer.train
    with pytest.raises(ConfigError, match="metric"):
        RONIDetector(metric="f1").fit(train)
    with pytest.raises(ConfigError, match="batch_by"):
        RONIDetector(batch_by="hash").fit(train)
    with pytest.raises(ConfigError, match="block_size"):
        RONIDetector(block_size=0).fit(train)
    with pytest.raises(ConfigError, match="validation_fraction"):
        RONIDetector(validation_fraction=1.5).fit(train)
    with pytest.raises(ConfigError, match="validation_features"):
        RONIDetector().fit(train, validation_features=np.zeros((3, 30)))
    with pytest.raises(DataError, match="columns"):
        RONIDetector().fit(train, validation=cancer.test, validation_features=np.zeros((len(cancer.test), 3)))
    with pytest.raises(ConfigError, match="Dataset"):
        RONIDetector().fit(np.zeros((3, 3)))
