"""Held-out level suites: named levels nobody trains on, for zero-shot transfer (`ued eval --suite`).

A suite is a family name plus a loader of `(entry name, entry)` pairs, where an entry is a fixed level or a
`ued.levels.Procedural` one (a new layout every episode), and the evaluation `protocol` of its source.
The maze suites are the literature's held-out sets, as published:

| suite | source | entries |
|---|---|---|
| `maze-transfer` (default) | dcd, ACCEL paper (mg_60_blocks*) | 12: 7 fixed, 5 procedural |
| `maze-transfer-rplr` | dcd, Robust PLR paper (mg_25_blocks*) | 7 |
| `maze-perfect` | dcd eval.py's benchmark list | PerfectMaze Small / Medium / Large / XL |
| `jaxued-maze` | jaxued examples/maze_*.py `--eval_levels` | 8 fixed levels at 250 steps |
| `minimax-maze` | minimax maze_ood.py singletons | the 8 layouts at 450 steps, the corridors |
| `ued-mazes` | ued's own designs (`mazes/ued/`) | 14, named ued-<published name>, other layouts |

Fixed layouts are text files: `mazes/dcd/` (dcd envs/multigrid/maze.py, with their 450 / 882-step limits),
`mazes/jaxued/LabyrinthFlipped.txt`, `mazes/ued/`. Every fixed file level is also a gymnasium id,
`ued/Maze-<Name>-v0` (dcd and jaxued names) and `ued/Maze-ued-<Name>-v0` (ued's own). Procedural entries
come from `maze_generators.py`. Other modules add suites with `register_suite` (e.g. CarRacing's tracks).

Plugins ship held-out suites either way:
- register them when the family's module is imported (`register_suite(Suite(...))`) and name one in the
  family's `default_suite`, as examples/corridor_family does with `corridor-transfer`;
- or declare the entry-point group `ued.suites` (`my-suites = mypkg.suites:held_out`), whose object is a
  `Suite` or a function returning one or a list of them; loaded when a suite is looked up (`all_suites`,
  `get_suite`, `resolve_suite`), a broken one recorded in `SUITE_PLUGIN_ERRORS` and listed by `ued envs`.
A family without `default_suite` whose levels only one registered suite holds is judged on that one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from ued.environments.maze import MazeEnv, MazeLevel, format_maze, load_maze, perfect_maze
from ued.environments.maze_generators import (
    CROSSINGS,
    FOUR_ROOMS,
    LARGE_CORRIDOR_GOALS,
    MST_MAZES,
    SMALL_CORRIDOR_GOALS,
    corridor_entry,
)
from ued.errors import UsageError
from ued.levels import Procedural, family_class, one_line, plugin_entry_points

MAZE_DIR = Path(__file__).resolve().parent / "mazes"
#: dcd's fixed layouts (envs/multigrid/maze.py), `mazes/dcd/<name>.txt`, each with dcd's episode limit
DCD_MAZES = (
    "SixteenRooms",
    "SixteenRoomsFewerDoors",
    "Labyrinth",
    "Labyrinth2",
    "Maze",
    "Maze2",
    "Maze3",
)
#: dcd's corridors: walls, start and limit in `mazes/dcd/<name>.txt`, the goal drawn among these cells
DCD_CORRIDORS = {"SmallCorridor": SMALL_CORRIDOR_GOALS, "LargeCorridor": LARGE_CORRIDOR_GOALS}
#: jaxued / minimax name -> the file of that layout (they are identical to dcd's; LabyrinthFlipped is new)
JAXUED_FILES = {
    "SixteenRooms": "dcd/SixteenRooms",
    "SixteenRooms2": "dcd/SixteenRoomsFewerDoors",
    "Labyrinth": "dcd/Labyrinth",
    "LabyrinthFlipped": "jaxued/LabyrinthFlipped",
    "Labyrinth2": "dcd/Labyrinth2",
    "StandardMaze": "dcd/Maze",
    "StandardMaze2": "dcd/Maze2",
    "StandardMaze3": "dcd/Maze3",
}
#: jaxued's eval episode limit (EnvParams.max_steps_in_episode)
JAXUED_MAX_STEPS = 250
#: minimax's singleton limit for 13x13-interior levels: 2 * 15 * 15
MINIMAX_MAX_STEPS = 450
#: ued's own held-out mazes (`mazes/ued/<name>.txt`): ued designs that reuse the published names; NOT the
#: published layouts (those are in `maze-transfer`)
UED_MAZES = (
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
#: ued's perfect mazes stored as files: name -> (size, seed) given to `perfect_maze`
PERFECT_MAZES = {"PerfectMaze11": (11, 11), "PerfectMaze21": (21, 21), "PerfectMaze51": (51, 51)}

#: the ACCEL paper's 12 held-out mazes (dcd results/minigrid_ood/mg_60_blocks*.csv), in its order
ACCEL_ENTRIES = (
    *DCD_MAZES,
    "SimpleCrossingS11N5",
    "FourRooms",
    "SmallCorridor",
    "LargeCorridor",
    "PerfectMazeMedium",
)
#: the Robust PLR paper's 7 (dcd results/minigrid_ood/mg_25_blocks-*-250M_steps.csv)
RPLR_ENTRIES = (
    "SixteenRooms",
    "Labyrinth",
    "Labyrinth2",
    "Maze",
    "Maze2",
    "SimpleCrossingS11N5",
    "SmallCorridor",
)

DCD_PROTOCOL = (
    "dcd eval.py: 100 episodes/level, stochastic policy, solved = return > 0; each level's own limit "
    "(450 at 15x15, 882 at 21x21, SimpleCrossing 484, FourRooms 100, PerfectMaze 2*size^2)"
)


@dataclass(frozen=True)
class Suite:
    """A named set of held-out entries of one family; `levels()` loads them as `(name, entry)` pairs, an
    entry being a level or a `ued.levels.Procedural` (evaluation plays a fresh draw per episode).
    `description` names the source; `protocol` is how the source evaluates (episodes, policy, limits)."""

    name: str
    family: str
    description: str
    loader: Callable[[], list[tuple[str, Any]]]
    protocol: str = ""

    def levels(self) -> list[tuple[str, Any]]:
        """The suite's entries, in a fixed order."""
        return self.loader()


