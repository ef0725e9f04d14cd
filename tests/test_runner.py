"""The training loop: outputs in the run directory, checkpoints, resume, reproducibility, refusals."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from ued.config import TrainConfig, field_docs
from ued.errors import UsageError
from ued.io import TEMP_SUFFIX
from ued.runner import TrainingInterrupted, train
from ued.student import Student
from ued.tblog import level_grid
from ued.threads import resolved_threads

torch.set_num_threads(1)

TINY = {"num_envs": 4, "num_steps": 32, "checkpoint_interval": 1, "image_interval": 1, "threads": 1}


def tiny(run_dir, **kw) -> TrainConfig:
    return TrainConfig(run_dir=str(run_dir), **{**TINY, "total_steps": 256, **kw})


def weights(run_dir):
    return load_checkpoint(run_dir / CHECKPOINT_NAME)["students"]["protagonist"]["policy"]


def assert_same_state(a, b, where: str = "") -> None:
    """Nested checkpoint contents are equal: tensors exactly, everything else by ==."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def test_dr_run_writes_events_config_checkpoint_and_resumes(tmp_path):
    run = tmp_path / "run"
    summary = train(tiny(run), progress=False)
    assert summary["steps"] == 256 and summary["updates"] == 2
    assert (run / "config.json").is_file() and (run / CHECKPOINT_NAME).is_file()
    record = json.loads((run / "config.json").read_text())
    config = record["train"]
    assert config["teacher"] == "dr" and config["total_steps"] == 256
    # every resolved value and the versions are recorded (the family's PPO defaults included)
    resolved = record["resolved"]
    assert (
        resolved["ppo"]["lr"] == 1e-4 and resolved["ppo"]["num_envs"] == 4 and resolved["ppo"]["epochs"] == 5
    )
    assert (
        resolved["env_options"] == {"max_walls": 50, "wall_budget": "fixed"}
        and resolved["student"] == "maze-lstm"
    )
    assert {"ued", "torch", "gymnasium"} <= set(record["versions"])
    assert record["machine"] == {"device": "cpu", "threads": 1}  # the threads training really used
    assert record["periodic_evaluation"] is None or record["periodic_evaluation"]["interval_updates"] >= 1
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
    events = EventAccumulator(str(run))
    events.Reload()
    # the checkpoint's own update (step 256) stays logged; the resumed one adds 384
    assert [e.step for e in events.Scalars("protagonist/mean_return")] == [128, 256, 384]


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
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"x": torch.arange(3), "n": 2**100, "d": {"a": [1.5, "s"]}})
    state = load_checkpoint(path)
    assert state["n"] == 2**100 and torch.equal(state["x"], torch.arange(3)) and state["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    assert (path.stat().st_mode & 0o777) == 0o666 & ~current_umask()  # normal permissions, not 0600
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


def interrupt_at(monkeypatch, cls, name: str, call: int, signals: int = 1) -> None:
    """On the `call`-th call of `cls.name`, send this process `signals` SIGINTs (Ctrl-C presses); with
    `signals=0`, raise KeyboardInterrupt there instead (an interrupt outside the signal handler)."""
    original = getattr(cls, name)
    calls = {"n": 0}

    def wrapper(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            if signals == 0:
                raise KeyboardInterrupt
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)


def test_ctrl_c_finishes_the_update_saves_it_and_resume_continues(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train(tiny(straight, total_steps=640, seed=2, checkpoint_interval=10), progress=False)

    # Ctrl-C during the 4th student update: update 4 completes, is checkpointed, and the run stops
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_at(m, Student, "learn", 4)
        with pytest.raises(TrainingInterrupted) as info:
            train(tiny(run, total_steps=640, seed=2, checkpoint_interval=10), progress=False)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.update, info.value.steps, info.value.saved) == (4, 512, True)
    assert f"ued train --resume {run}" in info.value.advice()
    state = load_checkpoint(run / CHECKPOINT_NAME)
    assert state["update"] == 4 and state["steps"] == 512
    assert [p.name for p in run.iterdir() if p.name.endswith(TEMP_SUFFIX)] == []
    summary = train(tiny(run, total_steps=640, seed=2, checkpoint_interval=10), resume=True, progress=False)
    assert summary["steps"] == 640 and summary["updates"] == 5
    ws, wr = weights(straight), weights(run)
    assert all(torch.equal(ws[k], wr[k]) for k in ws)

    # two Ctrl-C presses: stop at once, keeping the last checkpoint as it was
    before = (run / CHECKPOINT_NAME).read_bytes()
    with monkeypatch.context() as m:
        interrupt_at(m, Student, "learn", 1, signals=2)
        with pytest.raises(TrainingInterrupted) as info:
            train(tiny(run, total_steps=768, seed=2, checkpoint_interval=10), resume=True, progress=False)
    assert (info.value.update, info.value.steps, info.value.saved) == (5, 640, False)
    assert (run / CHECKPOINT_NAME).read_bytes() == before

    # an interrupt in the first update of a fresh run, outside the signal handler: nothing to save
    from ued.teachers.dr import DomainRandomization

    fresh = tmp_path / "fresh"
    with monkeypatch.context() as m:
        interrupt_at(m, DomainRandomization, "propose", 1, signals=0)
        with pytest.raises(TrainingInterrupted) as info:
            train(tiny(fresh, checkpoint_interval=10), progress=False)
    assert info.value.update == 0 and not info.value.saved and not (fresh / CHECKPOINT_NAME).exists()
    assert "nothing to resume" in info.value.advice()


def test_plr_logs_top_buffer_levels_and_train_share(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "plr"
    train(tiny(run, teacher="plr", total_steps=384, teacher_options={"buffer_size": 16}), progress=False)
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"levels/proposed", "levels/top_buffer"} <= set(events.Tags()["images"])
    share = [e.value for e in events.Scalars("teacher/train_students_share")]
    # Robust PLR: the first batch is fresh (no gradient step); the share is replays / updates so far
    replays = [e.value for e in events.Scalars("teacher/replay_share")]
    assert share[0] == 0.0 and share == pytest.approx(replays)


def test_student_updates_stop_a_run_and_extend_it_on_resume(tmp_path):
    """dcd's checkpoint_basis student_grad_updates: Robust PLR's fresh-level updates take no student step
    and do not count, so the run goes on until the students have taken `student_updates` steps."""
    run = tmp_path / "plr"
    config = tiny(
        run, teacher="plr", total_steps=10**6, student_updates=2, teacher_options={"buffer_size": 8}
    )
    summary = train(config, progress=False)
    assert summary["trained_updates"] == 2 and summary["updates"] > 2  # some updates were fresh levels
    assert summary["steps"] == summary["updates"] * 4 * 32 < 10**6
    with pytest.raises(UsageError, match="already taken 2 student updates.*--student-updates"):
        train(config, resume=True, progress=False)
    more = train(
        tiny(run, teacher="plr", total_steps=10**6, student_updates=3, teacher_options={"buffer_size": 8}),
        resume=True,
        progress=False,
    )
    assert more["trained_updates"] == 3 and more["updates"] > summary["updates"]
    with pytest.raises(UsageError, match="student_updates"):
        TrainConfig(student_updates=0)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_threads_default_to_the_available_cores_on_cpu():
    assert TrainConfig().threads is None
    assert resolved_threads(None) == len(os.sched_getaffinity(0))
    assert resolved_threads(3) == 3
    assert resolved_threads(None, "cuda:1") is None


@pytest.mark.parametrize("learner", ["protagonist", "teacher"])
def test_diverged_ppo_is_one_clear_error_and_keeps_the_checkpoint(tmp_path, monkeypatch, learner):
    from ued.ppo import PPO, PPOError

    run = tmp_path / "run"
    paired = {"teacher": "paired", "teacher_options": {"hidden_size": 16, "conv_channels": 4}}
    train(tiny(run, **paired), progress=False)
    before = (run / CHECKPOINT_NAME).read_bytes()
    calls = {"n": 0}
    original = PPO.update

    def diverge(self, storage):
        # the teacher's PPO runs first in an update, then the students'
        calls["n"] += 1
        if calls["n"] == (1 if learner == "teacher" else 2):
            raise PPOError("PPO loss is nan")
        return original(self, storage)

    monkeypatch.setattr(PPO, "update", diverge)
    with pytest.raises(UsageError, match=rf"diverged at update 3 \({learner}: .*intact.*--lr"):
        train(tiny(run, **paired, total_steps=512), resume=True, progress=False)
    assert (run / CHECKPOINT_NAME).read_bytes() == before


SMALL_MAZE = "#######\n#>..#.#\n#.#...#\n#.#.#G#\n#######\n"


def test_periodic_evaluation_logs_held_out_curves_and_leaves_training_unchanged(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    maze = tmp_path / "levels"
    maze.mkdir()
    (maze / "small.txt").write_text(SMALL_MAZE)
    (maze / "other.txt").write_text(SMALL_MAZE.replace("#>..#.#", "#...#.#").replace("#.#.#G#", "#>#.#G#"))
    quiet = tmp_path / "quiet"
    train(tiny(quiet, total_steps=384, seed=4, eval_interval=0), progress=False)
    watched = tmp_path / "watched"
    evaluation = {"eval_interval": 2, "eval_levels": str(maze), "eval_episodes": 3}
    train(tiny(watched, total_steps=256, seed=4, **evaluation), progress=False)
    train(
        tiny(watched, total_steps=384, seed=4, **{**evaluation, "eval_interval": 1}),
        resume=True,
        progress=False,
    )
    # same seed, with and without evaluation (and its change on resume): the same checkpoint, every
    # tensor and value (weights, optimizer, teacher, counters, RNG), all but the settings as given
    a, b = load_checkpoint(quiet / CHECKPOINT_NAME), load_checkpoint(watched / CHECKPOINT_NAME)
    assert_same_state(
        {k: v for k, v in a.items() if k != "config"}, {k: v for k, v in b.items() if k != "config"}
    )
    events = EventAccumulator(str(watched))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "eval/small/solved_rate",
        "eval/other/return",
        "eval/mean/solved_rate",
        "eval/mean/return",
    } <= tags
    # every 2nd update, then (after the resume with interval 1) at update 3: a continuous curve
    assert [e.step for e in events.Scalars("eval/mean/solved_rate")] == [256, 384]
    values = [e.value for e in events.Scalars("eval/small/solved_rate")]
    assert all(0.0 <= v <= 1.0 for v in values)


def test_periodic_evaluation_covers_both_students_of_a_regret_teacher(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "small.txt").write_text(SMALL_MAZE)
    run = tmp_path / "paired"
    paired = {"teacher": "paired", "teacher_options": {"hidden_size": 16, "conv_channels": 4}}
    train(
        tiny(
            run,
            total_steps=128,
            eval_interval=1,
            eval_levels=str(tmp_path / "small.txt"),
            eval_episodes=2,
            **paired,
        ),
        progress=False,
    )
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "eval/small/solved_rate",
        "eval_antagonist/small/solved_rate",
        "eval_antagonist/mean/return",
    } <= tags


