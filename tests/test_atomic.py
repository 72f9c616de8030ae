"""atomic.py: temp-then-rename writes (an interrupted overwrite keeps the old file), the user's
umask on the result, and the one-line check of a writable folder."""

from __future__ import annotations

import os
import stat

import pytest

from harmonize_cli import atomic
from harmonize_cli.errors import HarmonizeError


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_temporary_file_is_another_file_beside_the_target(tmp_path):
    target = tmp_path / "new" / "out.png"  # the folder is created
    with atomic.atomic_path(target) as tmp:
        assert tmp != target and tmp.parent == target.parent
        assert tmp.name.startswith(".out.png.") and tmp.name.endswith(".png.part")
        assert not target.exists()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and os.listdir(target.parent) == ["out.png"]
    with atomic.atomic_path(tmp_path / "a.tar", suffix=".gz") as tmp:
        assert tmp.name.endswith(".gz.part")
        tmp.write_bytes(b"")


def test_an_interrupted_overwrite_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]

    def interrupted(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", interrupted)
    with pytest.raises(OSError):
        atomic.atomic_write_text(target, "new text that never lands")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]


def test_write_bytes_and_text_replace_the_content(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("a much longer old content")
    atomic.atomic_write_text(target, "é\n")
    assert target.read_bytes() == "é\n".encode("utf-8")
    atomic.atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_result_has_the_users_umask_not_the_temporary_files_0600(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        assert atomic.current_umask() == umask
        assert os.umask(umask) == umask  # current_umask left it as it was
        atomic.atomic_write_text(tmp_path / "a.txt", "x")
        with atomic.atomic_path(tmp_path / "b.png") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "a.txt") == expected and _mode(tmp_path / "b.png") == expected


def test_a_writer_that_writes_nothing_leaves_no_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic.atomic_path(tmp_path / "x.png") as tmp:
            tmp.unlink()  # e.g. a writer that failed silently: nothing to rename
    assert not (tmp_path / "x.png").exists()


def test_check_writable(tmp_path):
    atomic.check_writable(tmp_path / "made" / "here")
    atomic.check_writable(tmp_path / "made" / "here")  # an existing folder is fine
    assert (tmp_path / "made" / "here").is_dir() and os.listdir(tmp_path / "made" / "here") == []
    (tmp_path / "file").write_text("")
    with pytest.raises(HarmonizeError) as info:
        atomic.check_writable(tmp_path / "file")
    assert info.value.message == f"cannot write into {tmp_path / 'file'}: File exists"  # the reason, not the repr
    assert info.value.hint == "choose a writable output location"
