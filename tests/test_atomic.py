"""core.atomic: a failed write leaves the old file and no temporary behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.atomic import atomic_write, sha256_file


def test_success_replaces_with_normal_permissions(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "f.json"
    old = os.umask(0o022)
    try:
        with atomic_write(dest) as tmp:
            assert tmp.parent == dest.parent and tmp != dest
            tmp.write_text("new")
            assert not dest.exists()  # nothing visible until the block completes
    finally:
        os.umask(old)
    assert dest.read_text() == "new"
    assert dest.stat().st_mode & 0o777 == 0o644
    assert os.listdir(dest.parent) == ["f.json"]


def test_failure_keeps_the_old_file_and_cleans_up(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(OSError, match="No space left"), atomic_write(dest, fsync=True) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
