"""The batched tensor maze backend plays exactly minigrid's game: step-by-step parity with `MazeEnv`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from minigrid.minigrid_env import MiniGridEnv

from ued.environments.batched_maze import PAD, BatchedMazeEnv, levels_to_arrays
from ued.environments.maze import MazeEnv, MazeFamily, MazeLevel, level_max_steps, load_maze, perfect_maze
from ued.environments.maze_generators import four_rooms, simple_crossing
from ued.vecenv import GymLevelVectorEnv

MAZE_DIR = Path(__file__).resolve().parents[1] / "environments" / "mazes"
#: (device, array_ops): both array libraries run in CI on the CPU; CUDA too where there is one
BACKENDS = [("cpu", "numpy"), ("cpu", "torch")] + ([("cuda", "torch")] if torch.cuda.is_available() else [])


def goal_ahead_level(size: int, start_dir: int) -> MazeLevel:
    """An open maze whose goal is two cells ahead of the start: random actions reach it often."""
    c = size // 2
    dx, dy = [(1, 0), (0, 1), (-1, 0), (0, -1)][start_dir]
    return MazeLevel(size, size, ((c - dy, c + dx),), (c, c), start_dir, (c + 2 * dx, c + 2 * dy))


def mixed_levels() -> list[MazeLevel]:
    """DR levels of the published family, goal-near levels, file/perfect mazes of other sizes; levels that
    are not see-through (dcd's FourRooms and SimpleCrossing, occluded DR levels) and levels with a random
    start direction (`start_dir=None`)."""
    family = MazeFamily()
    rng = np.random.default_rng(123)
    levels = [family.sample(rng) for _ in range(20)]
    levels += [goal_ahead_level(15, d) for d in range(4)] + [goal_ahead_level(7, 1)]
    levels += [perfect_maze(11, seed=1), perfect_maze(21, seed=2)]
    files = sorted(MAZE_DIR.glob("*/*.txt"))
    assert files, "the held-out maze files are missing"
    levels += [load_maze(path) for path in files[::4]]
    levels += [four_rooms(rng) for _ in range(6)] + [simple_crossing(rng, 11, 5), simple_crossing(rng, 9, 2)]
    levels += [dataclasses.replace(family.sample(rng), see_through=False) for _ in range(6)]
    levels += [dataclasses.replace(goal_ahead_level(15, 0), start_dir=None, see_through=False)]
    levels += [dataclasses.replace(family.sample(rng), start_dir=None) for _ in range(6)]
    levels += [dataclasses.replace(four_rooms(rng), start_dir=None) for _ in range(3)]
    return levels


def reference_obs(env: MazeEnv) -> dict:
    """minigrid's own `gen_obs` (not MazeEnv's cached fast path), to check both against the source."""
    obs = MiniGridEnv.gen_obs(env)
    return {"image": obs["image"], "direction": obs["direction"]}


def assert_same_obs(batched: dict, refs: list[dict], check_source: list[MazeEnv] | None = None) -> None:
    image = batched["image"].cpu().numpy()
    direction = batched["direction"].cpu().numpy()
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(image[i], ref["image"], err_msg=f"image of env {i}")
        assert direction[i] == ref["direction"], f"direction of env {i}"
        if check_source is not None:
            np.testing.assert_array_equal(image[i], reference_obs(check_source[i])["image"])


@pytest.mark.parametrize(("device", "array_ops"), BACKENDS)
def test_parity_with_minigrid_step_by_step(device: str, array_ops: str) -> None:
    """Observations, rewards and flags equal minigrid's at every step, for see-through and occluded levels
    (minigrid's `see_through_walls=False` visibility), per-level episode limits and random start
    directions (the reference MazeEnv plays the direction the batched env drew)."""
    levels = mixed_levels()
    n = len(levels)
    # short limits on some levels exercise truncation and many autoresets; None = the level's own limit
    limits = [[None, 5, 17, 40][i % 4] for i in range(n)]
    levels = [
        lvl if ms is None else dataclasses.replace(lvl, max_steps=ms) for lvl, ms in zip(levels, limits)
    ]
    assert any(not lvl.see_through for lvl in levels) and any(lvl.start_dir is None for lvl in levels)
    env = BatchedMazeEnv(n, device=device, array_ops=array_ops)
    env.set_levels(levels)

    obs = env.reset(seed=11)
    drawn = env.agent_dir.cpu().tolist()
    assert env.max_steps.tolist() == [level_max_steps(lvl) for lvl in levels]
    random_dirs = [d for lvl, d in zip(levels, drawn) if lvl.start_dir is None]
    assert len(set(random_dirs)) > 1
    refs = [
        MazeEnv(lvl if lvl.start_dir is not None else dataclasses.replace(lvl, start_dir=d))
        for lvl, d in zip(levels, drawn)
    ]
    assert obs["image"].dtype == torch.uint8 and obs["image"].shape == (n, 5, 5, 3)
    assert obs["direction"].dtype == torch.int64 and obs["image"].device.type == device
    assert_same_obs(obs, [ref.reset()[0] for ref in refs], check_source=refs)

    rng = np.random.default_rng(7)
    counts = {"terminated": 0, "truncated": 0, "both": 0}
    for t in range(260):
        actions = rng.integers(0, 7, size=n)
        actions[rng.random(n) < 0.4] = 2  # walk forward often
        obs, reward, terminated, truncated = env.step(torch.as_tensor(actions, device=device))
        assert (
            reward.dtype == torch.float32 and terminated.dtype == torch.bool and truncated.dtype == torch.bool
        )
        ref_obs = []
        for i, ref in enumerate(refs):
            o, r, te, tr, _ = ref.step(int(actions[i]))
            assert np.float32(r) == reward[i].item(), f"reward of env {i} at step {t}"
            assert (te, tr) == (terminated[i].item(), truncated[i].item()), f"flags of env {i} at step {t}"
            counts["terminated"] += te
            counts["truncated"] += tr
            counts["both"] += te and tr
            if te or tr:
                o, _ = ref.reset()  # same-step autoreset to the same level (and the same start direction)
            ref_obs.append(o)
        assert_same_obs(obs, ref_obs, check_source=refs if t % 10 == 0 else None)
    assert counts["terminated"] >= 20 and counts["truncated"] >= 50, counts
    occluded = [i for i, lvl in enumerate(levels) if not lvl.see_through]
    assert (obs["image"][occluded] == 0).all(dim=-1).any(), "no cell was hidden behind a wall"


@pytest.mark.parametrize("array_ops", ["numpy", "torch"])
def test_random_start_directions_are_seeded_and_kept(array_ops: str) -> None:
    level = dataclasses.replace(goal_ahead_level(7, 0), start_dir=None, max_steps=3)
    fixed = dataclasses.replace(goal_ahead_level(7, 2), max_steps=3)
    env = BatchedMazeEnv(64, levels=[level] * 63 + [fixed], array_ops=array_ops)
    env.reset(seed=1)
    first = env.agent_dir.tolist()
    assert set(first[:63]) == {0, 1, 2, 3} and first[63] == 2
    for _ in range(3):  # episodes of 3 steps: the autoreset after the third keeps each drawn direction
        env.step(torch.zeros(64, dtype=torch.int64))
    assert env.step_count.tolist() == [0] * 64 and env.agent_dir.tolist() == first
    env.reset(seed=1)
    assert env.agent_dir.tolist() == first
    env.reset(seed=2)
    assert env.agent_dir.tolist() != first
    seeded = BatchedMazeEnv(2, levels=[level] * 2, seed=5, array_ops=array_ops)
    again = BatchedMazeEnv(2, levels=[level] * 2, seed=5, array_ops=array_ops)
    assert seeded.reset()["direction"].tolist() == again.reset()["direction"].tolist()


def test_occlusion_hides_cells_behind_walls() -> None:
    """A wall right ahead of the agent hides the cells behind it (minigrid's process_vis), unless the
    level is see-through."""
    walls = tuple((x, 3) for x in range(1, 6))  # a wall row across the room, just ahead of the agent
    open_level = MazeLevel(7, 7, walls, (3, 4), 3, (3, 5))
    env = BatchedMazeEnv(2, levels=[open_level, dataclasses.replace(open_level, see_through=False)])
    image = env.reset()["image"].numpy()
    # view column i, row j; the agent at (2, 4), the wall row at j = 3, the cells beyond at j = 0..2
    assert (image[0, :, 3] == (2, 5, 0)).all() and (image[1, :, 3] == (2, 5, 0)).all()
    assert (image[0, :, :3] != 0).any(axis=-1).all()
    assert (image[1, :, :3] == 0).all()


def test_matches_reference_vector_env() -> None:
    """Same levels through the family's default (batched) and the gymnasium reference vector env."""
    family = MazeFamily()
    batched = family.make_vector_env(6, seed=3)
    assert isinstance(batched, BatchedMazeEnv)
    reference = GymLevelVectorEnv(family, 6, seed=3)
    levels = [goal_ahead_level(15, d % 4) for d in range(3)] + [
        dataclasses.replace(family.sample(np.random.default_rng(s)), start_dir=s) for s in range(3)
    ]  # fixed directions: the two backends draw random ones from different streams
    batched.set_levels(levels)
    reference.set_levels(levels)
    a, b = batched.reset(), reference.reset()
    assert set(a) == set(b) == {"image", "direction"}
    rng = np.random.default_rng(0)
    terminations = 0
    for _ in range(60):
        actions = torch.as_tensor(rng.choice([0, 1, 2, 2, 3], size=6))
        out_a, out_b = batched.step(actions), reference.step(actions)
        for key in ("image", "direction"):
            assert out_a[0][key].dtype == out_b[0][key].dtype
            assert torch.equal(out_a[0][key], out_b[0][key])
        for x, y in zip(out_a[1:], out_b[1:]):
            assert x.dtype == y.dtype and torch.equal(x, y)
        terminations += int(out_a[2].sum())
    reference.close()
    assert terminations > 0


@pytest.mark.parametrize("array_ops", ["numpy", "torch"])
def test_levels_take_effect_at_reset_and_may_change_size(array_ops: str) -> None:
    env = BatchedMazeEnv(2, array_ops=array_ops)
    with pytest.raises(RuntimeError, match="set_levels"):
        env.reset()
    small = [goal_ahead_level(7, 0), goal_ahead_level(7, 2)]
    env.set_levels(small)
    env.reset()
    assert env.walls.shape == (2, 7 + 2 * PAD, 7 + 2 * PAD)
    env.step(torch.tensor([2, 1]))
    assert env.agent_pos.tolist() == [[4, 3], [3, 3]] and env.agent_dir.tolist() == [0, 3]
    big = [perfect_maze(21, seed=0), goal_ahead_level(9, 1)]
    env.set_levels(big)
    assert env.agent_pos.tolist() == [[4, 3], [3, 3]]  # unchanged until reset
    env.reset()
    assert env.walls.shape == (2, 21 + 2 * PAD, 21 + 2 * PAD)
    assert env.agent_pos.tolist() == [list(level.start) for level in big]
    assert env.goal_pos.tolist() == [list(level.goal) for level in big]
    assert env.max_steps.tolist() == [250 * 2, 250]  # MazeEnv's default: 250 per 15x15 area
    env.set_levels([dataclasses.replace(big[0], max_steps=7), big[1]])
    env.reset()
    assert env.max_steps.tolist() == [7, 250]  # a level's own limit
    for n, level in enumerate(big):
        region = env.walls[n, PAD : PAD + level.height, PAD : PAD + level.width].numpy()
        np.testing.assert_array_equal(region, level.wall_grid())
        assert env.walls[n, : PAD + 1].all() and env.walls[n, PAD + level.height - 1 :].all()


def test_levels_to_arrays_is_one_padded_stack() -> None:
    levels = [goal_ahead_level(7, 0), perfect_maze(11, seed=4)]
    arrays = levels_to_arrays(levels)
    assert arrays["cells"].shape == (2, 11 + 2 * PAD, 11 + 2 * PAD)
    # the small level is wall everywhere outside its 5x5 inner area
    inner = arrays["cells"][0, PAD + 1 : PAD + 6, PAD + 1 : PAD + 6]
    assert (arrays["cells"][0] != 0).sum() == arrays["cells"][0].size - (inner == 0).sum()
    assert arrays["cells"][1, PAD + 9, PAD + 9] == 2  # goal of the perfect maze


def test_misuse_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        BatchedMazeEnv(0)
    with pytest.raises(ValueError):
        BatchedMazeEnv(2, max_steps=0)
    with pytest.raises(ValueError):
        BatchedMazeEnv(2, max_steps=[10, 10, 10])
    with pytest.raises(ValueError):
        BatchedMazeEnv(2, array_ops="jax")
    env = BatchedMazeEnv(2)
    with pytest.raises(ValueError):
        env.set_levels([goal_ahead_level(7, 0)])
    env.set_levels([goal_ahead_level(7, 0)] * 2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(2, dtype=torch.int64))
