"""Fixtures shared by several test modules (the expensive ones run once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_result():
    """The `mithridate demo` scenario on digits, seed 0 (three trainings): shared by the end-to-end
    figure tests and the report tests."""
    from mithridate.eval.scenario import run_demo

    return run_demo(rate=0.05, seed=0)
