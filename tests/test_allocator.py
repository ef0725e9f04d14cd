"""Freed memory kept for reuse (`ued.allocator`, `TrainConfig.keep_freed_memory`): large blocks stop faulting
their pages in again, and training computes the same weights with it and without it. The setting holds
for a whole process, so each case runs in a fresh one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ued.config import TrainConfig

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

FAULTS = """
import ctypes, resource, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: 4 kB pages, so that faults count pages
import torch
from ued.allocator import keep_freed_memory
if sys.argv[1] == "keep" and keep_freed_memory() < 2**26:
    print("capped")
    sys.exit()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def minibatch():  # temporaries of 64 and 32 MB, above glibc's largest adaptive mmap threshold (32 MB)
    a = torch.ones(2**24)
    b = a[: 2**23] * 2.0
    return float((b + 1.0).relu().sum())
minibatch()
before = faults()
for _ in range(5):
    minibatch()
print(faults() - before)
"""


#: settings of glibc and torch that would change the allocations measured
ALLOCATOR_ENV = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
    "THP_MEM_ALLOC_ENABLE",
)


def page_faults(mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], check=True, capture_output=True, text=True, env=env
    )
    return out.stdout.split()[-1]


def test_freed_large_blocks_are_reused_instead_of_faulted_in_again():
    kept = page_faults("keep")
    if kept == "capped":
        pytest.skip("glibc before 2.35 caps the mmap threshold at 32 MB, below this test's 64 MB blocks")
    returned = int(page_faults("return"))
    pages = 5 * 160 * 2**20 // 4096  # five minibatches of 160 MB in 4 kB pages
    assert returned > pages // 2  # every block mapped afresh
    # most blocks reused (how many depends on where glibc's aligned allocations fall: 3.6-8x fewer here)
    assert int(kept) < returned // 2


def train_in_fresh_process(run_dir, flag: str, *args: str) -> dict:
    cmd = [sys.executable, "-m", "ued.cli.main", "train", "--teacher", "dr", "--seed", "5", "--threads", "1"]
    cmd += ["--no-progress", "--run-dir", str(run_dir), flag, *args]
    subprocess.run(cmd, check=True, capture_output=True)
    return load_checkpoint(run_dir / CHECKPOINT_NAME)["students"]["protagonist"]


def tensors(tree) -> list[torch.Tensor]:
    """Every tensor of a nested checkpoint part, in order."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, (list, tuple)) else []
    return [t for item in items for t in tensors(item)]


@pytest.mark.parametrize(
    "args",
    [
        ("--env", "maze", "--num-envs", "4", "--num-steps", "32", "--total-steps", "256"),
        ("--env", "carracing", "--num-envs", "2", "--num-steps", "16", "--total-steps", "64"),
    ],
    ids=["maze", "carracing"],
)
def test_training_computes_the_same_weights_with_freed_memory_kept_or_returned(tmp_path, args):
    kept = tensors(train_in_fresh_process(tmp_path / "kept", "--keep-freed-memory", *args))
    returned = tensors(train_in_fresh_process(tmp_path / "returned", "--return-freed-memory", *args))
    assert len(kept) == len(returned) > 10
    assert all(torch.equal(a, b) for a, b in zip(kept, returned))


def test_the_setting_is_on_by_default_and_may_change_on_resume():
    from ued.runner import CHANGEABLE_ON_RESUME

    assert TrainConfig().keep_freed_memory is True
    assert "keep_freed_memory" in CHANGEABLE_ON_RESUME
