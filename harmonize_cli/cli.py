"""The `harmonize` command: a small click group; each subcommand lives in its own module.

The CLI is a thin layer: every command parses options, calls the Python API and reports.
Subcommands are imported lazily so that `harmonize --help` does not import torch.
"""

from __future__ import annotations

import importlib
import io
import re
import errno
import gc
import signal
import sys

import click

from . import __version__, console, interrupts
from .errors import HarmonizeError
from .suggest import SuggestingGroup

# name -> "module:attribute" (relative to harmonize_cli.commands)
COMMANDS = {
    "zoo": "zoo_cmd:zoo",
    "apply": "apply:apply",
    "paste": "paste:paste",
    "eval": "eval_cmd:eval_cmd",
    "prepare": "prepare:prepare",
    "synth": "synth:synth",
    "train": "train:train",
    "export": "export:export",
    "video": "video:video",
}

_HEADING = re.compile(r"^(Usage:|Options:|Commands:|Examples?:|Arguments:)", re.M)


class RichContext(click.Context):
    """Help text with highlighted section headings when printed to a terminal."""

    def get_help(self) -> str:
        text = super().get_help()
        if not sys.stdout.isatty():
            return text
        from rich.console import Console
        from rich.markup import escape

        buffer = io.StringIO()
        rich_console = Console(file=buffer, force_terminal=True, highlight=False, width=console.out_console.width)
        rich_console.print(_HEADING.sub(lambda m: f"[bold cyan]{m.group(1)}[/bold cyan]", escape(text)), end="")
        return buffer.getvalue()


class RichCommand(click.Command):
    context_class = RichContext


class LazyGroup(SuggestingGroup):
    """A click group whose subcommands are imported on first use."""

    context_class = RichContext
    command_class = RichCommand

    def __init__(self, *args, lazy_commands=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            module_name, attribute = self.lazy_commands[name].split(":")
            module = importlib.import_module(f"{__package__}.commands.{module_name}")
            return with_verbosity_options(getattr(module, attribute))
        return super().get_command(ctx, name)


def _set_verbosity(ctx, param, value):
    if value:
        console.set_verbosity(console.QUIET if param.name == "quiet" else console.VERBOSE)
    return value


def with_verbosity_options(command):
    """Give ``command`` (and a group's subcommands) ``-q/--quiet`` and ``-v/--verbose``, so they
    work after the subcommand as well as before it (``harmonize apply ... -q``)."""
    taken = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for flag, long_name, help_text in (("-q", "--quiet", "Print nothing but errors (for scripts)."),
                                       ("-v", "--verbose", "Print details (devices, files, timings).")):
        if flag not in taken and long_name not in taken:
            command.params.append(click.Option([flag, long_name], is_flag=True, expose_value=False,
                                               is_eager=True, callback=_set_verbosity, help=help_text))
    for sub in getattr(command, "commands", {}).values():
        with_verbosity_options(sub)
    return command


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings=CONTEXT_SETTINGS,
    epilog="Example:\n\n  harmonize apply examples/composites examples/masks -o harmonized/",
)
@click.version_option(__version__, "--version", prog_name="harmonize")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (for scripts).")
@click.option("-v", "--verbose", is_flag=True, help="Print details (devices, files, timings).")
def cli(quiet: bool, verbose: bool) -> None:
    """harmonize: make a pasted foreground match its background (deep image harmonization).

    \b
    Typical use:
      harmonize apply composites/ masks/ -o out/       harmonize photos
      harmonize paste object.png background.jpg -o o.png   a cut-out onto a photo, harmonized
      harmonize video shot.mp4 mask.mp4 -o out.mp4     harmonize a clip, sound kept
      harmonize synth --images p/ --masks m/ -o d/     training pairs from your photos
      harmonize prepare --root iHarmony4               pack the dataset into HDF5
      harmonize train --arch idih-hrnet-w18s           train with the paper's recipe
      harmonize eval --weights runs/x/best.pth         the paper's tables
      harmonize zoo list                               models and pretrained weights
    """
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other.")
    console.set_verbosity(console.QUIET if quiet else console.VERBOSE if verbose else console.NORMAL)


