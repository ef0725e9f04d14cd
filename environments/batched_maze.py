"""A batched tensor backend for the maze family: all sub-envs stepped at once with torch ops, on CPU or CUDA.

`BatchedMazeEnv` plays exactly the game of `ued.environments.maze.MazeEnv` (minigrid with
`agent_view_size=5`, walls see-through unless a level says `see_through=False`) and returns exactly
minigrid's observations, so a student trained on one backend runs unchanged on the other
(tests/test_batched_maze.py checks this step by step).

## Description
N mazes are held as tensors, padded to the largest level of the batch (and by 4 cells on every side, so a
5x5 view never leaves the tensor); everything outside a level's inner area is wall, as minigrid encodes
cells outside its grid. Per env: the agent's cell as a flat index into the stacked grids, its direction,
its step count, its episode limit (the level's `max_steps`, else 250 per 15x15 area) and its start
direction (a level with `start_dir=None` gets a uniformly random one at every `reset`, drawn from a numpy
Generator seeded by `reset(seed=...)`, and keeps it through its autoresets).

## Action Space
`Discrete(7)`: 0 turn left, 1 turn right, 2 forward; 3 pickup, 4 drop, 5 toggle, 6 done do nothing
(there is nothing to pick up or toggle in a maze) but still count a step.

## Observation Space
`{"image": uint8 [N, 5, 5, 3], "direction": int64 [N]}`; `image[n, i, j]` is the (type, color, state)
triple of view cell column i, row j, the agent at column 2 of the bottom row (j = 4) facing up the view,
with minigrid's codes: empty (1, 0, 0), wall (2, 5, 0), goal (8, 1, 0). The agent's own cell is empty.
For a level with `see_through=False`, cells minigrid's `Grid.process_vis` finds hidden behind walls read
(0, 0, 0) (`visibility`: the same sweep, vectorised over envs with a per-row lookup table).

## Rewards
`1 - 0.9 * step_count / max_steps` on the step that reaches the goal, 0 otherwise.

## Termination
terminated on reaching the goal; truncated when `step_count >= max_steps` (both can happen on one step).
A finished sub-env restarts on the same level in the same step (its `obs` is the new first observation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ued.environments.maze import level_max_steps
from ued.errors import UsageError
from ued.vecenv import LevelVectorEnv

#: agent view size (minigrid's `agent_view_size` in the published maze)
VIEW = 5
#: padding (cells) around every level in the stacked grids; >= VIEW - 1 keeps views inside the tensor
PAD = VIEW - 1
#: cell types in the type grid
EMPTY, WALL, GOAL = 0, 1, 2
#: minigrid's encoding (OBJECT_TO_IDX, COLOR_TO_IDX, state) of each cell type
CELL_ENCODING = np.array([[1, 0, 0], [2, 5, 0], [8, 1, 0]], dtype=np.uint8)
#: minigrid's DIR_TO_VEC: 0 right, 1 down, 2 left, 3 up, as (dx, dy)
DIR_TO_VEC = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)
#: minigrid actions
LEFT, RIGHT, FORWARD = 0, 1, 2
NUM_ACTIONS = 7


def view_offsets() -> np.ndarray:
    """(dx, dy) from the agent of each view cell: int64 array (4 directions, VIEW (column i), VIEW (row j), 2).

    The view is minigrid's `gen_obs_grid`: the agent sits at (VIEW // 2, VIEW - 1) looking up the view, so
    cell (i, j) lies (VIEW - 1 - j) cells ahead and (i - VIEW // 2) cells to the right of the agent, where
    "right" of direction (dx, dy) is (-dy, dx).
    """
    i = np.arange(VIEW)[:, None]
    j = np.arange(VIEW)[None, :]
    ahead = VIEW - 1 - j  # (1, VIEW)
    right = i - VIEW // 2  # (VIEW, 1)
    out = np.zeros((4, VIEW, VIEW, 2), dtype=np.int64)
    for d, (dx, dy) in enumerate(DIR_TO_VEC):
        rx, ry = -dy, dx
        out[d, :, :, 0] = ahead * dx + right * rx
        out[d, :, :, 1] = ahead * dy + right * ry
    return out


def _row_sweep(visible: int, clear: int) -> tuple[int, int]:
    """minigrid's `Grid.process_vis` on one view row: bit i of `visible` / `clear` is column i (seen so far /
    not a wall). Returns (the row's visible bits after the left-to-right and the right-to-left sweep, the
    bits the row makes visible in the row above it)."""
    vis = [(visible >> i) & 1 for i in range(VIEW)]
    up = [0] * VIEW
    for i in range(VIEW - 1):  # left to right: a clear seen cell shows its right and upper neighbours
        if vis[i] and (clear >> i) & 1:
            vis[i + 1] = up[i + 1] = up[i] = 1
    for i in range(VIEW - 1, 0, -1):  # right to left: ... its left and upper neighbours
        if vis[i] and (clear >> i) & 1:
            vis[i - 1] = up[i - 1] = up[i] = 1
    return sum(v << i for i, v in enumerate(vis)), sum(u << i for i, u in enumerate(up))


#: `_row_sweep` of every input: int64 [2**VIEW * 2**VIEW, 2], (visible, clear) at visible * 2**VIEW + clear
ROW_SWEEP = np.array(
    [_row_sweep(v, c) for v in range(2**VIEW) for c in range(2**VIEW)], dtype=np.int64
).reshape(-1, 2)


def visibility(view_types: Any, table: Any | None = None) -> Any:
    """minigrid's visibility mask of views (see_through_walls=False), for many views at once.

    `view_types`: cell types [M, VIEW (column i), VIEW (row j)] (numpy or torch), the agent at (VIEW // 2,
    VIEW - 1). Returns bool [M, VIEW, VIEW], True where minigrid's `Grid.process_vis` marks the cell seen:
    rows are swept from the agent's row up; in each, seen non-wall cells show their neighbours (one lookup
    per row in `table` = `ROW_SWEEP`, as an array of the same library and device as `view_types`)."""
    if isinstance(view_types, np.ndarray):
        table = ROW_SWEEP if table is None else table
        bits = np.arange(VIEW, dtype=np.int64)
        seen = np.zeros((view_types.shape[0], VIEW), dtype=np.int64)
    else:
        device = view_types.device
        table = torch.as_tensor(ROW_SWEEP, device=device) if table is None else table
        bits = torch.arange(VIEW, dtype=torch.int64, device=device)
        seen = torch.zeros((view_types.shape[0], VIEW), dtype=torch.int64, device=device)
    clear = ((view_types != WALL) * (2**bits)[None, :, None]).sum(1)  # int64 [M, VIEW (row j)]
    row = seen[:, 0] + (1 << (VIEW // 2))  # [M]: the agent's cell is seen
    for j in range(VIEW - 1, -1, -1):
        out = table[row * (1 << VIEW) + clear[:, j]]
        seen[:, j] = out[:, 0]
        row = out[:, 1]
    return ((seen[:, None, :] >> bits[None, :, None]) & 1) == 1


def levels_to_arrays(levels: Sequence[Any]) -> dict[str, np.ndarray]:
    """Stack maze levels into padded numpy arrays (one vectorised scatter, no per-cell Python loop).

    Returns `cells` uint8 (N, Hp, Wp) of EMPTY/WALL/GOAL with Hp = max height + 2*PAD, Wp = max width +
    2*PAD (level cell (x, y) at [n, y + PAD, x + PAD]), `start` int64 (N, 2) and `goal` int64 (N, 2) as
    (x, y), `start_dir` int64 (N,) (-1: random), `max_steps` int64 (N,) (each level's episode limit,
    `level_max_steps`) and `see_through` bool (N,).
    Raises UsageError for a level the game cannot start on.
    """
    n = len(levels)
    if n == 0:
        raise ValueError("no levels given; pass one maze level per sub-environment")
    widths = np.fromiter((lvl.width for lvl in levels), dtype=np.int64, count=n)
    heights = np.fromiter((lvl.height for lvl in levels), dtype=np.int64, count=n)
    start = np.array([lvl.start for lvl in levels], dtype=np.int64).reshape(n, 2)
    goal = np.array([lvl.goal for lvl in levels], dtype=np.int64).reshape(n, 2)
    start_dir = np.fromiter(
        (-1 if lvl.start_dir is None else lvl.start_dir for lvl in levels), dtype=np.int64, count=n
    )
    see_through = np.fromiter((lvl.see_through for lvl in levels), dtype=bool, count=n)
    max_steps = np.fromiter((level_max_steps(lvl) for lvl in levels), dtype=np.int64, count=n)
    counts = np.fromiter((len(lvl.walls) for lvl in levels), dtype=np.int64, count=n)
    walls = np.array([c for lvl in levels for c in lvl.walls], dtype=np.int64).reshape(-1, 2)

    if (widths < 3).any() or (heights < 3).any():
        raise UsageError("a maze level is smaller than 3x3; levels need an inner area inside the outer wall")
    hp, wp = int(heights.max()) + 2 * PAD, int(widths.max()) + 2 * PAD

    def inside(xy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        return (xy[:, 0] >= 1) & (xy[:, 0] <= w - 2) & (xy[:, 1] >= 1) & (xy[:, 1] <= h - 2)

    if not inside(start, widths, heights).all() or not inside(goal, widths, heights).all():
        raise UsageError("a maze level's start or goal lies on or outside its outer wall; repair the level")
    if ((start_dir < -1) | (start_dir > 3)).any():
        raise UsageError("a maze level's start_dir is not 0..3 (right, down, left, up) or None (random)")
    if (max_steps < 1).any():
        raise UsageError("a maze level's max_steps is below 1; give at least one step (or None)")
    if (start == goal).all(axis=1).any():
        raise UsageError("a maze level starts on its goal; repair the level (family.repair)")

    # inner area of each level is empty, everything else (outer wall, padding, beyond smaller levels) wall
    ys = np.arange(hp)[None, :, None] - PAD
    xs = np.arange(wp)[None, None, :] - PAD
    inner = ((ys >= 1) & (ys <= heights[:, None, None] - 2)) & ((xs >= 1) & (xs <= widths[:, None, None] - 2))
    cells = np.where(inner, EMPTY, WALL).astype(np.uint8)
    env_of_wall = np.repeat(np.arange(n), counts)
    cells[env_of_wall, walls[:, 1] + PAD, walls[:, 0] + PAD] = WALL
    rows = np.arange(n)
    if (cells[rows, start[:, 1] + PAD, start[:, 0] + PAD] != EMPTY).any():
        raise UsageError("a maze level starts on a wall; repair the level (family.repair)")
    if (cells[rows, goal[:, 1] + PAD, goal[:, 0] + PAD] != EMPTY).any():
        raise UsageError("a maze level has a wall on its goal; repair the level (family.repair)")
    cells[rows, goal[:, 1] + PAD, goal[:, 0] + PAD] = GOAL
    return {
        "cells": cells,
        "start": start,
        "goal": goal,
        "start_dir": start_dir,
        "max_steps": max_steps,
        "see_through": see_through,
    }


class BatchedMazeEnv(LevelVectorEnv):
    """N mazes stepped as whole arrays (no Python loop over envs); see the module docstring for the game.

    Args:
        num_envs: N, the number of sub-envs (one level each).
        device: "cpu", "cuda", ... ; every tensor in and out lives there.
        max_steps: episode limit, one int for all sub-envs or a sequence of N ints, overriding the levels';
            None (default): as `MazeEnv`, each level's own `max_steps`, else 250 per 15x15 area of the
            level, rounded up (250 for the published 15x15 mazes).
        levels: optional initial levels (else call `set_levels` before `reset`).
        seed: seed of the numpy Generator that draws random start directions (levels with
            `start_dir=None`) at `reset`; `reset(seed=...)` reseeds it.
        array_ops: which array library runs the step: "torch" (any device), "numpy" (CPU only: the same
            code with ~4x less per-operation overhead than CPU torch, results wrapped zero-copy as torch
            tensors) or "auto" (numpy on CPU, torch elsewhere).

    State after `reset` (torch tensors on `device`): `agent_pos` int64 [N, 2] (x, y), `agent_dir` int64 [N],
    `step_count` int64 [N], `max_steps` int64 [N], `goal_pos` int64 [N, 2], `walls` bool [N, Hp, Wp]
    (padded, level cell (x, y) at [n, y + PAD, x + PAD]).
    """

    def __init__(
        self,
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        max_steps: int | Sequence[int] | None = None,
        levels: Sequence[Any] | None = None,
        array_ops: str = "auto",
        seed: int | None = None,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        if array_ops not in ("auto", "torch", "numpy"):
            raise ValueError(f"array_ops must be auto, torch or numpy, got {array_ops!r}")
        if array_ops == "numpy" and self.device.type != "cpu":
            raise ValueError(
                f"array_ops='numpy' runs on the CPU only; use array_ops='torch' on {self.device}"
            )
        self._numpy = self.device.type == "cpu" and array_ops != "torch"
        self._xp: Any = np if self._numpy else torch
        self._fixed_max_steps: np.ndarray | None = None
        self._rng = np.random.default_rng(seed)
        if max_steps is not None:
            ms = np.asarray(max_steps, dtype=np.int64)
            if ms.ndim > 1 or (ms.ndim == 1 and len(ms) != self.num_envs) or (ms < 1).any():
                raise ValueError(f"max_steps must be an int >= 1 or {self.num_envs} of them, got {max_steps}")
            self._fixed_max_steps = np.broadcast_to(ms, (self.num_envs,)).copy()
        self.single_action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self.single_observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (VIEW, VIEW, 3), dtype=np.uint8),
                "direction": gym.spaces.Discrete(4),
            }
        )
        # new direction = turn[dir * 7 + action]: left -1, right +1, other actions keep it
        turn = (np.arange(4)[:, None] + np.array([-1, 1, 0, 0, 0, 0, 0])[None, :]) % 4
        self._turn = self._array(turn.reshape(-1).astype(np.int64))  # [4 * 7]
        self._pending: dict[str, np.ndarray] | None = None
        self._grid_shape: tuple[int, int] | None = None
        self._pos: Any = None  # flat index of each agent's cell into the stacked grids, int64 [N]
        if levels is not None:
            self.set_levels(levels)

    def _array(self, x: np.ndarray) -> Any:
        """numpy array -> the step's array type (numpy, or a torch tensor on `device`)."""
        return x if self._numpy else torch.from_numpy(x).to(self.device)

    def _tensor(self, x: Any) -> torch.Tensor:
        """the step's array -> torch tensor on `device` (zero-copy for numpy)."""
        return torch.from_numpy(x) if self._numpy else x

    # ----- levels -----------------------------------------------------------------------------
    def set_levels(self, levels: Sequence[Any]) -> None:
        """Hold one level per sub-env (converted to arrays here, once); applied at the next `reset`."""
        if len(levels) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} levels, got {len(levels)}")
        self._pending = levels_to_arrays(levels)

    def _apply_levels(self) -> None:
        arrays, n = self._pending, self.num_envs
        assert arrays is not None
        cells = arrays["cells"]
        hp, wp = cells.shape[1:]
        self._grid_shape = (hp, wp)
        self._cells = cells
        self._cell_type = self._array(cells.reshape(-1))  # uint8 [N*Hp*Wp]
        self._cell_code = self._array(CELL_ENCODING[cells.reshape(-1)])  # uint8 [N*Hp*Wp, 3]
        self._fwd_delta = self._array(DIR_TO_VEC[:, 1] * wp + DIR_TO_VEC[:, 0])  # int64 [4]
        view = view_offsets()
        self._view_delta = self._array((view[..., 1] * wp + view[..., 0]).reshape(4, VIEW * VIEW))  # [4, 25]
        base = np.arange(n, dtype=np.int64) * (hp * wp)
        start = arrays["start"]
        self._base = base
        self._start_pos = self._array(base + (start[:, 1] + PAD) * wp + (start[:, 0] + PAD))  # int64 [N]
        self._level_start_dir = arrays["start_dir"]  # int64 [N], -1: random at every reset
        occluded = np.flatnonzero(~arrays["see_through"])
        self._occluded = self._array(occluded) if len(occluded) else None  # int64 [M] or None
        self._row_sweep = self._array(ROW_SWEEP)
        ms = self._fixed_max_steps if self._fixed_max_steps is not None else arrays["max_steps"]
        self._max_steps_np = ms.astype(np.int64)
        self._max_steps = self._array(self._max_steps_np)
        # reward of reaching the goal at step t: float32 [N * (T + 1)], computed in float64 as minigrid's
        # Python float `1 - 0.9 * (step_count / max_steps)`, then rounded once
        t_max = int(ms.max())
        t = np.arange(t_max + 1, dtype=np.float64)[None, :]
        table = (1 - 0.9 * (t / ms[:, None].astype(np.float64))).astype(np.float32)
        self._reward_table = self._array(table.reshape(-1))
        self._reward_base = self._array(np.arange(n, dtype=np.int64) * (t_max + 1))
        self._goal = arrays["goal"]
        self._pending = None

    # ----- gym-like API ----------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Start every sub-env on its level. Levels with `start_dir=None` get a uniformly random start
        direction, drawn from the env's numpy Generator (reseeded with `seed` when given) and kept through
        their autoresets; the rest of the game is deterministic.
        Returns `{"image": uint8 [N, 5, 5, 3], "direction": int64 [N]}`."""
        if self._pending is not None:
            self._apply_levels()
        if self._grid_shape is None:
            raise RuntimeError("BatchedMazeEnv has no levels; call set_levels(levels) before reset()")
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        start_dir = self._level_start_dir.copy()
        random = start_dir < 0
        if random.any():
            start_dir[random] = self._rng.integers(0, 4, size=int(random.sum()))
        self._start_dir = self._array(start_dir)
        self._pos = self._start_pos + 0
        self._dir = self._start_dir + 0
        self._step_count = self._start_dir * 0
        return self._obs()

    def step(
        self, actions: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """actions int [N] in 0..6 -> (obs, reward float32 [N], terminated bool [N], truncated bool [N]).
        A sub-env that finished is already back at its level's start and `obs` shows its first view."""
        if self._pos is None:
            raise RuntimeError("call reset() before step()")
        xp = self._xp
        if self._numpy:
            if isinstance(actions, torch.Tensor):
                a = (
                    actions.numpy()
                    if actions.device.type == "cpu" and not actions.requires_grad
                    else (actions.detach().cpu().numpy())
                )
            else:
                a = np.asarray(actions)
            a = a.astype(np.int64, copy=False).reshape(self.num_envs)
        else:
            a = torch.as_tensor(actions, device=self.device).long().reshape(self.num_envs)
        sc = self._step_count + 1
        fwd = self._pos + self._fwd_delta[self._dir]
        fwd_type = self._cell_type[fwd]
        is_fwd = a == FORWARD
        pos = xp.where(is_fwd & (fwd_type != WALL), fwd, self._pos)
        terminated = is_fwd & (fwd_type == GOAL)
        direction = self._turn[self._dir * NUM_ACTIONS + a]
        truncated = sc >= self._max_steps
        reward = xp.where(terminated, self._reward_table[self._reward_base + sc], 0)
        done = terminated | truncated
        self._pos = xp.where(done, self._start_pos, pos)
        self._dir = xp.where(done, self._start_dir, direction)
        self._step_count = xp.where(done, 0, sc)
        return self._obs(), self._tensor(reward), self._tensor(terminated), self._tensor(truncated)

    def _obs(self) -> dict[str, torch.Tensor]:
        idx = self._pos[:, None] + self._view_delta[self._dir]  # [N, V*V]
        # one gather of 3-byte rows (np.take is ~3x faster than numpy fancy indexing here)
        image = np.take(self._cell_code, idx, axis=0) if self._numpy else self._cell_code[idx]
        image = image.reshape(self.num_envs, VIEW, VIEW, 3)
        if self._occluded is not None:  # levels that are not see-through: minigrid's occlusion
            rows = self._occluded
            seen = visibility(self._cell_type[idx[rows]].reshape(-1, VIEW, VIEW), self._row_sweep)
            image[rows] = image[rows] * seen[..., None]
        # a copy: callers may keep or modify observations without touching the env's state
        return {"image": self._tensor(image), "direction": self._tensor(self._dir * 1)}

    # ----- inspection (torch tensors on `device`) ---------------------------------------------
    def _check_reset(self) -> None:
        if self._pos is None or self._grid_shape is None:
            raise RuntimeError("call reset() first")

    @property
    def agent_pos(self) -> torch.Tensor:
        """int64 [N, 2]: each agent's (x, y) in its level's coordinates."""
        self._check_reset()
        wp = self._grid_shape[1]
        local = torch.as_tensor(self._pos, device=self.device) - torch.as_tensor(
            self._base, device=self.device
        )
        return torch.stack([local % wp - PAD, local // wp - PAD], dim=1)

    @property
    def agent_dir(self) -> torch.Tensor:
        """int64 [N]: each agent's direction (0 right, 1 down, 2 left, 3 up)."""
        self._check_reset()
        return torch.as_tensor(self._dir, device=self.device)

    @property
    def step_count(self) -> torch.Tensor:
        """int64 [N]: steps taken in each sub-env's current episode."""
        self._check_reset()
        return torch.as_tensor(self._step_count, device=self.device)

    @property
    def max_steps(self) -> torch.Tensor:
        """int64 [N]: each sub-env's episode limit."""
        self._check_reset()
        return torch.as_tensor(self._max_steps_np, device=self.device)

    @property
    def goal_pos(self) -> torch.Tensor:
        """int64 [N, 2]: each level's goal (x, y)."""
        self._check_reset()
        return torch.as_tensor(self._goal, device=self.device)

    @property
    def walls(self) -> torch.Tensor:
        """bool [N, Hp, Wp]: walls of the padded stacked grids (level cell (x, y) at [n, y + PAD, x + PAD])."""
        self._check_reset()
        return torch.as_tensor(self._cells == WALL, device=self.device)


__all__ = ["CELL_ENCODING", "ROW_SWEEP", "BatchedMazeEnv", "levels_to_arrays", "view_offsets", "visibility"]
