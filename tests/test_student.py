"""Student rollouts: per-level results on a scripted env, and a real learning test on a small maze."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ued.config import PPOConfig
from ued.models import EncoderPolicy, mlp
from ued.student import Student
from ued.vecenv import LevelVectorEnv

torch.set_num_threads(1)


class CountdownEnv(LevelVectorEnv):
    """Level = (length, reward): every episode lasts `length` steps and pays `reward` on its last step."""

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.device = torch.device("cpu")
        self.single_observation_space = gym.spaces.Box(0, 1, (2,))
        self.single_action_space = gym.spaces.Discrete(2)
        self.levels: list[Any] = [(1, 0.0)] * num_envs
        self.t = torch.zeros(num_envs)

    def set_levels(self, levels):
        self.levels = list(levels)

    def _obs(self):
        length = torch.tensor([float(lv[0]) for lv in self.levels])
        return torch.stack([self.t / 100.0, length / 100.0], dim=1)

    def reset(self, seed=None):
        self.t = torch.zeros(self.num_envs)
        return self._obs()

    def step(self, actions):
        self.t += 1
        length = torch.tensor([float(lv[0]) for lv in self.levels])
        terminated = self.t >= length
        reward = torch.tensor([float(lv[1]) for lv in self.levels]) * terminated
        self.t = torch.where(terminated, torch.zeros_like(self.t), self.t)
        return self._obs(), reward, terminated, torch.zeros_like(terminated)


class TinyPolicy(EncoderPolicy):
    def __init__(self):
        super().__init__(2, 8, actor=mlp(8, (8,), 2, out_gain=0.01), critic=mlp(8, (8,), 1))

    def encode(self, obs):
        return obs


def test_rollout_results_per_level():
    torch.manual_seed(0)
    student = Student(TinyPolicy(), PPOConfig(num_envs=3, num_steps=10), seed=0)
    levels = [(3, 1.0), (5, 0.0), (100, 1.0)]
    rollout = student.collect(CountdownEnv(3), levels, num_steps=10)
    res = rollout.results
    np.testing.assert_allclose(res.episode_returns[0], [1.0, 1.0, 1.0])  # ends at steps 3, 6, 9
    np.testing.assert_allclose(res.episode_returns[1], [0.0, 0.0])  # ends at steps 5, 10
    np.testing.assert_allclose(res.episode_returns[2], [0.0])  # unfinished: the partial return
    np.testing.assert_allclose(res.mean_return, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(res.max_return, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(res.solved_rate, [1.0, 0.0, 0.0])
    storage = rollout.storage
    np.testing.assert_allclose(
        res.positive_value_loss, storage.advantages.clamp(min=0).mean(0).numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(res.mean_value, storage.values.mean(0).numpy(), rtol=1e-6)
    assert res.positive_value_loss[0] > 0  # rewards the untrained critic did not predict
    # dcd forces a done at the last step (the cut-off episode is not bootstrapped)
    assert storage.ends[:, 0].nonzero().flatten().tolist() == [2, 5, 8, 9]
    assert student.steps == 30
    metrics = student.learn(rollout)
    assert np.isfinite(metrics["policy_loss"])


def test_bootstrap_option_keeps_the_cut_off_episode_open():
    torch.manual_seed(0)
    student = Student(TinyPolicy(), PPOConfig(num_envs=1, num_steps=10, bootstrap_rollout_end=True), seed=0)
    storage = student.collect(CountdownEnv(1), [(3, 1.0)], num_steps=10).storage
    assert storage.ends[:, 0].nonzero().flatten().tolist() == [2, 5, 8]


def test_return_normalisation_scales_learned_rewards_not_results():
    """dcd's normalize_returns: rewards / running std of the discounted return, clipped to +-10."""
    torch.manual_seed(0)
    config = PPOConfig(num_envs=2, num_steps=12, normalize_returns=True)
    student = Student(TinyPolicy(), config, seed=0)
    rollout = student.collect(CountdownEnv(2), [(3, 50.0), (4, 80.0)], num_steps=12)
    np.testing.assert_allclose(rollout.results.episode_returns[0], [50.0] * 4)  # results unscaled
    learned = rollout.storage.rewards
    assert learned.abs().max() <= 10.0 + 1e-6 and float(learned.max()) < 50.0
    # by hand: the running return statistics of the first steps (discount 0.99)
    from ued.normalize import RunningMeanStd

    stats, ret = RunningMeanStd(), np.zeros(2)
    for t, rewards in enumerate(([0.0, 0.0], [0.0, 0.0], [50.0, 0.0])):
        ret = ret * 0.99 + np.array(rewards)
        stats.update(ret)
        np.testing.assert_allclose(
            learned[t].numpy(), np.clip(np.array(rewards) / stats.std, -10, 10), rtol=1e-5
        )
    state = student.state_dict()["return_norm"]
    other = Student(TinyPolicy(), config, seed=0)
    other.load_state_dict(student.state_dict())
    assert other.return_norm.state_dict() == state


