"""Exclusive advisory locks, so that two processes never write the same file at once.

One helper for every writer that must be alone: the results file of a folder, the reviews file,
a training run's checkpoints. POSIX only (fcntl.flock): the lock goes with the process however it
ends. Where fcntl is missing (Windows) no lock is taken and everything else works the same.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None


def lock_descriptor(fd: int, wait: bool = True) -> bool:
    """Take an exclusive lock on an open file or folder; it is released when `fd` is closed.

    With `wait`, block until no other process holds it; without, return False at once when one does.
    True where locks are not available (no lock taken).
    """
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


@contextmanager
def held_lock(path: str | os.PathLike, busy: Exception) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a folder, or a lock file created when missing) for the block.

    Raises `busy` at once when another process holds it (its __cause__ a BlockingIOError, which
    callers may tell apart from other failures), OSError when `path` cannot be opened.
    """
    if fcntl is None:
        yield
        return
    path = Path(path)
    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        if not lock_descriptor(fd, wait=False):
            raise busy from BlockingIOError(errno.EWOULDBLOCK, f"{path}: locked by another process")
        yield
    finally:
        os.close(fd)