def main(argv=None) -> None:
    """Entry point of the console script: clear one-line errors and meaningful exit codes."""
    try:
        code = _run(argv)
    except KeyboardInterrupt as exc:  # a signal after the command returned, before the shutdown ignores them
        code = _interrupted(exc)
    finally:
        if argv is None:  # the real process (tests call main(argv) in their own)
            _finished()
    if argv is None and code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        _handled_keyboard_interrupt()
    sys.exit(code)


def _run(argv) -> int:
    try:
        code = cli.main(args=argv, prog_name="harmonize", standalone_mode=False)
    except HarmonizeError as exc:
        console.error(str(exc))
        return exc.exit_code
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
        return _interrupted(exc.__cause__ or exc.__context__)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except OSError as exc:  # the last net: a path the system refuses (too long, ...) is one line
        console.error(os_error_line(exc))
        return 2 if exc.errno == errno.ENAMETOOLONG else 1
    # under standalone_mode=False click returns the code of `ctx.exit(n)` / `Exit(n)` instead of exiting
    return code if isinstance(code, int) else 0


def _interrupted(cause) -> int:
    """One line and 128 + the signal for a run stopped by Ctrl-C, or by SIGTERM handled through
    :mod:`interrupts` (130 / 143); a KeyboardInterrupt's message says what was being done."""
    signum = interrupts.last_signal() or signal.SIGINT
    detail = (f" {cause.args[0]}" if isinstance(cause, KeyboardInterrupt) and cause.args
              and isinstance(cause.args[0], str) else "")
    console.error(f"interrupted ({signal.Signals(signum).name}){detail}")
    return 128 + int(signum)


_OS_ERROR_HINTS = {
    errno.ENAMETOOLONG: "shorten it: the system allows 255 bytes per name and 4096 per path",
    errno.EACCES: "check the permissions",
    errno.ENOSPC: "free some disk space",
    errno.EROFS: "choose a writable location",
}


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error no command handled itself: the path (shortened
    when very long), the system's reason and, when known, the fix."""
    name = exc.filename
    shown = "" if name is None else str(name)
    if len(shown) > 120:
        shown = f"{shown[:60]}...{shown[-40:]} ({len(shown)} characters)"
    reason = exc.strerror or type(exc).__name__
    hint = _OS_ERROR_HINTS.get(exc.errno)
    return (f"{shown}: {reason}" if shown else reason) + (f" ({hint})" if hint else "")


def _finished() -> None:
    """The work is done and its outputs are in place: a Ctrl-C or SIGTERM that lands while Python
    shuts down (atexit handlers, thread joins) must not print a traceback over a finished run.

    One that lands while the handlers are being set to "ignore" (Python's own handler still in
    place) raises here; the work is done all the same, so the swap is simply made again."""
    for _ in range(3):
        try:
            interrupts.ignore_from_now()
            break
        except KeyboardInterrupt:
            continue
    _freeze_for_shutdown()


def _freeze_for_shutdown() -> None:
    """Python's shutdown collects garbage over every object still alive, which after ``import
    torch`` took 0.30-0.35 s of each command's exit on the 2-core VM; frozen (``gc.freeze``: the
    objects move to a generation the collector skips) the exit took 0.14 s. Nothing is skipped
    (atexit handlers, buffered output and finalisers all run); only the search for cycles among
    objects that die with the process anyway (docs/benchmarks.md, "Apply against its floor")."""
    gc.freeze()


def _handled_keyboard_interrupt() -> None:
    """The interruption was handled and reported: the exit status must be ours (130 / 143).

    CPython exits by SIGINT instead (status -2, as if killed by Ctrl-C) when it has recorded a
    KeyboardInterrupt as unhandled (its ``_Py_UnhandledKeyboardInterrupt``, set when one leaves
    code run through ``PyRun_*``), even though our code above caught it. With Ctrl-C early in
    `prepare`'s scan that record was set in about 1 run in 12 (tests/test_prepare_signals.py: the
    one line printed, then -2; which code ran that way was not identified). Clear the record;
    where it cannot be reached (not CPython) nothing is done.
    """
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, AttributeError, ValueError, OSError):  # not CPython, or no such symbol
        pass

