"""mithridate: a toolkit for training-data poisoning.

Attack your own training pipeline the way an adversary would, find the poisoned samples
before the next retraining cycle, train models that tolerate what slips through, and state
how much a bounded adversary can still do.

The top-level package stays light: heavy parts (PyTorch, matplotlib) are imported by the
sub-modules that need them.

>>> from mithridate.data import load_dataset
>>> splits = load_dataset("digits")          # doctest: +SKIP
"""

__version__ = "0.1.0"

from mithridate.errors import MithridateError, DataError, ConfigError  # noqa: E402

__all__ = ["__version__", "MithridateError", "DataError", "ConfigError"]
