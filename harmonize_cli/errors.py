"""Errors that the CLI turns into one clear line and a non-zero exit code."""

from __future__ import annotations


class HarmonizeError(Exception):
    """A user-facing error: what went wrong, and how to fix it.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``.
    """

    exit_code = 1

    def __init__(self, message, hint=None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class UsageError(HarmonizeError):
    """Bad arguments or inputs detected before any work starts (exit code 2)."""

    exit_code = 2


class WeightsError(HarmonizeError):
    """A checkpoint that cannot be read or does not fit the architecture."""


class MissingWeightsError(WeightsError, UsageError):
    """A weights file or checkpoint named on the command line that does not exist: a usage
    error (exit 2), still a WeightsError for code that catches those."""

    exit_code = 2


class DownloadError(HarmonizeError):
    """A file could not be downloaded (offline, HTTP error, bad checksum)."""


def failure_reason(error: BaseException, out_of_memory: str | None = None) -> str:
    """One line for a per-file failure in a report (apply, paste): a HarmonizeError's own text;
    ``out_of_memory`` for a MemoryError when given; else ``Type: first line`` (at most 200
    characters of it)."""
    if isinstance(error, HarmonizeError):
        return str(error)
    if out_of_memory is not None and isinstance(error, MemoryError):
        return out_of_memory
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
