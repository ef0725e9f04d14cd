"""Procedural held-out mazes as published: a generator draws one layout per episode.

Each function takes a seeded `numpy.random.Generator` and returns a `MazeLevel` that carries its own
episode limit (`max_steps`) and view (`see_through`); the `ued.levels.Procedural` entries below wrap them
for the suites (`suites.py`). The procedures and numbers are dcd's (facebookresearch/dcd, on gym-minigrid
1.0.1): the distributions are the same, the random streams are numpy's (dcd draws with minigrid's
`np_random` or, for the corridors, with the global `np.random`).

| entry | grid | max_steps | view | per draw |
|---|---|---|---|---|
| FourRooms | 19x19 | 100 | occluded | 4 doors; agent, direction and goal |
| SimpleCrossingS{9,11}N{k} | 9x9 / 11x11 | 4 * size**2 | occluded | k wall lines, one gap each |
| PerfectMaze{Small,...,XL} | 11 / 21 / 51 / 101 | 2 * size**2 | see-through | spanning tree, 2 corners |
| Small/LargeCorridor | 15x15 / 21x21 | 450 / 882 | see-through | the goal, among the dead ends |
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import networkx as nx
import numpy as np

from ued.environments.maze import MazeLevel
from ued.levels import Procedural

#: dcd FourRooms (MiniGrid-FourRooms-v0): grid side and episode limit
FOUR_ROOMS_SIZE = 19
FOUR_ROOMS_MAX_STEPS = 100
#: goal candidates of dcd's corridors: (x, y) = (column, row), the dead-end tips next to the middle wall
SMALL_CORRIDOR_GOALS = tuple((x, y) for y in (6, 8) for x in range(3, 12, 2))
LARGE_CORRIDOR_GOALS = tuple((x, y) for y in (9, 11) for x in range(3, 18, 2))


def _free_cells(size: int, walls: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """The interior cells (x, y) of a size x size grid that are not walls, in row-major order."""
    return [(x, y) for y in range(1, size - 1) for x in range(1, size - 1) if (x, y) not in walls]


def four_rooms(rng: np.random.Generator) -> MazeLevel:
    """dcd's FourRooms (gym-minigrid's FourRoomsEnv, notes §2.11): a 19x19 room split by a full wall column
    x = 9 and a full wall row y = 9, one door in each of the four half-walls: (9, y1), (x1, 9), (x2, 9),
    (9, y2) with y1, x1 uniform in 1..8 and x2, y2 uniform in 10..17 (drawn in that order). Then the agent
    on a uniformly random free cell (doorways included), facing a uniformly random direction, and the goal
    on a uniformly random other free cell. 100 steps, walls not see-through."""
    size, mid = FOUR_ROOMS_SIZE, FOUR_ROOMS_SIZE // 2
    walls = {(mid, y) for y in range(1, size - 1)} | {(x, mid) for x in range(1, size - 1)}
    y1 = int(rng.integers(1, mid))
    x1 = int(rng.integers(1, mid))
    x2 = int(rng.integers(mid + 1, size - 1))
    y2 = int(rng.integers(mid + 1, size - 1))
    walls -= {(mid, y1), (x1, mid), (x2, mid), (mid, y2)}
    free = _free_cells(size, walls)
    start = free[int(rng.integers(len(free)))]
    start_dir = int(rng.integers(4))
    others = [cell for cell in free if cell != start]
    goal = others[int(rng.integers(len(others)))]
    return MazeLevel(
        size, size, tuple(walls), start, start_dir, goal, max_steps=FOUR_ROOMS_MAX_STEPS, see_through=False
    )


def simple_crossing(rng: np.random.Generator, size: int = 11, crossings: int = 5) -> MazeLevel:
    """dcd's SimpleCrossingS{size}N{crossings} (notes §2.10): `crossings` wall lines across the room, each
    with exactly one gap, on a monotone right/down route from the start (1, 1) (facing right) to the goal
    (size - 2, size - 2).

    The candidate lines are the vertical ones x = 2, 4, .., size - 3 and the horizontal ones y = 2, 4, ..,
    size - 3; a random `crossings` of them (any mix) span the whole interior. The route is a random order of
    one crossing per line; walking it room by room from the top-left, a vertical crossing opens the next
    vertical line at a uniformly random y inside the current horizontal band, a horizontal crossing the next
    horizontal line at a random x inside the current vertical band. 4 * size**2 steps, not see-through."""
    if size < 5 or size % 2 == 0:
        raise ValueError(f"crossing size must be odd and >= 5, got {size}")
    candidates = [("v", c) for c in range(2, size - 2, 2)] + [("h", c) for c in range(2, size - 2, 2)]
    if not 1 <= crossings <= len(candidates):
        raise ValueError(f"a {size}x{size} crossing holds 1..{len(candidates)} lines, got {crossings}")
    order = rng.permutation(len(candidates))[:crossings]
    lines = [candidates[i] for i in order]
    xs = sorted(c for kind, c in lines if kind == "v")
    ys = sorted(c for kind, c in lines if kind == "h")
    walls = {(x, y) for x in xs for y in range(1, size - 1)} | {
        (x, y) for y in ys for x in range(1, size - 1)
    }
    steps = np.array(["v"] * len(xs) + ["h"] * len(ys))[rng.permutation(len(xs) + len(ys))]
    bounds_x, bounds_y = [0, *xs, size - 1], [0, *ys, size - 1]
    room_x = room_y = 0  # the current room: between bounds_x[room_x] and bounds_x[room_x + 1], ...
    for step in steps:
        if step == "v":  # through the next vertical line, inside the current horizontal band
            gap = (bounds_x[room_x + 1], int(rng.integers(bounds_y[room_y] + 1, bounds_y[room_y + 1])))
            room_x += 1
        else:
            gap = (int(rng.integers(bounds_x[room_x] + 1, bounds_x[room_x + 1])), bounds_y[room_y + 1])
            room_y += 1
        walls.discard(gap)
    return MazeLevel(
        size,
        size,
        tuple(walls),
        (1, 1),
        0,
        (size - 2, size - 2),
        max_steps=4 * size * size,
        see_through=False,
    )


def mst_maze(rng: np.random.Generator, size: int) -> MazeLevel:
    """dcd's MSTMazeEnv (PerfectMaze*, notes §2.12): a perfect maze of odd `size` (outer wall included).

    Start and goal are two distinct corners of the interior, drawn uniformly ((1, 1), (size-2, 1),
    (1, size-2), (size-2, size-2); the start faces right). The cells with both coordinates odd are the
    lattice nodes; the maze is a minimum spanning tree of their grid graph under i.i.d. uniform edge
    weights (networkx, Kruskal): the same distribution as dcd's Kruskal over shuffled edges. Each tree
    edge clears the cell between its two nodes. 2 * size**2 steps, see-through."""
    if size < 5 or size % 2 == 0:
        raise ValueError(f"perfect maze size must be odd and >= 5, got {size}")
    corners = [(1, 1), (size - 2, 1), (1, size - 2), (size - 2, size - 2)]
    start_i, goal_i = rng.choice(4, size=2, replace=False)
    n = (size - 1) // 2
    graph = nx.grid_2d_graph(n, n)
    edges = sorted(graph.edges)
    for edge, weight in zip(edges, rng.random(len(edges))):
        graph.edges[edge]["weight"] = float(weight)
    tree = nx.minimum_spanning_tree(graph, algorithm="kruskal")
    wall = np.ones((size, size), dtype=bool)  # [y, x]
    wall[1:-1:2, 1:-1:2] = False  # the lattice nodes
    for (i, j), (k, m) in tree.edges:
        wall[j + m + 1, i + k + 1] = False  # the cell between nodes (2i+1, 2j+1) and (2k+1, 2m+1)
    ys, xs = np.nonzero(wall[1:-1, 1:-1])
    walls = tuple(zip((xs + 1).tolist(), (ys + 1).tolist()))
    return MazeLevel(
        size, size, walls, corners[int(start_i)], 0, corners[int(goal_i)], max_steps=2 * size * size
    )


def corridor(rng: np.random.Generator, base: MazeLevel, goals: Sequence[tuple[int, int]]) -> MazeLevel:
    """dcd's Small/LargeCorridor (notes §2.8-2.9): the fixed walls, start and limit of `base`, with the goal
    drawn uniformly from `goals` (dcd draws it once per env instance; ued, as minimax, per episode)."""
    return dataclasses.replace(base, goal=tuple(goals[int(rng.integers(len(goals)))]))


# ----- the suites' entries -------------------------------------------------------------------------------
FOUR_ROOMS = Procedural(
    "FourRooms",
    four_rooms,
    "dcd MiniGrid-FourRooms-v0: 19x19, 4 random doors, random agent/direction/goal, 100 steps, occluded view",
)


def crossing_entry(size: int, crossings: int) -> Procedural:
    """The Procedural `SimpleCrossingS{size}N{crossings}` (dcd's MiniGrid-SimpleCrossingS*N*-v0)."""
    return Procedural(
        f"SimpleCrossingS{size}N{crossings}",
        functools.partial(simple_crossing, size=size, crossings=crossings),
        f"dcd MiniGrid-SimpleCrossingS{size}N{crossings}-v0: {size}x{size}, {crossings} wall lines with one "
        f"gap each, {4 * size * size} steps, occluded view",
    )


#: dcd's SimpleCrossing envs (S11N5 is the one in dcd's published results)
CROSSINGS = {p.name: p for p in (crossing_entry(9, 1), crossing_entry(9, 2), crossing_entry(9, 3))}
CROSSINGS["SimpleCrossingS11N5"] = crossing_entry(11, 5)

#: dcd's perfect-maze sizes (outer wall included)
MST_MAZE_SIZES = {
    "PerfectMazeSmall": 11,
    "PerfectMazeMedium": 21,
    "PerfectMazeLarge": 51,
    "PerfectMazeXL": 101,
}
#: dcd's MultiGrid-PerfectMaze{Small,Medium,Large,XL}-v0
MST_MAZES = {
    name: Procedural(
        name,
        functools.partial(mst_maze, size=size),
        f"dcd MultiGrid-{name}-v0: {size}x{size} perfect maze (Kruskal), start and goal random corners, "
        f"{2 * size * size} steps",
    )
    for name, size in MST_MAZE_SIZES.items()
}


def corridor_entry(name: str, base: MazeLevel, goals: Sequence[tuple[int, int]]) -> Procedural:
    """The Procedural corridor `name`: `base`'s walls, start and limit, a goal drawn from `goals`."""
    goals = tuple(tuple(g) for g in goals)
    for goal in goals:
        dataclasses.replace(base, goal=goal)  # ValueError for a goal on a wall, the start or the border
    return Procedural(
        name,
        functools.partial(corridor, base=base, goals=goals),
        f"dcd MultiGrid-{name}-v0: fixed corridors, the goal drawn per episode from {len(goals)} dead ends, "
        f"{base.max_steps} steps",
    )


__all__ = [
    "CROSSINGS",
    "FOUR_ROOMS",
    "LARGE_CORRIDOR_GOALS",
    "MST_MAZES",
    "MST_MAZE_SIZES",
    "SMALL_CORRIDOR_GOALS",
    "corridor",
    "corridor_entry",
    "crossing_entry",
    "four_rooms",
    "mst_maze",
    "simple_crossing",
]