SUITES: dict[str, Suite] = {}
#: the entry-point group of plugin suites (setup.cfg: `[options.entry_points] ued.suites = name = mod:obj`)
SUITE_ENTRY_POINT_GROUP = "ued.suites"
#: suite entry points loaded so far: entry-point name -> the names of the suites it registered
SUITE_PLUGINS: dict[str, list[str]] = {}
#: suite entry points that failed to load: entry-point name -> why (listed by `ued envs`)
SUITE_PLUGIN_ERRORS: dict[str, str] = {}


def register_suite(suite: Suite) -> Suite:
    """Make `suite` available by its name (`ued eval --suite NAME`); a later suite of the same name wins."""
    SUITES[suite.name] = suite
    return suite


def _plugin_suites(obj: Any) -> list[Suite]:
    """The suites an `ued.suites` entry point's object stands for: a Suite, or what a function returns (a
    Suite or a list/tuple of them); TypeError for anything else."""
    if isinstance(obj, Suite):
        return [obj]
    if callable(obj):
        out = obj()
        if isinstance(out, Suite):
            return [out]
        if isinstance(out, (list, tuple)) and out and all(isinstance(s, Suite) for s in out):
            return list(out)
        raise TypeError(f"it returned {out!r:.80}, not a Suite or a non-empty list of Suites")
    raise TypeError(f"it is {obj!r:.80}, not a Suite or a function returning Suites")


def _load_suite_plugins() -> None:
    """Register the suites of the `ued.suites` entry points not loaded yet. A plugin that fails to import,
    gives no Suite or claims a name another suite holds is recorded in `SUITE_PLUGIN_ERRORS` instead, so
    that it cannot break the other suites."""
    for ep in plugin_entry_points(SUITE_ENTRY_POINT_GROUP):
        if ep.name in SUITE_PLUGINS or ep.name in SUITE_PLUGIN_ERRORS:
            continue
        try:
            suites = _plugin_suites(ep.load())
        except Exception as exc:  # noqa: BLE001  (any failure of third-party code)
            SUITE_PLUGIN_ERRORS[ep.name] = f"suite plugin {ep.name} = {ep.value}: {one_line(exc)}"
            continue
        taken = [s.name for s in suites if s.name in SUITES and SUITES[s.name] is not s]
        if taken:
            SUITE_PLUGIN_ERRORS[ep.name] = (
                f"suite plugin {ep.name} = {ep.value}: suite name(s) {', '.join(taken)} already registered; "
                "give its suites other names"
            )
            continue
        for suite in suites:
            register_suite(suite)
        SUITE_PLUGINS[ep.name] = [s.name for s in suites]


