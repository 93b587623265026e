"""Tests for mithridate.eval.metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mithridate.errors import ConfigError
from mithridate.eval import metrics as M


# -- accuracy / ASR / robust accuracy ----------------------------------------------------------
def test_accuracy_hand_computed():
    assert M.accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    assert M.accuracy([3, 3, 3], [3, 3, 3]) == 1.0
    assert M.accuracy([1, 2], [0, 0]) == 0.0
    assert M.clean_accuracy is M.accuracy


def test_accuracy_empty_is_nan():
    assert math.isnan(M.accuracy([], []))


def test_attack_success_rate_excludes_true_target_samples():
    y_true = np.array([0, 1, 2, 3, 1, 0])
    pred = np.array([0, 0, 2, 0, 0, 5])
    # non-target rows 1..4 are predicted [0, 2, 0, 0]: 3 of 4 hit the target
    assert M.attack_success_rate(y_true, pred, target=0) == pytest.approx(0.75)
    # the two true-target rows must not count, whatever they are predicted as
    pred2 = pred.copy()
    pred2[[0, 5]] = [7, 0]
    assert M.attack_success_rate(y_true, pred2, target=0) == pytest.approx(0.75)
    # another target
    assert M.attack_success_rate(y_true, pred, target=2) == pytest.approx(0.0)


def test_attack_success_rate_nan_when_all_are_target():
    assert math.isnan(M.attack_success_rate([4, 4, 4], [4, 0, 4], target=4))


def test_robust_accuracy():
    y_true = np.array([0, 1, 2, 3, 1])
    pred = np.array([0, 0, 2, 0, 0])
    # with target: rows 1..4, correct only row 2
    assert M.robust_accuracy(y_true, pred, target=0) == pytest.approx(0.25)
    # without target: all 5 rows, rows 0 and 2 correct
    assert M.robust_accuracy(y_true, pred) == pytest.approx(0.4)
    assert math.isnan(M.robust_accuracy([1, 1], [1, 1], target=1))


# -- AUROC ---------------------------------------------------------------------------------------
def test_auroc_hand_computed():
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, *) two wins -> 3/4
    assert M.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert M.auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert M.auroc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0


def test_auroc_ties_get_half_credit():
    # pos {2, 3}, neg {1, 2}: (2,1)=1, (2,2)=0.5, (3,1)=1, (3,2)=1 -> 3.5 / 4
    assert M.auroc([1, 2, 2, 3], [0, 0, 1, 1]) == pytest.approx(0.875)
    # all scores equal -> exactly 0.5
    assert M.auroc([5, 5, 5, 5, 5], [1, 0, 1, 0, 0]) == pytest.approx(0.5)


def test_auroc_nan_for_one_class():
    assert math.isnan(M.auroc([0.1, 0.2], [0, 0]))
    assert math.isnan(M.auroc([0.1, 0.2], [1, 1]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    t = rng.random(300) < 0.2
    s = rng.normal(size=300) + 0.8 * t
    assert M.auroc(s, t) == pytest.approx(roc_auc_score(t, s), abs=1e-12)
    s_tied = np.round(s, 1)  # many ties
    assert M.auroc(s_tied, t) == pytest.approx(roc_auc_score(t, s_tied), abs=1e-12)


def test_scores_with_nan_raise():
    with pytest.raises(ConfigError):
        M.auroc([0.1, np.nan, 0.3], [0, 1, 1])
    with pytest.raises(ConfigError):
        M.tpr_at_fpr([0.1, np.inf, 0.3], [0, 1, 1], 0.1)


# -- average precision ---------------------------------------------------------------------------
def test_average_precision_hand_computed():
    # ranked: 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision 1 at recall 1/2, 2/3 at recall 1
    assert M.average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_average_precision_matches_sklearn_and_nan_without_positives():
    rng = np.random.default_rng(3)
    t = rng.random(200) < 0.1
    s = rng.normal(size=200) + t
    assert M.average_precision(s, t) == pytest.approx(average_precision_score(t, s), abs=1e-12)
    assert math.isnan(M.average_precision([0.2, 0.3], [0, 0]))


# -- TPR at fixed FPR ----------------------------------------------------------------------------
def test_tpr_at_fpr_hand_computed():
    s = [0.9, 0.8, 0.8, 0.7, 0.6, 0.5]
    t = [1, 1, 0, 1, 0, 0]
    # thresholds: >=0.9 -> TPR 1/3 FPR 0; >=0.8 -> 2/3, 1/3; >=0.7 -> 1, 1/3; >=0.6 -> 1, 2/3
    assert M.tpr_at_fpr(s, t, 0.0) == pytest.approx(1 / 3)
    assert M.tpr_at_fpr(s, t, 0.2) == pytest.approx(1 / 3)
    assert M.tpr_at_fpr(s, t, 1 / 3) == pytest.approx(1.0)
    assert M.tpr_at_fpr(s, t, 1.0) == pytest.approx(1.0)


def test_tpr_at_fpr_does_not_split_ties():
    # the positive and the negative at 0.8 are tied: no threshold takes one without the other,
    # so at FPR 0 only the 0.9 positive can be caught, whatever the order of the tied rows
    assert M.tpr_at_fpr([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0], 0.0) == pytest.approx(0.5)
    assert M.tpr_at_fpr([0.9, 0.8, 0.8, 0.1], [1, 0, 1, 0], 0.0) == pytest.approx(0.5)
    assert M.tpr_at_fpr([0.8, 0.8, 0.9, 0.1], [1, 0, 1, 0], 0.0) == pytest.approx(0.5)


def test_tpr_at_fpr_zero_when_no_threshold_qualifies():
    # the top score is a negative: any threshold catching a positive has FPR >= 1/2
    assert M.tpr_at_fpr([1.0, 0.5, 0.2], [0, 1, 0], 0.0) == 0.0
    assert M.tpr_at_fpr([1.0, 0.5, 0.2], [0, 1, 0], 0.49) == 0.0
    assert M.tpr_at_fpr([1.0, 0.5, 0.2], [0, 1, 0], 0.5) == 1.0
    assert math.isnan(M.tpr_at_fpr([1.0, 0.5], [0, 0], 0.1))


# -- flagged sets ----------------------------------------------------------------------------------
def test_precision_recall_f1():
    flags = [1, 1, 0, 0, 1]
    truth = [1, 0, 1, 0, 1]
    p, r = M.precision_recall(flags, truth)
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert M.f1_score(flags, truth) == pytest.approx(2 / 3)
    p, r = M.precision_recall([1, 0, 0, 0], [1, 1, 1, 0])
    assert (p, r) == (1.0, pytest.approx(1 / 3))
    assert M.f1_score([1, 0, 0, 0], [1, 1, 1, 0]) == pytest.approx(0.5)


def test_precision_nan_without_flags_and_f1_zero():
    p, r = M.precision_recall([0, 0, 0], [1, 0, 0])
    assert math.isnan(p) and r == 0.0
    assert M.f1_score([0, 0, 0], [1, 0, 0]) == 0.0
    assert M.f1_score([1, 0, 0], [0, 1, 0]) == 0.0


def test_detection_report_keys_and_values():
    s = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5])
    t = np.array([1, 1, 0, 1, 0, 0], bool)
    rep = M.detection_report(s, t)
    assert set(rep) == {"auroc", "average_precision", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr"}
    assert rep["auroc"] == pytest.approx(roc_auc_score(t, s))
    assert rep["tpr_at_1pct_fpr"] == pytest.approx(1 / 3)
    flags = np.array([1, 1, 1, 0, 0, 0], bool)
    rep = M.detection_report(s, t, flags)
    assert set(rep) == {"auroc", "average_precision", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "n_flagged",
                        "precision", "recall", "f1", "fpr"}
    assert rep["n_flagged"] == 3
    assert rep["precision"] == pytest.approx(2 / 3)
    assert rep["recall"] == pytest.approx(2 / 3)
    assert rep["f1"] == pytest.approx(2 / 3)
    assert rep["fpr"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "fn",
    [
        lambda: M.accuracy([0, 1, 2], [0, 1]),
        lambda: M.attack_success_rate([0, 1, 2], [0, 1], 0),
        lambda: M.robust_accuracy([0, 1], [[0, 1]]),
        lambda: M.auroc([0.1, 0.2, 0.3], [0, 1]),
        lambda: M.average_precision([0.1, 0.2], [0, 1, 1]),
        lambda: M.tpr_at_fpr([0.1, 0.2], [0, 1, 1], 0.1),
        lambda: M.precision_recall([1, 0], [1, 0, 1]),
        lambda: M.f1_score([1, 0, 0], [1, 0]),
        lambda: M.detection_report([0.1, 0.2], [0, 1, 1]),
    ],
)
def test_shape_mismatch_raises_config_error(fn):
    with pytest.raises(ConfigError, match="same shape"):
        fn()


def test_precision_at_k_hand_computed():
    from mithridate.eval.metrics import precision_at_k

    scores = [0.9, 0.8, 0.7, 0.1, 0.05]
    truth = [True, False, True, False, False]
    assert precision_at_k(scores, truth) == 0.5          # k = 2 poisons: top two are {T, F}
    assert precision_at_k(scores, truth, k=3) == 2 / 3
    assert precision_at_k(scores, truth, k=1) == 1.0


def test_error_mse_hinge_by_hand():
    assert M.error_rate([0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx(0.25)
    assert M.mean_squared_error([1.0, 2.0, 4.0], [1.0, 3.0, 2.0]) == pytest.approx((0 + 1 + 4) / 3)
    # margins 2 -> 0, 0.5 -> 0.5, -1 -> 2
    assert M.hinge_loss([1, -1, 1], [2.0, -0.5, -1.0]) == pytest.approx((0 + 0.5 + 2) / 3)
    with pytest.raises(ConfigError):
        M.hinge_loss([0, 1], [0.1, 0.2])
