"""One writer per run directory: an OS file lock that dies with the process holding it.

`RunDirLock(run_dir)` takes an exclusive `flock` on `run_dir/.ued-lock` and writes its process id there;
a second process asking for the same directory is refused with a UsageError naming the holder. The lock
is released when the holder closes it or dies (a killed run never leaves a stale lock), and the temp files
of its killed writes are removed by the next holder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

import fcntl
import os
import stat
from pathlib import Path

from ued.errors import UsageError
from ued.io import remove_stale_temps

LOCK_NAME = ".ued-lock"


class RunDirLock:
    """Exclusive lock on a run directory for this process (a context manager; see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike, what: str = "training"):
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # never through a link: a planted link must not make the lock truncate another file
            self._fd = os.open(self.run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise UsageError(
                f"cannot use run directory {self.run_dir}: {exc.strerror or exc} ({LOCK_NAME}); remove "
                f"{self.run_dir / LOCK_NAME} if it is not ued's lock file"
            ) from exc
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise UsageError(
                f"{self.run_dir / LOCK_NAME} is not a regular file; remove it (ued's lock file goes there)"
            )
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode("ascii", "replace").strip() or "another process"
            os.close(self._fd)
            raise UsageError(
                f"{self.run_dir} is in use by process {holder} ({what} it); wait for it to finish or stop "
                "it, or choose another run directory"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        remove_stale_temps(self.run_dir)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
