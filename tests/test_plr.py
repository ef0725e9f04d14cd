"""Replay teachers: Robust PLR and ACCEL on the maze (and CarRacing) families, with hand-made results."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from ued.config import ACCELConfig, PLRConfig, TrainConfig
from ued.errors import UsageError
from ued.levels import LevelResults, make_family
from ued.run import teacher_config_for
from ued.teachers import teacher_class
from ued.teachers.accel import ACCEL
from ued.teachers.plr import PLR

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def maze():
    return make_family("maze")


def carracing_family():
    from ued.environments.carracing import CarRacingFamily

    return CarRacingFamily()


def results(pvl, mean_value=None, max_return=None) -> LevelResults:
    """Hand-made protagonist results: one entry per level."""
    pvl = np.asarray(pvl, dtype=float)
    n = len(pvl)
    mean_value = np.zeros(n) if mean_value is None else np.asarray(mean_value, dtype=float)
    max_return = np.zeros(n) if max_return is None else np.asarray(max_return, dtype=float)
    return LevelResults(
        episode_returns=[np.array([r]) for r in max_return],
        mean_return=max_return.copy(),
        max_return=max_return,
        solved_rate=(max_return > 0).astype(float),
        positive_value_loss=pvl,
        mean_value=mean_value,
    )


def play(teacher, n, pvl=None, **kw):
    """One propose/update round with the given (or random) scores; returns (proposal, metrics)."""
    proposal = teacher.propose(n)
    if pvl is None:
        pvl = teacher.rng.random(n)
    report = teacher.update(proposal, {"protagonist": results(pvl, **kw)})
    return proposal, report.scalars


def kind(proposal) -> str:
    return proposal.context.kind


def replay_on(teacher, levels, pvl, **kw):
    """Score `levels` (not the teacher's own proposal) as if they were a fresh batch."""
    from ued.teachers.base import Proposal
    from ued.teachers.plr import ReplayContext

    fresh = Proposal(list(levels), train_students=False, context=ReplayContext("fresh"))
    return teacher.update(fresh, {"protagonist": results(pvl, **kw)}).scalars


# ----- config -----------------------------------------------------------------------------------
def test_registered_names():
    assert teacher_class("plr") is PLR and teacher_class("accel") is ACCEL


def test_family_defaults_and_overrides(maze):
    t = PLR(maze)
    assert (t.buffer.capacity, t.buffer.prioritization, t.buffer.temperature, t.buffer.staleness_coef) == (
        4000,
        "rank",
        0.3,
        0.3,
    )
    assert t.config.replay_prob == 0.5 and t.config.score == "pvl" and t.config.robust
    t = PLR(maze, PLRConfig(buffer_size=10, temperature=1.0, prioritization="power"))
    assert (t.buffer.capacity, t.buffer.temperature, t.buffer.prioritization) == (10, 1.0, "power")
    a = ACCEL(maze)
    assert a.config.replay_prob == 0.8 and a.config.num_edits == 5 and a.buffer.capacity == 4000


@pytest.mark.parametrize("name", ["plr", "accel"])
def test_carracing_defaults_come_from_the_family(name):
    """dcd's cr_robust_plr values, declared by the family and merged under the user's options."""
    family = carracing_family()
    c = teacher_config_for(family, TrainConfig(env="carracing", teacher=name))
    assert (c.buffer_size, c.prioritization, c.temperature, c.staleness_coef) == (8000, "power", 1.0, 0.7)
    c = teacher_config_for(
        family, TrainConfig(env="carracing", teacher=name, teacher_options={"temperature": 2})
    )
    assert (c.buffer_size, c.temperature) == (8000, 2.0)


@pytest.mark.parametrize(
    "options",
    [
        {"score": "regret"},
        {"prioritization": "softmax"},
        {"replay_prob": 1.5},
        {"buffer_size": 0},
        {"temperature": 0.0},
        {"robust": "maybe"},
        {"buffer_size": 1.5},
        {"buffer_size": "12"},
        {"temperature": "hot"},
    ],
)
def test_bad_config_is_a_usage_error(options):
    with pytest.raises(UsageError, match=next(iter(options))):
        PLRConfig(**options)


def test_config_values_are_typed():
    c = PLRConfig(buffer_size=12.0, temperature=1, robust="false", replay_prob=1)
    assert (c.buffer_size, c.temperature, c.robust, c.replay_prob) == (12, 1.0, False, 1.0)
    assert isinstance(c.buffer_size, int) and isinstance(c.temperature, float)
    a = ACCELConfig(num_edits=3, start_easy="no", parent_share=0.5)
    assert (a.num_edits, a.start_easy, a.parent_share) == (3, False, 0.5)


def test_bad_accel_config_is_a_usage_error():
    with pytest.raises(UsageError, match="num_edits"):
        ACCELConfig(num_edits=0)


# ----- PLR --------------------------------------------------------------------------------------
def test_robust_mode_trains_only_on_replay(maze):
    t = PLR(maze, PLRConfig(buffer_size=4, min_fill=0.5, replay_prob=1.0), seed=0)
    p, m = play(t, 4)
    assert kind(p) == "fresh" and p.train_students is False and m["replayed"] == 0.0
    assert len(t.buffer) == 4 and m["fresh_admitted"] == 1.0
    p, m = play(t, 4)  # a full buffer: replays with probability min(fill, replay_prob) = 1
    assert kind(p) == "replay" and p.train_students is True and m["replayed"] == 1.0
    stored = {maze.tokens_key(t.buffer.level(i)) for i in range(len(t.buffer))}
    assert all(maze.tokens_key(lvl) in stored for lvl in p.levels)
    assert len(t.buffer) == 4  # replayed levels are updated, not added


def test_plain_plr_always_trains(maze):
    t = PLR(maze, PLRConfig(buffer_size=8, replay_prob=1.0, robust=False))
    assert [play(t, 4)[0].train_students for _ in range(3)] == [True, True, True]


def test_no_replay_before_min_fill_then_proportionate(maze):
    """dcd level_sampler.py, "proportionate" schedule: replay iff fill >= rho and u < min(fill, replay_prob)."""
    t = PLR(maze, PLRConfig(buffer_size=40, min_fill=0.5, replay_prob=1.0))
    kinds, fills = [], []
    for _ in range(60):
        fills.append(len(t.buffer) / 40)
        kinds.append(kind(play(t, 4)[0]))
    assert kinds[:5] == ["fresh"] * 5  # 20 levels = half of 40 after five rounds
    assert all(k == "replay" for k, f in zip(kinds, fills) if f == 1.0) and fills[-1] == 1.0
    assert "fresh" in [k for k, f in zip(kinds, fills) if 0.5 <= f < 1.0]
    t = PLR(maze, PLRConfig(buffer_size=4, replay_prob=0.0))
    for _ in range(5):
        p, _ = play(t, 4)
        assert kind(p) == "fresh" and p.train_students is False


def test_replay_share_matches_replay_prob(maze):
    t = PLR(maze, PLRConfig(buffer_size=4, min_fill=0.0, replay_prob=0.5), seed=1)
    kinds = []
    for _ in range(200):
        p, m = play(t, 2)
        kinds.append(kind(p))
    share = np.mean([k == "replay" for k in kinds[1:]])  # the first round has an empty buffer
    assert 0.4 < share < 0.6
    assert m["replay_share"] == pytest.approx(np.mean([k == "replay" for k in kinds]))


def test_duplicates_in_a_batch_are_stored_once(maze):
    t = PLR(maze, PLRConfig(buffer_size=10))
    rng = np.random.default_rng(0)
    a, b = maze.sample(rng), maze.sample(rng)
    t.propose(4)  # a fresh batch; we play our own levels instead
    replay_on(t, [a, b, a, a], [0.1, 0.2, 0.3, 0.5], max_return=[0.0, 0.0, 0.9, 0.1])
    assert len(t.buffer) == 2
    slot = t.buffer.find(maze.tokens_key(a))
    assert t.buffer.scores[slot] == pytest.approx(0.3)  # mean over its three plays
    assert t.buffer.max_returns[slot] == pytest.approx(0.9)


def test_full_buffer_admits_only_better_levels(maze):
    t = PLR(maze, PLRConfig(buffer_size=4, replay_prob=0.0))
    play(t, 4, pvl=[0.5, 0.6, 0.7, 0.8])
    _, m = play(t, 4, pvl=[0.1, 0.2, 0.9, 0.3])
    assert m["fresh_admitted"] == 0.25 and len(t.buffer) == 4
    np.testing.assert_allclose(sorted(t.buffer.scores), [0.6, 0.7, 0.8, 0.9])


def test_maxmc_uses_the_best_return_ever_seen(maze):
    t = PLR(maze, PLRConfig(buffer_size=4, score="maxmc", replay_prob=0.0))
    level = maze.sample(np.random.default_rng(0))
    t.propose(1)
    replay_on(t, [level], [0.0], mean_value=[0.2], max_return=[0.9])
    slot = t.buffer.find(maze.tokens_key(level))
    assert t.buffer.scores[slot] == pytest.approx(0.7)
    # later the student does worse on it; MaxMC still measures against the best return 0.9
    replay_on(t, [level], [0.0], mean_value=[0.5], max_return=[0.1])
    assert t.buffer.scores[slot] == pytest.approx(0.4)


def test_replay_prefers_high_scores(maze):
    t = PLR(maze, PLRConfig(buffer_size=8, min_fill=1.0, replay_prob=1.0, staleness_coef=0.0), seed=3)
    play(t, 8, pvl=np.arange(8) / 10.0)
    best = maze.tokens_key(t.top_levels(1)[0])
    counts = {}
    for _ in range(30):
        p = t.propose(8)
        assert kind(p) == "replay"
        for lvl in p.levels:
            counts[maze.tokens_key(lvl)] = counts.get(maze.tokens_key(lvl), 0) + 1
    assert max(counts, key=counts.get) == best
    assert counts[best] > 0.3 * 240  # rank weights, T = 0.3: the best level has probability ~0.52


def test_top_levels_are_sorted_by_score(maze):
    t = PLR(maze, PLRConfig(buffer_size=8))
    p, _ = play(t, 5, pvl=[0.3, 0.9, 0.1, 0.5, 0.7])
    top = t.top_levels(3)
    assert [maze.tokens_key(x) for x in top] == [maze.tokens_key(p.levels[i]) for i in (1, 4, 3)]
    assert len(t.top_levels(50)) == 5
    pictures = t.update(t.propose(2), {"protagonist": results([0.0, 0.0])}).pictures["top_buffer"]
    assert [maze.tokens_key(x) for x in pictures] == [maze.tokens_key(x) for x in t.top_levels(8)]


def test_state_dict_round_trip_continues_identically(maze):
    config = PLRConfig(buffer_size=6, min_fill=0.5, replay_prob=0.7)
    t = PLR(maze, config, seed=5)
    for _ in range(4):
        play(t, 3)
    blob = io.BytesIO()
    torch.save(t.state_dict(), blob)
    blob.seek(0)
    other = PLR(maze, config, seed=99)
    other.load_state_dict(torch.load(blob, weights_only=True))
    assert len(other.buffer) == len(t.buffer)
    for _ in range(3):
        a, b = t.propose(3), other.propose(3)
        assert [maze.tokens_key(x) for x in a.levels] == [maze.tokens_key(x) for x in b.levels]
        assert a.train_students == b.train_students
        pvl = np.arange(3) / 7.0
        t.update(a, {"protagonist": results(pvl)})
        other.update(b, {"protagonist": results(pvl)})


# ----- ACCEL ------------------------------------------------------------------------------------
def test_maze_mutation_is_dcds_editor(maze):
    """dcd envs/multigrid/adversarial.py mutate_level (walls_none_goal): each edited cell becomes a wall,
    empty or the goal (1/3 each); a lost goal or start is put back at random; no repair."""
    rng = np.random.default_rng(0)
    changed, unsolvable, goal_moved, walls_delta = 0, 0, 0, []
    for _ in range(300):
        level = maze.sample_easy(rng)
        child = maze.mutate(level, rng, 5)
        assert maze.decode(maze.encode(child)) == child
        changed += maze.tokens_key(child) != maze.tokens_key(level)
        unsolvable += not maze.is_valid(child)
        goal_moved += child.goal != level.goal
        walls_delta.append(len(child.walls) - len(level.walls))
    a = maze.mutate(level, np.random.default_rng(7), 5)
    assert a == maze.mutate(level, np.random.default_rng(7), 5)
    assert changed >= 280 and unsolvable < 30  # not repaired, but from empty mazes rarely blocked
    assert 1.2 < np.mean(walls_delta) < 2.0  # about 5 * 1/3 walls (repeated cells edited once)
    assert 230 < goal_moved < 290  # P(some edited cell becomes the goal) is about 1 - (2/3)^5 = 0.87


def test_mutation_keeps_tracks_valid():
    family = carracing_family()
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(10):
        level = family.repair(family.sample(rng))
        child = family.mutate(level, rng, 3)
        assert family.is_valid(child)
        changed += family.tokens_key(child) != family.tokens_key(level)
    assert changed >= 8


def test_accel_edits_dcds_parents_and_follows_up_with_the_children(maze):
    """dcd envs/runners/adversarial_runner.py (base_levels "easy"): after a replay batch, the 4 levels of
    lowest mean return - value loss, each copied equally often, are edited; the children are played at once
    (the follow-up proposal, no gradient step) and scored like new levels."""
    t = ACCEL(maze, ACCELConfig(buffer_size=8, min_fill=0.5, replay_prob=1.0, start_easy=False), seed=2)
    proposal = t.propose(8)
    assert kind(proposal) == "fresh"
    assert t.update(proposal, {"protagonist": results(np.arange(8) / 10)}).followup is None
    replayed = t.propose(8)
    assert kind(replayed) == "replay" and replayed.train_students is True
    returns = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.0, 0.7])
    r = dataclasses.replace(results(np.zeros(8), max_return=returns), value_l1=np.full(8, 0.1))
    assert t.select_parents(r, np.zeros(8), 8) == [6, 6, 1, 1, 3, 3, 5, 5]  # lowest return - value loss
    report = t.update(replayed, {"protagonist": r})
    children = report.followup
    assert report.scalars["mutant_parents"] == 4.0
    assert kind(children) == "mutant" and children.train_students is False and len(children.levels) == 8
    parents = [replayed.levels[i] for i in (6, 6, 1, 1, 3, 3, 5, 5)]
    assert sum(maze.tokens_key(c) != maze.tokens_key(p) for c, p in zip(children.levels, parents)) >= 6
    size_before = len(t.buffer)
    follow = t.update(children, {"protagonist": results([5.0] * 8)})
    assert follow.followup is None and follow.scalars["fresh_admitted"] > 0 and len(t.buffer) >= size_before
    assert kind(t.propose(4)) == "replay"  # nothing pending between calls


