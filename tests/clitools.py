"""Running the console entry point in tests, as a user would (one helper for every test file)."""

import pytest


def run_main(capsys, *args):
    """``harmonize ARGS`` through the console entry point: returns (exit code, stdout, stderr)."""
    from harmonize_cli.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err
