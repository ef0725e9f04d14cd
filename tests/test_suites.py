"""Held-out suites as published (dcd, jaxued, minimax), their procedural generators, gymnasium ids, and the
`ued envs` / `ued render` commands."""

from __future__ import annotations

from collections import Counter, deque

import gymnasium as gym
import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner
from gymnasium.utils.env_checker import check_env
from PIL import Image

import ued.environments  # noqa: F401  (registers families, suites and gym ids)
from ued.cli.main import cli
from ued.environments.maze import MazeEnv, MazeLevel, format_maze, load_maze
from ued.environments.maze_generators import (
    CROSSINGS,
    FOUR_ROOMS,
    LARGE_CORRIDOR_GOALS,
    MST_MAZES,
    SMALL_CORRIDOR_GOALS,
    mst_maze,
    simple_crossing,
)
from ued.environments.suites import (
    MAZE_DIR,
    PERFECT_MAZES,
    SUITES,
    UED_MAZES,
    Suite,
    dcd_corridor,
    get_suite,
    gym_maze_files,
    perfect_maze_text,
    register_suite,
)
from ued.errors import UsageError
from ued.levels import Procedural, draw_levels, entry_rng

DIRS = [(1, 0), (0, 1), (-1, 0), (0, -1)]


def min_actions(level: MazeLevel) -> int:
    """Fewest minigrid actions (left, right, forward) from the start, facing its direction, to the goal."""
    wall = level.wall_grid()
    first = (*level.start, level.start_dir)
    dist = {first: 0}
    queue = deque([first])
    while queue:
        x, y, d = state = queue.popleft()
        dx, dy = DIRS[d]
        for nxt in ((x, y, (d - 1) % 4), (x, y, (d + 1) % 4), (x + dx, y + dy, d)):
            if wall[nxt[1], nxt[0]] or nxt in dist:
                continue
            if nxt[:2] == level.goal:
                return dist[state] + 1
            dist[nxt] = dist[state] + 1
            queue.append(nxt)
    raise AssertionError("goal unreachable")


def sample(entry, seed: int = 0):
    return entry.sample(np.random.default_rng(seed)) if isinstance(entry, Procedural) else entry