def test_accel_best_score_parents_are_a_ued_option(maze):
    t = ACCEL(maze, ACCELConfig(buffer_size=8, parents="best_score", parent_share=0.5), seed=4)
    r = results(np.zeros(4))
    assert t.select_parents(r, np.array([0.3, 0.8, 0.1, 0.6]), 4) == [1, 3, 1, 3]
    t = ACCEL(maze, ACCELConfig(buffer_size=8, parents="best_score"), seed=4)
    assert t.select_parents(r, np.array([0.1, 0.2, 0.9, 0.5]), 4) == [2, 3, 1, 0]


def test_accel_start_easy_uses_the_family_easy_levels(maze):
    class Recorder(type(maze)):
        calls = 0

        def sample_easy(self, rng):
            Recorder.calls += 1
            return super().sample_easy(rng)

    t = ACCEL(Recorder(), ACCELConfig(buffer_size=8))
    t.propose(3)
    assert Recorder.calls == 3
    # the maze family's easy levels have no walls; start_easy=False gives DR's mazes with walls
    assert all(len(x.walls) == 0 for x in ACCEL(maze, ACCELConfig(buffer_size=8)).propose(5).levels)
    dr_levels = ACCEL(maze, ACCELConfig(buffer_size=8, start_easy=False)).propose(5).levels
    assert sum(len(x.walls) for x in dr_levels) > 0


