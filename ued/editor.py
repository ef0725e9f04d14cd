"""The PAIRED adversary's editor: a level is written one token per step, for any level family.

`EditorEnv` is the single-level gymnasium env (useful to inspect and test the editing task); `write_levels`
is what the PAIRED teacher uses: it runs n editors at once (a Python loop over the `max_tokens` steps,
tensors over the n levels) and returns everything PPO needs plus the decoded, repaired levels.

Observation (both): a dict
- `image`: float32 `family.editor_view_shape` (C, H, W), the partly written level (`family.editor_view` of
  the tokens written so far); families are expected to keep its values in [0, 1];
- `time_step`: int, the number of tokens written so far, in 0..max_tokens;
- `noise`: float32 (noise_dim,), a random vector z ~ U[0, 1) drawn anew at every step (dcd's `random_z`),
  so that a deterministic network can still write different levels;
- `mask`: bool (vocab_size,), the tokens the family allows next (`LevelFamily.allowed_tokens`; dcd's
  CarRacing adversary may not skip or reuse a control point); the policy samples only these.

Action: a token in `Discrete(family.vocab_size)`. The episode ends after `family.max_tokens` tokens.

Reward: always 0 here. The adversary's reward is the students' regret on the finished level, known only
after the students have played it; the teacher assigns it to the last step (`teachers/paired.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ued.config import NOISE_DIM
from ued.errors import UsageError
from ued.levels import LevelFamily
from ued.packed_linear import frozen_weights


def editor_observation_space(family: LevelFamily, noise_dim: int = NOISE_DIM) -> spaces.Dict:
    """The editor's observation space for `family` (see the module docstring)."""
    return spaces.Dict(
        {
            "image": spaces.Box(0.0, 1.0, shape=tuple(family.editor_view_shape), dtype=np.float32),
            "time_step": spaces.Discrete(family.max_tokens + 1),
            "noise": spaces.Box(0.0, 1.0, shape=(noise_dim,), dtype=np.float32),
            "mask": spaces.MultiBinary(family.vocab_size),
        }
    )


def finish_level(family: LevelFamily, tokens: Any, repair: bool = False) -> tuple[Any, bool]:
    """Decode written tokens -> (level, whether it is valid); with `repair`, an invalid level is repaired
    (a ued option: dcd plays written levels as they are, and an unsolvable one earns zero regret). A level
    no env can even start (`family.can_play`: a track of under 3 points) is always repaired."""
    tokens = np.asarray(tokens, dtype=np.int64)
    try:
        level = family.decode(tokens)
    except Exception as exc:  # noqa: BLE001  (a plugin's decode must be total: say so in one line)
        raise UsageError(
            f"{family.name}.decode failed on teacher-written tokens {tokens.tolist()} ({type(exc).__name__}: "
            f"{str(exc)[:200]}); decode must accept every sequence of tokens in [0, vocab_size) (check it "
            f"with `ued check-family {family.name}`)"
        ) from None
    if family.is_valid(level):
        return level, True
    return (family.repair(level) if repair or not family.can_play(level) else level), False


