"""Held-out level suites: named levels nobody trains on, for zero-shot transfer (`ued eval --suite`).

A suite is a family name plus a loader of `(level name, level)` pairs. `maze-transfer` holds the maze files
in `mazes/*.txt` (rooms, labyrinths, hand-drawn mazes, corridors, a crossing, four rooms, and perfect
mazes generated once by `perfect_maze` at fixed seeds). Each maze file is also a gymnasium id,
`ued/Maze-<Name>-v0`. Other modules add suites with `register_suite` (e.g. CarRacing's real circuits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from ued.environments.maze import MazeEnv, format_maze, load_maze, perfect_maze
from ued.errors import UsageError
from ued.levels import family_class

MAZE_DIR = Path(__file__).resolve().parent / "mazes"

#: the maze-transfer levels, in suite order (file `mazes/<name>.txt`)
MAZE_TRANSFER = (
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
)
#: perfect mazes stored as files: name -> (size, seed) given to `perfect_maze`
PERFECT_MAZES = {"PerfectMaze11": (11, 11), "PerfectMaze21": (21, 21), "PerfectMaze51": (51, 51)}


@dataclass(frozen=True)
class Suite:
    """A named set of held-out levels of one family; `levels()` loads them as `(name, level)` pairs."""

    name: str
    family: str
    description: str
    loader: Callable[[], list[tuple[str, Any]]]

    def levels(self) -> list[tuple[str, Any]]:
        """The suite's levels, in a fixed order."""
        return self.loader()


SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    """Make `suite` available by its name (`ued eval --suite NAME`); a later suite of the same name wins."""
    SUITES[suite.name] = suite
    return suite


def get_suite(name: str) -> Suite:
    """The suite registered as `name`; an unknown name raises UsageError listing the known ones."""
    if name not in SUITES:
        known = ", ".join(sorted(SUITES)) or "(none)"
        raise UsageError(f"unknown suite {name!r}; choose one of: {known} (`ued envs` lists them)")
    return SUITES[name]


def resolve_suite(env: str, name: str | None = None) -> Suite:
    """The held-out suite `name`, or when None the default suite of level family `env`
    (`LevelFamily.default_suite`); UsageError when there is none or it holds another family's levels.
    The one way `ued eval`, `ued report` and periodic evaluation pick a suite."""
    if name is None:
        name = family_class(env).default_suite
        if name is None:
            raise UsageError(
                f"environment {env!r} has no default held-out suite; pass --suite NAME or --levels PATH "
                "(`ued envs` lists the suites)"
            )
    suite = get_suite(name)
    if suite.family != env:
        raise UsageError(
            f"suite {suite.name!r} holds {suite.family} levels but the run trained on {env}; choose a suite "
            f"of that family (`ued envs` lists them)"
        )
    return suite


def perfect_maze_text(name: str) -> str:
    """The exact text of the stored perfect-maze file `name` (regenerated from its size and seed)."""
    size, seed = PERFECT_MAZES[name]
    comment = f"{name}: perfect_maze(size={size}, seed={seed}); start top-left, goal bottom-right."
    return format_maze(perfect_maze(size, seed), comment)


def write_perfect_mazes(folder: Path = MAZE_DIR) -> None:
    """(Re)write the perfect-maze files; run once by hand, the files are shipped with the package."""
    for name in PERFECT_MAZES:
        (folder / f"{name}.txt").write_text(perfect_maze_text(name), encoding="utf-8")


def _maze_transfer_levels() -> list[tuple[str, Any]]:
    return [(name, load_maze(MAZE_DIR / f"{name}.txt")) for name in MAZE_TRANSFER]


def _make_file_maze(path: str, **kwargs: Any) -> MazeEnv:
    """gymnasium entry point: a MazeEnv playing the maze file at `path`."""
    return MazeEnv(load_maze(path), **kwargs)


def _register_gym_ids() -> None:
    for name in MAZE_TRANSFER:
        env_id = f"ued/Maze-{name}-v0"
        if env_id not in gym.registry:
            gym.register(
                id=env_id, entry_point=_make_file_maze, kwargs={"path": str(MAZE_DIR / f"{name}.txt")}
            )


register_suite(
    Suite(
        name="maze-transfer",
        family="maze",
        description="held-out mazes: rooms, labyrinths, hand-drawn, corridors, crossing, four rooms, perfect",
        loader=_maze_transfer_levels,
    )
)
_register_gym_ids()