def test_state_dict_roundtrip_restores_weights_optimizer_and_rng():
    torch.manual_seed(0)
    a = Student(TinyPolicy(), PPOConfig(num_envs=2, num_steps=6), seed=3)
    a.learn(a.collect(CountdownEnv(2), [(2, 1.0), (3, 0.0)], 6))
    b = Student(TinyPolicy(), PPOConfig(num_envs=2, num_steps=6), seed=99)
    b.load_state_dict(a.state_dict())
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.rng.integers(1000) == b.rng.integers(1000)
    assert b.ppo.optimizer.state_dict()["state"].keys() == a.ppo.optimizer.state_dict()["state"].keys()


EASY_MAZE = """\
#######
#>....#
#.###.#
#.#...#
#.#.#.#
#...#G#
#######
"""


def test_student_learns_an_easy_maze():
    """PPO on a 7x7 maze (goal 8 moves away) for 16 short updates clearly beats the untrained policy."""
    from ued.environments.maze import MazeFamily, parse_maze
    from ued.evaluation import evaluate
    from ued.models import MazePolicy

    level = parse_maze(EASY_MAZE)
    family = MazeFamily()
    torch.manual_seed(0)
    n, t = 16, 128
    student = Student(
        MazePolicy(hidden_size=64), PPOConfig(num_envs=n, num_steps=t, lr=3e-3, epochs=4, gamma=0.99)
    )
    before = evaluate(student.policy, family, [("easy", level)], episodes=32, seed=1)[0]
    venv = family.make_vector_env(n, seed=0)
    for _ in range(16):
        student.learn(student.collect(venv, [level] * n, t))
    after = evaluate(student.policy, family, [("easy", level)], episodes=32, seed=1)[0]
    assert before.mean_return < 0.3
    assert after.mean_return > before.mean_return + 0.4
    assert after.solved_rate >= 0.9


def test_students_given_one_reset_seed_start_alike_on_each_level():
    """The runner hands every student of a rollout the first one's reset seed: on mazes with random start
    directions both face the same way on each level (dcd's protagonist and antagonist share one env)."""
    from ued.levels import make_family
    from ued.models import make_student

    family = make_family("maze")
    levels = [family.sample(np.random.default_rng(i)) for i in range(16)]  # start_dir None: random
    config = PPOConfig(num_envs=16, num_steps=4)
    first, second = (Student(make_student(family), config, seed=s) for s in (1, 2))
    venvs = [family.make_vector_env(16, seed=s) for s in (1, 2)]
    a = first.collect(venvs[0], levels, 4)
    b = second.collect(venvs[1], levels, 4, a.reset_seed)
    assert b.reset_seed == a.reset_seed
    assert torch.equal(a.storage.obs["direction"][0], b.storage.obs["direction"][0])
    c = second.collect(venvs[1], levels, 4)  # its own seed: other directions
    assert not torch.equal(a.storage.obs["direction"][0], c.storage.obs["direction"][0])