def all_suites() -> dict[str, Suite]:
    """Every registered suite by name: ued's, those registered by imported family modules (the installed
    family plugins are imported first) and those of `ued.suites` entry points."""
    from ued.levels import family_names

    family_names()  # imports the family plugins, which may register suites
    _load_suite_plugins()
    return SUITES


def get_suite(name: str) -> Suite:
    """The suite registered as `name`; an unknown name raises UsageError listing the known ones."""
    if name not in SUITES:
        all_suites()
    if name not in SUITES:
        known = ", ".join(sorted(SUITES)) or "(none)"
        raise UsageError(f"unknown suite {name!r}; choose one of: {known} (`ued envs` lists them)")
    return SUITES[name]


def resolve_suite(env: str, name: str | None = None) -> Suite:
    """The held-out suite `name`, or when None the default suite of level family `env`
    (`LevelFamily.default_suite`, else the only registered suite of that family); UsageError when there is
    none or it holds another family's levels.
    The one way `ued eval`, `ued report` and periodic evaluation pick a suite."""
    if name is None:
        name = family_class(env).default_suite
    if name is None:
        own = sorted(s.name for s in all_suites().values() if s.family == env)
        if len(own) != 1:
            which = f" ({', '.join(own)})" if own else ""
            raise UsageError(
                f"environment {env!r} has no default held-out suite{which}; pass --suite NAME or --levels "
                "PATH (`ued envs` lists the suites), or set the family's `default_suite`"
            )
        name = own[0]
    suite = get_suite(name)
    if suite.family != env:
        raise UsageError(
            f"suite {suite.name!r} holds {suite.family} levels but the run trained on {env}; choose a suite "
            f"of that family (`ued envs` lists them)"
        )
    return suite


# ----- maze files ------------------------------------------------------------------------------------------
def maze_file(name: str) -> Path:
    """The path of the stored maze `name` ("dcd/Maze", "ued/FourRooms", ...)."""
    return MAZE_DIR / f"{name}.txt"


def load_stored_maze(name: str, max_steps: int | None = None) -> MazeLevel:
    """The stored maze `name` ("dcd/Maze", ...), with its episode limit replaced by `max_steps` if given."""
    level = load_maze(maze_file(name))
    return level if max_steps is None else dataclasses.replace(level, max_steps=max_steps)


def perfect_maze_text(name: str) -> str:
    """The exact text of ued's stored perfect-maze file `name` (regenerated from its size and seed)."""
    size, seed = PERFECT_MAZES[name]
    comment = f"{name}: perfect_maze(size={size}, seed={seed}); start top-left, goal bottom-right."
    return format_maze(perfect_maze(size, seed), comment)


def write_perfect_mazes(folder: Path = MAZE_DIR / "ued") -> None:
    """(Re)write ued's perfect-maze files; run once by hand, the files are shipped with the package."""
    for name in PERFECT_MAZES:
        (folder / f"{name}.txt").write_text(perfect_maze_text(name), encoding="utf-8")


def dcd_corridor(name: str, max_steps: int | None = None) -> Procedural:
    """dcd's corridor `name` (SmallCorridor, LargeCorridor): a goal per episode among its dead ends."""
    return corridor_entry(name, load_stored_maze(f"dcd/{name}", max_steps), DCD_CORRIDORS[name])


def dcd_entries() -> dict[str, Any]:
    """Every dcd held-out maze by its dcd name: the fixed layouts, then the procedural ones."""
    entries: dict[str, Any] = {name: load_stored_maze(f"dcd/{name}") for name in DCD_MAZES}
    entries.update(CROSSINGS)
    entries["FourRooms"] = FOUR_ROOMS
    entries.update({name: dcd_corridor(name) for name in DCD_CORRIDORS})
    entries.update(MST_MAZES)
    return entries


def _select(entries: dict[str, Any], names: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(name, entries[name]) for name in names]


def _jaxued_levels() -> list[tuple[str, Any]]:
    return [(name, load_stored_maze(path, JAXUED_MAX_STEPS)) for name, path in JAXUED_FILES.items()]


