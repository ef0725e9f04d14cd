"""The reward of regret-driven teachers (PAIRED, CLUTR): each level's regret from the two students'
results, optionally normalised by a running standard deviation of all regrets so far."""

from __future__ import annotations

import numpy as np

from ued.levels import LevelResults
from ued.normalize import RunningMeanStd
from ued.scores import REGRETS


class RegretReward:
    """The reward of a regret-driven teacher (PAIRED, CLUTR): each level's regret from the two students'
    results (`estimate`: a name of `ued.scores.REGRETS`), optionally divided by a running std of all
    regrets so far (no mean subtracted, as dcd's `adv_normalize_returns`) and clipped to +-`clip` (None: no
    clip, dcd's `adv_clip_reward` default)."""

    def __init__(self, estimate: str, normalize: bool, clip: float | None = None):
        self.estimate, self.normalize, self.clip = estimate, normalize, clip
        self.running = RunningMeanStd()

    def __call__(self, results: dict[str, LevelResults], num_levels: int) -> tuple[np.ndarray, np.ndarray]:
        """(regret [L], reward [L]) for the L = `num_levels` levels the students just played."""
        roles = ("protagonist", "antagonist")
        missing = [r for r in roles if r not in results]
        if missing:
            raise ValueError(f"regret needs results for {', '.join(roles)}; missing {', '.join(missing)}")
        regret = REGRETS[self.estimate](results["protagonist"], results["antagonist"])
        if regret.shape[0] != num_levels:
            raise ValueError(f"got results for {regret.shape[0]} levels, expected {num_levels}")
        reward = regret
        if self.normalize:
            self.running.update(regret)
            reward = regret / self.running.std
            if self.clip is not None:
                reward = np.clip(reward, -self.clip, self.clip)
        return regret, reward

    def state_dict(self) -> dict[str, float]:
        return self.running.state_dict()

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.running.load_state_dict(state)