class EditorEnv(gym.Env):
    """Write one level of `family`, one token per step (see the module docstring for spaces and reward).

    On the last step `info` holds `tokens` (int64 [max_tokens]), `level` (decoded and repaired) and
    `valid_before_repair`. `render()` draws the level written so far (decoded; repaired to be drawable).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, family: LevelFamily, noise_dim: int = NOISE_DIM, render_mode: str | None = None):
        self.family = family
        self.noise_dim = int(noise_dim)
        self.render_mode = render_mode
        self.observation_space = editor_observation_space(family, self.noise_dim)
        self.action_space = spaces.Discrete(family.vocab_size)
        self._tokens: list[int] = []

    def _obs(self) -> dict[str, Any]:
        return {
            "image": np.asarray(self.family.editor_view(self._tokens), dtype=np.float32),
            "time_step": len(self._tokens),
            "noise": self.np_random.random(self.noise_dim, dtype=np.float32),
            "mask": family_mask(self.family, self._tokens).astype(np.int8),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._tokens = []
        return self._obs(), {}

    def step(self, action: int):
        if len(self._tokens) >= self.family.max_tokens:
            raise RuntimeError("the level is finished; call reset() to write another")
        self._tokens.append(int(action))
        terminated = len(self._tokens) == self.family.max_tokens
        info: dict[str, Any] = {}
        if terminated:
            level, valid = finish_level(self.family, self._tokens)
            info = {
                "tokens": np.asarray(self._tokens, dtype=np.int64),
                "level": level,  # as written (not repaired)
                "valid_before_repair": valid,
            }
        return self._obs(), 0.0, terminated, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        level, _ = finish_level(self.family, self._tokens, repair=True)
        return self.family.render(level)


def family_mask(family: LevelFamily, tokens: Any) -> np.ndarray:
    """bool [vocab_size]: the tokens `family` allows after `tokens` (all of them by default)."""
    allowed = family.allowed_tokens(tokens)
    return np.ones(family.vocab_size, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)


@dataclass
class WrittenLevels:
    """A batch of n levels written by the adversary over T = max_tokens steps.

    Tensors are time-major for PPO: obs {"image" [T, n, C, H, W], "time_step" [T, n], "noise" [T, n, D],
    "mask" bool [T, n, V]}, `actions`, `log_probs`, `values` and `dones` [T, n] (`dones[0]` = 1: each level
    is a new episode); `state0` is the policy's recurrent state before step 0. `tokens` is int64 [n, T];
    `levels` are decoded (and repaired when asked); `valid_before_repair` is bool [n].
    """

    tokens: np.ndarray
    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    dones: torch.Tensor
    state0: Any
    levels: list[Any]
    valid_before_repair: np.ndarray

    @property
    def valid_share(self) -> float:
        """Share of written levels that were valid (maze: solvable) as written."""
        return float(np.mean(self.valid_before_repair)) if len(self.levels) else 0.0

    @property
    def num_repaired(self) -> int:
        return int(len(self.levels) - np.sum(self.valid_before_repair))


@torch.no_grad()
@frozen_weights()
def write_levels(
    family: LevelFamily,
    policy: Any,
    n: int,
    *,
    rng: np.random.Generator,
    generator: torch.Generator | None = None,
    noise_dim: int = NOISE_DIM,
    deterministic: bool = False,
    device: str | torch.device = "cpu",
    repair: bool = False,
) -> WrittenLevels:
    """Let `policy` (a `ued.models.Policy` over editor observations) write `n` levels of `family`.

    The noise vectors z (a new one per step) come from `rng`; tokens are sampled with `generator` (a seeded
    torch.Generator on `device`; None uses torch's global generator) among the allowed ones, or, if
    `deterministic`, are the most likely ones. `repair`: see `finish_level`.
    """
    if n < 1:
        raise ValueError(f"need at least one level to write, got n={n}")
    T, device = family.max_tokens, torch.device(device)
    noise = torch.as_tensor(rng.random((T, n, noise_dim), dtype=np.float32), device=device)
    tokens = np.zeros((n, T), dtype=np.int64)
    images = torch.zeros((T, n, *family.editor_view_shape), dtype=torch.float32, device=device)
    masks = torch.ones((T, n, family.vocab_size), dtype=torch.bool, device=device)
    time_steps = torch.arange(T, device=device).view(T, 1).expand(T, n).contiguous()
    actions = torch.zeros((T, n), dtype=torch.int64, device=device)
    log_probs = torch.zeros((T, n), device=device)
    values = torch.zeros((T, n), device=device)
    dones = torch.zeros((T, n), device=device)
    dones[0] = 1.0
    state0 = policy.initial_state(n, device)
    state = state0
    for t in range(T):
        views = np.stack([family.editor_view(tokens[i, :t]) for i in range(n)]).astype(np.float32, copy=False)
        images[t] = torch.from_numpy(views).to(device)
        masks[t] = torch.from_numpy(np.stack([family_mask(family, tokens[i, :t]) for i in range(n)]))
        obs = {"image": images[t], "time_step": time_steps[t], "noise": noise[t], "mask": masks[t]}
        dist, value, state = policy(obs, state, dones[t])
        if deterministic:
            action = dist.probs.argmax(dim=-1)
        else:
            action = torch.multinomial(dist.probs, 1, generator=generator).squeeze(1)
        actions[t], log_probs[t], values[t] = action, dist.log_prob(action), value
        tokens[:, t] = action.cpu().numpy()
    finished = [finish_level(family, tokens[i], repair) for i in range(n)]
    return WrittenLevels(
        tokens=tokens,
        obs={"image": images, "time_step": time_steps, "noise": noise, "mask": masks},
        actions=actions,
        log_probs=log_probs,
        values=values,
        dones=dones,
        state0=state0,
        levels=[level for level, _ in finished],
        valid_before_repair=np.array([valid for _, valid in finished], dtype=bool),
    )
