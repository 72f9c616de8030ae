"""Shell completion: documented in the README, and it completes model and released-weights names."""

import os
import subprocess
import sys
from pathlib import Path


def _complete(words, cword):
    env = dict(os.environ, _HARMONIZE_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
    code = "import sys; from harmonize_cli.cli import main; sys.argv[0] = 'harmonize'; main()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line.startswith("plain,")]


def test_model_names_complete_with_aliases():
    assert _complete("harmonize apply c m --model idih-hrnet-w18s", 5) == [
        "idih-hrnet-w18s", "idih-hrnet-w18s-v2p", "idih-hrnet-w18s-nomask"]
    assert _complete("harmonize eval --model improved_ss", 3) == ["improved_ssam256", "improved_ssam512"]
    assert "auto" in _complete("harmonize paste o b --model a", 5)


def test_released_weights_complete():
    assert _complete("harmonize zoo download hrnet18", 3) == [
        "hrnet18s_idih256", "hrnet18_idih256", "hrnet18_v2p_idih256"]
    assert "issam256" in _complete("harmonize apply c m --weights iss", 5)


def test_readme_documents_completion():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "_HARMONIZE_COMPLETE=bash_source harmonize" in readme
