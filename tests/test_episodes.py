"""Episodes as pictures: one played episode's frames, GIFs, TensorBoard video layout, frame sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.distributions import Categorical

from ued.environments.maze import MazeLevel
from ued.episodes import episode_video, play_episode, record_episode, resize_frame, save_gif
from ued.errors import UsageError
from ued.levels import make_family
from ued.models import Policy, make_student

# a corridor: start at (1, 1) facing right, goal 3 cells ahead
CORRIDOR = MazeLevel(7, 3, (), (1, 1), 0, (4, 1), max_steps=20)


class Forward(Policy):
    """Always minigrid's "forward" (action 2); counts the episode starts it was told about."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.starts = []
        self.images = []

    def forward(self, obs, state, done):
        self.starts.append(float(done[0]))
        self.images.append(tuple(obs["image"].shape))
        logits = torch.full((obs["image"].shape[0], 7), -1e9)
        logits[:, 2] = 0.0
        return Categorical(logits=logits), torch.zeros(logits.shape[0]), state


def test_a_scripted_student_walks_the_corridor_frame_by_frame():
    maze = make_family("maze")
    policy = Forward()
    episode = play_episode(policy, maze, CORRIDOR)
    assert episode.finished
    assert len(episode.rewards) == 3 and len(episode.frames) == 4  # the start, then one per step
    assert episode.total_return == pytest.approx(1 - 0.9 * 3 / 20)  # minigrid's reward on step 3 of 20
    assert policy.starts == [1.0, 0.0, 0.0]  # `done` marks the episode start only
    assert policy.images == [(1, 5, 5, 3)] * 3  # observations as batches of one
    first, last = episode.frames[0], episode.frames[-1]
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert all(f.shape == first.shape for f in episode.frames)
    assert not np.array_equal(first, last)  # the agent moved in the picture
    # 7x3 tiles of 32 px = 224x96: not enlarged, as twice that would be wider than 400 px
    assert first.shape == (96, 224, 3)


def test_record_episode_is_seeded_and_leaves_torch_rng_alone():
    maze = make_family("maze")
    torch.manual_seed(0)
    policy = make_student(maze)  # untrained: a random walk
    level = maze.sample(np.random.default_rng(3))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = record_episode(policy, maze, level, seed=5, max_frames=12)
    assert torch.rand(3).tolist() == expected.tolist()
    b = record_episode(policy, maze, level, seed=5, max_frames=12)
    c = record_episode(policy, maze, level, seed=6, max_frames=12)
    assert len(a) == 12  # a budget of 12 frames: the episode is cut there
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a) != len(c) or not all(np.array_equal(x, y) for x, y in zip(a, c))
    with pytest.raises(ValueError, match="max_frames"):
        record_episode(policy, maze, level, max_frames=0)


def test_deterministic_takes_the_most_likely_action():
    maze = make_family("maze")
    policy = Forward()
    frames = record_episode(policy, maze, CORRIDOR, deterministic=True)
    assert len(frames) == 4


def test_resize_frame_uses_whole_factors():
    assert resize_frame(np.zeros((400, 600, 3), np.uint8)).shape == (200, 300, 3)  # CarRacing
    assert resize_frame(np.zeros((480, 480, 3), np.uint8)).shape == (240, 240, 3)  # a 15x15 maze
    assert resize_frame(np.zeros((672, 672, 3), np.uint8)).shape == (336, 336, 3)  # dcd's 21x21 mazes
    small = np.arange(80 * 112 * 3, dtype=np.uint8).reshape(80, 112, 3)  # the corridor example
    big = resize_frame(small)
    assert big.shape == (160, 224, 3) and (big[::2, ::2] == small).all()
    assert resize_frame(small, min_side=300).shape == (240, 336, 3)  # x3 reaches 240 only: x4 is too wide
    assert resize_frame(np.zeros((96, 224, 3), np.uint8)).shape == (96, 224, 3)  # x2 would be too wide
    same = np.zeros((200, 300, 3), np.uint8)
    assert resize_frame(same).shape == same.shape


def test_save_gif_writes_an_animation(tmp_path):
    frames = [np.full((20, 30, 3), v, dtype=np.uint8) for v in (0, 80, 160, 240)]
    frames[2][5:10, 5:10] = (255, 0, 0)
    path = tmp_path / "ep.gif"
    save_gif(frames, path, fps=5)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.size == (30, 20)
        assert gif.n_frames == 4
        assert gif.info["duration"] == 200 and gif.info["loop"] == 0
        gif.seek(2)
        assert gif.convert("RGB").getpixel((7, 7)) == (255, 0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.gif"]  # no temp file left
    with pytest.raises(ValueError, match="one size"):
        save_gif([frames[0], np.zeros((10, 10, 3), np.uint8)], path)
    with pytest.raises(ValueError, match="no frames"):
        save_gif([], path)
    with pytest.raises(ValueError, match="fps"):
        save_gif(frames, path, fps=0)


def test_episode_video_is_shaped_for_add_video():
    frames = [np.random.default_rng(i).integers(0, 256, (6, 8, 3), dtype=np.uint8) for i in range(5)]
    video = episode_video(frames)
    assert video.shape == (5, 3, 6, 8) and video.dtype == np.uint8
    assert (video[3].transpose(1, 2, 0) == frames[3]).all()
    with pytest.raises(ValueError):
        episode_video([np.zeros((6, 8), np.uint8)])


def test_carracing_episode_frames_come_from_the_game_picture():
    car = make_family("carracing")
    torch.manual_seed(0)
    policy = make_student(car)
    level = car.sample(np.random.default_rng(0))
    frames = record_episode(policy, car, level, max_frames=3)
    assert len(frames) == 3
    assert frames[0].shape == (200, 300, 3)  # the 600x400 game picture, halved


def test_a_family_whose_envs_cannot_render_is_refused():
    class NoRender(type(make_family("maze"))):
        def make_env(self, level=None):  # a make_env without render_mode
            return super().make_env(level)

    with pytest.raises(UsageError, match="render_mode"):
        NoRender(max_walls=2).make_render_env(None)
