"""Checkpoint files: written atomically, read back with `torch.load(weights_only=True)`.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, tagged with a format marker and a
version so that a foreign or future file is refused with a clear message instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ued.errors import UsageError
from ued.io import atomic_write

FORMAT = "ued-checkpoint"
VERSION = 1
#: the file name of a run's checkpoint inside its run directory
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write `state` (plus the format marker and version) to `path` atomically (`ued.io.atomic_write`:
    temp file, fsync, rename), so a crash never leaves a half-written checkpoint."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`. A missing, corrupt or foreign file raises a
    UsageError that says what is wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}; train first (`ued train --run-dir {path.parent}`)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{path} is not a readable ued checkpoint ({first_line[:200]}); it may be corrupt or "
            "from another program: retrain, or point to a run directory written by `ued train`"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(
            f"{path} is not a ued checkpoint (no {FORMAT!r} marker); point to a run directory written by "
            "`ued train`"
        )
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(f"{path} has a malformed checkpoint version {version!r}; it is damaged or foreign")
    if version > VERSION:
        raise UsageError(
            f"{path} has checkpoint version {version}, this ued reads up to {VERSION}; upgrade ued"
        )
    return state
