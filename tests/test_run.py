"""`ued.run.update_step` without a run directory: one step of every teacher, as plain values."""

from __future__ import annotations

import os

import pytest
import torch

from ued.config import TrainConfig
from ued.run import Run, StepOutcome, update_step

torch.set_num_threads(1)

TINY = {
    "dr": {},
    "paired": {"hidden_size": 16, "conv_channels": 4},
    "clutr": {
        "vae_source": "pretrain",
        "pretrain_steps": 2,
        "pretrain": {"embed_dim": 4, "hidden": 4, "decoder_hidden": 4, "sequences": 16, "held_out": 2},
        "body_size": 4,
    },
    "plr": {"buffer_size": 4, "min_fill": 0.5},
    "accel": {"buffer_size": 4, "min_fill": 0.5},
}


@pytest.mark.parametrize("teacher", sorted(TINY))
def test_update_step_returns_what_happened_and_writes_nothing(teacher, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(
        teacher=teacher,
        teacher_options=TINY[teacher],
        env_options={"max_walls": 4},
        num_envs=2,
        num_steps=8,
        total_steps=64,
        seed=0,
        run_dir=str(tmp_path / "never"),
    )
    run = Run(config, workdir=None)
    try:
        outcomes = [update_step(run) for _ in range(3)]
    finally:
        run.close()
    assert all(isinstance(o, StepOutcome) for o in outcomes)
    assert (run.update, run.steps) == (3, 3 * 16)
    roles = set(run.teacher.roles)
    for outcome in outcomes:
        assert set(outcome.results) == roles and len(outcome.proposal.levels) == 2
        assert set(outcome.student_metrics) == (roles if outcome.proposal.train_students else set())
    assert run.trained_updates == sum(o.proposal.train_students for o in outcomes)
    # accel's follow-up (edited children) is played outside the step budget
    assert (run.followup_steps > 0) == any(o.teacher_report.followup is not None for o in outcomes)
    assert os.listdir(tmp_path) == []  # no run directory, no cache, no logs