def test_periodic_evaluation_defaults_and_refusals(tmp_path):
    from ued.evaluation import PeriodicEvaluation
    from ued.levels import make_family

    maze = make_family("maze")
    plan = PeriodicEvaluation.plan(TrainConfig(), maze, 32 * 256)
    assert plan.interval == 122 and plan.source == "maze-transfer" and plan.episodes == 10  # ~1M steps
    assert PeriodicEvaluation.plan(TrainConfig(eval_interval=0), maze, 8192) is None
    import ued.environments  # noqa: F401

    assert PeriodicEvaluation.plan(TrainConfig(env="carracing"), make_family("carracing"), 2000) is None
    with pytest.raises(UsageError, match="carracing"):
        PeriodicEvaluation.plan(TrainConfig(eval_interval=5, eval_suite="carracing-transfer"), maze, 8192)
    with pytest.raises(UsageError, match="not both"):
        TrainConfig(eval_suite="maze-transfer", eval_levels="x")


def test_one_writer_per_run_directory(tmp_path):
    from ued.rundir import RunDirLock

    run = tmp_path / "run"
    # another process training this directory (flock is per open file description)
    with RunDirLock(run), pytest.raises(UsageError, match=rf"in use by process {os.getpid()}"):
        train(tiny(run, total_steps=128), progress=False)
    assert not (run / CHECKPOINT_NAME).exists()
    # a killed writer leaves its temp files: the next holder removes them
    (run / f".checkpoint.pt.abc{TEMP_SUFFIX}").write_bytes(b"half a checkpoint")
    train(tiny(run, total_steps=128), progress=False)
    assert not list(run.glob(f"*{TEMP_SUFFIX}"))
    # a lock file planted as a link is never followed (the linked file would be truncated)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    other = tmp_path / "other"
    other.mkdir()
    (other / ".ued-lock").symlink_to(victim)
    with pytest.raises(UsageError, match=".ued-lock"):
        RunDirLock(other)
    assert victim.read_text() == "keep me"
    (other / ".ued-lock").unlink()
    (other / ".ued-lock").symlink_to("/dev/null")
    with pytest.raises(UsageError, match=".ued-lock"):
        RunDirLock(other)


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    run = tmp_path / "run"
    train(tiny(run, total_steps=128), progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(UsageError, match="already trained 128 steps.*larger --total-steps"):
        train(tiny(run, total_steps=128), resume=True, progress=False)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name in before}
    assert after == before  # summary.json, config.json and the checkpoint untouched


