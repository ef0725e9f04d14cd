"""The training loop: outputs in the run directory, checkpoints, resume, reproducibility, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from ued.errors import UsageError
from ued.runner import CHECKPOINT_NAME as RUNNER_CHECKPOINT_NAME
from ued.runner import TrainConfig, field_docs, level_grid, train

torch.set_num_threads(1)

TINY = {"num_envs": 4, "num_steps": 32, "checkpoint_interval": 1, "image_interval": 1, "threads": 1}


def tiny(run_dir, **kw) -> TrainConfig:
    return TrainConfig(run_dir=str(run_dir), **{**TINY, "total_steps": 256, **kw})


def weights(run_dir):
    return load_checkpoint(run_dir / CHECKPOINT_NAME)["students"]["protagonist"]["policy"]


def test_dr_run_writes_events_config_checkpoint_and_resumes(tmp_path):
    run = tmp_path / "run"
    summary = train(tiny(run), progress=False)
    assert summary["steps"] == 256 and summary["updates"] == 2
    assert (run / "config.json").is_file() and (run / CHECKPOINT_NAME).is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["teacher"] == "dr" and config["total_steps"] == 256
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    tags = events.Tags()
    for tag in (
        "protagonist/mean_return",
        "protagonist/solved_rate",
        "protagonist/policy_loss",
        "protagonist/entropy",
        "perf/steps_per_second",
        "levels/walls",
        "levels/shortest_path",
    ):
        assert tag in tags["scalars"], tag
    assert [e.step for e in events.Scalars("protagonist/mean_return")] == [128, 256]
    assert "levels/proposed" in tags["images"]
    state = load_checkpoint(run / CHECKPOINT_NAME)
    assert (
        state["steps"] == 256
        and state["update"] == 2
        and "optimizer" in state["students"]["protagonist"]["ppo"]
    )

    # resume to a larger budget continues the step count
    summary = train(tiny(run, total_steps=384), resume=True, progress=False)
    assert summary["steps"] == 384 and summary["updates"] == 3
    assert load_checkpoint(run / CHECKPOINT_NAME)["steps"] == 384


def test_same_seed_same_results_and_resume_equals_uninterrupted(tmp_path):
    a = train(tiny(tmp_path / "a", total_steps=384, seed=5), progress=False)
    b = train(tiny(tmp_path / "b", total_steps=384, seed=5), progress=False)
    assert a["mean_return"] == b["mean_return"]
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # stop at 256 then resume to 384: the same weights as running straight through
    train(tiny(tmp_path / "c", total_steps=256, seed=5), progress=False)
    train(tiny(tmp_path / "c", total_steps=384, seed=5), resume=True, progress=False)
    wc = weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    # a different seed trains differently
    train(tiny(tmp_path / "d", total_steps=128, seed=6), progress=False)
    train(tiny(tmp_path / "e", total_steps=128, seed=5), progress=False)
    wd, we = weights(tmp_path / "d"), weights(tmp_path / "e")
    assert not all(torch.equal(wd[k], we[k]) for k in wd)


def test_refusals_never_touch_an_existing_run(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(UsageError, match="holds no checkpoint"):
        train(tiny(run), resume=True, progress=False)
    train(tiny(run, total_steps=128), progress=False)
    before = (run / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(UsageError, match="already holds a training checkpoint"):
        train(tiny(run, total_steps=128), progress=False)
    with pytest.raises(UsageError, match="different seed"):
        train(tiny(run, total_steps=256, seed=9), resume=True, progress=False)
    assert (run / CHECKPOINT_NAME).read_bytes() == before
    with pytest.raises(UsageError, match="unknown teacher"):
        train(tiny(tmp_path / "x", teacher="nope"), progress=False)
    with pytest.raises(UsageError, match="unknown environment"):
        train(tiny(tmp_path / "y", env="nope"), progress=False)
    with pytest.raises(UsageError, match="unknown ppo key"):
        train(tiny(tmp_path / "z", ppo={"learning_rate": 1.0}), progress=False)
    with pytest.raises(UsageError, match="total_steps"):
        train(tiny(tmp_path / "w", total_steps=0), progress=False)


def test_checkpoint_file_checks(tmp_path):
    assert RUNNER_CHECKPOINT_NAME == CHECKPOINT_NAME
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"x": torch.arange(3), "n": 2**100, "d": {"a": [1.5, "s"]}})
    state = load_checkpoint(path)
    assert state["n"] == 2**100 and torch.equal(state["x"], torch.arange(3)) and state["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    with pytest.raises(UsageError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UsageError, match="not a readable ued checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(UsageError, match="not a ued checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_field_docs_and_level_grid():
    docs = field_docs(TrainConfig)
    assert "protagonist environment steps" in docs["total_steps"]
    assert set(docs) >= {"env", "teacher", "seed", "num_envs", "run_dir", "threads"}
    import numpy as np

    grid = level_grid([np.zeros((10, 12, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], columns=4, pad=2)
    assert grid.shape == (14, 2 + 2 * 14, 3) and grid.dtype == np.uint8
