"""Process settings made when ued is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
# a fresh process: import ued, then touch a 64 MiB tensor and report how much of the process is in huge pages
HUGE_KB = """
import ued, torch
x = torch.empty(16 << 20)
x.fill_(1.0)
print(sum(int(line.split()[1]) for line in open("/proc/self/smaps") if line.startswith("AnonHugePages")))
"""


def huge_kb(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", HUGE_KB], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(
    not THP.is_file() or "[never]" in THP.read_text(), reason="the kernel offers no transparent huge pages"
)
def test_large_tensors_go_in_huge_pages_unless_the_user_says_otherwise():
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    assert huge_kb(env) >= 32 * 1024
    assert huge_kb({**env, "THP_MEM_ALLOC_ENABLE": "0"}) < 32 * 1024 or "[always]" in THP.read_text()
