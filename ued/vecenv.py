"""The students' batched environment interface, and its default implementation over gymnasium envs.

Each sub-environment holds one level: `set_levels` assigns them, `reset` starts every sub-env on its level,
and a finished episode restarts on the same level (gymnasium's same-step autoreset). Observations, rewards
and flags come back as torch tensors on `device`, so a batched tensor backend can replace this class
without any change to the runner.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch


def to_tensor(obs: Any, device: str | torch.device) -> Any:
    """numpy observation (array or dict of arrays) -> torch tensor(s) on `device`."""
    if isinstance(obs, dict):
        return {k: to_tensor(v, device) for k, v in obs.items()}
    return torch.as_tensor(np.asarray(obs), device=device)


class LevelVectorEnv(abc.ABC):
    """N sub-environments, one level each, stepped as a batch; everything in and out is a torch tensor."""

    num_envs: int
    device: torch.device
    single_observation_space: gym.Space
    single_action_space: gym.Space
    #: methods of this class that `ued bench` times as sections of their own inside "env step", by method
    #: name -> section name (e.g. {"_render": "rendering"}); methods run in worker processes are not seen
    profile_sections: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def set_levels(self, levels: Sequence[Any]) -> None:
        """Hold one level per sub-env; they take effect at the next `reset` and persist through autoresets."""

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> Any:
        """Start every sub-env on its level; returns the batched first observation."""

    @abc.abstractmethod
    def step(self, actions: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (obs, reward float32 [N], terminated bool [N], truncated bool [N]); a sub-env that finished
        is already reset on its level, and `obs` holds its new first observation."""

    def close(self) -> None:
        pass


class GymLevelVectorEnv(LevelVectorEnv):
    """`LevelVectorEnv` over gymnasium's Sync/AsyncVectorEnv of `family.make_env` (the reference backend)."""

    def __init__(
        self,
        family: Any,
        num_envs: int,
        *,
        seed: int = 0,
        device: str = "cpu",
        asynchronous: bool = False,
        env_kwargs: dict[str, Any] | None = None,
    ):
        """`num_envs` envs `family.make_env(level, **env_kwargs)` on sampled levels (replace them with
        `set_levels`); `asynchronous`: one process per env (gymnasium's AsyncVectorEnv, spawned)."""
        rng = np.random.default_rng(seed)
        levels = [family.sample(rng) for _ in range(num_envs)]
        kwargs = dict(env_kwargs or {})
        fns = [(lambda lvl=lvl: family.make_env(lvl, **kwargs)) for lvl in levels]
        mode = gym.vector.AutoresetMode.SAME_STEP
        if asynchronous and num_envs > 1:
            self._venv = gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode, context="spawn")
        else:
            self._venv = gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.single_observation_space = self._venv.single_observation_space
        self.single_action_space = self._venv.single_action_space
        self._seed = seed

    def set_levels(self, levels: Sequence[Any]) -> None:
        if len(levels) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} levels, got {len(levels)}")
        self._venv.set_attr("level", list(levels))

    def reset(self, seed: int | None = None) -> Any:
        obs, _ = self._venv.reset(seed=seed)
        return to_tensor(obs, self.device)

    def step(self, actions: torch.Tensor):
        obs, reward, terminated, truncated, _ = self._venv.step(actions.detach().cpu().numpy())
        d = self.device
        return (
            to_tensor(obs, d),
            torch.as_tensor(reward, dtype=torch.float32, device=d),
            torch.as_tensor(terminated, device=d),
            torch.as_tensor(truncated, device=d),
        )

    def close(self) -> None:
        self._venv.close()