# ----- the fixed layouts, pinned to the published ones ---------------------------------------------------
#: file -> (inner walls, start, start_dir, goal, size, max_steps, shortest path, min actions); from
#: notes on facebookresearch/dcd envs/multigrid/maze.py @72991be (§2, §7) and, for LabyrinthFlipped,
#: DramaCow/jaxued src/jaxued/environments/maze/level.py @0f8f128 (§4.2)
PUBLISHED = {
    "dcd/SixteenRooms": (46, (2, 2), 0, (12, 12), 15, 450, 20, 26),
    "dcd/SixteenRoomsFewerDoors": (53, (2, 2), 0, (12, 12), 15, 450, 22, 28),
    "dcd/Labyrinth": (72, (1, 13), 0, (7, 7), 15, 450, 96, 113),
    "dcd/Labyrinth2": (72, (1, 1), 0, (7, 7), 15, 450, 96, 113),
    "dcd/Maze": (73, (7, 1), 0, (7, 13), 15, 450, 40, 54),
    "dcd/Maze2": (72, (1, 7), 0, (13, 5), 15, 450, 56, 73),
    "dcd/Maze3": (71, (4, 1), 0, (13, 7), 15, 450, 39, 54),
    "jaxued/LabyrinthFlipped": (72, (13, 13), 2, (7, 7), 15, 250, 96, 113),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_fixed_layouts_are_the_published_ones(name):
    """dcd envs/multigrid/maze.py (SixteenRoomsEnv, SixteenRoomsFewerDoorsEnv, LabyrinthEnv, Labyrinth2Env,
    MazeEnv, HorizontalMazeEnv, Maze3Env) and jaxued level.py (LabyrinthFlipped): walls, start cell and
    facing, goal, grid size, episode limit, BFS shortest path and fewest actions."""
    walls, start, start_dir, goal, size, max_steps, path, actions = PUBLISHED[name]
    level = load_maze(MAZE_DIR / f"{name}.txt")
    assert (level.width, level.height) == (size, size)
    assert (len(level.walls), level.start, level.start_dir, level.goal) == (walls, start, start_dir, goal)
    assert level.max_steps == max_steps and level.see_through
    assert level.shortest_path_length() == path
    assert min_actions(level) == actions


def test_labyrinth_flipped_mirrors_labyrinth():
    """jaxued's LabyrinthFlipped is the left-right mirror of dcd's Labyrinth (jaxued level.py)."""
    lab, flipped = (
        load_maze(MAZE_DIR / "dcd/Labyrinth.txt"),
        load_maze(MAZE_DIR / "jaxued/LabyrinthFlipped.txt"),
    )
    np.testing.assert_array_equal(lab.wall_grid()[:, ::-1], flipped.wall_grid())
    assert flipped.start == (14 - lab.start[0], lab.start[1]) and flipped.goal == (
        14 - lab.goal[0],
        lab.goal[1],
    )


@pytest.mark.parametrize(
    ("name", "size", "walls", "start", "max_steps", "goals", "first_path"),
    [
        ("SmallCorridor", 15, 71, (1, 7), 450, SMALL_CORRIDOR_GOALS, 13),
        ("LargeCorridor", 21, 161, (1, 10), 882, LARGE_CORRIDOR_GOALS, 19),
    ],
)
def test_corridors_are_dcds(name, size, walls, start, max_steps, goals, first_path):
    """dcd envs/multigrid/maze.py SmallCorridorEnv / LargeCorridorEnv: fixed walls and start (facing right),
    goal among the dead-end tips next to the middle wall (rows 6, 8 / 9, 11; odd columns 3..size-4); the
    shortest path grows by 2 per column (13..21 / 19..33)."""
    assert len(goals) == (10 if size == 15 else 16)
    entry = dcd_corridor(name)
    levels = draw_levels(entry, 300, np.random.default_rng(0))
    assert {lvl.goal for lvl in levels} == set(goals)  # every candidate is drawn, nothing else
    for lvl in levels[:20]:
        assert (lvl.width, len(lvl.walls), lvl.start, lvl.start_dir, lvl.max_steps) == (
            size,
            walls,
            start,
            0,
            max_steps,
        )
        assert lvl.shortest_path_length() == first_path + (lvl.goal[0] - 3)
    middle = size // 2
    assert {(x, middle) for x in range(2, size - 2)} <= set(levels[0].walls)


# ----- the suites ------------------------------------------------------------------------------------------
SUITE_ENTRIES = {
    "maze-transfer": [
        "SixteenRooms",
        "SixteenRoomsFewerDoors",
        "Labyrinth",
        "Labyrinth2",
        "Maze",
        "Maze2",
        "Maze3",
        "SimpleCrossingS11N5",
        "FourRooms",
        "SmallCorridor",
        "LargeCorridor",
        "PerfectMazeMedium",
    ],
    "maze-transfer-rplr": [
        "SixteenRooms",
        "Labyrinth",
        "Labyrinth2",
        "Maze",
        "Maze2",
        "SimpleCrossingS11N5",
        "SmallCorridor",
    ],
    "maze-perfect": ["PerfectMazeSmall", "PerfectMazeMedium", "PerfectMazeLarge", "PerfectMazeXL"],
    "jaxued-maze": [
        "SixteenRooms",
        "SixteenRooms2",
        "Labyrinth",
        "LabyrinthFlipped",
        "Labyrinth2",
        "StandardMaze",
        "StandardMaze2",
        "StandardMaze3",
    ],
    "minimax-maze": [
        "SixteenRooms",
        "SixteenRooms2",
        "Labyrinth",
        "Labyrinth2",
        "LabyrinthFlipped",
        "StandardMaze",
        "StandardMaze2",
        "StandardMaze3",
        "SmallCorridor",
        "LargeCorridor",
    ],
    "ued-mazes": [f"ued-{name}" for name in UED_MAZES],
}
#: dcd's episode limits (envs/multigrid/*.py: 2*size^2, crossing 4*size^2, FourRooms 100)
DCD_LIMITS = {"SimpleCrossingS11N5": 484, "FourRooms": 100, "LargeCorridor": 882, "PerfectMazeMedium": 882}


@pytest.mark.parametrize("name", sorted(SUITE_ENTRIES))
def test_suites_hold_the_published_entries(name):
    suite = get_suite(name)
    assert suite.family == "maze" and suite.description and suite.protocol
    entries = suite.levels()
    assert [n for n, _ in entries] == SUITE_ENTRIES[name]
    for entry_name, entry in entries:
        assert isinstance(entry, (MazeLevel, Procedural)), entry_name
        assert sample(entry).is_solvable(), entry_name


def test_suite_limits_follow_their_sources():
    """dcd (maze-transfer): each env's own limit; jaxued: 250 (EnvParams); minimax: 2*(h+2)*(w+2)."""
    transfer = dict(get_suite("maze-transfer").levels())
    for name, entry in transfer.items():
        assert sample(entry).max_steps == DCD_LIMITS.get(name, 450), name
    assert {sample(e).max_steps for _, e in get_suite("jaxued-maze").levels()} == {250}
    minimax = {n: sample(e).max_steps for n, e in get_suite("minimax-maze").levels()}
    assert minimax.pop("LargeCorridor") == 882 and set(minimax.values()) == {450}
    perfect = [sample(e).max_steps for _, e in get_suite("maze-perfect").levels()]
    assert perfect == [242, 882, 5202, 20402]
    assert {sample(e).max_steps for _, e in get_suite("ued-mazes").levels()} == {None}  # the family's rule
    # the same layouts in all three sources
    jaxued = dict(get_suite("jaxued-maze").levels())
    assert jaxued["StandardMaze2"].walls == transfer["Maze2"].walls
    assert jaxued["SixteenRooms2"].walls == transfer["SixteenRoomsFewerDoors"].walls
    assert "FourRooms" not in dict(get_suite("minimax-maze").levels())
    assert "not included" in get_suite("minimax-maze").description


def test_ued_mazes_are_not_the_published_layouts():
    transfer = dict(get_suite("maze-transfer").levels())
    ued = dict(get_suite("ued-mazes").levels())
    for name in ("SixteenRooms", "Labyrinth", "Maze", "Maze2", "Maze3"):
        assert ued[f"ued-{name}"].walls != transfer[name].walls
    assert "NOT" in get_suite("ued-mazes").description


def test_maze_files_are_canonical_text():
    files = sorted(MAZE_DIR.glob("*/*.txt"))
    assert len(files) == len(UED_MAZES) + 7 + 2 + 1
    for path in files:
        text = path.read_text()
        body = "".join(line + "\n" for line in text.splitlines() if not line.startswith(";"))
        assert format_maze(load_maze(path)) == body, path


def test_perfect_maze_files_match_generator():
    for name in PERFECT_MAZES:
        assert (MAZE_DIR / "ued" / f"{name}.txt").read_text() == perfect_maze_text(name)


# ----- procedural generators (maze_generators.py) ---------------------------------------------------------
PROCEDURAL = {"FourRooms": FOUR_ROOMS, **CROSSINGS, **MST_MAZES}


@pytest.mark.parametrize("name", sorted(PROCEDURAL))
def test_generators_are_seeded_and_solvable(name):
    entry = PROCEDURAL[name]
    count = 2 if name in ("PerfectMazeLarge", "PerfectMazeXL") else 40
    levels = draw_levels(entry, count, np.random.default_rng(5))
    assert levels == draw_levels(entry, count, np.random.default_rng(5))
    assert levels != draw_levels(entry, count, np.random.default_rng(6))
    assert len(set(levels)) > count // 2
    assert all(lvl.is_solvable() for lvl in levels)


def test_four_rooms_is_dcds():
    """dcd envs/multigrid/fourrooms.py on gym-minigrid 1.0.1 FourRoomsEnv: 19x19, walls x = 9 and y = 9,
    doors (9, 1..8), (1..8, 9), (10..17, 9), (9, 10..17); agent anywhere free (doorways too), random
    direction, goal on another free cell; 100 steps, see_through_walls False."""
    levels = draw_levels(FOUR_ROOMS, 600, np.random.default_rng(0))
    doors = {"y1": set(), "x1": set(), "x2": set(), "y2": set()}
    in_doorway = 0
    for lvl in levels:
        assert (lvl.width, lvl.height, lvl.max_steps, lvl.see_through, len(lvl.walls)) == (
            19,
            19,
            100,
            False,
            29,
        )
        wall = lvl.wall_grid()
        gaps_col = [y for y in range(1, 18) if not wall[y, 9]]
        gaps_row = [x for x in range(1, 18) if not wall[9, x]]
        assert len(gaps_col) == len(gaps_row) == 2 and wall[9, 9]
        (y1, y2), (x1, x2) = gaps_col, gaps_row
        assert 1 <= y1 <= 8 and 10 <= y2 <= 17 and 1 <= x1 <= 8 and 10 <= x2 <= 17
        for key, value in zip(("y1", "y2", "x1", "x2"), (y1, y2, x1, x2)):
            doors[key].add(value)
        in_doorway += lvl.start in {(9, y1), (9, y2), (x1, 9), (x2, 9)}
    assert doors == {
        "y1": set(range(1, 9)),
        "x1": set(range(1, 9)),
        "x2": set(range(10, 18)),
        "y2": set(range(10, 18)),
    }
    assert Counter(lvl.start_dir for lvl in levels).keys() == {0, 1, 2, 3}
    assert in_doorway > 0  # the agent may start in a doorway (free-cell rejection sampling)
    assert len({lvl.goal for lvl in levels}) > 150 and len({lvl.start for lvl in levels}) > 150


@pytest.mark.parametrize(("size", "crossings"), [(11, 5), (9, 1), (9, 2), (9, 3)])
def test_simple_crossing_is_dcds(size, crossings):
    """dcd envs/multigrid/crossing.py CrossingEnv (SimpleCrossingS{size}N{crossings}, obstacle Wall): exactly
    `crossings` full wall lines at even x / y, each with one gap (the rooms are passed right / down), from
    (1, 1) facing right to (size-2, size-2); 4*size^2 steps, see_through_walls False."""
    rng = np.random.default_rng(size * 10 + crossings)
    kinds = Counter()
    for _ in range(60):
        lvl = simple_crossing(rng, size, crossings)
        assert (lvl.width, lvl.start, lvl.start_dir, lvl.goal) == (size, (1, 1), 0, (size - 2, size - 2))
        assert lvl.max_steps == 4 * size * size and not lvl.see_through
        wall = lvl.wall_grid()[1:-1, 1:-1]  # [y - 1, x - 1]
        col_walls, row_walls = wall.sum(axis=0), wall.sum(axis=1)
        vertical = [x + 1 for x in range(size - 2) if col_walls[x] >= size - 3]
        horizontal = [y + 1 for y in range(size - 2) if row_walls[y] >= size - 3]
        assert len(vertical) + len(horizontal) == crossings
        assert all(col_walls[x - 1] == size - 3 for x in vertical)  # one gap each
        assert all(row_walls[y - 1] == size - 3 for y in horizontal)
        assert all(x % 2 == 0 for x in vertical + horizontal)
        assert len(lvl.walls) == crossings * (size - 2) - len(vertical) * len(horizontal) - crossings
        assert lvl.shortest_path_length() >= 2 * (size - 3)
        kinds[(len(vertical), len(horizontal))] += 1
    assert len(kinds) > 1  # lines of both orientations, in several mixes


@pytest.mark.parametrize("size", [11, 21, 51])
def test_perfect_mazes_are_spanning_trees(size):
    """dcd envs/multigrid/mst_maze.py MSTMazeEnv: lattice nodes at odd cells joined along a spanning tree
    (free cells = nodes + nodes - 1), start and goal two distinct corners, facing right, 2*size^2 steps."""
    rng = np.random.default_rng(size)
    corners = {(1, 1), (size - 2, 1), (1, size - 2), (size - 2, size - 2)}
    pairs = set()
    for _ in range(30 if size < 51 else 3):
        lvl = mst_maze(rng, size)
        nodes = ((size - 1) // 2) ** 2
        free = (size - 2) ** 2 - len(lvl.walls)
        assert free == nodes + (nodes - 1)
        assert nx.is_tree(lvl.free_graph())
        assert lvl.start in corners and lvl.goal in corners and lvl.start != lvl.goal
        assert (lvl.start_dir, lvl.max_steps, lvl.see_through) == (0, 2 * size * size, True)
        assert all(lvl.wall_grid()[y, x] for y in range(2, size - 1, 2) for x in range(2, size - 1, 2))
        pairs.add((lvl.start, lvl.goal))
    if size < 51:
        assert len(pairs) > 6  # of the 12 ordered corner pairs


# ----- gymnasium ids, the registry, the commands ----------------------------------------------------------
@pytest.mark.parametrize("env_id", sorted(gym_maze_files()))
def test_gym_ids_make_envs(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    assert isinstance(env.unwrapped, MazeEnv) and obs["image"].shape == (5, 5, 3)
    assert env.unwrapped.level == load_maze(gym_maze_files()[env_id])
    env.close()


def test_gym_ids_name_the_published_levels():
    ids = gym_maze_files()
    assert ids["ued/Maze-SixteenRooms-v0"] == MAZE_DIR / "dcd" / "SixteenRooms.txt"
    assert ids["ued/Maze-ued-SixteenRooms-v0"] == MAZE_DIR / "ued" / "SixteenRooms.txt"
    assert "ued/Maze-LabyrinthFlipped-v0" in ids and "ued/Maze-SmallCorridor-v0" not in ids
    assert gym.make("ued/Maze-Labyrinth-v0").unwrapped.max_steps == 450


def test_gym_id_passes_checker():
    env = gym.make("ued/Maze-ued-FourRooms-v0", render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=True)  # its "human" mode would open a window
    env.reset(seed=0)
    assert env.render().shape == (15 * 32, 15 * 32, 3)


def test_get_suite_unknown_names_known_ones():
    with pytest.raises(UsageError, match="maze-transfer"):
        get_suite("no-such-suite")


def test_register_suite():
    level = load_maze(MAZE_DIR / "ued" / "FourRooms.txt")
    suite = register_suite(Suite("test-tiny", "maze", "one level", lambda: [("only", level)]))
    try:
        assert get_suite("test-tiny").levels() == [("only", level)] and suite.protocol == ""
    finally:
        SUITES.pop(suite.name)


def test_entry_rng_streams_are_independent():
    a = entry_rng(0, 0).integers(1 << 30, size=4)
    assert (a == entry_rng(0, 0).integers(1 << 30, size=4)).all()
    assert (a != entry_rng(0, 1).integers(1 << 30, size=4)).any()
    assert (a != entry_rng(1, 0).integers(1 << 30, size=4)).any()


def test_cli_envs_lists_families_suites_and_protocols():
    result = CliRunner().invoke(cli, ["envs"])
    assert result.exit_code == 0, result.output
    maze_row = next(line.split() for line in result.output.splitlines() if line.split()[:1] == ["maze"])
    assert maze_row == ["maze", "169", "52", "maze-lstm", "maze-transfer"]
    rows = {line.split()[0]: line.split() for line in result.output.splitlines() if " maze " in line}
    assert rows["maze-transfer"][:3] == ["maze-transfer", "maze", "12"]
    assert rows["ued-mazes"][:3] == ["ued-mazes", "maze", str(len(UED_MAZES))]
    assert result.output.count("protocol: ") >= len(SUITE_ENTRIES)
    assert "100 episodes/level" in result.output


def test_cli_eval_help_lists_suites():
    result = CliRunner().invoke(cli, ["eval", "--help"])
    assert result.exit_code == 0
    assert all(name in result.output for name in SUITES)


def test_cli_render_suite_draws_procedural_entries_with_the_seed(tmp_path):
    runner = CliRunner()
    for out, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        args = ["render", "--suite", "maze-transfer-rplr", "--seed", seed, "--out", str(tmp_path / out)]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    files = sorted(p.stem for p in (tmp_path / "a").glob("*.png"))
    assert files == sorted(SUITE_ENTRIES["maze-transfer-rplr"])
    same = [(tmp_path / d / "SimpleCrossingS11N5.png").read_bytes() for d in "abc"]
    assert same[0] == same[1] != same[2]
    assert (tmp_path / "a" / "Maze.png").read_bytes() == (tmp_path / "c" / "Maze.png").read_bytes()
    image = np.asarray(Image.open(tmp_path / "a" / "SimpleCrossingS11N5.png"))
    assert image.ndim == 3 and image.shape[0] == image.shape[1] > 0


def test_cli_render_files_and_samples(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "render",
            "--levels",
            str(MAZE_DIR / "dcd" / "Maze.txt"),
            "--env",
            "maze",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["Maze.png"]
    result = runner.invoke(
        cli, ["render", "--levels", str(MAZE_DIR / "ued"), "--env", "maze", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 0 and len(list((tmp_path / "b").glob("*.png"))) == len(UED_MAZES)
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
        (["--suite", "maze-transfer", "--seed", "-1"], ">= 0"),
        (["--sample", "0"], "at least 1"),
        (["--levels", "/no/such/path", "--env", "maze"], "does not exist"),
        (["--levels", "/no/such/path"], "--levels needs --env NAME"),
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
    result = CliRunner().invoke(
        cli, ["render", "--levels", str(bad), "--env", "maze", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and f"{bad}:3:3: unknown character" in result.output