def _minimax_levels() -> list[tuple[str, Any]]:
    order = ("SixteenRooms", "SixteenRooms2", "Labyrinth", "Labyrinth2", "LabyrinthFlipped")
    order += ("StandardMaze", "StandardMaze2", "StandardMaze3")
    fixed = [(name, load_stored_maze(JAXUED_FILES[name], MINIMAX_MAX_STEPS)) for name in order]
    return fixed + [(name, dcd_corridor(name)) for name in DCD_CORRIDORS]  # 450 and 882 steps, as dcd


def _ued_levels() -> list[tuple[str, Any]]:
    # level names carry a "ued-" prefix, so that their rows are never mistaken for the published mazes'
    return [(f"ued-{name}", load_stored_maze(f"ued/{name}")) for name in UED_MAZES]


def gym_maze_files() -> dict[str, Path]:
    """gymnasium id -> maze file, for every fixed file level (not the corridors, whose goal is drawn)."""
    ids = {f"ued/Maze-{name}-v0": maze_file(f"dcd/{name}") for name in DCD_MAZES}
    ids["ued/Maze-LabyrinthFlipped-v0"] = maze_file("jaxued/LabyrinthFlipped")
    ids.update({f"ued/Maze-ued-{name}-v0": maze_file(f"ued/{name}") for name in UED_MAZES})
    return ids


def _make_file_maze(path: str, **kwargs: Any) -> MazeEnv:
    """gymnasium entry point: a MazeEnv playing the maze file at `path`."""
    return MazeEnv(load_maze(path), **kwargs)


def _register_gym_ids() -> None:
    for env_id, path in gym_maze_files().items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=_make_file_maze, kwargs={"path": str(path)})


register_suite(
    Suite(
        name="maze-transfer",
        family="maze",
        description="dcd's held-out mazes of the ACCEL paper (results/minigrid_ood mg_60_blocks*): rooms, "
        "labyrinths, mazes, SimpleCrossingS11N5, FourRooms, corridors, PerfectMazeMedium",
        loader=lambda: _select(dcd_entries(), ACCEL_ENTRIES),
        protocol=DCD_PROTOCOL + "; 5 seeds in the ACCEL paper",
    )
)
register_suite(
    Suite(
        name="maze-transfer-rplr",
        family="maze",
        description="dcd's held-out mazes of the Robust PLR paper (results/minigrid_ood mg_25_blocks*)",
        loader=lambda: _select(dcd_entries(), RPLR_ENTRIES),
        protocol=DCD_PROTOCOL + "; 10 seeds in the paper",
    )
)
register_suite(
    Suite(
        name="maze-perfect",
        family="maze",
        description="dcd's perfect mazes (MSTMazeEnv, envs/multigrid/mst_maze.py; eval.py's benchmark list "
        "has Medium, Large and XL): 11, 21, 51, 101 cells",
        loader=lambda: list(MST_MAZES.items()),
        protocol=DCD_PROTOCOL,
    )
)
register_suite(
    Suite(
        name="jaxued-maze",
        family="maze",
        description="jaxued's 8 eval levels (examples/maze_*.py --eval_levels; environments/maze/level.py)",
        loader=_jaxued_levels,
        protocol="jaxued: 10 episodes/level, stochastic policy, solved = return > 0; 250 steps",
    )
)
register_suite(
    Suite(
        name="minimax-maze",
        family="maze",
        description="minimax's named singleton mazes (envs/maze/maze_ood.py) and corridors (goal drawn per "
        "episode); minimax's procedural FourRooms, Crossing and PerfectMaze variants are not included "
        "(they differ from dcd's)",
        loader=_minimax_levels,
        protocol="minimax: 100 episodes/level (evaluate.py's example; 10 during training), stochastic "
        "policy, solved = return > 0; 450 steps, LargeCorridor 882",
    )
)
register_suite(
    Suite(
        name="ued-mazes",
        family="maze",
        description="ued's own held-out designs (mazes/ued/), named ued-<published name>: NOT the published "
        "layouts",
        loader=_ued_levels,
        protocol="ued's default: 100 episodes/level (as dcd's), stochastic policy, solved = return > 0; 250 "
        "steps per 15x15 area",
    )
)
_register_gym_ids()
