"""`ued render --run RUN --episode LEVEL`: a trained student's episode as an animated GIF, on tiny runs."""

from __future__ import annotations

import shutil

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ued.cli.main import cli
from ued.config import TrainConfig
from ued.environments.suites import get_suite
from ued.runner import train


def _frames(path) -> int:
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        return gif.n_frames


def _render(*args):
    return CliRunner().invoke(cli, ["render", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory):
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("maze") / "run"
    config = TrainConfig(
        env="maze", teacher="dr", num_envs=4, num_steps=16, total_steps=64, run_dir=str(run_dir), threads=1
    )
    train(config, progress=False)
    return run_dir


def test_episode_on_a_suite_level_writes_a_gif(maze_run, tmp_path):
    out = tmp_path / "x.gif"
    result = _render("--run", maze_run, "--episode", "SixteenRooms", "--out", out, "--max-frames", 25)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "on SixteenRooms:" in result.output
    assert 1 < _frames(out) <= 25
    with Image.open(out) as gif:
        assert gif.size == (240, 240)  # 15x15 tiles of 32 px, halved
    # the same seed plays the same episode; the GIF is a file of its own, nothing else is left
    again = tmp_path / "again.gif"
    assert (
        _render("--run", maze_run, "--episode", "SixteenRooms", "--out", again, "--max-frames", 25).exit_code
        == 0
    )
    assert out.read_bytes() == again.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.gif", "x.gif"]


def test_a_procedural_level_is_drawn_from_the_seed(maze_run, tmp_path):
    gifs = []
    for seed in (0, 0, 1):
        out = tmp_path / f"four-{len(gifs)}.gif"
        result = _render(
            "--run", maze_run, "--episode", "FourRooms", "--seed", seed, "--max-frames", 3, "--out", out
        )
        assert result.exit_code == 0, result.output
        with Image.open(out) as gif:
            gifs.append(gif.convert("RGB").tobytes())  # the first frame: the drawn layout and the start
    assert gifs[0] == gifs[1] and gifs[0] != gifs[2]


def test_episode_on_a_level_file_and_from_another_suite(maze_run, tmp_path):
    level = tmp_path / "corridor.txt"
    level.write_text("max_steps: 20\n#######\n#>..G.#\n#.###.#\n#.....#\n#######\n")
    out = tmp_path / "corridor.gif"
    result = _render("--run", maze_run, "--episode", level, "--out", out, "--max-frames", 5)
    assert result.exit_code == 0, result.output
    assert "on corridor:" in result.output and _frames(out) > 1
    out2 = tmp_path / "jax.gif"
    result = _render(
        "--run",
        maze_run,
        "--suite",
        "jaxued-maze",
        "--episode",
        "StandardMaze2",
        "--out",
        out2,
        "--max-frames",
        12,
    )
    assert result.exit_code == 0, result.output
    assert _frames(out2) > 1


def test_teacher_levels_of_a_run_still_render(maze_run, tmp_path):
    result = _render("--run", maze_run, "--count", 2, "--out", tmp_path / "pics")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["grid.png", "run-00.png", "run-01.png"]


def test_episode_usage_errors(maze_run, tmp_path):
    def error(*args):
        result = _render(*args)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output  # one clear line
        return lines[0]

    gif = tmp_path / "x.gif"
    line = error("--run", maze_run, "--episode", "NoSuchMaze", "--out", gif)
    assert "unknown level 'NoSuchMaze'" in line and "SixteenRooms" in line and "maze-transfer" in line
    assert "must end in .gif" in error(
        "--run", maze_run, "--episode", "SixteenRooms", "--out", tmp_path / "x.png"
    )
    assert "--run RUN_DIR" in error("--episode", "SixteenRooms", "--out", gif)
    assert "no 'antagonist' student" in error(
        "--run", maze_run, "--episode", "SixteenRooms", "--student", "antagonist", "--out", gif
    )
    assert "--max-frames" in error(
        "--run", maze_run, "--episode", "SixteenRooms", "--max-frames", 1, "--out", gif
    )
    assert "--sample" in error("--run", maze_run, "--episode", "SixteenRooms", "--sample", 2, "--out", gif)
    folder = tmp_path / "mazes"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.txt").write_text("#######\n#>..G.#\n#.###.#\n#.....#\n#######\n")
    line = error("--run", maze_run, "--episode", folder, "--out", gif)
    assert "holds 2 levels (a, b)" in line and f"--levels {folder} --episode NAME" in line
    result = _render("--run", maze_run, "--levels", folder, "--episode", "b", "--max-frames", 6, "--out", gif)
    assert result.exit_code == 0, result.output
    gif.unlink()
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    shutil.copy(maze_run / "config.json", untrained / "config.json")
    assert "no checkpoint" in error("--run", untrained, "--episode", "SixteenRooms", "--out", gif)
    assert "does not exist" in error("--run", tmp_path / "missing", "--episode", "SixteenRooms", "--out", gif)
    assert not gif.exists()


def test_episode_of_a_carracing_run(tmp_path):
    run_dir = tmp_path / "car"
    config = TrainConfig(
        env="carracing",
        teacher="dr",
        num_envs=2,
        num_steps=2,
        total_steps=4,
        run_dir=str(run_dir),
        backend="gym",
        threads=1,
    )
    train(config, progress=False)
    out = tmp_path / "lap.gif"
    name = get_suite("carracing-transfer").levels()[0][0]
    result = _render("--run", run_dir, "--episode", name, "--out", out, "--max-frames", 4, "--fps", 6)
    assert result.exit_code == 0, result.output
    assert 1 < _frames(out) <= 4
    with Image.open(out) as gif:
        assert (
            gif.size == (300, 200) and gif.info["duration"] == 170
        )  # 600x400 halved; 6 fps in GIF's 10 ms steps
