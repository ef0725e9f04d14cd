"""torch's runtime for every command that runs networks: the CPU thread count and the device check."""

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


def check_device(device: str) -> None:
    """UsageError for a device torch does not know, or CUDA asked for where there is none."""
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise UsageError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for but CUDA is not available; use --device cpu")
