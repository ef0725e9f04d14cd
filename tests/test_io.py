"""ued.io: atomic writes (normal permissions, nothing left behind), output-path checks, stale temp files."""

from __future__ import annotations

import os
import stat

import pytest

from ued.errors import UsageError
from ued.io import TEMP_SUFFIX, atomic_write, check_writable, remove_stale_temps, write_text


def test_atomic_writes_get_normal_permissions_and_leave_no_temp(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "sub" / "out.txt"
        write_text(path, "hello")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # like any new file, not mkstemp's 0600
        assert [p.name for p in path.parent.iterdir()] == ["out.txt"]
    finally:
        os.umask(old)


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_output_paths_are_checked_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="not a writable folder; choose another --json path"):
        check_writable(blocker / "out.json", "--json")
    with pytest.raises(UsageError, match="not a regular file"):
        check_writable(tmp_path, "--out")
    check_writable(tmp_path / "new" / "deeper" / "out.pt", "--out")  # folders are created when written


def test_stale_temps_of_killed_writes_are_removed(tmp_path):
    (tmp_path / f".checkpoint.pt.x1{TEMP_SUFFIX}").write_bytes(b"half")
    (tmp_path / "keep.txt").write_text("keep")
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [f".checkpoint.pt.x1{TEMP_SUFFIX}"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
