"""Held-out suites, their gymnasium ids, and the `ued envs` / `ued render` commands."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner
from gymnasium.utils.env_checker import check_env
from PIL import Image

import ued.environments  # noqa: F401  (registers families, suites and gym ids)
from ued.cli.main import cli
from ued.environments.maze import MazeEnv, MazeLevel, format_maze, load_maze
from ued.environments.suites import (
    MAZE_DIR,
    MAZE_TRANSFER,
    PERFECT_MAZES,
    SUITES,
    Suite,
    get_suite,
    perfect_maze_text,
    register_suite,
)
from ued.errors import UsageError

REQUIRED = {
    "SixteenRooms",
    "SixteenRoomsFewerDoors",
    "Labyrinth",
    "Labyrinth2",
    "Maze",
    "Maze2",
    "Maze3",
    "SmallCorridor",
    "LargeCorridor",
    "Crossing",
    "FourRooms",
    "PerfectMaze11",
    "PerfectMaze21",
    "PerfectMaze51",
}


def test_maze_transfer_levels_are_solvable_and_distinct():
    suite = get_suite("maze-transfer")
    assert suite.family == "maze"
    levels = suite.levels()
    names = [name for name, _ in levels]
    assert REQUIRED <= set(names) and len(names) == len(set(names)) >= 12
    assert all(isinstance(lvl, MazeLevel) and lvl.is_solvable() for _, lvl in levels)
    assert len({lvl for _, lvl in levels}) == len(levels)
    sizes = {name: (lvl.width, lvl.height) for name, lvl in levels}
    assert sizes["LargeCorridor"] == (21, 21) and sizes["PerfectMaze51"] == (51, 51)
    assert sizes["SixteenRooms"] == (15, 15)


def test_maze_files_are_canonical_text():
    for name in MAZE_TRANSFER:
        text = (MAZE_DIR / f"{name}.txt").read_text()
        body = "".join(line + "\n" for line in text.splitlines() if not line.startswith(";"))
        assert format_maze(load_maze(MAZE_DIR / f"{name}.txt")) == body


def test_perfect_maze_files_match_generator():
    for name in PERFECT_MAZES:
        assert (MAZE_DIR / f"{name}.txt").read_text() == perfect_maze_text(name)


@pytest.mark.parametrize("name", MAZE_TRANSFER)
def test_gym_ids_make_envs(name):
    env = gym.make(f"ued/Maze-{name}-v0")
    obs, _ = env.reset(seed=0)
    assert isinstance(env.unwrapped, MazeEnv) and obs["image"].shape == (5, 5, 3)
    assert env.unwrapped.level == load_maze(MAZE_DIR / f"{name}.txt")
    env.close()


def test_gym_id_passes_checker():
    env = gym.make("ued/Maze-FourRooms-v0", render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=True)  # its "human" mode would open a window
    env.reset(seed=0)
    assert env.render().shape == (15 * 32, 15 * 32, 3)


def test_get_suite_unknown_names_known_ones():
    with pytest.raises(UsageError, match="maze-transfer"):
        get_suite("no-such-suite")


def test_register_suite():
    level = load_maze(MAZE_DIR / "FourRooms.txt")
    suite = register_suite(Suite("test-tiny", "maze", "one level", lambda: [("only", level)]))
    try:
        assert get_suite("test-tiny").levels() == [("only", level)]
    finally:
        SUITES.pop(suite.name)


def test_cli_envs_lists_families_and_suites():
    result = CliRunner().invoke(cli, ["envs"])
    assert result.exit_code == 0, result.output
    maze_row = next(line.split() for line in result.output.splitlines() if line.split()[:1] == ["maze"])
    assert maze_row == ["maze", "169", "52", "maze-lstm", "maze-transfer"]
    suite_row = next(
        line.split() for line in result.output.splitlines() if line.split()[:1] == ["maze-transfer"]
    )
    assert suite_row[:3] == ["maze-transfer", "maze", str(len(MAZE_TRANSFER))]


def test_cli_render_suite(tmp_path):
    result = CliRunner().invoke(cli, ["render", "--suite", "maze-transfer", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(p.stem for p in tmp_path.glob("*.png"))
    assert files == sorted(MAZE_TRANSFER)
    image = np.asarray(Image.open(tmp_path / "PerfectMaze11.png"))
    assert image.ndim == 3 and image.shape[0] == image.shape[1] > 0


def test_cli_render_files_and_samples(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["render", "--levels", str(MAZE_DIR / "Maze.txt"), "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["Maze.png"]
    result = runner.invoke(cli, ["render", "--levels", str(MAZE_DIR), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0 and len(list((tmp_path / "b").glob("*.png"))) == len(
        list(MAZE_DIR.glob("*.txt"))
    )
    result = runner.invoke(
        cli, ["render", "--env", "maze", "--sample", "3", "--seed", "4", "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 0 and len(list((tmp_path / "c").glob("*.png"))) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "nope"], "unknown suite"),
        ([], "exactly one of"),
        (["--suite", "maze-transfer", "--sample", "2"], "exactly one of"),
        (["--sample", "0"], "at least 1"),
        (["--levels", "/no/such/path"], "does not exist"),
        (["--env", "nope", "--sample", "1"], "unknown environment"),
    ],
)
def test_cli_render_bad_input(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["render", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_render_reports_bad_maze_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("#####\n#>..#\n#.x.#\n#..G#\n#####\n")
    result = CliRunner().invoke(cli, ["render", "--levels", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and f"{bad}:3:3: unknown character" in result.output
