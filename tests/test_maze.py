"""The maze family: tokens, sampling, repair, the text format and the MazeEnv's semantics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.minigrid_env import MiniGridEnv

from ued.environments.maze import (
    MazeEnv,
    MazeFamily,
    MazeFormatError,
    MazeLevel,
    cell_of,
    format_maze,
    level_max_steps,
    load_maze,
    parse_maze,
    perfect_maze,
    save_maze,
    token_of,
)
from ued.errors import UsageError
from ued.levels import make_family

FAMILY = MazeFamily()
FORWARD, LEFT, RIGHT = 2, 0, 1


def _random_tokens(rng: np.random.Generator, family: MazeFamily = FAMILY) -> np.ndarray:
    return rng.integers(0, family.vocab_size, size=int(rng.integers(0, family.max_tokens + 1)))


def test_registered_with_published_sizes():
    family = make_family("maze", max_walls=25)
    assert isinstance(family, MazeFamily)
    assert (family.vocab_size, family.max_tokens) == (169, 27)
    assert (FAMILY.vocab_size, FAMILY.max_tokens, FAMILY.editor_view_shape) == (169, 52, (3, 15, 15))
    with pytest.raises(UsageError, match="max_walls"):
        MazeFamily(max_walls=-1)


def test_token_cell_mapping():
    assert (
        cell_of(0) == (1, 1) and cell_of(12) == (13, 1) and cell_of(13) == (1, 2) and cell_of(168) == (13, 13)
    )
    assert all(token_of(cell_of(t)) == t for t in range(169))


def test_token_round_trip_on_sampled_levels():
    rng = np.random.default_rng(0)
    for family in (FAMILY, MazeFamily(max_walls=25), MazeFamily(max_walls=60)):
        for _ in range(200):
            level = family.sample(rng)
            tokens = family.encode(level)
            assert tokens.shape == (family.max_tokens,) and tokens.dtype == np.int64
            assert family.decode(tokens) == level
            assert tokens[-2] == token_of(level.goal) and tokens[-1] == token_of(level.start)
            walls = tokens[: len(level.walls)]
            assert list(walls) == sorted(walls) and (tokens[len(level.walls) : -1] == tokens[-2]).all()


def test_decode_random_sequences_then_repair():
    rng = np.random.default_rng(1)
    unsolvable = 0
    for _ in range(400):
        tokens = _random_tokens(rng)
        level = FAMILY.decode(tokens)
        assert (level.width, level.height) == (15, 15)
        assert np.array_equal(FAMILY.encode(level), FAMILY.canonical(tokens))
        assert np.array_equal(FAMILY.canonical(FAMILY.canonical(tokens)), FAMILY.canonical(tokens))
        assert FAMILY.decode(FAMILY.encode(level)) == level
        fixed = FAMILY.repair(level)
        assert FAMILY.is_valid(fixed)
        assert set(fixed.walls) <= set(level.walls)
        assert (fixed.start, fixed.goal, fixed.start_dir) == (level.start, level.goal, level.start_dir)
        assert FAMILY.repair(level) == fixed  # deterministic
        if not FAMILY.is_valid(level):
            unsolvable += 1
        else:
            assert fixed == level
    assert unsolvable > 0  # the repair path was exercised


def test_decode_follows_dcd_goal_last_placement():
    """dcd envs/multigrid/adversarial.py step_adversary with choose_goal_last: walls, then goal, then start."""
    small = MazeFamily(max_walls=3)
    level = small.decode([7, 7, 40, 5, 5])  # a repeated wall is a no-op; a start on the goal moves on
    assert (
        level.goal == cell_of(5)
        and level.start == cell_of(6)
        and set(level.walls) == {cell_of(7), cell_of(40)}
    )
    level = small.decode([5, 40, 9, 5, 9])  # the goal and the start remove the walls on their cells
    assert level.walls == (cell_of(40),) and level.goal == cell_of(5) and level.start == cell_of(9)
    assert small.decode([1, 2, 168, 168, 168]).start == cell_of(0)  # the next free cell wraps around
    assert small.decode([0, 1, 2, 168, 168]).start == cell_of(3)  # ... and skips walls
    assert level.start_dir is None  # random each time an env loads the level (dcd)
    empty = small.decode([])
    assert (empty.goal, empty.start, empty.walls) == (cell_of(168), cell_of(0), ())
    assert small.decode([30]).walls == (cell_of(30),) and small.decode([30]).start == cell_of(0)
    assert small.max_tokens == 5 and FAMILY.max_tokens == 52
    with pytest.raises(ValueError):
        FAMILY.decode([169])
    with pytest.raises(ValueError):
        FAMILY.decode([0] * (FAMILY.max_tokens + 1))


def test_encode_rejects_foreign_levels():
    with pytest.raises(ValueError, match="15x15"):
        FAMILY.encode(perfect_maze(21, 0))
    crowded = FAMILY.decode(list(range(50)) + [100, 101])
    with pytest.raises(ValueError, match="walls"):
        MazeFamily(max_walls=10).encode(crowded)


def test_level_validation():
    with pytest.raises(ValueError):
        MazeLevel(15, 15, ((3, 3),), (3, 3), 0, (5, 5))  # start on a wall
    with pytest.raises(ValueError):
        MazeLevel(15, 15, (), (0, 3), 0, (5, 5))  # start on the outer wall
    with pytest.raises(ValueError):
        MazeLevel(15, 15, (), (5, 5), 0, (5, 5))
    assert MazeLevel(15, 15, ((4, 2), (2, 2)), (1, 1), 0, (5, 5)).walls == ((2, 2), (4, 2))
    with pytest.raises(ValueError, match="start_dir"):
        MazeLevel(15, 15, (), (1, 1), 4, (5, 5))
    with pytest.raises(ValueError, match="max_steps"):
        MazeLevel(15, 15, (), (1, 1), 0, (5, 5), max_steps=0)
    played = MazeLevel(15, 15, (), (1, 1), None, (5, 5), max_steps=450, see_through=False)
    assert played != MazeLevel(15, 15, (), (1, 1), None, (5, 5)) and len({played, played}) == 1
    assert level_max_steps(played) == 450 == FAMILY.episode_limit(played)
    assert (
        level_max_steps(MazeLevel(21, 21, (), (1, 1), 0, (5, 5)))
        == 500
        == FAMILY.episode_limit(MazeLevel(21, 21, (), (1, 1), 0, (5, 5)))
    )


def test_repair_keeps_how_the_level_is_played():
    broken = MazeLevel(7, 7, tuple((x, 3) for x in range(1, 6)), (1, 1), None, (5, 5), 99, False)
    fixed = FAMILY.repair(broken)
    assert fixed.is_solvable() and len(fixed.walls) == 4
    assert (fixed.start_dir, fixed.max_steps, fixed.see_through) == (None, 99, False)


def test_fast_solvability_agrees_with_networkx():
    rng = np.random.default_rng(2)
    for _ in range(300):
        level = FAMILY.decode(rng.integers(0, 169, size=2 + int(rng.integers(0, 120))).tolist()[:52])
        stats = FAMILY.level_stats(level)
        assert level.is_solvable() == (not math.isnan(stats["shortest_path"])) == bool(stats["solvable"])
        assert stats["walls"] == len(level.walls)


def test_repair_removes_fewest_walls():
    ring = [(x, y) for x in range(5, 10) for y in range(5, 10) if x in (5, 9) or y in (5, 9)]
    one = MazeLevel(15, 15, tuple(ring), (1, 1), 0, (7, 7))
    assert not FAMILY.is_valid(one)
    assert len(one.walls) - len(FAMILY.repair(one).walls) == 1
    outer = [(x, y) for x in range(3, 12) for y in range(3, 12) if x in (3, 11) or y in (3, 11)]
    two = MazeLevel(15, 15, tuple(ring + outer), (1, 1), 0, (7, 7))
    fixed = FAMILY.repair(two)
    assert FAMILY.is_valid(fixed) and len(two.walls) - len(fixed.walls) == 2
    assert fixed.shortest_path_length() == 12  # and the shortest such path


def test_sample_is_dcds_random_adversary():
    """dcd's DR mazes: n_clutter uniform wall placements then goal then agent, not repaired (a few are
    unsolvable); the "uniform" budget of the ACCEL paper's env spreads the wall count over 0..max_walls-1."""
    a = [FAMILY.sample(np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = np.random.default_rng(3)
    levels = [MazeFamily(max_walls=25).sample(rng) for _ in range(600)]
    assert all(len(lvl.walls) <= 25 for lvl in levels) and len(set(levels)) == 600
    unsolvable = np.mean([not lvl.is_solvable() for lvl in levels])
    assert 0 < unsolvable < 0.06
    assert 22 < np.mean([len(lvl.walls) for lvl in levels]) <= 25  # repeats and goal/start cells drop a few
    uniform = MazeFamily(max_walls=60, wall_budget="uniform")
    counts = [len(uniform.sample(rng).walls) for _ in range(600)]
    assert min(counts) == 0 and 50 <= max(counts) < 60 and 20 < np.mean(counts) < 32

    # a first cell of 0..2 means no walls, and dcd's step_adversary then places the goal on that cell
    class Draws:  # the random adversary's 62 cells: `first`, then cell 100 everywhere, the start 150
        def __init__(self, first):
            self.cells = np.array([first] + [100] * 60 + [150])

        def integers(self, low, high, size):
            return self.cells

    for first in (0, 1, 2, 3):
        level = uniform.sample(Draws(first))
        budget_zero = first < 169 / 60
        assert level.goal == ((first % 13 + 1, 1) if budget_zero else (100 % 13 + 1, 100 // 13 + 1))
        assert set(level.walls) == (set() if budget_zero else {(first % 13 + 1, 1)})
    with pytest.raises(UsageError, match="wall_budget"):
        MazeFamily(wall_budget="some")


def test_editor_view_is_dcds_adversary_image():
    """minigrid's (object, colour, state) encoding / 10 of the grid written so far (dcd adversarial.py)."""
    small = MazeFamily(max_walls=2)
    view = small.editor_view([])
    assert view.shape == (3, 15, 15) and view.dtype == np.float32
    assert (view[0] == 0.2).sum() == 56 and (view[0] == 0.1).sum() == 169 and view[2].sum() == 0
    view = small.editor_view([20])  # a wall at cell (8, 2)
    assert (
        view[0, 2, 8] == np.float32(0.2) and view[1, 2, 8] == np.float32(0.5) and (view[0] == 0.2).sum() == 57
    )
    view = small.editor_view([20, 21, 20, 20])  # the goal removes its wall; a start on the goal moves on
    assert view[0, 2, 8] == np.float32(0.8) and view[1, 2, 8] == np.float32(0.1)
    assert view[0, 2, 10] == np.float32(1.0) and (view[0] == 0.2).sum() == 57  # start on (10, 2), next free


def test_env_passes_gymnasium_checker():
    env = FAMILY.make_env(FAMILY.sample(np.random.default_rng(0)))
    assert isinstance(env, MazeEnv)
    check_env(env)
    check_env(env.unwrapped)
    assert set(env.observation_space.spaces) == {"image", "direction"}
    assert env.action_space.n == 7 and env.see_through_walls and env.max_steps == 250


def test_fast_observation_equals_minigrid():
    rng = np.random.default_rng(4)
    env = FAMILY.make_env()
    for level in [FAMILY.sample(rng) for _ in range(10)] + [perfect_maze(21, 1)]:
        obs, _ = env.reset(options={"level": level})
        for _ in range(40):
            expected = MiniGridEnv.gen_obs(env)
            assert (
                np.array_equal(obs["image"], expected["image"]) and obs["direction"] == expected["direction"]
            )
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
            if terminated or truncated:
                break


def test_occluded_observation_equals_minigrid():
    """A level with see_through=False plays with minigrid's own occlusion (see_through_walls=False)."""
    rng = np.random.default_rng(8)
    env = FAMILY.make_env()
    hidden = 0
    for level in [dataclasses.replace(FAMILY.sample(rng), see_through=False) for _ in range(8)]:
        obs, _ = env.reset(options={"level": level})
        assert not env.see_through_walls
        for _ in range(40):
            expected = MiniGridEnv.gen_obs(env)
            assert np.array_equal(obs["image"], expected["image"]) and obs["direction"] == env.agent_dir
            hidden += int((obs["image"] == 0).all(axis=-1).sum())
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(3)))
            if terminated or truncated:
                break
    assert hidden > 0
    env.reset(options={"level": FAMILY.sample(rng)})
    assert env.see_through_walls


def test_random_start_direction_is_drawn_when_loaded():
    level = MazeLevel(7, 7, (), (3, 3), None, (5, 5))
    env = MazeEnv(level)
    env.reset(seed=0)
    first = env.agent_dir
    for _ in range(3):
        env.step(LEFT)
        env.reset()  # the same level again (an autoreset): the drawn direction is kept
        assert env.agent_dir == first
    env.reset(seed=0)
    assert env.agent_dir == first
    dirs = set()
    for seed in range(20):
        env.reset(seed=seed)
        dirs.add(env.agent_dir)
    assert dirs == {0, 1, 2, 3}
    redrawn = set()
    for _ in range(20):
        env.level = level  # loading the level again draws again
        env.reset()
        redrawn.add(env.agent_dir)
    assert len(redrawn) > 1


def test_level_episode_limit():
    level = dataclasses.replace(_corridor(), max_steps=7)
    env = MazeEnv(level)
    env.reset(seed=0)
    flags = [env.step(LEFT)[3] for _ in range(7)]
    assert flags == [False] * 6 + [True] and env.max_steps == 7
    assert MazeEnv(level, max_steps=3).max_steps == 3  # the env's own argument wins


def _corridor() -> MazeLevel:
    text = "#######\n#>...G#\n#.#####\n#.....#\n#######\n"
    return parse_maze(text)


def test_forward_into_wall_does_not_move():
    env = MazeEnv(_corridor())
    env.reset(seed=0)
    env.step(LEFT)  # now facing up, towards the outer wall
    _obs, reward, terminated, truncated, _ = env.step(FORWARD)
    assert tuple(env.agent_pos) == (1, 1) and reward == 0 and not terminated and not truncated


def test_reaching_goal_gives_published_reward():
    env = MazeEnv(_corridor())
    env.reset(seed=0)
    rewards = [env.step(FORWARD)[1] for _ in range(3)]
    _, reward, terminated, _, _ = env.step(FORWARD)
    assert rewards == [0, 0, 0] and terminated
    assert reward == pytest.approx(1 - 0.9 * 4 / 250)


def test_truncation_at_250_steps():
    env = MazeEnv(_corridor())
    env.reset(seed=0)
    for step in range(1, 251):
        _, _, terminated, truncated, _ = env.step(LEFT)
        assert not terminated and truncated == (step == 250)


def test_level_switching():
    env = MazeEnv(_corridor())
    big = perfect_maze(21, 5)
    _obs, _ = env.reset(options={"level": big})
    assert env.level == big and env.grid.width == 21 and tuple(env.agent_pos) == (1, 1)
    assert env.max_steps == 500
    small = dataclasses.replace(FAMILY.sample(np.random.default_rng(9)), start_dir=2)
    env.level = small
    env.reset()
    assert env.grid.width == 15 and tuple(env.agent_pos) == small.start and env.agent_dir == small.start_dir
    assert env.max_steps == 250


def test_vector_env_holds_levels():
    venv = FAMILY.make_vector_env(2, seed=0)
    levels = [_corridor(), dataclasses.replace(FAMILY.sample(np.random.default_rng(1)), start_dir=3)]
    venv.set_levels(levels)
    obs = venv.reset(seed=0)
    assert tuple(obs["image"].shape) == (2, 5, 5, 3) and obs["direction"].tolist() == [0, levels[1].start_dir]
    venv.close()


def test_render_and_stats():
    level = _corridor()
    image = FAMILY.render(level)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] == 5 * (image.shape[1] // 7)
    assert FAMILY.level_stats(level) == {"walls": 4.0, "shortest_path": 4.0, "solvable": 1.0}


def test_perfect_maze_is_a_tree():
    for size in (5, 11, 21):
        level = perfect_maze(size, seed=size)
        graph = level.free_graph()
        assert graph.number_of_edges() == graph.number_of_nodes() - 1 and level.is_solvable()
        assert level.start == (1, 1) and level.goal == (size - 2, size - 2)
        assert perfect_maze(size, seed=size) == level
    assert perfect_maze(21, 1) != perfect_maze(21, 2)
    with pytest.raises(ValueError):
        perfect_maze(10, 0)


def test_text_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    solvable = [lvl for lvl in (FAMILY.sample(rng) for _ in range(30)) if lvl.is_solvable()][:20]
    for level in solvable + [perfect_maze(21, 3)]:
        assert parse_maze(format_maze(level)) == level
        assert FAMILY.from_text(FAMILY.to_text(level)) == level
    level = solvable[0]
    save_maze(level, tmp_path / "m.txt", comment="a test maze\nsecond line")
    assert (tmp_path / "m.txt").read_text().startswith("; a test maze\n; second line\n")
    assert load_maze(tmp_path / "m.txt") == level
    assert parse_maze("#####\n#S..#\n#...#\n#..G#\n#####\n").start_dir == 0
    assert not format_maze(level).startswith(("max_steps", "see_through"))  # defaults: no headers


def test_text_headers_and_random_start():
    text = "; FourRooms-like\nmax_steps: 100\n\nsee_through: false\n#####\n#?..#\n#...#\n#..G#\n#####\n"
    level = parse_maze(text)
    assert (level.max_steps, level.see_through, level.start_dir) == (100, False, None)
    assert format_maze(level, "FourRooms-like") == text.replace("\n\n", "\n")
    assert parse_maze(format_maze(level)) == level == FAMILY.from_text(FAMILY.to_text(level))
    only = parse_maze("MAX_STEPS : 9\n#####\n#>..#\n#...#\n#..G#\n#####\n")
    assert (only.max_steps, only.see_through) == (9, True)
    assert format_maze(only).splitlines()[0] == "max_steps: 9"
    assert parse_maze("see_through: true\n" + "\n".join(GOOD)) == parse_maze("\n".join(GOOD))


GOOD = ["#######", "#>..#G#", "#.#.#.#", "#.#...#", "#######"]


def _edit(row: int, col: int, ch: str) -> str:
    rows = list(GOOD)
    rows[row] = rows[row][:col] + ch + rows[row][col + 1 :]
    return "; comment\n" + "\n".join(rows) + "\n"


@pytest.mark.parametrize(
    "text, where, what",
    [
        (_edit(1, 5, "."), "m.txt:6:1", "no goal"),
        (_edit(3, 1, "G"), "m.txt:5:2", "second goal"),
        (_edit(1, 1, "."), "m.txt:6:1", "no start"),
        (_edit(3, 5, "S"), "m.txt:5:6", "second start"),
        (_edit(2, 3, "x"), "m.txt:4:4", "unknown character"),
        (_edit(0, 2, "."), "m.txt:2:3", "not a wall"),
        (_edit(4, 6, "G"), "m.txt:6:7", "not a wall"),
        ("; c\n" + "\n".join(GOOD[:2] + [GOOD[2][:-1]] + GOOD[3:]), "m.txt:4:7", "make every row the same"),
        ("#####\n#>G.#\n#####\n", "m.txt:1:1", "too small"),
        ("", "m.txt:1:1", "too small"),
        (_edit(3, 4, "#"), "m.txt:3:6", "cannot be reached"),
        ("max_steps: 0\n" + "\n".join(GOOD), "m.txt:1:12", "give a whole number"),
        ("; c\nmax_steps:  4.5\n" + "\n".join(GOOD), "m.txt:2:13", "give a whole number"),
        ("see_through: no\n" + "\n".join(GOOD), "m.txt:1:14", "give true or false"),
        ("  colour: red\n" + "\n".join(GOOD), "m.txt:1:3", "unknown header 'colour'"),
        ("max_steps: 4\nmax_steps: 5\n" + "\n".join(GOOD), "m.txt:2:1", "second 'max_steps'"),
    ],
)
def test_text_errors_name_line_and_column(text, where, what):
    with pytest.raises(MazeFormatError, match=f"^{where}: .*{what}") as info:
        parse_maze(text, "m.txt")
    assert isinstance(info.value, UsageError) and ";" in str(info.value)


def test_unsolvable_allowed_on_request(tmp_path):
    text = _edit(3, 4, "#")
    level = parse_maze(text, allow_unsolvable=True)
    assert not level.is_solvable()
    (tmp_path / "u.txt").write_text(text)
    assert load_maze(tmp_path / "u.txt", allow_unsolvable=True) == level
    with pytest.raises(UsageError, match="does not exist"):
        load_maze(tmp_path / "missing.txt")


def test_mutate_and_easy_levels():
    rng = np.random.default_rng(6)
    easy = FAMILY.sample_easy(rng)
    assert easy.walls == () and FAMILY.is_valid(easy)
    level, changed = easy, 0
    for _ in range(200):
        child = FAMILY.mutate(level, rng, num_edits=3)
        assert FAMILY.is_valid(child) and len(child.walls) <= FAMILY.max_walls
        assert FAMILY.decode(FAMILY.encode(child)) == child
        changed += child != level
        level = child
    assert changed > 150 and len(level.walls) > 10
    same = [FAMILY.mutate(easy, np.random.default_rng(1), 5) for _ in range(2)]
    assert same[0] == same[1]
