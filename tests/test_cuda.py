"""The CUDA path (`--device cuda`): a tiny run of each teacher family on the GPU, and the batched maze env's
parity with the CPU. Skipped, with this reason, on machines without CUDA (benchmarks/gpu_check.sh runs it
on a GPU machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ued.config import TrainConfig
from ued.environments.batched_maze import BatchedMazeEnv
from ued.environments.maze import MazeFamily
from ued.runner import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.mark.parametrize("teacher", ["dr", "paired", "plr"])
def test_tiny_run_on_cuda(tmp_path, teacher):
    config = TrainConfig(
        teacher=teacher,
        device="cuda",
        num_envs=8,
        num_steps=16,
        total_steps=8 * 16 * 2,
        run_dir=str(tmp_path / teacher),
        image_interval=0,
        eval_interval=0,
        teacher_options={"buffer_size": 8, "min_fill": 0.1} if teacher == "plr" else {},
    )
    summary = train(config, progress=False)
    assert summary["steps"] == 256 and np.isfinite(summary["mean_return"])


def test_batched_maze_on_cuda_matches_the_cpu():
    family = MazeFamily()
    rng = np.random.default_rng(0)
    levels = [family.sample(rng) for _ in range(16)]
    envs = [BatchedMazeEnv(16, device=d, levels=levels, array_ops="torch") for d in ("cpu", "cuda")]
    obs = [e.reset(seed=1) for e in envs]
    actions = torch.as_tensor(rng.integers(0, 7, size=(100, 16)))
    for t in range(100):
        out = [e.step(actions[t].to(e.device)) for e in envs]
        for key in ("image", "direction"):
            assert torch.equal(out[0][0][key], out[1][0][key].cpu())
        for a, b in zip(out[0][1:], out[1][1:]):
            assert torch.equal(a, b.cpu())
    assert obs[0]["image"].shape == (16, 5, 5, 3)
