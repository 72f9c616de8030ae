"""What the batch commands (apply, paste) print at the end: status lines and the failed files."""

from __future__ import annotations

from .. import console


def say(message: str, style=None) -> None:
    """One status line on stderr, never wrapped (hidden by --quiet)."""
    if not console.is_quiet():
        console.err_console.print(message, style=style, soft_wrap=True, markup=False, highlight=False)


def print_failures(failures) -> None:
    """``failed <file>: <reason>`` on stderr for each ``(file, reason)``, even with --quiet."""
    from rich.markup import escape

    for name, reason in failures:
        console.err_console.print(f"[red]failed[/red] {escape(str(name))}: {escape(reason or '')}", soft_wrap=True)
