"""Write files so a crash, a kill or a full disk never leaves a half-written one behind.

Every file Crossmix writes that something later trusts (exports, stem cache entries, weights,
indexes, configs, checkpoints) goes through :func:`atomic_write`: the data goes to a temporary
file in the destination's folder, which is renamed over the destination only once complete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(dest: str | Path, *, suffix: str = ".part", fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` atomically.

    Parameters
    ----------
    dest : str or Path
        The final file. Its folder is created when missing.
    suffix : str
        Ending of the temporary name (some writers pick the format from it, e.g. ``.part.flac``).
    fsync : bool
        Flush the data to disk before the rename (for files whose loss would cost work:
        indexes, checkpoints).

    On an exception inside the block the temporary file is removed and ``dest`` is untouched.
    The file gets the usual permissions (``0666 & ~umask``), not ``mkstemp``'s private 0600.
    OSError (disk full, no permission) propagates for the caller to turn into its own error.
    """
    p = Path(dest)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix, dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
