"""Errors that the CLI turns into one clear line and a non-zero exit code."""


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
