"""The maze level family: 15x15 MiniGrid mazes (13x13 placeable interior) as in PAIRED / dcd.

A `MazeLevel` is the walls, the start cell and direction, and the goal. `MazeFamily` turns it into tokens
(one per interior cell: goal, start, then the walls sorted), samples random ones (domain randomization),
repairs unsolvable ones and builds `MazeEnv`, a MiniGrid env with the published student settings. The plain
text form of a maze (`load_maze`, `parse_maze`, ...) lives in `maze_text.py` and is re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import networkx as nx
import numpy as np
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Goal, Wall
from minigrid.minigrid_env import MiniGridEnv

from ued.errors import UsageError
from ued.levels import LevelFamily, register_family

#: directions as in minigrid: 0 right (>), 1 down (v), 2 left (<), 3 up (^)
DIRECTIONS = ">v<^"
#: grid side of token-encoded mazes, the outer wall included
SIZE = 15
#: side of the placeable interior
INNER = SIZE - 2
#: number of placeable cells = vocabulary size
NUM_CELLS = INNER * INNER
#: episode length of the published 15x15 mazes
MAX_STEPS = 250
#: the longest episode limit a maze level may carry (the published limits are at most 2 x 101^2 = 20402)
MAX_LEVEL_STEPS = 1_000_000
#: cost of entering a wall cell in `repair`'s shortest path: more than any path through free cells
_WALL_COST = 10_000


@dataclass(frozen=True)
class MazeLevel:
    """A maze: grid size including the outer wall, interior walls, start cell and direction, goal cell, and
    how it is played.

    Coordinates are (x, y) = (column, row) as in minigrid, with the outer wall at x in {0, width-1} and
    y in {0, height-1}. `walls` is sorted and never contains the start, the goal or outer-wall cells
    (checked on construction: a malformed level raises ValueError).

    `start_dir` is 0..3 (right, down, left, up), or None: a uniformly random direction each time the level
    is loaded into an env (as dcd's FourRooms). `max_steps` is the level's own episode limit (None: the
    family's training rule, `level_max_steps`: 250 per 15x15 area). `see_through` is minigrid's
    `see_through_walls` (False: walls hide the cells behind them in the agent's view).
    """

    width: int
    height: int
    walls: tuple[tuple[int, int], ...]
    start: tuple[int, int]
    start_dir: int | None
    goal: tuple[int, int]
    max_steps: int | None = None
    see_through: bool = True

    def __post_init__(self) -> None:
        walls = tuple(sorted((int(x), int(y)) for x, y in self.walls))
        start, goal = (int(self.start[0]), int(self.start[1])), (int(self.goal[0]), int(self.goal[1]))
        object.__setattr__(self, "walls", walls)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "goal", goal)
        if self.start_dir is not None:
            object.__setattr__(self, "start_dir", int(self.start_dir))
        if self.max_steps is not None:
            object.__setattr__(self, "max_steps", int(self.max_steps))
        object.__setattr__(self, "see_through", bool(self.see_through))
        if self.width < 3 or self.height < 3:
            raise ValueError(f"maze must be at least 3x3, got {self.width}x{self.height}")
        if self.start_dir is not None and not 0 <= self.start_dir < 4:
            raise ValueError(f"start_dir must be in 0..3 or None (random), got {self.start_dir}")
        if self.max_steps is not None and not 1 <= self.max_steps <= MAX_LEVEL_STEPS:
            raise ValueError(
                f"max_steps must be in 1..{MAX_LEVEL_STEPS} or None (the family's rule), got {self.max_steps}"
            )
        for what, cell in (("start", start), ("goal", goal), *(("wall", w) for w in walls)):
            if not (0 < cell[0] < self.width - 1 and 0 < cell[1] < self.height - 1):
                raise ValueError(
                    f"{what} {cell} is not an interior cell of a {self.width}x{self.height} maze"
                )
        if start == goal:
            raise ValueError(f"start and goal are the same cell {start}")
        if len(set(walls)) != len(walls) or start in walls or goal in walls:
            raise ValueError("walls must be distinct and must not contain the start or the goal")

    def wall_grid(self) -> np.ndarray:
        """bool array (height, width), True at walls, the outer wall included."""
        grid = np.zeros((self.height, self.width), dtype=bool)
        grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = True
        for x, y in self.walls:
            grid[y, x] = True
        return grid

    def free_graph(self) -> nx.Graph:
        """Undirected graph of the free cells (x, y), edges between 4-neighbours."""
        free = ~self.wall_grid()
        graph = nx.Graph()
        ys, xs = np.nonzero(free)
        graph.add_nodes_from(zip(xs.tolist(), ys.tolist()))
        for x, y in zip(xs.tolist(), ys.tolist()):
            if free[y, x + 1]:
                graph.add_edge((x, y), (x + 1, y))
            if free[y + 1, x]:
                graph.add_edge((x, y), (x, y + 1))
        return graph

    def shortest_path_length(self) -> float:
        """Fewest moves from start to goal (networkx over the free cells), or nan when unreachable."""
        try:
            return float(nx.shortest_path_length(self.free_graph(), self.start, self.goal))
        except nx.NetworkXNoPath:
            return math.nan

    def is_solvable(self) -> bool:
        """Whether the goal is reachable from the start (fast numpy flood fill; agrees with networkx)."""
        return bool(_reachable(~self.wall_grid(), self.start)[self.goal[1], self.goal[0]])


def _reachable(free: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """bool (H, W): cells reachable from `start` (x, y) through `free` cells, by repeated dilation.

    The outer ring of `free` must be False (mazes always have an outer wall), so shifts never wrap."""
    reach = np.zeros_like(free)
    reach[start[1], start[0]] = True
    count = 1
    while True:
        grown = reach.copy()
        grown[1:, :] |= reach[:-1, :]
        grown[:-1, :] |= reach[1:, :]
        grown[:, 1:] |= reach[:, :-1]
        grown[:, :-1] |= reach[:, 1:]
        grown &= free
        new_count = int(grown.sum())
        if new_count == count:  # strictly growing otherwise, so this ends within H*W rounds
            return grown
        reach, count = grown, new_count


def level_max_steps(level: MazeLevel) -> int:
    """The episode limit of `level`: its own `max_steps`, else the family's training rule, 250 steps per
    15x15 area rounded up (250 for the published 15x15 mazes)."""
    if level.max_steps is not None:
        return level.max_steps
    return MAX_STEPS * math.ceil(level.width * level.height / (SIZE * SIZE))


def repair_maze(level: MazeLevel) -> MazeLevel:
    """The same maze with the fewest walls removed so that the goal is reachable (deterministic).

    Dijkstra (networkx) from start to goal over all interior cells, where entering a wall costs far more
    than entering a free cell; the walls on that path are removed. Ties go to the shorter path."""
    if level.is_solvable():
        return level
    walls = set(level.walls)
    graph = nx.DiGraph()
    for x in range(1, level.width - 1):
        for y in range(1, level.height - 1):
            for nx_, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if 0 < nx_ < level.width - 1 and 0 < ny < level.height - 1:
                    graph.add_edge((x, y), (nx_, ny), weight=_WALL_COST if (nx_, ny) in walls else 1)
    path = nx.dijkstra_path(graph, level.start, level.goal, weight="weight")
    return dataclasses.replace(level, walls=tuple(walls - set(path)))


#: wall budgets of `MazeFamily.sample` (dcd's fixed n_clutter and its resample_n_clutter "uniform" env)
WALL_BUDGETS = ("fixed", "uniform")


def _next_free(token: int, taken: set[int]) -> int:
    """The first cell after `token` (in token order, wrapping) that is not in `taken`."""
    for step in range(1, NUM_CELLS + 1):
        cell = (token + step) % NUM_CELLS
        if cell not in taken:
            return cell
    raise ValueError("no free cell left")


def _random_free(rng: np.random.Generator, taken: set[int]) -> int:
    """A uniformly random cell not in `taken`."""
    free = [t for t in range(NUM_CELLS) if t not in taken]
    return free[int(rng.integers(len(free)))]


def cell_of(token: int) -> tuple[int, int]:
    """Token -> interior cell (x, y) of a 15x15 maze: token = (y-1)*13 + (x-1)."""
    return (token % INNER + 1, token // INNER + 1)


def token_of(cell: tuple[int, int]) -> int:
    """Interior cell (x, y) of a 15x15 maze -> token."""
    return (cell[1] - 1) * INNER + (cell[0] - 1)


def perfect_maze(size: int, seed: int) -> MazeLevel:
    """A perfect maze (exactly one path between any two free cells) of odd `size` including the outer wall.

    Cells at odd coordinates are joined along a random spanning tree of their grid graph (networkx), grown
    by a depth-first search seeded with `seed`; the start is the top-left cell facing right, the goal the
    bottom-right cell. (ued's own `mazes/ued/PerfectMaze*.txt`; dcd's procedure, Kruskal with random
    corners, is `maze_generators.mst_maze`.)"""
    if size < 5 or size % 2 == 0:
        raise ValueError(f"perfect maze size must be odd and >= 5, got {size}")
    n = (size - 1) // 2
    cells = nx.grid_2d_graph(n, n)
    rng = np.random.default_rng(seed)
    tree = nx.Graph()
    stack, visited = [(0, 0)], {(0, 0)}
    while stack:  # randomized DFS: visits each of the n*n cells once, so it ends
        cell = stack[-1]
        options = sorted(v for v in cells.neighbors(cell) if v not in visited)
        if not options:
            stack.pop()
            continue
        nxt = options[int(rng.integers(len(options)))]
        tree.add_edge(cell, nxt)
        visited.add(nxt)
        stack.append(nxt)
    free = {(2 * i + 1, 2 * j + 1) for i in range(n) for j in range(n)}
    free |= {(i + k + 1, j + m + 1) for (i, j), (k, m) in tree.edges}  # the wall cell between two cells
    walls = tuple((x, y) for y in range(1, size - 1) for x in range(1, size - 1) if (x, y) not in free)
    return MazeLevel(size, size, walls, (1, 1), 0, (size - 2, size - 2))


class MazeEnv(MiniGridEnv):
    """## Description
    A MiniGrid maze played from a `MazeLevel`: the agent must reach the green goal square.

    ## Observation Space
    `Dict(image=Box(0, 255, (5, 5, 3), uint8), direction=Discrete(4))`: minigrid's encoding of the 5x5
    view in front of the agent and the agent's direction. Walls are see-through as in the published
    training mazes, unless the level says `see_through=False` (dcd's SimpleCrossing and FourRooms): then
    minigrid's own occlusion applies and cells hidden behind walls read (0, 0, 0).

    ## Action Space
    The 7 MiniGrid actions (left, right, forward, pickup, drop, toggle, done); only the first three matter.

    ## Rewards
    `1 - 0.9 * step_count / max_steps` on reaching the goal, 0 otherwise.

    ## Termination
    Terminated on reaching the goal; truncated after `max_steps` steps: the `max_steps` argument if given,
    else the level's own `max_steps`, else 250 per 15x15 area rounded up (`level_max_steps`).

    ## Starting State
    The level's start cell and direction. A level with `start_dir=None` faces a uniformly random direction
    (drawn from the env's `np_random`) each time it is loaded: the first reset after `env.level` was
    assigned (or a reset with `options={"level": ...}` or a `seed`); same-level resets keep it.

    The level is `self.level`; `reset(options={"level": lvl})` switches it and assigning `env.level = lvl`
    makes every later reset use it (the grid size may change).
    """

    def __init__(
        self,
        level: MazeLevel,
        *,
        max_steps: int | None = None,
        agent_view_size: int = 5,
        render_mode: str | None = None,
        tile_size: int = 32,
    ):
        self.level = level
        self._fixed_max_steps = max_steps
        self._start_dir = 0  # the direction drawn for a level with start_dir None
        super().__init__(
            mission_space=MissionSpace(mission_func=_mission),
            width=level.width,
            height=level.height,
            max_steps=self._max_steps_for(level),
            see_through_walls=level.see_through,
            agent_view_size=agent_view_size,
            render_mode=render_mode,
            tile_size=tile_size,
        )
        view = self.observation_space["image"]
        self.observation_space = gym.spaces.Dict({"image": view, "direction": gym.spaces.Discrete(4)})

    @property
    def level(self) -> MazeLevel:
        """The level every reset plays; assigning it loads a level (a random start direction is redrawn)."""
        return self._level

    @level.setter
    def level(self, level: MazeLevel) -> None:
        self._level = level
        self._draw_start_dir = True

    def _max_steps_for(self, level: MazeLevel) -> int:
        if self._fixed_max_steps is not None:
            return int(self._fixed_max_steps)
        return level_max_steps(level)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options and "level" in options:
            self.level = options["level"]
        if seed is not None:
            self._draw_start_dir = True
        self.width, self.height = self.level.width, self.level.height
        self.max_steps = self._max_steps_for(self.level)
        self.see_through_walls = self.level.see_through
        return super().reset(seed=seed)

    def _gen_grid(self, width: int, height: int) -> None:
        level = self.level
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        for x, y in level.walls:
            self.grid.set(x, y, Wall())
        self.put_obj(Goal(), *level.goal)
        self.agent_pos = level.start
        if level.start_dir is None and self._draw_start_dir:
            self._start_dir = int(self.np_random.integers(4))
        self._draw_start_dir = False
        self.agent_dir = self._start_dir if level.start_dir is None else level.start_dir
        self.mission = _mission()
        # The grid never changes during an episode: encode it once, padded with walls for the view.
        pad = self.agent_view_size
        enc = np.empty((width + 2 * pad, height + 2 * pad, 3), dtype=np.uint8)
        enc[:] = Wall().encode()
        enc[pad : pad + width, pad : pad + height] = self.grid.encode()
        self._encoded = enc

    def gen_obs(self) -> dict[str, Any]:
        """The agent's view as minigrid encodes it (the same values as `MiniGridEnv.gen_obs`); no "mission"
        entry. See-through levels use the cached grid encoding; others minigrid's own occlusion."""
        if not self.see_through_walls:
            obs = super().gen_obs()
            return {"image": obs["image"], "direction": int(self.agent_dir)}
        top_x, top_y, _, _ = self.get_view_exts()
        size, pad = self.agent_view_size, self.agent_view_size
        view = self._encoded[top_x + pad : top_x + pad + size, top_y + pad : top_y + pad + size]
        view = np.rot90(view, -(self.agent_dir + 1), axes=(0, 1)).copy()
        view[size // 2, size - 1] = (1, 0, 0)  # the agent's own cell reads as empty
        return {"image": view, "direction": int(self.agent_dir)}


def _mission() -> str:
    return "get to the green goal square"


@register_family
class MazeFamily(LevelFamily):
    """15x15 mazes written as dcd's PAIRED adversary writes them: `max_walls` wall cells, then the goal,
    then the start (dcd's `choose_goal_last`, in every published maze env).

    A token is an interior cell, token = (y-1)*13 + (x-1), so `vocab_size` = 169 and `max_tokens` =
    `max_walls` + 2. `decode` places the tokens in order as dcd's `step_adversary` does: a wall on a cell
    that already holds one is a no-op; the goal removes any wall on its cell; the start removes any wall on
    its cell, and a start on the goal moves to the next free cell in token order (dcd: a random free cell;
    decoding must be deterministic here). Missing tokens of a partly written level: no more walls, the goal
    on token 168 (bottom-right), the start on the goal's next free cell. `encode` writes the walls sorted,
    padded with the goal's cell (a wall there is removed when the goal is placed). The start direction is
    not a token: decoded levels face a random direction drawn each time an env loads them (dcd draws it in
    its adversarial env's `reset`), `start_dir=None`.

    `sample` is dcd's domain randomization (its uniformly random adversary): every token uniform, so up to
    `max_walls` walls; with `wall_budget="uniform"` (dcd's `GoalLastVariableBlocks` env of the ACCEL paper)
    the first wall's cell also sets the budget, int(cell / 169 * max_walls) walls (a budget of 0 makes that
    first cell the goal's, as dcd's `step_adversary` places the goal at that step). Levels are not repaired:
    about 1-2% are unsolvable, as in the published DR baselines.
    """

    name = "maze"
    vocab_size = NUM_CELLS
    default_student = "maze-lstm"
    default_suite = "maze-transfer"

    def __init__(self, max_walls: int = 50, wall_budget: str = "fixed"):
        """`max_walls`: wall placements per level (dcd's n_clutter: 50 in its default and the PAIRED and CLUTR
        papers, 25 in the Robust PLR paper, 60 in the ACCEL paper); `wall_budget`: "fixed" or "uniform"."""
        if (
            isinstance(max_walls, bool)
            or not isinstance(max_walls, int)
            or not 0 <= max_walls <= NUM_CELLS - 2
        ):
            raise UsageError(
                f"max_walls must be an integer in 0..{NUM_CELLS - 2}, got {max_walls!r}; e.g. max_walls=50"
            )
        if wall_budget not in WALL_BUDGETS:
            raise UsageError(f"wall_budget must be one of {', '.join(WALL_BUDGETS)}, got {wall_budget!r}")
        self.max_walls = int(max_walls)
        self.wall_budget = wall_budget
        self.max_tokens = 2 + self.max_walls

    @property
    def options(self) -> dict[str, Any]:
        return {"max_walls": self.max_walls, "wall_budget": self.wall_budget}

    # ----- tokens -------------------------------------------------------------------------------
    def _parts(self, tokens: Sequence[int] | np.ndarray) -> tuple[int | None, int | None, list[int]]:
        """(goal, start, walls) of the tokens written so far, placed as `decode` describes; None where
        not yet written."""
        toks = [int(t) for t in np.asarray(tokens, dtype=np.int64).reshape(-1)]
        if len(toks) > self.max_tokens:
            raise ValueError(f"got {len(toks)} tokens, the maze family takes at most {self.max_tokens}")
        if any(not 0 <= t < NUM_CELLS for t in toks):
            raise ValueError(f"maze tokens must be in [0, {NUM_CELLS}), got {toks}")
        k = self.max_walls
        walls = list(dict.fromkeys(toks[:k]))  # in order, a repeat is a no-op
        goal = toks[k] if len(toks) > k else None
        start = toks[k + 1] if len(toks) > k + 1 else None
        if goal is not None:
            walls = [w for w in walls if w != goal]
        if start is not None:
            walls = [w for w in walls if w != start]
            if start == goal:
                start = _next_free(goal, set(walls) | {goal})
        return goal, start, walls

    def decode(self, tokens: Sequence[int] | np.ndarray) -> MazeLevel:
        goal, start, walls = self._parts(tokens)
        if goal is None:
            goal = NUM_CELLS - 1
            walls = [w for w in walls if w != goal]
        if start is None:
            start = _next_free(goal, set(walls) | {goal})
        return MazeLevel(
            SIZE,
            SIZE,
            tuple(cell_of(t) for t in walls),
            cell_of(start),
            None,
            cell_of(goal),
        )

    def encode(self, level: MazeLevel) -> np.ndarray:
        if (level.width, level.height) != (SIZE, SIZE):
            raise ValueError(f"only {SIZE}x{SIZE} mazes have tokens, got {level.width}x{level.height}")
        if len(level.walls) > self.max_walls:
            raise ValueError(f"maze has {len(level.walls)} walls, this family holds at most {self.max_walls}")
        goal = token_of(level.goal)
        tokens = np.full(self.max_tokens, goal, dtype=np.int64)
        walls = sorted(token_of(w) for w in level.walls)
        tokens[: len(walls)] = walls
        tokens[-1] = token_of(level.start)
        return tokens

    def canonical(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """The canonical form of a token sequence: `encode(decode(tokens))`."""
        return self.encode(self.decode(tokens))

    # ----- generation ---------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> MazeLevel:
        """dcd's domain randomization: `max_walls` wall placements, the goal and the start, all uniform
        cells (see the class docstring for `wall_budget`); not repaired."""
        tokens = rng.integers(0, NUM_CELLS, size=self.max_tokens)
        if self.wall_budget == "uniform" and self.max_walls:
            budget = int(tokens[0] / NUM_CELLS * self.max_walls)
            if budget == 0:  # no wall to place: dcd's first step places the goal there
                tokens[self.max_walls] = tokens[0]
            tokens[budget : self.max_walls] = tokens[self.max_walls]  # unused placements: on the goal's cell
        return self.decode(tokens)

    def sample_easy(self, rng: np.random.Generator) -> MazeLevel:
        """A random maze without walls, the goal and the start uniform (dcd's empty ACCEL base levels)."""
        goal, start = (int(t) for t in rng.integers(0, NUM_CELLS, size=2))
        return self.decode([goal] * self.max_walls + [goal, start])

    def mutate(self, level: MazeLevel, rng: np.random.Generator, num_edits: int = 1) -> MazeLevel:
        """ACCEL's maze editor (dcd's `mutate_level`): draw `num_edits` cells uniformly (with replacement,
        each distinct cell edited once, in order); each is cleared (losing the goal or the start if it held
        them) and becomes a wall, empty or the goal with probability 1/3 each. Then a lost goal and then a lost
        start go to uniformly random free cells. Not repaired (children may be unsolvable, as in dcd). A wall
        beyond `max_walls` (the token capacity) is not added: dcd has no cap."""
        self.encode(level)  # ValueError for a level this family cannot hold
        walls = {token_of(w) for w in level.walls}
        goal: int | None = token_of(level.goal)
        start: int | None = token_of(level.start)
        cells = rng.integers(NUM_CELLS, size=int(num_edits))
        choices = rng.integers(3, size=int(num_edits))
        for cell, choice in zip(dict.fromkeys(cells.tolist()), choices.tolist()):
            walls.discard(cell)
            goal = None if goal == cell else goal
            start = None if start == cell else start
            if choice == 0 and len(walls) < self.max_walls:
                walls.add(cell)
            elif choice == 2:
                goal = cell
        if goal is None:
            goal = _random_free(rng, walls | ({start} if start is not None else set()))
        if start is None:
            start = _random_free(rng, walls | {goal})
        return self.decode(sorted(walls) + [goal] * (self.max_walls - len(walls)) + [goal, start])

    def is_valid(self, level: MazeLevel) -> bool:
        return level.is_solvable()

    def repair(self, level: MazeLevel) -> MazeLevel:
        return repair_maze(level)

    # ----- the PAIRED adversary's editor --------------------------------------------------------
    def editor_view(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (3, 15, 15) [channel, y, x]: minigrid's encoding (object, colour, state) / 10 of the grid
        written so far, outer wall included (dcd's adversary image): empty 0.1, wall (0.2, 0.5), goal
        (0.8, 0.1), start (1.0, 0); the start's state (its direction) is 0, as it is not chosen here."""
        goal, start, walls = self._parts(tokens)
        view = np.zeros(self.editor_view_shape, dtype=np.float32)
        view[0] = 0.1  # empty
        ring = np.zeros((SIZE, SIZE), dtype=bool)
        ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
        for t in walls:
            x, y = cell_of(t)
            ring[y, x] = True
        view[0][ring], view[1][ring] = 0.2, 0.5
        for t, code, colour in ((goal, 0.8, 0.1), (start, 1.0, 0.0)):
            if t is not None:
                x, y = cell_of(t)
                view[0, y, x], view[1, y, x] = code, colour
        return view

    @property
    def editor_view_shape(self) -> tuple[int, int, int]:
        return (3, SIZE, SIZE)

    # ----- students -----------------------------------------------------------------------------
    def make_env(self, level: MazeLevel | None = None, render_mode: str | None = None) -> MazeEnv:
        if level is None:
            level = self.sample(np.random.default_rng(0))
        return MazeEnv(level, render_mode=render_mode)

    def make_vector_env(
        self, num_envs: int, *, seed: int = 0, device: str = "cpu", evaluation: bool = False
    ) -> Any:
        """The batched tensor backend (`BatchedMazeEnv`, same game and observations as `MazeEnv`) holding
        `num_envs` sampled levels; the minigrid reference is `ued.vecenv.GymLevelVectorEnv(self, num_envs)`.
        Training and evaluation play the same env (`evaluation` is ignored)."""
        from ued.environments.batched_maze import BatchedMazeEnv  # it imports this module's constants

        rng = np.random.default_rng(seed)
        levels = [self.sample(rng) for _ in range(num_envs)]
        return BatchedMazeEnv(num_envs, device=device, levels=levels, seed=seed)

    def episode_limit(self, level: MazeLevel) -> int:
        """The level's episode limit (`level_max_steps`: its own `max_steps`, else 250 per 15x15 area)."""
        return level_max_steps(level)

    # ----- pictures and statistics --------------------------------------------------------------
    def render(self, level: MazeLevel, tile_size: int | None = None) -> np.ndarray:
        """uint8 (H, W, 3) picture of the whole maze with the agent, drawn by minigrid (tiles of 8-32 px)."""
        if tile_size is None:
            tile_size = max(8, min(32, 640 // max(level.width, level.height)))
        env = MazeEnv(level, render_mode="rgb_array")
        env.reset(seed=0)
        return np.asarray(env.get_frame(highlight=False, tile_size=tile_size), dtype=np.uint8)

    def level_stats(self, level: MazeLevel) -> dict[str, float]:
        length = level.shortest_path_length()
        return {
            "walls": float(len(level.walls)),
            "shortest_path": length,
            "solvable": float(not math.isnan(length)),
        }

    def to_text(self, level: MazeLevel) -> str:
        return format_maze(level)

    def from_text(self, text: str) -> MazeLevel:
        return parse_maze(text)


# The plain-text format, re-exported (maze_text imports MazeLevel from this module, so it comes last).
from ued.environments.maze_text import (
    MazeFormatError,
    format_maze,
    load_maze,
    parse_maze,
    save_maze,
)

__all__ = [
    "DIRECTIONS",
    "MazeEnv",
    "MazeFamily",
    "MazeFormatError",
    "MazeLevel",
    "cell_of",
    "format_maze",
    "level_max_steps",
    "load_maze",
    "parse_maze",
    "perfect_maze",
    "repair_maze",
    "save_maze",
    "token_of",
]
