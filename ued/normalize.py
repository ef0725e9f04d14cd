"""Running statistics that normalise rewards: the students' return normalisation (dcd's `normalize_returns`,
a `VecNormalize(ret=True)`) and regret teachers' reward normalisation (dcd's `adv_normalize_returns`)."""

from __future__ import annotations

import math

import numpy as np
import torch

#: the students' reward clip after return normalisation (dcd's VecNormalize `cliprew`)
RETURN_CLIP = 10.0
#: discount of the running return that sets the scale (the VecNormalize default dcd keeps, not its gamma)
RETURN_GAMMA = 0.99


class RunningMeanStd:
    """Mean and variance of every number seen so far (parallel-variance update), starting from mean 0,
    variance 1 and a pseudo-count of 1e-4, as the running statistics of dcd's normalisers."""

    def __init__(self) -> None:
        self.count, self.mean, self.var = 1e-4, 0.0, 1.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return
        n, mean, var = x.size, float(x.mean()), float(x.var())
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.count, self.mean, self.var = total, self.mean + delta * n / total, m2 / total

    @property
    def std(self) -> float:
        """sqrt(var + 1e-8)."""
        return math.sqrt(max(self.var, 0.0) + 1e-8)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.var = float(state["count"]), float(state["mean"]), float(state["var"])


class ReturnNormalizer:
    """Rewards divided by the running standard deviation of each env's discounted return (gamma 0.99),
    clipped to +-10, without subtracting a mean (dcd's CarRacing students). `scale` is called once per
    step with the rewards [N] and the episode ends [N] of that step."""

    def __init__(self, gamma: float = RETURN_GAMMA, clip: float = RETURN_CLIP):
        self.gamma, self.clip = gamma, clip
        self.stats = RunningMeanStd()
        self._ret: torch.Tensor | None = None

    def start(self, num_envs: int, device: torch.device) -> None:
        """New episodes in every env (the start of a rollout)."""
        self._ret = torch.zeros(num_envs, dtype=torch.float64, device=device)

    def scale(self, reward: torch.Tensor, ended: torch.Tensor) -> torch.Tensor:
        assert self._ret is not None, "call start() first"
        self._ret = self._ret * self.gamma + reward.double()
        self.stats.update(self._ret.cpu().numpy())
        scaled = (reward / self.stats.std).clamp(-self.clip, self.clip)
        self._ret = self._ret * (~ended)
        return scaled.float()

    def state_dict(self) -> dict[str, float]:
        return self.stats.state_dict()

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.stats.load_state_dict(state)


__all__ = ["RETURN_CLIP", "RETURN_GAMMA", "ReturnNormalizer", "RunningMeanStd"]
