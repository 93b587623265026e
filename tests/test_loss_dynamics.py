"""Tests for the loss-dynamics detector (early-epoch loss, after Li et al.'s Anti-Backdoor Learning)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from mithridate.attacks.backdoor import BadNets
from mithridate.data import Dataset, load_dataset
from mithridate.defenses.detect.base import robust_z
from mithridate.defenses.detect.loss_dynamics import LossDynamics
from mithridate.errors import ConfigError, DataError
from mithridate.eval.metrics import auroc
from mithridate.models import TorchClassifier


@pytest.fixture(scope="module")
def strong_patch():
    """Digits with a strong trigger: a white 4x4 patch in the top-left corner on 5% of the
    training set, relabelled to 0 (all-to-one)."""
    splits = load_dataset("digits", random_state=0)
    return BadNets(target=0, poison_rate=0.05, size=4, position="top-left").poison(splits.train, random_state=0).dataset


@pytest.fixture(scope="module")
def fitted(strong_patch):
    t0 = time.perf_counter()
    det = LossDynamics(epochs=2, tail="low", random_state=0).fit(strong_patch.without_ground_truth(),
                                                                  model=TorchClassifier(arch="mlp"))
    return det, time.perf_counter() - t0


def test_strong_trigger_is_learnt_first(strong_patch, fitted):
    det, seconds = fitted
    # measured 0.98 at this seed (0.93-1.00 over seeds 0-5); a wrong sign or a global instead of
    # per-class comparison gives < 0.5
    assert auroc(det.scores_, strong_patch.is_poison) >= 0.9
    assert seconds < 15
    assert det.losses_.shape == (2, len(strong_patch))
    assert np.all(det.losses_ >= 0)
    # poisons' early loss is lower than that of the clean members of their (target) class
    target = strong_patch.y == 0
    assert np.median(det.losses_[:, strong_patch.is_poison].mean(0)) < np.median(
        det.losses_[:, target & ~strong_patch.is_poison].mean(0))


def test_score_is_the_per_class_robust_z_of_minus_log_mean_loss(strong_patch, fitted):
    det, _ = fitted
    fast = -np.log(det.losses_.mean(axis=0))
    for c in range(strong_patch.n_classes):
        m = strong_patch.y == c
        np.testing.assert_allclose(det.scores_[m], robust_z(fast[m]), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(det.flag(), det.z_ > 3.0)
    assert det.ids_.tolist() == strong_patch.ids.tolist()


def test_tails(strong_patch, fitted):
    det, _ = fitted
    ds = strong_patch.without_ground_truth()
    high = LossDynamics(epochs=2, tail="high", random_state=0).fit(ds, model=TorchClassifier(arch="mlp"))
    both = LossDynamics(epochs=2, tail="both", random_state=0).fit(ds, model=TorchClassifier(arch="mlp"))
    np.testing.assert_allclose(high.scores_, -det.scores_)
    np.testing.assert_allclose(both.scores_, np.abs(det.scores_))
    assert LossDynamics().tail == "both"  # which tail holds the poisons depends on trigger and network


def test_budget_is_global_lowest_loss(fitted):
    det, _ = fitted
    n = len(det.scores_)
    flags = det.flag(budget=0.05)
    assert int(flags.sum()) == math.ceil(0.05 * n)
    assert det.scores_[flags].min() >= det.scores_[~flags].max()


def test_the_given_model_is_not_trained(strong_patch):
    net = TorchClassifier(arch="mlp", hidden=(32,), epochs=2, random_state=0).fit(strong_patch)
    before = {k: v.clone() for k, v in net.module_.state_dict().items()}
    det = LossDynamics(epochs=1).fit(strong_patch, model=net)
    assert det.model_ is not net
    assert det.model_.hidden == (32,) and det.model_.arch_ == "mlp"
    for k, v in net.module_.state_dict().items():
        assert np.array_equal(v.numpy(), before[k].numpy())
    unfitted = TorchClassifier(arch="mlp", hidden=(8,))
    LossDynamics(epochs=1).fit(strong_patch, model=unfitted)
    assert not hasattr(unfitted, "module_")


def test_default_model_and_determinism():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    ds = Dataset.from_arrays(X, (X[:, 0] > 0).astype(int))
    a = LossDynamics(epochs=2, random_state=4).fit(ds)
    b = LossDynamics(epochs=2, random_state=4).fit(ds)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    assert a.model_.arch_ == "mlp"  # default_classifier on a table
    c = LossDynamics(epochs=2, random_state=5).fit(ds)
    assert not np.array_equal(a.losses_, c.losses_)


def test_images_default_to_the_default_cnn(strong_patch):
    small = strong_patch.subset(np.arange(300))
    det = LossDynamics(epochs=1).fit(small)
    assert det.model_.arch_ == "cnn" and det.losses_.shape == (1, 300)


def test_features_for_is_the_input_and_features_override_it(strong_patch):
    det = LossDynamics(epochs=1)
    X = det.features_for(strong_patch, model=object())
    assert X.shape == strong_patch.X.shape
    emb = np.random.default_rng(0).normal(size=(len(strong_patch), 6)).astype(np.float32)
    out = det.fit(strong_patch, features=emb)
    assert out.model_.input_shape_ == (6,)


def test_bad_input(strong_patch):
    with pytest.raises(ConfigError, match="Dataset"):
        LossDynamics().fit(np.zeros((4, 2)))
    with pytest.raises(ConfigError, match="epochs"):
        LossDynamics(epochs=0).fit(strong_patch)
    with pytest.raises(ConfigError, match="tail"):
        LossDynamics(tail="middle").fit(strong_patch)
    with pytest.raises(ConfigError, match="TorchClassifier"):
        LossDynamics().fit(strong_patch, model=object())
    feats = np.zeros((len(strong_patch), 3), dtype=np.float32)
    feats[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        LossDynamics().fit(strong_patch, features=feats)
    with pytest.raises(DataError, match="feature rows"):
        LossDynamics().fit(strong_patch, features=feats[:-1])
    reg = Dataset.from_arrays(np.zeros((6, 2)), np.arange(6.0), task="regression")
    with pytest.raises(ConfigError, match="regression"):
        LossDynamics().fit(reg)
    with pytest.raises(ConfigError, match="not fitted"):
        LossDynamics().flag()


def test_name():
    assert LossDynamics.name == "loss-dynamics"
