"""Audit: the provenance ledger, version diffs and contributor reputation.

* :class:`Ledger` (``mithridate.audit.ledger``): every audited version, sample, finding and
  contributor in a SQLAlchemy database (SQLite by default), one transaction per audit.
* :func:`diff_versions` (``mithridate.audit.diff``): new / removed / relabelled / modified
  samples between two versions.
* :func:`reputation_table` (``mithridate.audit.reputation``): Beta-Binomial posterior of each
  contributor's flag rate with credible intervals.

Names are imported lazily, so ``import mithridate.audit`` does not load SQLAlchemy or SciPy
until they are used.

>>> from mithridate.audit import Ledger, diff_versions, reputation_table   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Ledger": "ledger",
    "AuditRecorder": "ledger",
    "AuditInfo": "ledger",
    "VersionInfo": "ledger",
    "default_ledger_url": "ledger",
    "LedgerError": "migrations",
    "SCHEMA_VERSION": "migrations",
    "diff_versions": "diff",
    "sample_table": "diff",
    "VersionDiff": "diff",
    "reputation_table": "reputation",
    "contributor_counts": "reputation",
    "fit_prior": "reputation",
    "BetaPrior": "reputation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"mithridate.audit.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'mithridate.audit' has no attribute {name!r}")


def __dir__() -> list:
    return list(__all__)
