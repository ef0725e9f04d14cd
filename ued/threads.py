"""torch's runtime for every command that runs networks: the CPU thread count and the device check."""

from __future__ import annotations

import os

import torch

from ued.errors import UsageError


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS tells (a cluster job's allocation),
    else the CPU count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolved_threads(threads: int | None, device: str = "cpu") -> int | None:
    """torch CPU threads for a command: `threads`, else every available core on device cpu (the maze DR
    loop: 7.4k steps/s on 2 threads vs 4.7k on 1, idle 2-core machine; on a machine busy with other jobs
    OpenMP's spin-waiting makes 1 thread faster: `--threads 1`), else None (torch's choice)."""
    if threads is not None:
        return int(threads)
    return available_cores() if str(device).split(":")[0] == "cpu" else None


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
