"""Tests for iterative trimmed loss minimisation (Shen & Sanghavi 2019)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mithridate.attacks.label_flip import AdversarialFlip, RandomFlip
from mithridate.data import Dataset, load_dataset
from mithridate.defenses.train.itlm import TrimmedLossClassifier
from mithridate.errors import ConfigError, DataError
from mithridate.eval.metrics import accuracy
from mithridate.models.base import Model
from mithridate.models.linear import SklearnClassifier


def _separable(n=300, d=6, seed=0, gap=2.0):
    """Two classes split by a margin along a random direction: a planted clean truth."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    X = rng.normal(size=(4 * n, d))
    t = X @ w
    keep = np.abs(t) > gap / 2
    X, t = X[keep][:n], t[keep][:n]
    return Dataset.from_arrays(X, (t > 0).astype(int), name="separable")


@pytest.fixture(scope="module")
def planted():
    train, test = _separable(seed=0), _separable(seed=0, n=600)
    test = test.subset(np.arange(300, 600))  # different draws from the same distribution
    p = AdversarialFlip(0.25, strategy="confidence").poison(train, random_state=0)
    return train, test, p


def _acc(model, test):
    return accuracy(test.y, model.predict(test.X))


def test_itlm_recovers_a_planted_clean_set_with_the_default_keep_fraction(planted):
    train, test, p = planted
    flipped = p.poison_mask
    clean_acc = _acc(SklearnClassifier("linear_svm").fit(train), test)
    poisoned_acc = _acc(SklearnClassifier("linear_svm").fit(p.dataset), test)
    clf = TrimmedLossClassifier().fit(p.dataset)
    assert clf.kept_.dtype == bool and clf.kept_.shape == (len(train),)
    assert np.mean(~clf.kept_[flipped]) >= 0.95        # nearly every flip is trimmed
    assert np.mean(clf.kept_[~flipped]) >= 0.95        # nearly every clean sample is kept
    assert clf.keep_fraction_ == pytest.approx(0.75, abs=0.04)
    assert clf.estimated_poison_rate_ == pytest.approx(0.25, abs=0.04)
    assert poisoned_acc < clean_acc - 0.05             # the attack did hurt ...
    assert _acc(clf, test) >= clean_acc - 0.02         # ... and ITLM undoes it
    assert clf.n_iter_ >= 1 and clf.n_fits_ >= clf.n_iter_


def test_itlm_with_a_given_keep_fraction_keeps_exactly_that_many(planted):
    _, test, p = planted
    clf = TrimmedLossClassifier(keep_fraction=0.7, model="logreg").fit(p.dataset.X, p.dataset.y)
    assert clf.kept_.sum() == math.ceil(0.7 * len(p.dataset))
    assert clf.keep_fraction_ == 0.7 and clf.estimated_poison_rate_ is None
    assert np.mean(~clf.kept_[p.poison_mask]) >= 0.95
    assert clf.trimmed_loss_ == pytest.approx(np.mean(clf.losses_[clf.kept_]))


def test_itlm_on_clean_data_keeps_nearly_everything():
    train = _separable(seed=3)
    clf = TrimmedLossClassifier().fit(train)
    assert clf.keep_fraction_ >= 0.97 and clf.kept_.mean() >= 0.97


def test_itlm_against_30_percent_adversarial_flips_on_digits():
    splits = load_dataset("digits", classes=[1, 7])
    p = AdversarialFlip(0.3).poison(splits.train, random_state=0)
    clean_acc = _acc(SklearnClassifier("linear_svm").fit(splits.train), splits.test)
    clf = TrimmedLossClassifier().fit(p.dataset)
    # measured: clean 1.000, poisoned ~0.66, ITLM 1.000
    assert _acc(clf, splits.test) >= clean_acc - 0.02
    assert np.mean(~clf.kept_[p.poison_mask]) >= 0.9


