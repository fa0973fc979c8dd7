"""The base class of every error a user can fix: a bad value, file or folder, named in one sentence.

Scripts end through :func:`tools.utils.cli.run_script`, which prints such an error's sentence without a
traceback and exits non-zero; any other exception is a bug and keeps its traceback. Each layer keeps its own
error classes (``ConfigError``, ``DataError``, ``WriteError`` ...) and adds :class:`UserError` as a base, next
to the built-in base that callers already catch (``ValueError``, ``OSError`` ...).
"""


class UserError(Exception):
    """An error whose message is one sentence naming the value, file or folder at fault and what to do."""
