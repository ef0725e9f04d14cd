"""PAIRED: an adversary writes levels token by token and is rewarded by the students' regret.

Each rollout the adversary (an RL policy, `AdversaryPolicy`) writes n levels with `ued.editor.write_levels`;
the protagonist and the antagonist (two students, trained normally by the runner on their own returns) play
them; the regret estimate of each level (`ued.scores`) is the adversary's reward at the last token of that
level, and the adversary takes a PPO step (`ued.ppo`, the same code the students use).

Regret:
- `"paired"` (Dennis et al. 2020): max(antagonist's best return - protagonist's mean return, 0).
- `"flexible"` (flexible PAIRED, dcd): on each level whichever student has the higher best return plays the
  antagonist. Only the adversary's reward changes: the runner's roles stay protagonist / antagonist, and
  both students are trained on their own environment returns exactly as in plain PAIRED.

Works for any level family: the network reads `family.editor_view_shape`, `vocab_size` and `max_tokens`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ued.config import PPOConfig
from ued.editor import NOISE_DIM, WrittenLevels, write_levels
from ued.errors import UsageError
from ued.levels import LevelFamily, LevelResults
from ued.models import EncoderPolicy, init_orthogonal, mlp
from ued.ppo import PPO, RolloutStorage
from ued.scores import REGRETS
from ued.teachers.base import Teacher


class AdversaryPolicy(EncoderPolicy):
    """The PAIRED adversary, generic over families: a 3x3 conv (`conv_channels`, 128) on the editor view,
    a time-step embedding (10) and the noise vector z (50), concatenated; input layers `input_fc`; an LSTM
    (`hidden_size`, 256; 0 = feed-forward); actor and critic heads (`head_sizes`) and a categorical over
    `vocab_size` tokens.

    Two published layouts: the original PAIRED networks (TF-Agents `ActorDistributionRnnNetwork` with
    `input_fc_layer_params=(32, 32)` before the LSTM and linear heads) -- `input_fc=(32, 32)`,
    `head_sizes=()`, the default, 1.6M parameters for mazes; and dcd's, which feeds the 21.7k conv features
    straight into the LSTM and puts the (32, 32) layers after it -- `input_fc=()`, `head_sizes=(32, 32)`,
    22.5M parameters and about 10x slower per PPO update on a CPU.

    Observations: {"image": float32 [B, C, H, W], "time_step": int64 [B] in 0..max_tokens,
    "noise": float32 [B, noise_dim]} (see `ued.editor`). Views smaller than 3x3 are zero-padded.
    """

    def __init__(
        self,
        view_shape: Sequence[int],
        vocab_size: int,
        max_tokens: int,
        noise_dim: int = NOISE_DIM,
        conv_channels: int = 128,
        time_embedding: int = 10,
        hidden_size: int = 256,
        input_fc: Sequence[int] = (32, 32),
        head_sizes: Sequence[int] = (),
    ):
        channels, height, width = (int(s) for s in view_shape)
        pad = 0 if min(height, width) >= 3 else 1
        conv_out = conv_channels * (height + 2 * pad - 2) * (width + 2 * pad - 2)
        raw_size = conv_out + time_embedding + noise_dim
        input_fc = tuple(int(h) for h in input_fc)
        feature_size = input_fc[-1] if input_fc else raw_size
        core_out = hidden_size if hidden_size > 0 else feature_size
        super().__init__(
            feature_size,
            hidden_size,
            actor=mlp(core_out, head_sizes, vocab_size, out_gain=0.01),
            critic=mlp(core_out, head_sizes, 1, out_gain=1.0),
        )
        self.view_shape = (channels, height, width)
        self.vocab_size = int(vocab_size)
        self.max_tokens = int(max_tokens)
        self.noise_dim = int(noise_dim)
        self.conv = init_orthogonal(nn.Conv2d(channels, conv_channels, kernel_size=3, padding=pad))
        self.time_step = nn.Embedding(self.max_tokens + 1, time_embedding)
        self.input_fc = mlp(raw_size, input_fc)

    @classmethod
    def for_family(cls, family: LevelFamily, **kwargs: Any) -> AdversaryPolicy:
        """The adversary for `family` (kwargs: the constructor's network sizes)."""
        return cls(family.editor_view_shape, family.vocab_size, family.max_tokens, **kwargs)

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        image = obs["image"].float()
        x = F.relu(self.conv(image)).flatten(1)
        t = obs["time_step"].long().view(-1).clamp(0, self.max_tokens)
        x = torch.cat([x, self.time_step(t), obs["noise"].float().view(-1, self.noise_dim)], dim=1)
        return self.input_fc(x)


@dataclass
class PAIREDConfig:
    """PAIRED teacher settings; defaults from the published maze runs (PAIRED / dcd)."""

    regret: str = "paired"
    """regret estimate rewarding the adversary: "paired" or "flexible" (flexible PAIRED)"""
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(entropy_coef=0.005))
    """the adversary's PPO (dcd: lr 1e-4, gamma 0.995, lambda 0.95, 5 epochs, 1 minibatch, clip 0.2,
    entropy 0.005, grad norm 0.5); num_envs / num_steps are unused (one episode per written level)"""
    noise_dim: int = NOISE_DIM
    """size of the random noise vector z given to the adversary"""
    conv_channels: int = 128
    """channels of the adversary's 3x3 conv on the editor view"""
    hidden_size: int = 256
    """adversary LSTM size (0 = feed-forward)"""
    input_fc: tuple[int, ...] = (32, 32)
    """adversary layers between the conv features and the LSTM (original PAIRED: (32, 32); dcd: ())"""
    head_sizes: tuple[int, ...] = ()
    """adversary actor / critic hidden layers after the LSTM (original PAIRED: (); dcd: (32, 32))"""
    normalize_reward: bool = False
    """divide the adversary's reward by a running std of all regrets so far, clipped to +-10 (dcd's
    adv_normalize_returns)"""


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

    def __init__(self, teacher: str, estimate: str, normalize: bool, clip: float | None = None):
        if estimate not in REGRETS:
            raise UsageError(f"unknown {teacher} regret {estimate!r}; choose one of: {', '.join(REGRETS)}")
        self.teacher, self.estimate, self.normalize, self.clip = teacher, estimate, normalize, clip
        self.running = RunningStd()

    def __call__(self, results: dict[str, LevelResults], num_levels: int) -> tuple[np.ndarray, np.ndarray]:
        """(regret [L], reward [L]) for the L = `num_levels` levels the students just played."""
        roles = ("protagonist", "antagonist")
        missing = [r for r in roles if r not in results]
        if missing:
            raise ValueError(
                f"{self.teacher} needs results for {', '.join(roles)}; missing {', '.join(missing)}"
            )
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


