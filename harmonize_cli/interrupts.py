"""Ctrl-C and SIGTERM for long commands: one line, a clean stop, exit 130 / 143, never a hang.

The parent process owns shutdown:

- :func:`handled` installs one handler for SIGINT and SIGTERM. The first signal raises
  ``KeyboardInterrupt`` in the main thread (at once, even inside a blocking wait); later
  signals are only recorded, so the cleanup they interrupt is never itself interrupted.
- A signal can be *swallowed*: when ``KeyboardInterrupt`` is raised inside a ``__del__`` or a
  weakref callback, Python drops it ("Exception ignored ...") and carries on. Inside
  :func:`handled` that report is silenced (it is not an error of its own), the long loops
  call :func:`check`, which raises again while a signal is pending, and leaving
  :func:`handled` raises it at the latest, so a run that got a signal never ends as a success.
- :func:`deferred` marks a short critical section (starting worker processes): a signal that
  arrives inside it is raised when it ends.
- Worker processes call :func:`ignore_in_worker` first: a Ctrl-C on the terminal reaches the
  whole process group, and a worker must neither print a traceback nor die holding a lock;
  the parent stops them (SIGKILL, with timeouts) when it unwinds.

:class:`Interrupted` is the error a command raises once it has cleaned up: the CLI prints its
one line and exits with ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from .errors import HarmonizeError

SIGNALS = (signal.SIGINT, signal.SIGTERM)

__all__ = ["Interrupted", "blocked_while_starting_workers", "check", "deferred", "handled",
           "ignore_in_worker", "last_signal", "pending"]


class Interrupted(HarmonizeError):
    """The run was stopped by a signal; ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int, message: str | None = None):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        name = signal.Signals(self.signum).name
        super().__init__(message.format(signal=name) if message else f"interrupted ({name})")


class _State:
    def __init__(self):
        self.active = 0  # nesting depth of handled()
        self.signum = None  # the first signal received, until handled() ends
        self.defer = 0  # depth of deferred()
        self.previous_hook = sys.__unraisablehook__
        self.last = None  # the last signal handled, kept after handled() ends (for the exit code)


_state = _State()


def _handler(signum, frame):
    _state.last = signum
    first = _state.signum is None
    if first:
        _state.signum = signum
    if first and not _state.defer:
        raise KeyboardInterrupt


def _unraisable_hook(unraisable):
    """Drop Python's report of our own KeyboardInterrupt raised where it cannot propagate."""
    if _state.signum is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    _state.previous_hook(unraisable)


def last_signal() -> int | None:
    """The last SIGINT / SIGTERM handled by :func:`handled` in this process (None when none):
    what a ``KeyboardInterrupt`` that reached the CLI stands for."""
    return _state.last


def pending() -> int | None:
    """The signal received inside :func:`handled` (None when none)."""
    return _state.signum


def check() -> None:
    """Raise ``KeyboardInterrupt`` when a signal was received (call it in long loops)."""
    if _state.active and _state.signum is not None and not _state.defer:
        raise KeyboardInterrupt


@contextmanager
def deferred():
    """A critical section: a signal received inside it is raised when it ends."""
    _state.defer += 1
    try:
        yield
    finally:
        _state.defer -= 1
    check()


class _Caught:
    """What :func:`handled` yields: ``signum`` of the signal received, or None."""

    def __init__(self):
        self._final = None

    @property
    def signum(self) -> int | None:
        return self._final if self._final is not None else _state.signum


@contextmanager
def handled():
    """Handle SIGINT and SIGTERM in the main thread for the duration of the block.

    Inside, either signal raises ``KeyboardInterrupt`` once; ``caught.signum`` tells which
    arrived (None for a ``KeyboardInterrupt`` from elsewhere). Outside the main thread it
    does nothing.
    """
    caught = _Caught()
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {}
    if not _state.active:
        _state.signum = None
        _state.last = None
        _state.previous_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable_hook
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, _handler)
    _state.active += 1
    try:
        yield caught
    except BaseException as exc:
        if _state.signum is not None and not isinstance(exc, KeyboardInterrupt):
            # whatever broke after a signal (a KeyboardInterrupt turned into another error by
            # a library, say) is reported as the interruption it is
            raise KeyboardInterrupt from exc
        raise
    finally:
        _state.active -= 1
        caught._final = _state.signum
        if not _state.active:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            sys.unraisablehook = _state.previous_hook
            _state.signum = None
    if caught._final is not None:
        raise KeyboardInterrupt  # received, swallowed somewhere, never re-raised: not a success


@contextmanager
def blocked_while_starting_workers():
    """Block SIGINT and SIGTERM in this thread while worker processes start.

    A child inherits the blocked mask, so a signal sent to it before it has run
    :func:`ignore_in_worker` waits, and is then discarded, instead of killing it or running
    the parent's handler there.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_in_worker() -> None:
    """In a worker process: ignore SIGINT and SIGTERM (the parent decides when it ends)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # pending ones are now discarded
    _state.active = 0
    _state.signum = None
    _state.defer = 0
