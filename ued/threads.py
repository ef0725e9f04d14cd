"""torch's CPU thread count, chosen the same way by every command that runs networks."""

from __future__ import annotations

import torch

from ued.errors import UsageError


def resolved_threads(threads: int | None, device: str = "cpu") -> int | None:
    """torch CPU threads for a command: `threads`, else 1 on device cpu (small networks; measured faster
    than 2 threads on a 2-core machine, and far faster when the cores are busy), else None (torch's choice)."""
    if threads is not None:
        return int(threads)
    return 1 if str(device).split(":")[0] == "cpu" else None


def apply_threads(threads: int | None, device: str = "cpu") -> int | None:
    """Set torch's CPU threads as `resolved_threads` picks them and return the count set; a count below 1
    is a UsageError."""
    if threads is not None and int(threads) < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    count = resolved_threads(threads, device)
    if count is not None:
        torch.set_num_threads(count)
    return count
