"""Exceptions that mean "the user gave us something wrong".

The CLI turns any :class:`MithridateError` into one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""


class MithridateError(Exception):
    """Base class for errors caused by user input (files, arguments, configuration)."""


class DataError(MithridateError, ValueError):
    """A dataset is missing, malformed or unusable (bad shape, NaN, one class, ...)."""


class ConfigError(MithridateError, ValueError):
    """An argument or option is out of range or inconsistent with the data."""
