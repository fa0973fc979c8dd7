"""Errors raised for bad data, each with one sentence that names the file (or line) and says what to do.

The original FasterSeg failed on bad data with bare asserts, ``NoneType`` errors from ``cv2.imread`` or
cityscapesscripts' ``sys.exit``; these classes let scripts and tests catch data problems precisely.
"""

from tools.utils.errors import UserError


class DataError(UserError, ValueError):
    """A data file or file list that exists but cannot be used (corrupt, malformed, wrong values)."""


class DataFileNotFoundError(UserError, FileNotFoundError):
    """A file named by a file list, a config key or a command-line argument does not exist."""
