"""One place for terminal output: a rich console on stderr, quiet/verbose levels, progress bars.

Results meant for scripts (tables, JSON) go to stdout through :func:`print_result`; everything
else (progress, notices, errors) goes to stderr so that ``--quiet`` and pipes stay clean.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

QUIET, NORMAL, VERBOSE = 0, 1, 2

_state = {"level": int(os.environ.get("HARMONIZE_VERBOSITY", NORMAL))}

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def set_verbosity(level: int) -> None:
    _state["level"] = level


def verbosity() -> int:
    return _state["level"]


def is_quiet() -> bool:
    return _state["level"] <= QUIET


def info(message: str) -> None:
    """A progress or status line (hidden by ``--quiet``)."""
    if _state["level"] >= NORMAL:
        err_console.print(message, soft_wrap=True)  # never wrapped here: URLs and paths stay whole


def debug(message: str) -> None:
    """A detail line (shown only with ``--verbose``)."""
    if _state["level"] >= VERBOSE:
        err_console.print(f"[dim]{message}[/dim]")


def warn(message: str) -> None:
    """A notice the user should read (shown unless ``--quiet``)."""
    if _state["level"] >= NORMAL:
        err_console.print(message, style="yellow", soft_wrap=True, markup=False, highlight=False)  # one line


def error(message: str) -> None:
    """An error line (always shown); the message is printed as it is (brackets in it, such as
    ``pip install 'harmonize-cli[video]'``, are no markup)."""
    from rich.markup import escape

    err_console.print(f"[bold red]Error:[/bold red] {escape(message)}", soft_wrap=True)


def print_result(renderable) -> None:
    """Primary output (tables, summaries) on stdout; hidden by ``--quiet``."""
    if _state["level"] >= NORMAL:
        out_console.print(renderable)


def first_problems(items, more_in: str, limit: int = 10) -> list:
    """Summary lines for problems with ``.file`` and ``.reason``: the first ``limit`` of them,
    then how many more are listed in ``more_in`` (e.g. "the report")."""
    lines = [f"  {item.file}: {item.reason}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... {len(items) - limit} more in {more_in}")
    return lines


class _NullProgress:
    """Stand-in with the rich Progress interface when output is quiet."""

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, *args, **kwargs):
        pass

    def advance(self, *args, **kwargs):
        pass

    def remove_task(self, *args, **kwargs):
        pass


@contextmanager
def progress(unit: str = "it", transient: bool = False):
    """A rich progress bar with count, rate and ETA (nothing at all with ``--quiet``).

    >>> with progress("img") as bar:
    ...     task = bar.add_task("apply", total=10)
    ...     bar.advance(task)
    """
    if is_quiet():
        yield _NullProgress()
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    ]
    bar = Progress(*columns, console=err_console, transient=transient, refresh_per_second=4)
    with bar:
        yield _ProgressWithStatus(bar)


def phase_updater(bar):
    """The ``on_progress(phase, done, total)`` callback of work done in named phases (prepare's
    scan and pack, synth's check and synth): one task of ``bar`` per phase, titled by its name.

    >>> with progress("img") as bar:
    ...     pack_dataset(root, on_progress=phase_updater(bar))
    """
    tasks = {}

    def on_progress(phase, done, total):
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    return on_progress


class _RateColumn(TextColumn):
    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):
        from rich.text import Text

        # items finished per wall-clock second since the task started: the same definition as the
        # summaries (rich's own speed is a recent-window estimate, inflated by bursts)
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:.2f} {self.unit}/s", style="progress.data.speed")


class _ProgressWithStatus:
    """Progress wrapper that always provides the ``status`` field used by the columns."""

    def __init__(self, bar: Progress):
        self._bar = bar

    def add_task(self, description, total=None, status="", **fields):
        return self._bar.add_task(description, total=total, status=status, **fields)

    def update(self, task, **kwargs):
        self._bar.update(task, **kwargs)

    def advance(self, task, amount=1):
        self._bar.advance(task, amount)

    def remove_task(self, task):
        self._bar.remove_task(task)
