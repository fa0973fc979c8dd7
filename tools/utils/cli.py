"""One top-level handler for every script: a user error ends in one sentence and a non-zero exit code.

A user error is a :class:`~tools.utils.errors.UserError` (the project's error classes) or an operating-system
error about a path (missing, unreadable, disk full ...). Its sentence goes to stderr as ``error: ...`` and the
script exits with 1; Ctrl-C exits with 130 and one line; anything else is a bug and keeps its traceback.
``FASTERSEG_TRACEBACK=1`` in the environment shows the traceback of every error (docs/usage.md "When something
goes wrong").
"""
import errno
import os
import re
import sys

from tools.utils.errors import UserError

TRACEBACK_ENV = "FASTERSEG_TRACEBACK"
EXIT_USER_ERROR = 1
# how torch's DataLoader re-raises a worker's exception: the message holds the worker's traceback
WORKER_TRACEBACK = "Original Traceback (most recent call last):"
EXIT_INTERRUPTED = 130
# operating-system errors that are about the user's files, disk or permissions, not about the code
PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EISDIR,
               errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG, errno.EIO, errno.ENOTEMPTY}


def show_tracebacks():
    """True when the user asked for every traceback (``FASTERSEG_TRACEBACK`` set to anything but 0 or empty)."""
    return os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def is_user_error(error):
    """A project error class, or an OS error about a path; everything else is treated as a bug."""
    if isinstance(error, (UserError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return True
    return isinstance(error, OSError) and error.errno in PATH_ERRNOS


def sentence(error):
    """The one line printed for a user error."""
    if isinstance(error, UserError):
        text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    elif isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}; check the path and its permissions."
    else:
        text = str(error)
    text = str(text)
    if WORKER_TRACEBACK in text:            # re-raised from a DataLoader worker: its last line is the sentence
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if re.match(r"^[\w.]+: ", last) else last
    return " ".join(text.split()) or type(error).__name__


def run_script(main, argv=None):
    """Run a script's ``main(argv)`` and return its exit code (``sys.exit(run_script(main))``): 0, or ``main``'s
    own integer code, 1 with one sentence for a user error, 130 for Ctrl-C; a bug propagates with its traceback."""
    try:
        result = main(argv)
    except KeyboardInterrupt:
        if show_tracebacks():
            raise
        print("interrupted (Ctrl-C); an interrupted run continues with resume=True.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - classified here: user errors become one sentence
        if show_tracebacks() or not is_user_error(error):
            raise
        print(f"error: {sentence(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
