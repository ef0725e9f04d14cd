"""The reward of regret-driven teachers (PAIRED, CLUTR): each level's regret from the two students'
results, optionally normalised by a running standard deviation of all regrets so far."""

from __future__ import annotations

import math

import numpy as np

from ued.levels import LevelResults
from ued.scores import REGRETS

#: bound on the normalised adversary reward (as in running-std reward normalisers)
REWARD_CLIP = 10.0


class RunningStd:
    """Running mean and variance of a stream of numbers (parallel-variance update)."""

    def __init__(self) -> None:
        self.count, self.mean, self.var = 0, 0.0, 1.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return
        n, mean, var = x.size, float(x.mean()), float(x.var())
        if self.count == 0:
            self.count, self.mean, self.var = n, mean, var
            return
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.count, self.mean, self.var = total, self.mean + delta * n / total, m2 / total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0) + 1e-8)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.var = int(state["count"]), float(state["mean"]), float(state["var"])


class RegretReward:
    """The reward of a regret-driven teacher (PAIRED, CLUTR): each level's regret from the two students'
    results (`estimate`: a name of `ued.scores.REGRETS`), optionally divided by a running std of all
    regrets so far and clipped to +-`clip` (None: no clip)."""

    def __init__(self, estimate: str, normalize: bool, clip: float | None = None):
        self.estimate, self.normalize, self.clip = estimate, normalize, clip
        self.running = RunningStd()

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
