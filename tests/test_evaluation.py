"""Zero-shot evaluation: the family's evaluation env and batch size, per-level rows, level and track files,
and `ued eval --tracks` on a tiny CarRacing run."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ued.environments.carracing import CarRacingFamily
from ued.environments.carracing_policy import CarRacingPolicy
from ued.environments.maze import MazeFamily
from ued.environments.maze_generators import CROSSINGS, FOUR_ROOMS
from ued.environments.suites import get_suite
from ued.environments.tracks import Centerline, TrackLevel
from ued.errors import UsageError
from ued.evaluation import LevelScore, eval_chunks, evaluate, format_table, overall
from ued.levels import draw_levels, entry_rng
from ued.models import make_student

F1_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "f1_tracks.json"
SMALL_MAZE = """\
#######
#>..#.#
#.#...#
#.#.#G#
#######
"""


def spy_vector_envs(family, monkeypatch) -> list[tuple[int, dict, object]]:
    """Record every `family.make_vector_env` call (num_envs, keyword arguments, the env) and count each
    env's `step` calls in `env.steps`."""
    made: list[tuple[int, dict, object]] = []
    original = family.make_vector_env

    def spy(num_envs, **kwargs):
        venv = original(num_envs, **kwargs)
        step = venv.step
        venv.steps = 0

        def counted(actions):
            venv.steps += 1
            return step(actions)

        venv.step = counted
        made.append((num_envs, kwargs, venv))
        return venv

    monkeypatch.setattr(family, "make_vector_env", spy)
    return made


@pytest.fixture
def in_process_vector_envs(monkeypatch):
    """CarRacing's vector env runs one spawned process per env (~15 s to start on a loaded 2-core machine):
    run the same envs in this process instead. Only the process machinery changes."""

    def sync(fns, autoreset_mode, context=None):
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=autoreset_mode)

    monkeypatch.setattr(gym.vector, "AsyncVectorEnv", sync)


def two_designed_tracks() -> list[tuple[str, TrackLevel]]:
    return get_suite("carracing-transfer").levels()[:2]


def circle_entry(name: str, radius: float, max_episode_steps: int) -> dict:
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    xy = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return {"name": name, "xy": xy.round(3).tolist(), "max_episode_steps": max_episode_steps, "bounds": 2000}


# ----- maze ------------------------------------------------------------------------------------------------
def test_maze_evaluation_batches_jobs_in_the_evaluation_env(monkeypatch):
    family = MazeFamily()
    assert family.eval_batch_size == 512
    family.eval_batch_size = 4  # 3 levels x 3 episodes = 9 jobs -> 3 batches of 3, one vector env
    made = spy_vector_envs(family, monkeypatch)
    levels = [(name, family.from_text(SMALL_MAZE)) for name in ("a", "b")] + get_suite(
        "maze-transfer"
    ).levels()[:1]
    torch.manual_seed(0)
    policy = make_student(family)
    rows = evaluate(policy, family, levels, episodes=3, seed=1)
    assert [(n, kw["evaluation"]) for n, kw, _ in made] == [(3, True)]
    assert [r.name for r in rows] == ["a", "b", "SixteenRooms"] and all(r.episodes == 3 for r in rows)
    assert all(math.isfinite(r.mean_return) and 0.0 <= r.solved_rate <= 1.0 for r in rows)
    assert all(0.0 <= r.mean_return <= 1.0 for r in rows)  # maze returns: 0, or 1 - 0.9 * steps / max
    again = evaluate(policy, family, levels, episodes=3, seed=1, max_envs=9)  # one batch of 9
    assert made[-1][0] == 9 and len(made) == 2
    total = overall(rows)
    assert total.episodes == 9 and total.mean_return == pytest.approx(np.mean([r.mean_return for r in rows]))
    assert [r.name for r in again] == [r.name for r in rows]


def spy_played_levels(family, monkeypatch) -> list[list]:
    """Record the levels of every `set_levels` call on the family's vector envs (one list per batch)."""
    calls: list[list] = []
    original = family.make_vector_env

    def spy(num_envs, **kwargs):
        venv = original(num_envs, **kwargs)
        set_levels = venv.set_levels

        def record(levels):
            calls.append(list(levels))
            set_levels(levels)

        venv.set_levels = record
        return venv

    monkeypatch.setattr(family, "make_vector_env", spy)
    return calls


