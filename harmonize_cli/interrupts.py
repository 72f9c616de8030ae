"""Ctrl-C and SIGTERM for every long command: one line, a clean stop, exit 130 / 143, never a hang.

One mechanism for prepare, apply, paste, synth, eval, video, downloads and train: one handler
installation (:func:`_swap`, with both signals blocked while they change hands, so no signal
lands between the two), one record of what was received (:func:`last_signal`), two policies:

- :func:`stopping` (and :func:`handled` below it): stop *now*. Every command but train wraps its
  work in ``with interrupts.stopping("interrupted ({signal}); ...")``: the first signal raises
  ``KeyboardInterrupt`` in the main thread; what leaves the block is :class:`Interrupted`.
- :class:`StopRequest`: stop *at the next clean point*. ``train`` installs one: the first
  signal is recorded (``requested``) and the loop saves a resumable checkpoint after the
  current step; a second Ctrl-C abandons at once.

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

__all__ = ["Interrupted", "StopRequest", "blocked_while_starting_workers", "check", "deferred", "handled",
           "ignore_from_now", "ignore_in_worker", "last_signal", "pending", "stopping"]


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
        self.first = None  # the first signal of the last handled() block, kept after it ends
        self.defer = 0  # depth of deferred()
        self.previous_hook = sys.__unraisablehook__
        self.last = None  # the last signal handled, kept after handled() ends (for the exit code)


_state = _State()


def _handler(signum, frame):
    _state.last = signum
    first = _state.signum is None
    if first:
        _state.signum = _state.first = signum
    if first and _state.active and not _state.defer:
        raise KeyboardInterrupt  # (while handled() restores the handlers it only records)


def _unraisable_hook(unraisable):
    """Drop Python's report of our own KeyboardInterrupt raised where it cannot propagate."""
    if _state.signum is not None and isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    _state.previous_hook(unraisable)


@contextmanager
def _blocked():
    """SIGINT and SIGTERM blocked in this thread for the block: one that arrives waits for its end."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _swap(handlers: dict, previous: dict | None = None) -> dict:
    """Install ``{signum: handler}`` with both signals blocked meanwhile, so that no signal lands
    between two of them (half ours, half the previous owner's). The handlers replaced go into
    ``previous`` as they are replaced (a signal that waited may raise the moment the signals are
    unblocked: the caller's dict already holds what to restore) and are returned."""
    previous = {} if previous is None else previous
    with _blocked():
        for signum, handler in handlers.items():
            try:
                previous[signum] = signal.signal(signum, handler)
            except (ValueError, OSError):  # not the main thread, or no such signal here
                pass
    return previous


def last_signal() -> int | None:
    """The last SIGINT / SIGTERM handled by :func:`handled` or a :class:`StopRequest` in this
    process (None when none): what a ``KeyboardInterrupt`` that reached the CLI stands for."""
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
    does nothing. The depth is counted before the handlers are installed and they are
    installed inside the ``try``: a signal that lands the moment they are in place is already
    this block's (it used to escape before the block began, taken for a plain Ctrl-C).
    """
    caught = _Caught()
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    outer = not _state.active
    if outer:
        _state.signum = _state.first = _state.last = None
        _state.previous_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable_hook
    _state.active += 1
    previous = {}
    try:
        if outer:
            _swap({signum: _handler for signum in SIGNALS}, previous)
        yield caught
    except BaseException as exc:
        if _state.signum is not None and not isinstance(exc, KeyboardInterrupt):
            # whatever broke after a signal (a KeyboardInterrupt turned into another error by
            # a library, say) is reported as the interruption it is
            raise KeyboardInterrupt from exc
        raise
    finally:
        _state.active -= 1
        if not _state.active:
            _swap(previous)  # a signal meanwhile is only recorded, then raised below
            sys.unraisablehook = _state.previous_hook
        caught._final = _state.signum
        if not _state.active:
            _state.signum = None
    if caught._final is not None:
        raise KeyboardInterrupt  # received, swallowed somewhere, never re-raised: not a success


@contextmanager
def stopping(message: str):
    """The guard of a long command: :func:`handled` around the block, and the
    ``KeyboardInterrupt`` that leaves it becomes :class:`Interrupted` with ``message`` (its
    ``{signal}`` is the signal's name): one line, exit 130 (SIGINT, or a ``KeyboardInterrupt``
    from elsewhere) or 143 (SIGTERM).

    >>> with interrupts.stopping("interrupted ({signal}); no partial file is left behind"):
    ...     pack_dataset(...)
    """
    try:
        with handled():
            yield
    except KeyboardInterrupt:
        raise Interrupted(_state.first or signal.SIGINT, message) from None


class StopRequest:
    """Stop at the next clean point instead of at once (``train``: after the current step, with
    a resumable checkpoint). Between :meth:`install` and :meth:`restore` the first SIGINT or
    SIGTERM is recorded (``signum``, ``requested``) and handed to ``announce(signum)``; a
    second Ctrl-C abandons at once (``KeyboardInterrupt``)."""

    def __init__(self, announce=None):
        self.signum = None
        self.announce = announce
        self.previous = {}

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            _swap({signum: self._handle for signum in SIGNALS}, self.previous)
        return self

    def restore(self) -> None:
        _swap(self.previous)
        self.previous = {}

    def _handle(self, signum, _frame):
        _state.last = signum
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C abandons at once
        self.signum = signum
        if self.announce is not None:
            self.announce(signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextmanager
def blocked_while_starting_workers():
    """Block SIGINT and SIGTERM in this thread while worker processes start.

    A child inherits the blocked mask, so a signal sent to it before it has run
    :func:`ignore_in_worker` waits, and is then discarded, instead of killing it or running
    the parent's handler there.
    """
    with _blocked():
        yield


def ignore_from_now() -> None:
    """Ignore SIGINT and SIGTERM from now on (the work is done and in place: Python's shutdown);
    one that arrived meanwhile and waits is discarded."""
    _swap({signum: signal.SIG_IGN for signum in SIGNALS})


def ignore_in_worker() -> None:
    """In a worker process: ignore SIGINT and SIGTERM (the parent decides when it ends)."""
    ignore_from_now()
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # pending ones are now discarded
    _state.active = 0
    _state.signum = None
    _state.defer = 0
