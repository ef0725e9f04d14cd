"""A trained student's episode as pictures: play one episode on a level and keep the env's frames, then
write them as an animated GIF (`ued render --run RUN --episode LEVEL`) or shape them for TensorBoard.

Generic over level families: the env is `family.make_env(level, render_mode="rgb_array")` (with
`eval_mode=True` where the family's `make_env` takes it: CarRacing's game reward, no shaping or early
stop, as zero-shot evaluation plays), its observations feed the policy as one-sample batches converted
like `ued.vecenv.to_tensor`, and `env.render()` gives the frames (maze: minigrid's whole-grid picture with
the agent and its view; CarRacing: the game's 600x400 picture).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from PIL import Image

from ued.errors import UsageError
from ued.io import atomic_write
from ued.levels import LevelFamily
from ued.models import Policy, deterministic_action
from ued.packed_linear import frozen_weights
from ued.vecenv import to_tensor

#: frames are shrunk by a whole factor until their long side is at most this many pixels
MAX_SIDE = 400
#: ... and enlarged by a whole factor (nearest neighbour) until their short side is at least this many
MIN_SIDE = 160


@dataclass
class Episode:
    """One played episode: `frames` (uint8 [H, W, 3] each: the first observation, then one per step) and
    the env's reward of every step [steps]."""

    frames: list[np.ndarray]
    rewards: np.ndarray
    #: True when the episode ended (terminated or truncated) within the frame budget
    finished: bool

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum())


