"""Tests for the label-flipping attacks: random, targeted and adversarial flips."""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.attacks.base import Poisoning
from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip, TargetedFlip
from mithridate.data import Dataset, load_dataset
from mithridate.errors import ConfigError
from mithridate.eval.metrics import accuracy
from mithridate.models.linear import SklearnClassifier


def _blobs(n=200, d=5, k=2, seed=0, ids=None):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(scale=3.0, size=(k, d))
    X = centres[y] + rng.normal(size=(n, d))
    labels = np.array([f"c{c}" for c in y])
    return Dataset.from_arrays(X, labels, ids=ids, name=f"blobs{k}")


def _check_flip(clean: Dataset, p: Poisoning, n_expected: int) -> np.ndarray:
    """Common invariants: same ids and features, labels change exactly on is_poison rows."""
    assert isinstance(p, Poisoning)
    ds = p.dataset
    np.testing.assert_array_equal(ds.ids, clean.ids)
    np.testing.assert_array_equal(ds.X, clean.X)
    assert ds.classes == clean.classes
    changed = ds.y != clean.y
    np.testing.assert_array_equal(changed, p.poison_mask)
    assert int(p.poison_mask.sum()) == n_expected == p.budget["n_poison"]
    assert p.budget["poison_rate"] == pytest.approx(n_expected / len(clean))
    return np.flatnonzero(changed)


# -- RandomFlip ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rate, n_expected", [(0.1, 20), (0.25, 50), (0.0125, 2)])
def test_random_flip_counts_and_invariants(rate, n_expected):
    clean = _blobs(ids=[f"row{i}" for i in range(200)])
    p = RandomFlip(poison_rate=rate).poison(clean, random_state=3)
    _check_flip(clean, p, n_expected)
    assert p.attack == "random-flip" and RandomFlip.name == "random-flip"
    assert p.params == {"poison_rate": rate}
    assert p.target is None and p.trigger is None


def test_random_flip_is_seeded_and_draws_every_other_class():
    clean = _blobs(n=300, k=3)
    a = RandomFlip(0.5).poison(clean, random_state=7)
    b = RandomFlip(0.5).poison(clean, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(a.dataset.y, b.dataset.y)
    assert not np.array_equal(a.dataset.y, RandomFlip(0.5).poison(clean, random_state=8).dataset.y)
    rows = _check_flip(clean, a, 150)
    old, new = clean.y[rows], a.dataset.y[rows]
    assert np.all(old != new)
    for c in range(3):  # each class is relabelled to both other classes, roughly evenly
        counts = np.bincount(new[old == c], minlength=3)
        assert counts[c] == 0 and counts[[i for i in range(3) if i != c]].min() >= 15


def test_random_flip_binary_uses_the_other_class_and_keeps_prior_ground_truth():
    clean = _blobs()
    prior = np.zeros(len(clean), bool)
    prior[:3] = True
    p = RandomFlip(0.1).poison(clean.replace(is_poison=prior), random_state=0)
    rows = np.flatnonzero(p.dataset.y != clean.y)
    np.testing.assert_array_equal(p.dataset.y[rows], 1 - clean.y[rows])
    assert p.poison_mask[:3].all()  # earlier ground truth survives
    assert p.poison_mask.sum() == len(np.union1d(rows, [0, 1, 2]))


# -- budget validation --------------------------------------------------------------------------
@pytest.mark.parametrize("attack_cls", [RandomFlip, TargetedFlip, AdversarialFlip])
@pytest.mark.parametrize("rate", [0, 1, 1.5, -0.1, float("nan"), "lots", None])
def test_poison_rate_must_be_a_fraction(attack_cls, rate):
    with pytest.raises(ConfigError, match="poison_rate"):
        attack_cls(poison_rate=rate).poison(_blobs(), random_state=0)


@pytest.mark.parametrize("attack_cls", [RandomFlip, TargetedFlip, AdversarialFlip])
def test_poison_rate_that_flips_nothing_is_refused(attack_cls):
    with pytest.raises(ConfigError, match="flips no label"):
        attack_cls(poison_rate=0.001).poison(_blobs(n=100), random_state=0)


def test_label_flips_refuse_regression_data():
    reg = Dataset.from_arrays(np.random.default_rng(0).random((20, 3)), np.linspace(0, 1, 20), task="regression")
    for attack in (RandomFlip(), TargetedFlip(), AdversarialFlip()):
        with pytest.raises(ConfigError, match="regression"):
            attack.poison(reg, random_state=0)


# -- TargetedFlip -------------------------------------------------------------------------------
def test_targeted_flip_relabels_source_as_target():
    clean = _blobs(n=300, k=3)
    p = TargetedFlip(source="c1", target="c2", poison_rate=0.1).poison(clean, random_state=0)
    rows = _check_flip(clean, p, 30)
    assert np.all(clean.y[rows] == 1) and np.all(p.dataset.y[rows] == 2)
    assert p.target == 2 and p.attack == "targeted-flip"
    assert p.budget["source_class_fraction"] == pytest.approx(30 / 100)
    # class indices work too, and give the same rows for the same seed
    q = TargetedFlip(source=1, target=2, poison_rate=0.1).poison(clean, random_state=0)
    np.testing.assert_array_equal(q.poison_mask, p.poison_mask)


def test_targeted_flip_budget_is_a_fraction_of_the_whole_set_and_checks_the_source_size():
    clean = _blobs(n=300, k=3)  # 100 per class
    p = TargetedFlip(source=0, target=1, poison_rate=1 / 3).poison(clean, random_state=0)
    assert p.budget["n_poison"] == 100 and p.budget["source_class_fraction"] == 1.0
    with pytest.raises(ConfigError, match=r"source class 'c0' has only 100 samples.*at most 0\.333"):
        TargetedFlip(source=0, target=1, poison_rate=0.4).poison(clean, random_state=0)


def test_targeted_flip_rejects_same_or_unknown_classes():
    clean = _blobs()
    with pytest.raises(ConfigError, match="same class"):
        TargetedFlip(source="c0", target=0).poison(clean, random_state=0)
    with pytest.raises(ConfigError, match="neither one of the classes"):
        TargetedFlip(source="c9", target=0).poison(clean, random_state=0)


# -- AdversarialFlip ----------------------------------------------------------------------------
def test_adversarial_flip_is_binary_only():
    with pytest.raises(ConfigError, match=r"binary-only.*3 classes.*classes=\[a, b\].*--classes a,b"):
        AdversarialFlip(0.1).poison(_blobs(k=3), random_state=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"strategy": "nearest"}, "unknown strategy"),
    ({"model": "mlp"}, "unknown model"),
    ({"C": 0}, "C must be"),
    ({"n_rounds": -1}, "n_rounds"),
    ({"temperature": 0.0}, "temperature"),
])
def test_adversarial_flip_parameter_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AdversarialFlip(0.1, **kwargs).poison(_blobs(), random_state=0)


