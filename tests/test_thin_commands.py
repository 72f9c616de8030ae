"""Every command is a thin layer: its `--help` (and the group's) loads no torch."""

from __future__ import annotations

import subprocess
import sys

from harmonize_cli.cli import COMMANDS

HELP_OF_EVERY_COMMAND = """
import sys
from harmonize_cli.cli import main
for argv in sys.argv[1:]:
    try:
        main(argv.split() + ["--help"])
    except SystemExit as exit:
        assert exit.code == 0, (argv, exit.code)
print("torch loaded" if "torch" in sys.modules else "torch-free")
"""


def test_the_help_of_the_group_and_of_every_command_loads_no_torch():
    argvs = ["", *sorted(COMMANDS), "zoo list", "zoo info", "zoo download"]
    out = subprocess.run([sys.executable, "-c", HELP_OF_EVERY_COMMAND, *argvs], capture_output=True, text=True,
                         check=True).stdout
    assert out.count("Usage: harmonize") == len(argvs) and out.strip().endswith("torch-free"), out[-2000:]
