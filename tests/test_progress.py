"""Progress bars for long loops inside library calls: opt-in, and a pass-through otherwise."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mithridate.utils import progress_enabled, progress_iter, show_progress


def test_off_by_default_and_scoped():
    assert not progress_enabled()
    with show_progress():
        assert progress_enabled()
        with show_progress(False):  # an inner block can turn it off (the audit's own display)
            assert not progress_enabled()
        assert progress_enabled()
    assert not progress_enabled()


@pytest.mark.parametrize("on", [False, True])
def test_progress_iter_yields_everything_in_order(on, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with show_progress(on):
        assert list(progress_iter(iter(range(7)), 7, "steps")) == list(range(7))
        # a consumer that stops early closes the bar without an error
        for i in progress_iter(range(5), 5, "steps"):
            if i == 2:
                break
        assert progress_enabled() is on


def test_detectors_score_the_same_with_progress_on(monkeypatch):
    import sys

    from mithridate.attacks.label_flip import RandomFlip
    from mithridate.data import load_dataset
    from mithridate.defenses.detect import DataOOB

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    ds = RandomFlip(0.1).poison(load_dataset("wine").train, random_state=0).dataset.without_ground_truth()
    quiet = DataOOB(n_estimators=20).fit(ds).scores_
    with show_progress():
        shown = DataOOB(n_estimators=20).fit(ds).scores_
    np.testing.assert_array_equal(quiet, shown)