# ----- with a real student (the runner's loop, by hand) ------------------------------------------
@pytest.mark.parametrize("name", ["plr", "accel"])
def test_teacher_with_a_real_student(maze, name):
    from ued.config import PPOConfig
    from ued.models import make_student
    from ued.student import Student

    torch.manual_seed(0)
    config_class = teacher_class(name).config_class
    teacher = teacher_class(name)(maze, config_class(buffer_size=4, min_fill=0.5, replay_prob=1.0), seed=0)
    n = 4
    student = Student(make_student(maze), PPOConfig(num_envs=n, num_steps=8, epochs=1), seed=0)
    venv = maze.make_vector_env(n, seed=0)
    kinds, trained = [], []
    try:
        proposal = teacher.propose(n)
        for _ in range(4):
            rollout = student.collect(venv, proposal.levels, 8)
            if proposal.train_students:
                student.learn(rollout)
            report = teacher.update(proposal, {"protagonist": rollout.results})
            metrics = report.scalars
            kinds.append(kind(proposal))
            trained.append(proposal.train_students)
            assert all(np.isfinite(metrics[k]) for k in ("buffer_size", "buffer_score_mean", "replay_share"))
            assert 0 < metrics["buffer_size"] <= 4
            proposal = report.followup or teacher.propose(n)
    finally:
        venv.close()
    expected = (
        ["fresh", "replay", "replay", "replay"] if name == "plr" else ["fresh", "replay", "mutant", "replay"]
    )  # a full buffer replays with probability min(fill, replay_prob) = 1
    assert kinds == expected
    assert trained == [k == "replay" for k in kinds]
    assert len(teacher.top_levels(8)) == 4


