"""The README tells the truth: every Python snippet runs as written (from a copy of the
repository's root, offline), and its install and output claims say what they should."""

import re
import shutil
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ALL_SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)
# A snippet that needs inputs nothing ships (a video of one's own) says so in its first line;
# every other snippet runs here.
NOT_RUN = "# not run by tests/test_readme.py:"
SNIPPETS = [snippet for snippet in ALL_SNIPPETS if not snippet.startswith(NOT_RUN)]


def test_the_readme_has_python_snippets_and_few_are_exempt():
    assert len(SNIPPETS) >= 3 and SNIPPETS == ALL_SNIPPETS  # every snippet runs (the video one on examples/clip)


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_python_snippet_runs_as_written(index, tmp_path, monkeypatch, capsys):
    """Each snippet in a fresh namespace, in a folder holding only a copy of `examples/` (what a
    user has after cloning), offline with an empty weights cache (conftest): nothing may be
    undefined, no placeholder path may be missing, no download may be needed."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the offline fallback's notice is a warning in Python
        exec(compile(SNIPPETS[index], f"README.md python snippet {index + 1}", "exec"), {"__name__": "__readme__"})
    capsys.readouterr()


def test_readme_snippets_produce_what_they_say(tmp_path, monkeypatch, capsys):
    """The outputs the comments promise: a harmonized file, five done entries, the detected
    architecture and a 1 x 3 x 256 x 256 prediction."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, snippet in enumerate(SNIPPETS):
            exec(compile(snippet, f"snippet {index + 1}", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert (tmp_path / "rocket_harmonized.png").is_file()
    assert sorted(path.name for path in (tmp_path / "harmonized").iterdir() if path.suffix != ".json") == sorted(
        path.name for path in (ROOT / "examples" / "composites").iterdir())
    assert sorted(path.name for path in (tmp_path / "harmonized_clip").iterdir()) == [f"{i:03d}.png" for i in range(12)]
    assert "12 []" in out  # twelve frames, no scene cut in a slow pan
    assert "'done': 5" in out and "idih-hrnet-w18s" in out and "(1, 3, 256, 256)" in out


def test_readme_documents_the_cpu_only_install_beside_the_default():
    """A CPU machine need not download the CUDA build of torch: PyTorch's CPU wheel index is named
    in a command block after the default install."""
    quickstart = README[README.index("## Quickstart"):README.index("## From dataset to table")]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, re.S)
    assert len(blocks) >= 2, "the CPU-only install needs its own command block beside the default"
    cpu = blocks[1]
    assert re.search(r"pip install torch --index-url https://download\.pytorch\.org/whl/cpu", cpu)
    assert "pip install . && harmonize apply examples/composites examples/masks -o harmonized/" in cpu


def test_readme_says_what_happens_to_the_background_in_jpeg_outputs():
    intro = README[:README.index("## Quickstart")]
    assert "exactly as it was" in intro and "JPEG" in intro and "lossless" in intro