def test_adversarial_flip_validation_must_match():
    train = _blobs()
    other = Dataset.from_arrays(train.X[:10], ["a", "b"] * 5)
    with pytest.raises(ConfigError, match="validation classes"):
        AdversarialFlip(0.1).poison(train, random_state=0, validation=other)
    with pytest.raises(ConfigError, match="validation samples have shape"):
        AdversarialFlip(0.1).poison(train, random_state=0,
                                    validation=Dataset.from_arrays(np.zeros((4, 2)), ["c0", "c1"] * 2))


def test_confidence_flips_the_points_the_clean_model_is_surest_about():
    clean = _blobs(n=120, seed=1)
    p = AdversarialFlip(0.1, strategy="confidence").poison(clean, random_state=0)
    rows = _check_flip(clean, p, 12)
    model = SklearnClassifier("linear_svm").fit(clean)
    z = model.logits(clean.X)
    margin = (z[:, 1] - z[:, 0]) * (2 * clean.y - 1)
    assert set(rows) == set(np.argsort(-margin)[:12])
    np.testing.assert_array_equal(p.dataset.y[rows], 1 - clean.y[rows])


def test_greedy_keeps_the_contract_and_never_ends_below_its_confidence_start():
    clean = load_dataset("digits", classes=[1, 7]).train
    p = AdversarialFlip(0.1).poison(clean, random_state=0)
    _check_flip(clean, p, round(0.1 * len(clean)))
    assert p.attack == "adversarial-flip" and p.params["strategy"] == "greedy"
    b = p.budget
    assert b["validation_error"] >= b["validation_error_confidence"] >= b["validation_error_clean"]
    assert 1 <= b["greedy_rounds"] <= 10
    # with n_rounds=0 greedy is the confidence set
    q = AdversarialFlip(0.1, n_rounds=0).poison(clean, random_state=0)
    r = AdversarialFlip(0.1, strategy="confidence").poison(clean, random_state=0)
    np.testing.assert_array_equal(q.poison_mask, r.poison_mask)


def test_adversarial_flips_beat_random_flips_by_a_margin():
    """breast_cancer, linear SVM, 10% flips: adversarial error increase >= 2x random's."""
    splits = load_dataset("breast_cancer")
    train, test = splits.train, splits.test

    def err(ds):
        return 1.0 - accuracy(test.y, SklearnClassifier("linear_svm").fit(ds).predict(test.X))

    clean = err(train)
    rand = float(np.median([err(RandomFlip(0.1).poison(train, random_state=s).dataset) for s in range(3)]))
    conf = err(AdversarialFlip(0.1, strategy="confidence").poison(train, random_state=0).dataset)
    greedy = err(AdversarialFlip(0.1).poison(train, random_state=0).dataset)
    # measured: clean 0.035, random 0.070, confidence 0.158, greedy 0.158
    assert rand - clean < 0.06
    for adv in (conf, greedy):
        assert adv - clean >= 2 * (rand - clean) + 0.02
        assert adv >= 0.12


def test_greedy_uses_a_given_validation_set():
    splits = load_dataset("digits", classes=[1, 7])
    val = splits.test.subset(np.arange(0, len(splits.test), 2))
    p = AdversarialFlip(0.1).poison(splits.train, random_state=0, validation=val)
    model = SklearnClassifier("linear_svm").fit(p.dataset)
    assert p.budget["validation_error"] == pytest.approx(1.0 - accuracy(val.y, model.predict(val.X)))
    assert p.budget["validation_error"] > p.budget["validation_error_confidence"]


def test_adversarial_flip_works_on_images_and_logreg():
    clean = load_dataset("digits", classes=[1, 7]).train  # N x 1 x 8 x 8
    p = AdversarialFlip(0.05, model="logreg", n_rounds=2).poison(clean, random_state=1)
    _check_flip(clean, p, round(0.05 * len(clean)))
    assert p.dataset.X.shape == clean.X.shape
