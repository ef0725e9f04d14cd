"""The references `ued eval` prints beside a student: a uniformly random policy (cached) and the run's own
training levels."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ued import baselines
from ued.baselines import RandomPolicy, random_baseline
from ued.cli.main import cli
from ued.environments.maze import MazeFamily, parse_maze

GOAL_AHEAD = "#####\n#>G.#\n#...#\n#...#\n#####\n"  # one step forward
WALLED_IN = "max_steps: 40\n#######\n#>.#..#\n#..#.G#\n#..#..#\n#######\n"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UED_CACHE_DIR", str(tmp_path / "cache"))


def test_random_policy_is_uniform():
    import gymnasium as gym

    policy = RandomPolicy(gym.spaces.Discrete(7))
    dist, value, state = policy(None, None, torch.ones(5))
    assert torch.allclose(dist.probs, torch.full((5, 7), 1 / 7)) and value.shape == (5,) and state is None
    box = RandomPolicy(gym.spaces.Box(0.0, 1.0, (3,)))
    actions = box(None, None, torch.ones(1000))[0].sample()
    assert actions.shape == (1000, 3) and 0.4 < float(actions.mean()) < 0.6 and float(actions.min()) >= 0


def test_random_baseline_facts_on_tiny_levels():
    """A goal one step ahead: the random policy finds it within 250 steps in most episodes (93.5% at seed 0); a walled-off
    goal: never."""
    family = MazeFamily()
    levels = [("ahead", parse_maze(GOAL_AHEAD)), ("walled", parse_maze(WALLED_IN, allow_unsolvable=True))]
    rows = random_baseline(family, levels, episodes=200, seed=0)
    assert [r.name for r in rows] == ["ahead", "walled"]
    assert rows[0].solved_rate > 0.85 and rows[1].solved_rate == 0.0 and rows[1].mean_return == 0.0
    assert 0.5 < rows[0].mean_return < 1.0


def test_random_baseline_is_cached(monkeypatch):
    family = MazeFamily()
    levels = [("ahead", parse_maze(GOAL_AHEAD))]
    first = random_baseline(family, levels, episodes=20, seed=3)

    def fail(*args, **kwargs):
        raise AssertionError("evaluated again instead of reading the cache")

    monkeypatch.setattr(baselines, "evaluate", fail)
    assert random_baseline(family, levels, episodes=20, seed=3) == first
    with pytest.raises(AssertionError, match="evaluated again"):
        random_baseline(family, levels, episodes=21, seed=3)  # another episode count: another entry


def test_ued_eval_prints_and_writes_the_references(tmp_path):
    run = tmp_path / "run"
    args = ["--num-envs", "4", "--num-steps", "16", "--threads", "1", "--no-progress", "--eval-interval", "0"]
    result = CliRunner().invoke(cli, ["train", "--run-dir", str(run), "--total-steps", "64", *args])
    assert result.exit_code == 0, result.output
    assert f"ued eval {run}" in result.output  # says what to run next
    maze = tmp_path / "ahead.txt"
    maze.write_text(GOAL_AHEAD)
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        cli, ["eval", str(run), "--levels", str(maze), "--episodes", "4", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "random solved" in result.output and "its own training levels" in result.output
    data = json.loads(out.read_text())
    assert {"random_solved_rate", "random_mean_return"} <= set(data["levels"][0])
    assert data["training_levels"]["levels"] == 32 and "random_solved_rate" in data["training_levels"]
    quiet = CliRunner().invoke(
        cli, ["eval", str(run), "--levels", str(maze), "--episodes", "2", "--no-baselines"]
    )
    assert quiet.exit_code == 0 and "random" not in quiet.output