def test_procedural_entries_play_a_new_layout_every_episode(monkeypatch):
    """A Procedural entry: each episode plays its own draw, from entry_rng(seed, position); reproducible
    from the seed, independent of batch sizes; batches ordered by the drawn levels' own limits."""
    family = MazeFamily()
    calls = spy_played_levels(family, monkeypatch)
    entries = [
        ("fixed", family.from_text(SMALL_MAZE)),
        ("rooms", FOUR_ROOMS),
        ("cross", CROSSINGS["SimpleCrossingS9N2"]),
    ]
    torch.manual_seed(0)
    policy = make_student(family)

    def played(**kwargs):
        calls.clear()
        rows = evaluate(policy, family, entries, episodes=6, **kwargs)
        return rows, [lvl for call in calls for lvl in call]

    rows, levels = played(seed=3)
    assert [r.name for r in rows] == ["fixed", "rooms", "cross"] and all(r.episodes == 6 for r in rows)
    rooms = [lvl for lvl in levels if lvl.width == 19]
    assert len(rooms) == 6 and len(set(rooms)) == 6  # six FourRooms layouts
    assert Counter(rooms) == Counter(draw_levels(FOUR_ROOMS, 6, entry_rng(3, 1)))
    assert Counter(lvl for lvl in levels if lvl.width == 9) == Counter(
        draw_levels(CROSSINGS["SimpleCrossingS9N2"], 6, entry_rng(3, 2))
    )
    again, levels_again = played(seed=3)
    assert again == rows and levels_again == levels
    _, other_batches = played(seed=3, max_envs=4)
    assert Counter(other_batches) == Counter(levels)
    # longest limit first: the crossings (324 steps), the fixed maze (250), FourRooms (100)
    assert [len(c) for c in calls] == [4, 4, 4, 4, 2]
    assert {lvl.max_steps for lvl in calls[0]} == {324} and {lvl.max_steps for lvl in calls[-1]} == {100}
    _, other_seed = played(seed=4)
    assert not {lvl for lvl in other_seed if lvl.width == 19} & set(rooms)
    with pytest.raises(UsageError, match="seed"):
        evaluate(policy, family, entries, episodes=1, seed=-1)


def test_eval_chunks_are_balanced_and_longest_first():
    family = CarRacingFamily(max_episode_steps=1000)
    square = TrackLevel(((0, 0), (9, 0), (9, 9), (0, 9)))
    short = Centerline("short", ((0.0, 0.0),), max_episode_steps=500)
    long = Centerline("long", ((0.0, 0.0),), max_episode_steps=3000)
    jobs = [short, square, long, square, short, long, square]
    chunks = eval_chunks(family, jobs, batch_size=3)
    assert sorted(i for c in chunks for i in c) == list(range(7))
    assert [len(c) for c in chunks] == [3, 3, 1]
    limits = [[family.episode_limit(jobs[i]) for i in c] for c in chunks]
    assert limits == [[3000, 3000, 1000], [1000, 1000, 500], [500]]
    assert [len(c) for c in eval_chunks(family, jobs * 3, batch_size=8)] == [7, 7, 7]  # not 8, 8, 5
    mazes = [MazeFamily().from_text(SMALL_MAZE)] * 5
    assert [len(c) for c in eval_chunks(MazeFamily(), mazes, batch_size=512)] == [5]