def test_resume_with_a_lower_learning_rate(tmp_path):
    """A diverged run's advice must be possible: ppo.lr may change on resume, and is recorded."""
    run = tmp_path / "run"
    train(tiny(run, total_steps=128), progress=False)
    train(tiny(run, total_steps=256, ppo={"lr": 5e-5}), resume=True, progress=False)
    record = json.loads((run / "config.json").read_text())
    assert record["resolved"]["ppo"]["lr"] == 5e-5
    groups = load_checkpoint(run / CHECKPOINT_NAME)["students"]["protagonist"]["ppo"]["optimizer"][
        "param_groups"
    ]
    assert all(g["lr"] == 5e-5 for g in groups)
    with pytest.raises(UsageError, match="ppo.epochs"):
        train(tiny(run, total_steps=384, ppo={"epochs": 2}), resume=True, progress=False)


def test_opt_in_episode_videos(tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (tmp_path / "small.txt").write_text(SMALL_MAZE)
    run = tmp_path / "run"
    train(
        tiny(
            run, total_steps=256, video_interval=2, eval_interval=0, eval_levels=str(tmp_path / "small.txt")
        ),
        progress=False,
    )
    gifs = sorted((run / "videos").glob("*.gif"))
    assert [g.name for g in gifs] == ["small-256.gif"]
    assert Image.open(gifs[0]).n_frames > 1
    events = EventAccumulator(str(run))
    events.Reload()
    assert "episodes/small" in events.Tags()["images"]


def test_a_changed_family_default_blocks_resume(tmp_path, monkeypatch):
    """A plugin or library update that changes a default under a saved run must not silently change the
    resumed run: its resolved values are compared with the checkpoint's."""
    from ued.config import PPOConfig, merge
    from ued.environments.maze import MazeFamily

    run = tmp_path / "run"
    train(tiny(run, total_steps=128), progress=False)
    before = (run / CHECKPOINT_NAME).read_bytes()
    original = MazeFamily.default_ppo
    monkeypatch.setattr(MazeFamily, "default_ppo", lambda self: merge(original(self), {"gamma": 0.99}))
    with pytest.raises(UsageError, match=r"resolve differently \(ppo.gamma\)"):
        train(tiny(run, total_steps=256), resume=True, progress=False)
    assert (run / CHECKPOINT_NAME).read_bytes() == before
    assert isinstance(original(MazeFamily()), PPOConfig)


def test_a_setting_added_since_the_run_started_is_stated_on_resume(tmp_path):
    """A checkpoint from before ued recorded a setting (here: max_walls dropped from its `resolved`, as
    `camera` is missing from CarRacing runs started before it existed): resume asks for the value the run
    had, and goes on once it is given; what acts only at the start (the adversary's init) may differ."""
    run = tmp_path / "run"
    train(tiny(run, total_steps=128), progress=False)
    state = load_checkpoint(run / CHECKPOINT_NAME)
    del state["resolved"]["env_options"]["max_walls"]
    save_checkpoint(run / CHECKPOINT_NAME, state)
    with pytest.raises(UsageError, match=r"did not record \(env_options.max_walls\).*explicitly"):
        train(tiny(run, total_steps=256), resume=True, progress=False)
    summary = train(tiny(run, total_steps=256, env_options={"max_walls": 50}), resume=True, progress=False)
    assert summary["steps"] == 256
    from ued.runner import CHANGEABLE_RESOLVED

    assert "teacher.actor_gains" in CHANGEABLE_RESOLVED
