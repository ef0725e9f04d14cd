"""A student: a policy and its PPO learner, rolled out on the levels a teacher proposes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ued.config import PPOConfig
from ued.levels import LevelResults
from ued.models import Policy
from ued.normalize import ReturnNormalizer
from ued.packed_linear import frozen_weights
from ued.ppo import PPO, PPOError, RolloutStorage
from ued.vecenv import LevelVectorEnv


@dataclass(frozen=True)
class Rollout:
    """One student's rollout: the filled `storage` (GAE computed) that its PPO step learns from, the
    `results` per level that teachers score, and the `reset_seed` its envs were reset with."""

    storage: RolloutStorage
    results: LevelResults
    reset_seed: int


class Student:
    """Policy + PPO. `collect` plays one level per sub-env for `num_steps` steps (episodes restart on the
    same level) and returns the `Rollout`; `learn(rollout)` takes the PPO step on it.

    Action sampling uses the global torch RNG (seeded by the runner from the run seed); env resets are
    seeded from the student's own numpy Generator, so a run is reproducible and resumable.
    """

    def __init__(
        self, policy: Policy, ppo_config: PPOConfig, device: str | torch.device = "cpu", seed: int = 0
    ):
        self.device = torch.device(device)
        self.policy = policy.to(self.device)
        self.config = ppo_config
        self.ppo = PPO(self.policy, ppo_config, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.steps = 0  # env steps taken in rollouts, over the student's life
        #: reward scaling of dcd's normalize_returns (learning state, saved with the student), or None
        self.return_norm = ReturnNormalizer() if ppo_config.normalize_returns else None

    # ----- acting ------------------------------------------------------------------------------------
    @torch.no_grad()
    @frozen_weights()
    def collect(
        self, venv: LevelVectorEnv, levels: list[Any], num_steps: int, reset_seed: int | None = None
    ) -> Rollout:
        """Play `levels` (one per sub-env of `venv`) for `num_steps` steps from a fresh reset; the rollout's
        results summarise each level: returns of the episodes finished on it (the partial return when none
        finished), mean/max return, solved rate (return > 0), positive value loss (mean max(GAE advantage,
        0)) and mean value prediction. `reset_seed` seeds the reset (e.g. a maze's random start direction);
        None draws one from the student's generator. The runner gives every student of a rollout the first
        one's, so that they start alike on each level (dcd's students play one env)."""
        n = venv.num_envs
        if len(levels) != n:
            raise ValueError(f"{len(levels)} levels for {n} environments")
        storage = RolloutStorage(num_steps, n, self.device)
        self.policy.eval()
        venv.set_levels(levels)
        if reset_seed is None:
            reset_seed = int(self.rng.integers(2**31))
        obs = venv.reset(seed=reset_seed)
        state = self.policy.initial_state(n, self.device)
        done = torch.ones(n, device=self.device)
        storage.begin(state, done)
        episode_return = torch.zeros(n, device=self.device)
        # per step: which envs ended and their returns; turned into per-level lists once at the end
        ended_steps = torch.zeros(num_steps, n, dtype=torch.bool, device=self.device)
        ended_returns = torch.zeros(num_steps, n, device=self.device)
        if self.return_norm is not None:
            self.return_norm.start(n, self.device)
        cut = not self.config.bootstrap_rollout_end
        for t in range(num_steps):
            dist, value, state = self.policy(obs, state, done)
            try:
                action = dist.sample()
            except (RuntimeError, ValueError) as exc:  # e.g. non-finite probabilities
                first = str(exc).strip().splitlines()[0][:120]
                raise PPOError(
                    f"the policy's action distribution is invalid ({first}); lower the learning rate"
                ) from exc
            next_obs, reward, terminated, truncated = venv.step(action)
            reward = reward.to(self.device).float()
            ended = (terminated | truncated).to(self.device)
            learned = self.return_norm.scale(reward, ended) if self.return_norm is not None else reward
            # dcd's forced done at the last step: the cut-off episode is not bootstrapped
            stored_end = ended | (cut and t == num_steps - 1)
            storage.insert(obs, action, dist.log_prob(action), value, learned, stored_end)
            episode_return += reward
            ended_steps[t] = ended
            ended_returns[t] = episode_return
            episode_return = episode_return * (~ended)
            obs, done = next_obs, ended.float()
        if not bool(torch.isfinite(storage.values).all() and torch.isfinite(storage.log_probs).all()):
            # checked once per rollout (a per-step check would synchronise a GPU at every step)
            raise PPOError("the policy's outputs stopped being finite; lower the learning rate")
        _, last_value, _ = self.policy(obs, state, done)
        storage.compute_returns(last_value, self.config.gamma, self.config.gae_lambda)
        self.steps += num_steps * n
        results = level_results(
            storage, ended_steps.cpu().numpy(), ended_returns.cpu().numpy(), episode_return.cpu().numpy()
        )
        return Rollout(storage, results, reset_seed)

    # ----- learning -----------------------------------------------------------------------------------
    def learn(self, rollout: Rollout) -> dict[str, float]:
        """PPO update on `rollout` (from `collect`); returns loss metrics."""
        return self.ppo.update(rollout.storage)

    # ----- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Policy weights, optimizer state, RNG states and step count (tensors, numbers, dicts only)."""
        return {
            "policy": self.policy.state_dict(),
            "ppo": self.ppo.state_dict(),
            "rng": self.rng.bit_generator.state,
            "steps": self.steps,
            "return_norm": self.return_norm.state_dict() if self.return_norm is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.ppo.load_state_dict(state["ppo"])
        self.rng.bit_generator.state = state["rng"]
        self.steps = int(state["steps"])
        if self.return_norm is not None and state.get("return_norm"):
            self.return_norm.load_state_dict(state["return_norm"])


def level_results(
    storage: RolloutStorage, ended: np.ndarray, returns: np.ndarray, partial: np.ndarray
) -> LevelResults:
    """Per-level summary of a rollout: `ended` bool [T, N] and `returns` [T, N] (the episode return where an
    episode ended), `partial` [N] (the return of the episode running at the end)."""
    episode_returns = []
    positive = storage.advantages.clamp(min=0).cpu().double().numpy()  # [T, N]
    values = storage.values.cpu().double().numpy()
    last_pvl = np.full(ended.shape[1], np.nan)
    last_value = np.full(ended.shape[1], np.nan)
    for i in range(ended.shape[1]):
        done_returns = returns[ended[:, i], i]
        episode_returns.append(done_returns if len(done_returns) else partial[i : i + 1].copy())
        ends = np.flatnonzero(ended[:, i])
        if len(ends):
            first = ends[-2] + 1 if len(ends) > 1 else 0
            last_pvl[i] = positive[first : ends[-1] + 1, i].mean()
            last_value[i] = values[first : ends[-1] + 1, i].mean()
    return LevelResults(
        episode_returns=episode_returns,
        mean_return=np.array([r.mean() for r in episode_returns], dtype=np.float64),
        max_return=np.array([r.max() for r in episode_returns], dtype=np.float64),
        solved_rate=np.array([(r > 0).mean() for r in episode_returns], dtype=np.float64),
        positive_value_loss=positive.mean(0),
        mean_value=values.mean(0),
        last_episode_pvl=last_pvl,
        last_episode_value=last_value,
        value_l1=(storage.returns - storage.values).abs().mean(0).cpu().double().numpy(),
    )