class PAIRED(Teacher):
    """PAIRED teacher: an adversary policy writes the levels and learns by PPO from the students' regret."""

    roles = ("protagonist", "antagonist")
    config_class = PAIREDConfig

    def __init__(
        self, family: LevelFamily, config: PAIREDConfig | None = None, *, seed: int = 0, device: str = "cpu"
    ):
        super().__init__(family, config, seed=seed, device=device)
        c: PAIREDConfig = self.config
        self.regret_reward = RegretReward("PAIRED", c.regret, c.normalize_reward, clip=REWARD_CLIP)
        if c.noise_dim < 1:
            raise UsageError(f"PAIRED noise_dim must be >= 1, got {c.noise_dim}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.adversary = AdversaryPolicy.for_family(
                family,
                noise_dim=c.noise_dim,
                conv_channels=c.conv_channels,
                hidden_size=c.hidden_size,
                input_fc=c.input_fc,
                head_sizes=c.head_sizes,
            ).to(device)
        self.ppo = PPO(self.adversary, c.ppo, seed=seed)
        #: samples the adversary's tokens (kept apart from the global torch RNG)
        self.generator = torch.Generator(device=device).manual_seed(seed + 1)
        self._storage: RolloutStorage | None = None
        self._pending: WrittenLevels | None = None

    # ----- curriculum ---------------------------------------------------------------------------
    def propose(self, n: int) -> list[Any]:
        """n levels written by the adversary (sampled tokens), decoded and repaired."""
        self.adversary.eval()
        self._pending = write_levels(
            self.family,
            self.adversary,
            n,
            rng=self.rng,
            generator=self.generator,
            noise_dim=self.config.noise_dim,
            device=self.device,
        )
        return list(self._pending.levels)

    def update(self, levels: list[Any], results: dict[str, LevelResults]) -> dict[str, float]:
        """Reward each written level with its regret (at its last token) and take a PPO step."""
        written = self._pending
        if written is None or len(levels) != len(written.levels):
            raise ValueError("PAIRED.update needs the levels of the latest propose(n) call")
        self._pending = None
        regret, reward = self.regret_reward(results, len(levels))
        metrics = self._learn(written, torch.as_tensor(reward, dtype=torch.float32, device=self.device))
        metrics.update(
            regret_mean=float(regret.mean()),
            regret_max=float(regret.max()),
            valid_before_repair=written.valid_share,
            protagonist_return=float(np.mean(results["protagonist"].mean_return)),
            antagonist_return=float(np.mean(results["antagonist"].mean_return)),
        )
        return metrics

    def _learn(self, written: WrittenLevels, reward: torch.Tensor) -> dict[str, float]:
        T, n = written.actions.shape
        if self._storage is None or self._storage.num_envs != n or self._storage.num_steps != T:
            self._storage = RolloutStorage(T, n, self.device)
        storage, c = self._storage, self.config.ppo
        storage.begin(written.state0, written.dones[0])
        zeros = torch.zeros(n, device=self.device)
        for t in range(T):
            last = t == T - 1
            storage.insert(
                {k: v[t] for k, v in written.obs.items()},
                written.actions[t],
                written.log_probs[t],
                written.values[t],
                reward if last else zeros,
                torch.ones(n, device=self.device) if last else zeros,
            )
        storage.compute_returns(zeros, c.gamma, c.gae_lambda)
        stats = self.ppo.update(storage)
        return {
            "adversary_entropy": stats.get("entropy", math.nan),
            "adversary_value_loss": stats.get("value_loss", math.nan),
            "adversary_policy_loss": stats.get("policy_loss", math.nan),
            "adversary_approx_kl": stats.get("approx_kl", math.nan),
            "adversary_grad_norm": stats.get("grad_norm", math.nan),
        }

    # ----- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            adversary=self.adversary.state_dict(),
            ppo=self.ppo.state_dict(),
            generator=self.generator.get_state(),
            reward_std=self.regret_reward.state_dict(),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.adversary.load_state_dict(state["adversary"])
        self.ppo.load_state_dict(state["ppo"])
        self.generator.set_state(state["generator"])
        self.regret_reward.load_state_dict(state["reward_std"])
        self._pending = None
