"""The fixed-seed end-to-end slice on digits, exactly as ``mithridate demo`` runs it.

BadNets (target 0, 5% of the training set, 2x2 patch) -> default CNN -> robust distance, SPECTRE
and spectral signatures on the penultimate layer -> remove the robust distance's flags ->
retrain. The figures asserted below are the product's promises for the demo (issue 2).
"""

from __future__ import annotations

import numpy as np
import pytest

from mithridate.defenses.detect import RobustDistance, SpectralSignatures, Spectre
from mithridate.models import TorchClassifier

SEED = 0


@pytest.fixture(scope="module")
def result(demo_result):
    return demo_result  # run_demo(rate=0.05, seed=SEED), computed once per session in conftest.py


def test_scenario_shape(result):
    res = result
    assert [r["stage"] for r in res.rows] == ["clean", "poisoned", "sanitized"]
    assert set(res.models) == {"clean", "poisoned", "sanitized"}
    assert all(isinstance(m, TorchClassifier) for m in res.models.values())
    assert res.sanitizer == "robust-distance"
    n_train = res.config["n_train"]
    assert res.budget["n_poison"] == round(0.05 * n_train) == 63
    assert res.poisoning.poison_mask.sum() == 63
    assert set(res.detection) == {"robust-distance", "spectre", "spectral"}
    sanitized = res.stage("sanitized")
    assert sanitized["removed"] == int(res.flags["robust-distance"].sum())
    assert sanitized["poisons_left"] == int((res.poisoning.poison_mask & ~res.flags["robust-distance"]).sum())
    for name in res.detection:
        assert res.scores[name].shape == (n_train,)


def test_poisoned_model_asr(result):
    assert result.stage("poisoned")["asr"] >= 0.95


def test_poisoning_costs_at_most_two_points_of_clean_accuracy(result):
    clean, poisoned = result.stage("clean")["clean_accuracy"], result.stage("poisoned")["clean_accuracy"]
    assert clean >= 0.95
    assert abs(poisoned - clean) <= 0.02


def test_clean_model_is_not_backdoored(result):
    assert result.stage("clean")["asr"] <= 0.05


def test_sanitizer_auroc(result):
    assert result.detection["robust-distance"]["auroc"] >= 0.95


def test_sanitizer_removes_the_backdoor(result):
    assert result.stage("sanitized")["asr"] <= 0.05


def test_detectors_never_read_ground_truth(result):
    poisoned_model = result.models["poisoned"]
    with_truth = result.poisoning.dataset
    without = with_truth.without_ground_truth()
    assert with_truth.is_poison is not None and without.is_poison is None
    for det_cls in (RobustDistance, Spectre, SpectralSignatures):
        a = det_cls().fit(with_truth, model=poisoned_model)
        b = det_cls().fit(without, model=poisoned_model)
        np.testing.assert_array_equal(a.scores_, b.scores_)
        # and the scenario (which fits on the defender's view) got exactly these scores
        np.testing.assert_array_equal(a.scores_, result.scores[a.name])
        np.testing.assert_array_equal(a.flag(), result.flags[a.name])
