"""One error path for the entry points (``train.py``, ``test.py``): every failure ends in one line.

:func:`run_cli` calls an entry point's ``main(argv)`` and turns whatever escapes it into one line on
stderr and an exit status, with no traceback:

* :class:`UserError` (and the ``ValueError`` / ``FileNotFoundError`` / ``ConfigError`` of a bad
  config, a missing file): ``<prog>: error: <message>``; status ``exc.status`` (2 for a bad
  command line or config, 1 for a failure while running);
* ``OSError(ENOSPC)``: ``<prog>: error: no space left on device ...`` (status 1);
* Ctrl-C (``KeyboardInterrupt``): ``<prog>: interrupted``, status 130; SIGTERM is raised as
  :class:`Terminated` (a ``KeyboardInterrupt``), so the same clean-up runs: status 143;
* anything else (a bug): ``<prog>: error: <Type>: <message> (run with --debug for the traceback)``, status 1.

``--debug`` anywhere on the command line (removed before ``main`` sees it) or ``SJFRAME_DEBUG=1``
prints the traceback as well. Messages spanning several lines are joined into one.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["CheckpointError", "DiskFullError", "Terminated", "UserError", "debug_enabled", "one_line", "run_cli"]

#: exit status of a run stopped by SIGTERM (128 + 15), as a shell reports it
SIGTERM_STATUS = 143
#: exit status of a run stopped by Ctrl-C (128 + 2)
SIGINT_STATUS = 130


class UserError(Exception):
    """A failure the user caused or can fix; the message names the file or flag. ``status``: the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file that cannot be read (truncated, random bytes) or does not fit the model."""


class DiskFullError(UserError):
    """Writing a file failed for lack of space (``ENOSPC``); the previous version of the file is kept."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs (curves, resume hint)."""


def debug_enabled(argv: list[str] | None = None) -> bool:
    """``--debug`` in ``argv`` or ``SJFRAME_DEBUG`` set to something other than ``''`` / ``0``."""
    return (argv is not None and "--debug" in argv) or os.environ.get("SJFRAME_DEBUG", "") not in ("", "0")


def one_line(exc: BaseException | str) -> str:
    """The message of ``exc`` on one line (lines joined with spaces; the type name when it is empty)."""
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def describe(exc: BaseException) -> tuple[str, int]:
    """``(one-line message, exit status)`` of an exception escaping an entry point."""
    from sjframe.core.config import ConfigError

    if isinstance(exc, UserError):
        return one_line(exc), exc.status
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return f"no space left on device{where}", 1
    if isinstance(exc, ConfigError):
        return one_line(exc), 2
    if isinstance(exc, (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)):
        return one_line(exc), 1
    return f"{type(exc).__name__}: {one_line(exc)} (run with --debug for the traceback)", 1


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def run_cli(prog: str, main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run ``main(argv)`` (without ``--debug``) and map every failure to one stderr line and an exit status."""
    debug = debug_enabled(argv)
    argv = [a for a in argv if a != "--debug"]
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return main(argv)
    except KeyboardInterrupt as exc:
        if debug:
            traceback.print_exc()
        terminated = isinstance(exc, Terminated)
        print(f"{prog}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        return SIGTERM_STATUS if terminated else SIGINT_STATUS
    except SystemExit:
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message, status = describe(exc)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return status
    finally:
        if in_main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)