@pytest.mark.parametrize("name", ["plr", "accel"])
def test_train_end_to_end_and_resume(tmp_path, name):
    from ued.checkpoint import load_checkpoint
    from ued.config import TrainConfig
    from ued.runner import train

    def config(total_steps):
        return TrainConfig(
            env="maze",
            teacher=name,
            teacher_options={"buffer_size": 4, "replay_prob": 1.0},
            total_steps=total_steps,
            num_envs=4,
            num_steps=8,
            ppo={"epochs": 1},
            run_dir=str(tmp_path / name),
            checkpoint_interval=2,
            image_interval=0,
        )

    summary = train(config(4 * 8 * 3), progress=False)
    assert summary["updates"] == 3
    state = load_checkpoint(tmp_path / name / "checkpoint.pt")
    # rounds: fresh (4 levels stored), then replays; ACCEL plays the children of each replay at once,
    # outside the budget
    assert tuple(state["teacher"]["buffer"]["tokens"].shape) == (4, 52)
    assert state["followup_steps"] == (0 if name == "plr" else 2 * 4 * 8)
    summary = train(config(4 * 8 * 5), resume=True, progress=False)
    assert summary["updates"] == 5
    state = load_checkpoint(tmp_path / name / "checkpoint.pt")["teacher"]
    assert state["num_replays"] == 4 and state["num_batches"] == (5 if name == "plr" else 9)