def resize_frame(frame: np.ndarray, max_side: int = MAX_SIDE, min_side: int = MIN_SIDE) -> np.ndarray:
    """An RGB frame (H, W, 3) scaled by a whole factor: shrunk (area average) by the smallest factor that
    brings its long side to at most `max_side`; or, when its short side is under `min_side`, enlarged
    (nearest neighbour) by the factor that reaches `min_side`, or the largest one that keeps the long side
    within `max_side` if that is smaller. Whole factors keep the cells of a grid picture aligned and
    sharp."""
    frame = np.asarray(frame, dtype=np.uint8)[..., :3]
    h, w = frame.shape[:2]
    if max(h, w) > max_side:
        k = math.ceil(max(h, w) / max_side)
        return np.asarray(Image.fromarray(frame).resize((w // k, h // k), Image.Resampling.BOX))
    if 0 < min(h, w) < min_side:
        k = min(math.ceil(min_side / min(h, w)), max_side // max(h, w))
        if k >= 2:
            return np.repeat(np.repeat(frame, k, axis=0), k, axis=1)
    return frame


def _frame(env: gym.Env) -> np.ndarray:
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[-1] < 3:
        raise UsageError(
            f"{type(env.unwrapped).__name__}.render() gave no RGB picture (got {type(frame).__name__}); "
            "its rgb_array render mode must return an (H, W, 3) array"
        )
    return frame


def _batch1(obs: Any, device: torch.device) -> Any:
    """One env's observation -> the policy's batch of one (`to_tensor`, then a leading dim of 1)."""
    t = to_tensor(obs, device)
    if isinstance(t, dict):
        return {k: v.unsqueeze(0) for k, v in t.items()}
    return t.unsqueeze(0)


def _env_action(action: torch.Tensor, space: gym.Space) -> Any:
    a = action[0].detach().cpu().numpy()
    return int(a) if isinstance(space, gym.spaces.Discrete) else a


@torch.no_grad()
@frozen_weights()
def play_episode(
    policy: Policy,
    family: LevelFamily,
    level: Any,
    *,
    seed: int = 0,
    deterministic: bool = False,
    max_frames: int = 1000,
    max_side: int = MAX_SIDE,
    min_side: int = MIN_SIDE,
) -> Episode:
    """Play ONE episode of `policy` on `level` and keep every frame (see `record_episode`)."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    device = next(policy.parameters()).device
    env = family.make_render_env(level)
    frames: list[np.ndarray] = []
    rewards: list[float] = []
    finished = False
    was_training = policy.training
    policy.eval()
    try:
        # the policy's sampling draws from torch's global RNG: seeded here, the caller's state restored
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            obs, _ = env.reset(seed=seed)
            frames.append(resize_frame(_frame(env), max_side, min_side))
            state = policy.initial_state(1, device)
            done = torch.ones(1, device=device)  # an episode starts at the first step
            while len(frames) < max_frames:
                dist, _, state = policy(_batch1(obs, device), state, done)
                action = deterministic_action(dist) if deterministic else dist.sample()
                obs, reward, terminated, truncated, _ = env.step(_env_action(action, env.action_space))
                rewards.append(float(reward))
                frames.append(resize_frame(_frame(env), max_side, min_side))
                done = torch.zeros(1, device=device)
                if terminated or truncated:
                    finished = True
                    break
    finally:
        env.close()
        policy.train(was_training)
    return Episode(frames, np.asarray(rewards, dtype=np.float64), finished)


def record_episode(
    policy: Policy,
    family: LevelFamily,
    level: Any,
    *,
    seed: int = 0,
    deterministic: bool = False,
    max_frames: int = 1000,
    max_side: int = MAX_SIDE,
    min_side: int = MIN_SIDE,
) -> list[np.ndarray]:
    """The RGB frames (uint8 [H, W, 3] each, all of one size) of ONE episode of a trained student on
    `level`: the first observation's picture, then one after every policy step, until the episode ends
    or `max_frames` frames were taken.

    The env is `family.make_render_env(level)`, reset with `seed`; the policy (`policy(obs, state, done)` on
    batches of one) samples its actions (`deterministic`: the most likely one) from torch's RNG seeded with
    `seed` (the caller's RNG state is restored). Frames are scaled by whole factors (`resize_frame`) to at
    most `max_side` px on the long side (CarRacing's 600x400 -> 300x200, a 15x15 maze's 480 -> 240) and at
    least `min_side` on the short side."""
    return play_episode(
        policy,
        family,
        level,
        seed=seed,
        deterministic=deterministic,
        max_frames=max_frames,
        max_side=max_side,
        min_side=min_side,
    ).frames


def _check_frames(frames: list[np.ndarray]) -> tuple[int, int]:
    if not frames:
        raise ValueError("no frames to write")
    shape = np.asarray(frames[0]).shape
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[-1] != 3 or f.shape != shape:
            raise ValueError(
                f"frames must be uint8 [H, W, 3] arrays of one size; frame {i} is {f.dtype} {f.shape}, "
                f"frame 0 {shape}"
            )
    return shape[0], shape[1]


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, fps: float = 10.0) -> None:
    """Write `frames` (uint8 [H, W, 3], one size) as an animated GIF that loops, `fps` frames per second
    (rounded to GIF's 10 ms steps, at most 50 fps), atomically (`ued.io.atomic_write`). Each frame gets
    its own 256-colour palette; Pillow stores only the part of a frame that changed, and merges identical
    consecutive frames (a maze agent's no-op actions) into one frame shown as long as they were."""
    _check_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [Image.fromarray(np.asarray(f)) for f in frames]
    # GIF frame delays are whole centiseconds, and browsers slow delays under 20 ms down to 100 ms
    duration = 10 * max(2, round(100.0 / fps))

    def write(f: Any) -> None:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)

    atomic_write(path, write)


def episode_video(frames: list[np.ndarray]) -> np.ndarray:
    """Frames (uint8 [H, W, 3], one size) -> uint8 [T, C=3, H, W], the layout of one video of
    TensorBoard's `SummaryWriter.add_video`, which takes a batch: `writer.add_video(tag, video[None],
    step, fps=...)` (encoding needs the moviepy package)."""
    _check_frames(frames)
    return np.ascontiguousarray(np.stack([np.asarray(f) for f in frames]).transpose(0, 3, 1, 2))


__all__ = [
    "Episode",
    "episode_video",
    "play_episode",
    "record_episode",
    "resize_frame",
    "save_gif",
]