def test_itlm_follows_the_model_protocol(planted):
    _, test, p = planted
    clf = TrimmedLossClassifier(n_init=3)
    assert clf.fit(p.dataset) is clf
    assert isinstance(clf, Model)
    proba = clf.predict_proba(test.X)
    assert proba.shape == (len(test), 2) and np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(test.X), clf.model_.predict(test.X))
    np.testing.assert_allclose(clf.per_sample_loss(p.dataset.X, p.dataset.y), clf.losses_)
    assert clf.features(test.X).shape == (len(test), test.X.shape[1])
    assert clf.features(test.X, "logits").shape == (len(test), 2)
    assert "logits" in clf.layer_names
    assert clf.n_classes_ == 2


def test_itlm_accepts_factories_templates_and_weights(planted):
    _, test, p = planted
    template = SklearnClassifier("logreg", C=0.5)
    a = TrimmedLossClassifier(model=template, keep_fraction=0.75, n_init=2).fit(p.dataset)
    assert not hasattr(template, "estimator_")  # the template is copied, never fitted
    assert a.model_.C == 0.5 and a.model_.kind == "logreg"
    b = TrimmedLossClassifier(model=lambda: SklearnClassifier("logreg", C=0.5), keep_fraction=0.75,
                              n_init=2).fit(p.dataset)
    np.testing.assert_array_equal(a.kept_, b.kept_)
    w = np.ones(len(p.dataset))
    c = TrimmedLossClassifier(keep_fraction=0.75, n_init=2).fit(p.dataset, sample_weight=w)
    assert _acc(c, test) > 0.9
    with pytest.raises(ConfigError, match="sample_weight"):
        TrimmedLossClassifier().fit(p.dataset, sample_weight=w[:-1])


def test_itlm_is_reproducible(planted):
    _, _, p = planted
    a = TrimmedLossClassifier(init_size=2, random_state=5).fit(p.dataset)
    b = TrimmedLossClassifier(init_size=2, random_state=5).fit(p.dataset)
    np.testing.assert_array_equal(a.kept_, b.kept_)


@pytest.mark.parametrize("kwargs, match", [
    ({"keep_fraction": 0}, "keep_fraction must be in"),
    ({"keep_fraction": 1.5}, "keep_fraction must be in"),
    ({"keep_fraction": "half"}, "'auto'"),
    ({"min_keep_fraction": 0}, "min_keep_fraction"),
    ({"max_iter": 0}, "max_iter"),
    ({"n_init": 0}, "n_init"),
    ({"tol": 1.0}, "tol"),
    ({"model": "forest"}, "unknown model"),
    ({"model": object()}, "Model protocol"),
])
def test_itlm_parameter_errors(kwargs, match):
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
    with pytest.raises(ConfigError, match=match):
        TrimmedLossClassifier(**kwargs).fit(X, y)


def test_itlm_input_errors():
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(DataError, match="single class"):
        TrimmedLossClassifier().fit(X, np.zeros(20, int))
    with pytest.raises(DataError, match="must match"):
        TrimmedLossClassifier().fit(X, np.arange(19) % 2)
    with pytest.raises(ConfigError, match="needs labels"):
        TrimmedLossClassifier().fit(X)
    with pytest.raises(ConfigError, match="not fitted"):
        TrimmedLossClassifier().predict(X)
    reg = Dataset.from_arrays(X, np.linspace(0, 1, 20), task="regression")
    with pytest.raises(ConfigError, match="regression"):
        TrimmedLossClassifier().fit(reg)


def test_itlm_never_trims_a_class_away():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(95, 2)), rng.normal(loc=5.0, size=(5, 2))])
    y = np.r_[np.zeros(95, int), np.ones(5, int)]
    p = RandomFlip(0.04).poison(Dataset.from_arrays(X, y), random_state=0)
    clf = TrimmedLossClassifier(keep_fraction=0.5, n_init=1).fit(p.dataset)
    assert set(np.unique(p.dataset.y[clf.kept_])) == {0, 1}
