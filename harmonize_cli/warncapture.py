"""Collect the warnings one thread raises, without touching other threads' warnings.

``warnings.catch_warnings`` swaps process-wide state (``warnings.showwarning`` and the filter
list) and restores it on exit; two threads that use it at once (apply decodes in a pool) restore
each other's state, so one file's "Corrupt EXIF data" reaches stderr raw or lands in another
file's notes. Here a single process-wide hook routes each warning to the collector of the thread
that raised it; threads without a collector see warnings as before.

Pillow's warnings are shown every time while the hook is in place (filter ``always`` for
modules ``PIL.*``), so two files with the same damage each get their note.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple, Type

_local = threading.local()
_lock = threading.Lock()


class Collected(List[Tuple[Type[Warning], str]]):
    """(category, one-line message) of each warning raised in this thread, in order."""

    def messages(self, skip: Tuple[Type[Warning], ...] = ()) -> List[str]:
        return [text for category, text in self if not issubclass(category, skip)]


def _route(message, category, filename, lineno, file=None, line=None):
    sink: Optional[Collected] = getattr(_local, "sink", None)
    if sink is not None:
        sink.append((category, " ".join(str(message).split())))
        return
    _route.previous(message, category, filename, lineno, file, line)


def _install() -> None:
    """Put the hook in place (again, where something such as a test harness replaced it)."""
    with _lock:
        if warnings.showwarning is not _route:
            _route.previous = warnings.showwarning
            warnings.showwarning = _route
        warnings.filterwarnings("always", module=r"PIL(\.|$)")  # moves it to the front if present


@contextmanager
def collected() -> Iterator[Collected]:
    """``with collected() as caught:`` the warnings this thread raises inside go to ``caught``."""
    _install()
    previous = getattr(_local, "sink", None)
    sink = Collected()
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = previous
