"""Project-level promises: the README's test command is what CI runs; the CLI shell works."""

import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from harmonize_cli import __version__
from harmonize_cli.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def _readme_quickstart():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_exactly_two_quickstart_commands_and_ci_runs_the_test_one():
    commands = _readme_quickstart()
    assert len(commands) == 2
    main_job, tests = commands
    assert main_job.startswith("pip install . && harmonize ")
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests.replace("pip install", "python3 -m pip install -q").replace("python -m pytest", "python3 -m pytest") in ci


def test_ci_installs_the_video_extra_that_setup_cfg_declares():
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "av" in config["options.extras_require"]["video"]
    assert "av" not in config["options"]["install_requires"]  # optional: only `harmonize video` needs it
    assert "-e '.[test,video]'" in (ROOT / ".ci" / "run").read_text() and "[test,video]" in _readme_quickstart()[1]


def test_version_and_help():
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "zoo" in result.output
    for name in cli.list_commands(None):
        sub = runner.invoke(cli, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)
        assert "Example" in sub.output, f"`harmonize {name} --help` shows no example"


def test_python_dash_m_is_the_same_program_and_errors_are_one_line():
    out = subprocess.run([sys.executable, "-m", "harmonize_cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout
    bad = subprocess.run([sys.executable, "-m", "harmonize_cli", "zoo", "download"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Error:" in bad.stderr and "harmonize zoo list" in bad.stderr


def test_quiet_and_verbose_exclude_each_other():
    result = CliRunner().invoke(cli, ["-q", "-v", "zoo", "list"])
    assert result.exit_code == 2


def test_changelog_follows_keep_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and "keepachangelog" in text.lower()


def test_models_doc_lists_every_architecture_with_its_parameter_count():
    sys.path.insert(0, str(ROOT / "tools"))
    import gen_models_doc

    assert gen_models_doc.main(["--check"]) == 0, "docs/models.md is stale: run python tools/gen_models_doc.py"
    text = (ROOT / "docs" / "models.md").read_text()
    from harmonize_cli import zoo

    for spec in zoo.ARCHITECTURES:
        assert f"| `{spec.name}` |" in text and f"{spec.num_params:,}" in text


def test_problem_listings_show_ten_and_count_the_rest():
    from types import SimpleNamespace

    from harmonize_cli import console

    problems = [SimpleNamespace(file=f"f{index}.jpg", reason="truncated") for index in range(12)]
    lines = console.first_problems(problems, "the report")
    assert lines[0] == "  f0.jpg: truncated" and lines[9] == "  f9.jpg: truncated"
    assert lines[10:] == ["  ... 2 more in the report"]
    assert console.first_problems(problems[:10], "the manifest") == [f"  f{i}.jpg: truncated" for i in range(10)]


def test_the_batch_api_imports_from_the_package_and_the_package_stays_torch_free():
    code = ("import sys, harmonize_cli; assert 'torch' not in sys.modules, 'import harmonize_cli loads torch'; "
            "from harmonize_cli import harmonize_folder, harmonize_file; "
            "from harmonize_cli.apply.batch import harmonize_folder as direct; assert harmonize_folder is direct")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_datasets_doc_says_where_iharmony4_comes_from():
    text = (ROOT / "docs" / "datasets.md").read_text()
    assert "https://github.com/bcmi/Image_Harmonization_Datasets" in text and "DoveNet" in text
    assert "65,742" in text and "7,404" in text  # the published split sizes
