"""Files written so that a crash, a kill or a full disk never leaves a half-written one: the only way ued
writes a file that matters (checkpoints, configs, summaries, VAEs, eval results, manifests, levels).

`atomic_write` writes to a unique temp file beside the target, flushes and fsyncs it, gives it normal
permissions (0644 less the umask, like any new file) and renames it over the target with `os.replace`. A
failure (no space, read-only disk, permission denied) removes the temp file, leaves the old target as it
was, and raises a UsageError naming the path. Temp files of killed writes carry `TEMP_SUFFIX` and are
removed by `remove_stale_temps` on the next start.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ued.errors import UsageError

#: suffix of the temp files `atomic_write` creates (a killed write leaves one; see `remove_stale_temps`)
TEMP_SUFFIX = ".ued-tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` atomically: `write(f)` fills an in-memory buffer (so that a writer's own error types,
    e.g. torch.save's RuntimeError on a full disk, never meet the disk), whose bytes go to a temp file in the
    same folder, which is fsynced and renamed over `path`. The folder is created if missing. OS errors,
    and a `path` that exists but is not a regular file (a device, a folder, a pipe: never replaced), become
    a UsageError."""
    path = Path(path)
    check_replaceable(path)
    buffer = io.BytesIO()
    write(buffer)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}; free space or fix permissions"
        ) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise a UsageError when `path` exists and is not a regular file (or a link to one), which
    `atomic_write` must not replace and a reader must not read (/dev/full, /dev/zero never end)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise UsageError(f"{path} exists and is not a regular file; choose another path")


def check_writable(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any long work, an output `path` (given by option `flag`) that cannot be written: its
    nearest existing folder is not a writable folder, or the path exists and is not a regular file."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write {path}: {existing} is not a writable folder; choose another {flag} path"
        )
    check_replaceable(path)


#: largest text input (config, level or track file) read; larger ones are not ours (nor read to find out)
MAX_INPUT_BYTES = 64 * 2**20


def read_input_text(path: str | os.PathLike, what: str, fix: str) -> str:
    """The UTF-8 text of the user's input file `path` (`what`, e.g. "config file"), or a UsageError ending in
    `fix` when it is missing, not a regular file (a device or pipe could be read forever), over
    MAX_INPUT_BYTES, unreadable or not UTF-8."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist; {fix}")
    if not path.is_file():
        raise UsageError(f"{what} {path} is not a regular file; {fix}")
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise UsageError(f"{what} {path} is over {MAX_INPUT_BYTES >> 20} MiB; {fix}")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc}; {fix}") from exc


def write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, data: Any, *, sort_keys: bool = True) -> None:
    """`atomic_write` of `data` as indented JSON (NaN is written as null)."""
    text = json.dumps(_no_nan(data), indent=2, sort_keys=sort_keys) + "\n"
    write_text(path, text)


def _no_nan(data: Any) -> Any:
    if isinstance(data, float) and math.isnan(data):
        return None
    if isinstance(data, dict):
        return {k: _no_nan(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_no_nan(v) for v in data]
    return data


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files that killed `atomic_write` calls left in `folder`; returns what was removed.
    Call it only where this process is the one writer (e.g. holding the run directory's lock)."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                continue
    return removed


__all__ = ["TEMP_SUFFIX", "atomic_write", "check_writable", "remove_stale_temps", "write_json", "write_text"]
