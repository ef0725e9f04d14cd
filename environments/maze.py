"""The maze level family: 15x15 MiniGrid mazes (13x13 placeable interior) as in PAIRED / dcd."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: directions as in minigrid: 0 right (>), 1 down (v), 2 left (<), 3 up (^)
DIRECTIONS = ">v<^"


@dataclass(frozen=True)
class MazeLevel:
    """A maze: grid size including the outer wall, interior walls, start cell and direction, goal cell.

    Coordinates are (x, y) = (column, row) as in minigrid, with the outer wall at x in {0, width-1} and
    y in {0, height-1}. `walls` is sorted and never contains the start, the goal or outer-wall cells.
    """

    width: int
    height: int
    walls: tuple[tuple[int, int], ...]
    start: tuple[int, int]
    start_dir: int
    goal: tuple[int, int]

    def wall_grid(self) -> np.ndarray:
        """bool array (height, width), True at walls, the outer wall included."""
        grid = np.zeros((self.height, self.width), dtype=bool)
        grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = True
        for x, y in self.walls:
            grid[y, x] = True
        return grid