# ----- level files ----------------------------------------------------------------------------------------
def test_default_load_levels_reads_text_files_and_explains_bad_paths(tmp_path):
    family = MazeFamily()
    (tmp_path / "small.txt").write_text(SMALL_MAZE)
    (tmp_path / "notes.md").write_text("not a level")
    assert [n for n, _ in family.load_levels(tmp_path)] == ["small"]
    assert family.load_levels(tmp_path / "small.txt")[0][0] == "small"
    with pytest.raises(UsageError, match="does not exist"):
        family.load_levels(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no level files \(\*\.txt\)"):
        family.load_levels(tmp_path / "empty")
    (tmp_path / "bad.txt").write_text("###\n#?#\n###\n")
    with pytest.raises(UsageError, match="bad.txt"):
        family.load_levels(tmp_path)


def test_carracing_load_levels_reads_json_track_files_and_text(tmp_path):
    family = CarRacingFamily()
    designed = {"tracks": [{"name": "square", "points": [[0, 0], [9, 0], [9, 9], [0, 9]]}]}
    (tmp_path / "a.json").write_text(json.dumps(designed))
    (tmp_path / "b.json").write_text(json.dumps({"tracks": [circle_entry("ring", 200.0, 1234)]}))
    (tmp_path / "c.txt").write_text("1,1 8,1 8,8 1,8\n")
    named = family.load_levels(tmp_path)
    assert [n for n, _ in named] == ["square", "ring", "c"]
    assert isinstance(named[0][1], TrackLevel) and isinstance(named[1][1], Centerline)
    assert family.episode_limit(named[1][1]) == 1234 and family.episode_limit(named[0][1]) == 1000
    assert [n for n, _ in family.load_levels(tmp_path / "b.json")] == ["ring"]
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(UsageError, match="d.json"):
        family.load_levels(tmp_path)
    with pytest.raises(UsageError, match="max_episode_steps"):
        CarRacingFamily(max_episode_steps=0)


@pytest.mark.skipif(not F1_FILE.is_file(), reason=f"reference data {F1_FILE} is absent (../shared/data)")
def test_f1_file_loads_as_named_centerlines_with_their_limits():
    named = CarRacingFamily().load_levels(F1_FILE)
    assert len(named) == 21 and named[0][0] == "Belgium"
    assert all(isinstance(level, Centerline) for _, level in named)
    limits = {name: CarRacingFamily().episode_limit(level) for name, level in named}
    assert limits["Belgium"] == 1500 and limits["Mexico"] == 3000
    assert all(level.playfield == pytest.approx(500.0) for _, level in named)


# ----- carracing --------------------------------------------------------------------------------------------
def test_carracing_evaluation_plays_raw_reward_envs_to_the_frame_limit(monkeypatch, in_process_vector_envs):
    """2 designed tracks x 1 episode, 160 frames each: evaluation envs have no reward shaping and no early
    stop, so every episode lasts exactly 160 / 8 = 20 policy steps (a random policy neither leaves the
    field nor finishes a lap that soon)."""
    family = CarRacingFamily(max_episode_steps=160)
    made = spy_vector_envs(family, monkeypatch)
    torch.manual_seed(0)
    rows = evaluate(CarRacingPolicy(), family, two_designed_tracks(), episodes=1, seed=0)
    assert [r.name for r in rows] == [name for name, _ in two_designed_tracks()]
    assert all(math.isfinite(r.mean_return) and r.episodes == 1 for r in rows)
    assert all(-0.1 * 160 - 1e-6 <= r.mean_return < 1000 for r in rows)  # no +100 shaping bonus
    ((num_envs, kwargs, venv),) = made
    assert num_envs == 2 and kwargs["evaluation"] is True
    assert venv.reward_shaping is False  # the fast backend: one batched env for all sub-envs
    assert venv.steps == 20


def test_carracing_training_env_keeps_reward_shaping(in_process_vector_envs):
    family = CarRacingFamily(max_episode_steps=16)
    venv = family.make_vector_env(2, seed=0)
    try:
        assert venv.reward_shaping is True
        assert all(env.unwrapped.track_max_episode_steps == 16 for env in venv.envs)
    finally:
        venv.close()


def test_ued_eval_tracks_on_a_tiny_carracing_run(tmp_path, in_process_vector_envs):
    """`ued eval RUN --tracks FILE.json` (one designed track, one centerline track) on a run trained with
    2 envs x 8 steps; episodes are kept short by the run's `max_episode_steps` and the file's limit."""
    from ued.cli.main import cli
    from ued.config import TrainConfig
    from ued.runner import train

    run_dir = tmp_path / "run"
    config = TrainConfig(
        env="carracing",
        teacher="dr",
        total_steps=16,
        num_envs=2,
        num_steps=8,
        run_dir=str(run_dir),
        backend="gym",
        env_options={"max_episode_steps": 24},
    )
    train(config, progress=False)
    tracks = tmp_path / "tracks.json"
    designed = {"name": "square", "points": [[0, 0], [9, 0], [9, 9], [0, 9]]}
    tracks.write_text(json.dumps({"tracks": [designed, circle_entry("ring", 200.0, 16)]}))
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        cli,
        ["eval", str(run_dir), "--tracks", str(tracks), "--episodes", "1", "--json", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("square ") for line in lines) and any(
        line.startswith("ring ") for line in lines
    )
    assert any(line.startswith("overall ") for line in lines)
    data = json.loads(out.read_text())
    assert [row["level"] for row in data["levels"]] == ["square", "ring"]
    assert all(math.isfinite(row["mean_return"]) for row in data["levels"])
    # the ring's 16 frames = 2 policy steps of -0.1 per frame (plus tiles); the square's 24 frames
    assert data["levels"][1]["mean_return"] >= -0.1 * 16 - 1e-6

    both = CliRunner().invoke(cli, ["eval", str(run_dir), "--tracks", str(tracks), "--levels", str(tracks)])
    assert both.exit_code == 2 and "not both" in both.output
    suite_too = CliRunner().invoke(cli, ["eval", str(run_dir), "--tracks", str(tracks), "--suite", "x"])
    assert suite_too.exit_code == 2 and "--tracks" in suite_too.output
    missing = CliRunner().invoke(cli, ["eval", str(run_dir), "--tracks", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    assert data["env_options"] == {
        "max_episode_steps": 24,
        "thin_centerlines": False,
        "lap_complete_percent": 1.0,
        "camera": "dcd",
    }

    # --env-option overrides the run's family options for this evaluation only
    ring_only = tmp_path / "ring.json"
    ring_only.write_text(json.dumps({"tracks": [circle_entry("ring", 200.0, 16)]}))
    args = ["eval", str(run_dir), "--tracks", str(ring_only), "--episodes", "1", "--json", str(out)]
    changed = CliRunner().invoke(
        cli, args + ["--env-option", "lap_complete_percent=0.95", "--env-option", "thin_centerlines=true"]
    )
    assert changed.exit_code == 0, changed.output
    assert (
        "overridden for this evaluation: lap_complete_percent=0.95, thin_centerlines=True" in changed.output
    )
    data = json.loads(out.read_text())
    assert data["env_option_overrides"] == {"lap_complete_percent": 0.95, "thin_centerlines": True}
    assert data["env_options"] == {
        "max_episode_steps": 24,
        "thin_centerlines": True,
        "lap_complete_percent": 0.95,
        "camera": "dcd",
    }
    saved = json.loads((run_dir / "config.json").read_text())  # the run's own options are untouched
    assert saved["train"]["env_options"] == {"max_episode_steps": 24}
    assert saved["resolved"]["env_options"] == {
        "max_episode_steps": 24,
        "thin_centerlines": False,
        "lap_complete_percent": 1.0,
        "camera": "dcd",
    }
    unknown = CliRunner().invoke(cli, args + ["--env-option", "max_walls=3"])
    assert unknown.exit_code == 2 and "lap_complete_percent" in unknown.output  # lists the valid options
    bad = CliRunner().invoke(cli, args + ["--env-option", "lap_complete_percent=2"])
    assert bad.exit_code == 2 and "lap_complete_percent" in bad.output
    malformed = CliRunner().invoke(cli, args + ["--env-option", "thin_centerlines"])
    assert malformed.exit_code == 2 and "KEY=VALUE" in malformed.output


def test_ued_eval_help_warns_that_old_track_rules_are_not_comparable():
    from ued.cli.main import cli

    result = CliRunner().invoke(cli, ["eval", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "--env-option KEY=VALUE" in text
    assert "thin_centerlines" in text and "lap_complete_percent" in text
    assert "NOT comparable with published F1 results" in text


def test_the_overall_row_leaves_out_the_familys_mean_excludes():
    rows = [
        LevelScore("A", 1.0, 1.0, 2),
        LevelScore("LagunaSeca", 100.0, 0.0, 2),
        LevelScore("B", 3.0, 0.0, 2),
    ]
    car = CarRacingFamily()
    assert car.mean_excludes == {"LagunaSeca"}  # the UED papers' 20-circuit F1 mean (shared data README)
    total = overall(rows, car.mean_excludes)
    assert (total.mean_return, total.solved_rate, total.episodes) == (2.0, 0.5, 4)
    assert overall(rows).mean_return == pytest.approx(104 / 3)
    table = format_table(rows, total, rows, car.mean_excludes)
    assert "LagunaSeca *" in table and "not in the overall row" in table
    assert "A *" not in table and "overall *" not in table
    assert MazeFamily().mean_excludes == frozenset()


def test_long_episodes_report_progress_before_they_end():
    """A walled-off goal with a 1000-step limit: no episode ends before step 1000, yet progress is told
    every TICK_STEPS steps (a long evaluation never looks hung), and once more when the batch is done."""
    from ued.environments.maze import MazeLevel
    from ued.evaluation import TICK_STEPS

    family = MazeFamily()
    walled = MazeLevel(7, 5, ((3, 1), (3, 2), (3, 3)), (1, 1), 0, (5, 2), max_steps=1000)
    calls = []
    torch.manual_seed(0)
    policy = make_student(family)
    rows = evaluate(policy, family, [("walled", walled)], episodes=2, progress=lambda *a: calls.append(a))
    assert rows[0].solved_rate == 0.0
    ticks = 1000 // TICK_STEPS - 1
    assert calls[:ticks] == [(0, 2)] * ticks and calls[-1] == (2, 2)
